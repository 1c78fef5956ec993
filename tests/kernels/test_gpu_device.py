"""``to_device`` / ``to_host`` and every operation on GPU (cupy) chunks, against the CPU.

The ``gpu`` fixture runs each test three ways:

- ``cuda``: real cupy on a CUDA device, with our numba.cuda kernels (centre of mass, binning,
  counting); skipped, saying why, without cupy, a device or numba.cuda's compiler libraries;
- ``cupy``: real cupy with the kernels' cupy array operations instead (``STEM4D_CUDA_KERNELS=0``
  does the same for a user); skipped without cupy and a device;
- ``stand-in``: ``tests/strictcupy.py``, numpy posing as cupy and refusing what cupy refuses
  (implicit host conversion, numpy arrays mixed in), so CI runs the same pipelines without a
  GPU and fails where a GPU user would.

Every accessor operation on the data is in ``OPS`` (checked by the last test).
"""

import sys
import threading
import weakref

import dask
import numpy as np
import pytest
import xarray as xr
from dask.delayed import Delayed
from strictcupy import installed

import stem4d_dask as s4
from stem4d_dask import device
from stem4d_dask.accessor import METHODS
from stem4d_dask.backend import to_gpu
from stem4d_dask.detectors import annular_segmented_detectors, circle_mask
from stem4d_dask.events import ElectronEvents
from stem4d_dask.kernels import cuda_launch
from stem4d_dask.ragged import RaggedFrames
from stem4d_dask.synthetic_counting import counting_scan

SHAPE = (6, 5, 16, 16)


def _real_cupy():
    """Real cupy with a device, else a ``pytest.skip`` saying what is missing."""
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # ImportError, CUDARuntimeError
        pytest.skip(f"needs cupy and a CUDA device: {type(err).__name__}: {err}")
    if count < 1:
        pytest.skip("needs a CUDA device: cupy sees none")
    return cupy


@pytest.fixture(params=["cuda", "cupy", "stand-in"])
def gpu(request, monkeypatch):
    """The array module the chunks move to; yields its name."""
    if request.param == "stand-in":
        monkeypatch.setattr(cuda_launch, "enabled", lambda: False)
        with installed():
            yield request.param
        return
    _real_cupy()
    if request.param == "cuda":
        if not cuda_launch.enabled():
            pytest.skip("numba.cuda kernels unavailable here (see the RuntimeWarning)")
    else:
        monkeypatch.setattr(cuda_launch, "enabled", lambda: False)
    yield request.param


@pytest.fixture
def dc():
    scan = counting_scan(SHAPE[:2], SHAPE[2:], electrons_per_pixel=0.03, chunks=(2, 5), seed=3)
    return s4.from_array(
        scan.datacube.values,  # sparse electrons on a dark offset: every operation applies
        chunks=(2, 5),
        r_pixel_size=1.5,
        r_units="A",
        q_pixel_size=0.5,
        q_units="mrad",
        energy=300e3,
    )


def _is_cupy(array) -> bool:
    return type(array).__module__.split(".")[0] == "cupy"


def test_to_device_and_back_keep_values_coords_and_attrs(gpu, dc):
    ranged = dc.stem4d.with_value_range((0, 4095))
    big_endian = dc.astype(">u2")
    for cube in (ranged, big_endian):
        moved = cube.stem4d.to_device("gpu")
        assert _is_cupy(moved.data._meta) and moved.dtype == np.uint16  # cupy: native order
        tie = "value_range_of"  # the dask array a value range belongs to: the moved one
        assert {k: v for k, v in moved.attrs.items() if k != tie} == {
            k: v for k, v in cube.stem4d.checked().attrs.items() if k != tie
        }
        assert all(moved[d].identical(cube[d]) for d in cube.dims)
        assert moved.stem4d.to_device() is moved  # already there
        back = moved.stem4d.to_host()
        assert type(back.data._meta) is np.ndarray
        np.testing.assert_array_equal(back.values, dc.values)
        assert cube.stem4d.to_host() is cube and type(cube.data._meta) is np.ndarray
    assert big_endian.dtype == np.dtype(">u2")  # inputs untouched
    assert ranged.stem4d.to_device().stem4d.value_range() == (0, 4095)
    assert ranged.stem4d.to_device().stem4d.to_device("cpu").stem4d.value_range() == (0, 4095)


