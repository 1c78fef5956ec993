"""Local maxima of one 2D frame, refined to sub-pixel precision: py4DSTEM's ``get_maxima_2D``,
``filter_2D_maxima`` (in :mod:`stem4d_dask.kernels.maxima_filter`, importable from here too)
and the DFT-upsampling step of its ``multicorr`` refinement.

Positions are in pixels of the frame, ``x`` along array axis 0 (rows) and ``y`` along axis 1,
as in py4DSTEM. A set of maxima is a numpy structured array with float64 fields ``x``, ``y`` and
``intensity`` (see :data:`MAXIMA_DTYPE`), of shape ``(n,)`` and possibly empty.

The frame may be a numpy or a cupy array. The image-sized work (Gaussian filtering, comparing
every pixel with its 8 neighbours, the FFT for ``'multicorr'``) runs on the frame's device;
only the candidate peaks (and their 3x3 neighbourhoods, and the small upsampled patches of
``'multicorr'``) are moved to the host, where the structured array is built. The result is
always a host (numpy) array.

:func:`~stem4d_dask.kernels.maxima_chunk.get_maxima_2D_chunk` runs the same search on a whole
chunk of frames at once and gives every frame these results bit for bit; the refinement steps
(:func:`refine_poly`, :func:`refine_multicorr`) are shared.

Differences from py4DSTEM 0.14.18
---------------------------------
1. **Guarded parabolic step.** py4DSTEM's parabolic refinement
   ``delta = (I[+1] - I[-1]) / (4 I[0] - 2 I[+1] - 2 I[-1])`` has no guard (upstream PR #270;
   only its CUDA variant guards). Here, along each axis separately, ``delta = 0`` where the
   denominator is 0 or the result is not a number with ``|delta| <= 1``. For finite data the
   guard never fires (at a pixel maximum ``|delta| <= 1/2``); it fires next to ``+-inf``
   (e.g. the log of a frame with zero pixels) or when ``4 I[0]`` overflows, where py4DSTEM's
   ``delta`` is NaN and its bilinear re-read of the intensity raises
   ``ValueError: cannot convert float NaN to integer``.
   The same guard is applied to the 3-point parabolic step inside
   :func:`upsampled_correlation` (py4DSTEM: 0/0 = NaN if the patch maximum is interior and
   equals both its neighbours along an axis).
2. **Validation.** Errors name the parameter and the bad value: ``ar`` not 2D, ``subpixel``
   not in ``('pixel', 'poly', 'multicorr')``, ``upsample_factor <= 2`` with ``'multicorr'``,
   ``relativeToPeak`` not an int >= 0, ``edgeBoundary`` not an int, ``maxNumPeaks`` neither
   None nor an int >= 0, ``_ar_FT`` not of ``ar``'s shape, ``maxima`` without the fields
   ``x``, ``y``, ``intensity``: all raise ``ValueError``. py4DSTEM uses ``assert``
   (AssertionError, skipped under ``python -O``), checks ``relativeToPeak`` only when the
   relative filter runs, and uses negative values as Python indices (``relativeToPeak=-1``:
   relative to the dimmest peak; ``maxNumPeaks=-1``: drop the last peak).
3. **Non-finite 'multicorr' patch.** When the upsampled patch is not finite (NaN or inf in
   the image, which makes its whole FFT NaN, or in ``_ar_FT``), :func:`upsampled_correlation`
   returns ``(NaN, NaN)``. py4DSTEM's argmax then picks the first NaN, at the patch corner,
   and it returns the start position shifted by ``-fix(ceil(1.5 u) / 2) / u`` (-0.75 px for
   u=16) on both axes, without a warning.
4. **No mutation, no aliasing.** :func:`upsampled_correlation` does not round its ``xyShift``
   argument in place (py4DSTEM's does), and :func:`filter_2D_maxima` always returns a new array
   (py4DSTEM returns its input, or a view of it, when nothing is removed).

Everything else follows py4DSTEM 0.14.18 bit for bit where the arithmetic allows, including:
``sigma > 0`` filters with ``gaussian_filter(ar, sigma)`` in the frame's own dtype (so an
integer frame is filtered with integer truncation after each 1D pass, as scipy does); the
asymmetric tie rule of the pixel-maximum test; ``edgeBoundary < 1`` meaning 1; sorting by
descending intensity with ties broken by descending ``x`` then ``y``; the default
``maxNumPeaks=1``; ``filter_2D_maxima`` ignoring ``edgeBoundary``; ``'multicorr'`` keeping the
``'poly'`` intensities; and the FFT of ``'multicorr'`` taken in double precision (py4DSTEM runs on
numpy 1.x, whose FFT always returns complex128).
"""

