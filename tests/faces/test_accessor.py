"""The ``.stem4d`` accessor is made from one table: every method has its function's signature
(less the datacube) and docstring, and gives its result."""

import inspect

import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask.accessor import ALIASES, METHODS, Stem4dAccessor


@pytest.mark.parametrize("name", sorted(METHODS))
def test_methods_keep_signatures_and_docstrings(name):
    function = METHODS[name]
    method = getattr(Stem4dAccessor, name)
    target = function.__init__ if inspect.isclass(function) else function
    skip = 2 if inspect.isclass(function) else 1
    expected = list(inspect.signature(target).parameters.values())[skip:]
    got = list(inspect.signature(method).parameters.values())[1:]
    assert got == expected, name
    assert method.__doc__ == function.__doc__ and method.__doc__, name


def test_aliases_and_calls():
    for alias, name in ALIASES.items():
        assert getattr(Stem4dAccessor, alias) is getattr(Stem4dAccessor, name)
    dc = s4.from_array(np.arange(2 * 3 * 4 * 4, dtype=np.uint16).reshape(2, 3, 4, 4))
    np.testing.assert_array_equal(
        dc.stem4d.bin_Q(2).values, s4.preprocess.bin_data_diffraction(dc, 2).values
    )
    assert dc.stem4d.describe() == s4.describe(dc)
    with pytest.raises(TypeError):
        dc.stem4d.bin_Q(2, 3, 4, 5)  # too many arguments, as for the function
