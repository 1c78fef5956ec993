"""Argument checks of :class:`stem4d_dask.phase.DPC`'s ``preprocess`` and ``reconstruct``.

Everything is checked before any computing, with a ``ValueError`` naming the parameter (the
general checks come from :mod:`stem4d_dask.checks`). DataArray arguments are first put in the
datacube's frame by dimension name and coordinates (:func:`aligned_arguments`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import coords as cal
from ..calibration import PhaseSamplings, phase_samplings
from ..checks import (
    checked_int,
    detector_weights,
    optional_positive,
    positive,
    real,
    scan_field_pair,
)
from ..coords import align
from ..datacube import Q_DIMS, R_DIMS, check_datacube
from .fit import check_fit_function

PLOT_COM = ("default", "all", True, False, None)


def dpc_datacube(datacube):
    """None, or ``datacube`` checked by :func:`stem4d_dask.datacube.check_datacube` (its
    ``TypeError`` for a non-datacube raised as a ``ValueError``)."""
    if datacube is None:
        return None
    try:
        return check_datacube(datacube)
    except TypeError as err:
        raise ValueError(str(err)) from None


def dpc_samplings(datacube, energy, warn=None) -> PhaseSamplings:
    """The scan and reciprocal samplings of ``datacube`` (None: 1 pixel each) at beam
    ``energy`` (eV; None: ``datacube.attrs['energy']``), from its coords (their step: a
    stepped selection of the scan or the detector has larger pixels), converted by
    :func:`stem4d_dask.calibration.phase_samplings` (``warn``: its callback). DPC needs regular,
    square pixels in both spaces, and an energy for an ``'mrad'`` detector; anything else
    raises ``ValueError`` saying what is wrong."""
    if energy is None and datacube is not None:
        energy = datacube.attrs.get("energy")
    if datacube is None:
        r_units, r_size, q_units, q_size = "pixels", 1.0, "pixels", 1.0
    else:
        r_units, r_size = cal.units(datacube, "r"), cal.pixel_size(datacube, "r", "DPC")
        q_units, q_size = cal.units(datacube, "q"), cal.pixel_size(datacube, "q", "DPC")
    return phase_samplings(
        r_units,
        r_size,
        q_units,
        q_size,
        energy,
        warn=warn,
        hint="; pass DPC(energy=...) or set datacube.attrs['energy']",
    )


def aligned_arguments(
    datacube, dp_mask, force_com_shifts, force_com_measured, initial_object_guess
):
    """``(dp_mask, force_com_shifts, force_com_measured, initial_object_guess)`` with each
    DataArray aligned to ``datacube`` (``(Qx, Qy)`` for the mask, ``(Rx, Ry)`` for the rest);
    without a datacube, a scan field's DataArrays are transposed to ``(Rx, Ry)``. Other
    values pass through unchanged."""

    def scan(value, name):
        if isinstance(value, xr.DataArray) and datacube is None:
            return align(value, xr.Dataset(coords=value.coords), R_DIMS, name)
        return align(value, datacube, R_DIMS, name)

    def pair(values, name):
        if values is None or isinstance(values, str | bytes) or not hasattr(values, "__len__"):
            return values
        return type(values)(scan(v, name) for v in values) if len(values) == 2 else values

    if datacube is not None and isinstance(dp_mask, xr.DataArray):
        dp_mask = align(dp_mask, datacube, Q_DIMS, "dp_mask")
    if isinstance(initial_object_guess, xr.DataArray):
        initial_object_guess = scan(initial_object_guess, "initial_object_guess")
    return (
        dp_mask,
        pair(force_com_shifts, "force_com_shifts"),
        pair(force_com_measured, "force_com_measured"),
        initial_object_guess,
    )


def preprocess_arguments(
    datacube,
    initial_object_guess,
    dp_mask,
    padding_factor,
    rotation_angles_deg,
    fit_function,
    force_com_rotation,
    force_com_transpose,
    force_com_shifts,
    force_com_measured,
    plot_center_of_mass,
) -> tuple:
    """``DPC.preprocess``'s arguments aligned (:func:`aligned_arguments`) and checked
    (:func:`check_preprocess`): ``(shape, dp_mask, force_com_shifts, force_com_measured,
    initial_object_guess)``."""
    dp_mask, force_com_shifts, force_com_measured, initial_object_guess = aligned_arguments(
        datacube, dp_mask, force_com_shifts, force_com_measured, initial_object_guess
    )
    shape = check_preprocess(
        datacube,
        initial_object_guess,
        dp_mask,
        padding_factor,
        rotation_angles_deg,
        fit_function,
        force_com_rotation,
        force_com_transpose,
        force_com_shifts,
        force_com_measured,
        plot_center_of_mass,
    )
    return shape, dp_mask, force_com_shifts, force_com_measured, initial_object_guess


def check_preprocess(
    datacube,
    initial_object_guess,
    dp_mask,
    padding_factor,
    rotation_angles_deg,
    fit_function,
    force_com_rotation,
    force_com_transpose,
    force_com_shifts,
    force_com_measured,
    plot_center_of_mass,
) -> tuple:
    """Check ``DPC.preprocess``'s arguments (aligned); returns the scan shape ``(Rx, Ry)``:
    the datacube's, else ``force_com_measured``'s."""
    check_fit_function(fit_function)
    if datacube is None and force_com_measured is None:
        raise ValueError("datacube: preprocess() needs a datacube or force_com_measured")
    shape = (
        tuple(datacube.shape[:2])
        if datacube is not None
        else scan_field_pair(force_com_measured, "force_com_measured")[0].shape
    )
    if force_com_measured is not None:
        scan_field_pair(force_com_measured, "force_com_measured", shape)
    if force_com_shifts is not None:
        scan_field_pair(force_com_shifts, "force_com_shifts", shape, scalars=True)
    if dp_mask is not None and datacube is not None:
        detector_weights(dp_mask, datacube, "dp_mask")
    if real(padding_factor, "padding_factor") < 1:
        raise ValueError(
            f"padding_factor must be >= 1 (the canvas must hold the scan), got {padding_factor!r}"
        )
    if rotation_angles_deg is not None:
        angles = np.asarray(rotation_angles_deg, dtype=float)
        if angles.ndim > 1 or angles.size == 0 or not np.isfinite(angles).all():
            raise ValueError(
                "rotation_angles_deg must be a non-empty 1D array of finite "
                f"angles (degrees), got {rotation_angles_deg!r}"
            )
    if force_com_rotation is not None:
        real(force_com_rotation, "force_com_rotation")
    if force_com_transpose is not None and not isinstance(force_com_transpose, bool | np.bool_):
        raise ValueError(f"force_com_transpose must be a bool or None, got {force_com_transpose!r}")
    if not any(plot_center_of_mass is p or plot_center_of_mass == p for p in PLOT_COM):
        raise ValueError(
            f"plot_center_of_mass must be 'default', 'all' or False, got {plot_center_of_mass!r}"
        )
    if initial_object_guess is not None:
        guess = np.asarray(initial_object_guess)
        if guess.shape != shape:
            raise ValueError(
                f"initial_object_guess must have the scan shape {shape}, got {guess.shape}"
            )
    return shape


def check_reconstruct(
    reset,
    max_iter,
    step_size,
    stopping_criterion,
    gaussian_filter_sigma,
    q_lowpass,
    q_highpass,
    butterworth_order,
) -> None:
    """Check ``DPC.reconstruct``'s arguments: ``reset`` True, False or None; ``max_iter`` an
    integer >= 0; ``step_size``, ``gaussian_filter_sigma`` (Å), ``q_lowpass``, ``q_highpass``
    (Å⁻¹) None or > 0; ``stopping_criterion`` >= 0; ``butterworth_order`` > 0."""
    if reset not in (None, True, False):
        raise ValueError(f"reset must be True, False or None, got {reset!r}")
    checked_int(max_iter, "max_iter", 0)
    for name, value in (
        ("step_size", step_size),
        ("gaussian_filter_sigma", gaussian_filter_sigma),
        ("q_lowpass", q_lowpass),
        ("q_highpass", q_highpass),
    ):
        optional_positive(value, name)
    real(stopping_criterion, "stopping_criterion", low=0)
    positive(butterworth_order, "butterworth_order")


def check_signal(com_x, com_y, max_iter) -> None:
    """``ValueError`` when there is something to reconstruct (``max_iter > 0``) but the corrected
    CoM is zero everywhere: its normalised error would be 0 / 0 (NaN) and its phase blank."""
    if max_iter and not (np.any(com_x) or np.any(com_y)):
        raise ValueError(
            "reconstruct(): the corrected centre of mass is zero everywhere, so there is no "
            "phase to integrate (force_com_shifts equal to the measured CoM, or patterns "
            "without signal?)"
        )
