"""The machinery shared by every per-frame list of items, CSR per scan chunk, lazily:
:class:`CSRFrames`, the base of :class:`~stem4d_dask.ragged.RaggedFrames` (named fields: peaks,
a user function's ragged output) and :class:`~stem4d_dask.events.ElectronEvents` (counted
electrons).

A :class:`CSRFrames` holds a 2D object array of blocks (one per scan chunk, each a
``dask.delayed`` value, one task per chunk, or already computed), the scan chunking, the coords
and the calibration attrs. It gives per-position access (``items[rx, ry]``: a numpy structured
array of that frame's items), slicing by scan region (``items[a:b, c:d]``, ``isel(Rx=...,
Ry=...)``: lazy, one task per new chunk), item counts per position, ``compute`` / ``persist``,
and the per-chunk task arrays the results are built from. A subclass says what a block is with
its ``_kind`` (``check``, ``split``, ``make``: static methods of a module-level class, so
tasks pickle them by reference).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed

from . import datacube as dcm
from .checks import checked_calibration_attrs
from .coords import coord, coord_values
from .datacube import R_DIMS, axis_coord, calibration_attrs
from .graph import chunk_location, delayed_chunks, map_chunk_values, object_grid
from .kernels import events as kev
from .kernels import ragged as kr
from .progress import compute as _compute


def _is_int(k) -> bool:
    return isinstance(k, int | np.integer) and not isinstance(k, bool | np.bool_)


def _by_chunk(picked: np.ndarray, chunks) -> list[tuple[int, np.ndarray]]:
    """``[(chunk index, local indices), ...]`` of the picked positions (increasing), one entry
    per chunk holding a pick, in order."""
    bounds = np.cumsum((0, *chunks))
    which = np.searchsorted(bounds, picked, side="right") - 1
    return [(int(i), picked[which == i] - bounds[i]) for i in np.unique(which)]


def _take(kind, block, *, rows, cols, spec, out_spec):
    indptr, fields = kind.split(kind.check(block, **spec))
    indptr, fields = kr.take_positions(indptr, fields, spec["scan_shape"], rows, cols)
    return kind.make(indptr, fields, **out_spec)


def _counts(block) -> np.ndarray:
    return kr.counts(block.indptr, block.scan_shape)


def _run_block(kernel, kind, block, *args, per_block=False, **spec):
    """``kernel(block, *args)`` on one scan chunk's block, checked first against the chunk's
    spec (``kind.check``), a ``ValueError`` it raises prefixed with where the chunk lies;
    ``per_block``: the result with two leading length-1 axes (one partial per chunk)."""
    block = kind.check(block, **spec)
    try:
        out = kernel(block, *args)
    except ValueError as err:
        raise ValueError(f"{spec['where']}: {err}") from None
    return out[None, None] if per_block else out


def checked_parts(kind, block, **spec) -> tuple[np.ndarray, dict]:
    """``(indptr, {field: array})`` of ``block`` checked by ``kind`` (the store's writer)."""
    return kind.split(kind.check(block, **spec))


def made(kind, indptr, fields, **spec):
    """The block ``kind`` makes of ``indptr`` and ``fields``, checked (the store's reader)."""
    return kind.make(indptr, fields, **spec)


class CSRFrames(ABC):
    """Per-frame items, CSR per scan chunk (see the module docstring). Subclasses set
    ``_spec_fields`` (``{field: dtype}``) and the block hooks, and call :meth:`_setup`."""

    _spec_fields: dict

    def _setup(self, blocks, scan_chunks, attrs, coords, n_items) -> None:
        self._scan_chunks = kev.check_scan_chunks(scan_chunks)
        self._attrs = checked_calibration_attrs(attrs)
        self._coord_map = self._check_coords(coords)
        self._blocks = self._check_blocks(blocks)
        self._n_items = n_items
        self._handle_cache = None

    # --- what a block is (subclasses) ----------------------------------------------------

    #: how a block is checked, split into arrays and made (a class of static methods, module
    #: level, so tasks pickle it by reference): :class:`RaggedKind`, or the events' kind
    _kind: type

    @abstractmethod
    def _spec(self, i, j) -> dict:
        """Keywords of the kind's ``check`` / ``make`` for the block of scan chunk ``(i, j)``
        (its ``scan_shape`` and ``where`` it lies, plus what the kind checks)."""

    @abstractmethod
    def _rebuilt(self, blocks, scan_chunks, coords, n_items):
        """A new instance of the same kind over other blocks / scan region."""

    # --- description ---------------------------------------------------------------------

    @property
    def blocks(self) -> np.ndarray:
        """2D object array (one per scan chunk) of delayed blocks or computed blocks."""
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
    def fields(self) -> dict:
        """``{name: dtype}`` of the items' fields."""
        return dict(self._spec_fields)

    @property
    def attrs(self) -> dict:
        return dict(self._attrs)

    @property
    def is_computed(self) -> bool:
        """True when every block is materialised (not a ``dask.delayed`` value)."""
        return not any(isinstance(b, Delayed) for b in self._blocks.flat)

    @property
    def n_items(self):
        """Number of items: an int when known (computed blocks, or a store's metadata), else a
        lazy 0-d int64 dask array (``int(...)`` computes it)."""
        if self._n_items is not None:
            return self._n_items
        if self.is_computed:
            return int(sum(b.indptr[-1] for b in self._blocks.flat))
        return self.counts().data.sum()

    def counts(self) -> xr.DataArray:
        """Lazy int64 ``(Rx, Ry)``: the number of items at every scan position."""
        return self._image(self._block_array(_counts, "item-counts", (), np.int64), "counts")

    # --- access --------------------------------------------------------------------------

    def __getitem__(self, key):
        """``items[rx, ry]`` (ints, negative from the end): that position's items, a numpy
        structured array with one field per item field (computes the chunk holding it, only
        that one). ``items[a:b, c:d]`` (slices with steps >= 1, or ints kept as one row /
        column): the items of that scan region, lazily (:meth:`isel`)."""
        if not isinstance(key, tuple) or len(key) != 2:
            raise IndexError(f"index with [rx, ry] (two ints or slices), got {key!r}")
        if all(_is_int(k) for k in key):
            return self._position(
                *(self._int_index(k, d) for k, d in zip(key, R_DIMS, strict=True))
            )
        return self.isel(Rx=key[0], Ry=key[1])

    def isel(self, Rx=slice(None), Ry=slice(None)):
        """The items of the scan region ``Rx`` x ``Ry`` (slices with steps >= 1, or ints kept
        as one row / column), lazily: one task per new chunk, taking the positions out of the
        old chunk; coords follow (a crop keeps its place, a step its larger pixel)."""
        picks = [self._picked(k, d) for k, d in ((Rx, "Rx"), (Ry, "Ry"))]
        groups = [_by_chunk(p, c) for p, c in zip(picks, self._scan_chunks, strict=True)]
        chunks = tuple(tuple(len(local) for _, local in g) for g in groups)
        shape = tuple(len(g) for g in groups)
        name = "csr-isel-" + tokenize(
            [getattr(b, "key", id(b)) for b in self._blocks.flat], [p.tolist() for p in picks]
        )
        blocks = np.empty(shape, dtype=object)
        tasks, sources = {}, []
        for a, (i, rows) in enumerate(groups[0]):
            for b, (j, cols) in enumerate(groups[1]):
                where = chunk_location(chunks, (a, b))
                take = functools.partial(
                    _take,
                    self._kind,
                    rows=rows,
                    cols=cols,
                    spec=self._spec(i, j),
                    out_spec={
                        **self._spec(i, j),
                        "scan_shape": (rows.size, cols.size),
                        "where": where,
                    },
                )
                source = self._blocks[i, j]
                if isinstance(source, Delayed):
                    tasks[(a, b)] = (take, source.key)
                    sources.append(source)
                else:
                    blocks[a, b] = take(source)
        if tasks:
            lazy = delayed_chunks(name, tasks, sources, shape)
            for ix in tasks:
                blocks[ix] = lazy[ix]
        coords = dict(self._coord_map)
        for d, p in zip(R_DIMS, picks, strict=True):
            coords[d] = self._coords(R_DIMS)[d].isel({d: p})
        steps = {int(np.diff(p)[0]) for p in picks if p.size > 1}
        out = self._rebuilt(blocks, chunks, coords, None)
        if steps and "r_pixel_size" in out._attrs:  # the coords say the step; keep attrs agreeing
            size = out._attrs.pop("r_pixel_size")
            if len(steps) == 1:  # square pixels still
                out._attrs["r_pixel_size"] = size * steps.pop()
        return out

    # --- materialising -------------------------------------------------------------------

    def compute(self, progress=False):
        """A new instance with every block computed (one compute call over all chunks;
        ``progress`` shows a bar)."""
        results = _compute(*self._handles().flat, progress=progress)
        return self._rebuilt(
            object_grid(results, self.numblocks), self._scan_chunks, self._coord_map, self._n_items
        )

    def persist(self):
        """A new instance whose blocks are materialised (``dask.persist``, one call): in memory
        with the local schedulers, on the workers with a ``distributed`` client."""
        blocks = object_grid(dask.persist(*self._handles().flat), self.numblocks)
        return self._rebuilt(blocks, self._scan_chunks, self._coord_map, self._n_items)

    # --- internals -----------------------------------------------------------------------

    def _position(self, rx: int, ry: int) -> np.ndarray:
        bounds = [np.cumsum((0, *c)) for c in self._scan_chunks]
        i = int(np.searchsorted(bounds[0], rx, side="right")) - 1
        j = int(np.searchsorted(bounds[1], ry, side="right")) - 1
        block = self._blocks[i, j]
        if isinstance(block, Delayed):
            (block,) = dask.compute(block)
        indptr, fields = self._kind.split(self._kind.check(block, **self._spec(i, j)))
        k = (rx - bounds[0][i]) * self._scan_chunks[1][j] + (ry - bounds[1][j])
        return kr.position_items(indptr, fields, int(k), self._spec_fields)

    def _int_index(self, k, dim: str) -> int:
        n = self.scan_shape[R_DIMS.index(dim)]
        k = int(k)
        if not -n <= k < n:
            raise IndexError(f"{dim} index {k} is out of range for a scan of {n} positions")
        return k % n

    def _picked(self, key, dim: str) -> np.ndarray:
        n = self.scan_shape[R_DIMS.index(dim)]
        if _is_int(key):
            return np.array([self._int_index(key, dim)])
        if not isinstance(key, slice):
            raise IndexError(f"{dim}: index with an int or a slice, got {key!r}")
        if key.step is not None and (not _is_int(key.step) or int(key.step) < 1):
            raise IndexError(f"{dim}: slice steps must be ints >= 1, got {key.step!r}")
        picked = np.arange(n)[key]
        if picked.size == 0:
            raise IndexError(f"{dim}: the slice {key} selects no position of {n}")
        return picked

    def _check_coords(self, coords) -> dict:
        """``{dim: coord DataArray}`` of the given coords, checked against the shapes."""
        out = {}
        sizes = dict(zip(dcm.DIMS, self.scan_shape + self._detector_sizes(), strict=False))
        for d, c in (coords or {}).items():
            if d not in sizes:
                raise ValueError(f"coords: unknown dim {d!r}; expected one of {tuple(sizes)}")
            values = coord_values(getattr(c, "values", c), d, "coords")
            if values.size != sizes[d]:
                raise ValueError(f"coords: {d} has {values.size} values for {sizes[d]} pixels")
            out[d] = coord(values, d, getattr(c, "attrs", {}).get("units", "pixels"))
        return out

    def _detector_sizes(self) -> tuple:
        return ()

    def _check_blocks(self, blocks):
        if not hasattr(blocks, "__len__") or isinstance(blocks, tuple):
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
            if isinstance(b, Delayed):
                continue
            if not isinstance(b, tuple) or dask.is_dask_collection(b):
                raise ValueError(
                    f"blocks[{i}, {j}] must be a dask.delayed block or a computed block, "
                    f"got {type(b).__name__}"
                )
            out[i, j] = self._kind.check(b, **self._spec(i, j))
        return out

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
        """The coords of ``dims``: the ones given, else made from the calibration attrs
        (origin 0)."""
        space = "r" if dims == R_DIMS else "q"
        shape = self.scan_shape if space == "r" else self._detector_sizes()
        size = self._attrs.get(f"{space}_pixel_size", 1.0)
        units = self._attrs.get(f"{space}_units", "pixels")
        return {
            d: self._coord_map.get(d, axis_coord(n, size, units, d))
            for d, n in zip(dims, shape, strict=True)
        }

    def _block_array(self, kernel, name, tail, dtype, *args, per_block=False) -> da.Array:
        """Dask array with one task per scan chunk: ``kernel(block, *args)`` after checking the
        block. Chunks: the scan's plus ``tail`` (whole), or with ``per_block`` one ``(1, 1,
        *tail)`` partial per chunk. ``args`` (masks) become one shared graph key each."""
        scan = tuple((1,) * n for n in self.numblocks) if per_block else self._scan_chunks
        return map_chunk_values(
            functools.partial(_run_block, kernel, self._kind, per_block=per_block),
            self._handles(),
            *args,
            name=name,
            dtype=dtype,
            chunks=scan + tuple((int(n),) for n in tail),
            keywords=lambda index: self._spec(*index),
        )

    def _image(self, data, name, units=None) -> xr.DataArray:
        """``(Rx, Ry)`` dask array ``data`` as a DataArray with the scan coords and calibration
        (``units``: the values' units, when they have one)."""
        attrs = {**calibration_attrs(self._attrs, ("r",)), **({"units": units} if units else {})}
        return xr.DataArray(data, dims=R_DIMS, coords=self._coords(R_DIMS), name=name, attrs=attrs)
