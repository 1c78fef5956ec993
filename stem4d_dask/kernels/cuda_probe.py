# mypy: disable-error-code="call-arg,call-overload,index,var-annotated,operator"
"""The one-line numba.cuda kernel that :func:`stem4d_dask.kernels.cuda_launch.probe` compiles and
runs to learn whether our CUDA kernels can run in this process (imported only then)."""

from __future__ import annotations

from numba import cuda


@cuda.jit
def add_one(a):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] += 1
