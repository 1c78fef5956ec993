"""Electron counting (py4DSTEM's ``preprocess.electroncount`` names and parameters, working).

py4DSTEM 0.14.18's counting does not run (``reference/py4dstem-behaviour.md`` §2); this is the
algorithm it intends, fixed and lazy:

1. thresholds (:func:`calculate_thresholds`): ``Nsamples`` random frames (``seed``; scan
   positions unravelled correctly for any scan shape; only those frames are kept) minus the
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

Memory stays bounded by the chunk size whatever the scan size: every counting task waits for
the thresholds, so each makes its own chunk (a reader's read, and the corrections applied to
it) inside itself, and no raw block exists before the thresholds are known (a read task of its
own would run ahead, and every block would wait in memory). The thresholds' frames are read
one by one from a reader, or taken from their chunk by a task that keeps only them.

py4DSTEM's converters between the two, :func:`counted_datacube_to_pointlistarray` and
:func:`counted_pointlistarray_to_datacube` (broken in 0.14.18, see
``reference/py4dstem-behaviour.md`` §2.5-2.6), map to :meth:`ElectronEvents.from_datacube` and
:meth:`ElectronEvents.to_datacube`: exact inverses for any scan shape.
"""

from __future__ import annotations

import functools
import warnings

import dask
import dask.array as da
import dask.core
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed

from .. import coords as cal
from .. import faults
from ..backend import array_module, native, native_dtype, require_cupy, to_host
from ..checks import detector_array, flag, positive_int
from ..chunk_sources import chunk_graph, chunk_sources, run_on_chunk
from ..datacube import Q_DIMS, R_DIMS, calibration_attrs
from ..events import ElectronEvents
from ..graph import delayed_chunks, drawn_frames, frame_blocks, rebuild, single_key
from ..kernels.binning import bin_frames
from ..kernels.counting import count_frames, events_to_dense, fit_thresholds, pooled_values
from ..lazy import chunk_reader_of
from .utils import bin2D, get_maxima_2D  # noqa: F401  (py4DSTEM's module offers them too)

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
        kernel = functools.partial(_count_dense, detector=detector, out_dtype=dtype, **options)
        name = "electron_count-" + tokenize(data.name, dark.key, thresholds.key, kernel)
        graph = chunk_graph(data, name, kernel, [dark, thresholds], tail=(0, 0))
        chunks = data.chunks[:2] + tuple((n,) for n in detector)
        counted = da.Array(graph, name, chunks, meta=np.empty((0,) * 4, dtype))
        return rebuild(
            datacube, counted, coords, (0, 1 if b == 1 else min(b * b, 255)), scale={"q": b}
        )
    kernel = functools.partial(_count_events, **options)
    name = "electron_count-events-" + tokenize(data.name, dark.key, thresholds.key, kernel)
    graph = chunk_graph(data, name, kernel, [dark, thresholds])
    counted = np.empty(data.numblocks[:2], dtype=object)
    for i, j in np.ndindex(counted.shape):
        counted[i, j] = Delayed((name, i, j), graph, layer=name)
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
    """Delayed ``(thresh_bkgrnd, thresh_xray, counts, edges, params)`` from the drawn frames
    alone: each chunk holding drawn frames gives them to the fit by a task of its own that
    reads only those frames (a reader's chunk reader) or makes the chunk inside itself and
    keeps only them, so no whole chunk is held until the fit runs."""
    for name, value in (("thresh_bkgrnd_Nsigma", nb), ("thresh_xray_Nsigma", nx)):
        if not np.isscalar(value) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    dark = _dark(darkreference, datacube)
    selected, _ = drawn_frames(data, n_samples, np.random.default_rng(seed), "Nsamples")
    loader = chunk_reader_of(data)  # reads as the array does: errors named, NaN when masked
    shared, sources = ([], {}) if loader is not None else chunk_sources(data)
    starts = [np.cumsum((0, *c)) for c in data.chunks[:2]]
    tasks = {}
    for i, j in np.ndindex(data.numblocks[:2]):
        local = selected[starts[0][i] : starts[0][i + 1], starts[1][j] : starts[1][j + 1]]
        if not local.any():
            continue
        if loader is not None:
            where = tuple(
                (int(x + starts[0][i]), int(y + starts[1][j]))
                for x, y in zip(*np.nonzero(local), strict=True)
            )
            tasks[(i, j)] = (functools.partial(_read_frames, loader, where, data.shape[2:]),)
        else:
            pick = functools.partial(_pick_frames, local=local)
            run = functools.partial(run_on_chunk, source=sources[(i, j)], kernel=pick)
            tasks[(i, j)] = (run, *sources[(i, j)].shared)
    name = "electron_count-samples-" + tokenize(data.name, selected)
    frames = delayed_chunks(name, tasks, shared, data.numblocks[:2])
    values = dask.delayed(_pooled)([frames[ix] for ix in tasks], dark)
    return dask.delayed(fit_thresholds, nout=5)(values, float(nb), float(nx))


