"""Bragg peaks of every frame, lazily: :func:`find_peaks` runs py4DSTEM's ``get_maxima_2D``
on every frame (same parameters and results) through
:func:`stem4d_dask.frame_functions.map_frames`, a whole scan chunk at a time
(:func:`stem4d_dask.kernels.maxima_chunk.get_maxima_2D_chunk`: bit for bit what
:func:`stem4d_dask.kernels.maxima.get_maxima_2D` gives each frame), and returns
:class:`BraggPeaks`: the peaks of each frame (CSR per scan chunk,
:class:`~stem4d_dask.ragged.RaggedFrames`) with a Bragg vector map (the 2D histogram of all
peaks) made straight from them.
"""

from __future__ import annotations

import functools

import numpy as np
import xarray as xr

from .checks import real
from .coords import coord
from .datacube import Q_DIMS, R_DIMS, calibration_attrs
from .frame_functions import map_frames
from .graph import frame_blocks
from .kernels import ragged as kr
from .kernels.maxima import check_maxima_args
from .kernels.maxima_chunk import get_maxima_2D_chunk
from .ragged import RaggedFrames

#: the fields of a peak: positions in detector pixels (the centre of pixel ``i`` at ``i``, ``x``
#: along Qx), the (interpolated) intensity, and the positions in the datacube's Q units
PEAK_FIELDS = {
    "qx": np.dtype(np.float64),
    "qy": np.dtype(np.float64),
    "intensity": np.dtype(np.float64),
    "qx_cal": np.dtype(np.float64),
    "qy_cal": np.dtype(np.float64),
}


class BraggPeaks(RaggedFrames):
    """The peaks of every frame (fields :data:`PEAK_FIELDS`), CSR per scan chunk: a
    :class:`~stem4d_dask.ragged.RaggedFrames` (``peaks[rx, ry]``: a frame's peaks, in
    ``get_maxima_2D``'s order; ``peaks[a:b, c:d]``: a scan region; ``counts()``, ``to_zarr``,
    ``from_zarr``) that knows its detector (``detector_coords``: the datacube's ``Qx``, ``Qy``
    coords)."""

    def __init__(
        self, blocks, scan_chunks, fields, attrs=None, *, coords=None, units=None, _n_items=None
    ):
        missing = [q for q in Q_DIMS if q not in (coords or {})]
        if missing:
            raise ValueError(f"coords: BraggPeaks need the detector coords {missing}")
        self._detector = tuple(np.size(getattr(coords[q], "values", coords[q])) for q in Q_DIMS)
        super().__init__(
            blocks, scan_chunks, fields, attrs, coords=coords, units=units, _n_items=_n_items
        )

    def _detector_sizes(self) -> tuple:
        return self._detector

    @property
    def detector_coords(self) -> dict:
        """``{"Qx": coord, "Qy": coord}``: the detector the peaks were found on."""
        return {q: self._coord_map[q] for q in Q_DIMS}

    def bragg_vector_map(self, sampling=1, weights="intensity", mode="linear") -> xr.DataArray:
        """Lazy float64 2D histogram of every peak of the scan over the detector: one partial
        per scan chunk, then a tree sum.

        sampling : int >= 1, grid points per detector pixel (2: twice as fine).
        weights : ``"intensity"`` (each peak adds its intensity) or None (each adds 1).
        mode : ``"linear"`` (each peak spread bilinearly over its four nearest grid points, so
            sub-pixel positions are kept) or ``"nearest"``.

        Returns a DataArray ``(Qx, Qy)`` of ``sampling`` times the detector's pixels, with the
        detector coords refined accordingly (in the datacube's Q units).
        """
        if isinstance(sampling, bool) or not isinstance(sampling, int | np.integer) or sampling < 1:
            raise ValueError(f"sampling must be an int >= 1, got {sampling!r}")
        if not (weights is None or (isinstance(weights, str) and weights == "intensity")):
            raise ValueError(f"weights must be 'intensity' or None, got {weights!r}")
        if not (isinstance(mode, str) and mode in ("linear", "nearest")):
            raise ValueError(f"mode must be 'linear' or 'nearest', got {mode!r}")
        shape = tuple(int(n) * int(sampling) for n in self._detector)
        kernel = functools.partial(
            _histogram,
            shape=shape,
            sampling=float(sampling),
            weighted=weights == "intensity",
            linear=mode == "linear",
        )
        partial = self._block_array(kernel, "bragg-vector-map", shape, np.float64, per_block=True)
        total = partial.sum(axis=(0, 1), dtype=np.float64)
        coords = {}
        for q, n in zip(Q_DIMS, shape, strict=True):
            c = self._coord_map[q]
            fine = np.arange(n) / sampling
            values = np.interp(fine, np.arange(c.size), c.values)
            if c.size > 1:  # extrapolate past the last pixel centre along the last step
                step = c.values[-1] - c.values[-2]
                past = fine > c.size - 1
                values[past] = c.values[-1] + (fine[past] - (c.size - 1)) * step
            coords[q] = coord(values, q, c.attrs["units"])
        attrs = calibration_attrs(self._attrs, ("q",))
        if "q_pixel_size" in attrs:
            attrs["q_pixel_size"] = attrs["q_pixel_size"] / sampling
        return xr.DataArray(total, dims=Q_DIMS, coords=coords, name="bragg_vector_map", attrs=attrs)


