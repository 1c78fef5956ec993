"""Virtual detectors: mask geometry, the tutorial's segmented detector, one-pass virtual images,
and segmented / monolithic centre of mass against the pixelated one."""

import dask
import dask.array as da
import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask.detectors import (
    annular_segmented_detectors,
    annulus_mask,
    circle_mask,
    segmented_masks,
)
from stem4d_dask.phase.com import center_of_mass
from stem4d_dask.phase.segmented import monolithic_com, segmented_com
from stem4d_dask.synthetic import dpc_scan
from stem4d_dask.virtual import circle_mask as circle_mask_from_virtual
from stem4d_dask.virtual import virtual_image, virtual_images


# --- the tutorial's code, copied (py4DSTEM's wavelength swapped for ours, equal to its digits) --
def tutorial_annular_segmented_detectors(
    energy, gpts, sampling, n_angular_bins, rotation_offset=0, inner_radius=0, outer_radius=np.inf
):
    nx, ny = gpts
    sx, sy = sampling
    wavelength = s4.electron_wavelength_angstrom(energy)

    alpha_x = np.fft.fftfreq(nx, sx) * wavelength
    alpha_y = np.fft.fftfreq(ny, sy) * wavelength

    alpha = np.sqrt(alpha_x[:, None] ** 2 + alpha_y[None, :] ** 2)
    radial_mask = (inner_radius * 1e-3 <= alpha) & (alpha < outer_radius * 1e-3)

    theta = (np.arctan2(alpha_y[None, :], alpha_x[:, None]) + rotation_offset) % (2 * np.pi)
    angular_bins = np.floor(n_angular_bins * (theta / (2 * np.pi))) + 1
    angular_bins *= radial_mask.astype("int")

    angular_bins = [
        np.fft.fftshift((angular_bins == i).astype("int")) for i in range(1, n_angular_bins + 1)
    ]
    return angular_bins


def tutorial_segmented_and_monolithic(data, segmented_detectors, dp_center):
    segment_intensities = [(data * mask).sum((-2, -1)) for mask in segmented_detectors]
    segmented = (
        segment_intensities[0] - segment_intensities[2],
        segment_intensities[1] - segment_intensities[3],
    )
    monolithic_com_x = np.zeros(data.shape[:2])
    monolithic_com_y = np.zeros(data.shape[:2])
    for segment in range(4):
        kxa, kya = np.where(segmented_detectors[segment])
        patches = data[:, :, kxa, kya].sum(-1)
        monolithic_com_x += patches * (kxa.mean() - dp_center[0])
        monolithic_com_y += patches * (kya.mean() - dp_center[1])
    return segmented, (monolithic_com_x, monolithic_com_y)


TUTORIAL = dict(
    energy=200e3,
    gpts=(96, 96),
    sampling=(0.1232853125 * 2, 0.1232853125 * 2),
    n_angular_bins=4,
    rotation_offset=np.deg2rad(45 + 15),
    inner_radius=10,
    outer_radius=25,
)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"n_angular_bins": 3, "rotation_offset": 0.3},
        {"rotation_offset": 0, "inner_radius": 0, "outer_radius": np.inf},
        {"gpts": (95, 64), "sampling": (0.2, 0.31), "n_angular_bins": 8, "outer_radius": 40},
        {"energy": 80e3, "n_angular_bins": 1, "rotation_offset": -2.0, "inner_radius": 3.5},
    ],
)
def test_annular_segmented_detectors_equals_tutorial(changes):
    kw = {**TUTORIAL, **changes}
    ours, theirs = annular_segmented_detectors(**kw), tutorial_annular_segmented_detectors(**kw)
    assert isinstance(ours, list) and len(ours) == len(theirs) == kw["n_angular_bins"]
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == tuple(kw["gpts"])
        np.testing.assert_array_equal(a, b)


