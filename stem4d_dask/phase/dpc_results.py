"""The results of :class:`stem4d_dask.phase.DPC`: read-only accessors, each an ``(Rx, Ry)``
DataArray with the datacube's scan coords (or a number, or the rotation curve).

:class:`DPCResults` is the mixin that turns the arrays ``DPC.preprocess`` and ``reconstruct``
store (``_com_x``, ``_rotation``, ``_object_phase`` ...) into these results, raising
:class:`NotComputedError` when one is asked for before the step that computes it.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from ..backend import to_host
from ..datacube import R_DIMS


class NotComputedError(AttributeError):
    """A result asked for before the step that computes it."""


class ReconstructionError(ValueError):
    """The reconstruction gave a non-finite (NaN) error, so its phase is not a result (a
    ``ValueError``: it comes from the values given, e.g. a non-finite CoM)."""


def stop_summary(result, stopping_criterion) -> str:
    """How a reconstruction run (an :class:`~stem4d_dask.phase.integrate.IntegrationResult`)
    ended, e.g. ``"step size 9.54e-07 < stopping_criterion 1e-06 after 33 iterations (14
    updates kept, 19 rejected by backtracking)"`` or ``"max_iter reached: 64 iterations (64
    updates kept)"``."""
    kept, run = len(result.errors), result.n_run
    counts = f"{run} iteration{'s' if run != 1 else ''} ({kept} update{'s' if kept != 1 else ''}"
    counts += f" kept, {run - kept} rejected by backtracking)" if run > kept else " kept)"
    if result.stopped_by_step:
        return (
            f"step size {result.step:.3g} < stopping_criterion {stopping_criterion:g} "
            f"after {counts}"
        )
    return f"max_iter reached: {counts}"


def _scan_result(attr: str, units, long_name: str, doc: str) -> property:
    """A read-only ``(Rx, Ry)`` DataArray result set by ``preprocess``; ``units``: a string, or
    the index of the reciprocal units (0: Qx/Rx, 1: Qy/Ry)."""

    def get(self) -> xr.DataArray:
        values = self._pre(attr)
        unit = units if isinstance(units, str) else self._reciprocal_units[units]
        return self._field(values, attr, unit, long_name)

    return property(get, doc=doc)


