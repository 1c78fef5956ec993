"""Masked sums of detector frames: the kernel of virtual detectors."""

from __future__ import annotations

from . import array_module

FRAMES_PER_BATCH = 1024  # bounds the float64 temporary to ~1024 frames


def masked_sums(block, mask):
    """``sum(frame * mask)`` for every frame of ``block``.

    block: ``(..., Qx, Qy)`` chunk of frames (any numeric dtype); mask: ``(Qx, Qy)`` weights.
    Returns float64 ``block.shape[:-2]``. Frames are flattened and multiplied by the flattened
    mask as one matrix-vector product per batch of frames (no broadcast over the chunk).
    """
    xp = array_module(block)
    lead = block.shape[:-2]
    frames = block.reshape(-1, block.shape[-2] * block.shape[-1])
    weights = xp.asarray(mask, dtype=xp.float64).ravel()
    out = xp.empty(frames.shape[0], dtype=xp.float64)
    for start in range(0, frames.shape[0], FRAMES_PER_BATCH):
        batch = frames[start:start + FRAMES_PER_BATCH]
        out[start:start + FRAMES_PER_BATCH] = batch.astype(xp.float64, copy=False) @ weights
    return out.reshape(lead)
