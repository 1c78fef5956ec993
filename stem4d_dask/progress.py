"""Progress displays: dask collections computed with a progress bar, and a one-line counter
for loops that run outside dask (the DPC iterations).

With a ``distributed.Client`` active, the client's scheduler runs the work and
``distributed.progress`` draws the bar (the dashboard shows the same); otherwise the local
scheduler runs under ``dask.diagnostics.ProgressBar``.
"""

from __future__ import annotations

import sys
import time

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


class ProgressLine:
    """``{desc}: 12/64 iter`` on stderr for a loop of ``total`` steps, redrawn in place at most
    every 0.2 s; :meth:`update` takes the 0-based index of the step just done (a callback),
    :meth:`close` draws the final count and ends the line."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.last, self.done = total, desc, 0.0, 0

    def update(self, i: int) -> None:
        self.done = i + 1
        now = time.monotonic()
        if now - self.last > 0.2:
            self.last = now
            print(f"\r{self.desc}: {self.done}/{self.total} iter", end="", file=sys.stderr)

    def close(self) -> None:
        print(f"\r{self.desc}: {self.done}/{self.total} iter", file=sys.stderr)
