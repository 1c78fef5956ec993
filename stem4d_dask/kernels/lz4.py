"""LZ4 block decompression, compiled and GIL-free, with the numba intrinsics it copies with:
the LZ4 step of the bitshuffle-LZ4 decoder (:mod:`stem4d_dask.kernels.bslz4`).

An LZ4 block (the LZ4 block format, no frame header) is a run of sequences: a token byte
(literal length in its high nibble, match length - 4 in its low one, each extended by
following bytes while they are 255), the literals, then a 2-byte little-endian match offset
back into the output, except after the last sequence, which has literals only.
:func:`lz4_block` decodes one block into a byte buffer, checking every read and write index:
corrupt data (lengths past the input or the output, offsets before the output's start)
returns -1, never reads or writes out of bounds.

The intrinsics (:func:`memcpy` and the 8- and 16-byte word copies) compile to unaligned LLVM
loads and stores on array data; their callers check the bounds. Their Python signatures carry
numba's typing context first, which the compiled call does not pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

if TYPE_CHECKING:
    from numba.core.base import BaseContext
    from numba.core.typing import Signature


def _copier(width: int) -> Callable[..., None]:
    """A compiled ``copy(dst, dp, src, sp)``: ``dst[dp:dp + width] = src[sp:sp + width]`` as one
    unaligned load and store (the caller checks the bounds)."""

    @intrinsic
    def copy(typingctx, dst, dp, src, sp):  # type: ignore[no-untyped-def]
        def codegen(
            context: BaseContext,
            builder: ir.IRBuilder,
            signature: Signature,
            args: Sequence[ir.Value],
        ) -> None:
            d = context.make_array(signature.args[0])(context, builder, args[0])
            s = context.make_array(signature.args[2])(context, builder, args[2])
            ptr = ir.IntType(8 * width).as_pointer()
            target = builder.bitcast(builder.gep(d.data, [args[1]]), ptr)
            source = builder.bitcast(builder.gep(s.data, [args[3]]), ptr)
            builder.store(builder.load(source, align=1), target, align=1)

        return types.void(dst, dp, src, sp), codegen

    return copy


_copy8 = _copier(8)
_copy16 = _copier(16)


@intrinsic
def memcpy(typingctx, dst, dp, src, sp, n):  # type: ignore[no-untyped-def]
    """``dst[dp:dp + n] = src[sp:sp + n]`` (uint8 arrays, no overlap; the caller checks the
    bounds)."""

    def codegen(
        context: BaseContext, builder: ir.IRBuilder, signature: Signature, args: Sequence[ir.Value]
    ) -> None:
        d = context.make_array(signature.args[0])(context, builder, args[0])
        s = context.make_array(signature.args[2])(context, builder, args[2])
        cgutils.raw_memcpy(
            builder, builder.gep(d.data, [args[1]]), builder.gep(s.data, [args[3]]), args[4], 1
        )

    return types.void(dst, dp, src, sp, n), codegen


@numba.njit(nogil=True)
def lz4_block(src, sp, send, dst, dsize):  # type: ignore[no-untyped-def]
    """LZ4-block-decompress ``src[sp:send]`` into ``dst[:dsize]``; the bytes written, or -1
    when the data is corrupt. Nothing outside ``src`` is read, nothing outside ``dst`` written
    (copies run 8 or 16 bytes at a time where ``src`` and ``dst`` have room past the data:
    they may read past ``send`` and write past ``dsize``, never past the arrays)."""
    scap = src.size
    dcap = dst.size
    dp = 0
    while True:
        if sp >= send:
            return -1
        token = np.int64(src[sp])
        sp += 1
        lit = token >> 4
        if lit == 15:
            while True:
                if sp >= send:
                    return -1
                c = np.int64(src[sp])
                sp += 1
                lit += c
                if c != 255:
                    break
        if lit > send - sp or lit > dsize - dp:
            return -1
        if lit <= 16 and sp + 16 <= scap and dp + 16 <= dcap:
            _copy16(dst, dp, src, sp)
        elif lit > 0:
            memcpy(dst, dp, src, sp, lit)
        dp += lit
        sp += lit
        if sp == send:  # the last sequence has literals only
            return dp
        if send - sp < 2:
            return -1
        off = np.int64(src[sp]) | (np.int64(src[sp + 1]) << 8)
        sp += 2
        if off == 0 or off > dp:
            return -1
        ml = token & 15
        if ml == 15:
            while True:
                if sp >= send:
                    return -1
                c = np.int64(src[sp])
                sp += 1
                ml += c
                if c != 255:
                    break
        ml += 4
        if ml > dsize - dp:
            return -1
        if dp + ml + 16 > dcap:  # no room to copy in words: byte by byte
            for q in range(ml):
                dst[dp + q] = dst[dp - off + q]
        elif off >= 16:
            for q in range(0, ml, 16):
                _copy16(dst, dp + q, dst, dp - off + q)
        else:
            q = 0
            if off < 8:  # the data repeats every ``off`` bytes: so it does every ``step``
                step = off * ((7 + off) // off)
                first = min(step, ml)
                while q < first:
                    dst[dp + q] = dst[dp - off + q]
                    q += 1
            else:
                step = off
            while q < ml:
                _copy8(dst, dp + q, dst, dp - step + q)
                q += 8
        dp += ml
