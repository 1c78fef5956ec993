"""The lazy results of :class:`stem4d_dask.events.ElectronEvents`: dense datacube, counts,
sums, virtual images and centre of mass, each with one task per scan chunk.

:class:`EventResults` is the mixin that maps the per-chunk kernels of
:mod:`stem4d_dask.kernels.events` over the event blocks (every block checked by the task that
reads it) and labels the results with the events' coords and calibration attrs. The results
agree with the dense operations on the counted datacube (sub-pixel events fall in pixel
``rint(q)``, except for the centre of mass, which uses their coordinates).
"""

from __future__ import annotations

import functools

import numpy as np
import xarray as xr

from . import datacube as dcm
from .checks import detector_weights
from .datacube import Q_DIMS, R_DIMS, calibration_attrs
from .kernels import events as kev
from .phase.com import com_dataset


class EventResults:
    """Lazy results of :class:`~stem4d_dask.events.ElectronEvents` (a mixin: it uses the
    events' ``_detector_shape``, ``_attrs``, ``_coords(dims)``, and ``_block_array`` /
    ``_image`` of :class:`~stem4d_dask.csr_frames.CSRFrames`)."""

    def to_datacube(self, dtype=None) -> xr.DataArray:
        """Lazy dense datacube ``(Rx, Ry, Qx, Qy)``, chunked like the scan, with the
        calibration attrs and coords.

        dtype : None or bool -> bool, True where a pixel got at least one event (several
            events on one pixel collapse, as py4DSTEM's counted datacube); an integer or float
            dtype -> the number of events per pixel (uint8 for the usual counted cube), exact,
            raising ``ValueError`` when a count does not fit. Sub-pixel events count in pixel
            ``rint(q)``.
        """
        dtype = kev.dense_dtype(dtype)
        kernel = functools.partial(
            kev.events_to_dense, detector_shape=self._detector_shape, dtype=dtype
        )
        data = self._block_array(kernel, "events-to-datacube", self._detector_shape, dtype)
        coords = {**self._coords(R_DIMS), **self._coords(Q_DIMS)}
        return dcm.assemble(data, coords, self._attrs)

    def counts(self) -> xr.DataArray:
        """Lazy int64 ``(Rx, Ry)`` number of events at every scan position."""
        data = self._block_array(kev.counts_image, "event-counts", (), np.int64)
        return self._image(data, "counts", units="electrons")

    def sum_scan(self) -> xr.DataArray:
        """Lazy int64 ``(Rx, Ry)`` total of every pattern (= :meth:`counts`)."""
        return self.counts()

    def sum_diffraction(self) -> xr.DataArray:
        """Lazy int64 ``(Qx, Qy)`` number of events on every detector pixel over the scan
        (histogram of all events, sub-pixel ones in pixel ``rint(q)``): one partial per scan
        chunk, then a tree sum."""
        kernel = functools.partial(kev.diffraction_histogram, detector_shape=self._detector_shape)
        partial = self._block_array(
            kernel, "event-histogram", self._detector_shape, np.int64, per_block=True
        )
        total = partial.sum(axis=(0, 1), dtype=np.int64)
        return xr.DataArray(
            total,
            dims=Q_DIMS,
            coords=self._coords(Q_DIMS),
            name="sum_diffraction",
            attrs={**calibration_attrs(self._attrs, ("q",)), "units": "electrons"},
        )

    def virtual_image(self, mask) -> xr.DataArray:
        """Lazy float64 ``(Rx, Ry)``: ``sum(mask[qx, qy])`` over each position's events
        (sub-pixel positions rounded), = :func:`stem4d_dask.virtual.virtual_image` of the
        counted datacube. ``mask``: ``(Qx, Qy)`` weights (bool, int or float)."""
        mask = self._check_mask(mask)
        data = self._block_array(kev.masked_sums, "event-virtual-image", (), np.float64, mask)
        return self._image(data, "virtual_image")

    def center_of_mass(self, mask=None) -> xr.Dataset:
        """Lazy ``xr.Dataset`` over ``(Rx, Ry)``, as :func:`stem4d_dask.phase.center_of_mass`:
        ``com_x``, ``com_y`` (float64 detector pixels from the corner pixel ``(0, 0)``; NaN
        where a position has no (masked) event), ``intensity`` (the number of events, or their
        ``mask`` weights), and ``com_qx``, ``com_qy`` in ``q_units`` when calibrated.

        Sub-pixel events contribute their coordinates (the mask weight of the pixel
        ``rint(q)``); pixel events give the dense centre of mass exactly.
        """
        args = () if mask is None else (self._check_mask(mask),)
        stacked = self._block_array(
            kev.center_of_mass, "event-center-of-mass", (3,), np.float64, *args
        )
        return com_dataset(
            stacked, self._coords(R_DIMS), self._coords(Q_DIMS), calibration_attrs(self._attrs)
        )

    # --- internals -----------------------------------------------------------------------

    def _check_mask(self, mask) -> np.ndarray:
        """A ``(Qx, Qy)`` mask as numpy; a DataArray is aligned by dim name and coords."""
        frame = xr.Dataset(coords=self._coords(Q_DIMS))
        return detector_weights(mask, frame, "mask", self._detector_shape)


def located(func, *args, where, **kwargs):
    """``func(*args, **kwargs)``, a ``ValueError`` it raises prefixed with ``where`` (the scan
    chunk's location)."""
    try:
        return func(*args, **kwargs)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


__all__ = ["EventResults", "located"]
