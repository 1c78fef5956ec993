"""Where the work runs (stem4d_dask.cluster) and progress (stem4d_dask.progress): local
clients of threads or process workers with memory limits, existing schedulers by address or
scheduler file, unreachable addresses failing fast, the CLI's --scheduler giving the threaded
result on a process cluster, progress bars on stderr for every scheduler, quiet by default."""

import importlib.util
import socket
import sys
import time

import dask
import dask.array as da
import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask import cluster, progress
from stem4d_dask.cli import main
from stem4d_dask.phase.com import center_of_mass
from stem4d_dask.synthetic import dpc_scan
from stem4d_dask.synthetic_counting import counting_scan

MiB = 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def store_files(path) -> dict:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture
def npy_scan(tmp_path):
    """A DPC scan as a .npy, read per chunk by its own task, and its values."""
    values = dpc_scan((12, 10), (16, 16), disk_radius=4, seed=3).datacube.values
    np.save(tmp_path / "scan.npy", values)
    return s4.read(tmp_path / "scan.npy", chunks=(4, 10)), values


def totals(dc):
    """Per-frame totals and the mean pattern: reader tasks shipped to the workers, no numba
    (a fresh worker process would spend seconds compiling)."""
    data = dc.data.astype("int64")
    return data.sum(axis=(2, 3)), data.mean(axis=(0, 1))


# --- clients ------------------------------------------------------------------------------


def test_threads_client_runs_here_and_closes_its_cluster(npy_scan):
    dc, values = npy_scan
    with cluster.client(threads_per_worker=2) as c:
        info = c.scheduler_info()
        assert [w["nthreads"] for w in info["workers"].values()] == [2]
        assert progress.active_client() is c
        com = center_of_mass(dc)  # numba, compiled in this process already or once
        got = progress.compute(com.com_x.data, com.com_y.data)
        expected = dask.compute(com.com_x.data, com.com_y.data, scheduler="threads")
        with dask.config.set(scheduler="threads"):  # dask's own choice is followed
            assert progress.active_client() is None
        text = cluster.describe(c)
        local = c.cluster
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert local.status.name == "closed" and progress.active_client() is None
    assert "workers    1, 2 threads" in text and "dashboard  none" in text


@pytest.mark.slow
def test_process_workers_get_the_memory_limit(npy_scan):
    dc, values = npy_scan
    with cluster.client(
        processes=True, n_workers=2, threads_per_worker=1, memory_limit="600MiB"
    ) as c:
        workers = c.scheduler_info()["workers"].values()
        assert sorted(w["memory_limit"] for w in workers) == [600 * MiB] * 2
        assert [w["nthreads"] for w in workers] == [1, 1]
        frames, mean = progress.compute(*totals(dc))
        text = cluster.describe(c)
    np.testing.assert_array_equal(frames, values.sum(axis=(2, 3), dtype=np.int64))
    np.testing.assert_allclose(mean, values.mean(axis=(0, 1)), rtol=1e-12)
    assert "workers    2, 2 threads, 1.17 GiB memory limit in all" in text
    assert text.count("1 thread, 600.00 MiB memory limit") == 2


def test_an_existing_scheduler_by_address_or_file(npy_scan, process_client, tmp_path):
    dc, values = npy_scan
    address = process_client.scheduler.address
    process_client.write_scheduler_file(str(tmp_path / "scheduler.json"))
    for spec in (
        {"scheduler": address},
        {"scheduler": address.removeprefix("tcp://")},
        {"scheduler_file": tmp_path / "scheduler.json"},
    ):
        with cluster.client(**spec) as c:
            assert c.scheduler.address == address
            assert len(c.scheduler_info()["workers"]) == 2
            frames, _ = progress.compute(*totals(dc))
        np.testing.assert_array_equal(frames, values.sum(axis=(2, 3), dtype=np.int64))
    # the scheduler we only connected to is still up
    assert process_client.submit(sum, [1, 2]).result() == 3


