"""Progress displays: dask collections computed with a progress bar, and a one-line counter
for loops that run outside dask (the DPC iterations).

A library call is quiet unless asked: ``progress=True`` on the call, or :func:`showing` around
it (``with showing():``; called outside a ``with``, or the dask config key ``stem4d.progress``
set, e.g. ``DASK_STEM4D__PROGRESS=True``, for the whole session). ``progress=None`` means "as
:func:`showing` says"; ``False`` is always quiet. The ``stem4d`` command shows progress unless
``--quiet``.

The bar is the same whichever scheduler runs the work, on stderr::

    [########################################] | 100% Completed | 1.2s

with dask's local schedulers (``dask.diagnostics.ProgressBar``) and with a
``distributed.Client`` (the scheduler reports the tasks done, as the dashboard does).
"""

from __future__ import annotations

import sys
import time
from contextlib import suppress
from functools import cache

import dask

CONFIG_KEY = "stem4d.progress"
WIDTH = 40


def enabled() -> bool:
    """Whether a call given ``progress=None`` shows progress (dask config ``stem4d.progress``,
    off unless set)."""
    return bool(dask.config.get(CONFIG_KEY, False))


def showing(on: bool = True):
    """Show (``on=True``) or hide progress for calls given ``progress=None``, inside a
    ``with`` block (or from now on, when not used as one)::

        with stem4d_dask.progress.showing():
            stem4d_dask.to_zarr(dc, "scan.zarr")
    """
    if not isinstance(on, bool):
        raise ValueError(f"on must be True or False, got {on!r}")
    return dask.config.set({CONFIG_KEY: on})


def active_client():
    """The ``distributed.Client`` that ``dask.compute`` would run on now, or None: the default
    client, unless dask's ``scheduler`` config names a local scheduler (threads, processes,
    synchronous)."""
    scheduler = dask.config.get("scheduler", None)
    if isinstance(scheduler, str) and scheduler not in ("dask.distributed", "distributed"):
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def compute(*collections, progress: bool | None = None):
    """``dask.compute(*collections)`` on the active client or dask's scheduler, with a
    progress bar on stderr when ``progress`` is true (``None``: as :func:`showing` says)."""
    show = enabled() if progress is None else bool(progress)
    client = active_client()
    if client is not None:
        futures = client.compute(list(collections))
        if show and futures:
            _distributed_bar()(futures, complete=True)
        return tuple(client.gather(futures))
    if not show:
        return dask.compute(*collections)
    from dask.diagnostics import ProgressBar

    with ProgressBar(out=sys.stderr, dt=0.5, width=WIDTH):
        return dask.compute(*collections)


def _draw(frac: float, elapsed: float) -> None:
    """dask's bar, ``\\r[####    ] | 50% Completed | 1.2s``, on stderr."""
    from dask.utils import format_time

    bar = "#" * int(WIDTH * frac)
    text = f"\r[{bar:<{WIDTH}}] | {int(100 * frac)}% Completed | {format_time(elapsed)}"
    with suppress(ValueError):  # stderr closed
        sys.stderr.write(text)
        sys.stderr.flush()


@cache
def _distributed_bar():
    """``distributed``'s text bar (the scheduler streams the tasks left among the futures and
    everything they depend on) drawn as dask's local bar: on stderr instead of stdout, the
    last state kept instead of erased; blocks until the futures finish or fail."""
    from distributed.diagnostics.progressbar import TextProgressBar

    class StderrProgressBar(TextProgressBar):
        drawn = -1.0

        def _draw_bar(self, remaining, all, **kwargs):
            # the scheduler reports every 100 ms; redrawn every 0.5 s, as the local bar
            if not remaining or self.elapsed - self.drawn >= 0.5:
                self.drawn = self.elapsed
                _draw((1 - remaining / all) if all else 1.0, self.elapsed)

        def _draw_stop(self, **kwargs):
            with suppress(ValueError):
                sys.stderr.write("\n")

    return StderrProgressBar


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
