"""The results of :class:`stem4d_dask.phase.DPC`: read-only accessors, each an ``(Rx, Ry)``
DataArray with the datacube's scan coords (or a number, or the rotation curve).

:class:`DPCResults` is the mixin that turns the arrays ``DPC.preprocess`` and ``reconstruct``
store (``_com_x``, ``_rotation``, ``_object_phase`` ...) into these results, raising
:class:`NotComputedError` when one is asked for before the step that computes it.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..datacube import R_DIMS


class NotComputedError(AttributeError):
    """A result asked for before the step that computes it."""


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
                "rotation_deg": float(sol.rotation_deg),
                "transpose": int(sol.transpose),
            },
        )

    @property
    def object_phase(self) -> xr.DataArray:
        """Reconstructed phase, float32 (Rx, Ry); ``phase / (2 pi)`` in calibrated units (no
        2π factor, as py4DSTEM), arbitrary offset."""
        if "_object_phase" not in self.__dict__:
            raise NotComputedError("object_phase is computed by reconstruct(); call it first")
        units = (
            "rad/(2 pi)"
            if self._scan_units[0] == "A" and self._reciprocal_units[0] == "A^-1"
            else "arbitrary"
        )
        return self._field(self._object_phase, "object_phase", units, "DPC phase")

    @property
    def sampling(self):
        """Scan sampling ``(dx, dy)`` in Å (or pixels)."""
        return self._scan_sampling


__all__ = ["DPCResults", "NotComputedError"]
