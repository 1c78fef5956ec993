"""What every HDF5 reader shares: recognising an HDF5 file, reading attribute values as plain
Python, and registering the compression filters."""

from __future__ import annotations

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
