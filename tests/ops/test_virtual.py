import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask.virtual import circle_mask, mean_diffraction_pattern, virtual_image


def test_circle_mask_geometry():
    m = circle_mask((9, 11), 2.0)
    assert m.shape == (9, 11) and m.sum() == 13  # lattice points within r=2 of (4, 5)
    assert m[4, 5] and m[2, 5] and not m[1, 5]
    off = circle_mask((9, 11), 1.0, center=(0, 0))
    assert off.sum() == 3 and off[0, 0] and off[1, 0] and off[0, 1]
    with pytest.raises(ValueError, match="radius"):
        circle_mask((9, 11), 0)


def test_virtual_image_equals_numpy(cube_u16, dc_u16):
    mask = circle_mask(dc_u16, 3.5)
    image = virtual_image(dc_u16, mask)
    assert image.dims == ("Rx", "Ry") and image.Rx.attrs["units"] == "A"
    assert image.data.numblocks == dc_u16.data.numblocks[:2]
    np.testing.assert_array_equal(image.values, (cube_u16 * mask).sum(axis=(2, 3)))
    weights = np.random.default_rng(0).random((12, 10))
    np.testing.assert_allclose(
        virtual_image(dc_u16, weights).values,
        np.einsum("ijkl,kl->ij", cube_u16.astype(float), weights),
    )
    with pytest.raises(ValueError, match="mask"):
        virtual_image(dc_u16, np.ones((3, 3)))


def test_mean_pattern_equals_numpy(cube_u16, dc_u16):
    mean = mean_diffraction_pattern(dc_u16)
    assert mean.dims == ("Qx", "Qy") and mean.Qx.attrs["units"] == "mrad"
    assert mean.dtype == np.float64
    np.testing.assert_allclose(mean.values, cube_u16.mean(axis=(0, 1)))


def test_accessor_reductions(dc_u16, cube_u16):
    mask = circle_mask(dc_u16, 2)
    np.testing.assert_array_equal(
        dc_u16.stem4d.virtual_image(mask).values, virtual_image(dc_u16, mask).values
    )
    np.testing.assert_allclose(
        dc_u16.stem4d.mean_diffraction_pattern().values, cube_u16.mean(axis=(0, 1))
    )
    assert s4.from_array(cube_u16).stem4d.describe()["shape"] == (7, 9, 12, 10)
