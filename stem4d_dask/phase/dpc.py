"""Iterative differential phase contrast (DPC): py4DSTEM's ``DPC`` class on lazy datacubes.

``DPC(datacube, energy=...).preprocess().reconstruct().visualize()`` as in py4DSTEM 0.14.18's
DPC tutorial. The datacube is read once, by the lazy centre-of-mass pass
(:func:`stem4d_dask.phase.center_of_mass`); everything after it works on ``(Rx, Ry)`` fields
in memory (the descan fit, the rotation search, the Fourier integration). Results are
``(Rx, Ry)`` DataArrays with the datacube's scan coords.

Where it deliberately differs from py4DSTEM 0.14.18 (the datacube is never modified nor
loaded whole, ``ValueError`` for a missing ``energy``, a real backtracking revert, the
``'constant'`` fit over finite values, ``preprocess`` starting afresh, float32 throughout) is
listed, with the tests that show it, in ``docs/py4dstem-differences.md`` (rows ``DPC.*``).

Unlike py4DSTEM, ``fit_function=None`` means no descan fit (only the mean beam position is
removed; py4DSTEM's fitted CoM is the measured one, so its signal is zero and its error NaN).
Like py4DSTEM the phase has no 2π factor: with calibrated units ``object_phase`` is
``phase / (2 pi)`` (``phase_rad`` is in radians). Information (the rotation found, why the
iterations stopped) is printed when ``verbose``; warnings are kept for problems.
"""

from __future__ import annotations

import sys
import warnings
from functools import partial

import numpy as np
import xarray as xr

from ..backend import device_module, to_host
from ..checks import optional_positive
from ..datacube import R_DIMS
from ..progress import ProgressLine, compute, enabled
from . import integrate, plots
from .com import center_of_mass
from .dpc_checks import (
    check_reconstruct,
    check_signal,
    dpc_datacube,
    dpc_samplings,
    preprocess_arguments,
)
from .dpc_results import DPCResults, NotComputedError, ReconstructionError
from .fit import fit_descan


