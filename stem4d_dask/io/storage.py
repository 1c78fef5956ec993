"""What every writer shares: the blosc codecs of our zarr stores, and writing a result under
``path + ".partial"`` that is renamed to ``path`` only once it is complete.

A file or store at its final name is therefore always complete: a crash, an error or an
interrupt leaves at most ``path.partial`` behind (removed again, unless the writer resumes from
it), never a truncated ``path``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zarr.codecs import BloscCodec, Crc32cCodec

from ..checks import checked_int

COMPRESSORS = ("zstd", "lz4", "none")
SHUFFLES = ("bitshuffle", "shuffle", "noshuffle")
PARTIAL_SUFFIX = ".partial"


def compressor_codecs(
    compressor: str = "zstd", clevel: int = 3, shuffle: str = "bitshuffle", checksum: bool = True
) -> tuple:
    """Zarr v3 bytes-to-bytes codecs: blosc ``"zstd"`` or ``"lz4"`` at level ``clevel`` (int
    0..9) with ``shuffle`` (``"bitshuffle"``: bit planes, best for detector counts;
    ``"shuffle"``: byte planes, best for event positions; ``"noshuffle"``), or none for
    ``"none"``; then, with ``checksum``, zarr's ``crc32c``: every stored chunk carries its
    checksum, so a corrupt chunk is refused instead of decoding into wrong values (a flipped
    byte in blosc data decodes without error about half the time)."""
    if compressor not in COMPRESSORS:
        raise ValueError(f"compressor must be one of {list(COMPRESSORS)}, got {compressor!r}")
    clevel = checked_int(clevel, "clevel", minimum=0, below=10)
    if shuffle not in SHUFFLES:
        raise ValueError(f"shuffle must be one of {list(SHUFFLES)}, got {shuffle!r}")
    codecs: tuple = ()
    if compressor != "none":
        codecs = (BloscCodec(cname=compressor, clevel=clevel, shuffle=shuffle),)
    return (*codecs, Crc32cCodec()) if checksum else codecs


def partial_path(path) -> Path:
    """Where the result for ``path`` is written until it is complete: ``path + ".partial"``."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


@contextmanager
def completed_at(path, *, overwrite: bool = False, resumable: bool = False) -> Iterator[Path]:
    """Write to ``path + ".partial"`` (the yielded ``Path``), renamed to ``path`` when the
    ``with`` block completes.

    - ``path`` exists and not ``overwrite``: ``FileExistsError`` (nothing touched); with
      ``overwrite`` the old file or store is replaced only at the rename, once the new one is
      complete.
    - the block raises (any exception, interrupts included): the partial file or directory is
      removed and the exception propagates; ``path`` is left as it was.
    - ``resumable``: a partial left by an earlier, interrupted write is kept for the block to
      resume from (it decides what to reuse), and is kept again when the block raises.
      Otherwise a stale partial is removed before the block runs.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"path: {path} already exists (pass overwrite=True to replace it)")
    tmp = partial_path(path)
    if not resumable:
        remove(tmp)
    try:
        yield tmp
    except BaseException:
        if not resumable:
            remove(tmp)
        raise
    remove(path)
    os.replace(tmp, path)


def check_resumable(markers, settings):
    """``ValueError`` unless the partial store of ``markers`` was started with ``settings``."""
    started = json.loads((markers / "settings.json").read_text())
    if started != settings:
        diff = {k: (started.get(k), v) for k, v in settings.items() if started.get(k) != v}
        raise ValueError(
            f"resume: the partial store at {markers.parent} was started with other settings "
            f"(was, now): {diff}; remove it or pass resume=False"
        )


def check_finished(path, name: str, wanted: dict) -> None:
    """A finished store at ``path`` is kept by a resumed write (nothing left to write) when its
    array ``name`` has the ``wanted`` ``shape``, ``dtype`` and ``chunks`` (shards); else
    ``ValueError`` naming what differs."""
    import zarr

    try:
        arr = zarr.open_array(str(Path(path) / name), mode="r")
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(
            f"resume: {path} is no finished datacube store ({exc}); pass overwrite=True to "
            "replace it"
        ) from None
    found = {"shape": arr.shape, "dtype": arr.dtype, "chunks": arr.shards or arr.chunks}
    diff = [f"{k} {found[k]} (stored) != {wanted[k]}" for k in wanted if found[k] != wanted[k]]
    if diff:
        raise ValueError(
            f"resume: the finished store at {path} differs from this write in {'; '.join(diff)}; "
            "pass overwrite=True to replace it"
        )


def remove(path) -> None:
    """Remove the file or directory tree at ``path``, if any."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


__all__ = [
    "COMPRESSORS",
    "check_finished",
    "check_resumable",
    "compressor_codecs",
    "completed_at",
    "partial_path",
    "remove",
]