def test_annular_segmented_detectors_errors():
    for bad, match in (
        ({"n_angular_bins": 0}, "n_angular_bins"),
        ({"inner_radius": 30}, "outer_radius"),
        ({"energy": -1}, "energy"),
        ({"sampling": (0.1, 0)}, "sampling"),
        ({"gpts": (96,)}, "gpts"),
    ):
        with pytest.raises(ValueError, match=match):
            annular_segmented_detectors(**{**TUTORIAL, **bad})


def _tutorial_cube():
    """A pixels -> mrad calibration equal to the tutorial's (1.0595 mrad per pixel at 96 px)."""
    lam = s4.electron_wavelength_angstrom(200e3)
    size = lam / (96 * TUTORIAL["sampling"][0]) * 1e3
    return s4.from_array(
        np.zeros((2, 2, 96, 96), np.uint16), q_pixel_size=size, q_units="mrad", energy=200e3
    )


def test_segmented_masks_reproduce_tutorial_detector():
    dc = _tutorial_cube()
    assert dc.attrs["q_pixel_size"] == pytest.approx(1.0595062826244177)
    ours = segmented_masks(
        dc, 4, 10, 25, rotation_offset_deg=45 + 15, center=(48, 48), units="mrad"
    )
    np.testing.assert_array_equal(ours, np.array(annular_segmented_detectors(**TUTORIAL)) == 1)
    # the same detector from a 1/Å calibration, with radii in 1/Å
    dc_inv = s4.with_q_units(dc, "A^-1")
    radii = s4.mrad_to_inv_angstrom([10, 25], 200e3)
    np.testing.assert_array_equal(
        segmented_masks(dc_inv, 4, *radii, 60, center=(48, 48), units="A^-1"), ours
    )


# --- mask geometry ------------------------------------------------------------------------------


def test_circle_mask_is_importable_from_virtual():
    assert circle_mask_from_virtual is circle_mask
    np.testing.assert_array_equal(circle_mask((9, 11), 2.0), circle_mask_from_virtual((9, 11), 2))


def test_annulus_and_segment_geometry():
    shape = (64, 60)
    ring = annulus_mask(shape, 8, 20)
    assert ring.dtype == bool and ring.shape == shape
    assert ring.sum() == pytest.approx(np.pi * (20**2 - 8**2), rel=0.02)
    # inner <= r < outer; inner = 0 is the open disk, outer = inf everything beyond inner
    np.testing.assert_array_equal(annulus_mask(shape, 0, 20) | ring, annulus_mask(shape, 0, 20))
    assert annulus_mask(shape, 0, np.inf).all()
    np.testing.assert_array_equal(
        annulus_mask(shape, 8, np.inf), ~circle_mask(shape, 8) | _edge(shape, 8)
    )
    dist = np.hypot(*np.ogrid[:10, :10])  # exact radius 5 at (3, 4) and (5, 0)
    m = annulus_mask((10, 10), 3, 5, center=(0, 0))
    assert not m[3, 4] and not m[5, 0] and m[3, 0] and m[0, 3]
    np.testing.assert_array_equal(m, (dist >= 3) & (dist < 5))

    for n in (1, 3, 4, 8):
        seg = segmented_masks(shape, n, 8, 20, rotation_offset_deg=180 / n)
        assert seg.shape == (n, *shape) and seg.dtype == bool
        assert (seg.sum(axis=0) <= 1).all()  # disjoint
        np.testing.assert_array_equal(seg.any(axis=0), ring)  # cover the annulus
        if n > 1:
            assert seg.sum(axis=(1, 2)) == pytest.approx(ring.sum() / n, rel=0.1)

    # rotation_offset_deg = 45: segments 0, 1, 2, 3 face +Qx, +Qy, -Qx, -Qy around the centre
    seg = segmented_masks(shape, 4, 8, 20, rotation_offset_deg=45)
    cx, cy = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    centroids = [np.subtract(np.nonzero(s), [[cx], [cy]]).mean(axis=1) for s in seg]
    angles = [np.rad2deg(np.arctan2(y, x)) for x, y in centroids]
    np.testing.assert_allclose(np.unwrap(angles, period=360), [0, 90, 180, 270], atol=3)
    # segment s spans [360 s / n - offset, 360 (s + 1) / n - offset): offset 0 -> 0 is +x +y
    seg0 = segmented_masks((41, 41), 4, 1, 15)[0]
    qx, qy = np.nonzero(seg0)
    assert (qx >= 20).all() and (qy >= 20).all()