class DPCResults:
    """Result accessors of :class:`~stem4d_dask.phase.DPC` (a mixin: it reads the attributes
    ``_preprocessed``, ``_coords``, ``_scan_sampling``, ``_scan_units`` and
    ``_reciprocal_units`` set by ``preprocess``)."""

    def _field(self, values, name, units, long_name) -> xr.DataArray:
        """``values`` as an ``(Rx, Ry)`` DataArray with the scan coords, ``units`` and
        ``long_name``."""
        return xr.DataArray(
            np.asarray(values),
            dims=R_DIMS,
            coords=self._coords,
            name=name,
            attrs={"units": units, "long_name": long_name},
        )

    def _pre(self, attr):
        """The stored ``_<attr>``; ``NotComputedError`` before ``preprocess``."""
        if not self._preprocessed:
            raise NotComputedError(f"{attr} is computed by preprocess(); call it first")
        return getattr(self, f"_{attr}")

    com_measured_x = _scan_result(
        "com_measured_x",
        "pixels",
        "measured centre of mass, Qx",
        "Measured CoM along Qx, detector pixels from the corner pixel, float32 (Rx, Ry).",
    )
    com_measured_y = _scan_result(
        "com_measured_y",
        "pixels",
        "measured centre of mass, Qy",
        "Measured CoM along Qy, detector pixels from the corner pixel, float32 (Rx, Ry).",
    )
    com_fitted_x = _scan_result(
        "com_fitted_x",
        "pixels",
        "fitted descan, Qx",
        "Fitted descan along Qx, detector pixels, float32 (Rx, Ry).",
    )
    com_fitted_y = _scan_result(
        "com_fitted_y",
        "pixels",
        "fitted descan, Qy",
        "Fitted descan along Qy, detector pixels, float32 (Rx, Ry).",
    )
    com_normalized_x = _scan_result(
        "com_normalized_x",
        0,
        "descan-corrected centre of mass, Qx",
        "``nan_to_num(measured - fitted) * reciprocal sampling`` along Qx (Å⁻¹ or pixels).",
    )
    com_normalized_y = _scan_result(
        "com_normalized_y",
        1,
        "descan-corrected centre of mass, Qy",
        "``nan_to_num(measured - fitted) * reciprocal sampling`` along Qy (Å⁻¹ or pixels).",
    )
    com_x = _scan_result(
        "com_x",
        0,
        "corrected centre of mass, Rx",
        "Corrected CoM along Rx (rotated and transposed into the scan frame), Å⁻¹ or pixels.",
    )
    com_y = _scan_result(
        "com_y",
        1,
        "corrected centre of mass, Ry",
        "Corrected CoM along Ry (rotated and transposed into the scan frame), Å⁻¹ or pixels.",
    )

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
            attrs={
                "metric": sol.metric,
                "units": self._reciprocal_units[0],
                "rotation_deg": float(sol.rotation_deg),
                "transpose": int(sol.transpose),
            },
        )

    @property
    def object_phase(self) -> xr.DataArray:
        """Reconstructed phase, float32 (Rx, Ry), arbitrary offset. With the scan in Å and the
        detector in Å⁻¹ (or mrad and an energy) it is ``phase / (2 pi)`` (units ``rad/(2 pi)``:
        no 2π factor, as py4DSTEM; :attr:`phase_rad` is in radians); with an uncalibrated
        space it has arbitrary units (``arb. units``)."""
        if "_object_phase" not in self.__dict__:
            raise NotComputedError("object_phase is computed by reconstruct(); call it first")
        units = (
            "rad/(2 pi)"
            if self._scan_units[0] == "A" and self._reciprocal_units[0] == "A^-1"
            else "arb. units"
        )
        return self._field(self._object_phase, "object_phase", units, "DPC phase")

    @property
    def phase_rad(self) -> xr.DataArray:
        """The phase in radians, ``2 pi * object_phase`` (float32 (Rx, Ry), units ``rad``);
        ``ValueError`` unless the calibrations make it quantitative (scan in Å, detector in
        Å⁻¹ or mrad with an energy)."""
        phase = self.object_phase
        if phase.attrs["units"] != "rad/(2 pi)":
            raise ValueError(
                "phase_rad: the phase is in arbitrary units (calibrate the scan in 'A' and the "
                "detector in 'A^-1', or 'mrad' with an energy); use object_phase"
            )
        values = phase.values * np.float32(2 * np.pi)
        return self._field(values, "phase", "rad", "DPC phase")

    # ---- reconstruction state (py4DSTEM's restart rules), used by DPC.reconstruct

    def _reset_state(self, reset, step_size, store_iterations):
        """py4DSTEM's restart rules for error, history, step and object."""
        started = "error" in self.__dict__
        if reset is True or not started:
            self.error = np.inf
            self.error_iterations = []
            self._padded_object_phase = self._padded_object_phase_initial.copy()
            self._step_size = 0.5
        elif reset is None:
            warnings.warn(
                "Continuing reconstruction from previous result. Use reset=True for a fresh start.",
                UserWarning,
                stacklevel=3,
            )
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
        self.iterations_run, self.iterations_kept = result.n_run, len(result.errors)
        self.stop_reason = stop_summary(result, stopping_criterion)
        self._info(f"Reconstruction stopped: {self.stop_reason}.")

    @property
    def sampling(self):
        """Scan sampling ``(dx, dy)`` in Å (or pixels)."""
        return self._scan_sampling


__all__ = ["DPCResults", "NotComputedError", "ReconstructionError", "stop_summary"]
