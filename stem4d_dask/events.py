"""Counted electrons as sparse events: :class:`ElectronEvents`, CSR per scan chunk, lazily.

Per scan chunk of ``(n1, n2)`` positions an
:class:`~stem4d_dask.kernels.counting.EventBlock` holds ``indptr`` (int64, ``n1 * n2 + 1``, C
order over the chunk's positions) and the detector positions ``qx``, ``qy`` of every event
(uint16 pixel indices, or float32 sub-pixel coordinates, the centre of pixel ``i`` at ``i``).
An :class:`ElectronEvents` is a 2D object array of these blocks, each a ``dask.delayed`` value
(one task per chunk) or already computed, with the scan chunking, the detector shape and the
datacube's calibration attrs. Its operations (dense datacube, sums, virtual images, centre of
mass) are lazy with one task per scan chunk, and agree with the dense operations on the counted
datacube (sub-pixel events fall in pixel ``rint(q)``, except for the centre of mass, which uses
their coordinates).

This module builds, describes, materialises and stores the events; the lazy results come
from the mixin :class:`~stem4d_dask.events_results.EventResults`.

The zarr store (:meth:`~ElectronEvents.to_zarr`, :meth:`~ElectronEvents.from_zarr`) is
:mod:`stem4d_dask.io.events_store`'s; py4DSTEM's converters (to and from a counted datacube) sit
beside ``electron_count`` in :mod:`stem4d_dask.preprocess.electroncount`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from . import datacube as dcm
from .checks import flag
from .csr_frames import CSRFrames
from .datacube import calibration_attrs
from .events_results import EventResults, located
from .graph import chunk_location, delayed_chunks, frame_blocks
from .io.events_store import block_spec, read_events, write_events
from .kernels import events as kev
from .kernels.counting import EventBlock

__all__ = ["ElectronEvents"]


class EventKind:
    """What a block of :class:`ElectronEvents` is: an
    :class:`~stem4d_dask.kernels.counting.EventBlock` (checked by
    :func:`stem4d_dask.kernels.events.check_block` against :func:`block_spec`'s keywords)."""

    check = staticmethod(kev.check_block)

    @staticmethod
    def split(block) -> tuple:
        return block.indptr, {"qx": block.qx, "qy": block.qy}

    @staticmethod
    def make(indptr, fields, **spec) -> EventBlock:
        block = EventBlock(indptr, fields["qx"], fields["qy"], tuple(spec["scan_shape"]))
        return kev.check_block(block, **spec)


class ElectronEvents(EventResults, CSRFrames):
    """Electron events of a scan, CSR per scan chunk (see the module docstring).

    Build with :meth:`from_blocks`, :meth:`from_datacube`, :meth:`from_zarr` or
    ``electron_count(..., output='pointlist')``. ``events[rx, ry]`` gives that frame's events
    (a structured array with fields ``qx``, ``qy``), ``events[a:b, c:d]`` / ``isel`` the events
    of a scan region, lazily (:class:`~stem4d_dask.csr_frames.CSRFrames`). Attributes:
    ``blocks`` (object array ``numblocks``: ``dask.delayed`` EventBlocks or EventBlocks),
    ``scan_shape`` ``(Rx, Ry)``, ``scan_chunks`` (dask-style), ``detector_shape`` ``(Qx, Qy)``,
    ``subpixel`` (float32 positions), ``attrs`` (``r_pixel_size``, ``r_units``,
    ``q_pixel_size``, ``q_units``, ``energy`` in eV when known).
    """

    def __init__(
        self,
        blocks,
        scan_chunks,
        detector_shape,
        subpixel,
        attrs=None,
        *,
        coords=None,
        _n_events=None,
    ):
        self._detector_shape = kev.check_detector_shape(detector_shape)
        self._subpixel = flag(subpixel, "subpixel")
        position = kev.position_dtype(self._subpixel)
        self._spec_fields = {"qx": position, "qy": position}
        self._setup(blocks, scan_chunks, attrs, coords, _n_events)

    _kind = EventKind

    # --- construction --------------------------------------------------------------------

    @classmethod
    def from_blocks(
        cls, blocks, scan_chunks, detector_shape, subpixel=False, attrs=None, coords=None
    ):
        """Events from one block per scan chunk.

        blocks : 2D object array (or nested lists) of shape ``(len(scan_chunks[0]),
            len(scan_chunks[1]))``: ``dask.delayed`` values producing EventBlocks, or
            EventBlocks (checked now; delayed ones are checked by each task that reads them).
        scan_chunks : ``((rows, ...), (columns, ...))`` scan positions per chunk (dask style).
        detector_shape : ``(Qx, Qy)`` pixels, each at most 65536.
        subpixel : positions are float32 coordinates (else uint16 pixel indices).
        attrs : calibration (``r_pixel_size``, ``r_units``, ``q_pixel_size``, ``q_units``,
            ``energy`` in eV); missing ones mean pixels / unknown.
        coords : ``{dim: coord}`` for ``Rx``, ``Ry``, ``Qx``, ``Qy`` (DataArrays with
            ``attrs['units']``, e.g. the counted datacube's): the coordinate frame, origin
            included, of every result. Missing ones are made from ``attrs`` (origin 0).
        """
        return cls(blocks, scan_chunks, detector_shape, subpixel, attrs, coords=coords)

    @classmethod
    def from_datacube(cls, counted_datacube, subpixel=False):
        """Events of a counted datacube (bool, or non-negative integer counts), lazily.

        Every nonzero pixel gives ``count`` events at its index (C order within each frame).
        ``counted_datacube``: a datacube, or a 4D numpy / dask array ``(Rx, Ry, Qx, Qy)``
        (chunked by the default policy). ``subpixel``: store the positions as float32 (the
        same pixel coordinates). One task per scan chunk of the datacube; nothing is read now.
        """
        subpixel = flag(subpixel, "subpixel")
        dc, data = frame_blocks(
            _as_counted_datacube(counted_datacube), parameter="counted_datacube"
        )
        detector = kev.check_detector_shape(
            data.shape[2:], parameter="counted_datacube detector shape"
        )
        sources = data.to_delayed(optimize_graph=False)[:, :, 0, 0]
        name = "events-from-datacube-" + tokenize(data.name, subpixel)
        tasks = {
            (i, j): (
                functools.partial(
                    located,
                    kev.dense_to_events,
                    subpixel=subpixel,
                    where=chunk_location(data.chunks[:2], (i, j)),
                ),
                sources[i, j].key,
            )
            for i, j in np.ndindex(sources.shape)
        }
        blocks = delayed_chunks(name, tasks, sources.flat, sources.shape)
        return cls(
            blocks,
            data.chunks[:2],
            detector,
            subpixel,
            calibration_attrs(dc.attrs),
            coords={d: dc.coords[d] for d in dcm.DIMS},
        )

    @classmethod
    def from_zarr(cls, path):
        """Open events written by :meth:`to_zarr` (:func:`stem4d_dask.io.events_store.read_events`).
        Reads the group metadata only; each scan chunk is read (and checked) by its own task."""
        return cls(**read_events(path))

    # --- description ---------------------------------------------------------------------

    @property
    def detector_shape(self) -> tuple:
        return self._detector_shape

    @property
    def subpixel(self) -> bool:
        return self._subpixel

    @property
    def dtype(self) -> np.dtype:
        """Position dtype: float32 (sub-pixel) or uint16 (pixel indices)."""
        return kev.position_dtype(self._subpixel)

    @property
    def n_events(self):
        """Number of events: an int when known (computed blocks, or read from a store's
        metadata), else a lazy 0-d int64 dask array (``int(...)`` computes it)."""
        return self.n_items

    def __repr__(self):
        n = self.n_events
        events = f"{n} events" if isinstance(n, int) else "lazy"
        kind = "float32 sub-pixel" if self._subpixel else "uint16 pixel"
        (n1, n2), cal = self.numblocks, calibration_attrs(self._attrs)
        return (
            f"<ElectronEvents: scan {self.scan_shape} in {n1} x {n2} chunks, detector "
            f"{self._detector_shape}, {kind} positions, {events}; {cal}>"
        )

    # --- storage -------------------------------------------------------------------------

    def to_zarr(self, path, overwrite=False, progress=True) -> Path:
        """Write the events to a zarr v3 store at ``path`` (layout:
        :mod:`stem4d_dask.io.events_store`), one task per scan chunk, through ``path +
        ".partial"`` renamed at the end (removed if the write fails). Every block is checked
        before it is written. ``overwrite``: replace an existing store (else
        ``FileExistsError``); ``progress``: show a bar. Returns the final ``Path``."""
        return write_events(
            path,
            self._handles(),
            self._scan_chunks,
            self._detector_shape,
            self._subpixel,
            self._attrs,
            self._coord_map,
            overwrite=overwrite,
            progress=progress,
        )

    # --- internals -----------------------------------------------------------------------

    def _rebuilt(self, blocks, scan_chunks, coords, n_items):
        return type(self)(
            blocks,
            scan_chunks,
            self._detector_shape,
            self._subpixel,
            self._attrs,
            coords=coords,
            _n_events=n_items,
        )

    def _detector_sizes(self) -> tuple:
        return self._detector_shape

    def _spec(self, i, j) -> dict:
        return block_spec(self._scan_chunks, self._detector_shape, self._subpixel, (i, j))


def _as_counted_datacube(obj) -> xr.DataArray:
    if isinstance(obj, xr.DataArray):
        dc = dcm.check_datacube(obj, parameter="counted_datacube")
    elif isinstance(obj, np.ndarray | da.Array):
        if obj.ndim != 4:
            raise ValueError(f"counted_datacube must be 4D (Rx, Ry, Qx, Qy), got shape {obj.shape}")
        dc = dcm.from_array(obj, chunks=None if isinstance(obj, da.Array) else "auto")
    else:
        raise ValueError(
            "counted_datacube must be a datacube or a 4D numpy/dask array, got "
            f"{type(obj).__name__}"
        )
    if dc.dtype.kind not in "biu":
        raise ValueError(f"counted_datacube must hold bool or integer counts, got dtype {dc.dtype}")
    return dc