def _edge(shape, r):
    """Pixels at exactly distance r (circle_mask keeps them, the annulus' inner edge too)."""
    qx, qy = np.ogrid[: shape[0], : shape[1]]
    return (qx - (shape[0] - 1) / 2) ** 2 + (qy - (shape[1] - 1) / 2) ** 2 == r**2


def test_calibrated_radii_agree_through_the_energy(dc_u16):
    # dc_u16: 0.25 mrad per pixel at 300 keV
    dc_inv = s4.with_q_units(dc_u16, "A^-1")
    inner_mrad, outer_mrad = 0.6, 1.1
    inner_inv, outer_inv = s4.mrad_to_inv_angstrom([inner_mrad, outer_mrad], 300e3)
    px = annulus_mask(dc_u16, inner_mrad / 0.25, outer_mrad / 0.25)
    assert 0 < px.sum() < px.size
    for cube in (dc_u16, dc_inv):
        np.testing.assert_array_equal(annulus_mask(cube, inner_mrad, outer_mrad, units="mrad"), px)
        np.testing.assert_array_equal(annulus_mask(cube, inner_inv, outer_inv, units="A^-1"), px)
        np.testing.assert_array_equal(
            segmented_masks(cube, 4, inner_inv, outer_inv, 45, units="1/Å"),
            segmented_masks(cube.shape[2:], 4, 2.4, 4.4, 45),
        )
        np.testing.assert_array_equal(circle_mask(cube, 1.1, units="mrad"), circle_mask(cube, 4.4))
    # a mean pattern carries the calibration too
    mean = s4.virtual.mean_diffraction_pattern(dc_u16)
    np.testing.assert_array_equal(circle_mask(mean, 1.1, units="mrad"), circle_mask(mean, 4.4))


def test_mask_errors(dc_u16):
    for call, match in (
        (lambda: circle_mask((9, 9), 0), "radius"),
        (lambda: circle_mask((9, 9), -1.0), "radius"),
        (lambda: circle_mask((9,), 1), "datacube_or_shape"),
        (lambda: annulus_mask((9, 9), 4, 4), "outer"),
        (lambda: annulus_mask((9, 9), 5, 3), "outer"),
        (lambda: annulus_mask((9, 9), -1, 3), "inner"),
        (lambda: segmented_masks((9, 9), 0, 1, 3), "n_segments"),
        (lambda: segmented_masks((9, 9), 2.5, 1, 3), "n_segments"),
        (lambda: segmented_masks((9, 9), 4, 1, 3, center=(1,)), "center"),
        (lambda: circle_mask((9, 9), 1, units="mrad"), "units"),
        (lambda: circle_mask(s4.from_array(np.zeros((1, 1, 9, 9))), 1, units="mrad"), "units"),
        (lambda: circle_mask(s4.with_calibration(dc_u16, energy=None), 1, units="A^-1"), "energy"),
        (lambda: circle_mask((9, 9), 1, units="nm"), "units"),
    ):
        with pytest.raises(ValueError, match=match):
            call()


# --- virtual images -----------------------------------------------------------------------------