def test_to_host_of_results_lazy_and_computed(gpu, dc):
    com = dc.stem4d.to_device().stem4d.center_of_mass()
    assert _is_cupy(com.com_x.data._meta) and device.on_gpu(com)
    lazy = device.to_host(com)
    assert not device.on_gpu(lazy)
    computed = com.compute()
    assert _is_cupy(computed.com_x.data)
    for result in (lazy.compute(), device.to_host(computed)):
        xr.testing.assert_identical(result, dc.stem4d.center_of_mass().compute())


def test_to_device_refuses_other_devices_and_says_what_a_gpu_needs(dc, monkeypatch):
    with pytest.raises(ValueError, match=r"device must be one of .*got 'tpu'"):
        dc.stem4d.to_device("tpu")
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if cupy were not installed
    with pytest.raises(ImportError, match=r"needs cupy and a CUDA GPU .*stem4d_dask\[gpu\]"):
        dc.stem4d.to_device("gpu")
    with pytest.raises(TypeError, match="obj must be an xarray"):
        device.to_host(dc.values)


def test_each_chunk_is_read_moved_and_used_in_one_task(gpu, dc, tmp_path):
    """A reader's chunk feeds its transfer task, which feeds the operation's task directly
    (no other dependency but the shared mask); dask fuses the three into one task per chunk."""
    np.save(tmp_path / "scan.npy", dc.values)
    on_disk = s4.read(tmp_path / "scan.npy", chunks=(2, 5))
    com = on_disk.stem4d.to_device().stem4d.center_of_mass(circle_mask(on_disk, 5))
    graph = dict(com.com_x.data.__dask_graph__())
    layers = com.com_x.data.__dask_graph__().dependencies
    (moved,) = [name for name in layers if name.startswith("to_device-")]
    (mapped,) = [name for name in layers if name.startswith("center_of_mass-")]
    assert layers[mapped] >= {moved} and layers[moved] == {on_disk.data.name}
    n_chunks = on_disk.data.npartitions
    assert len([k for k in graph if k[0] == moved]) == n_chunks
    (optimized,) = dask.optimize(com.com_x.data)
    tasks = [k for k, v in dict(optimized.__dask_graph__()).items() if "to_device" in str(k)]
    assert len(tasks) == n_chunks  # read + move + centre of mass: one fused task per chunk


def test_at_most_one_chunk_per_worker_thread_on_the_device(gpu, dc, monkeypatch):
    """Peak number of moved chunks alive at once, counted as the threaded scheduler (2
    threads) runs centre of mass over 15 chunks: never more than the threads."""
    lock, live, peak = threading.Lock(), [0], [0]

    def release():
        with lock:
            live[0] -= 1

    def counted(block):
        out = to_gpu(block)
        try:
            weakref.finalize(out, release)
        except TypeError:  # an array type without weak references
            pytest.skip(f"{type(out).__name__} takes no weak references: cannot count")
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        return out

    monkeypatch.setattr(device, "to_gpu", counted)
    small_chunks = dc.chunk({"Rx": 2, "Ry": 1})
    com = device.to_host(small_chunks.stem4d.to_device().stem4d.center_of_mass())
    with dask.config.set(scheduler="threads", num_workers=2):
        com.compute()
    assert small_chunks.data.npartitions == 15
    assert 1 <= peak[0] <= 2 and live[0] == 0


# ---- every operation on GPU chunks -----------------------------------------------------------

DARK = np.full(SHAPE[2:], 100.0)
HOT = np.zeros(SHAPE[2:], bool)
HOT[3, 4] = True
SEGMENTS = annular_segmented_detectors(300e3, SHAPE[2:], (0.5, 0.5), 4)
SHIFTS = (np.full(SHAPE[:2], 1.5), np.full(SHAPE[:2], -0.5))
CENTRE = (np.full(SHAPE[:2], 7.2), np.full(SHAPE[:2], 8.1))
ELLIPSE = (8, 8, 5, 4, 0.3)


def _dpc(d):
    """DPC preprocessing's results: the measured, fitted and normalised CoM, the rotation."""
    dpc = d.stem4d.DPC(verbose=False).preprocess(plot_center_of_mass=False, plot_rotation=False)
    fields = ("com_measured_x", "com_measured_y", "com_fitted_x", "com_fitted_y", "com_x", "com_y")
    rotation = np.array([dpc.rotation_deg, dpc.transpose])
    return (*(getattr(dpc, f) for f in fields), rotation)


