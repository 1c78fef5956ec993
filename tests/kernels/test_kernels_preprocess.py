"""Kernels of binning, shifting and resampling, against independent numpy/scipy references.

The cupy branches are exercised here too, with numpy standing in for cupy (``FakeCupy``): the
code that takes them is the same code that runs on a GPU chunk.
"""

import numpy as np
import pytest
import scipy.ndimage
from fakecupy import FakeCupy

from stem4d_dask.kernels import binning, fft, resample, shift
from stem4d_dask.kernels.binning import accumulator_dtype, bin_frames, bin_scan, narrow
from stem4d_dask.kernels.resample import bilinear_resample, fourier_resample, pad_frames
from stem4d_dask.kernels.shift import shift_frames


@pytest.fixture(params=["numpy", "cupy-path"])
def backend(request, monkeypatch):
    if request.param == "cupy-path":
        fake = FakeCupy()
        for module in (binning, fft, resample, shift):
            monkeypatch.setattr(module, "array_module", lambda x, fake=fake: fake)
    return request.param


@pytest.fixture(params=[True, False], ids=["fftw", "scipy"])
def fft_backend(request):
    if request.param and fft.pyfftw is None:
        pytest.skip("pyfftw not installed")
    fft.use_fftw(request.param)
    yield request.param
    fft.use_fftw(True)


def test_accumulator_dtype_never_wraps():
    assert accumulator_dtype(np.uint16, 4) == np.uint32
    assert accumulator_dtype(np.uint8, 4) == np.uint16
    assert accumulator_dtype(np.uint8, 257) == np.uint16  # 255*257 == 65535 fits
    assert accumulator_dtype(np.uint8, 258) == np.uint32
    assert accumulator_dtype(np.int16, 4) == np.int32
    assert accumulator_dtype(np.bool_, 4) == np.uint8
    assert accumulator_dtype(np.float32, 4) == np.float32
    assert accumulator_dtype(np.float16, 4) == np.float32
    assert accumulator_dtype(np.uint64, 4) == np.uint64


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64, bool])
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_bin_frames_equals_reshape_sum(dtype, factor, backend):
    rng = np.random.default_rng(factor)
    block = rng.integers(0, 255 if dtype is not bool else 2, (3, 2, 11, 8)).astype(dtype)
    out = bin_frames(block, factor)
    ox, oy = 11 // factor, 8 // factor
    ref = block[..., : ox * factor, : oy * factor].reshape(3, 2, ox, factor, oy, factor)
    ref = ref.astype(np.float64).sum(axis=(3, 5))
    assert out.shape == (3, 2, ox, oy) and out.dtype == accumulator_dtype(dtype, factor**2)
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_bin_frames_checks_narrowing():
    block = np.full((1, 4, 4), 200, np.uint8)
    assert bin_frames(block, 2).max() == 800  # uint16, no wrap
    with pytest.raises(OverflowError, match="uint8"):
        bin_frames(block, 2, np.uint8)
    assert bin_frames(block // 4, 2, np.uint8).max() == 200  # fits: allowed
    assert bin_frames(block, 2, np.float32).dtype == np.float32
    with pytest.raises(OverflowError, match="int8"):
        narrow(np.array([-200], np.int16), np.int8)


def test_bin_scan_equals_reshape_sum(backend):
    block = np.random.default_rng(0).integers(0, 2**16, (4, 6, 3, 5)).astype(np.uint16)
    out = bin_scan(block, 2)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, block.reshape(2, 2, 3, 2, 3, 5).sum(axis=(1, 3)))


def reference_shift(ar, xs, ys, periodic=True, bilinear=False):
    """py4DSTEM's get_shifted_ar written out plainly (complex FFT, 2D ramp, rolls)."""
    nx, ny = ar.shape
    qx, qy = np.meshgrid(np.fft.fftfreq(nx), np.fft.fftfreq(ny), indexing="ij")
    if bilinear:
        x0, y0 = int(np.floor(xs)), int(np.floor(ys))
        wx, wy = xs - x0, ys - y0
        out = sum(
            w * np.roll(ar, (x0 + dx, y0 + dy), axis=(0, 1))
            for w, dx, dy in (
                ((1 - wx) * (1 - wy), 0, 0),
                (wx * (1 - wy), 1, 0),
                ((1 - wx) * wy, 0, 1),
                (wx * wy, 1, 1),
            )
        )
    else:
        out = np.real(np.fft.ifft2(np.fft.fft2(ar) * np.exp(-2j * np.pi * (qx * xs + qy * ys))))
    if not periodic:
        xr, yr = int(np.round(xs)), int(np.round(ys))
        out[: max(xr, 0)] = 0
        out[nx + min(xr, 0) :] = 0
        out[:, : max(yr, 0)] = 0
        out[:, ny + min(yr, 0) :] = 0
    return out


