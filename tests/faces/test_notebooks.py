"""The notebooks of ``notebooks/``: committed without outputs, every cell with an id, and each
one runs headless without an error and draws at least one figure.

Each notebook is executed with nbclient on the ``python3`` kernel of this interpreter, in a
temporary working directory, with ``STEM4D_NOTEBOOK_OUT`` pointing at a temporary folder: the
notebooks write their files there, never beside themselves.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds, per cell


def _read(path):
    """The notebook, failing on any nbformat warning (a missing cell id is one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    return nb


def test_there_are_notebooks():
    assert len(PATHS) >= 7, [p.name for p in PATHS]


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_without_outputs_and_with_ids(path):
    nb = _read(path)
    assert (nb.nbformat, nb.nbformat_minor) >= (4, 5), "save as nbformat 4.5 (cell ids)"
    ids = [cell.get("id") for cell in nb.cells]
    assert all(ids), f"cells without an id: {[i for i, c in enumerate(ids) if not c]}"
    assert len(set(ids)) == len(ids), "duplicate cell ids"
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"cells saved with outputs (strip them): {dirty}"


def _figures(nb) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_runs_headless(path, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("STEM4D_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    before = sorted(p.name for p in NOTEBOOKS.iterdir())
    nb = _read(path)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(work)}},
        allow_errors=False,
    )
    # the kernel must run this interpreter: python3 here is the native kernel of sys.executable
    client.kernel_manager_class = _manager_for(sys.executable)
    client.execute()
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, errors
    assert _figures(nb) >= 1, f"{path.name} drew no figure"
    assert sorted(p.name for p in NOTEBOOKS.iterdir()) == before, "wrote into notebooks/"


def _manager_for(executable):
    """A KernelManager that starts ``ipykernel`` with ``executable`` whatever the kernelspecs
    installed elsewhere say."""
    from jupyter_client.manager import KernelManager

    class _Here(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            return [executable, *cmd[1:]]

    return _Here
