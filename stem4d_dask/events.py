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

Zarr v3 store written by :meth:`ElectronEvents.to_zarr` (never a dense cube)::

    events.zarr/
      zarr.json           group attrs: format "stem4d_dask.electron_events", format_version 1,
                          scan_shape, scan_chunks, detector_shape, subpixel, position_dtype,
                          n_events, block_events (events per scan chunk), attrs (calibration)
      blocks/
        {i}.{j}/          scan chunk (i, j): one group with the chunk's EventBlock
          indptr          int64 (n1 * n2 + 1,)
          qx, qy          uint16 or float32 (events of the chunk,)

Arrays are blosc-zstd compressed with byte shuffle (a counted scan at 0.01 electrons per pixel
stores ~100x smaller than its uint16 frames). Writes go to ``events.zarr.partial``, renamed
when every chunk is written. Reading opens the metadata only; each chunk is read by its own task.

py4DSTEM's converters ``counted_datacube_to_pointlistarray`` and
``counted_pointlistarray_to_datacube`` (broken in 0.14.18, see
``reference/py4dstem-behaviour.md`` §2.5-2.6) map to :meth:`ElectronEvents.from_datacube` and
:meth:`ElectronEvents.to_datacube`, exact inverses for any scan shape.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from zarr.codecs import BloscCodec

from . import datacube as dcm
from .calibration import canonical_units
from .checks import check_energy, check_pixel_size, detector_weights
from .coords import coord, coord_values
from .datacube import Q_DIMS, R_DIMS, axis_coord, calibration_attrs
from .graph import frame_blocks
from .kernels import events as kev
from .kernels.counting import EventBlock
from .phase.com import calibrated_com
from .progress import compute as _compute

__all__ = ["ElectronEvents", "counted_datacube_to_pointlistarray",
           "counted_pointlistarray_to_datacube", "FORMAT", "FORMAT_VERSION"]

FORMAT = "stem4d_dask.electron_events"
FORMAT_VERSION = 1
STORE_CHUNK = 2**22  # elements per stored chunk of qx / qy / indptr
CODECS = (BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),)


