"""What every HDF5 reader shares: recognising an HDF5 file, reading attribute values as plain
Python, registering the compression filters, and reading a block of a dataset in its own task
(:class:`H5BlockLoader`)."""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path) -> bool:
    """True when ``path`` starts with the HDF5 signature (reads 8 bytes)."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def h5_text(value):
    """An attribute or scalar dataset value as str (bytes decoded) or a Python scalar."""
    if isinstance(value, h5py.Dataset):
        value = value[()]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return value.item() if isinstance(value, np.generic) else value


def hdf5_filters() -> bool:
    """Register hdf5plugin's compression filters (bitshuffle, LZ4, zstd, ...) with HDF5;
    False when hdf5plugin is not installed."""
    try:
        import hdf5plugin  # noqa: F401  (registers compression filters with HDF5)
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class H5BlockLoader:
    """Read block ``slices`` ``(Rx, Ry, Qx, Qy)`` of dataset ``dataset`` of ``path`` as
    ``dtype``: the one HDF5 block loader of every reader (EMD 1.0, legacy EMD, any dataset).

    The file is opened and closed inside each call (with hdf5plugin's filters registered), so
    the loader pickles to any worker; an unreadable block raises ``ValueError`` naming the file,
    the dataset and the scan positions. ``stored``: the dataset's shape; a 4D dataset is the
    datacube, a 3D ``(N, Qx, Qy)`` one is read as scan ``scan_shape``, a 5D one has its
    length-1 axis ``drop`` indexed away."""

    path: str
    dataset: str
    dtype: str
    stored: tuple
    scan_shape: tuple
    drop: int = -1
    mtime_ns: int = 0  # part of the token: a rewritten file gives a new graph

    @property
    def source(self) -> str:
        return self.path

    def chunk_detail(self, slices) -> str:
        return f"dataset {self.dataset}"

    def __call__(self, slices):
        hdf5_filters()
        try:
            with h5py.File(self.path, "r") as f:
                return self._read(f[self.dataset].astype(self.dtype), slices)
        except OSError as err:
            bounds = [(s.start, s.stop - 1) for s in slices[:2]]
            raise ValueError(
                f"{self.path}:{self.dataset}: the block of scan positions "
                f"Rx {bounds[0]}, Ry {bounds[1]} could not be read ({err})"
            ) from None

    def _read(self, dset, slices):
        if len(self.stored) == 4:
            return dset[slices]
        if len(self.stored) == 5:
            index = list(slices)
            index.insert(self.drop, 0)
            return dset[tuple(index)]
        (r0, r1, _), (c0, c1, _) = (
            s.indices(n) for s, n in zip(slices[:2], self.scan_shape, strict=True)
        )
        ry, q = self.scan_shape[1], slices[2:]
        if c0 == 0 and c1 == ry:
            block = dset[(slice(r0 * ry, r1 * ry), *q)]
            return block.reshape(r1 - r0, ry, *block.shape[1:])
        return np.stack([dset[(slice(r * ry + c0, r * ry + c1), *q)] for r in range(r0, r1)])