def _masks(shape):
    rng = np.random.default_rng(3)
    return np.stack(
        [
            circle_mask(shape, 3.5),
            annulus_mask(shape, 2, 5),
            *segmented_masks(shape, 4, 1, 6, 45),
            rng.random(shape),
            rng.integers(-3, 4, shape),
        ]
    )


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_virtual_images_equal_einsum(cube_u16, dtype):
    cube = cube_u16.astype(dtype)  # 7 x 9 scan, non-square 12 x 10 detector
    dc = s4.from_array(
        cube,
        r_pixel_size=1.5,
        r_units="A",
        q_pixel_size=0.25,
        q_units="mrad",
        energy=300e3,
        chunks=(3, 4),
    )
    masks = _masks(cube.shape[2:])
    images = virtual_images(dc, masks)
    assert images.dims == ("Rx", "Ry", "detector") and images.dtype == np.float64
    assert images.shape == (7, 9, len(masks))
    np.testing.assert_array_equal(images.detector.values, np.arange(len(masks)))
    assert images.Rx.attrs["units"] == "A" and images.attrs["q_units"] == "mrad"
    expected = np.einsum("ijkl,mkl->ijm", cube.astype(np.float64), masks.astype(np.float64))
    values = images.values
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    if dtype == "uint16":  # integer sums are exact
        np.testing.assert_array_equal(values[..., :6], expected[..., :6])
    # a list of masks and a single (Qx, Qy) mask work too; virtual_image is the one-mask case
    np.testing.assert_array_equal(virtual_images(dc, list(masks[:2])).values, values[..., :2])
    np.testing.assert_array_equal(virtual_images(dc, masks[1]).values, values[..., 1:2])
    np.testing.assert_array_equal(virtual_image(dc, masks[2]).values, values[..., 2])


def test_virtual_images_batches_frames(monkeypatch, cube_u16, dc_u16):
    from stem4d_dask.kernels import virtual as kernel

    monkeypatch.setattr(kernel, "BATCH_BYTES", 8 * 12 * 10 * 4)  # 4 frames per matrix product
    masks = _masks((12, 10))
    np.testing.assert_allclose(
        virtual_images(dc_u16, masks).values,
        np.einsum("ijkl,mkl->ijm", cube_u16.astype(float), masks.astype(float)),
        rtol=1e-12,
    )


def test_virtual_images_one_task_per_chunk(dc_u16):
    masks = _masks((12, 10))
    images = virtual_images(dc_u16, masks)
    n_chunks = int(np.prod(dc_u16.data.numblocks))
    n_input = len(dict(dc_u16.data.__dask_graph__()))
    n_graph = len(dict(images.data.__dask_graph__()))
    assert n_graph <= n_input + n_chunks + 2  # + the mask stack, one key shared by every task
    assert images.data.numblocks == (*dc_u16.data.numblocks[:2], 1)
    # two different mask stacks on the same cube never share keys
    other = virtual_images(dc_u16, masks[::-1])
    assert images.data.name != other.data.name
    a, b = dask.compute(images, other)
    np.testing.assert_array_equal(a.values[..., ::-1], b.values)


def test_virtual_images_errors(dc_u16):
    for masks, match in (
        (np.ones((2, 3, 3)), "masks"),
        (np.ones((12, 10, 2)), "masks"),
        ([], "masks"),
        ([np.ones((12, 10)), np.ones((3, 3))], "masks"),
        (np.full((1, 12, 10), np.nan), "masks"),
        (np.array([["a"] * 10] * 12), "masks"),
    ):
        with pytest.raises(ValueError, match=match):
            virtual_images(dc_u16, masks)


def test_building_reads_no_data():
    def boom(block):
        raise RuntimeError("data was read")

    data = da.zeros((6, 6, 16, 16), dtype=np.uint16, chunks=(3, 6, 16, 16)).map_blocks(
        boom, dtype=np.uint16, meta=np.empty((0, 0, 0, 0), np.uint16)
    )
    dc = s4.from_array(data, chunks=None)
    masks = segmented_masks(dc, 4, 2, 7, 45)
    results = [
        virtual_images(dc, masks),
        virtual_image(dc, masks[0]),
        segmented_com(dc, masks),
        monolithic_com(dc, masks),
    ]
    for result in results:
        with pytest.raises(RuntimeError, match="data was read"):
            dask.compute(result)


