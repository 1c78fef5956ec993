"""The docs stay true to the tree: the README's layout names every package module, the
architecture doc's module map names every module, and no link leaves the repository."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "stem4d_dask"
MODULES = sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def _section(text, heading):
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


@pytest.mark.parametrize(
    "doc, heading", [("README.md", "## Layout"), ("docs/architecture.md", "## Modules")]
)
def test_every_module_is_named(doc, heading):
    section = _section((ROOT / doc).read_text(), heading)
    missing = [str(m) for m in MODULES if m.stem not in section]
    assert not missing, f"{doc} does not name {missing}"


@pytest.mark.parametrize(
    "doc",
    [
        "README.md",
        "CONTRIBUTING.md",
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
    ],
)
def test_links_stay_in_the_repository(doc):
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)#]+)", path.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc} links outside the repository: {target}"
        assert resolved.exists(), f"{doc} links to a missing file: {target}"
