"""DPC on small ``(Rx, Ry)`` fields: the scan-rotation search and the iterative Fourier
integration of the centre-of-mass field, as plain numpy (or cupy) functions.

Everything here works on arrays of the scan's size, never on the datacube; float32 as in
py4DSTEM 0.14.18's ``DPC`` (whose arithmetic, including its float32 roundings, is reproduced).
On the CPU the Fourier transforms run in double precision, as numpy 1.x (py4DSTEM's numpy)
does for float32 input; on the GPU (cupy) in single precision, as py4DSTEM's cupy path does.

Conventions (py4DSTEM's): a rotation ``theta`` maps the descan-corrected CoM ``(nx, ny)`` to
the scan frame as ``cx = cos(theta) nx - sin(theta) ny``, ``cy = sin(theta) nx + cos(theta) ny``;
with ``transpose`` the roles of ``nx`` and ``ny`` are exchanged first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import to_host
from ..kernels import array_module

#: py4DSTEM's default rotation grid, degrees: -89, -88, ..., 89.
ROTATION_GRID_DEG = np.arange(-89.0, 90.0, 1.0)
_BATCH_ELEMENTS = 2**22  # rotated fields evaluated per batch of angles (bounded memory)


# ---------------------------------------------------------------- rotation and transpose


def rotate_com(nx, ny, rotation_rad, transpose: bool):
    """The CoM field ``(cx, cy)`` in the scan frame (float32, like py4DSTEM).

    ``rotation_rad``: a scalar (np.float32 from a grid, or float64 when forced: either way
    its cosine and sine are rounded to float32, as numpy 1.x does when py4DSTEM multiplies
    them into float32 fields). ``nx``, ``ny``: float32 ``(Rx, Ry)``.
    """
    c, s = np.float32(np.cos(rotation_rad)), np.float32(np.sin(rotation_rad))
    if transpose:
        nx, ny = ny, nx
    return c * nx - s * ny, s * nx + c * ny


def curl_metric(cx, cy):
    """Mean ``|d_x cy - d_y cx|`` over the interior ``[1:-1, 1:-1]`` of the last two axes.

    Unscaled central differences (``d_x cy = cy[i+1, j] - cy[i-1, j]``), as py4DSTEM: they
    assume equal scan steps along Rx and Ry. Fewer than 3 positions along an axis give NaN.
    """
    grad_x_y = cx[..., 1:-1, 2:] - cx[..., 1:-1, :-2]
    grad_y_x = cy[..., 2:, 1:-1] - cy[..., :-2, 1:-1]
    return _mean_last2(np.abs(grad_y_x - grad_x_y))


def divergence_metric(cx, cy):
    """Mean ``|d_x cx + d_y cy|`` over the interior (unscaled central differences)."""
    grad_x_x = cx[..., 2:, 1:-1] - cx[..., :-2, 1:-1]
    grad_y_y = cy[..., 1:-1, 2:] - cy[..., 1:-1, :-2]
    return _mean_last2(np.abs(grad_x_x + grad_y_y))


def _mean_last2(a):
    if a.shape[-1] == 0 or a.shape[-2] == 0:
        return np.full(a.shape[:-2], np.nan, dtype=a.dtype)
    return np.mean(a, axis=(-2, -1))


def rotation_metric(nx, ny, angles_rad, transpose: bool, maximize_divergence: bool = False):
    """Curl (or divergence) of the rotated field for every angle of ``angles_rad``.

    ``angles_rad``: float32 1D array; returns a float32 array of the same length. Angles are
    evaluated in batches so that memory stays at a few times ``2**22`` floats.
    """
    metric = divergence_metric if maximize_divergence else curl_metric
    if transpose:
        nx, ny = ny, nx
    cos, sin = np.cos(angles_rad), np.sin(angles_rad)  # once over the whole grid, as py4DSTEM
    batch = max(1, _BATCH_ELEMENTS // max(nx.size, 1))
    out = np.empty(len(angles_rad), dtype=np.float32)
    for start in range(0, len(angles_rad), batch):
        c = cos[start : start + batch, None, None]
        s = sin[start : start + batch, None, None]
        out[start : start + batch] = metric(
            c * nx[None] - s * ny[None], s * nx[None] + c * ny[None]
        )
    return out


@dataclass
class RotationSolution:
    """The result of :func:`solve_rotation`.

    ``rotation_rad`` keeps py4DSTEM's type (np.float32 from the grid, float64 when forced);
    ``angles_deg`` and the two metric curves (NaN where a branch was not evaluated) are what
    the rotation plot shows; ``metric`` is ``"curl"`` or ``"divergence"``.
    """

    rotation_deg: float
    rotation_rad: np.floating
    transpose: bool
    metric: str
    angles_deg: np.ndarray = field(repr=False)
    untransposed: np.ndarray = field(repr=False)
    transposed: np.ndarray = field(repr=False)


def solve_rotation(
    nx,
    ny,
    rotation_angles_deg=None,
    maximize_divergence: bool = False,
    force_com_rotation=None,
    force_com_transpose=None,
) -> RotationSolution:
    """Scan rotation and transpose that make the CoM field most curl-free (or divergent).

    ``nx``, ``ny``: descan-corrected CoM, float32 ``(Rx, Ry)``. Angles in degrees
    (default :data:`ROTATION_GRID_DEG`). As py4DSTEM:

    1. nothing forced: both branches over the grid; the global minimum of the curl (maximum
       of the divergence) wins, ties going to the untransposed branch;
    2. ``force_com_transpose`` only: the grid on that branch;
    3. ``force_com_rotation`` only: both branches at that angle; transposed wins only if its
       curl is strictly smaller (divergence strictly larger);
    4. both forced: no search.
    """
    metric_name = "divergence" if maximize_divergence else "curl"
    better = np.greater if maximize_divergence else np.less
    pick = np.argmax if maximize_divergence else np.argmin
    if force_com_rotation is not None:
        deg = float(force_com_rotation)
        rad = np.deg2rad(deg)
        angles = np.array([deg], dtype=np.float32)
        curves = {False: np.full(1, np.nan, np.float32), True: np.full(1, np.nan, np.float32)}
        if force_com_transpose is not None:
            transpose = bool(force_com_transpose)
        else:
            metric = divergence_metric if maximize_divergence else curl_metric
            for t in (False, True):
                curves[t][0] = metric(*rotate_com(nx, ny, rad, t))
            transpose = bool(better(curves[True][0], curves[False][0]))
        return RotationSolution(
            deg, rad, transpose, metric_name, angles, curves[False], curves[True]
        )
    grid = ROTATION_GRID_DEG if rotation_angles_deg is None else rotation_angles_deg
    angles = np.asarray(grid, dtype=np.float32).ravel()
    rads = np.deg2rad(angles)
    branches = (False, True) if force_com_transpose is None else (bool(force_com_transpose),)
    curves = {t: np.full(angles.shape, np.nan, np.float32) for t in (False, True)}
    for t in branches:
        curves[t] = rotation_metric(nx, ny, rads, t, maximize_divergence)
    best = {t: int(pick(curves[t])) for t in branches}
    if len(branches) == 1:
        transpose = branches[0]
    else:  # ties favour the untransposed branch
        transpose = bool(better(curves[True][best[True]], curves[False][best[False]]))
    i = best[transpose]
    return RotationSolution(
        float(angles[i]), rads[i], transpose, metric_name, angles, curves[False], curves[True]
    )


# ---------------------------------------------------------------- Fourier integration


def padded_shape(scan_shape, padding_factor) -> tuple:
    """``round(scan_shape * padding_factor)`` (numpy half-to-even), as two ints."""
    return tuple(int(n) for n in np.round(np.asarray(scan_shape) * padding_factor))


def fourier_operators(shape, sampling, xp=np):
    """``(op_x, op_y)``, complex64 ``shape`` arrays: ``-0.25 i k_x / |k|^2`` (0 at ``k = 0``).

    ``sampling``: scan steps ``(dx, dy)`` (Å or pixels); ``k`` from ``fftfreq`` in float32.
    """
    kx = xp.fft.fftfreq(shape[0], d=float(sampling[0])).astype(xp.float32)
    ky = xp.fft.fftfreq(shape[1], d=float(sampling[1])).astype(xp.float32)
    kya, kxa = xp.meshgrid(ky, kx)
    k2 = kxa**2 + kya**2
    k2[0, 0] = np.inf
    k2 = 1 / k2
    return -1j * 0.25 * kxa * k2, -1j * 0.25 * kya * k2


def butterworth_envelope(shape, sampling, q_lowpass=None, q_highpass=None, order=2, xp=np):
    """Butterworth envelope (float32 ``shape``, unshifted FFT order) or None without cutoffs.

    ``q`` in Å⁻¹ (inverse scan units); a falsy cutoff (None or 0) is not applied.
    """
    if q_lowpass is None and q_highpass is None:
        return None
    qx = xp.fft.fftfreq(shape[0], float(sampling[0])).astype(xp.float32)
    qy = xp.fft.fftfreq(shape[1], float(sampling[1])).astype(xp.float32)
    qya, qxa = xp.meshgrid(qy, qx)
    q = xp.sqrt(qxa**2 + qya**2)
    env = xp.ones_like(q)
    if q_highpass:
        env *= 1 - 1 / (1 + (q / float(q_highpass)) ** (2 * order))
    if q_lowpass:
        env *= 1 / (1 + (q / float(q_lowpass)) ** (2 * order))
    return env


def residual(obj, com_x, com_y, sampling, norm):
    """``(r_x, r_y, error)``: the residual ``com - grad(obj)`` on the scan region and its NMSE.

    ``obj``: padded float32 object; ``com_x``, ``com_y``: float32 ``(Rx, Ry)`` sitting at the
    top-left of the canvas; ``grad`` is py4DSTEM's central difference with periodic wrap,
    ``(obj[i-1] - obj[i+1]) / (2 dx)``, i.e. minus the usual one (the fixed point of the
    iteration is ``grad(obj) = com``). ``error = mean(r_x^2 + r_y^2) / norm`` over the scan
    region, float32; ``norm = mean(com_x^2 + com_y^2)``.
    """
    xp = array_module(obj)
    rx_, ry_ = com_x.shape
    gx = (xp.roll(obj, 1, axis=0) - xp.roll(obj, -1, axis=0)) / (2 * float(sampling[0]))
    gy = (xp.roll(obj, 1, axis=1) - xp.roll(obj, -1, axis=1)) / (2 * float(sampling[1]))
    for g, com in ((gx, com_x), (gy, com_y)):
        g[:rx_, :ry_] += com
        g[rx_:, :] = 0
        g[:, ry_:] = 0
    inside = gx[:rx_, :ry_] ** 2 + gy[:rx_, :ry_] ** 2
    return gx, gy, xp.mean(inside.ravel()) / norm


def error_norm(com_x, com_y):
    """``mean(com_x^2 + com_y^2)`` (float32), the denominator of the NMSE."""
    xp = array_module(com_x)
    return xp.mean(com_x.ravel() ** 2 + com_y.ravel() ** 2)


def adjoint(r_x, r_y, op_x, op_y):
    """The update ``real(ifft2(fft2(r_x) op_x + fft2(r_y) op_y))``: ``(pi / 2)`` times the
    least-squares potential of the residual. float64 on the CPU, float32 on the GPU."""
    xp = array_module(r_x)
    if xp is np:  # numpy 1.x (py4DSTEM's) transforms float32 in double precision
        r_x, r_y = r_x.astype(np.float64), r_y.astype(np.float64)
    return xp.real(xp.fft.ifft2(xp.fft.fft2(r_x) * op_x + xp.fft.fft2(r_y) * op_y))


def constrain(obj, gaussian_sigma_px=None, envelope=None):
    """py4DSTEM's object constraints in order: Gaussian smoothing (reflect mode, ``sigma`` in
    pixels of the canvas), then the Butterworth ``envelope`` applied around the mean.
    Returns a new float32 array."""
    xp = array_module(obj)
    if gaussian_sigma_px is not None:
        if xp is np:
            from scipy.ndimage import gaussian_filter
        else:  # pragma: no cover - GPU only
            from cupyx.scipy.ndimage import gaussian_filter
        obj = gaussian_filter(obj, gaussian_sigma_px)
    if envelope is not None:
        mean = xp.mean(obj, axis=(-2, -1), keepdims=True)
        centred = obj - mean
        if xp is np:
            centred = centred.astype(np.float64)
        obj = xp.real(xp.fft.ifft2(xp.fft.fft2(centred) * envelope) + mean)
    return obj.astype(xp.float32, copy=False)


@dataclass
class IntegrationResult:
    """``obj``: the padded object (float32, numpy or cupy); ``error``: see
    :func:`fourier_integrate`; ``step``: the final step size; ``errors``: the error of the
    object each applied update started from; ``iterations``: cropped host copies of the object
    after each applied update (when stored); ``n_run``: iterations run (kept updates and
    rejected ones); ``stopped_by_step``: whether the step fell below the stopping criterion
    (else ``max_iter`` ended the run)."""

    obj: object
    error: float
    step: float
    errors: list
    iterations: list
    n_run: int = 0
    stopped_by_step: bool = False


def fourier_integrate(
    obj,
    com_x,
    com_y,
    sampling,
    op_x,
    op_y,
    *,
    error=np.inf,
    step=0.5,
    max_iter=64,
    stopping_criterion=1e-6,
    backtrack=True,
    gaussian_sigma_px=None,
    envelope=None,
    store_iterations=False,
    callback=None,
) -> IntegrationResult:
    """Iterative Fourier integration of the CoM field ``(com_x, com_y)`` (py4DSTEM's DPC loop).

    Each of up to ``max_iter`` iterations (stopping once ``step < stopping_criterion``):
    residual and error of the current object (:func:`residual`); unless rejected, the update
    ``obj + step * adjoint(residual)`` followed by :func:`constrain`.

    Backtracking (``backtrack=True``) really reverts, unlike py4DSTEM 0.14.18 (B21, whose
    "revert" restores the object it already has, so the first error increase ends its run):
    when the error of the current object exceeds the last accepted error, the object goes
    back to the last accepted one (the one before the offending update), the step is halved
    and that update is retried at once from there. After the loop, the final object's error
    is evaluated and, if it is worse, the last accepted object is returned instead; ``error``
    is then the error of the returned object (the lowest seen). Without backtracking
    ``error`` is, as in py4DSTEM, the error of the object before the last update.

    ``obj`` is not modified. ``callback(i)`` is called after every iteration ``i`` (kept or
    rejected); the result says how many ran and why the run ended.
    """
    obj = obj.copy()
    rx_, ry_ = com_x.shape
    norm = error_norm(com_x, com_y)
    errors, iterations = [], []
    accepted = accepted_update = None
    n_run = 0
    for i in range(int(max_iter)):
        if step < stopping_criterion:
            break
        n_run = i + 1
        r_x, r_y, err = residual(obj, com_x, com_y, sampling, norm)
        err = float(err)
        if backtrack and err > error and accepted is not None:
            step /= 2
            obj = constrain(_step(accepted, accepted_update, step), gaussian_sigma_px, envelope)
        else:
            error = err
            update = adjoint(r_x, r_y, op_x, op_y)
            if backtrack:
                accepted, accepted_update = obj, update
            obj = constrain(_step(obj, update, step), gaussian_sigma_px, envelope)
            errors.append(err)
            if store_iterations:
                iterations.append(to_host(obj[:rx_, :ry_]).copy())
        if callback is not None:
            callback(i)
    if backtrack and accepted is not None:
        final = float(residual(obj, com_x, com_y, sampling, norm)[2])
        if final > error:
            obj = accepted
        else:
            error = final
    return IntegrationResult(
        obj, error, step, errors, iterations, n_run, bool(step < stopping_criterion)
    )


def _step(obj, update, step):
    """``obj + step * update`` rounded to float32 (py4DSTEM's in-place float32 update)."""
    xp = array_module(obj)
    return (obj + step * update).astype(xp.float32, copy=False)


def integrate_on_canvas(
    obj,
    com_x,
    com_y,
    sampling,
    xp=np,
    *,
    gaussian_sigma=None,
    butterworth: bool = True,
    q_lowpass=None,
    q_highpass=None,
    butterworth_order=2,
    **loop,
) -> IntegrationResult:
    """:func:`fourier_integrate` of ``(com_x, com_y)`` (float32 ``(Rx, Ry)``) into the padded
    object ``obj`` (float32 canvas; host arrays are moved to ``xp``), with the operators and
    filters of the canvas: ``gaussian_sigma`` in scan units (Å or pixels; None: no Gaussian),
    the Butterworth envelope of ``q_lowpass``/``q_highpass`` (Å⁻¹) when ``butterworth``.
    ``loop``: ``error``, ``step``, ``max_iter``, ... of :func:`fourier_integrate`."""
    shape = tuple(obj.shape)
    ops = fourier_operators(shape, sampling, xp)
    envelope = None
    if butterworth:
        envelope = butterworth_envelope(
            shape, sampling, q_lowpass, q_highpass, butterworth_order, xp
        )
    sigma = None if gaussian_sigma is None else float(gaussian_sigma) / sampling[0]
    return fourier_integrate(
        xp.asarray(obj),
        xp.asarray(com_x),
        xp.asarray(com_y),
        sampling,
        *ops,
        gaussian_sigma_px=sigma,
        envelope=envelope,
        **loop,
    )