class ElectronEvents:
    """Electron events of a scan, CSR per scan chunk (see the module docstring).

    Build with :meth:`from_blocks`, :meth:`from_datacube`, :meth:`from_zarr` or
    ``electron_count(..., output='pointlist')``. Attributes: ``blocks`` (object array
    ``numblocks``: ``dask.delayed`` EventBlocks or EventBlocks), ``scan_shape`` ``(Rx, Ry)``,
    ``scan_chunks`` (dask-style), ``detector_shape`` ``(Qx, Qy)``, ``subpixel`` (float32
    positions), ``attrs`` (``r_pixel_size``, ``r_units``, ``q_pixel_size``, ``q_units``,
    ``energy`` in eV when known).
    """

    def __init__(self, blocks, scan_chunks, detector_shape, subpixel, attrs=None, *,
                 coords=None, _n_events=None):
        self._scan_chunks = _check_chunks(scan_chunks)
        self._detector_shape = _check_detector(detector_shape)
        if not isinstance(subpixel, bool | np.bool_):
            raise ValueError(f"subpixel must be True or False, got {subpixel!r}")
        self._subpixel = bool(subpixel)
        self._attrs = _check_attrs(attrs)
        self._coord_map = self._check_coords(coords)
        self._blocks = self._check_blocks(blocks)
        self._n_events = _n_events
        self._handle_cache = None

    # --- construction --------------------------------------------------------------------

    @classmethod
    def from_blocks(cls, blocks, scan_chunks, detector_shape, subpixel=False, attrs=None,
                    coords=None):
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
        if not isinstance(subpixel, bool | np.bool_):
            raise ValueError(f"subpixel must be True or False, got {subpixel!r}")
        dc, data = frame_blocks(_as_counted_datacube(counted_datacube),
                                parameter="counted_datacube")
        detector = _check_detector(data.shape[2:], parameter="counted_datacube detector shape")
        sources = data.to_delayed(optimize_graph=False)[:, :, 0, 0]
        name = "events-from-datacube-" + tokenize(data.name, bool(subpixel))
        tasks = {(i, j): (functools.partial(_events_from_dense, subpixel=bool(subpixel),
                                            where=_where(data.chunks[:2], i, j)),
                          sources[i, j].key)
                 for i, j in np.ndindex(sources.shape)}
        blocks = _delayed_layer(name, tasks, list(sources.flat))
        attrs = calibration_attrs(dc.attrs)
        return cls(blocks, data.chunks[:2], detector, bool(subpixel), attrs,
                   coords={d: dc.coords[d] for d in dcm.DIMS})

    @classmethod
    def from_zarr(cls, path):
        """Open events written by :meth:`to_zarr`. Reads the group metadata only; each scan
        chunk is read (and checked) by its own task."""
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise FileNotFoundError(f"path: no zarr v3 group at {path}")
        meta = dict(zarr.open_group(path, mode="r").attrs)
        if meta.get("format") != FORMAT:
            raise ValueError(f"path: {path} is not an electron-events store (attrs['format'] "
                             f"is {meta.get('format')!r}, expected {FORMAT!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"path: {path} has format_version {meta.get('format_version')!r};"
                             f" this version of stem4d_dask reads {FORMAT_VERSION}")
        chunks = tuple(tuple(int(c) for c in axis) for axis in meta["scan_chunks"])
        detector = tuple(int(s) for s in meta["detector_shape"])
        subpixel = bool(meta["subpixel"])
        counts = meta["block_events"]
        stamp = os.stat(path / "zarr.json").st_mtime_ns
        name = "events-from-zarr-" + tokenize(str(path.resolve()), stamp)
        tasks = {}
        for i, j in np.ndindex(len(chunks[0]), len(chunks[1])):
            tasks[(i, j)] = (functools.partial(
                _read_block, str(path / "blocks" / f"{i}.{j}"),
                scan_shape=(chunks[0][i], chunks[1][j]), detector_shape=detector,
                subpixel=subpixel, n_events=int(counts[i][j]), where=_where(chunks, i, j)),)
        blocks = _delayed_layer(name, tasks, [])
        stored = meta.get("coords") or {}
        coords = {d: coord(c["values"], d, c["units"]) for d, c in stored.items()}
        return cls(blocks, chunks, detector, subpixel, meta.get("attrs") or {}, coords=coords,
                   _n_events=int(meta["n_events"]))

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
        nb = self.numblocks
        cal = calibration_attrs(self._attrs)
        return (f"<ElectronEvents: scan {self.scan_shape} in {nb[0]} x {nb[1]} chunks, detector "
                f"{self._detector_shape}, {kind} positions, {events}; {cal}>")

    # --- materialising -------------------------------------------------------------------

    def compute(self, progress=False) -> ElectronEvents:
        """A new ElectronEvents with every block computed to an EventBlock (one compute call
        over all chunks; ``progress`` shows a bar)."""
        handles = self._handles()
        results = _compute(*handles.flat, progress=progress)
        blocks = _object_array(self.numblocks)
        for index, block in zip(np.ndindex(blocks.shape), results, strict=True):
            blocks[index] = block
        return self._like(blocks)

    def persist(self) -> ElectronEvents:
        """A new ElectronEvents whose blocks are materialised (``dask.persist``, one call): in
        memory with the local schedulers, on the workers with a ``distributed`` client; the
        blocks stay ``dask.delayed`` handles on them."""
        handles = self._handles()
        persisted = dask.persist(*handles.flat)
        blocks = _object_array(self.numblocks)
        for index, block in zip(np.ndindex(blocks.shape), persisted, strict=True):
            blocks[index] = block
        return self._like(blocks)

    # --- lazy results --------------------------------------------------------------------

    def to_datacube(self, dtype=None) -> xr.DataArray:
        """Lazy dense datacube ``(Rx, Ry, Qx, Qy)``, chunked like the scan, with the
        calibration attrs and coords.

        dtype : None or bool -> bool, True where a pixel got at least one event (several
            events on one pixel collapse, as py4DSTEM's counted datacube); an integer or float
            dtype -> the number of events per pixel (uint8 for the usual counted cube), exact,
            raising ``ValueError`` when a count does not fit. Sub-pixel events count in pixel
            ``rint(q)``.
        """
        dtype = np.dtype(bool) if dtype is None else _check_dtype(dtype)
        kernel = functools.partial(kev.events_to_dense, detector_shape=self._detector_shape,
                                   dtype=dtype)
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
        kernel = functools.partial(_histogram4, detector_shape=self._detector_shape)
        partial = self._block_array(kernel, "event-histogram", self._detector_shape,
                                    np.int64, per_block=True)
        total = partial.sum(axis=(0, 1), dtype=np.int64)
        return xr.DataArray(total, dims=Q_DIMS, coords=self._coords(Q_DIMS),
                            name="sum_diffraction", attrs={**self._cal("q"), "units": "electrons"})

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
        stacked = self._block_array(kev.center_of_mass, "event-center-of-mass", (3,),
                                    np.float64, *args)
        pixels = {"units": "pixels", "origin": "corner pixel (0, 0)"}
        variables = {
            "com_x": xr.DataArray(stacked[..., 1], dims=R_DIMS, attrs=pixels),
            "com_y": xr.DataArray(stacked[..., 2], dims=R_DIMS, attrs=pixels),
            "intensity": xr.DataArray(stacked[..., 0], dims=R_DIMS, attrs={"units": "counts"}),
        }
        variables.update(calibrated_com(self._coords(Q_DIMS), stacked[..., 1], stacked[..., 2]))
        attrs = calibration_attrs(self._attrs)
        return xr.Dataset(variables, coords=self._coords(R_DIMS), attrs=attrs)

    # --- storage -------------------------------------------------------------------------

    def to_zarr(self, path, overwrite=False, progress=True) -> Path:
        """Write the events to a zarr v3 store at ``path`` (layout in the module docstring),
        one task per scan chunk, through ``path + ".partial"`` renamed at the end. Every block
        is checked before it is written. Returns the final ``Path``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"path: {path} already exists (pass overwrite=True to "
                                  "replace it)")
        attrs = _jsonable(self._attrs)
        coords = {d: {"values": c.values.tolist(), "units": c.attrs["units"]}
                  for d, c in self._coord_map.items()}
        try:
            json.dumps(attrs)
        except TypeError as err:
            raise ValueError(f"attrs: every value must be JSON-serialisable to be stored ({err})"
                             ) from None
        tmp = path.with_name(path.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        root = zarr.open_group(tmp, mode="w", zarr_format=3)
        root.create_group("blocks")
        handles = self._handles()
        name = "events-to-zarr-" + tokenize(str(tmp), [h.key for h in handles.flat])
        tasks = {(i, j): (functools.partial(_write_block, str(tmp / "blocks" / f"{i}.{j}"),
                                            **self._spec(i, j)),
                          handles[i, j].key)
                 for i, j in np.ndindex(handles.shape)}
        writes = _delayed_layer(name, tasks, list(handles.flat))
        written = _compute(*writes.flat, progress=progress)
        per_block = np.array(written, dtype=np.int64).reshape(self.numblocks)
        root.attrs.update({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "layout": "blocks/{i}.{j}/{indptr,qx,qy}: CSR of scan chunk (i, j)",
            "scan_shape": list(self.scan_shape),
            "scan_chunks": [list(c) for c in self._scan_chunks],
            "detector_shape": list(self._detector_shape),
            "subpixel": self._subpixel,
            "position_dtype": self.dtype.name,
            "n_events": int(per_block.sum()),
            "block_events": per_block.tolist(),
            "attrs": attrs,
            "coords": coords,
        })
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        return path

    # --- internals -----------------------------------------------------------------------

    def _like(self, blocks):
        return type(self)(blocks, self._scan_chunks, self._detector_shape, self._subpixel,
                          self._attrs, coords=self._coord_map, _n_events=self._n_events)

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
        if isinstance(blocks, np.ndarray) and blocks.dtype == object:
            arr = blocks
        else:
            rows = list(blocks)
            arr = _object_array((len(rows), len(rows[0]) if rows else 0))
            for i, row in enumerate(rows):
                row = list(row)
                if len(row) != arr.shape[1]:
                    raise ValueError("blocks: rows of different lengths")
                for j, b in enumerate(row):
                    arr[i, j] = b
        if arr.shape != self.numblocks:
            raise ValueError(f"blocks must have shape {self.numblocks} (one per scan chunk of "
                             f"scan_chunks), got {arr.shape}")
        out = _object_array(arr.shape)
        for (i, j), b in np.ndenumerate(arr):
            if isinstance(b, tuple) and not dask.is_dask_collection(b):
                b = kev.check_block(b, **self._spec(i, j))
            elif not isinstance(b, Delayed):
                raise ValueError(f"blocks[{i}, {j}] must be a dask.delayed EventBlock or an "
                                 f"EventBlock, got {type(b).__name__}")
            out[i, j] = b
        return out

    def _spec(self, i, j) -> dict:
        return dict(scan_shape=(self._scan_chunks[0][i], self._scan_chunks[1][j]),
                    detector_shape=self._detector_shape, subpixel=self._subpixel,
                    where=_where(self._scan_chunks, i, j))

    def _handles(self) -> np.ndarray:
        """The blocks as dask.delayed values (computed ones wrapped as graph literals)."""
        if self._handle_cache is None:
            handles = _object_array(self.numblocks)
            for index, b in np.ndenumerate(self._blocks):
                handles[index] = b if isinstance(b, Delayed) else dask.delayed(b, traverse=False)
            self._handle_cache = handles
        return self._handle_cache

    def _block_array(self, kernel, name, tail, dtype, *args, per_block=False) -> da.Array:
        """Dask array with one task per scan chunk: ``kernel(block, *args)`` after checking the
        block. Chunks: the scan's plus ``tail`` (whole), or with ``per_block`` one ``(1, 1,
        *tail)`` partial per chunk. ``args`` (masks) become one shared graph key each."""
        handles = self._handles()
        shared = [dask.delayed(a, traverse=False, pure=True) for a in args]
        out = f"{name}-" + tokenize(kernel, [h.key for h in handles.flat],
                                    [s.key for s in shared], self._detector_shape,
                                    self._subpixel, per_block)
        zeros = (0,) * len(tail)
        layer = {}
        for i, j in np.ndindex(handles.shape):
            run = functools.partial(_run_block, kernel, per_block=per_block, **self._spec(i, j))
            layer[(out, i, j, *zeros)] = (run, handles[i, j].key, *(s.key for s in shared))
        graph = HighLevelGraph.from_collections(out, layer,
                                                dependencies=[*handles.flat, *shared])
        if per_block:
            scan = tuple((1,) * n for n in self.numblocks)
        else:
            scan = self._scan_chunks
        chunks = scan + tuple((int(n),) for n in tail)
        return da.Array(graph, out, chunks, meta=np.empty((0,) * len(chunks), dtype))

    def _check_mask(self, mask) -> np.ndarray:
        """A ``(Qx, Qy)`` mask as numpy; a DataArray is aligned by dim name and coords."""
        frame = xr.Dataset(coords=self._coords(Q_DIMS))
        return detector_weights(mask, frame, "mask", self._detector_shape)

    def _cal(self, space) -> dict:
        keys = (f"{space}_pixel_size", f"{space}_units", "energy")
        return {k: self._attrs[k] for k in keys if k in self._attrs}

    def _coords(self, dims) -> dict:
        """The coords of ``dims``: the ones given (the counted datacube's), else made from the
        calibration attrs (origin 0)."""
        space = "r" if dims == R_DIMS else "q"
        shape = self.scan_shape if space == "r" else self._detector_shape
        size = self._attrs.get(f"{space}_pixel_size", 1.0)
        units = self._attrs.get(f"{space}_units", "pixels")
        return {d: self._coord_map.get(d, axis_coord(n, size, units, d))
                for d, n in zip(dims, shape, strict=True)}

    def _image(self, data, name, units=None) -> xr.DataArray:
        attrs = self._cal("r")
        if units is not None:
            attrs["units"] = units
        return xr.DataArray(data, dims=R_DIMS, coords=self._coords(R_DIMS), name=name,
                            attrs=attrs)


# --- py4DSTEM converters ---------------------------------------------------------------------


def counted_datacube_to_pointlistarray(counted_datacube, subpixel=False) -> ElectronEvents:
    """py4DSTEM's converter, working: the events of a counted datacube, lazily.

    counted_datacube : datacube, or numpy / dask 4D array ``(Rx, Ry, Qx, Qy)``, bool or
        non-negative integer counts (a count ``c`` gives ``c`` events at that pixel).
    subpixel : only marks the positions as float32 sub-pixel coordinates (same values).

    Returns an :class:`ElectronEvents` (py4DSTEM: a PointListArray with fields ``qx``, ``qy``).
    """
    return ElectronEvents.from_datacube(counted_datacube, subpixel=subpixel)


def counted_pointlistarray_to_datacube(counted_pointlistarray, shape, subpixel=False,
                                       dtype=None) -> xr.DataArray:
    """py4DSTEM's converter, working for every scan shape: a lazy dense datacube of ``shape``
    ``(Rx, Ry, Qx, Qy)`` (py4DSTEM 0.14.18 allocated ``(Rx, Rx, Qx, Qy)``).

    ``shape`` must equal the events' scan and detector shapes. ``subpixel`` is py4DSTEM's flag
    (there it had to be False); here the events know whether they are sub-pixel, and sub-pixel
    events fall in pixel ``rint(q)``. ``dtype``: None -> bool, as py4DSTEM (the inverse of
    :func:`counted_datacube_to_pointlistarray` for bool cubes); an integer dtype gives counts
    (the inverse for integer cubes). See :meth:`ElectronEvents.to_datacube`.
    """
    if not isinstance(counted_pointlistarray, ElectronEvents):
        raise TypeError("counted_pointlistarray must be an ElectronEvents, got "
                        f"{type(counted_pointlistarray).__name__}")
    if not isinstance(subpixel, bool | np.bool_):
        raise ValueError(f"subpixel must be True or False, got {subpixel!r}")
    events = counted_pointlistarray
    expected = (*events.scan_shape, *events.detector_shape)
    try:
        given = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be 4 ints (Rx, Ry, Qx, Qy), got {shape!r}") from None
    if given != expected:
        raise ValueError(f"shape {tuple(shape)} does not match the events' scan and detector "
                         f"shape {expected}")
    return events.to_datacube(dtype=dtype)


# --- tasks (one per scan chunk) --------------------------------------------------------------


def _run_block(kernel, block, *args, scan_shape, detector_shape, subpixel, where,
               per_block=False):
    block = kev.check_block(block, scan_shape, detector_shape, subpixel, where)
    try:
        out = kernel(block, *args)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return out[None, None] if per_block else out


def _histogram4(block, detector_shape):
    return kev.diffraction_histogram(block, detector_shape)


def _events_from_dense(frames, subpixel, where):
    try:
        return kev.dense_to_events(frames, subpixel)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _write_block(group_path, block, *, scan_shape, detector_shape, subpixel, where) -> int:
    block = kev.check_block(block, scan_shape, detector_shape, subpixel, where)
    group = zarr.open_group(group_path, mode="w", zarr_format=3)
    for field in ("indptr", "qx", "qy"):
        values = getattr(block, field)
        array = group.create_array(field, shape=values.shape, dtype=values.dtype,
                                   chunks=(max(1, min(values.size, STORE_CHUNK)),),
                                   compressors=CODECS)
        if values.size:
            array[...] = values
    return int(block.indptr[-1])


def _read_block(group_path, *, scan_shape, detector_shape, subpixel, n_events, where):
    try:
        group = zarr.open_group(group_path, mode="r")
        fields = [group[f][...] for f in ("indptr", "qx", "qy")]
    except (FileNotFoundError, KeyError) as err:
        raise ValueError(f"{where}: cannot read the events at {group_path}: {err!r}") from None
    block = kev.check_block(EventBlock(*fields, tuple(scan_shape)), scan_shape, detector_shape,
                            subpixel, where)
    if block.qx.size != n_events:
        raise ValueError(f"{where}: {group_path} holds {block.qx.size} events, the store's "
                         f"metadata says {n_events}")
    return block


# --- helpers ---------------------------------------------------------------------------------


def _object_array(shape) -> np.ndarray:
    return np.empty(shape, dtype=object)


def _delayed_layer(name, tasks, dependencies) -> np.ndarray:
    """One graph layer ``name`` with a task per scan chunk ``{(i, j): task}`` -> 2D object
    array of ``Delayed`` (keys ``(name, i, j)``)."""
    layer = {(name, i, j): task for (i, j), task in tasks.items()}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=dependencies)
    shape = tuple(max(k[d] for k in tasks) + 1 for d in (0, 1))
    out = _object_array(shape)
    for i, j in tasks:
        out[i, j] = Delayed((name, i, j), graph, layer=name)
    return out


def _where(chunks, i, j) -> str:
    r0, c0 = sum(chunks[0][:i]), sum(chunks[1][:j])
    return (f"scan chunk ({i}, {j}) (rows {r0}:{r0 + chunks[0][i]}, columns "
            f"{c0}:{c0 + chunks[1][j]})")


def _check_chunks(scan_chunks) -> tuple:
    try:
        chunks = tuple(tuple(int(c) for c in axis) for axis in scan_chunks)
    except (TypeError, ValueError):
        raise ValueError("scan_chunks must be ((rows, ...), (columns, ...)), got "
                         f"{scan_chunks!r}") from None
    if len(chunks) != 2 or any(not axis or min(axis) < 1 for axis in chunks):
        raise ValueError("scan_chunks must be two non-empty tuples of positive chunk sizes, "
                         f"got {scan_chunks!r}")
    return chunks


def _check_detector(detector_shape, parameter="detector_shape") -> tuple:
    try:
        shape = tuple(int(s) for s in detector_shape)
    except (TypeError, ValueError):
        raise ValueError(f"{parameter} must be (Qx, Qy), got {detector_shape!r}") from None
    if len(shape) != 2 or not all(1 <= s <= kev.MAX_DETECTOR for s in shape):
        raise ValueError(f"{parameter} must be two sizes in 1 .. {kev.MAX_DETECTOR} (uint16 "
                         f"pixel indices), got {detector_shape!r}")
    return shape


def _check_attrs(attrs) -> dict:
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise ValueError(f"attrs must be a dict of calibration values, got {type(attrs).__name__}")
    out = dict(attrs)
    for key in ("r_pixel_size", "q_pixel_size"):
        if key in out:
            out[key] = check_pixel_size(out[key], parameter=f"attrs[{key!r}]")
    for key in ("r_units", "q_units"):
        if key in out:
            out[key] = canonical_units(out[key], parameter=f"attrs[{key!r}]")
    energy = check_energy(out.pop("energy", None))
    if energy is not None:
        out["energy"] = energy
    return out


def _check_dtype(dtype) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be a numpy dtype, got {dtype!r}") from None
    if dtype.kind not in "biuf":
        raise ValueError(f"dtype must be bool, integer or float, got {dtype}")
    return dtype


def _as_counted_datacube(obj) -> xr.DataArray:
    if isinstance(obj, xr.DataArray):
        dc = dcm.check_datacube(obj, parameter="counted_datacube")
    elif isinstance(obj, np.ndarray | da.Array):
        if obj.ndim != 4:
            raise ValueError("counted_datacube must be 4D (Rx, Ry, Qx, Qy), got shape "
                             f"{obj.shape}")
        dc = dcm.from_array(obj, chunks=None if isinstance(obj, da.Array) else "auto")
    else:
        raise ValueError("counted_datacube must be a datacube or a 4D numpy/dask array, got "
                         f"{type(obj).__name__}")
    if dc.dtype.kind not in "biu":
        raise ValueError(f"counted_datacube must hold bool or integer counts, got dtype "
                         f"{dc.dtype}")
    return dc


def _jsonable(attrs) -> dict:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
