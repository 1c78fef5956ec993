"""Per-frame lists of items with named numeric fields, CSR per scan chunk, lazily:
:class:`RaggedFrames`, the ragged output of :func:`stem4d_dask.frame_functions.map_frames` and
the base of :class:`~stem4d_dask.peaks.BraggPeaks`, with its zarr store
(:mod:`stem4d_dask.io.ragged_store`). The shared machinery (per-position access, slicing,
counts, compute) is :class:`~stem4d_dask.csr_frames.CSRFrames`'.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .csr_frames import CSRFrames, checked_parts, made
from .graph import chunk_location
from .io.ragged_store import json_ready, loaded_coords, open_csr, read_csr, stored_coords, write_csr
from .kernels import ragged as kr
from .kernels.ragged import RaggedBlock

FORMAT = "stem4d_dask.ragged_frames"
FORMAT_VERSION = 1
COUNT_KEYS = ("n_items", "block_items")

_KINDS: dict = {}  # class name -> class, to reopen a store as the kind that wrote it


class RaggedKind:
    """What a block of :class:`RaggedFrames` is: a :class:`RaggedBlock` whose fields have the
    dtypes ``dtypes`` (``{name: dtype}``) over ``scan_shape`` positions; errors name ``where``."""

    @staticmethod
    def check(block, *, scan_shape, dtypes, where) -> RaggedBlock:
        block = kr.as_block(block, RaggedBlock, scan_shape, where)
        kr.check_parts(block.indptr, block.fields, scan_shape, dtypes, where)
        return block

    @staticmethod
    def split(block) -> tuple[np.ndarray, dict]:
        return block.indptr, block.fields

    @staticmethod
    def make(indptr, fields, *, scan_shape, dtypes, where) -> RaggedBlock:
        block = RaggedBlock(indptr, dict(fields), tuple(int(s) for s in scan_shape))
        return RaggedKind.check(block, scan_shape=scan_shape, dtypes=dtypes, where=where)


def ragged_spec(scan_chunks, dtypes, index) -> dict:
    """The :class:`RaggedKind` keywords of scan chunk ``index`` ``(i, j)``."""
    i, j = index
    return dict(
        scan_shape=(scan_chunks[0][i], scan_chunks[1][j]),
        dtypes=dict(dtypes),
        where=chunk_location(scan_chunks, index),
    )


class RaggedFrames(CSRFrames):
    """Items with named numeric fields per scan position, CSR per scan chunk: the ragged output
    of :func:`stem4d_dask.frame_functions.map_frames` and the base of
    :class:`~stem4d_dask.peaks.BraggPeaks`.

    blocks : 2D object array, one per scan chunk of ``scan_chunks``: ``dask.delayed``
        :class:`~stem4d_dask.kernels.ragged.RaggedBlock` values or RaggedBlocks.
    scan_chunks : ``((rows, ...), (columns, ...))`` (dask style).
    fields : ``{name: dtype}`` of the items.
    attrs : calibration attrs (``r_pixel_size``, ``r_units``, ...) of the scan.
    coords : ``{"Rx": coord, "Ry": coord}`` (the datacube's scan coords).
    units : ``{field: units}`` of the fields that have one.
    """

    def __init__(
        self, blocks, scan_chunks, fields, attrs=None, *, coords=None, units=None, _n_items=None
    ):
        self._spec_fields = kr.check_field_spec(fields)
        self._units = {k: str(v) for k, v in (units or {}).items() if k in self._spec_fields}
        self._setup(blocks, scan_chunks, attrs, coords, _n_items)

    @property
    def units(self) -> dict:
        """``{field: units}`` of the fields that have one."""
        return dict(self._units)

    def __repr__(self):
        n = self.n_items if self.is_computed else self._n_items
        count = f"{n} items" if isinstance(n, int) else "lazy"
        fields = ", ".join(f"{k} {v}" for k, v in self._spec_fields.items())
        (n1, n2) = self.numblocks
        return (
            f"<{type(self).__name__}: scan {self.scan_shape} in {n1} x {n2} chunks, "
            f"fields ({fields}), {count}>"
        )

    @classmethod
    def from_zarr(cls, path):
        """Open a store written by :meth:`to_zarr`. Reads the metadata only; each scan chunk is
        read (and checked) by its own task."""
        meta = open_csr(path, FORMAT, FORMAT_VERSION, "a ragged-frames store")
        chunks = tuple(tuple(int(c) for c in axis) for axis in meta["scan_chunks"])
        fields = kr.check_field_spec(meta["fields"], "the store's fields")
        blocks = read_csr(
            path,
            meta,
            list(fields),
            make=functools.partial(made, RaggedKind),
            spec=lambda ij: ragged_spec(chunks, fields, ij),
            count_key=COUNT_KEYS[1],
        )
        kind = cls if meta.get("kind") in (None, cls.__name__) else _KINDS.get(meta["kind"], cls)
        return kind._from_store(blocks, chunks, fields, meta)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _KINDS[cls.__name__] = cls

    @classmethod
    def _from_store(cls, blocks, chunks, fields, meta):
        return cls(
            blocks,
            chunks,
            fields,
            meta.get("attrs") or {},
            coords=loaded_coords(meta),
            units=meta.get("units"),
            _n_items=int(meta[COUNT_KEYS[0]]),
        )

    def to_zarr(self, path, overwrite=False, progress=None) -> Path:
        """Write to a zarr v3 store at ``path`` (:mod:`stem4d_dask.io.ragged_store`), one task
        per scan chunk, through ``path + ".partial"``. ``overwrite``: replace an existing store
        (else ``FileExistsError``). Returns the final ``Path``; :meth:`from_zarr` opens it."""
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": type(self).__name__,
            "layout": "blocks/{i}.{j}/{indptr," + ",".join(self._spec_fields) + "}",
            "fields": {k: v.str for k, v in self._spec_fields.items()},
            "units": self._units,
            "attrs": json_ready(self._attrs),
            "coords": stored_coords(self._coord_map),
            **self._store_extra(),
        }
        return write_csr(
            path,
            self._handles(),
            self._scan_chunks,
            parts=functools.partial(checked_parts, self._kind),
            spec=lambda ij: self._spec(*ij),
            metadata=metadata,
            count_keys=COUNT_KEYS,
            overwrite=overwrite,
            progress=progress,
        )

    def _store_extra(self) -> dict:
        return {}

    _kind = RaggedKind

    def _spec(self, i, j) -> dict:
        return ragged_spec(self._scan_chunks, self._spec_fields, (i, j))

    def _rebuilt(self, blocks, scan_chunks, coords, n_items):
        return type(self)(
            blocks,
            scan_chunks,
            self._spec_fields,
            self._attrs,
            coords=coords,
            units=self._units,
            _n_items=n_items,
        )
