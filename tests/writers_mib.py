"""The tests' and benchmarks' Merlin ``.mib`` writer: the package's own
(:mod:`stem4d_dask.io.mib_write`), re-exported here so there is one implementation."""

from stem4d_dask.io.mib_write import (  # noqa: F401
    DACS,
    PROCESSED,
    T0,
    encode_raw,
    mib_header,
    stride,
    write_hdr,
    write_mib,
)