from __future__ import annotations

import numbers

import numpy as np
import numpy.typing as npt

from ..backend import Array, ArrayModule, array_module, to_host
from .maxima_filter import check_filter_args, filter_2D_maxima

#: dtype of a set of maxima: positions ``x``, ``y`` (pixels) and ``intensity``.
MAXIMA_DTYPE = np.dtype([("x", np.float64), ("y", np.float64), ("intensity", np.float64)])

SUBPIXEL_MODES = ("pixel", "poly", "multicorr")


# --------------------------------------------------------------------------------------------
# helpers


def _ndimage(xp: ArrayModule) -> ArrayModule:
    """``cupyx.scipy.ndimage`` for cupy, ``scipy.ndimage`` for anything else."""
    if getattr(xp, "__name__", "") == "cupy":
        import cupyx.scipy.ndimage as ndi
    else:
        import scipy.ndimage as ndi
    return ndi


def _parabolic_delta(
    minus: npt.NDArray[np.floating] | float,
    centre: npt.NDArray[np.floating] | float,
    plus: npt.NDArray[np.floating] | float,
) -> np.ndarray:
    """Vertex offset (pixels) of the parabola through ``(-1, minus), (0, centre), (1, plus)``,
    py4DSTEM's formula, set to 0 where the denominator is 0 or the offset is not within
    ``[-1, 1]`` (NaN included). Arrays of any (common) shape, float64."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        num = plus - minus
        den = 4 * centre - 2 * plus - 2 * minus
        delta = np.asarray(num / den, dtype=np.float64)
    bad = (den == 0) | ~(np.abs(delta) <= 1)
    return np.where(bad, 0.0, delta)


# --------------------------------------------------------------------------------------------
# multicorr


def _dft_upsample(
    xp: ArrayModule, image_corr: Array, upsample_factor: float, centre: np.ndarray
) -> Array:
    """Real part of the matrix-multiply DFT of ``image_corr`` ``(Nx, Ny)`` on a
    ``ceil(1.5 u) x ceil(1.5 u)`` grid of step ``1/u``, offset by ``centre`` (2, in upsampled
    pixels). py4DSTEM's ``dftUpsample``, operation for operation."""
    nx, ny = image_corr.shape
    num = np.ceil(1.5 * upsample_factor)
    col_kern = xp.exp(
        (-1j * 2 * np.pi / (ny * upsample_factor))
        * xp.outer(xp.fft.ifftshift(xp.arange(ny)) - np.floor(ny / 2), xp.arange(num) - centre[1])
    )
    row_kern = xp.exp(
        (-1j * 2 * np.pi / (nx * upsample_factor))
        * xp.outer(xp.arange(num) - centre[0], xp.fft.ifftshift(xp.arange(nx)) - np.floor(nx / 2))
    )
    return xp.real(row_kern @ image_corr @ col_kern)


