"""Sphinx configuration of the documentation site.

Build (warnings are errors; the output goes wherever you say, never into the repository):

    python -m sphinx -W --keep-going -b html docs /tmp/stem4d-docs

The pages are the markdown files of ``docs/`` (read by myst-parser, and just as readable on
GitHub) and the API reference of ``docs/api/`` (autodoc, from the docstrings). The CLI page is
rendered from ``stem4d_dask.cli.build_parser()`` at build time (the ``stem4d-cli`` directive
below), so it never goes stale.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, installed or not

import stem4d_dask  # noqa: E402

project = "stem4d_dask"
author = "stem4d_dask contributors"
copyright = "stem4d_dask contributors"  # noqa: A001 - Sphinx's name
release = version = stem4d_dask.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []

# MyST: the pages link to each other's headings as GitHub does (benchmarks.md#bragg-peaks);
# GitHub's slugs of headings down to ###
myst_heading_anchors = 3


# autodoc. Our docstrings are prose with ``code`` and ``name : description`` lines, not numpy
# or Google sections, so no napoleon (it would read our descriptions as types): the hook below
# turns our convention into reST, the rest is reST already. Members are those of ``__all__``
# where a module has one, else the documented functions and classes the module defines; type
# hints stay in the signatures, where the code has them.
autodoc_default_options = {"members": True, "member-order": "bysource"}
# References to names we do not document (numpy, xarray, private helpers) stay plain text
# rather than warnings (Sphinx's default, said here because the build runs with -W)
nitpicky = False


# Our docstrings list arguments and results as ``name : description`` lines (several names
# separated by commas), a description going on over indented lines, under an optional
# ``Parameters`` / ``----------`` heading. That is our convention, not reST (read as reST it is
# a mix of paragraphs and definition lists, and docutils warns). This hook turns each run of
# such lines into a reST definition list (the names as code, the description indented under
# them) and each underlined heading into a rubric, before the docstring is parsed; everything
# else is read as the reST it is.
_ENTRY = re.compile(r"^(\*{0,2}[A-Za-z_][\w./]*(?:, \*{0,2}[A-Za-z_][\w./]*)*) : (.*)$")
_UNDERLINE = re.compile(r"^(-{3,}|={3,}|~{3,})$")


def _indent(line):
    return len(line) - len(line.lstrip())


def _definitions(lines):
    out, in_list = [], False
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and not line.startswith(" ") and _UNDERLINE.match(following):
            out += ["", f".. rubric:: {line.strip()}", ""]
            in_list = False
            continue
        if _UNDERLINE.match(line) and out and out[-1] == "":
            continue  # the underline of the rubric just made
        entry = _ENTRY.match(line)
        if entry:
            if out and out[-1].strip() and not in_list:
                out.append("")
            out.append(", ".join(f"``{name}``" for name in entry.group(1).split(", ")))
            body = _indent(following) if following.startswith(" ") else 4
            out.append(" " * body + entry.group(2))
            in_list = True
        elif in_list and line.startswith(" "):
            out.append(line)
        else:
            if in_list and line.strip():
                out.append("")
            out.append(line)
            in_list = False
    return out


def _docstring_fields(app, what, name, obj, options, lines):
    lines[:] = _definitions(lines)


class CliReference(SphinxDirective):
    """``stem4d-cli``: every subcommand of ``stem4d_dask.cli.build_parser()``, each under its
    own heading with its ``--help`` text, in the parser's order."""

    def run(self):
        from stem4d_dask.cli import build_parser

        # argparse wraps at the terminal's width: a fixed one, the same on every machine
        columns = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "90"
        try:
            return self._sections(build_parser())
        finally:
            if columns is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = columns

    def _sections(self, parser):
        import argparse

        parser.color = False  # Python >= 3.14 colours help on a terminal: plain text here
        out = [nodes.literal_block(text=parser.format_help(), language="text")]
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            for name, sub in action.choices.items():
                sub.color = False
                section = nodes.section(ids=[f"stem4d-{name}"], names=[f"stem4d {name}"])
                section += nodes.title(text=f"stem4d {name}")
                section += nodes.literal_block(text=sub.format_help(), language="text")
                self.state.document.note_implicit_target(section)
                out.append(section)
        return out


def setup(app):
    app.add_directive("stem4d-cli", CliReference)
    app.connect("autodoc-process-docstring", _docstring_fields)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