# --- segmented and monolithic centre of mass ----------------------------------------------------


def test_segmented_and_monolithic_com_equal_tutorial():
    rng = np.random.default_rng(5)
    data = rng.poisson(20.0, size=(5, 6, 96, 96)).astype(np.uint16)
    dc = s4.from_array(data, chunks=(2, 6))
    detectors = annular_segmented_detectors(**TUTORIAL)
    (sx, sy), (mx, my) = tutorial_segmented_and_monolithic(data, detectors, (48, 48))
    seg = segmented_com(dc, detectors)
    mono = monolithic_com(dc, detectors)  # default centre (Qx // 2, Qy // 2) = (48, 48)
    seg, mono = dask.compute(seg, mono)
    np.testing.assert_array_equal(seg.com_x.values, sx)
    np.testing.assert_array_equal(seg.com_y.values, sy)
    np.testing.assert_allclose(mono.com_x.values, mx, rtol=1e-10, atol=1e-6)
    np.testing.assert_allclose(mono.com_y.values, my, rtol=1e-10, atol=1e-6)
    intensities = np.stack([(data * d).sum((-2, -1)) for d in detectors], axis=-1)
    np.testing.assert_array_equal(seg.segment_intensity.values, intensities)
    np.testing.assert_array_equal(mono.intensity.values, intensities.sum(-1))
    assert seg.com_x.dims == ("Rx", "Ry") and seg.segment_intensity.dims[-1] == "detector"
    assert mono.attrs["center"] == (48, 48)


def test_segmented_com_weights_for_n_segments():
    # n segments: com = sum_s I_s (cos, sin)(2 pi s / n)
    rng = np.random.default_rng(2)
    data = rng.random((3, 4, 20, 22))
    dc = s4.from_array(data)
    masks = segmented_masks(dc, 6, 2, 9, 30)
    got = segmented_com(dc, masks).compute()
    intensities = np.einsum("ijkl,mkl->ijm", data, masks.astype(float))
    angles = 2 * np.pi * np.arange(6) / 6
    np.testing.assert_allclose(got.com_x.values, intensities @ np.cos(angles), atol=1e-9)
    np.testing.assert_allclose(got.com_y.values, intensities @ np.sin(angles), atol=1e-9)
    two = segmented_com(dc, masks[:2]).compute()
    np.testing.assert_allclose(two.com_x.values, intensities[..., 0] - intensities[..., 1])
    assert (two.com_y.values == 0).all()


def test_segmented_com_reads_the_data_once(dc_u16):
    masks = segmented_masks(dc_u16, 4, 1, 5, 45)
    for ds in (segmented_com(dc_u16, masks), monolithic_com(dc_u16, masks)):
        graph = dict(ds.__dask_graph__())
        passes = [k for k in graph if isinstance(k, tuple) and k[0].startswith("virtual_images")]
        assert len(passes) == int(np.prod(dc_u16.data.numblocks))


def test_segmented_com_errors(dc_u16):
    masks = segmented_masks(dc_u16, 4, 1, 5, 45)
    with pytest.raises(ValueError, match="masks"):
        segmented_com(dc_u16, masks[:1])
    with pytest.raises(ValueError, match="masks"):
        segmented_com(dc_u16, masks[:, :5])
    with pytest.raises(ValueError, match="masks"):
        monolithic_com(dc_u16, np.zeros((2, 12, 10), bool))
    with pytest.raises(ValueError, match="center"):
        monolithic_com(dc_u16, masks, center=(1, np.nan))


