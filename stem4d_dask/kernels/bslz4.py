"""Bitshuffle-LZ4 ("bslz4") chunk decoding, compiled and GIL-free: whole runs of chunks (one
frame each, as DECTRIS ARINA / EIGER HDF5 files store them) decoded straight into the frames.

Chunk format (bitshuffle's HDF5 filter 32008 with LZ4, see ``docs/formats.md``)::

    [u64 BE uncompressed bytes][u32 BE block size in bytes]          12-byte header
    per block: [u32 BE compressed size][LZ4 block]                   blocks of B elements
    [the last n % 8 elements, raw]

A frame of ``n`` elements of ``s`` bytes has ``n // B`` blocks of ``B`` elements, then one
block of ``(n % B)`` rounded down to a multiple of 8 elements (when not 0), then the last
``n % 8`` elements unshuffled and uncompressed. Each block decompresses (LZ4 block format:
:func:`stem4d_dask.kernels.lz4.lz4_block`) to ``8 * s`` bit planes of ``N / 8`` bytes: bit
``b`` of byte ``j`` of element ``e`` is bit ``e % 8`` of byte ``e // 8`` of plane
``8 * j + b``. Unshuffling gathers the 8 bytes of
planes ``8 j .. 8 j + 7`` at column ``k`` into a 64-bit word and transposes it as an 8 x 8 bit
matrix (Hacker's Delight ``transpose8``): its byte ``t`` is byte ``j`` of element ``8 k + t``.
For ``s`` > 1 one loop per ``j`` writes these bytes to a scratch block, then one loop
interleaves them into the elements: simple loops that LLVM vectorizes.

:func:`decode_run` decodes a whole run of chunks (as ``pread`` from a file) into the frames
of a block in one compiled call without the GIL, through a block-sized scratch buffer only
(~3.5-4.5 GB/s of frames per thread for detector counts; bitshuffle.decompress_lz4 called per
frame: ~1.5-2). Every read and write index is checked, so corrupt chunks (bad sizes,
truncated data, LZ4 match offsets before the start of the output) raise
:class:`Bslz4Error` naming the chunk, never read or write out of bounds. Little-endian
machines only (the frames' bytes are assembled as little-endian words).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numba
import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from .lz4 import lz4_block, memcpy

if TYPE_CHECKING:
    from numba.core.base import BaseContext
    from numba.core.typing import Signature

OK = 0
SHORT = 1  # chunk shorter than its header
TOTAL = 2  # header's uncompressed size is not the frame's
BLOCK = 3  # bad block size
RECORD = 4  # chunk ends inside a block's size field
OVERRUN = 5  # a block's compressed size runs past the chunk
LZ4 = 6  # the LZ4 data does not decode
LENGTH = 7  # a block decodes to another size than it should
TAIL = 8  # the bytes after the last block are not the n % 8 raw elements
BEYOND = 9  # the chunk lies past the end of the buffer
LITTLE = sys.byteorder == "little"  # the byte order the frames are stored in
SLACK = 32  # scratch bytes past a block, for word copies

_MESSAGES = {
    SHORT: "the chunk is shorter than its 12-byte header",
    TOTAL: "its header gives another uncompressed size than a frame's",
    BLOCK: "its header gives a bad block size",
    RECORD: "the chunk ends inside a block's size field",
    OVERRUN: "a block's compressed size runs past the end of the chunk",
    LZ4: "an LZ4 block is corrupt",
    LENGTH: "an LZ4 block decompresses to the wrong size",
    TAIL: "the block sizes do not add up to the chunk's size",
    BEYOND: "the chunk lies beyond the end of the data read",
}


class Bslz4Error(ValueError):
    """A chunk that does not decode; ``index``: which chunk of the run (0-based)."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