def _frame_summary(frame):
    """Several outputs of one frame (cupy in, cupy out)."""
    return {"total": frame.sum(), "profile": frame.max(axis=0)}


def _bright_pixels(frame):
    """A ragged output: the pixels above the frame's mean."""
    xs, ys = (frame > frame.mean()).nonzero()
    return {"qx": xs, "qy": ys}


def _frame_max(frame):
    return frame


def _pair_max(a, b):
    return a * (a >= b) + b * (b > a)


def _written(d, suffix, **options):
    """``d`` written (to_zarr or to_h5, a file per device in the working directory) and read
    back."""
    path = f"{'gpu' if device.on_gpu(d) else 'cpu'}.{suffix}"
    written = getattr(d.stem4d, "to_zarr" if suffix == "zarr" else "to_h5")(path, **options)
    return s4.read(written)


# name -> (operation on a datacube, tolerance relative to the largest value; 0: exact; float32
# FFTs and interpolation: 1e-5, cuFFT and FFTW round differently)
OPS = {
    "set_scan_shape": (lambda d: d.stem4d.set_scan_shape(5, 6), 0),
    "swap_RQ": (lambda d: d.stem4d.swap_RQ(), 0),
    "swap_Rxy": (lambda d: d.stem4d.swap_Rxy(), 0),
    "swap_Qxy": (lambda d: d.stem4d.swap_Qxy(), 0),
    "bin_data_diffraction": (lambda d: d.stem4d.bin_Q(2), 0),
    "bin_Q_float32": (lambda d: d.stem4d.bin_Q(3, dtype=np.float32), 0),
    "bin_data_mmap": (lambda d: d.stem4d.bin_data_mmap(2), 0),
    "bin_data_real": (lambda d: d.stem4d.bin_R(2), 0),
    "thin_data_real": (lambda d: d.stem4d.thin_R(2), 0),
    "resample_data_diffraction": (lambda d: d.stem4d.resample_Q(resampling_factor=1.5), 1e-5),
    "resample_fourier": (
        lambda d: d.stem4d.resample_Q(output_size=(20, 20), method="fourier"),
        1e-5,
    ),
    "pad_data_diffraction": (lambda d: d.stem4d.pad_Q(output_size=(20, 20)), 0),
    "datacube_diffraction_shift": (lambda d: d.stem4d.datacube_diffraction_shift(*SHIFTS), 1e-5),
    "shift_bilinear": (lambda d: d.stem4d.datacube_diffraction_shift(*SHIFTS, bilinear=True), 1e-5),
    "center_patterns": (lambda d: d.stem4d.center_patterns(*CENTRE), 1e-5),
    "median_filter_masked_pixels": (lambda d: d.stem4d.median_filter_masked_pixels(HOT), 0),
    "subtract_dark": (lambda d: d.stem4d.subtract_dark(DARK), 0),
    "get_1D_polar_background": (lambda d: d.stem4d.get_1D_polar_background(ELLIPSE), 1e-12),
    "subtract_polar_background": (lambda d: d.stem4d.subtract_polar_background(ELLIPSE), 1e-6),
    "subtract_fixed_polar_background": (
        lambda d: d.stem4d.subtract_polar_background(ELLIPSE, per_pattern=False),
        1e-6,
    ),
    "electron_count": (lambda d: d.stem4d.electron_count(DARK, Nsamples=10, seed=2), "events"),
    "count_to_datacube": (
        lambda d: d.stem4d.electron_count(
            DARK, Nsamples=10, seed=2, output="datacube", binfactor=2
        ),
        0,
    ),
    "center_of_mass": (lambda d: d.stem4d.center_of_mass(), 0),
    "center_of_mass_masked": (lambda d: d.stem4d.center_of_mass(circle_mask(d, 5)), 0),
    "mean_diffraction_pattern": (lambda d: d.stem4d.mean_diffraction_pattern(), 1e-12),
    "virtual_image": (lambda d: d.stem4d.virtual_image(circle_mask(d, 5)), 0),
    "virtual_images": (lambda d: d.stem4d.virtual_images(SEGMENTS), 0),
    "segmented_com": (lambda d: d.stem4d.segmented_com(SEGMENTS), 1e-12),
    "monolithic_com": (lambda d: d.stem4d.monolithic_com(SEGMENTS), 1e-12),
    # 9 hot pixels in the mean pattern of `dc`, repaired in every frame
    "filter_hot_pixels": (lambda d: d.stem4d.filter_hot_pixels(10, return_mask=True), 0),
    "get_darkreference": (lambda d: d.stem4d.get_darkreference(5, width_x=2, seed=1), 0),
    "get_darkreference_xy": (
        lambda d: d.stem4d.get_darkreference(5, width_x=2, width_y=3, seed=1),
        0,
    ),
    "get_background_streaks": (lambda d: d.stem4d.get_background_streaks(5, 2, seed=1), 0),
    "get_background_streaks_y": (
        lambda d: d.stem4d.get_background_streaks(5, 2, direction="y", seed=1),
        0,
    ),
    "get_bksbtr_DP": (lambda d: d.stem4d.get_bksbtr_DP(DARK, 1, 2), 0),
    "DPC": (_dpc, 0),
    "crop_data_diffraction": (lambda d: d.stem4d.crop_data_diffraction(2, 12, 3, 16), 0),
    "crop_data_real": (lambda d: d.stem4d.crop_data_real(1, 5, 0, 3), 0),
    "crop_Q": (lambda d: d.stem4d.crop_Q((2, 12, 3, 16)), 0),
    "crop_R": (lambda d: d.stem4d.crop_R((1, 5, 0, 3)), 0),
    "map_frames": (lambda d: d.stem4d.map_frames(_frame_summary), 0),
    "map_frames_ragged": (lambda d: d.stem4d.map_frames(_bright_pixels, ragged=True), 0),
    "reduce_frames": (lambda d: d.stem4d.reduce_frames(_frame_max, _pair_max), 0),
    "find_peaks": (lambda d: d.stem4d.find_peaks(maxNumPeaks=None), 1e-12),
    "to_zarr": (lambda d: _written(d, "zarr", overwrite=True, progress=False), 0),
    "to_h5": (lambda d: _written(d, "h5", progress=False), 0),
}
# accessor methods that are no operation on the data (calibration, description, devices)
NOT_DATA = {
    "with_calibration",
    "with_q_units",
    "describe",
    "checked",
    "value_range",
    "with_value_range",
    "to_device",
    "to_host",
}