def _read_frames(loader, where, detector) -> np.ndarray:
    """The frames at scan positions ``where`` (``((x, y), ...)``), ``(n, Qx, Qy)``, each read
    alone by a reader's chunk reader ``loader`` and copied (no mapping of the file kept)."""
    whole = tuple(slice(0, n) for n in detector)
    return np.stack([loader((slice(x, x + 1), slice(y, y + 1), *whole))[0, 0] for x, y in where])


def _pick_frames(block, *, local) -> np.ndarray:
    """The frames of ``block`` where ``local`` (bool ``(n1, n2)``) is True, ``(n, Qx, Qy)``, a
    numpy copy (C order of the positions)."""
    return to_host(block[array_module(block).asarray(local)])


def _pooled(frames, dark) -> np.ndarray:
    """:func:`pooled_values` of every drawn frame (``frames``: a list of ``(n, Qx, Qy)``), less
    the NaN of frames that could not be read (``faults.reading("mask")``)."""
    values = pooled_values([(f, np.ones(len(f), bool)) for f in frames], dark)
    return values[np.isfinite(values)]


def _dark(darkreference, datacube):
    """The dark reference as one delayed float32 ``(Qx, Qy)`` array (a number is broadcast;
    DataArrays are aligned by dim name and coords); lazy references stay lazy. NaN or inf
    raise ``ValueError`` naming ``darkreference`` (when computed, for lazy ones)."""
    if np.ndim(darkreference) == 0 and not isinstance(darkreference, xr.DataArray | da.Array):
        darkreference = np.full(datacube.shape[2:], darkreference, dtype=np.float32)
    dark = detector_array(darkreference, datacube, "darkreference")
    return single_key(dark.astype(np.float32))


# --- each chunk made inside the task that counts it -------------------------------------------


def _without_unread_frames(block):
    """``block`` with every frame that holds NaN (a chunk that could not be read, masked by
    ``on_error="mask"``) set to -inf, so it counts no electrons, with a warning: counting
    cannot mean anything there, and NaN would otherwise count every pixel."""
    if block.dtype.kind != "f":
        return block
    xp = array_module(block)
    unread = xp.isnan(block).any(axis=(-2, -1))
    if not bool(unread.any()):
        return block
    warnings.warn(
        f"electron_count: {int(unread.sum())} frames hold NaN (chunks that could not be read, "
        "on_error='mask'): no electrons are counted there; "
        "stem4d_dask.faults.bad_positions(datacube) gives their scan positions",
        faults.BadChunkWarning,
        stacklevel=2,
    )
    block = block.copy()
    block[unread] = -xp.inf
    return block


def _count_events(block, dark, thresholds, *, sub_pixel, binfactor):
    _, mu, sigma = thresholds[4]
    block = _without_unread_frames(block)
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
    block = _without_unread_frames(block)
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
