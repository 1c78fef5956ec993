"""Electron counting (py4DSTEM's ``preprocess.electroncount`` names and parameters, working).

py4DSTEM 0.14.18's counting does not run (``reference/py4dstem-behaviour.md`` §2); this is the
algorithm it intends, fixed and lazy:

1. thresholds (:func:`calculate_thresholds`): ``Nsamples`` random frames (``seed``; scan
   positions unravelled correctly for any scan shape; only their chunks are read) minus the
   dark reference (float, no int16 wrap-around) pooled into one histogram over its real range,
   a Gaussian fitted to the noise peak at the bin centres: ``thresh_bkgrnd = mu + Nb sigma``,
   ``thresh_xray = mean + Nx std``, but at least three typical electron pixels above ``mu``
   (a sample without X-rays has a small std, which would cut electrons);
2. per frame: ``w = frame - dark``; an event is a pixel with ``thresh_bkgrnd < w <
   thresh_xray`` that is a strict maximum of its 8 neighbours (ties to the first pixel in C
   order) with no neighbour at the X-ray level;
3. ``sub_pixel``: the centroid of ``max(w - mu - 1.5 sigma, 0)`` (``mu``, ``sigma``: the
   fitted noise peak) in the 3x3 window around the maximum, so read noise and a dark
   reference off by a constant barely move it;
4. ``binfactor``: positions mapped to binned pixels (remainder cropped).

``output='datacube'`` gives a lazy counted datacube (bool for ``binfactor=1``, uint8 counts
otherwise); ``output='pointlist'`` an :class:`~stem4d_dask.events.ElectronEvents` (CSR per scan
chunk). Both are one task per chunk, after one small task that fits the thresholds.

py4DSTEM's converters between the two, :func:`counted_datacube_to_pointlistarray` and
:func:`counted_pointlistarray_to_datacube` (broken in 0.14.18, see
``reference/py4dstem-behaviour.md`` §2.5-2.6), map to :meth:`ElectronEvents.from_datacube` and
:meth:`ElectronEvents.to_datacube`: exact inverses for any scan shape.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .. import coords as cal
from ..backend import native, native_dtype, require_cupy
from ..checks import detector_array, flag, positive_int
from ..datacube import Q_DIMS, R_DIMS, calibration_attrs
from ..events import ElectronEvents
from ..graph import drawn_frames, frame_blocks, rebuild, single_key
from ..kernels.binning import bin_frames
from ..kernels.counting import count_frames, events_to_dense, fit_thresholds, pooled_values

OUTPUTS = ("pointlist", "datacube")
CENTROID_FLOOR_NSIGMA = 1.5  # sub-pixel centroids weigh w - (mu + 1.5 sigma): noise stays out


def calculate_thresholds(
    datacube,
    darkreference,
    Nsamples=20,
    thresh_bkgrnd_Nsigma=4,
    thresh_xray_Nsigma=10,
    return_params=False,
    seed=None,
):
    """``(thresh_bkgrnd, thresh_xray)`` in dark-subtracted counts (see the module docstring),
    or ``(thresh_bkgrnd, thresh_xray, counts, edges, (A, mu, sigma))`` with ``return_params``.

    Computes now: it reads the chunks holding the ``Nsamples`` drawn frames (a small, global
    step); :func:`electron_count` uses the same computation lazily.
    """
    datacube, data = frame_blocks(datacube)
    result = _thresholds(
        datacube, data, darkreference, Nsamples, thresh_bkgrnd_Nsigma, thresh_xray_Nsigma, seed
    ).compute()
    return result if return_params else result[:2]


def electron_count(
    datacube,
    darkreference,
    Nsamples=40,
    thresh_bkgrnd_Nsigma=4,
    thresh_xray_Nsigma=10,
    binfactor=1,
    sub_pixel=True,
    output="pointlist",
    seed=None,
):
    """Count electrons in every pattern, lazily (see the module docstring).

    darkreference : ``(Qx, Qy)`` dark frame (numpy or DataArray, float allowed), counts.
    binfactor : detector binning of the events (int >= 1).
    output : ``'pointlist'`` -> :class:`~stem4d_dask.events.ElectronEvents` (positions float32
        with ``sub_pixel``, else uint16); ``'datacube'`` -> counted datacube, calibrated
        (``q_pixel_size`` x ``binfactor``).
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    datacube, data = frame_blocks(datacube)
    b = positive_int(binfactor, "binfactor")
    qx, qy = data.shape[2:]
    if b > min(qx, qy):
        raise ValueError(f"binfactor {b} is larger than the detector {qx} x {qy}")
    thresholds = _thresholds(
        datacube, data, darkreference, Nsamples, thresh_bkgrnd_Nsigma, thresh_xray_Nsigma, seed
    )
    dark = _dark(darkreference, datacube)
    options = dict(sub_pixel=bool(sub_pixel), binfactor=b)
    detector = (qx // b, qy // b)
    coords = {d: cal.binned(datacube.coords[d], b) for d in Q_DIMS}
    if output == "datacube":
        dtype = np.dtype(bool) if b == 1 else np.dtype(np.uint8)
        counted = data.map_blocks(
            _count_dense,
            dark,
            thresholds,
            detector=detector,
            out_dtype=dtype,
            chunks=data.chunks[:2] + tuple((n,) for n in detector),
            dtype=dtype,
            meta=np.empty((0,) * 4, dtype),
            token="electron_count",
            **options,
        )
        return rebuild(
            datacube, counted, coords, (0, 1 if b == 1 else min(b * b, 255)), scale={"q": b}
        )
    blocks = data.to_delayed()[:, :, 0, 0]
    counted = np.empty(blocks.shape, dtype=object)
    for index in np.ndindex(blocks.shape):
        counted[index] = dask.delayed(_count_events)(blocks[index], dark, thresholds, **options)
    return ElectronEvents.from_blocks(
        counted,
        data.chunks[:2],
        detector,
        bool(sub_pixel),
        calibration_attrs(datacube.attrs),
        coords={**{d: datacube.coords[d] for d in R_DIMS}, **coords},
    )


def counted_datacube_to_pointlistarray(counted_datacube, subpixel=False) -> ElectronEvents:
    """py4DSTEM's converter, working: the events of a counted datacube, lazily.

    counted_datacube : datacube, or numpy / dask 4D array ``(Rx, Ry, Qx, Qy)``, bool or
        non-negative integer counts (a count ``c`` gives ``c`` events at that pixel).
    subpixel : only marks the positions as float32 sub-pixel coordinates (same values).

    Returns an :class:`ElectronEvents` (py4DSTEM: a PointListArray with fields ``qx``, ``qy``).
    """
    return ElectronEvents.from_datacube(counted_datacube, subpixel=subpixel)


def counted_pointlistarray_to_datacube(
    counted_pointlistarray, shape, subpixel=False, dtype=None
) -> xr.DataArray:
    """py4DSTEM's converter, working for every scan shape: a lazy dense datacube of ``shape``
    ``(Rx, Ry, Qx, Qy)`` (py4DSTEM 0.14.18 allocated ``(Rx, Rx, Qx, Qy)``).

    ``shape`` must equal the events' scan and detector shapes. ``subpixel`` is py4DSTEM's flag
    (there it had to be False); here the events know whether they are sub-pixel, and sub-pixel
    events fall in pixel ``rint(q)``. ``dtype``: None -> bool, as py4DSTEM (the inverse of
    :func:`counted_datacube_to_pointlistarray` for bool cubes); an integer dtype gives counts
    (the inverse for integer cubes). See :meth:`ElectronEvents.to_datacube`.
    """
    if not isinstance(counted_pointlistarray, ElectronEvents):
        raise TypeError(
            "counted_pointlistarray must be an ElectronEvents, got "
            f"{type(counted_pointlistarray).__name__}"
        )
    flag(subpixel, "subpixel")
    events = counted_pointlistarray
    expected = (*events.scan_shape, *events.detector_shape)
    try:
        given = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be 4 ints (Rx, Ry, Qx, Qy), got {shape!r}") from None
    if given != expected:
        raise ValueError(
            f"shape {tuple(shape)} does not match the events' scan and detector shape {expected}"
        )
    return events.to_datacube(dtype=dtype)


def _thresholds(datacube, data, darkreference, n_samples, nb, nx, seed):
    """Delayed ``(thresh_bkgrnd, thresh_xray, counts, edges, params)``."""
    for name, value in (("thresh_bkgrnd_Nsigma", nb), ("thresh_xray_Nsigma", nx)):
        if not np.isscalar(value) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    dark = _dark(darkreference, datacube)
    _, parts = drawn_frames(data, n_samples, np.random.default_rng(seed), "Nsamples")
    values = dask.delayed(pooled_values)(parts, dark)
    return dask.delayed(fit_thresholds, nout=5)(values, float(nb), float(nx))


def _dark(darkreference, datacube):
    """The dark reference as one delayed float32 ``(Qx, Qy)`` array (a number is broadcast;
    DataArrays are aligned by dim name and coords); lazy references stay lazy. NaN or inf
    raise ``ValueError`` naming ``darkreference`` (when computed, for lazy ones)."""
    if np.ndim(darkreference) == 0 and not isinstance(darkreference, xr.DataArray | da.Array):
        darkreference = np.full(datacube.shape[2:], darkreference, dtype=np.float32)
    dark = detector_array(darkreference, datacube, "darkreference")
    return single_key(dark.astype(np.float32))


def _count_events(block, dark, thresholds, *, sub_pixel, binfactor):
    _, mu, sigma = thresholds[4]
    return count_frames(
        block,
        dark,
        thresholds[0],
        thresholds[1],
        sub_pixel=sub_pixel,
        binfactor=binfactor,
        centroid_floor=mu + CENTROID_FLOOR_NSIGMA * sigma,
    )


def _count_dense(block, dark, thresholds, *, detector, out_dtype, sub_pixel, binfactor):
    events = count_frames(block, dark, thresholds[0], thresholds[1], sub_pixel=False)
    dense = events_to_dense(events, block.shape[2:], np.bool_ if binfactor == 1 else np.uint8)
    if binfactor == 1:
        return dense
    return bin_frames(dense, binfactor, out_dtype)


def torch_bin(array, device, factor=2):
    """Bin the last two axes of ``array`` by ``factor`` (sum, integers widened) on ``device``:
    ``'cpu'`` (numpy) or ``'cuda'``/``'gpu'`` (cupy; py4DSTEM used torch). Kept by name."""
    factor = positive_int(factor, "factor")
    if str(device).startswith(("cuda", "gpu")):
        cupy = require_cupy("torch_bin")
        array = cupy.asarray(native(array))  # cupy misreads other byte orders
    elif device != "cpu":
        raise ValueError(f"device must be 'cpu', 'cuda' or 'gpu', got {device!r}")
    return bin_frames(array, factor)


def electron_count_GPU(
    datacube,
    darkreference,
    Nsamples=40,
    thresh_bkgrnd_Nsigma=4,
    thresh_xray_Nsigma=10,
    binfactor=1,
    sub_pixel=True,
    output="pointlist",
    seed=None,
):
    """:func:`electron_count` with the chunks moved to the GPU (cupy); same results. Raises
    ``ImportError`` saying what is missing when cupy or a CUDA device is not available."""
    cupy = require_cupy("electron_count_GPU")
    datacube, data = frame_blocks(datacube)
    gpu = rebuild(
        datacube, data.map_blocks(lambda b: cupy.asarray(native(b)), dtype=native_dtype(data.dtype))
    )
    return electron_count(
        gpu,
        darkreference,
        Nsamples,
        thresh_bkgrnd_Nsigma,
        thresh_xray_Nsigma,
        binfactor,
        sub_pixel,
        output,
        seed,
    )
