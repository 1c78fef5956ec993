"""Chunks made inside the task that uses them.

A task that waits on a global input (counting waits on its fitted thresholds) must not let the
reads of its chunks run ahead and pile up in memory. :func:`chunk_graph` gives one task per
scan chunk that first makes its chunk, from the tasks that only that chunk needs (a reader's
read, the corrections applied to it: :class:`ChunkSource`), then runs the kernel on it; the
tasks several chunks need (an in-memory scan, a dark reference) stay shared tasks.
"""

from __future__ import annotations

import functools

import dask
import dask.array as da
import dask.core
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph


class ChunkSource:
    """The tasks that make one chunk of a dask array and that no other chunk needs (its private
    ancestry: a reader's read, the corrections applied to it), run inside the task that uses
    the chunk, after that task's other inputs (the thresholds) are known. ``graph``: those
    tasks; ``key``: the chunk's key; ``shared``: keys they need that other chunks need too
    (in-memory sources, dark references, global reductions), given as values when called.
    An object, not a task: dask hands it to the task as it is."""

    def __init__(self, graph: dict, key, shared: tuple):
        self.graph, self.key, self.shared = graph, key, shared

    def __call__(self, *shared_values):
        values = dict(zip(self.shared, shared_values, strict=True))
        if self.key in values:  # nothing private: the chunk itself is a shared key
            return values[self.key]
        return dask.core.get(self.graph, [self.key], cache=values)[0]


def chunk_sources(data: da.Array) -> tuple[list, dict]:
    """``(shared, {(i, j): ChunkSource})`` for the scan chunks of ``data`` (whole frames):
    each chunk's private tasks, and ``shared``, a collection (list of at most one) holding the
    tasks several chunks need, which stay tasks of their own. A task is private to a chunk
    when every task that uses it is (outputs own themselves); data kept in the graph (an
    in-memory array, a persisted block) is never copied into a task."""
    outputs = {(data.name, i, j, 0, 0): (i, j) for i, j in np.ndindex(data.numblocks[:2])}
    graph = dict(data.__dask_graph__())
    dependencies, dependents = dask.core.get_deps(graph)
    owner: dict = {}
    for key in reversed(dask.core.toposort(graph, dependencies=dependencies)):
        owners = {owner[d] for d in dependents[key]} | ({outputs[key]} if key in outputs else set())
        one = len(owners) == 1 and dask.core.istask(graph[key]) and _SHARED not in owners
        owner[key] = owners.pop() if one else (_SHARED if owners else None)
    private: dict = {ix: {} for ix in outputs.values()}
    for key, who in owner.items():
        if who is not None and who is not _SHARED:
            private[who][key] = graph[key]
    sources = {}
    for key, ix in outputs.items():
        tasks = private[ix]
        needs = {d for k in tasks for d in dependencies[k] if owner[d] is _SHARED}
        needs = needs if tasks else {key}
        sources[ix] = ChunkSource(tasks, key, tuple(sorted(needs, key=str)))
    shared = {k: graph[k] for k, who in owner.items() if who is _SHARED}
    if not shared:
        return [], sources
    layer = "electron_count-shared-" + tokenize(data.name)
    hlg = HighLevelGraph({layer: shared}, {layer: set()})
    return [Delayed(next(iter(shared)), hlg, layer=layer)], sources


_SHARED = object()  # owner of a task several chunks need


def chunk_graph(data: da.Array, name: str, kernel, extra: list, tail: tuple = ()):
    """One task per scan chunk of ``data``, key ``(name, i, j, *tail)``: ``kernel(chunk,
    *extra)`` (``extra``: Delayed values every task gets), the chunk made inside the task
    (:class:`ChunkSource`), so it exists only while the kernel runs. A HighLevelGraph."""
    shared, sources = chunk_sources(data)
    layer = {
        (name, *ix, *tail): (
            functools.partial(run_on_chunk, source=source, kernel=kernel),
            *source.shared,
            *(e.key for e in extra),
        )
        for ix, source in sources.items()
    }
    return HighLevelGraph.from_collections(name, layer, dependencies=[*extra, *shared])


def run_on_chunk(*args, source: ChunkSource, kernel):
    """A task of :func:`chunk_graph`: ``args`` are the shared values ``source`` needs, then
    the kernel's extra arguments; makes the chunk, then returns ``kernel(chunk, *extra)``."""
    n = len(source.shared)
    return kernel(source(*args[:n]), *args[n:])


__all__ = ["ChunkSource", "chunk_graph", "chunk_sources", "run_on_chunk"]
