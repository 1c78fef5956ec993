"""Run py4DSTEM 0.14.18 from its own virtualenv (it needs numpy<2) as a test oracle.

The interpreter is ``$STEM4D_PY4DSTEM_PYTHON`` or ``.venv-py4dstem/bin/python`` in the checkout.
"""

import os
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
PYTHON = Path(os.environ.get("STEM4D_PY4DSTEM_PYTHON", ROOT / ".venv-py4dstem" / "bin" / "python"))
SKIP_REASON = "py4DSTEM oracle venv .venv-py4dstem not installed"


def available() -> bool:
    return PYTHON.is_file()


def py4dstem_read(h5_paths, out_dir) -> list[dict]:
    """What ``py4DSTEM.read`` sees in each file of ``h5_paths`` (one subprocess for all):
    ``data``, ``r_pixel_size``, ``r_units``, ``q_pixel_size``, ``q_units``, ``energy`` (NaN if
    absent), ``class_name``, ``name``, ``dim0``..``dim3``, ``dim_units``."""
    outs = [Path(out_dir) / f"{Path(p).name}.{i}.py4dstem.npz" for i, p in enumerate(h5_paths)]
    args = [str(x) for pair in zip(h5_paths, outs, strict=True) for x in pair]
    proc = subprocess.run(
        [str(PYTHON), str(FIXTURES / "py4dstem_read.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode:
        raise AssertionError(f"py4DSTEM could not read {h5_paths}:\n{proc.stdout}{proc.stderr}")
    results = []
    for out in outs:
        with np.load(out) as z:
            results.append({k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files})
    return results
