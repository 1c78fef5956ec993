"""LiberTEM's CoMUDF on a scan file with 2 local dask workers; run in ``.venv-libertem``:

    .venv-libertem/bin/python benchmarks/libertem_com.py SCAN REPEATS [TYPE]

``TYPE`` is LiberTEM's dataset type (default ``npy``; ``mib`` reads Merlin ``.mib`` frames with
LiberTEM's own reader: pass the ``.hdr`` file, which gives it the scan shape). Prints one JSON
line: median and best seconds of the warm runs, and the CoM of frame (0, 0).
"""

import json
import sys

import libertem.api as lt
from libertem.executor.dask import DaskJobExecutor, cluster_spec
from libertem.udf.com import CoMUDF
from libertem_timing import timed_udf


def main(path, repeats, kind="npy"):
    spec = cluster_spec(cpus=range(2), cudas=[], has_cupy=False)
    with lt.Context(executor=DaskJobExecutor.make_local(spec=spec)) as ctx:
        ds = ctx.load(kind, path=path)
        seconds, best, result = timed_udf(ctx, ds, CoMUDF.with_params(), repeats)
    field = result["raw_com"].data[0, 0]
    print(
        json.dumps({"seconds": seconds, "best": best, "com00": [float(field[0]), float(field[1])]})
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4])