def decode_run(
    buf: bytes | bytearray | memoryview | np.ndarray,
    sizes: npt.ArrayLike,
    out: np.ndarray,
    raw: npt.ArrayLike | None = None,
    *,
    start: int = 0,
) -> np.ndarray:
    """Decode ``len(sizes)`` bitshuffle-LZ4 chunks lying back to back in ``buf`` (bytes-like
    or uint8 array; the first at byte ``start``) into the frames ``out`` ``(len(sizes), ...)``
    (a C-contiguous little-endian array, on a little-endian machine; element size 1, 2, 4
    or 8 bytes; each frame's elements are the chunk's values in C order). ``raw``: bool per chunk,
    True where the chunk holds the frame's bytes unfiltered (HDF5's skipped filter).

    Runs without the GIL. Raises :class:`Bslz4Error` (a ``ValueError``) with ``index`` = the
    first chunk that does not decode; frames before it are decoded, later ones are not."""
    src = np.frombuffer(buf, dtype=np.uint8)
    if src.flags.writeable:  # one compiled signature: read-only input
        src = src.view()
        src.flags.writeable = False
    sizes = np.array(sizes, dtype=np.int64).ravel()
    count = sizes.size
    if out.shape[0] != count:
        raise ValueError(f"out holds {out.shape[0]} frames, there are {count} chunks")
    if (
        not out.flags.c_contiguous
        or out.dtype.byteorder == ">"
        or not LITTLE
        or out.dtype.itemsize not in (1, 2, 4, 8)
    ):
        raise ValueError(
            f"out must be C-contiguous and little-endian, of 1, 2, 4 or 8-byte "
            f"elements; got {out.dtype} {out.shape}"
        )
    flags = np.zeros(count, dtype=np.uint8)
    if raw is not None:
        flags[:] = np.asarray(raw, dtype=bool).ravel()
    if sizes.size and sizes.min() < 0:
        raise ValueError("negative chunk size")
    n = int(np.prod(out.shape[1:], dtype=np.int64))
    dst = out.reshape(-1).view(np.uint8)
    status, index, detail = _decode(
        src, int(start), sizes, flags, dst, n * out.dtype.itemsize, out.dtype.itemsize
    )
    if status == OK:
        return out
    message = _MESSAGES.get(status, f"error {status}")
    if status == TOTAL:
        message += f" ({detail} bytes, a frame has {n * out.dtype.itemsize})"
    elif status == BLOCK:
        message = f"its header gives a bad block size ({detail} bytes)"
    elif status == LENGTH:
        message += f" ({detail})"
    raise Bslz4Error(message, index)


@numba.njit
def _be32(src, p):  # type: ignore[no-untyped-def]
    return (
        (np.int64(src[p]) << 24)
        | (np.int64(src[p + 1]) << 16)
        | (np.int64(src[p + 2]) << 8)
        | np.int64(src[p + 3])
    )


@numba.njit(nogil=True, cache=True)
def _decode(src, start, sizes, raw, dst, nbytes, s):  # type: ignore[no-untyped-def]
    """Decode the chunks into ``dst`` (the frames' bytes, ``nbytes`` each, elements of ``s``
    bytes); returns (status, chunk, detail)."""
    count = sizes.size
    n = nbytes // s
    scratch = np.empty(0, dtype=np.uint8)
    planes = np.empty(0, dtype=np.uint8)
    pos = start
    end_all = src.size
    if pos < 0 or pos > end_all or dst.size < count * nbytes:
        return BEYOND, 0, 0
    for i in range(count):
        size = sizes[i]
        if size > end_all - pos:
            return BEYOND, i, 0
        end = pos + size
        d0 = i * nbytes
        if raw[i]:
            if size != nbytes:
                return TAIL, i, 0
            if nbytes:
                memcpy(dst, d0, src, pos, nbytes)
            pos = end
            continue
        if size < 12:
            return SHORT, i, 0
        if src[pos] != 0 or src[pos + 1] != 0 or src[pos + 2] != 0:  # >= 2**40 bytes
            return TOTAL, i, -1
        total = (np.int64(src[pos + 3]) << 32) | _be32(src, pos + 4)
        if total != nbytes:
            return TOTAL, i, total
        block_bytes = _be32(src, pos + 8)
        if block_bytes <= 0 or block_bytes % s != 0 or (block_bytes // s) % 8 != 0:
            return BLOCK, i, block_bytes
        block = block_bytes // s
        need = min(block, n) * s
        if scratch.size < need + SLACK:
            scratch = np.empty(need + SLACK, dtype=np.uint8)
            planes = np.empty(need + SLACK, dtype=np.uint8)
        full = n // block
        last = n % block
        last -= last % 8
        p = pos + 12
        e0 = 0
        for b in range(full + (1 if last > 0 else 0)):
            m = block if b < full else last
            if end - p < 4:
                return RECORD, i, 0
            csize = _be32(src, p)
            p += 4
            if csize > end - p:
                return OVERRUN, i, 0
            got = lz4_block(src, p, p + csize, scratch, m * s)
            if got < 0:
                return LZ4, i, 0
            if got != m * s:
                return LENGTH, i, got
            _unshuffle(scratch, m, s, dst, d0 + e0 * s, planes)
            e0 += m
            p += csize
        rest = (n - e0) * s
        if end - p != rest:
            return TAIL, i, 0
        if rest:
            memcpy(dst, d0 + e0 * s, src, p, rest)
        pos = end
    return OK, count, 0


@intrinsic
def _store8(typingctx, dst, dp, value):  # type: ignore[no-untyped-def]
    """``dst[dp:dp + 8] = value`` (uint64, little-endian machine), unaligned."""

    def codegen(
        context: BaseContext, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]
    ) -> None:
        d = context.make_array(signature.args[0])(context, builder, args[0])
        target = builder.bitcast(builder.gep(d.data, [args[1]]), ir.IntType(64).as_pointer())
        builder.store(args[2], target, align=1)

    return types.void(dst, dp, types.uint64), codegen


