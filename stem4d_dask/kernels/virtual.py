"""Masked sums of detector frames: the kernel of virtual detectors."""

from __future__ import annotations

from . import Array, array_module

BATCH_BYTES = 32 * 2**20  # bounds the float64 copy of a batch of frames


def masked_sums_stack(block: Array, masks: Array) -> Array:
    """``sum(frame * mask_m)`` for every frame of ``block`` and every mask ``m``.

    block: ``(..., Qx, Qy)`` chunk of frames (any real dtype); masks: ``(Qx, Qy, n)`` weights.
    Returns float64 ``block.shape[:-2] + (n,)``.

    The frames are flattened to a ``(frames, Qx*Qy)`` matrix and multiplied by the
    ``(Qx*Qy, n)`` mask matrix: one BLAS matrix product per batch of frames (batches bound the
    float64 copy of integer or float32 frames to ``BATCH_BYTES``). Accumulation is float64, so
    integer data sum exactly while a pixel sum stays below 2**53.
    """
    xp = array_module(block)
    lead = block.shape[:-2]
    npix = block.shape[-2] * block.shape[-1]
    frames = block.reshape(-1, npix)
    weights = xp.asarray(masks, dtype=xp.float64).reshape(npix, -1)
    out = xp.empty((frames.shape[0], weights.shape[1]), dtype=xp.float64)
    step = max(1, BATCH_BYTES // (8 * npix))
    for start in range(0, frames.shape[0], step):
        batch = frames[start : start + step].astype(xp.float64, copy=False)
        xp.matmul(batch, weights, out=out[start : start + step])
    return out.reshape(lead + (weights.shape[1],))
