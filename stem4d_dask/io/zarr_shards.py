"""Whole shards of sharded zarr v3 arrays, decoded and encoded by the dask task that owns them.

Our stores put one shard in one dask task (``io/zarr_store.py``), so a task can read its shard
file in one go and decode every inner chunk straight into the output block with numcodecs'
blosc (GIL released, SIMD shuffles, no intermediate copy), and a write task can encode a whole
shard into one file. Measured on 2 cores (``docs/benchmarks.md``), this takes about 40% less CPU
to decode than the ``zarrs`` pipeline and 2.5x less to encode; the zarr pipeline
(:mod:`stem4d_dask.io.zarr_pipeline`) does everything else (partial shards, edge shards, other
layouts, URLs).

The bytes are the zarr v3 ``sharding_indexed`` codec's, as zarr-python writes them: inner chunks
encoded by ``bytes`` (little endian), optionally ``blosc``, optionally ``crc32c`` (a checksum
after each chunk, which our stores have: corrupt data is refused, never decoded into wrong
values), concatenated in Morton order,
chunks equal to the fill value left out, then the index of ``(offset, nbytes)`` uint64 pairs
(``2**64 - 1`` for a missing chunk) with its crc32c, at the end or the start of the shard. Any
zarr v3 reader reads them; :class:`ShardCodec.of` accepts only arrays laid out that way (and
returns None for anything else, which then goes through zarr).
"""

from __future__ import annotations

import mmap
import sys
from dataclasses import dataclass
from itertools import product

import numcodecs.blosc
import numpy as np
from zarr.core.indexing import morton_order_iter

try:  # takes any buffer (no copy) and releases the GIL: decoding threads and workers run on
    from crc32c import crc32c as _crc32c
except ImportError:  # pragma: no cover - google-crc32c (zarr's own) takes bytes only
    import google_crc32c

    def _crc32c(data) -> int:
        return google_crc32c.value(bytes(data))


MISSING = np.uint64(2**64 - 1)
SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
BYTES_LITTLE = {"name": "bytes", "configuration": {"endian": "little"}}