@numba.njit
def _transpose8(x):  # type: ignore[no-untyped-def]
    """Transpose the 8 x 8 bit matrix in ``x`` (byte ``i`` = row ``i``, bit ``j`` = column
    ``j``): bit ``8 i + j`` goes to ``8 j + i`` (Hacker's Delight, transpose8)."""
    t = (x ^ (x >> np.uint64(7))) & np.uint64(0x00AA00AA00AA00AA)
    x = x ^ t ^ (t << np.uint64(7))
    t = (x ^ (x >> np.uint64(14))) & np.uint64(0x0000CCCC0000CCCC)
    x = x ^ t ^ (t << np.uint64(14))
    t = (x ^ (x >> np.uint64(28))) & np.uint64(0x00000000F0F0F0F0)
    return x ^ t ^ (t << np.uint64(28))


@intrinsic
def _byte(typingctx, src, i):  # type: ignore[no-untyped-def]
    """``src[i]`` as a uint64, without numba's negative-index wraparound (which keeps LLVM
    from vectorizing the loops below; the caller checks the bounds)."""

    def codegen(
        context: BaseContext, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]
    ) -> ir.Value:
        a = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.zext(builder.load(builder.gep(a.data, [args[1]])), ir.IntType(64))

    return types.uint64(src, i), codegen


@numba.njit
def _gather(buf, base, stride):  # type: ignore[no-untyped-def]
    """Bytes ``buf[base + b * stride]``, b = 0..7, as one word (byte ``b`` = the ``b``-th)."""
    return (
        _byte(buf, base)
        | (_byte(buf, base + stride) << np.uint64(8))
        | (_byte(buf, base + 2 * stride) << np.uint64(16))
        | (_byte(buf, base + 3 * stride) << np.uint64(24))
        | (_byte(buf, base + 4 * stride) << np.uint64(32))
        | (_byte(buf, base + 5 * stride) << np.uint64(40))
        | (_byte(buf, base + 6 * stride) << np.uint64(48))
        | (_byte(buf, base + 7 * stride) << np.uint64(56))
    )


def _storer(width: int) -> Callable[..., None]:
    """A compiled ``store(dst, dp, value)``: the ``width`` low bytes of ``value`` (uint64) at
    ``dst[dp:]``, unaligned (little-endian machine; the caller checks the bounds)."""

    @intrinsic
    def store(typingctx, dst, dp, value):  # type: ignore[no-untyped-def]
        def codegen(
            context: BaseContext,
            builder: ir.IRBuilder,
            signature: Signature,
            args: Sequence[ir.Value],
        ) -> None:
            d = context.make_array(signature.args[0])(context, builder, args[0])
            kind = ir.IntType(8 * width)
            target = builder.bitcast(builder.gep(d.data, [args[1]]), kind.as_pointer())
            builder.store(builder.trunc(args[2], kind) if width < 8 else args[2], target, align=1)

        return types.void(dst, dp, types.uint64), codegen

    return store


_store2 = _storer(2)
_store4 = _storer(4)


@numba.njit(nogil=True)
def _unshuffle(buf, m, s, dst, d0, planes):  # type: ignore[no-untyped-def]
    """Bit-unshuffle the ``m`` elements (a multiple of 8) of ``s`` bytes in ``buf`` into the
    bytes ``dst[d0:d0 + m * s]``. ``planes``: scratch of ``m * s`` bytes (for ``s`` > 1).

    Byte ``j`` of element ``8 k + t`` is byte ``t`` of the transposed 8 x 8 bit matrix of the
    bytes at column ``k`` of planes ``8 j .. 8 j + 7``: one loop per ``j`` writes them all in
    ``planes[j * m:]`` (``s`` = 1: in ``dst`` directly), then one loop interleaves them."""
    stride = m // 8
    if s == 1:
        for k in range(stride):
            _store8(dst, d0 + 8 * k, _transpose8(_gather(buf, k, stride)))
        return
    for j in range(s):
        base = j * m
        for k in range(stride):
            _store8(planes, base + 8 * k, _transpose8(_gather(buf, base + k, stride)))
    if s == 2:
        for e in range(m):
            _store2(dst, d0 + 2 * e, _byte(planes, e) | (_byte(planes, m + e) << np.uint64(8)))
    elif s == 4:
        for e in range(m):
            _store4(
                dst,
                d0 + 4 * e,
                _byte(planes, e)
                | (_byte(planes, m + e) << np.uint64(8))
                | (_byte(planes, 2 * m + e) << np.uint64(16))
                | (_byte(planes, 3 * m + e) << np.uint64(24)),
            )
    else:
        for e in range(m):
            _store8(
                dst,
                d0 + 8 * e,
                _byte(planes, e)
                | (_byte(planes, m + e) << np.uint64(8))
                | (_byte(planes, 2 * m + e) << np.uint64(16))
                | (_byte(planes, 3 * m + e) << np.uint64(24))
                | (_byte(planes, 4 * m + e) << np.uint64(32))
                | (_byte(planes, 5 * m + e) << np.uint64(40))
                | (_byte(planes, 6 * m + e) << np.uint64(48))
                | (_byte(planes, 7 * m + e) << np.uint64(56)),
            )
