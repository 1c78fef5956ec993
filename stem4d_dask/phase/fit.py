"""Descan models for the centre of mass: smooth surfaces fitted over the scan.

A scanned beam that is not perfectly descanned drifts across the detector as the probe moves;
DPC removes that drift by fitting a smooth surface to each measured CoM component over the
scan and subtracting it. The models are py4DSTEM's (``process.fit``), written in normalised
scan coordinates ``u = linspace(0, 1, Rx)`` (along ``Rx``) and ``v = linspace(0, 1, Ry)``:

- ``"plane"``: ``mx u + my v + b``
- ``"parabola"``: ``c0 + cx1 u + cy1 v + cx2 u^2 + cy2 v^2 + cxy u v``
- ``"bezier_two"``: ``sum_ij c_ij B_i(u) B_j(v)``, a 3x3 tensor-product quadratic Bernstein
  surface (``B0 = (1-t)^2``, ``B1 = 2t(1-t)``, ``B2 = t^2``)
- ``"constant"``: the mean over the finite pixels (also ``None``: no descan fit, only the
  mean beam position removed)

All three surfaces are linear in their coefficients, so they are fitted by ordinary linear
least squares over the finite pixels (NaN = empty pattern), which is what py4DSTEM's
Levenberg-Marquardt ``curve_fit`` from zero converges to (within ~1e-6).
"""

from __future__ import annotations

import numpy as np

FIT_FUNCTIONS = ("plane", "parabola", "bezier_two", "constant")


def check_fit_function(fit_function):
    """``fit_function`` if it is one of :data:`FIT_FUNCTIONS` or None, else ``ValueError``."""
    if fit_function is not None and fit_function not in FIT_FUNCTIONS:
        raise ValueError(
            f"fit_function must be one of {list(FIT_FUNCTIONS)} or None, got {fit_function!r}"
        )
    return fit_function


def design_matrix(shape, fit_function: str) -> np.ndarray:
    """``(Rx*Ry, n_coefficients)`` basis of a surface model on an ``(Rx, Ry)`` scan, float64.

    Rows follow the C order of the scan; columns are the model's basis functions of
    ``u = linspace(0, 1, Rx)``, ``v = linspace(0, 1, Ry)``.
    """
    u, v = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing="ij")
    u, v = u.ravel(), v.ravel()
    if fit_function == "plane":
        cols = [u, v, np.ones_like(u)]
    elif fit_function == "parabola":
        cols = [np.ones_like(u), u, u * u, v, v * v, u * v]
    elif fit_function == "bezier_two":
        bu = ((1 - u) ** 2, 2 * (1 - u) * u, u * u)
        bv = ((1 - v) ** 2, 2 * (1 - v) * v, v * v)
        cols = [bu[i] * bv[j] for i in range(3) for j in range(3)]
    else:
        raise ValueError(
            f"fit_function: no surface model {fit_function!r}; expected one of "
            f"{list(FIT_FUNCTIONS[:3])}"
        )
    return np.stack(cols, axis=1)


def fit_surface(values, fit_function: str, finite=None) -> np.ndarray:
    """Least-squares ``fit_function`` surface through the finite pixels of ``values``.

    ``values``: ``(Rx, Ry)`` array; ``finite``: boolean ``(Rx, Ry)`` selection of the pixels
    to fit (default: the finite ones). Returns the surface on the whole grid, float64.
    ``"constant"`` gives the mean of the selected pixels. Raises ``ValueError`` (naming
    ``fit_function``) when fewer pixels are selected than the model has coefficients.
    """
    values = np.asarray(values, dtype=np.float64)
    if finite is None:
        finite = np.isfinite(values)
    n = int(finite.sum())
    if fit_function == "constant":
        if n == 0:
            raise ValueError(
                "fit_function: 'constant' needs at least one finite centre of "
                "mass (every pattern is empty)"
            )
        return np.full(values.shape, values[finite].mean())
    basis = design_matrix(values.shape, fit_function)
    if n < basis.shape[1]:
        raise ValueError(
            f"fit_function: {fit_function!r} has {basis.shape[1]} coefficients "
            f"but only {n} scan positions have a finite centre of mass; use "
            "'constant' or None"
        )
    keep = finite.ravel()
    coef, *_ = np.linalg.lstsq(basis[keep], values.ravel()[keep], rcond=None)
    return (basis @ coef).reshape(values.shape)


def fit_descan(com_x, com_y, fit_function):
    """Descan surfaces ``(fitted_x, fitted_y)`` (float64, ``(Rx, Ry)``) for measured CoM fields.

    Pixels are fitted where both components are finite. ``"constant"`` is the mean over finite
    pixels (py4DSTEM takes a plain mean, which turns into NaN, then 0 everywhere, as soon as one
    pattern is empty). ``fit_function=None`` is "no descan fit": only the mean position of the
    beam on the detector is removed (the CoM is measured from the detector's corner, so some
    origin is needed), which is the ``"constant"`` model. py4DSTEM 0.14.18 instead returns the
    measured fields themselves, so that its corrected CoM is identically zero and its
    reconstruction divides 0 by 0 (a NaN error, a blank phase).
    """
    check_fit_function(fit_function)
    com_x = np.asarray(com_x, dtype=np.float64)
    com_y = np.asarray(com_y, dtype=np.float64)
    model = "constant" if fit_function is None else fit_function
    finite = np.isfinite(com_x) & np.isfinite(com_y)
    return (fit_surface(com_x, model, finite), fit_surface(com_y, model, finite))