def upsampled_correlation(
    imageCorr: Array, upsampleFactor: float, xyShift: npt.ArrayLike
) -> np.ndarray:
    """Refine a peak position by DFT upsampling (Guizar-Sicairos et al., Opt. Lett. 33, 156,
    2008), as py4DSTEM's ``process.utils.multicorr.upsampled_correlation``.

    imageCorr: complex ``(Nx, Ny)`` numpy or cupy array, the Fourier transform (unshifted, as
    ``fft2`` returns it) of the image whose peak is refined. upsampleFactor: ``u > 2``.
    xyShift: the starting position ``(x, y)`` in pixels, to half-pixel precision; it is rounded
    to ``1/u`` (half to even) on a copy and is **not** modified.

    The band-limited interpolation of the image is evaluated by matrix-multiply DFT on a
    ``ceil(1.5 u)``-square patch of step ``1/u`` pixels centred on the rounded ``xyShift``; the
    patch maximum is refined by a 3-point parabola per axis (guarded as the module docstring
    says; skipped when the maximum is on the patch edge). Returns a float64 numpy array ``(2,)``,
    the refined ``(x, y)`` in pixels, or ``(NaN, NaN)`` when the patch is not finite.
    """
    xp = array_module(imageCorr)
    if getattr(imageCorr, "ndim", None) != 2:
        raise ValueError(
            f"imageCorr must be a 2D array, got shape "
            f"{getattr(imageCorr, 'shape', type(imageCorr).__name__)}"
        )
    if not upsampleFactor > 2:
        raise ValueError(f"upsampleFactor must be > 2, got {upsampleFactor!r}")
    u = upsampleFactor
    xy = np.array(to_host(xyShift), dtype=np.float64).reshape(2)  # a copy: never round in place
    xy[0] = np.round(xy[0] * u) / u
    xy[1] = np.round(xy[1] * u) / u

    global_shift = np.fix(np.ceil(u * 1.5) / 2)
    centre = np.asarray(global_shift - u * xy)
    # py4DSTEM conjugates the real patch once more; that is the identity and is left out
    patch = to_host(_dft_upsample(xp, xp.conj(imageCorr), u, centre))
    if not np.isfinite(patch).all():  # NaN/inf input: no position (py4DSTEM: a corner)
        return np.full(2, np.nan)

    i, j = np.unravel_index(int(np.argmax(patch)), patch.shape)
    if 1 <= i <= patch.shape[0] - 2 and 1 <= j <= patch.shape[1] - 2:
        icc = patch[i - 1 : i + 2, j - 1 : j + 2]
        dx: np.ndarray | float = _parabolic_delta(icc[0, 1], icc[1, 1], icc[2, 1])
        dy: np.ndarray | float = _parabolic_delta(icc[1, 0], icc[1, 1], icc[1, 2])
    else:  # the maximum is on the patch edge: no parabolic correction on either axis
        dx = dy = 0.0
    sub_shift = np.array([i, j]) - global_shift
    return xy + (sub_shift + np.array([dx, dy], dtype=np.float64)) / u


# --------------------------------------------------------------------------------------------
# maxima