@dataclass(frozen=True)
class ShardCodec:
    """How the shards of one array are laid out: shard and inner chunk shapes (elements),
    dtype, fill value, blosc settings (None: uncompressed), index position, key separator."""

    shard_shape: tuple[int, ...]
    inner_shape: tuple[int, ...]
    dtype: str
    fill_value: float
    blosc: tuple | None  # (cname, clevel, shuffle number, typesize, blocksize)
    index_at_end: bool
    separator: str
    checksum: bool = False  # inner chunks end with their crc32c (zarr's ``crc32c`` codec)

    @classmethod
    def of(cls, meta: dict) -> ShardCodec | None:
        """The codec of an array from its ``zarr.json`` contents, or None when the array is not
        a v3 array of numbers sharded with ``bytes`` (+ ``blosc``) inner chunks and a
        ``bytes`` + ``crc32c`` index on a little-endian machine."""
        try:
            return cls._parse(meta)
        except (KeyError, TypeError, ValueError):
            return None

    @classmethod
    def _parse(cls, meta: dict) -> ShardCodec | None:
        codecs = meta.get("codecs") or []
        keys = meta.get("chunk_key_encoding", {})
        if (
            sys.byteorder != "little"
            or meta.get("zarr_format") != 3
            or len(codecs) != 1
            or codecs[0]["name"] != "sharding_indexed"
            or keys.get("name") != "default"
        ):
            return None
        dtype = np.dtype(meta["data_type"])
        if dtype.kind not in "biuf" or not dtype.isnative:
            return None
        config = codecs[0]["configuration"]
        inner, index = config["codecs"], config["index_codecs"]
        if index != [BYTES_LITTLE, {"name": "crc32c"}] or not _bytes_codec(inner[0], dtype):
            return None
        checksum = inner[-1] == {"name": "crc32c"}
        if checksum:
            inner = inner[:-1]
        blosc = None
        if len(inner) == 2 and inner[1]["name"] == "blosc":
            c = inner[1]["configuration"]
            blosc = (
                c["cname"],
                int(c["clevel"]),
                SHUFFLES[c["shuffle"]],
                int(c.get("typesize", dtype.itemsize)),
                int(c.get("blocksize", 0)),
            )
        elif len(inner) != 1:
            return None
        shard = tuple(int(n) for n in meta["chunk_grid"]["configuration"]["chunk_shape"])
        chunk = tuple(int(n) for n in config["chunk_shape"])
        if len(chunk) != len(shard) or any(s % c for s, c in zip(shard, chunk, strict=True)):
            return None
        fill = meta.get("fill_value", 0)
        if not isinstance(fill, int | float) or isinstance(fill, bool):
            if not (isinstance(fill, str) and fill == "NaN"):
                return None
            fill = float("nan")
        return cls(
            shard,
            chunk,
            dtype.str,
            fill,
            blosc,
            config.get("index_location", "end") == "end",
            keys.get("configuration", {}).get("separator", "/"),
            checksum,
        )

    @property
    def per_shard(self) -> tuple[int, ...]:
        return tuple(s // c for s, c in zip(self.shard_shape, self.inner_shape, strict=True))

    def key(self, shard_index) -> str:
        """The store key of the shard at grid index ``shard_index``."""
        return self.separator.join(["c", *(str(int(i)) for i in shard_index)])

    def whole_shard(self, slices, shape) -> tuple[int, ...] | None:
        """The grid index of the shard that ``slices`` (of an array of ``shape``) cover exactly,
        or None (part of a shard, several shards, or a shard cut by the array's edge)."""
        pieces = self.shards_of(slices, shape)
        if pieces is None or len(pieces) != 1 or pieces[0][2] is not None:
            return None
        return pieces[0][0]

    def shards_of(self, slices, shape) -> list[tuple] | None:
        """``[(shard index, region of the block, region of the shard or None when whole)]`` for
        a block ``slices`` (of an array of ``shape``) made of whole shards (those at the array's
        edge cut by it), else None."""
        ranges = []
        for s, size, n in zip(slices, self.shard_shape, shape, strict=True):
            start, stop, step = s.indices(n)
            if step != 1 or start % size or (stop % size and stop != n) or stop <= start:
                return None
            ranges.append(range(start // size, -(-stop // size)))
        pieces = []
        for index in product(*ranges):
            block, shard, cut = [], [], False
            for i, s, size, n in zip(index, slices, self.shard_shape, shape, strict=True):
                begin, end = i * size, min((i + 1) * size, n)
                offset = s.indices(n)[0]
                block.append(slice(begin - offset, end - offset))
                shard.append(slice(0, end - begin))
                cut |= end - begin != size
            pieces.append((index, tuple(block), tuple(shard) if cut else None))
        return pieces

    def decode(
        self, data: bytes | memoryview | mmap.mmap | None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """The shard's values from its stored bytes (None: no shard stored, all fill value),
        written into ``out`` (an array or view of the shard's shape and dtype) when given."""
        dtype = np.dtype(self.dtype)
        if out is None:
            out = np.empty(self.shard_shape, dtype)
        elif out.shape != self.shard_shape or out.dtype != dtype:
            raise ValueError(
                f"out: expected {self.shard_shape} {dtype}, got {out.shape} {out.dtype}"
            )
        if data is None:
            out.fill(self.fill_value)
            return out
        n = int(np.prod(self.per_shard))
        size = 16 * n + 4
        raw = memoryview(data)
        stored = raw[len(raw) - size :] if self.index_at_end else raw[:size]
        crc = np.uint32(_crc32c(stored[:-4])).tobytes()
        if crc != bytes(stored[-4:]):
            raise ValueError("zarr shard: the index checksum does not match (corrupt shard)")
        index = np.frombuffer(stored[:-4], dtype="<u8").reshape(n, 2)
        nbytes = int(np.prod(self.inner_shape)) * dtype.itemsize
        for position, (offset, length) in zip(self._inner_order(), index, strict=True):
            view = out[self._inner_slices(position)]
            target = view if view.flags.c_contiguous else np.empty(self.inner_shape, dtype)
            if offset == MISSING:
                target.fill(self.fill_value)
            else:
                chunk = raw[int(offset) : int(offset) + int(length)]
                if self.checksum:
                    chunk = self._verified(chunk, position)
                flat = target.reshape(-1).view(np.uint8)
                if self.blosc is None:
                    if len(chunk) != nbytes:
                        raise ValueError("zarr shard: an inner chunk has the wrong size")
                    flat[...] = np.frombuffer(chunk, np.uint8)
                else:
                    numcodecs.blosc.decompress(chunk, flat)
            if target is not view:
                view[...] = target
        return out

    def encode(self, block: np.ndarray) -> bytes | None:
        """The stored bytes of a whole shard ``block`` (shard shape, this dtype), or None when
        every inner chunk equals the fill value (zarr stores no shard then)."""
        block = np.asarray(block, dtype=self.dtype)
        if block.shape != self.shard_shape:
            raise ValueError(f"block: expected a whole shard {self.shard_shape}, got {block.shape}")
        index = np.full(self.per_shard + (2,), MISSING, dtype="<u8")
        pieces, offset = [], 0
        for position in morton_order_iter(self.per_shard):
            chunk = np.ascontiguousarray(block[self._inner_slices(position)])
            if self._is_fill(chunk):
                continue
            if self.blosc is None:
                encoded = chunk.tobytes()
            else:
                cname, clevel, shuffle, typesize, blocksize = self.blosc
                encoded = numcodecs.blosc.compress(
                    chunk, cname.encode(), clevel, shuffle, blocksize, typesize
                )
            if self.checksum:
                encoded += np.uint32(_crc32c(encoded)).tobytes()
            pieces.append(encoded)
            index[position] = (offset, len(encoded))
            offset += len(encoded)
        if not pieces:
            return None
        if not self.index_at_end:
            head = 16 * int(np.prod(self.per_shard)) + 4
            index[index[..., 0] != MISSING, 0] += head
        table = index.tobytes()
        table += np.uint32(_crc32c(table)).tobytes()
        return b"".join([*pieces, table] if self.index_at_end else [table, *pieces])

    @staticmethod
    def _verified(chunk: memoryview, position) -> memoryview:
        """An inner chunk's bytes without its trailing crc32c, checked against it."""
        data = chunk[:-4]
        if len(chunk) < 4 or np.uint32(_crc32c(data)).tobytes() != chunk[-4:]:
            raise ValueError(
                f"zarr shard: the checksum of inner chunk {tuple(map(int, position))} does not "
                "match (corrupt data)"
            )
        return data

    def _inner_order(self):
        """Inner chunk positions in the index's (C) order."""
        return product(*(range(n) for n in self.per_shard))

    def _inner_slices(self, position) -> tuple[slice, ...]:
        return tuple(
            slice(p * c, (p + 1) * c) for p, c in zip(position, self.inner_shape, strict=True)
        )

    def _is_fill(self, chunk: np.ndarray) -> bool:
        if isinstance(self.fill_value, float) and np.isnan(self.fill_value):
            return chunk.dtype.kind == "f" and bool(np.isnan(chunk).all())
        if self.fill_value == 0:  # all bits zero: bit-exact (-0.0 is stored, not dropped)
            return not chunk.reshape(-1).view(f"u{chunk.dtype.itemsize}").any()
        return bool((chunk == self.fill_value).all())


def _bytes_codec(codec: dict, dtype: np.dtype) -> bool:
    """A ``bytes`` codec that stores ``dtype`` as it is in memory here (little endian)."""
    if codec.get("name") != "bytes":
        return False
    endian = (codec.get("configuration") or {}).get("endian")
    return endian == "little" or (endian is None and dtype.itemsize == 1)


__all__ = ["ShardCodec"]
