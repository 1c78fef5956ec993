"""The documentation site builds with warnings as errors, its API reference documents the
public functions, its CLI page lists every subcommand of the parser, and the py4DSTEM-name
table names every py4DSTEM 0.14.18 preprocess function and only names that exist here."""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import stem4d_dask
from stem4d_dask import preprocess
from stem4d_dask.accessor import ALIASES, METHODS
from stem4d_dask.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NAMES = ROOT / "tests" / "fixtures" / "py4dstem_preprocess_names.json"


def _subcommands():
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError("build_parser() has no subcommands")


def _sources():
    return {p for p in DOCS.rglob("*") if "_build" not in p.parts and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    out = tmp_path_factory.mktemp("docs") / "html"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    before = _sources()
    start = time.perf_counter()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - start
    assert run.returncode == 0, f"sphinx -W failed:\n{run.stderr}\n{run.stdout}"
    print(f"documentation built in {seconds:.1f} s")
    assert _sources() == before, "the build wrote into docs/"
    return out


def _ids(page):
    return set(re.findall(r'id="([^"]+)"', page.read_text()))


def test_site_builds_without_warnings_into_its_own_folder(site):
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    expected = {
        f"{p.relative_to(DOCS).with_suffix('.html').as_posix()}"
        for p in _sources()
        if p.suffix in (".md", ".rst")
    }
    assert expected <= pages, f"pages not built: {sorted(expected - pages)}"


@pytest.mark.parametrize(
    "page, names",
    [
        (
            "top-level",
            [
                "stem4d_dask.find_peaks",
                "stem4d_dask.map_frames",
                "stem4d_dask.read",
                "stem4d_dask.from_array",
                "stem4d_dask.to_zarr",
                "stem4d_dask.convert",
            ],
        ),
        ("io", ["stem4d_dask.io.read", "stem4d_dask.io.write", "stem4d_dask.io.to_zarr"]),
        ("preprocess", [f"stem4d_dask.preprocess.{name}" for name in preprocess.__all__]),
        (
            "phase",
            [
                "stem4d_dask.phase.center_of_mass",
                "stem4d_dask.phase.DPC",
                "stem4d_dask.phase.DPC.preprocess",
                "stem4d_dask.phase.DPC.object_phase",
            ],
        ),
        ("peaks", ["stem4d_dask.frame_functions.map_frames", "stem4d_dask.peaks.BraggPeaks"]),
        (
            "cluster",
            [
                "stem4d_dask.cluster.client",
                "stem4d_dask.progress.showing",
                "stem4d_dask.device.to_device",
            ],
        ),
    ],
)
def test_api_pages_document_the_public_functions(site, page, names):
    ids = _ids(site / "api" / f"{page}.html")
    missing = [name for name in names if name not in ids]
    assert not missing, f"api/{page} does not document {missing}"


def test_every_top_level_name_is_documented(site):
    ids = _ids(site / "api" / "top-level.html")
    missing = [n for n in stem4d_dask.__all__ if f"stem4d_dask.{n}" not in ids]
    assert not missing
    # DIMS is data, written out in api/top-level.rst (autodoc documents no imported data)
    assert f":value: {stem4d_dask.DIMS!r}" in (DOCS / "api" / "top-level.rst").read_text()


def test_cli_page_lists_every_subcommand_with_its_help(site):
    page = (site / "cli.html").read_text()
    ids = _ids(site / "cli.html")
    for name, parser in _subcommands().items():
        assert f"stem4d-{name}" in ids, f"the CLI page has no section for stem4d {name}"
        assert f"usage: stem4d {name}" in page
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in page, f"the CLI page lacks stem4d {name} {flag}"


# the py4DSTEM-name table is checked without Sphinx: it is a markdown page, read on GitHub too


def _table_rows():
    text = (DOCS / "py4dstem-names.md").read_text()
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| `")
    ]


def test_name_table_lists_every_py4dstem_preprocess_function():
    listed = {
        re.fullmatch(r"`(\w+)`", row[0]).group(1)
        for row in _table_rows()
        if re.fullmatch(r"`(\w+)`", row[0])
    }
    functions = set(json.loads(NAMES.read_text())["functions"])
    assert functions <= listed, f"py4dstem-names.md lacks {sorted(functions - listed)}"


def test_name_table_names_only_what_exists():
    methods = set(METHODS) | set(ALIASES)
    commands = _subcommands()
    for row in _table_rows():
        ours, accessor, command = row[1], row[2], row[3]
        for name in re.findall(r"`preprocess\.(\w+)`", ours):
            assert name in preprocess.__all__, name
        for name in re.findall(r"`stem4d_dask\.(\w+)`", ours):
            assert name in stem4d_dask.__all__, name
        for name in re.findall(r"dc\.stem4d\.(\w+)", accessor):
            assert name in methods, f"no accessor method {name}"
        for name, flags in re.findall(r"`stem4d (\w+)((?: --[\w-]+(?: [\w.,]+)?)*)", command):
            assert name in commands, f"no subcommand {name}"
            options = {f for a in commands[name]._actions for f in a.option_strings}
            for flag in re.findall(r"--[\w-]+", flags):
                assert flag in options, f"stem4d {name} has no {flag}"