def _pixel_maxima(
    xp: ArrayModule, ar: Array, edge: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel maxima of ``ar`` ``(Nx, Ny)`` at least ``edge >= 1`` pixels from every border.

    A maximum is ``>=`` its neighbours at ``(x+1, y)``, ``(x, y+1)``, ``(x+1, y+1)``,
    ``(x-1, y+1)`` and ``>`` those at ``(x-1, y)``, ``(x, y-1)``, ``(x+1, y-1)``, ``(x-1, y-1)``
    (py4DSTEM's tie rule). py4DSTEM compares with periodic neighbours and then blanks the
    border; since ``edge >= 1`` only the interior is compared here. Returns host arrays
    ``x``, ``y`` (int) and ``value`` (``ar``'s dtype), each ``(n,)``.
    """
    nx, ny = ar.shape
    x0, x1 = edge, max(nx - edge, edge)
    y0, y1 = edge, max(ny - edge, edge)

    def nb(dx: int, dy: int) -> Array:
        return ar[x0 + dx : x1 + dx, y0 + dy : y1 + dy]

    c = nb(0, 0)
    is_max = (
        (c >= nb(1, 0))
        & (c > nb(-1, 0))
        & (c >= nb(0, 1))
        & (c > nb(0, -1))
        & (c >= nb(1, 1))
        & (c > nb(1, -1))
        & (c >= nb(-1, 1))
        & (c > nb(-1, -1))
    )
    xs, ys = xp.nonzero(is_max)
    xs = xs + x0
    ys = ys + y0
    return to_host(xs), to_host(ys), to_host(ar[xs, ys])


def check_maxima_args(
    subpixel: object,
    upsample_factor: object,
    relativeToPeak: int,
    edgeBoundary: int,
    maxNumPeaks: int | None,
) -> None:
    """Check ``get_maxima_2D``'s mode and filter arguments (every kernel of it, and
    ``find_peaks``, before anything is built): ``subpixel`` one of :data:`SUBPIXEL_MODES`,
    ``upsample_factor`` a finite number > 2 for ``'multicorr'``, the filters as
    :func:`~stem4d_dask.kernels.maxima_filter.check_filter_args`; ``ValueError`` naming the
    parameter."""
    if not (isinstance(subpixel, str) and subpixel in SUBPIXEL_MODES):
        raise ValueError(f"subpixel must be one of {SUBPIXEL_MODES}, got {subpixel!r}")
    if subpixel == "multicorr" and not (
        isinstance(upsample_factor, numbers.Real)
        and not isinstance(upsample_factor, bool)
        and np.isfinite(float(upsample_factor))
        and float(upsample_factor) > 2
    ):
        raise ValueError(
            f"upsample_factor must be a finite number > 2 for subpixel='multicorr', got "
            f"{upsample_factor!r}"
        )
    check_filter_args(relativeToPeak, edgeBoundary, maxNumPeaks)


def _sorted(maxima: np.ndarray) -> np.ndarray:
    """By descending intensity, ties by descending x then y: py4DSTEM's
    ``np.sort(maxima, order="intensity")[::-1]`` (NaN first, as there), done with a lexsort,
    which is much faster than sorting the structured array."""
    return maxima[np.lexsort((maxima["y"], maxima["x"], maxima["intensity"]))[::-1]]


def get_maxima_2D(
    ar: Array,
    subpixel: str = "poly",
    upsample_factor: float = 16,
    sigma: float = 0,
    minAbsoluteIntensity: float = 0,
    minRelativeIntensity: float = 0,
    relativeToPeak: int = 0,
    minSpacing: float = 0,
    edgeBoundary: int = 1,
    maxNumPeaks: int | None = 1,
    _ar_FT: Array | None = None,
) -> np.ndarray:
    """Local maxima of a 2D array, as py4DSTEM's ``get_maxima_2D``.

    ar: ``(Nx, Ny)`` real numpy or cupy array (not modified).
    subpixel: ``'pixel'`` (integer positions), ``'poly'`` (a parabola through the maximum and
    its two neighbours, per axis) or ``'multicorr'`` (``'poly'``, rounded to half pixels, then
    refined by DFT upsampling by ``upsample_factor`` > 2, see :func:`upsampled_correlation`).
    sigma: if > 0, ``ar`` is first smoothed by ``gaussian_filter(ar, sigma)`` (pixels; reflect
    border, truncated at 4 sigma, in ``ar``'s dtype) and everything below uses the smoothed
    array. minAbsoluteIntensity, minRelativeIntensity, relativeToPeak, minSpacing (pixels),
    maxNumPeaks (default 1; None keeps all): see :func:`filter_2D_maxima`, applied to the pixel
    maxima before refinement. edgeBoundary: int, maxima closer than this many pixels to a
    border are ignored (values < 1 mean 1). _ar_FT: for ``'multicorr'``, the complex
    ``(Nx, Ny)`` Fourier transform to upsample instead of ``fft2`` of the (smoothed) ``ar``.

    Returns a numpy structured array :data:`MAXIMA_DTYPE`, shape ``(n,)`` (possibly 0), sorted
    by descending intensity (ties: descending ``x``, then ``y``). Positions are in pixels; for
    ``'poly'`` and ``'multicorr'`` the intensity is the bilinear interpolation of the (smoothed)
    ``ar`` at the ``'poly'`` position.
    """
    check_maxima_args(subpixel, upsample_factor, relativeToPeak, edgeBoundary, maxNumPeaks)
    if not hasattr(ar, "ndim"):
        ar = np.asarray(ar)
    if ar.ndim != 2:
        raise ValueError(f"ar must be a 2D array, got shape {ar.shape}")
    if _ar_FT is not None and tuple(np.shape(_ar_FT)) != tuple(ar.shape):
        raise ValueError(f"_ar_FT must have ar's shape {ar.shape}, got {np.shape(_ar_FT)}")
    xp = array_module(ar)

    if sigma > 0:
        ar = _ndimage(xp).gaussian_filter(ar, sigma)

    xs, ys, values = _pixel_maxima(xp, ar, max(int(edgeBoundary), 1))
    maxima = np.zeros(len(xs), dtype=MAXIMA_DTYPE)
    maxima["x"] = xs
    maxima["y"] = ys
    maxima["intensity"] = values
    maxima = _sorted(maxima)
    if len(maxima) == 0:
        return maxima

    maxima = filter_2D_maxima(
        maxima,
        minAbsoluteIntensity=minAbsoluteIntensity,
        minRelativeIntensity=minRelativeIntensity,
        relativeToPeak=relativeToPeak,
        minSpacing=minSpacing,
        edgeBoundary=edgeBoundary,
        maxNumPeaks=maxNumPeaks,
    )
    if subpixel == "pixel" or len(maxima) == 0:
        return maxima

    maxima = refine_poly(xp, ar, maxima)
    if subpixel == "poly":
        return maxima
    return refine_multicorr(xp, ar, maxima, upsample_factor, _ar_FT)


def refine_poly(
    xp: ArrayModule, ar: Array, maxima: np.ndarray, frame: np.ndarray | None = None
) -> np.ndarray:
    """``maxima`` (:data:`MAXIMA_DTYPE` ``(n,)``, integer pixel positions at least 1 pixel from
    every border) refined by a parabola through each maximum and its two neighbours per axis
    (guarded, see the module docstring), with the intensity re-read bilinearly at the refined
    position (py4DSTEM's ``linear_interpolation_2D``).

    ar: the (smoothed) frame ``(Nx, Ny)``, or with ``frame`` (int ``(n,)``, the frame of each
    maximum) a stack of frames ``(m, Nx, Ny)``; numpy or cupy (``xp`` its module; only the
    ``(n, 3, 3)`` neighbourhoods come to the host). Every step is elementwise, so a maximum gets
    the same bits whether its frame is refined alone or in a stack. Returns a new array."""
    maxima = maxima.copy()
    xi = maxima["x"].astype(np.intp)
    yi = maxima["y"].astype(np.intp)
    offsets = np.arange(-1, 2)
    rows = xp.asarray(xi[:, None, None] + offsets[None, :, None])
    cols = xp.asarray(yi[:, None, None] + offsets[None, None, :])
    if frame is None:
        picked = ar[rows, cols]
    else:
        picked = ar[xp.asarray(np.asarray(frame, dtype=np.intp)[:, None, None]), rows, cols]
    nbhd = to_host(picked).astype(np.float64)  # (n, 3, 3), centre at [:, 1, 1]
    x = maxima["x"] + _parabolic_delta(nbhd[:, 0, 1], nbhd[:, 1, 1], nbhd[:, 2, 1])
    y = maxima["y"] + _parabolic_delta(nbhd[:, 1, 0], nbhd[:, 1, 1], nbhd[:, 1, 2])
    # bilinear re-read of the intensity (py4DSTEM's linear_interpolation_2D), |delta| <= 1
    fx, fy = np.floor(x), np.floor(y)
    cx, cy = np.ceil(x), np.ceil(y)
    dx, dy = x - fx, y - fy
    n = np.arange(len(x))
    fxi, cxi = (fx - xi + 1).astype(np.intp), (cx - xi + 1).astype(np.intp)
    fyi, cyi = (fy - yi + 1).astype(np.intp), (cy - yi + 1).astype(np.intp)
    maxima["x"] = x
    maxima["y"] = y
    maxima["intensity"] = (
        (1 - dx) * (1 - dy) * nbhd[n, fxi, fyi]
        + (1 - dx) * dy * nbhd[n, fxi, cyi]
        + dx * (1 - dy) * nbhd[n, cxi, fyi]
        + dx * dy * nbhd[n, cxi, cyi]
    )
    return maxima


def refine_multicorr(
    xp: ArrayModule,
    ar: Array,
    maxima: np.ndarray,
    upsample_factor: float,
    ar_FT: Array | None = None,
) -> np.ndarray:
    """``maxima`` (:data:`MAXIMA_DTYPE` ``(n,)``, ``'poly'`` positions in pixels) of the
    (smoothed) frame ``ar`` ``(Nx, Ny)`` (numpy or cupy, ``xp`` its module) refined by DFT
    upsampling by ``upsample_factor`` (:func:`upsampled_correlation`, from the position rounded
    to half pixels) of ``ar_FT`` (complex ``(Nx, Ny)``; default the float64 ``fft2`` of ``ar``,
    taken only when there is a maximum), intensities kept; then sorted again as
    :func:`get_maxima_2D` sorts. Returns a new array."""
    maxima = maxima.copy()
    if len(maxima) == 0:
        return maxima
    if ar_FT is None:
        ar_FT = xp.fft.fft2(xp.asarray(ar, dtype=xp.float64))
    for i in range(len(maxima)):
        start = np.round(np.array([maxima["x"][i], maxima["y"][i]]) * 2) / 2
        maxima["x"][i], maxima["y"][i] = upsampled_correlation(ar_FT, upsample_factor, start)
    return _sorted(maxima)