def _compare(reference, other, strong):
    """Mean cosine similarity over the strongly deflected positions, and the rotation (degrees)
    that best takes ``reference`` onto ``other``; both fields have their mean removed."""
    (ax, ay), (bx, by) = ((v - v.mean() for v in f) for f in (reference, other))
    cosine = (ax * bx + ay * by) / (np.hypot(ax, ay) * np.hypot(bx, by))
    angle = np.arctan2((ax * by - ay * bx).sum(), (ax * bx + ay * by).sum())
    return cosine[strong].mean(), np.rad2deg(angle)


def test_segmented_com_points_like_pixelated_com():
    """THE check: 4 segments across the bright-field disk edge give CoM vectors that point the
    same way as the pixelated CoM.

    Orientation: segment s spans detector angles [90 s - offset, 90 (s + 1) - offset) from +Qx
    towards +Qy. With offset 45 degrees the segments face +Qx, +Qy, -Qx, -Qy, so
    I0 - I2 grows with a shift along +Qx and I1 - I3 along +Qy: the segmented CoM is in the
    detector frame, like center_of_mass's (com_x, com_y). With the tutorial's offset of
    45 + 15 degrees segment 0 faces -15 degrees; the segmented CoM is then the detector CoM
    rotated by +15 degrees, which for the scan rotation of 15 degrees (the disk moves by
    R(-15 deg) g for a scan-space deflection g) is g itself: the tutorial's detector reads in
    scan axes. The monolithic CoM uses each segment's centroid and stays in the detector frame
    whatever the offset.
    """
    radius = 10
    scan = dpc_scan(
        scan_shape=(32, 32),
        detector_shape=(48, 48),
        disk_radius=radius,
        rotation_deg=15,
        max_shift=3,
        electrons_per_pattern=2e4,
        seed=0,
    )
    dc = scan.datacube
    # positions deflected by more than half a pixel (about a third of the scan)
    sx, sy = scan.shift_x.values, scan.shift_y.values
    strong = np.hypot(sx - sx.mean(), sy - sy.mean()) > 0.5
    assert 0.2 < strong.mean() < 0.6

    def fields(offset_deg):
        masks = segmented_masks(dc, 4, 0.5 * radius, 1.3 * radius, offset_deg)
        com, seg, mono = dask.compute(
            center_of_mass(dc),
            segmented_com(dc, masks),
            monolithic_com(dc, masks, center=(23.5, 23.5)),
        )
        return (
            (com.com_x.values, com.com_y.values),
            (seg.com_x.values, seg.com_y.values),
            (mono.com_x.values, mono.com_y.values),
        )

    pixelated, seg, mono = fields(45)
    for other in (seg, mono):
        cosine, angle = _compare(pixelated, other, strong)
        assert cosine > 0.95
        # the segmented frame is tilted by ~2 degrees: with the detector centre on a pixel
        # diagonal, the diagonal pixels on the segment boundaries fall into the next segment
        assert abs(angle) < 3
    whole_field = _compare(pixelated, seg, np.ones_like(strong))[0]
    assert whole_field > 0.9
    assert abs(_compare(pixelated, mono, strong)[1]) < 1  # centroids correct that tilt

    _, seg, mono = fields(45 + 15)  # the tutorial's orientation: scan axes
    assert _compare(pixelated, seg, strong)[1] == pytest.approx(15, abs=3)
    assert abs(_compare(pixelated, mono, strong)[1]) < 1
    th = np.deg2rad(scan.rotation_deg)  # the true scan-space deflection, R(15 deg) d
    truth = (np.cos(th) * sx - np.sin(th) * sy, np.sin(th) * sx + np.cos(th) * sy)
    cosine, angle = _compare(truth, seg, strong)
    assert cosine > 0.95 and abs(angle) < 3

    _, seg, _ = fields(0)  # segments at 45, 135, ... degrees: the vector turns by -45 degrees
    assert _compare(pixelated, seg, strong)[1] == pytest.approx(-45, abs=3)