@pytest.mark.parametrize("shape", [(10, 13), (11, 9), (8, 8), (7, 6)])
@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("bilinear", [False, True])
def test_shift_frames_matches_reference(shape, periodic, bilinear, fft_backend, backend):
    rng = np.random.default_rng(sum(shape))
    frames = rng.normal(50, 10, (6, *shape))
    xs, ys = rng.uniform(-3, 3, 6), rng.uniform(-3, 3, 6)
    xs[:3], ys[:3] = (0.5, 2.5, -1.5), (2.5, -0.5, 4.0)  # half-pixel rounding cases
    ref = np.stack(
        [
            reference_shift(f, x, y, periodic, bilinear)
            for f, x, y in zip(frames, xs, ys, strict=True)
        ]
    )
    out64 = shift_frames(frames, xs, ys, periodic=periodic, bilinear=bilinear, dtype=np.float64)
    np.testing.assert_allclose(out64, ref, atol=1e-9)
    out32 = shift_frames(frames.astype(np.float32), xs, ys, periodic=periodic, bilinear=bilinear)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, ref, atol=2e-4 * np.abs(ref).max())


def test_shift_frames_integer_shift_is_a_roll_and_nan_gives_nan():
    frames = np.random.default_rng(3).integers(0, 100, (2, 3, 9, 8)).astype(np.uint16)
    out = shift_frames(frames, 2.0, -3.0, dtype=np.float64)
    np.testing.assert_allclose(out, np.roll(frames, (2, -3), axis=(2, 3)), atol=1e-9)
    xs = np.array([[0.0, np.nan, 1.0], [0.0, 0.0, 0.0]])
    for bilinear in (False, True):
        out = shift_frames(frames, xs, 0.0, bilinear=bilinear)
        assert np.isnan(out[0, 1]).all() and np.isfinite(np.delete(out.reshape(6, -1), 1, 0)).all()


def test_bilinear_resample_equals_scipy_zoom(backend):
    rng = np.random.default_rng(4)
    frames = rng.normal(size=(3, 10, 13))
    for size in [(20, 26), (5, 7), (14, 6), (10, 13), (23, 4)]:
        out = bilinear_resample(frames, size, dtype=np.float64)
        zoom = (size[0] / 10, size[1] / 13)
        ref = np.stack(
            [scipy.ndimage.zoom(f, zoom, order=1, mode="nearest", grid_mode=True) for f in frames]
        )
        assert ref.shape[1:] == size
        np.testing.assert_allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("size", [(20, 26), (7, 9), (10, 13), (16, 5)])
def test_fourier_resample_keeps_values_or_sums(size, backend):
    rng = np.random.default_rng(5)
    frames = rng.normal(100, 10, (4, 10, 13))
    out = fourier_resample(frames, size, dtype=np.float64)
    assert out.shape == (4, *size)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), frames.mean(axis=(1, 2)), rtol=1e-12)
    sums = fourier_resample(frames, size, True, np.float64).sum(axis=(1, 2))
    np.testing.assert_allclose(sums, frames.sum(axis=(1, 2)), rtol=1e-12)
    if size == (20, 26):  # upsampling by 2 then taking every other sample: the original
        np.testing.assert_allclose(out[:, ::2, ::2], frames, atol=0.5)
    if size == (10, 13):
        np.testing.assert_allclose(out, frames, atol=1e-9)


def test_band_limited_signal_is_resampled_exactly():
    x = np.arange(16)
    frame = np.cos(2 * np.pi * 3 * x / 16)[:, None] * np.sin(2 * np.pi * 2 * x / 16)[None, :]
    out = fourier_resample(frame[None], (32, 32), dtype=np.float64)[0]
    fine = np.arange(32) / 2
    ref = np.cos(2 * np.pi * 3 * fine / 16)[:, None] * np.sin(2 * np.pi * 2 * fine / 16)[None, :]
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_pad_frames(backend):
    block = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(1, 2, 3, 4)
    out = pad_frames(block, (1, 0), (2, 3))
    assert out.shape == (1, 2, 6, 7) and out.dtype == np.uint16
    np.testing.assert_array_equal(out[..., 1:4, 0:4], block)
    assert out.sum() == block.sum()
