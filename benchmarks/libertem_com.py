"""LiberTEM's CoMUDF on a scan file with 2 local dask workers; run in ``.venv-libertem``:

    .venv-libertem/bin/python benchmarks/libertem_com.py SCAN REPEATS [TYPE]

``TYPE`` is LiberTEM's dataset type (default ``npy``; ``mib`` reads Merlin ``.mib`` frames with
LiberTEM's own reader: pass the ``.hdr`` file, which gives it the scan shape). Prints one JSON
line: median and best seconds of the warm runs, and the CoM of frame (0, 0).
"""

import json
import sys
import time

import libertem.api as lt
from libertem.executor.dask import DaskJobExecutor, cluster_spec
from libertem.udf.com import CoMUDF


def main(path, repeats, kind="npy"):
    spec = cluster_spec(cpus=range(2), cudas=[], has_cupy=False)
    with lt.Context(executor=DaskJobExecutor.make_local(spec=spec)) as ctx:
        ds = ctx.load(kind, path=path)
        udf = CoMUDF.with_params()
        result = ctx.run_udf(dataset=ds, udf=udf)  # warm-up run
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ctx.run_udf(dataset=ds, udf=udf)
            times.append(time.perf_counter() - t0)
    times.sort()
    field = result["raw_com"].data[0, 0]
    print(
        json.dumps(
            {
                "seconds": times[len(times) // 2],
                "best": times[0],
                "com00": [float(field[0]), float(field[1])],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4])
