"""Timing of LiberTEM UDF runs, shared by the scripts run in ``.venv-libertem``
(``libertem_com.py``, ``libertem_frames.py``): imports nothing of LiberTEM itself."""

import time


def timed_udf(ctx, dataset, udf, repeats):
    """``(median seconds, best seconds, result)`` of ``repeats`` warm runs of ``udf`` on
    ``dataset`` in the LiberTEM context ``ctx``, after one untimed warm-up run."""
    result = ctx.run_udf(dataset=dataset, udf=udf)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ctx.run_udf(dataset=dataset, udf=udf)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], times[0], result
