"""Iterative differential phase contrast (DPC): py4DSTEM's ``DPC`` class on lazy datacubes.

``DPC(datacube, energy=...).preprocess().reconstruct().visualize()`` as in py4DSTEM 0.14.18's
DPC tutorial. The datacube is read once, by the lazy centre-of-mass pass
(:func:`stem4d_dask.phase.center_of_mass`); everything after it works on ``(Rx, Ry)`` fields
in memory (the descan fit, the rotation search, the Fourier integration). Results are
``(Rx, Ry)`` DataArrays with the datacube's scan coords.

Differences from py4DSTEM 0.14.18 (see ``reference/py4dstem-behaviour.md`` §7, B20, B21):

- the datacube is never modified (py4DSTEM's loop CoM multiplies ``dp_mask`` into a float32
  datacube in place) and never loaded whole; ``dp_mask`` may be boolean or real weights;
- a ``'mrad'`` calibration without a beam energy raises ``ValueError`` naming ``energy``
  (py4DSTEM: ``AttributeError``); the energy defaults to ``datacube.attrs['energy']``;
- backtracking really reverts to the object before the update that raised the error (py4DSTEM's
  revert is a no-op, so its first error increase ends the run keeping the worse object), and
  with ``backtrack=True`` the returned object is the best one seen and ``error`` its error;
- ``fit_function='constant'`` averages the finite CoM values only (py4DSTEM's plain mean is
  NaN, hence a zero field, as soon as one pattern is empty);
- ``preprocess`` clears any previous reconstruction; the object stays float32 throughout
  (py4DSTEM's Butterworth constraint turns it into float64 on the CPU).

Like py4DSTEM, ``fit_function=None`` uses the measured CoM as the fitted one, so the
normalised CoM is identically zero (a warning says so when ``verbose``), and the phase has no
2π factor: with calibrated units it is ``phase / (2 pi)``.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from .. import coords as cal
from ..backend import device_module, to_host
from ..calibration import electron_wavelength_angstrom
from ..checks import detector_weights, optional_positive, positive, real
from ..coords import align
from ..datacube import Q_DIMS, R_DIMS, check_datacube
from ..progress import compute
from . import integrate, plots
from .com import center_of_mass
from .fit import check_fit_function, fit_descan

_PLOT_COM = ("default", "all", True, False, None)


class NotComputedError(AttributeError):
    """A result asked for before the step that computes it."""


class DPC:
    """Iterative DPC reconstruction (py4DSTEM's ``process.phase.DPC``).

    Parameters
    ----------
    datacube : datacube DataArray ``(Rx, Ry, Qx, Qy)`` (see :func:`stem4d_dask.from_array`),
        lazy or not; may be None when ``preprocess(force_com_measured=...)`` is used.
    energy : beam energy in eV; needed for a ``'mrad'`` detector calibration. Defaults to
        ``datacube.attrs['energy']``.
    initial_object_guess : optional ``(Rx, Ry)`` starting phase.
    verbose : warnings about calibrations and the rotation found, CoM progress bar.
    device : ``'cpu'`` (numpy) or ``'gpu'`` (cupy, imported here, for the reconstruction).
    """

    def __init__(self, datacube=None, *, energy=None, initial_object_guess=None,
                 verbose: bool = True, device: str = "cpu"):
        if datacube is not None:
            try:
                datacube = check_datacube(datacube)
            except TypeError as err:
                raise ValueError(str(err)) from None
        self._datacube = datacube
        self._energy = optional_positive(energy, "energy")
        self._object_phase_guess = initial_object_guess
        self._verbose = bool(verbose)
        self._device = device
        self._xp = device_module(device, "DPC(device='gpu')")
        self._preprocessed = False
        self.figures = {}

    # ------------------------------------------------------------------ preprocess

    def preprocess(self, dp_mask=None, padding_factor=2, rotation_angles_deg=None,
                   maximize_divergence: bool = False, fit_function="plane",
                   force_com_rotation=None, force_com_transpose=None, force_com_shifts=None,
                   force_com_measured=None, plot_center_of_mass="default",
                   plot_rotation: bool = True, vectorized_com_calculation=True, **kwargs):
        """Centre of mass, descan fit, scan rotation and transpose; returns ``self``.

        Reads the datacube once: the lazy :func:`center_of_mass` pass is computed here
        (its result, two ``(Rx, Ry)`` fields, is small); nothing else touches the datacube.

        Parameters
        ----------
        dp_mask : ``(Qx, Qy)`` boolean or real detector weights multiplied into every pattern.
        padding_factor : real >= 1; the object is reconstructed on a canvas of
            ``round((Rx, Ry) * padding_factor)`` pixels, the scan at its top-left corner.
        rotation_angles_deg : 1D grid of rotations searched, degrees (default -89..89 by 1).
        maximize_divergence : maximise the divergence instead of minimising the curl.
        fit_function : descan model: ``'plane'``, ``'parabola'``, ``'bezier_two'``,
            ``'constant'`` or None (fitted = measured: zero signal).
        force_com_rotation : degrees; skip the rotation search.
        force_com_transpose : bool; skip the transpose decision.
        force_com_shifts : ``(fitted_x, fitted_y)``, detector pixels, scalars or ``(Rx, Ry)``.
        force_com_measured : ``(com_x, com_y)``, ``(Rx, Ry)`` detector pixels from the corner;
            no CoM pass (and no datacube needed: pixel calibrations then).
        plot_center_of_mass : ``'default'`` (corrected CoM), ``'all'`` (measured, normalised,
            corrected) or False; plot_rotation : the curl/divergence curve. Figures go to
            ``self.figures`` and are shown only inside Jupyter.
        vectorized_com_calculation : accepted for py4DSTEM compatibility; ignored.
        kwargs : ``figsize``, ``cmap`` for the CoM figure.

        Sets ``com_measured_x/_y``, ``com_fitted_x/_y`` (detector pixels),
        ``com_normalized_x/_y``, ``com_x/_y`` (reciprocal units: Å⁻¹ or pixels),
        ``rotation_deg``, ``transpose`` and ``rotation_curve``.
        """
        dp_mask, force_com_shifts, force_com_measured = self._aligned(
            dp_mask, force_com_shifts, force_com_measured)
        shape = self._check_preprocess(dp_mask, padding_factor, rotation_angles_deg,
                                       fit_function, force_com_rotation, force_com_transpose,
                                       force_com_shifts, force_com_measured,
                                       plot_center_of_mass)
        self._calibrate(shape)
        measured = self._measure_com(dp_mask, force_com_measured)
        self._descan(measured, fit_function, force_com_shifts)
        self._solve_rotation(rotation_angles_deg, maximize_divergence, force_com_rotation,
                             force_com_transpose)
        self._setup_object(padding_factor)
        self._preprocessed = True
        self._plot_preprocess(plot_center_of_mass, plot_rotation, kwargs)
        return self

    def _check_preprocess(self, dp_mask, padding_factor, rotation_angles_deg, fit_function,
                          force_com_rotation, force_com_transpose, force_com_shifts,
                          force_com_measured, plot_center_of_mass):
        """Validate everything before any computing; returns the scan shape ``(Rx, Ry)``."""
        check_fit_function(fit_function)
        if self._datacube is None and force_com_measured is None:
            raise ValueError("datacube: preprocess() needs a datacube or force_com_measured")
        shape = (tuple(self._datacube.shape[:2]) if self._datacube is not None
                 else _field_pair(force_com_measured, "force_com_measured", None)[0].shape)
        if force_com_measured is not None:
            _field_pair(force_com_measured, "force_com_measured", shape)
        if force_com_shifts is not None:
            _field_pair(force_com_shifts, "force_com_shifts", shape, scalars=True)
        if dp_mask is not None and self._datacube is not None:
            detector_weights(dp_mask, self._datacube, "dp_mask")
        _check_padding(padding_factor)
        if rotation_angles_deg is not None:
            angles = np.asarray(rotation_angles_deg, dtype=float)
            if angles.ndim > 1 or angles.size == 0 or not np.isfinite(angles).all():
                raise ValueError("rotation_angles_deg must be a non-empty 1D array of finite "
                                 f"angles (degrees), got {rotation_angles_deg!r}")
        if force_com_rotation is not None:
            real(force_com_rotation, "force_com_rotation")
        if force_com_transpose is not None and not isinstance(force_com_transpose,
                                                              bool | np.bool_):
            raise ValueError(f"force_com_transpose must be a bool or None, "
                             f"got {force_com_transpose!r}")
        if not any(plot_center_of_mass is p or plot_center_of_mass == p for p in _PLOT_COM):
            raise ValueError("plot_center_of_mass must be 'default', 'all' or False, "
                             f"got {plot_center_of_mass!r}")
        if self._object_phase_guess is not None:
            guess = np.asarray(self._object_phase_guess)
            if guess.shape != shape:
                raise ValueError(f"initial_object_guess must have the scan shape {shape}, "
                                 f"got {guess.shape}")
        return shape

    def _aligned(self, dp_mask, force_com_shifts, force_com_measured):
        """DataArray arguments put in the datacube's frame by dim name and coords (a pair's
        DataArrays without a datacube: transposed to ``(Rx, Ry)``)."""
        dc = self._datacube

        def scan(value, name):
            if isinstance(value, xr.DataArray) and dc is None:
                return align(value, xr.Dataset(coords=value.coords), R_DIMS, name)
            return align(value, dc, R_DIMS, name)

        def pair(values, name):
            if values is None or isinstance(values, str | bytes) or not hasattr(values,
                                                                              "__len__"):
                return values
            return type(values)(scan(v, name) for v in values) if len(values) == 2 else values

        if dc is not None and isinstance(dp_mask, xr.DataArray):
            dp_mask = align(dp_mask, dc, Q_DIMS, "dp_mask")
        if isinstance(self._object_phase_guess, xr.DataArray):
            self._object_phase_guess = scan(self._object_phase_guess, "initial_object_guess")
        return (dp_mask, pair(force_com_shifts, "force_com_shifts"),
                pair(force_com_measured, "force_com_measured"))

    def _calibrate(self, shape):
        """Scan sampling (Å or pixels) and reciprocal sampling (Å⁻¹ or pixels), from the
        datacube's coords (their step: a stepped selection of the scan or the detector has
        larger pixels). DPC needs regular, square pixels in both spaces; anything else raises
        ``ValueError`` saying what is wrong."""
        dc = self._datacube
        attrs = dc.attrs if dc is not None else {}
        energy = self._energy if self._energy is not None else attrs.get("energy")
        if dc is None:
            r_units, r_size, q_units, q_size = "pixels", 1.0, "pixels", 1.0
        else:
            r_units, r_size = cal.units(dc, "r"), cal.pixel_size(dc, "r", "DPC")
            q_units, q_size = cal.units(dc, "q"), cal.pixel_size(dc, "q", "DPC")
        self._grid_scan_shape = shape
        if r_units == "pixels":
            self._warn("Iterative reconstruction will not be quantitative unless you specify "
                       "real-space calibrations in 'A'")
            self._scan_sampling, self._scan_units = (r_size, r_size), ("pixels", "pixels")
        else:
            size = r_size * 10 if r_units == "nm" else r_size
            self._scan_sampling, self._scan_units = (size, size), ("A", "A")
        wavelength = electron_wavelength_angstrom(energy) if energy is not None else None
        if q_units == "pixels":
            self._warn("Iterative reconstruction will not be quantitative unless you specify "
                       "appropriate reciprocal-space calibrations")
            recip, units, angular = q_size, "pixels", q_size
        elif q_units == "A^-1":
            recip, units = q_size, "A^-1"
            angular = q_size * wavelength * 1e3 if wavelength is not None else None
        else:  # mrad
            if wavelength is None:
                raise ValueError("energy: a detector calibrated in 'mrad' needs the beam energy "
                                 "(eV) to convert to A^-1; pass DPC(energy=...) or set "
                                 "datacube.attrs['energy']")
            recip, units, angular = q_size / wavelength / 1e3, "A^-1", q_size
        self._reciprocal_sampling, self._reciprocal_units = (recip, recip), (units, units)
        self._angular_sampling = None if angular is None else (angular, angular)
        self._coords = _scan_coords(dc, shape)

    def _measure_com(self, dp_mask, force_com_measured):
        """float32 ``(com_x, com_y)``, detector pixels from the corner: one pass over the data."""
        if force_com_measured is not None:
            cx, cy = (np.asarray(a, dtype=np.float32) for a in force_com_measured)
            return cx, cy
        ds = center_of_mass(self._datacube, mask=dp_mask)
        cx, cy = compute(ds["com_x"].data, ds["com_y"].data, progress=self._verbose)
        return np.asarray(cx, dtype=np.float32), np.asarray(cy, dtype=np.float32)

    def _descan(self, measured, fit_function, force_com_shifts):
        """Fitted descan and the normalised CoM ``nan_to_num(measured - fitted) * sampling``."""
        mx, my = measured
        if force_com_shifts is not None:
            fx, fy = (np.broadcast_to(np.asarray(s, dtype=np.float32), mx.shape).copy()
                      for s in force_com_shifts)
        else:
            if fit_function is None:
                self._warn("fit_function=None: the fitted CoM is the measured one, so the "
                           "normalised CoM (and the phase) is zero")
            fx, fy = (f.astype(np.float32) for f in fit_descan(mx, my, fit_function))
        recip = self._reciprocal_sampling
        self._com_measured_x, self._com_measured_y = mx, my
        self._com_fitted_x, self._com_fitted_y = fx, fy
        self._com_normalized_x = np.nan_to_num(mx - fx) * float(recip[0])
        self._com_normalized_y = np.nan_to_num(my - fy) * float(recip[1])

    def _solve_rotation(self, angles, maximize_divergence, force_rotation, force_transpose):
        sol = integrate.solve_rotation(self._com_normalized_x, self._com_normalized_y, angles,
                                       bool(maximize_divergence), force_rotation,
                                       force_transpose)
        self._rotation = sol
        self._rotation_best_rad = sol.rotation_rad
        self._rotation_best_transpose = sol.transpose
        self._com_x, self._com_y = integrate.rotate_com(
            self._com_normalized_x, self._com_normalized_y, sol.rotation_rad, sol.transpose)
        self._warn(f"Best fit rotation = {sol.rotation_deg:.0f} degrees.")
        if sol.transpose:
            self._warn("Diffraction intensities should be transposed.")

    def _setup_object(self, padding_factor):
        """The padded canvas (float32 zeros, the guess at the top-left); clears old results."""
        rx, ry = self._grid_scan_shape
        self._padded_shape = integrate.padded_shape((rx, ry), padding_factor)
        initial = np.zeros(self._padded_shape, dtype=np.float32)
        if self._object_phase_guess is not None:
            initial[:rx, :ry] = np.asarray(self._object_phase_guess, dtype=np.float32)
        self._padded_object_phase_initial = initial
        self._padded_object_phase = initial.copy()
        for name in ("error", "error_iterations", "object_phase_iterations", "_step_size",
                     "_object_phase"):
            self.__dict__.pop(name, None)

    # ------------------------------------------------------------------ reconstruct

    def reconstruct(self, reset=None, max_iter: int = 64, step_size=None,
                    stopping_criterion: float = 1e-6, backtrack: bool = True,
                    progress_bar: bool = True, gaussian_filter_sigma=None,
                    gaussian_filter: bool = True, butterworth_filter: bool = True,
                    q_lowpass=None, q_highpass=None, butterworth_order=2,
                    store_iterations: bool = False):
        """Iterative Fourier integration of the corrected CoM field; returns ``self``.

        Gradient descent on ``|grad(phi) - com|^2`` preconditioned by the inverse Laplacian
        (py4DSTEM's algorithm, see :func:`integrate.fourier_integrate`), on the padded canvas.

        Parameters
        ----------
        reset : True restarts from the initial object; None continues a previous run (with a
            warning) or starts; False continues.
        max_iter : iterations (int >= 0); step_size : initial step (default: the previous
            step, else 0.5); stopping_criterion : stop once the step falls below it.
        backtrack : on an error increase, revert to the object before the offending update,
            halve the step and retry (a real revert, unlike py4DSTEM 0.14.18; see the module
            docstring). With False, results equal py4DSTEM's.
        progress_bar : a one-line progress display on stderr.
        gaussian_filter_sigma : Å (scan units); applied when ``gaussian_filter`` is True.
        q_lowpass, q_highpass : Butterworth cutoffs in Å⁻¹ (inverse scan units), applied when
            ``butterworth_filter`` is True; butterworth_order : its order (> 0).
        store_iterations : keep a copy of the object after every update
            (``object_phase_iterations``).

        Sets ``object_phase`` (``(Rx, Ry)`` DataArray), ``error`` (float, normalised mean
        squared error of the CoM fit) and ``error_iterations`` (list of floats).
        """
        if not self._preprocessed:
            raise NotComputedError("reconstruct() needs preprocess() first")
        self._check_reconstruct(reset, max_iter, step_size, stopping_criterion,
                                gaussian_filter_sigma, q_lowpass, q_highpass,
                                butterworth_order)
        self._reset_state(reset, step_size, store_iterations)
        xp = self._xp
        sampling = self._scan_sampling
        ops = integrate.fourier_operators(self._padded_shape, sampling, xp)
        envelope = None
        if butterworth_filter:
            envelope = integrate.butterworth_envelope(self._padded_shape, sampling, q_lowpass,
                                                      q_highpass, butterworth_order, xp)
        sigma = None
        if gaussian_filter and gaussian_filter_sigma is not None:
            sigma = float(gaussian_filter_sigma) / sampling[0]
        bar = _ProgressLine(int(max_iter), "Reconstructing phase") if progress_bar else None
        result = integrate.fourier_integrate(
            xp.asarray(self._padded_object_phase), xp.asarray(self._com_x),
            xp.asarray(self._com_y), sampling, *ops, error=self.error, step=self._step_size,
            max_iter=max_iter, stopping_criterion=stopping_criterion, backtrack=backtrack,
            gaussian_sigma_px=sigma, envelope=envelope, store_iterations=store_iterations,
            callback=None if bar is None else bar.update)
        if bar is not None:
            bar.close()
        self._store_result(result, store_iterations, stopping_criterion)
        return self

    def _check_reconstruct(self, reset, max_iter, step_size, stopping_criterion,
                           gaussian_filter_sigma, q_lowpass, q_highpass, butterworth_order):
        if reset not in (None, True, False):
            raise ValueError(f"reset must be True, False or None, got {reset!r}")
        if (isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer)
                or max_iter < 0):
            raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}")
        for name, value in (("step_size", step_size),
                            ("gaussian_filter_sigma", gaussian_filter_sigma),
                            ("q_lowpass", q_lowpass), ("q_highpass", q_highpass)):
            optional_positive(value, name)
        if real(stopping_criterion, "stopping_criterion") < 0:
            raise ValueError(f"stopping_criterion must be >= 0, got {stopping_criterion!r}")
        positive(butterworth_order, "butterworth_order")

    def _reset_state(self, reset, step_size, store_iterations):
        """py4DSTEM's restart rules for error, history, step and object."""
        started = "error" in self.__dict__
        if reset is True or not started:
            self.error = np.inf
            self.error_iterations = []
            self._padded_object_phase = self._padded_object_phase_initial.copy()
            self._step_size = 0.5
        elif reset is None:
            warnings.warn("Continuing reconstruction from previous result. Use reset=True for "
                          "a fresh start.", UserWarning, stacklevel=3)
        if step_size is not None:
            self._step_size = float(step_size)
        if store_iterations and (reset or "object_phase_iterations" not in self.__dict__):
            self.object_phase_iterations = []

    def _store_result(self, result, store_iterations, stopping_criterion):
        rx, ry = self._grid_scan_shape
        self._padded_object_phase = to_host(result.obj).astype(np.float32)
        self._object_phase = self._padded_object_phase[:rx, :ry].copy()
        self.error = float(result.error)
        self._step_size = float(result.step)
        self.error_iterations.extend(float(e) for e in result.errors)
        if store_iterations:
            self.object_phase_iterations.extend(result.iterations)
        if self._step_size < stopping_criterion:
            self._warn(f"Step-size has decreased below stopping criterion {stopping_criterion}.")

    # ------------------------------------------------------------------ results

    def _field(self, values, name, units, long_name):
        return xr.DataArray(np.asarray(values), dims=R_DIMS, coords=self._coords, name=name,
                            attrs={"units": units, "long_name": long_name})

    def _pre(self, attr):
        if not self._preprocessed:
            raise NotComputedError(f"{attr} is computed by preprocess(); call it first")
        return getattr(self, f"_{attr}")

    @property
    def com_measured_x(self) -> xr.DataArray:
        """Measured CoM along Qx, detector pixels from the corner pixel, float32 (Rx, Ry)."""
        return self._field(self._pre("com_measured_x"), "com_measured_x", "pixels",
                           "measured centre of mass, Qx")

    @property
    def com_measured_y(self) -> xr.DataArray:
        """Measured CoM along Qy, detector pixels from the corner pixel, float32 (Rx, Ry)."""
        return self._field(self._pre("com_measured_y"), "com_measured_y", "pixels",
                           "measured centre of mass, Qy")

    @property
    def com_fitted_x(self) -> xr.DataArray:
        """Fitted descan along Qx, detector pixels, float32 (Rx, Ry)."""
        return self._field(self._pre("com_fitted_x"), "com_fitted_x", "pixels",
                           "fitted descan, Qx")

    @property
    def com_fitted_y(self) -> xr.DataArray:
        """Fitted descan along Qy, detector pixels, float32 (Rx, Ry)."""
        return self._field(self._pre("com_fitted_y"), "com_fitted_y", "pixels",
                           "fitted descan, Qy")

    @property
    def com_normalized_x(self) -> xr.DataArray:
        """``nan_to_num(measured - fitted) * reciprocal sampling`` along Qx (Å⁻¹ or pixels)."""
        return self._field(self._pre("com_normalized_x"), "com_normalized_x",
                           self._reciprocal_units[0], "descan-corrected centre of mass, Qx")

    @property
    def com_normalized_y(self) -> xr.DataArray:
        """``nan_to_num(measured - fitted) * reciprocal sampling`` along Qy (Å⁻¹ or pixels)."""
        return self._field(self._pre("com_normalized_y"), "com_normalized_y",
                           self._reciprocal_units[1], "descan-corrected centre of mass, Qy")

    @property
    def com_x(self) -> xr.DataArray:
        """Corrected CoM along Rx (rotated and transposed into the scan frame), Å⁻¹ or pixels."""
        return self._field(self._pre("com_x"), "com_x", self._reciprocal_units[0],
                           "corrected centre of mass, Rx")

    @property
    def com_y(self) -> xr.DataArray:
        """Corrected CoM along Ry (rotated and transposed into the scan frame), Å⁻¹ or pixels."""
        return self._field(self._pre("com_y"), "com_y", self._reciprocal_units[1],
                           "corrected centre of mass, Ry")

    @property
    def rotation_deg(self) -> float:
        """Scan rotation found (or forced), degrees (py4DSTEM's ``_rotation_best_rad``)."""
        return float(self._pre("rotation").rotation_deg)

    @property
    def transpose(self) -> bool:
        """Whether the detector axes are exchanged (py4DSTEM's ``_rotation_best_transpose``)."""
        return bool(self._pre("rotation").transpose)

    @property
    def rotation_curve(self) -> xr.Dataset:
        """Curl (or divergence) against the rotation angle (dim ``angle``, degrees) for the
        ``untransposed`` and ``transposed`` branches; NaN where a branch was not evaluated.
        attrs: ``metric``, ``rotation_deg``, ``transpose``."""
        sol = self._pre("rotation")
        angle = xr.DataArray(sol.angles_deg, dims=("angle",), attrs={"units": "deg"})
        return xr.Dataset(
            {"untransposed": ("angle", sol.untransposed), "transposed": ("angle", sol.transposed)},
            coords={"angle": angle},
            attrs={"metric": sol.metric, "rotation_deg": float(sol.rotation_deg),
                   "transpose": int(sol.transpose)})

    @property
    def object_phase(self) -> xr.DataArray:
        """Reconstructed phase, float32 (Rx, Ry); ``phase / (2 pi)`` in calibrated units (no
        2π factor, as py4DSTEM), arbitrary offset."""
        if "_object_phase" not in self.__dict__:
            raise NotComputedError("object_phase is computed by reconstruct(); call it first")
        units = "rad/(2 pi)" if self._scan_units[0] == "A" and \
            self._reciprocal_units[0] == "A^-1" else "arbitrary"
        return self._field(self._object_phase, "object_phase", units, "DPC phase")

    @property
    def sampling(self):
        """Scan sampling ``(dx, dy)`` in Å (or pixels)."""
        return self._scan_sampling

    # ------------------------------------------------------------------ figures

    def _plot_preprocess(self, plot_center_of_mass, plot_rotation, kwargs):
        if plot_rotation and (self._rotation.angles_deg.size > 1
                              or np.isfinite(self._rotation.untransposed).any()):
            self.figures["rotation"] = plots.plot_rotation_curve(
                self.rotation_curve, figsize=kwargs.get("figsize", (8, 3)))
            plots.show(self.figures["rotation"])
        if plot_center_of_mass in ("default", "all", True):
            self.figures["center_of_mass"] = self._com_figure(plot_center_of_mass == "all",
                                                              **kwargs)
            plots.show(self.figures["center_of_mass"])

    def _com_figure(self, all_fields: bool, **kwargs):
        panels = [("Corrected CoM_x", self.com_x), ("Corrected CoM_y", self.com_y)]
        if all_fields:
            panels = [("CoM_x", self.com_measured_x), ("CoM_y", self.com_measured_y),
                      ("Normalized CoM_x", self.com_normalized_x),
                      ("Normalized CoM_y", self.com_normalized_y)] + panels
        return plots.plot_com_fields(panels, **kwargs)

    def show_complex_CoM(self, com=None, cbar=True, vmax=None, **kwargs):  # noqa: N802
        """Complex-colour image of ``com_x + i com_y`` (hue = direction, brightness =
        magnitude up to ``vmax``); ``com``: an optional ``(com_x, com_y)`` pair of
        ``(Rx, Ry)`` arrays instead. Stored in ``self.figures['complex_com']``; returns None
        (as py4DSTEM)."""
        cx, cy = (self.com_x, self.com_y) if com is None else (
            self._field(com[0], "com_x", "", ""), self._field(com[1], "com_y", "", ""))
        for ignored in ("scalebar", "pixelsize", "pixelunits"):  # py4DSTEM's; axes are calibrated
            kwargs.pop(ignored, None)
        self.figures["complex_com"] = plots.plot_complex(cx, cy, cbar=cbar, vmax=vmax, **kwargs)
        plots.show(self.figures["complex_com"])

    def visualize(self, fig=None, iterations_grid=None, plot_convergence: bool = True,
                  cbar: bool = True, **kwargs):
        """Figure of ``object_phase`` and the error per iteration (``fig``: draw into this
        Figure); ``iterations_grid=(rows, cols)``: stored iterations instead. Stored in
        ``self.figures['phase']``; returns ``self``."""
        if iterations_grid is not None:
            if "object_phase_iterations" not in self.__dict__:
                raise ValueError("iterations_grid: object iterations were not stored; run "
                                 "reconstruct(store_iterations=True)")
            its = [self._field(a, "object_phase", "", "") for a in self.object_phase_iterations]
            fig = plots.plot_phase_iterations(its, self.error_iterations if plot_convergence
                                              else None, grid=iterations_grid, fig=fig)
        else:
            fig = plots.plot_phase(self.object_phase, self.error_iterations, cbar=cbar,
                                   plot_convergence=plot_convergence, fig=fig,
                                   title=f"Normalized mean squared error: {self.error:.3e}",
                                   **kwargs)
        self.figures["phase"] = fig
        plots.show(fig)
        return self

    def save_figures(self, out_dir) -> list:
        """Write the figures available so far as PNGs into ``out_dir`` (created if needed):
        ``dpc_center_of_mass.png`` (measured, normalised and corrected CoM),
        ``dpc_rotation.png``, ``dpc_complex_com.png`` and, after ``reconstruct``,
        ``dpc_phase.png``. Returns the paths written."""
        if not self._preprocessed:
            raise NotComputedError("save_figures() needs preprocess() first")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        figs = {"dpc_center_of_mass": self._com_figure(True),
                "dpc_rotation": plots.plot_rotation_curve(self.rotation_curve),
                "dpc_complex_com": plots.plot_complex(self.com_x, self.com_y)}
        if "_object_phase" in self.__dict__:
            figs["dpc_phase"] = plots.plot_phase(
                self.object_phase, self.error_iterations,
                title=f"Normalized mean squared error: {self.error:.3e}")
        paths = []
        for name, fig in figs.items():
            path = out / f"{name}.png"
            fig.savefig(path)
            paths.append(path)
        return paths

    def _warn(self, message):
        if self._verbose:
            warnings.warn(message, UserWarning, stacklevel=4)


# ---------------------------------------------------------------------- helpers

def _check_padding(padding_factor):
    if real(padding_factor, "padding_factor") < 1:
        raise ValueError(f"padding_factor must be >= 1 (the canvas must hold the scan), "
                         f"got {padding_factor!r}")


def _field_pair(pair, name, shape, scalars=False):
    """Two ``(Rx, Ry)`` real arrays (or, with ``scalars``, numbers) as float64 arrays."""
    if isinstance(pair, str | bytes) or not hasattr(pair, "__len__") or len(pair) != 2:
        raise ValueError(f"{name} must be a pair (x, y) of (Rx, Ry) arrays, got {type(pair)}")
    out = []
    for a in pair:
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        want = shape if shape is not None else arr.shape
        ok = arr.ndim == 2 and arr.shape == want or (scalars and arr.ndim == 0)
        if not ok:
            raise ValueError(f"{name} must be a pair of arrays of the scan shape "
                             f"{want if shape is not None else '(Rx, Ry)'}"
                             f"{' or scalars' if scalars else ''}, got shape {arr.shape}")
        out.append(arr.astype(np.float64))
    return out


def _scan_coords(dc, shape):
    if dc is not None:
        return {d: dc.coords[d] for d in R_DIMS}
    return {d: xr.DataArray(np.arange(n, dtype=float), dims=(d,), attrs={"units": "pixels"})
            for d, n in zip(R_DIMS, shape, strict=True)}


class _ProgressLine:
    """``Reconstructing phase: 12/64`` on stderr, redrawn at most every 0.2 s."""

    def __init__(self, total, desc):
        self.total, self.desc, self.last, self.done = total, desc, 0.0, 0

    def update(self, i):
        self.done = i + 1
        now = time.monotonic()
        if now - self.last > 0.2:
            self.last = now
            print(f"\r{self.desc}: {self.done}/{self.total} iter", end="", file=sys.stderr)

    def close(self):
        print(f"\r{self.desc}: {self.done}/{self.total} iter", file=sys.stderr)


__all__ = ["DPC", "NotComputedError"]
