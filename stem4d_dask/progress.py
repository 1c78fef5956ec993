"""Compute dask collections with a progress display.

With a ``distributed.Client`` active, the client's scheduler runs the work and
``distributed.progress`` draws the bar (the dashboard shows the same); otherwise the local
scheduler runs under ``dask.diagnostics.ProgressBar``.
"""

from __future__ import annotations

import sys

import dask


def active_client():
    """The current ``distributed.Client`` or None."""
    try:
        from distributed import default_client
        return default_client()
    except (ImportError, ValueError):
        return None


def compute(*collections, progress: bool = True):
    """``dask.compute(*collections)``, showing progress when ``progress`` is true."""
    client = active_client()
    if client is not None:
        futures = client.compute(list(collections))
        if progress:
            from distributed import progress as dist_progress
            dist_progress(futures, notebook=False)
            print(file=sys.stderr)
        return tuple(client.gather(futures))
    if not progress:
        return dask.compute(*collections)
    from dask.diagnostics import ProgressBar
    with ProgressBar(out=sys.stderr, dt=0.5):
        return dask.compute(*collections)