def _values(result) -> list[np.ndarray]:
    if isinstance(result, ElectronEvents):
        blocks = result.compute().blocks.flat
        return [np.asarray(getattr(b, f)) for b in blocks for f in ("indptr", "qx", "qy")]
    if isinstance(result, RaggedFrames):
        blocks = result.compute().blocks.flat
        return [a for b in blocks for a in (b.indptr, *b.fields.values())]
    if isinstance(result, Delayed):
        from stem4d_dask.backend import to_host

        return [to_host(result.compute())]
    if isinstance(result, tuple):
        return [v for part in result for v in _values(part)]
    if isinstance(result, np.ndarray):
        return [result]
    result = device.to_host(result).compute()
    if isinstance(result, xr.Dataset):
        return [result[k].values for k in sorted(result.data_vars)]
    return [result.values]


@pytest.mark.parametrize("name", sorted(OPS))
def test_operation_on_gpu_chunks_equals_cpu(gpu, dc, name, tmp_path, monkeypatch):
    operation, tolerance = OPS[name]
    monkeypatch.chdir(tmp_path)  # writers write here
    cpu = _values(operation(dc))
    with_gpu = _values(operation(dc.stem4d.to_device()))
    assert len(with_gpu) == len(cpu)
    for a, b in zip(with_gpu, cpu, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        if tolerance == "events" and gpu != "cuda":  # cupy array operations: float64 centroids
            np.testing.assert_allclose(a, b, atol=1e-5)
        elif tolerance in (0, "events"):
            np.testing.assert_array_equal(a, b)
        else:
            scale = np.nanmax(np.abs(b)) if b.size else 1
            np.testing.assert_allclose(a, b, rtol=0, atol=tolerance * scale)


def test_every_accessor_operation_is_checked_on_gpu_chunks():
    assert set(METHODS) - NOT_DATA <= set(OPS)
