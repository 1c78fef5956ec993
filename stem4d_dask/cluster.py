"""Where the work runs: one helper, :func:`client`, that gives a ``distributed.Client`` for

- this machine: a ``LocalCluster`` of threads in one worker, or of process workers, each with
  a memory limit (``memory_limit="600MiB"``);
- an existing scheduler, however it was started (dask-jobqueue on SLURM/PBS, Kubernetes,
  dask-gateway, ``dask scheduler``): its address or its scheduler file;
- the GPUs of this machine: ``dask_cuda.LocalCUDACluster``, one worker per GPU.

Every stem4d_dask operation then runs on that client (the default client while it is open).
:func:`scheduler` turns the ``stem4d --scheduler`` values (``threads``, ``processes``,
``synchronous``, ``local:N``, an address or a scheduler file) into the same thing, and
:func:`describe` says what a client has (workers, threads, memory limits, dashboard).
See ``docs/cluster.md``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import time
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster

from .checks import positive, positive_int

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")
DEFAULT_TIMEOUT = 5.0  # seconds to reach a scheduler (dask's own default is 30 s)
GPU_EXTRA = "pip install 'stem4d_dask[gpu]' (cupy and dask-cuda)"


def client(
    scheduler=None,
    *,
    scheduler_file=None,
    processes: bool = False,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit=None,
    gpu: bool = False,
    dashboard: bool = False,
    timeout: float | None = None,
    security=None,
    set_as_default: bool = True,
):
    """A ``distributed.Client``; use it as a context manager (``with client(...) as c:``) or
    call ``c.close()``: either closes the cluster it started, never one it only connected to.

    Parameters
    ----------
    scheduler : None (start a cluster on this machine), a scheduler address
        (``"tcp://host:8786"``, ``"host:8786"``, ``"tls://..."``, ``"gateway://..."``) or a
        cluster object (``SLURMCluster``, ``KubeCluster``, anything with ``scheduler_address``;
        it stays open after the client).
    scheduler_file : the JSON file a scheduler wrote (``dask scheduler --scheduler-file``,
        dask-mpi); waited for up to ``timeout`` seconds. Instead of ``scheduler``.
    processes : local cluster: process workers (``n_workers``, default one per few cores, as
        dask chooses) instead of one worker of threads in this process.
    n_workers, threads_per_worker : local cluster: workers and threads in each (default: one
        worker of all cores for threads; dask's choice for processes and GPUs).
    memory_limit : local cluster: the limit of each worker, bytes or a size (``"600MiB"``,
        ``"4 GB"``, ``"auto"``); a process worker past 95 % of it is restarted by its nanny.
        Default: the machine's memory shared between the workers.
    gpu : a ``dask_cuda.LocalCUDACluster``, one process worker per GPU (``n_workers`` GPUs);
        needs dask-cuda, ``pip install 'stem4d_dask[gpu]'``.
    dashboard : local cluster: serve the dashboard (port 8787, or a free one; needs bokeh,
        ``ImportError`` without it).
    timeout : seconds to reach a scheduler before failing with its address (default
        :data:`DEFAULT_TIMEOUT`, 5 s; dask's own, 30 s, is long for a mistyped address).
    security : TLS settings of the scheduler (``distributed.security.Security``, e.g. a
        dask-gateway cluster's ``cluster.security``).
    set_as_default : the client runs every dask computation while it is open (default).
    """
    timeout = DEFAULT_TIMEOUT if timeout is None else positive(timeout, "timeout")
    local_options = dict(
        processes=processes,
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        gpu=gpu,
        dashboard=dashboard,
    )
    if scheduler is not None and scheduler_file is not None:
        raise ValueError(
            f"scheduler and scheduler_file: give one, got {scheduler!r} and {scheduler_file!r}"
        )
    if scheduler is None and scheduler_file is None:
        return _local_client(**local_options, set_as_default=set_as_default)
    given = [k for k, v in local_options.items() if v not in (False, None)]
    if given:
        where = scheduler if scheduler is not None else scheduler_file
        raise ValueError(
            f"{given[0]}: only for a cluster started here (scheduler=None); the workers of "
            f"{where} were started with their own settings"
        )
    return _connect(scheduler, scheduler_file, timeout, security, set_as_default)


def _local_client(
    *, processes, n_workers, threads_per_worker, memory_limit, gpu, dashboard, set_as_default
):
    for flag, name in ((processes, "processes"), (gpu, "gpu"), (dashboard, "dashboard")):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    if dashboard and importlib.util.find_spec("bokeh") is None:
        raise ImportError("dashboard=True needs bokeh: pip install 'bokeh>=3.1'")
    # without a dashboard the scheduler still serves HTTP (health, metrics): on a free port,
    # so that it never warns that 8787 is taken
    options: dict[str, Any] = {"dashboard_address": ":8787" if dashboard else ":0"}
    options["scheduler_kwargs"] = {"dashboard": dashboard}
    if n_workers is not None:
        options["n_workers"] = positive_int(n_workers, "n_workers")
    elif not processes and not gpu:
        options["n_workers"] = 1
    if threads_per_worker is not None:
        options["threads_per_worker"] = positive_int(threads_per_worker, "threads_per_worker")
    if memory_limit is not None:
        options["memory_limit"] = memory_bytes(memory_limit, "memory_limit")
    if gpu:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ImportError(f"gpu=True needs dask-cuda: {GPU_EXTRA}") from None
        cluster = LocalCUDACluster(**options)
    else:
        cluster = LocalCluster(processes=processes, **options)
    try:
        return ClusterClient(cluster, dashboard=dashboard, set_as_default=set_as_default)
    except BaseException:
        cluster.close()
        raise


def _connect(scheduler, scheduler_file, timeout, security, set_as_default):
    options = {"timeout": timeout, "set_as_default": set_as_default}
    if security is not None:
        options["security"] = security
    if scheduler_file is not None:
        path = Path(scheduler_file)
        deadline = time.monotonic() + timeout
        while not path.is_file():  # a scheduler starting beside us writes it shortly
            if time.monotonic() > deadline:
                raise FileNotFoundError(
                    f"scheduler_file: {path} did not appear within {timeout:g} s (is the "
                    "scheduler running, with --scheduler-file at this path?)"
                )
            time.sleep(0.05)
        where, options["scheduler_file"] = str(path), str(path)
        scheduler = None
    elif isinstance(scheduler, str):
        if not scheduler.strip():
            raise ValueError(
                f"scheduler: expected an address such as tcp://host:8786, got {scheduler!r}"
            )
        where = scheduler
    elif hasattr(scheduler, "scheduler_address"):
        where = scheduler.scheduler_address
    else:
        raise ValueError(
            "scheduler: expected None, a scheduler address (tcp://host:8786) or a cluster "
            f"object, got {scheduler!r}"
        )
    try:
        return Client(scheduler, **options)
    except OSError as exc:  # TimeoutError, refused, unknown host: dask retries until timeout
        raise OSError(
            f"scheduler: no scheduler answered at {where} within {timeout:g} s ({exc})"
        ) from None
    except Exception as exc:  # something answered, but not a dask scheduler (its handshake
        # read as garbage: a frame length of exabytes -> MemoryError, or a decoding error)
        raise OSError(
            f"scheduler: no dask scheduler at {where}: what answered there is not one "
            f"({type(exc).__name__}: {str(exc)[:120]})"
        ) from None


class ClusterClient(Client):
    """A ``Client`` of a cluster started by :func:`client`: closing it closes the cluster."""

    def __init__(self, cluster, *, dashboard: bool, **kwargs):
        super().__init__(cluster, **kwargs)
        self.stem4d_cluster, self.stem4d_dashboard = cluster, dashboard

    def close(self, *args, **kwargs):
        if getattr(self, "stem4d_cluster", None) is not None:
            # a progress bar's feed on the scheduler sees its closed comm at its next 100 ms
            # tick; closing the scheduler before that logs the feed's cancellation as an error
            time.sleep(0.2)
        try:
            return super().close(*args, **kwargs)
        finally:
            cluster, self.stem4d_cluster = getattr(self, "stem4d_cluster", None), None
            if cluster is not None:
                cluster.close()


def memory_bytes(value, name: str = "memory_limit"):
    """A worker memory limit as dask takes it: bytes (int) from an int or a size such as
    ``"600MiB"`` / ``"4 GB"``, or ``"auto"``; else ``ValueError`` naming ``name``."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        nbytes = dask.utils.parse_bytes(value) if isinstance(value, str) else None
    except ValueError:
        nbytes = None
    if isinstance(value, int) and not isinstance(value, bool):
        nbytes = value
    if nbytes is None or nbytes <= 0:
        raise ValueError(
            f"{name}: expected a size such as '600MiB' or '4GB', a number of bytes, or 'auto', "
            f"got {value!r}"
        )
    return int(nbytes)


_LOCAL_N = re.compile(r"local:(\d+)")


@contextlib.contextmanager
def scheduler(spec: str | None, *, memory_limit=None, timeout: float | None = None, report=None):
    """Run the ``with`` body where ``spec`` says (the ``stem4d --scheduler`` values); yields the
    client, or None for dask's local schedulers.

    ``None``: dask's default (threads); ``"threads"``, ``"processes"``, ``"synchronous"``: that
    dask scheduler; ``"local:N"``: a ``LocalCluster`` of N process workers on this machine,
    ``memory_limit`` each; an address (``tcp://host:8786``, ``host:8786``) or a scheduler file
    (``*.json``, or any existing file): that scheduler (:func:`client`). ``report``: a file
    that gets :func:`describe` of the client (e.g. ``sys.stderr``).
    """
    if spec is not None and not isinstance(spec, str):
        raise ValueError(f"scheduler: expected a string, got {spec!r}")
    local = _LOCAL_N.fullmatch(spec or "")
    if memory_limit is not None and not local:
        raise ValueError(
            f"memory_limit: only with a cluster started here (scheduler local:N), got "
            f"scheduler {spec!r}"
        )
    if spec is None or spec in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=spec) if spec else contextlib.nullcontext():
            yield None
        return
    if local:
        n_workers = int(local.group(1))
        if n_workers < 1:
            raise ValueError(f"scheduler: local:N needs N >= 1 workers, got {spec!r}")
        made = client(processes=True, n_workers=n_workers, memory_limit=memory_limit)
    elif spec.lower().endswith(".json") or Path(spec).is_file():
        made = client(scheduler_file=spec, timeout=timeout)
    elif "://" in spec or re.fullmatch(r"[^\s:/]+:\d+", spec):
        made = client(spec, timeout=timeout)
    else:
        raise ValueError(
            f"scheduler: expected {', '.join(LOCAL_SCHEDULERS)}, local:N, a scheduler address "
            f"(tcp://host:8786 or host:8786) or a scheduler file (.json), got {spec!r}"
        )
    with made:
        if report is not None:
            print(describe(made), file=report)
        yield made


def describe(client) -> str:
    """What ``client`` runs on, for printing: the scheduler, the workers (threads and memory
    limit each, the first 8 listed), the totals and the dashboard link."""
    from dask.utils import format_bytes

    info = client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    limits = [w.get("memory_limit") or 0 for w in workers.values()]
    lines = [f"scheduler  {info.get('address', client.scheduler.address)}"]
    memory = f", {format_bytes(sum(limits))} memory limit in all" if all(limits) else ""
    lines.append(f"workers    {len(workers)}, {threads} thread{'s' * (threads != 1)}{memory}")
    for address, w in sorted(workers.items())[:8]:
        limit = format_bytes(w["memory_limit"]) if w.get("memory_limit") else "no"
        n = w.get("nthreads", 0)
        lines.append(f"  {address}  {n} thread{'s' * (n != 1)}, {limit} memory limit")
    if len(workers) > 8:
        lines.append(f"  ... {len(workers) - 8} more workers")
    dashboard = None
    if getattr(client, "stem4d_dashboard", True) and "dashboard" in info.get("services", {}):
        with contextlib.suppress(Exception):  # the link is made from the config's template
            dashboard = client.dashboard_link
    lines.append(f"dashboard  {dashboard or 'none'}")
    return "\n".join(lines)


__all__ = ["client", "scheduler", "describe", "memory_bytes"]