def test_an_unreachable_address_fails_fast_naming_it(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(OSError, match=f"no scheduler answered at {address} within 1 s"):
        cluster.client(address, timeout=1)
    with pytest.raises(FileNotFoundError, match="scheduler_file: .*none.json did not appear"):
        cluster.client(scheduler_file=tmp_path / "none.json", timeout=0.5)
    assert time.monotonic() - start < 4
    assert cluster.DEFAULT_TIMEOUT == 5  # not dask's 30 s


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"memory_limit": "lots"}, "memory_limit: expected a size such as '600MiB'"),
        ({"memory_limit": -5}, "memory_limit: expected a size"),
        ({"n_workers": 0}, "n_workers must be an integer >= 1, got 0"),
        ({"threads_per_worker": 1.5}, "threads_per_worker must be an integer"),
        ({"processes": "yes"}, "processes must be True or False"),
        ({"scheduler": "tcp://h:1", "memory_limit": "1GiB"}, "memory_limit: only for a cluster"),
        ({"scheduler": "tcp://h:1", "n_workers": 2}, "n_workers: only for a cluster started"),
        ({"scheduler": "a:1", "scheduler_file": "s.json"}, "scheduler and scheduler_file"),
        ({"scheduler": 8786}, "scheduler: expected None, a scheduler address"),
        ({"scheduler": "tcp://h:1", "timeout": 0}, "timeout must be"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cluster.client(**kwargs)


def test_missing_dask_cuda_or_bokeh_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # as if not installed
    with pytest.raises(ImportError, match=r"dask-cuda: pip install 'stem4d_dask\[gpu\]'"):
        cluster.client(gpu=True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="dashboard=True needs bokeh: pip install"):
        cluster.client(dashboard=True)


def test_scheduler_names_and_bad_values():
    for name in cluster.LOCAL_SCHEDULERS:
        with cluster.scheduler(name) as c:
            assert c is None and dask.config.get("scheduler") == name
    assert dask.config.get("scheduler", None) is None
    with pytest.raises(ValueError, match="scheduler: expected threads, .* got 'bogus'"):
        with cluster.scheduler("bogus"):
            pass
    with pytest.raises(ValueError, match="memory_limit: only with a cluster started here"):
        with cluster.scheduler("threads", memory_limit="1GiB"):
            pass
    with pytest.raises(ValueError, match="local:N needs N >= 1"):
        with cluster.scheduler("local:0"):
            pass


def test_memory_bytes():
    assert cluster.memory_bytes("600MiB") == 600 * MiB
    assert cluster.memory_bytes("2 GB") == 2 * 10**9
    assert cluster.memory_bytes(1234) == 1234 and cluster.memory_bytes("auto") == "auto"


# --- progress -----------------------------------------------------------------------------


def test_library_calls_are_quiet_unless_asked(capsys):
    x = da.arange(100, chunks=10).sum()
    assert progress.compute(x) == (4950,) and not progress.enabled()
    assert capsys.readouterr().err == ""
    progress.compute(x, progress=True)
    assert "] | 100% Completed |" in capsys.readouterr().err
    with progress.showing():
        assert progress.enabled()
        progress.compute(x)
        assert "100% Completed" in capsys.readouterr().err
        progress.compute(x, progress=False)
        assert capsys.readouterr().err == ""
    assert not progress.enabled()
    with pytest.raises(ValueError, match="on must be True or False, got 'yes'"):
        progress.showing("yes")


def test_progress_on_a_distributed_client_is_the_same_bar_on_stderr(capsys):
    x = da.ones((400, 400), chunks=50)
    with cluster.client(threads_per_worker=2):
        assert progress.compute(x.sum(), (x + 1).sum()) == (160000, 320000)
        assert capsys.readouterr().err == ""
        assert progress.compute(x.sum(), progress=True) == (160000,)
    captured = capsys.readouterr()
    assert captured.out == ""  # distributed's own bar writes to stdout and erases itself
    last = captured.err.rstrip("\n").split("\r")[-1]
    assert last.startswith("[" + "#" * 40 + "] | 100% Completed | ")


# --- the command line ---------------------------------------------------------------------


@pytest.mark.slow
def test_cli_local_cluster_gives_the_threaded_store(tmp_path, capsys):
    scan = dpc_scan((12, 10), (16, 16), disk_radius=4, seed=4)
    np.save(tmp_path / "scan.npy", scan.datacube.values)
    convert = ["convert", str(tmp_path / "scan.npy")]
    assert main([*convert, str(tmp_path / "a.zarr"), "--chunks", "4,10"]) == 0
    threads = capsys.readouterr()
    on_cluster = ["--scheduler", "local:2", "--memory-limit", "600MiB"]
    assert main([*convert, str(tmp_path / "b.zarr"), "--chunks", "4,10", *on_cluster]) == 0
    local = capsys.readouterr()
    assert store_files(tmp_path / "a.zarr") == store_files(tmp_path / "b.zarr")
    for run in (threads, local):  # the same bar, on stderr, for threads and the cluster
        assert "] | 100% Completed |" in run.err and "Completed" not in run.out
    assert local.err.count("1 thread, 600.00 MiB memory limit") == 2
    assert "600.00 MiB" not in threads.err
    assert main([*convert, str(tmp_path / "c.zarr"), "--memory-limit", "1GiB"]) == 2
    assert "--memory-limit: only with a cluster started here" in capsys.readouterr().err


def test_cli_commands_on_a_scheduler_address_equal_threads(tmp_path, capsys, process_client):
    address = process_client.scheduler.address
    scan = dpc_scan((16, 16), (24, 24), rotation_deg=-30, seed=2)
    s4.to_zarr(scan.datacube, tmp_path / "scan.zarr", chunks=(4, 16), progress=False)
    for where, extra in (("t", []), ("d", ["--scheduler", address])):
        dpc = ["dpc", str(tmp_path / "scan.zarr"), "--out", str(tmp_path / f"dpc_{where}")]
        assert main([*dpc, "--max-iter", "8", "--quiet", *extra]) == 0
    phase_t, phase_d = (np.load(tmp_path / f"dpc_{w}" / "dpc_phase.npy") for w in "td")
    np.testing.assert_array_equal(phase_t, phase_d)
    capsys.readouterr()

    counting = counting_scan((6, 5), (32, 32), seed=1)
    s4.to_zarr(counting.datacube, tmp_path / "raw.zarr", progress=False)
    np.save(tmp_path / "dark.npy", counting.dark)
    runs = {}
    for where, extra in (("t", []), ("d", ["--scheduler", address])):
        count = ["count", str(tmp_path / "raw.zarr"), str(tmp_path / f"ev_{where}.zarr")]
        assert main([*count, "--dark", str(tmp_path / "dark.npy"), "--samples", "20", *extra]) == 0
        runs[where] = capsys.readouterr()
    assert store_files(tmp_path / "ev_t.zarr") == store_files(tmp_path / "ev_d.zarr")
    assert "] | 100% Completed |" in runs["d"].err and f"scheduler  {address}" in runs["d"].err
    assert "] | 100% Completed |" in runs["t"].err


def test_cli_unreachable_scheduler_fails_fast(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cluster, "DEFAULT_TIMEOUT", 1.0)  # 5 s as shipped (tested above)
    np.save(tmp_path / "c.npy", np.zeros((2, 2, 4, 4), np.uint16))
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    code = main(
        ["convert", str(tmp_path / "c.npy"), str(tmp_path / "c.zarr"), "--scheduler", address]
    )
    assert code == 2 and time.monotonic() - start < 4
    assert f"no scheduler answered at {address} within 1 s" in capsys.readouterr().err


# --- batch systems ----------------------------------------------------------------------


def test_slurm_job_script_from_dask_jobqueue(tmp_path):
    """docs/cluster.md's SLURMCluster: the job script it would submit (no SLURM needed)."""
    jobqueue = pytest.importorskip("dask_jobqueue")
    with jobqueue.SLURMCluster(
        cores=8,
        processes=2,
        memory="32GiB",
        walltime="02:00:00",
        queue="normal",
        account="myproject",
        log_directory=str(tmp_path / "dask-logs"),
        local_directory="$TMPDIR",
        job_script_prologue=["source /home/me/stem4d/.venv/bin/activate"],
        scheduler_options={"dashboard_address": ":0"},
    ) as slurm:
        script = slurm.job_script()
        assert slurm.scheduler_address.startswith("tcp://")  # what --scheduler takes
    header = ["-p normal", "-A myproject", "-n 1", "--cpus-per-task=8", "--mem=32G", "-t 02:00:00"]
    for line in header:  # each job: 8 cores, 32 GiB for 2 hours
        assert f"#SBATCH {line}\n" in script
    worker = script[script.index("distributed.cli.dask_worker") :].split()
    for option, value in (("--nworkers", "2"), ("--nthreads", "4"), ("--memory-limit", "16.00GiB")):
        assert worker[worker.index(option) + 1] == value  # 2 workers of 4 threads and 16 GiB
    assert "source /home/me/stem4d/.venv/bin/activate\n" in script
    assert "--local-directory $TMPDIR" in script
