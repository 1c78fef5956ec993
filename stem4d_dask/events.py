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

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed

from . import datacube as dcm
from .checks import checked_calibration_attrs, flag
from .coords import coord, coord_values
from .datacube import R_DIMS, axis_coord, calibration_attrs
from .events_results import EventResults, located
from .graph import chunk_location, delayed_chunks, frame_blocks, object_grid
from .io.events_store import block_spec, read_events, write_events
from .kernels import events as kev
from .kernels.counting import EventBlock
from .progress import compute as _compute

__all__ = ["ElectronEvents"]


class ElectronEvents(EventResults):
    """Electron events of a scan, CSR per scan chunk (see the module docstring).

    Build with :meth:`from_blocks`, :meth:`from_datacube`, :meth:`from_zarr` or
    ``electron_count(..., output='pointlist')``. Attributes: ``blocks`` (object array
    ``numblocks``: ``dask.delayed`` EventBlocks or EventBlocks), ``scan_shape`` ``(Rx, Ry)``,
    ``scan_chunks`` (dask-style), ``detector_shape`` ``(Qx, Qy)``, ``subpixel`` (float32
    positions), ``attrs`` (``r_pixel_size``, ``r_units``, ``q_pixel_size``, ``q_units``,
    ``energy`` in eV when known).
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
        self._scan_chunks = kev.check_scan_chunks(scan_chunks)
        self._detector_shape = kev.check_detector_shape(detector_shape)
        self._subpixel = flag(subpixel, "subpixel")
        self._attrs = checked_calibration_attrs(attrs)
        self._coord_map = self._check_coords(coords)
        self._blocks = self._check_blocks(blocks)
        self._n_events = _n_events
        self._handle_cache = None

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
    def blocks(self) -> np.ndarray:
        """2D object array (one per scan chunk) of delayed EventBlocks or EventBlocks."""
        return self._blocks.copy()

    @property
    def scan_shape(self) -> tuple:
        return tuple(sum(c) for c in self._scan_chunks)

    @property
    def scan_chunks(self) -> tuple:
        return self._scan_chunks

    @property
    def numblocks(self) -> tuple:
        return tuple(len(c) for c in self._scan_chunks)

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
    def attrs(self) -> dict:
        return dict(self._attrs)

    @property
    def is_computed(self) -> bool:
        """True when every block is a materialised EventBlock."""
        return all(isinstance(b, EventBlock) for b in self._blocks.flat)

    @property
    def n_events(self):
        """Number of events: an int when known (computed blocks, or read from a store's
        metadata), else a lazy 0-d int64 dask array (``int(...)`` computes it)."""
        if self._n_events is not None:
            return self._n_events
        if self.is_computed:
            return int(sum(b.indptr[-1] for b in self._blocks.flat))
        return self.counts().data.sum()

    def __repr__(self):
        n = self.n_events
        events = f"{n} events" if isinstance(n, int) else "lazy"
        kind = "float32 sub-pixel" if self._subpixel else "uint16 pixel"
        (n1, n2), cal = self.numblocks, calibration_attrs(self._attrs)
        return (
            f"<ElectronEvents: scan {self.scan_shape} in {n1} x {n2} chunks, detector "
            f"{self._detector_shape}, {kind} positions, {events}; {cal}>"
        )

    # --- materialising -------------------------------------------------------------------

    def compute(self, progress=False) -> ElectronEvents:
        """A new ElectronEvents with every block computed to an EventBlock (one compute call
        over all chunks; ``progress`` shows a bar)."""
        results = _compute(*self._handles().flat, progress=progress)
        return self._like(object_grid(results, self.numblocks))

    def persist(self) -> ElectronEvents:
        """A new ElectronEvents whose blocks are materialised (``dask.persist``, one call): in
        memory with the local schedulers, on the workers with a ``distributed`` client; the
        blocks stay ``dask.delayed`` handles on them."""
        return self._like(object_grid(dask.persist(*self._handles().flat), self.numblocks))

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

    def _like(self, blocks):
        return type(self)(
            blocks,
            self._scan_chunks,
            self._detector_shape,
            self._subpixel,
            self._attrs,
            coords=self._coord_map,
            _n_events=self._n_events,
        )

    def _check_coords(self, coords) -> dict:
        """``{dim: coord DataArray}`` of the given coords, checked against the shapes."""
        out = {}
        sizes = dict(zip(dcm.DIMS, self.scan_shape + self._detector_shape, strict=True))
        for d, c in (coords or {}).items():
            if d not in sizes:
                raise ValueError(f"coords: unknown dim {d!r}; expected {dcm.DIMS}")
            values = coord_values(getattr(c, "values", c), d, "coords")
            if values.size != sizes[d]:
                raise ValueError(f"coords: {d} has {values.size} values for {sizes[d]} pixels")
            out[d] = coord(values, d, getattr(c, "attrs", {}).get("units", "pixels"))
        return out

    def _check_blocks(self, blocks):
        if isinstance(blocks, EventBlock) or not hasattr(blocks, "__len__"):
            raise ValueError(f"blocks must be a 2D array of blocks, got {type(blocks).__name__}")
        rows = [list(row) for row in blocks]
        if len({len(row) for row in rows}) > 1:
            raise ValueError("blocks: rows of different lengths")
        shape = (len(rows), len(rows[0]) if rows else 0)
        if shape != self.numblocks:
            raise ValueError(
                f"blocks must have shape {self.numblocks} (one per scan chunk of "
                f"scan_chunks), got {shape}"
            )
        out = object_grid([b for row in rows for b in row], shape)
        for (i, j), b in np.ndenumerate(out):
            if isinstance(b, tuple) and not dask.is_dask_collection(b):
                out[i, j] = kev.check_block(b, **self._spec(i, j))
            elif not isinstance(b, Delayed):
                raise ValueError(
                    f"blocks[{i}, {j}] must be a dask.delayed EventBlock or an "
                    f"EventBlock, got {type(b).__name__}"
                )
        return out

    def _spec(self, i, j) -> dict:
        return block_spec(self._scan_chunks, self._detector_shape, self._subpixel, (i, j))

    def _handles(self) -> np.ndarray:
        """The blocks as dask.delayed values (computed ones wrapped as graph literals)."""
        if self._handle_cache is None:
            self._handle_cache = object_grid(
                [
                    b if isinstance(b, Delayed) else dask.delayed(b, traverse=False)
                    for b in self._blocks.flat
                ],
                self.numblocks,
            )
        return self._handle_cache

    def _coords(self, dims) -> dict:
        """The coords of ``dims``: the ones given (the counted datacube's), else made from the
        calibration attrs (origin 0)."""
        space = "r" if dims == R_DIMS else "q"
        shape = self.scan_shape if space == "r" else self._detector_shape
        size = self._attrs.get(f"{space}_pixel_size", 1.0)
        units = self._attrs.get(f"{space}_units", "pixels")
        return {
            d: self._coord_map.get(d, axis_coord(n, size, units, d))
            for d, n in zip(dims, shape, strict=True)
        }


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
