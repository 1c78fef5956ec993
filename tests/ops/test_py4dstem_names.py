"""Every public function of py4DSTEM 0.14.18's ``preprocess`` namespace is offered under the same
name by ``stem4d_dask.preprocess`` and by the submodule of the same name, and takes py4DSTEM's
parameters first, in py4DSTEM's order (ours may add parameters after them).

The names come from ``fixtures/py4dstem_preprocess_names.json`` (made by
``fixtures/make_names_fixture.py`` in the py4DSTEM virtualenv), so no py4DSTEM is needed here.
"""

import importlib
import inspect
import json
from pathlib import Path

import pytest

NAMES = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "py4dstem_preprocess_names.json").read_text()
)
FUNCTIONS = NAMES["functions"]
CASES = [(space, name) for space, names in NAMES["namespaces"].items() for name in names]


def parameter_mismatch(function, theirs):
    """None when ``function``'s parameters start with ``theirs`` (names, in order), else a
    message saying how they differ."""
    ours = list(inspect.signature(function).parameters)
    if ours[: len(theirs)] == list(theirs):
        return None
    return f"parameters {ours} do not start with py4DSTEM's {theirs}"


def test_the_fixture_is_py4dstem_0_14_18_and_covers_its_submodules():
    assert NAMES["py4DSTEM_version"] == "0.14.18"
    assert set(NAMES["namespaces"]) == {
        "preprocess",
        *(
            f"preprocess.{m}"
            for m in ("preprocess", "electroncount", "utils", "darkreference", "radialbkgrd")
        ),
    }
    top = set(NAMES["namespaces"]["preprocess"])
    assert top == set(FUNCTIONS)  # the package offers every function of its submodules
    assert {"crop_data_diffraction", "median_filter_masked_pixels_2D", "torch_bin"} <= top
    assert not top & {"gaussian_filter", "interp1d", "tqdmnd", "PointListArray"}


@pytest.mark.parametrize(("space", "name"), CASES, ids=[f"{s}.{n}" for s, n in CASES])
def test_name_offered_with_py4dstem_parameters(space, name):
    module = importlib.import_module(f"stem4d_dask.{space}")
    function = getattr(module, name, None)
    assert function is not None, f"stem4d_dask.{space} has no {name}"
    assert callable(function)
    problem = parameter_mismatch(function, FUNCTIONS[name]["parameters"])
    assert problem is None, f"stem4d_dask.{space}.{name}: {problem}"


def test_top_level_all_lists_every_py4dstem_name():
    package = importlib.import_module("stem4d_dask.preprocess")
    missing = set(NAMES["namespaces"]["preprocess"]) - set(package.__all__)
    assert not missing, f"stem4d_dask.preprocess.__all__ lacks {sorted(missing)}"


def test_the_check_can_fail(monkeypatch):
    """A name taken away, or parameters renamed or reordered, are caught."""
    package = importlib.import_module("stem4d_dask.preprocess")
    monkeypatch.delattr(package, "crop_data_real")
    with pytest.raises(AssertionError, match="has no crop_data_real"):
        test_name_offered_with_py4dstem_parameters("preprocess", "crop_data_real")

    def swapped(datacube, crop_Qx_max, crop_Qx_min, crop_Qy_min, crop_Qy_max, extra=None):
        pass

    def more(datacube, crop_Qx_min, crop_Qx_max, crop_Qy_min, crop_Qy_max, extra=None):
        pass

    theirs = FUNCTIONS["crop_data_diffraction"]["parameters"]
    assert "do not start with" in parameter_mismatch(swapped, theirs)
    assert parameter_mismatch(lambda datacube: None, theirs) is not None
    assert parameter_mismatch(more, theirs) is None  # added parameters after them are fine