def find_peaks(
    datacube,
    subpixel="poly",
    upsample_factor=16,
    sigma=0,
    minAbsoluteIntensity=0,
    minRelativeIntensity=0,
    relativeToPeak=0,
    minSpacing=0,
    edgeBoundary=1,
    maxNumPeaks=70,
) -> BraggPeaks:
    """The local maxima of every frame, lazily: py4DSTEM's ``get_maxima_2D`` (its parameters,
    :func:`stem4d_dask.preprocess.get_maxima_2D`) on each frame, one task per scan chunk.

    subpixel : ``'pixel'``, ``'poly'`` (parabolic, per axis) or ``'multicorr'`` (DFT
        upsampling by ``upsample_factor``).
    sigma : Gaussian smoothing (pixels, >= 0) before the search; 0: none.
    minAbsoluteIntensity, minRelativeIntensity, relativeToPeak : as ``get_maxima_2D``.
    minSpacing, edgeBoundary : as ``get_maxima_2D``, in pixels (``minSpacing`` >= 0).
    maxNumPeaks : as ``get_maxima_2D``, except that it defaults to 70 (py4DSTEM's
        ``find_Bragg_disks`` default; ``get_maxima_2D``'s 1 would keep only the brightest peak
        of each frame); None keeps every peak.

    Every argument is checked before anything is built (``ValueError`` naming it): unlike
    py4DSTEM, which takes a negative ``sigma`` or ``minSpacing`` as 0, those are refused, as
    are NaN, infinities and non-numbers. Complex datacubes are refused (``TypeError``).

    Returns :class:`BraggPeaks` with, per peak: ``qx``, ``qy`` (float64 detector pixels,
    ``x`` along ``Qx``), ``intensity`` (of the smoothed frame, at the refined position for
    ``'poly'`` and ``'multicorr'``), ``qx_cal``, ``qy_cal`` (the position in the datacube's Q
    coords and units). Each frame's peaks are in ``get_maxima_2D``'s order: by descending
    intensity of the pixel maxima, so after ``'poly'`` refinement two peaks of close intensity
    may be out of order (``'multicorr'`` sorts again). Nothing is read until the peaks are used.
    """
    datacube, data = frame_blocks(datacube)
    check_maxima_args(subpixel, upsample_factor, relativeToPeak, edgeBoundary, maxNumPeaks)
    # checked here, not first in the tasks (py4DSTEM treats values <= 0 as "off"; a negative
    # smoothing width or spacing is a mistake, refused)
    real(sigma, "sigma", low=0)
    real(minSpacing, "minSpacing", low=0)
    real(minAbsoluteIntensity, "minAbsoluteIntensity")
    real(minRelativeIntensity, "minRelativeIntensity")
    params = dict(
        subpixel=subpixel,
        upsample_factor=upsample_factor,
        sigma=sigma,
        minAbsoluteIntensity=minAbsoluteIntensity,
        minRelativeIntensity=minRelativeIntensity,
        relativeToPeak=relativeToPeak,
        minSpacing=minSpacing,
        edgeBoundary=edgeBoundary,
        maxNumPeaks=maxNumPeaks,
    )
    qx, qy = (datacube.coords[q].values for q in Q_DIMS)
    template = {k: np.empty(0, dt) for k, dt in PEAK_FIELDS.items()}
    found = map_frames(
        datacube,
        _chunk_peaks,
        qx,
        qy,
        template=template,
        ragged=True,
        vectorized=True,
        name="find_peaks",
        params=params,
    )
    units = datacube.coords["Qx"].attrs["units"]
    return BraggPeaks(
        found.blocks,
        found.scan_chunks,
        PEAK_FIELDS,
        calibration_attrs(datacube.attrs),
        coords={d: datacube.coords[d] for d in (*R_DIMS, *Q_DIMS)},
        units={"qx": "pixels", "qy": "pixels", "qx_cal": units, "qy_cal": units},
    )


def _chunk_peaks(block, qx_coord, qy_coord, *, params) -> tuple[np.ndarray, dict]:
    """The peaks of every frame of a scan chunk ``(n1, n2, Qx, Qy)`` (numpy or cupy): ``indptr``
    int64 ``(n1 * n2 + 1,)`` over the positions in C order and the fields of
    :data:`PEAK_FIELDS` (host arrays), each frame's peaks those of ``get_maxima_2D``."""
    indptr, maxima = get_maxima_2D_chunk(block, **params)
    x, y = np.ascontiguousarray(maxima["x"]), np.ascontiguousarray(maxima["y"])
    return indptr, {
        "qx": x,
        "qy": y,
        "intensity": np.ascontiguousarray(maxima["intensity"]),
        "qx_cal": _calibrated(x, qx_coord),
        "qy_cal": _calibrated(y, qy_coord),
    }


def _calibrated(position: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The coordinate at fractional pixel ``position`` of an axis whose pixel centres have the
    coordinates ``values`` (linear between pixels)."""
    return np.interp(position, np.arange(values.size), values)


def _histogram(block, *, shape, sampling, weighted, linear) -> np.ndarray:
    fields = block.fields
    weights = fields["intensity"] if weighted else None
    return kr.histogram_2d(fields["qx"], fields["qy"], weights, shape, sampling, linear)


__all__ = ["PEAK_FIELDS", "BraggPeaks", "find_peaks"]
