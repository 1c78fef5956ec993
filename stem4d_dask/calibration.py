"""Units, pixel sizes and electron-optical conversions.

Units are plain strings stored in ``attrs["units"]`` of each coord and in the datacube attrs
``r_units`` / ``q_units``. The canonical spellings follow py4DSTEM so that files round-trip:

- real space: ``"pixels"``, ``"A"`` (ångström), ``"nm"``
- reciprocal space: ``"pixels"``, ``"A^-1"`` (1/ångström), ``"mrad"``

Common aliases (``"Å"``, ``"1/Å"``, ``"1/A"``, ``"angstrom"`` ...) are accepted and canonicalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

R_UNITS = ("pixels", "A", "nm")
Q_UNITS = ("pixels", "A^-1", "mrad")
KNOWN_UNITS = R_UNITS + Q_UNITS[1:]

_ALIASES = {
    "pixel": "pixels",
    "px": "pixels",
    "Å": "A",
    "angstrom": "A",
    "Angstrom": "A",
    "1/A": "A^-1",
    "1/Å": "A^-1",
    "Å^-1": "A^-1",
    "A-1": "A^-1",
    "inverse angstrom": "A^-1",
}

# Truncated constants exactly as py4DSTEM 0.14.18 uses them, so wavelengths match its values
# to the last digit (they sit ~1.2e-7 relative below CODATA 2018).
_M_E = 9.109383e-31  # electron rest mass, kg
_Q_E = 1.602177e-19  # elementary charge, C
_C = 299792458.0  # speed of light, m/s
_H = 6.62607e-34  # Planck constant, J s


def canonical_units(units: str, *, parameter: str = "units", allowed=KNOWN_UNITS) -> str:
    """Return the canonical spelling of ``units``; raise ``ValueError`` naming ``parameter``."""
    if not isinstance(units, str):
        raise TypeError(f"{parameter} must be a string, got {units!r} ({type(units).__name__})")
    canon = _ALIASES.get(units.strip(), units.strip())
    if canon not in allowed:
        raise ValueError(f"{parameter} must be one of {list(allowed)}, got {units!r}")
    return canon


def electron_wavelength_angstrom(E_eV):
    """Relativistic electron wavelength in Å for beam energy ``E_eV`` (eV).

    Scalars give a float; arrays give an array of the same shape. Values equal py4DSTEM
    0.14.18's ``electron_wavelength_angstrom`` (same truncated constants), e.g. 0.0250793 Å at
    200 keV. Non-positive energies raise ``ValueError``.
    """
    E = np.asarray(E_eV, dtype=np.float64)
    if np.any(~np.isfinite(E)) or np.any(E <= 0):
        raise ValueError(f"E_eV must be positive and finite (eV), got {E_eV!r}")
    lam = _H / np.sqrt(2 * _M_E * _Q_E * E) / np.sqrt(1 + _Q_E * E / 2 / _M_E / _C**2) * 1e10
    return float(lam) if lam.ndim == 0 else lam


def mrad_to_inv_angstrom(mrad, energy):
    """Scattering angle (mrad) -> spatial frequency (1/Å) at beam energy ``energy`` (eV).

    Uses the small-angle relation ``k = theta / lambda``.
    """
    return np.asarray(mrad) * 1e-3 / electron_wavelength_angstrom(energy)


def inv_angstrom_to_mrad(inv_angstrom, energy):
    """Spatial frequency (1/Å) -> scattering angle (mrad) at beam energy ``energy`` (eV)."""
    return np.asarray(inv_angstrom) * electron_wavelength_angstrom(energy) * 1e3


def convert_q_pixel_size(q_pixel_size: float, from_units: str, to_units: str, energy) -> float:
    """Convert a detector pixel size between ``"mrad"`` and ``"A^-1"`` (needs ``energy``, eV).

    Converting to or from ``"pixels"`` is impossible without a calibration and raises.
    """
    src = canonical_units(from_units, parameter="from_units", allowed=Q_UNITS)
    dst = canonical_units(to_units, parameter="to_units", allowed=Q_UNITS)
    if src == dst:
        return float(q_pixel_size)
    if "pixels" in (src, dst):
        raise ValueError(
            f"to_units: cannot convert q pixel size from {src!r} to {dst!r}; "
            "set a calibrated q_pixel_size first"
        )
    if energy is None:
        raise ValueError(f"energy: converting {src!r} to {dst!r} needs the beam energy (eV)")
    if src == "mrad":
        return float(mrad_to_inv_angstrom(q_pixel_size, energy))
    return float(inv_angstrom_to_mrad(q_pixel_size, energy))


def scan_sampling(r_units: str, r_size: float) -> tuple[float, str]:
    """A scan pixel size in the units a phase reconstruction works in: ``(size, "A")`` from a
    canonical ``"A"`` or ``"nm"`` calibration (nm converted to Å), ``(r_size, "pixels")`` when
    the scan is uncalibrated."""
    if r_units == "pixels":
        return r_size, "pixels"
    return (r_size * 10 if r_units == "nm" else r_size), "A"


def reciprocal_sampling(
    q_units: str, q_size: float, energy, *, hint: str = ""
) -> tuple[float, str, float | None]:
    """A detector pixel size as ``(reciprocal, units, angular)`` (py4DSTEM's DPC samplings).

    ``q_units`` (canonical) and ``q_size``: the detector calibration; ``energy``: beam energy
    in eV, or None. ``reciprocal`` is in ``units``: Å⁻¹ (``"A^-1"``, an ``"mrad"`` calibration
    converted with the wavelength) or ``"pixels"``; ``angular`` is mrad per pixel (None for an
    ``"A^-1"`` calibration without an energy; ``q_size`` itself, as in py4DSTEM, for
    ``"pixels"``). An ``"mrad"`` calibration without an energy raises ``ValueError`` naming
    ``energy`` (``hint`` is appended to the message).
    """
    wavelength = electron_wavelength_angstrom(energy) if energy is not None else None
    if q_units == "pixels":
        return q_size, "pixels", q_size
    if q_units == "A^-1":
        return q_size, "A^-1", (q_size * wavelength * 1e3 if wavelength is not None else None)
    if wavelength is None:
        raise ValueError(
            "energy: a detector calibrated in 'mrad' needs the beam energy (eV) to "
            f"convert to A^-1{hint}"
        )
    return q_size / wavelength / 1e3, "A^-1", q_size


@dataclass(frozen=True)
class PhaseSamplings:
    """The samplings of a phase reconstruction (py4DSTEM's DPC attributes), each a pair
    ``(x, y)``: ``scan`` in ``scan_units`` (Å or pixels), ``reciprocal`` in
    ``reciprocal_units`` (Å⁻¹ or pixels), ``angular`` in mrad per pixel (or None)."""

    scan: tuple
    scan_units: tuple
    reciprocal: tuple
    reciprocal_units: tuple
    angular: tuple | None


def phase_samplings(
    r_units: str, r_size: float, q_units: str, q_size: float, energy, *, warn=None, hint: str = ""
) -> PhaseSamplings:
    """:class:`PhaseSamplings` of square pixels of ``r_size`` (scan, canonical ``r_units``) and
    ``q_size`` (detector, canonical ``q_units``) at beam ``energy`` (eV or None), from
    :func:`scan_sampling` and :func:`reciprocal_sampling` (``hint``: appended to the latter's
    error). ``warn(message)``, when given, is called for an uncalibrated space (the result
    is then not quantitative): first the scan's, before the detector calibration is
    converted."""
    scan, scan_units = scan_sampling(r_units, r_size)
    if warn is not None and scan_units == "pixels":
        warn(
            "Iterative reconstruction will not be quantitative unless you specify "
            "real-space calibrations in 'A'"
        )
    recip, units, angular = reciprocal_sampling(q_units, q_size, energy, hint=hint)
    if warn is not None and units == "pixels":
        warn(
            "Iterative reconstruction will not be quantitative unless you specify "
            "appropriate reciprocal-space calibrations"
        )
    return PhaseSamplings(
        (scan, scan),
        (scan_units, scan_units),
        (recip, recip),
        (units, units),
        None if angular is None else (angular, angular),
    )
