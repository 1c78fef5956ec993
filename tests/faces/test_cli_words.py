"""What a user of the ``stem4d`` command meets: errors in the command's own options (not the
library's parameter spellings), a closed stdout ending quietly, ``--version``, an unreachable
scheduler failing fast, and ``convert`` refusing outputs it would otherwise guess at."""

import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask.cli import main
from stem4d_dask.cli_options import OPTION_NAMES, cli_reason

# the library's spellings no command's error may show
PYTHON_WORDS = re.compile(
    r"\b(Nsamples|binfactor|bin_factor|darkreference|overwrite=True|resume=True|scan_shape|"
    r"padding_factor|maxNumPeaks|minSpacing|detector_shape|thinning_factor)\b"
)


@pytest.fixture
def scan(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "in.npy", rng.integers(0, 50, (4, 4, 16, 16), dtype=np.uint16))
    np.save(tmp_path / "dark.npy", np.zeros((16, 16), np.float32))
    (tmp_path / "r.raw").write_bytes(np.zeros((4, 16, 16), np.uint16).tobytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def error_of(capsys, argv) -> str:
    assert main([*argv, "--quiet"] if argv[0] != "info" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["info", "in.npy", "--scan-shape", "2,8"], "--scan-shape: (2, 8) differs"),
        (["info", "r.raw", "--shape", "4,16,16"], "pass --scan-shape"),
        (["convert", "in.npy", "o.zarr", "--bin-q", "0"], "--bin-q must be an integer >= 1"),
        (["convert", "in.npy", "o.zarr", "--thin-r", "0"], "--thin-r must be an integer >= 1"),
        (
            ["convert", "in.npy", "o.zarr", "--count", "--dark", "dark.npy", "--samples", "0"],
            "--samples must be an integer >= 1",
        ),
        (["dpc", "in.npy", "--padding", "0"], "--padding must be >= 1"),
        (["count", "in.npy", "e.zarr", "--dark", "dark.npy", "--samples", "0"], "--samples must"),
        (["count", "in.npy", "e.zarr", "--dark", "dark.npy", "--bin", "0"], "--bin must be"),
        (["peaks", "in.npy", "p.zarr", "--min-spacing", "-1"], "--min-spacing must be >= 0"),
        (["peaks", "in.npy", "p.zarr", "--max-peaks", "-1"], "--max-peaks: expected 0"),
        (["demo", "--scan", "0,4"], "--scan must be two positive ints"),
        (["demo", "--scan", "4"], "--scan: expected 2 comma-separated integers, got '4'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_errors_speak_the_commands_options(scan, capsys, argv, expected):
    err = error_of(capsys, argv)
    assert expected in err
    assert not PYTHON_WORDS.search(err), err


@pytest.mark.parametrize("command", ["convert", "count", "peaks"])
def test_an_existing_output_says_overwrite_as_an_option(scan, capsys, command):
    argv = {
        "convert": ["convert", "in.npy", "o.zarr"],
        "count": ["count", "in.npy", "o.zarr", "--dark", "dark.npy"],
        "peaks": ["peaks", "in.npy", "o.zarr"],
    }[command]
    assert main([*argv, "--quiet"]) == 0
    capsys.readouterr()
    err = error_of(capsys, argv)
    assert "already exists" in err and "--overwrite" in err
    assert "overwrite=True" not in err and "resume=True" not in err


def test_every_command_has_its_table_and_plain_words_change_only_as_parameters():
    assert set(OPTION_NAMES) == {"info", "convert", "dpc", "count", "peaks", "demo"}
    text = "darkreference must have the detector shape (8, 8), got (4, 8)"
    assert cli_reason("count", text) == "--dark must have the detector shape (8, 8), got (4, 8)"
    text = (
        "scan_shape: x; pass scan_shape=None to keep it, or stem4d_dask.preprocess.set_scan_shape"
    )
    assert cli_reason("info", text) == (
        "--scan-shape: x; leave out --scan-shape to keep it, or "
        "stem4d_dask.preprocess.set_scan_shape"
    )


def test_a_closed_stdout_ends_quietly(scan):
    s4.to_zarr(s4.read(scan / "in.npy"), scan / "c.zarr")
    stem4d = [
        sys.executable,
        "-c",
        "from stem4d_dask.cli import main; import sys; sys.exit(main())",
    ]
    proc = subprocess.Popen(
        [*stem4d, "info", "c.zarr", "--all"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # the reader has gone before a line is written (| head -0)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert err == ""


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"stem4d {s4.__version__}"


TIMED_MAIN = """
import sys, time
from stem4d_dask.cli import main
start = time.monotonic()
code = main(sys.argv[1:])
print(f"seconds {time.monotonic() - start:.2f}", file=sys.stderr)
sys.exit(code)
"""


def test_a_scheduler_address_where_no_dask_scheduler_answers_fails_fast(scan):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer_garbage():  # what a proxy or another service would send back
        conn, _ = server.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 4)
        time.sleep(30)
        conn.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    address = f"tcp://127.0.0.1:{port}"
    argv = ["convert", "in.npy", "o.zarr", "--scheduler", address, "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-c", TIMED_MAIN, *argv], capture_output=True, text=True, timeout=60
    )
    server.close()
    error, seconds = proc.stderr.strip().splitlines()[-2:]
    assert proc.returncode == 2, proc.stderr
    assert float(seconds.split()[1]) < 6
    assert address in error and error.startswith("stem4d convert: error: --scheduler:")
    assert not (scan / "o.zarr").exists()


def test_convert_refuses_an_output_in_a_missing_folder(scan, capsys):
    err = error_of(capsys, ["convert", "in.npy", "sub/missing/out.zarr"])
    assert "sub/missing" in err and "does not exist" in err
    assert not (scan / "sub").exists()


def test_convert_refuses_an_output_suffix_that_is_neither_store_nor_folder(scan, capsys):
    err = error_of(capsys, ["convert", "in.npy", "out.txt"])
    assert "OUT must end in .zarr or .h5, or be a folder" in err and "got out.txt" in err
    assert not (scan / "out.txt").exists()
    (scan / "batch.v2").mkdir()  # an existing folder with a suffix is still a folder
    assert main(["convert", "in.npy", "batch.v2", "--quiet"]) == 0
    assert s4.read(scan / "batch.v2" / "in.zarr").shape == (4, 4, 16, 16)
    assert main(["convert", "in.npy", "plain", "--quiet"]) == 0  # no suffix: a folder, made
    assert (scan / "plain" / "in.zarr").is_dir()