class DPC(DPCResults):
    """Iterative DPC reconstruction (py4DSTEM's ``process.phase.DPC``).

    Parameters
    ----------
    datacube : datacube DataArray ``(Rx, Ry, Qx, Qy)`` (see :func:`stem4d_dask.from_array`),
        lazy or not; may be None when ``preprocess(force_com_measured=...)`` is used.
    energy : beam energy in eV; needed for a ``'mrad'`` detector calibration. Defaults to
        ``datacube.attrs['energy']``.
    initial_object_guess : optional ``(Rx, Ry)`` starting phase.
    verbose : warnings about calibrations, the rotation found and why the iterations
        stopped (printed), CoM progress bar.
    device : ``'cpu'`` (numpy) or ``'gpu'`` (cupy, imported here, for the reconstruction).

    Results are the read-only properties of :class:`~stem4d_dask.phase.dpc_results.DPCResults`
    (``com_*``, ``rotation_deg``, ``transpose``, ``rotation_curve``, ``object_phase``,
    ``sampling``); figures go to ``self.figures``.
    """

    def __init__(
        self,
        datacube=None,
        *,
        energy=None,
        initial_object_guess=None,
        verbose: bool = True,
        device: str = "cpu",
    ):
        self._datacube = dpc_datacube(datacube)
        self._energy = optional_positive(energy, "energy")
        self._object_phase_guess = initial_object_guess
        self._verbose = bool(verbose)
        self._device = device
        self._xp = device_module(device, "DPC(device='gpu')")
        self._preprocessed = False
        self.figures = {}

    # ------------------------------------------------------------------ preprocess

    def preprocess(
        self,
        dp_mask=None,
        padding_factor=2,
        rotation_angles_deg=None,
        maximize_divergence: bool = False,
        fit_function="plane",
        force_com_rotation=None,
        force_com_transpose=None,
        force_com_shifts=None,
        force_com_measured=None,
        plot_center_of_mass="default",
        plot_rotation: bool = True,
        vectorized_com_calculation=True,
        **kwargs,
    ):
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
            ``'constant'`` or None (no descan fit: only the mean beam position is removed).
        force_com_rotation : degrees; skip the rotation search.
        force_com_transpose : bool; skip the transpose decision.
        force_com_shifts : ``(fitted_x, fitted_y)``, detector pixels, scalars or ``(Rx, Ry)``.
        force_com_measured : ``(com_x, com_y)``, ``(Rx, Ry)`` detector pixels from the corner;
            no CoM pass (and no datacube needed: pixel calibrations then).
        plot_center_of_mass : ``'default'`` (corrected CoM), ``'all'`` (measured, normalised,
            corrected) or False; plot_rotation : the curl/divergence curve. Figures go to
            ``self.figures``, through pyplot when it is imported (``plt.show()``).
        vectorized_com_calculation : accepted for py4DSTEM compatibility; ignored.
        kwargs : ``figsize``, ``cmap`` for the CoM figure.

        Sets ``com_measured_x/_y``, ``com_fitted_x/_y`` (detector pixels),
        ``com_normalized_x/_y``, ``com_x/_y`` (reciprocal units: Å⁻¹ or pixels),
        ``rotation_deg``, ``transpose`` and ``rotation_curve``.
        """
        shape, dp_mask, force_com_shifts, force_com_measured, self._object_phase_guess = (
            preprocess_arguments(
                self._datacube,
                self._object_phase_guess,
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
        )
        self._calibrate(shape)
        measured = self._measure_com(dp_mask, force_com_measured)
        self._descan(measured, fit_function, force_com_shifts)
        self._solve_rotation(
            rotation_angles_deg, maximize_divergence, force_com_rotation, force_com_transpose
        )
        self._setup_object(padding_factor)
        self._preprocessed = True
        for name, fig in plots.dpc_preprocess_figures(
            self, plot_center_of_mass, plot_rotation, kwargs
        ).items():
            self.figures[name] = fig
            plots.show(fig)
        return self

    def _calibrate(self, shape):
        """Scan sampling (Å or pixels) and reciprocal sampling (Å⁻¹ or pixels) from the
        datacube's coords (:func:`~stem4d_dask.phase.dpc_checks.dpc_samplings`), and the scan
        coords of the results."""
        dc = self._datacube
        self._grid_scan_shape = shape
        samplings = dpc_samplings(dc, self._energy, warn=partial(self._warn, stacklevel=6))
        self._scan_sampling, self._scan_units = samplings.scan, samplings.scan_units
        self._reciprocal_sampling, self._reciprocal_units, self._angular_sampling = (
            samplings.reciprocal,
            samplings.reciprocal_units,
            samplings.angular,
        )
        self._coords = (
            {d: dc.coords[d] for d in R_DIMS}
            if dc is not None
            else {
                d: xr.DataArray(np.arange(n, dtype=float), dims=(d,), attrs={"units": "pixels"})
                for d, n in zip(R_DIMS, shape, strict=True)
            }
        )

    def _measure_com(self, dp_mask, force_com_measured):
        """float32 ``(com_x, com_y)``, detector pixels from the corner: one pass over the data."""
        if force_com_measured is not None:
            return tuple(np.asarray(a, dtype=np.float32) for a in force_com_measured)
        ds = center_of_mass(self._datacube, mask=dp_mask)
        cx, cy = compute(ds["com_x"].data, ds["com_y"].data, progress=self._verbose)
        return tuple(np.asarray(to_host(c), dtype=np.float32) for c in (cx, cy))

    def _descan(self, measured, fit_function, force_com_shifts):
        """Fitted descan and the normalised CoM ``nan_to_num(measured - fitted) * sampling``."""
        mx, my = measured
        if force_com_shifts is not None:
            fx, fy = (
                np.broadcast_to(np.asarray(s, dtype=np.float32), mx.shape).copy()
                for s in force_com_shifts
            )
        else:
            fx, fy = (f.astype(np.float32) for f in fit_descan(mx, my, fit_function))
        recip = self._reciprocal_sampling
        self._com_measured_x, self._com_measured_y = mx, my
        self._com_fitted_x, self._com_fitted_y = fx, fy
        self._com_normalized_x = np.nan_to_num(mx - fx) * float(recip[0])
        self._com_normalized_y = np.nan_to_num(my - fy) * float(recip[1])

    def _solve_rotation(self, angles, maximize_divergence, force_rotation, force_transpose):
        sol = integrate.solve_rotation(
            self._com_normalized_x,
            self._com_normalized_y,
            angles,
            bool(maximize_divergence),
            force_rotation,
            force_transpose,
        )
        self._rotation = sol
        self._rotation_best_rad = sol.rotation_rad
        self._rotation_best_transpose = sol.transpose
        self._com_x, self._com_y = integrate.rotate_com(
            self._com_normalized_x, self._com_normalized_y, sol.rotation_rad, sol.transpose
        )
        self._info(f"Best fit rotation = {sol.rotation_deg:.0f} degrees.")
        if sol.transpose:
            self._info("Diffraction intensities should be transposed.")

    def _setup_object(self, padding_factor):
        """The padded canvas (float32 zeros, the guess at the top-left); clears old results."""
        rx, ry = self._grid_scan_shape
        self._padded_shape = integrate.padded_shape((rx, ry), padding_factor)
        initial = np.zeros(self._padded_shape, dtype=np.float32)
        if self._object_phase_guess is not None:
            initial[:rx, :ry] = np.asarray(self._object_phase_guess, dtype=np.float32)
        self._padded_object_phase_initial = initial
        self._padded_object_phase = initial.copy()
        for name in (
            "error",
            "error_iterations",
            "object_phase_iterations",
            "_step_size",
            "_object_phase",
            "stop_reason",
            "iterations_run",
            "iterations_kept",
        ):
            self.__dict__.pop(name, None)

    # ------------------------------------------------------------------ reconstruct

    def reconstruct(
        self,
        reset=None,
        max_iter: int = 64,
        step_size=None,
        stopping_criterion: float = 1e-6,
        backtrack: bool = True,
        progress_bar: bool | None = None,
        gaussian_filter_sigma=None,
        gaussian_filter: bool = True,
        butterworth_filter: bool = True,
        q_lowpass=None,
        q_highpass=None,
        butterworth_order=2,
        store_iterations: bool = False,
    ):
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
            halve the step and retry (a real revert, unlike py4DSTEM 0.14.18; see
            ``docs/py4dstem-differences.md``). With False, results equal py4DSTEM's.
        progress_bar : a one-line progress display on stderr (None: as
            :func:`stem4d_dask.progress.showing` says; off unless asked).
        gaussian_filter_sigma : Å (scan units); applied when ``gaussian_filter`` is True.
        q_lowpass, q_highpass : Butterworth cutoffs in Å⁻¹ (inverse scan units), applied when
            ``butterworth_filter`` is True; butterworth_order : its order (> 0).
        store_iterations : keep a copy of the object after every update
            (``object_phase_iterations``).

        Sets ``object_phase`` (``(Rx, Ry)`` DataArray), ``error`` (float, normalised mean
        squared error of the CoM fit), ``error_iterations`` (list of floats, one per kept
        update), and for this call ``iterations_run``, ``iterations_kept`` and ``stop_reason``
        (printed when ``verbose``: a normal stop is no warning). ``ValueError`` when the
        corrected CoM is zero everywhere; :class:`ReconstructionError` for a NaN error.
        """
        if not self._preprocessed:
            raise NotComputedError("reconstruct() needs preprocess() first")
        check_reconstruct(
            reset,
            max_iter,
            step_size,
            stopping_criterion,
            gaussian_filter_sigma,
            q_lowpass,
            q_highpass,
            butterworth_order,
        )
        check_signal(self._com_x, self._com_y, max_iter)
        self._reset_state(reset, step_size, store_iterations)
        show = enabled() if progress_bar is None else progress_bar
        bar = ProgressLine(int(max_iter), "Reconstructing phase") if show else None
        result = integrate.integrate_on_canvas(
            self._padded_object_phase,
            self._com_x,
            self._com_y,
            self._scan_sampling,
            self._xp,
            gaussian_sigma=gaussian_filter_sigma if gaussian_filter else None,
            butterworth=butterworth_filter,
            q_lowpass=q_lowpass,
            q_highpass=q_highpass,
            butterworth_order=butterworth_order,
            error=self.error,
            step=self._step_size,
            max_iter=max_iter,
            stopping_criterion=stopping_criterion,
            backtrack=backtrack,
            store_iterations=store_iterations,
            callback=None if bar is None else bar.update,
        )
        if bar is not None:  # end at the stop: done / run, the updates kept in the text
            bar.total = bar.done = result.n_run
            bar.desc = f"Reconstructing phase ({len(result.errors)} kept)"
            bar.close()
        if np.isnan(result.error):
            raise ReconstructionError(
                "reconstruct(): the error is NaN (non-finite CoM or object); no phase kept"
            )
        self._store_result(result, store_iterations, stopping_criterion)
        return self

    # ------------------------------------------------------------------ figures
    # (drawn by stem4d_dask.phase.plots, through pyplot when it is imported; stored in
    # self.figures; a non-pyplot figure is shown inside Jupyter only)

    def show_complex_CoM(self, com=None, cbar=True, vmax=None, **kwargs):  # noqa: N802
        """Complex-colour image of ``com_x + i com_y`` (hue = direction, brightness =
        magnitude up to ``vmax``); ``com``: an optional ``(com_x, com_y)`` pair of
        ``(Rx, Ry)`` arrays instead. Stored in ``self.figures['complex_com']``; returns None
        (as py4DSTEM)."""
        self.figures["complex_com"] = plots.dpc_complex_figure(self, com, cbar, vmax, **kwargs)
        plots.show(self.figures["complex_com"])

    def visualize(
        self,
        fig=None,
        iterations_grid=None,
        plot_convergence: bool = True,
        cbar: bool = True,
        **kwargs,
    ):
        """Figure of ``object_phase`` and the error per iteration (``fig``: draw into this
        Figure); ``iterations_grid=(rows, cols)``: stored iterations instead. Stored in
        ``self.figures['phase']``; returns ``self``."""
        fig = plots.dpc_phase_figure(self, fig, iterations_grid, plot_convergence, cbar, **kwargs)
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
        figs = plots.dpc_figures(self, phase="_object_phase" in self.__dict__)
        return plots.save_pngs(figs, out_dir)

    def _warn(self, message, stacklevel=4):
        """A ``UserWarning`` when ``verbose``, attributed to the caller of the public method."""
        if self._verbose:
            warnings.warn(message, UserWarning, stacklevel=stacklevel)

    def _info(self, message):
        """Information (not a warning), printed when ``verbose``."""
        if self._verbose:
            print(message, file=sys.stdout)


__all__ = ["DPC", "NotComputedError", "ReconstructionError"]
