"""LiberTEM UDFs doing what ``bench_frames`` asks of ``map_frames`` / ``reduce_frames``, on a
scan file with 2 local dask workers; run in ``.venv-libertem``:

    .venv-libertem/bin/python benchmarks/libertem_frames.py SCAN.npy REPEATS

A per-frame UDF (``process_frame``: the sum of the frame's bright-field disk, a ``nav``
buffer) and a reduction UDF (``process_frame``: the maximum pattern, a ``sig`` buffer with a
``merge``). Prints one JSON line: median seconds of the warm runs of each, and a checksum.
"""

import json
import sys

import libertem.api as lt
import numpy as np
from libertem.executor.dask import DaskJobExecutor, cluster_spec
from libertem.udf.base import UDF
from libertem_timing import timed_udf


def disk(shape):
    """The bright-field disk of ``benchmarks.common.make_cube``'s frames."""
    qx, qy = shape
    yy, xx = np.mgrid[:qx, :qy]
    return (yy - qx / 2) ** 2 + (xx - qy / 2) ** 2 < (min(qx, qy) / 6) ** 2


class DiskSumUDF(UDF):
    def get_result_buffers(self):
        return {"total": self.buffer(kind="nav", dtype=np.float64)}

    def process_frame(self, frame):
        self.results.total[:] = frame[self.params.mask].sum()


class MaxPatternUDF(UDF):
    def get_result_buffers(self):
        return {"maximum": self.buffer(kind="sig", dtype=np.float64)}

    def process_frame(self, frame):
        np.maximum(self.results.maximum, frame, out=self.results.maximum)

    def merge(self, dest, src):
        dest.maximum[:] = np.maximum(dest.maximum, src.maximum)


def main(path, repeats):
    spec = cluster_spec(cpus=range(2), cudas=[], has_cupy=False)
    with lt.Context(executor=DaskJobExecutor.make_local(spec=spec)) as ctx:
        ds = ctx.load("npy", path=path)
        mask = disk(tuple(ds.shape.sig))
        per_frame, _, totals = timed_udf(ctx, ds, DiskSumUDF(mask=mask), repeats)
        reduction, _, maxima = timed_udf(ctx, ds, MaxPatternUDF(), repeats)
    print(
        json.dumps(
            {
                "per_frame": per_frame,
                "reduction": reduction,
                "total00": float(totals["total"].data[0, 0]),
                "max_sum": float(maxima["maximum"].data.sum()),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
