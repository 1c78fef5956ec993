"""Bounded memory (issue 14): electron counting holds no raw block while its thresholds are
fitted (no read runs ahead), the memory of a computation follows the chunk size and not the
scan size, and chunks fit the workers of a memory-limited ``distributed`` client. The large
measurements (a 3 GiB scan on two 600 MiB process workers) are benchmarks/bench_scale.py's."""

import functools
import threading
import tracemalloc
import weakref
from dataclasses import dataclass

import dask
import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask import preprocess as pp
from stem4d_dask.chunks import (
    WORK_BYTES_PER_PIXEL,
    WORKER_BASELINE_BYTES,
    MiB,
    Workers,
    active_workers,
    auto_chunks,
    fitting_bytes,
    normalize_chunks,
    task_bytes,
)
from stem4d_dask.datacube import from_array
from stem4d_dask.lazy import lazy_from_loader
from stem4d_dask.phase import center_of_mass
from stem4d_dask.preprocess.electroncount import electron_count

DARK = 100.0
POOL = 61  # distinct frames; frame (x, y) is pool[(7 x + 3 y) % POOL]


@functools.cache
def _pool(q: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pool = np.rint(rng.normal(DARK, 3.0, (POOL, q, q))).astype(np.uint16)
    for frame in pool:
        x, y = rng.integers(2, q - 2, (2, rng.poisson(0.002 * q * q)))
        frame[x, y] += np.rint(rng.lognormal(np.log(60.0), 0.15, x.size)).astype(np.uint16)
    return pool


class Alive:
    """Raw bytes handed out by a loader and not yet freed: now, at most, and the reads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.peak = 0
        self.reads: list[int] = []  # frames per read

    def add(self, block: np.ndarray) -> np.ndarray:
        with self.lock:
            self.now += block.nbytes
            self.peak = max(self.peak, self.now)
            self.reads.append(block.shape[0] * block.shape[1])
        weakref.finalize(block, self._drop, block.nbytes)
        return block

    def _drop(self, nbytes: int) -> None:
        with self.lock:
            self.now -= nbytes


RECORDS: dict[str, Alive] = {}  # loaders stay small and picklable: they name their record


@dataclass(frozen=True)
class CountingLoader:
    """A reader's loader of a synthetic counting scan (read noise on a dark level, a few
    electrons of ~60 counts): every block is a new array, recorded in ``RECORDS[record]``."""

    q: int
    seed: int = 0
    record: str = ""

    def __call__(self, slices):
        xs, ys = (np.arange(s.start, s.stop) for s in slices[:2])
        block = _pool(self.q, self.seed)[(7 * xs[:, None] + 3 * ys[None, :]) % POOL]
        return RECORDS[self.record].add(block) if self.record else block


def counting_scan(scan, chunks, q=64, record=""):
    """A lazy datacube read per chunk by a :class:`CountingLoader` (as a reader's is)."""
    shape = (*scan, q, q)
    norm = normalize_chunks(chunks, shape, np.uint16, workers=None)
    data = lazy_from_loader(CountingLoader(q, 0, record), shape, np.uint16, norm, "counting")
    return from_array(data, chunks=None)


def recorded(name: str) -> Alive:
    RECORDS[name] = Alive()
    return RECORDS[name]


# --- no raw block is held while the thresholds are fitted ------------------------------------


@pytest.mark.parametrize("output", ["pointlist", "datacube"])
def test_counting_reads_each_chunk_once_and_holds_at_most_one_per_thread(output):
    alive = recorded(f"ahead-{output}")
    dc = counting_scan((32, 32), (2, 32), record=f"ahead-{output}")  # 16 chunks of 128 KiB
    chunk = 2 * 32 * 64 * 64 * 2
    counted = electron_count(dc, DARK, Nsamples=48, output=output, seed=1)
    with dask.config.set(scheduler="threads", num_workers=2):
        result = counted.compute()
    # the 48 drawn frames are read one by one for the fit, then every chunk once, each by the
    # task that counts it; two threads never hold more than two chunks (and a drawn frame)
    assert sorted(alive.reads) == [1] * 48 + [64] * 16
    assert alive.peak <= 2 * chunk + 64 * 64 * 2, alive.peak / chunk
    assert alive.now == 0
    reference = electron_count(counting_scan((32, 32), (2, 32)), DARK, Nsamples=48, seed=1)
    if output == "datacube":
        dense = reference.to_datacube(dtype=bool).values
        np.testing.assert_array_equal(result.values, dense)
        assert dense.sum() > 32 * 32  # electrons found
    else:
        np.testing.assert_array_equal(result.counts().values, reference.counts().values)


def test_counting_after_a_correction_holds_no_block_ahead():
    """A datacube that is not a reader's (dark subtracted): each chunk's read and correction
    run inside the task that counts it, after the thresholds; chunks holding drawn frames are
    made once more by their sampling task, which keeps only the drawn frames."""
    alive = recorded("pipeline")
    dc = counting_scan((32, 32), (2, 32), record="pipeline")
    corrected = pp.subtract_dark(dc, np.full((64, 64), DARK, np.float32))
    chunk = 2 * 32 * 64 * 64 * 2
    counted = electron_count(corrected, 0.0, Nsamples=48, seed=1)
    graph = dict(counted.blocks[0, 0].__dask_graph__())
    with dask.config.set(scheduler="threads", num_workers=2):
        result = counted.compute()
    assert alive.reads.count(64) > 16  # every chunk counted, the sampled ones also sampled
    assert alive.peak <= 2 * chunk, alive.peak / chunk
    ref = electron_count(counting_scan((32, 32), (2, 32)), DARK, Nsamples=48, seed=1)
    np.testing.assert_array_equal(result.counts().values, ref.counts().values)
    # one counting task per chunk, one sampling task per chunk holding drawn frames, the fit,
    # the dark references: no read or correction task of its own
    assert not any("subtract" in str(k) or "counting-" in str(k) for k in graph)


def test_chunks_made_inside_the_task_keep_shared_keys_shared():
    """An in-memory datacube's array is one graph key shared by every chunk: counting passes it
    to each task (no copy of the scan into each task) and gets the same events."""
    cube = _pool(32, 0)[np.arange(64).reshape(8, 8) % POOL]
    dc = s4.from_array(cube, chunks=(2, 8))
    events = electron_count(dc, DARK, Nsamples=16, seed=0)
    graph = dict(events.blocks[0, 0].__dask_graph__())
    values = {k: getattr(v, "value", v) for k, v in graph.items()}  # DataNode or literal
    sources = [k for k, v in values.items() if isinstance(v, np.ndarray) and v.size == cube.size]
    assert len(sources) == 1
    for task in (v for k, v in graph.items() if isinstance(k, tuple) and "events" in k[0]):
        assert sources[0] in task[1:]  # a key every counting task gets
    computed = events.compute()
    ref = electron_count(s4.from_array(cube.copy(), chunks=(8, 8)), DARK, Nsamples=16, seed=0)
    np.testing.assert_array_equal(computed.counts().values, ref.counts().values)


# --- memory follows the chunk size, not the scan size ----------------------------------------


def traced_peak(job) -> float:
    """Peak MiB allocated (tracemalloc) while ``job()`` runs on 2 dask threads."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    with dask.config.set(scheduler="threads", num_workers=2):
        job()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / MiB


def test_peak_memory_follows_the_chunk_size_not_the_scan_size():
    """Before (the thresholds' chunks held, reads run ahead) counting peaked at 31 MiB here,
    42 MiB for the 4x scan; now at two chunks per thread plus what it returns."""

    def count(scan, rows):
        dc = counting_scan(scan, (rows, 64))
        return lambda: electron_count(dc, DARK, Nsamples=16, seed=0).compute()

    def com(scan, rows):
        dc = counting_scan(scan, (rows, 64))
        dark = np.full((64, 64), DARK, np.float32)
        return lambda: center_of_mass(pp.subtract_dark(dc, dark)).com_x.compute()

    chunk = 4 * 64 * 64 * 64 * 2 / MiB  # 2 MiB
    for name, job in (("electron_count", count), ("subtract_dark + CoM", com)):
        job((8, 64), 4)()  # imports and compiled code loaded before measuring
        small = traced_peak(job((64, 64), 4))  # 32 MiB scan, 16 chunks of 2 MiB
        large = traced_peak(job((256, 64), 4))  # 4x the scan: 64 chunks of 2 MiB
        big_chunks = traced_peak(job((64, 64), 16))  # 4x the chunk: 4 chunks of 8 MiB
        # the 4x scan adds only its results (events: ~2 MiB here), never a chunk per chunk
        assert large < small + 3, (name, small, large)
        assert big_chunks > 2.5 * small, (name, small, big_chunks)
        assert small < 8 * chunk, (name, small)


# --- chunks that fit the workers --------------------------------------------------------------

SHAPE = (64, 256, 128, 128)  # uint16: 512 MiB, 8 MiB a scan row


def test_the_working_set_and_the_budget_of_a_task():
    assert task_bytes(1000, 2) == 1000 * (2 + WORK_BYTES_PER_PIXEL)
    workers = Workers(600 * MiB, 1)
    assert workers.per_task == int(600 * MiB * 0.8) - WORKER_BASELINE_BYTES
    assert Workers(600 * MiB, 2).per_task == workers.per_task // 2
    # uint16: 18 bytes a pixel of working set for 2 of data
    assert fitting_bytes(2, workers) == workers.per_task // 18 * 2
    assert fitting_bytes(2, Workers(300 * MiB, 1)) == 0  # the baseline takes it all


def test_auto_chunks_fit_the_workers_and_stay_as_before_without():
    assert auto_chunks(SHAPE, 2, workers=None) == (8, 256, 128, 128)  # 64 MiB, as before
    assert normalize_chunks("auto", SHAPE, np.uint16, workers=None)[0] == (8,) * 8
    for limit, threads in ((600, 1), (600, 2), (1024, 4), (400, 1)):
        workers = Workers(limit * MiB, threads)
        chunks = auto_chunks(SHAPE, 2, workers=workers)
        assert task_bytes(np.prod(chunks), 2) <= workers.per_task, (limit, threads, chunks)
        assert chunks[2:] == (128, 128)
        normalize_chunks("auto", SHAPE, np.uint16, workers=workers)  # accepted
    assert auto_chunks(SHAPE, 2, workers=Workers(600 * MiB, 1)) == (2, 256, 128, 128)
    assert auto_chunks(SHAPE, 2, workers=Workers(600 * MiB, 2)) == (1, 256, 128, 128)
    assert auto_chunks(SHAPE, 2, workers=Workers(400 * MiB, 1)) == (1, 71, 128, 128)
    # roomy workers: the usual 64 MiB
    assert auto_chunks(SHAPE, 2, workers=Workers(16 * 1024 * MiB, 4)) == (8, 256, 128, 128)


def test_chunks_that_cannot_fit_are_refused_saying_what_would():
    workers = Workers(600 * MiB, 2)
    with pytest.raises(ValueError, match=r"chunks: \(8, 128\) frames") as err:
        normalize_chunks((8, 128), SHAPE, np.uint16, workers=workers)
    message = str(err.value)
    assert "288 MiB per task" in message  # 8 x 128 x 128 x 128 pixels x 18 bytes
    assert "600 MiB with 2 thread(s)" in message and "use at most (1, 256) frames" in message
    normalize_chunks((1, 256), SHAPE, np.uint16, workers=workers)  # the advice fits
    with pytest.raises(ValueError, match="chunks: .* use at most"):
        normalize_chunks({"Rx": 4}, SHAPE, np.uint16, workers=workers)
    with pytest.raises(ValueError, match="not even one frame fits"):
        normalize_chunks((1, 1), (4, 4, 4096, 4096), np.float64, workers=workers)
    normalize_chunks((8, 128), SHAPE, np.uint16, workers=None)  # no workers: anything goes


def test_chunks_fit_the_workers_of_the_active_client(tmp_path):
    distributed = pytest.importorskip("distributed")
    path = tmp_path / "scan.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=SHAPE).flush()  # sparse
    assert active_workers() is None
    assert s4.read(path).data.chunksize == (8, 256, 128, 128)
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            memory_limit="600MiB",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster),
    ):
        assert active_workers() == Workers(600 * MiB, 2)
        assert s4.read(path).data.chunksize == (1, 256, 128, 128)
        with pytest.raises(ValueError, match=r"chunks: \(8, 256\) frames .* use at most \(1, 256"):
            s4.read(path, chunks=(8, 256))
        with distributed.Client(cluster, set_as_default=False):  # not the default: no change
            pass
        assert s4.read(path, chunks=(1, 128)).data.chunksize == (1, 128, 128, 128)
    assert active_workers() is None
    assert s4.read(path).data.chunksize == (8, 256, 128, 128)  # as before


# --- the same results on process workers --------------------------------------------------------


def test_counting_on_process_workers_equals_threads(process_client, tmp_path):
    cube = _pool(64, 0)[(7 * np.arange(16)[:, None] + 3 * np.arange(16)[None, :]) % POOL]
    np.save(tmp_path / "scan.npy", cube)
    dc = s4.read(tmp_path / "scan.npy", chunks=(4, 16))
    corrected = pp.subtract_dark(dc, np.full((64, 64), DARK, np.float32))
    for data, dark in ((dc, DARK), (corrected, 0.0)):
        events = electron_count(data, dark, Nsamples=24, seed=2)
        dense = electron_count(data, dark, Nsamples=24, seed=2, output="datacube")
        threads = dask.compute(events.counts().data, dense.data, scheduler="threads")
        cluster = process_client.compute([events.counts().data, dense.data], sync=True)
        np.testing.assert_array_equal(cluster[0], threads[0])
        np.testing.assert_array_equal(cluster[1], threads[1])
        assert threads[0].sum() > 16 * 16
