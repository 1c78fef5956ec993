"""Phase retrieval from 4D-STEM: centre of mass and (later) DPC."""

from .com import center_of_mass

__all__ = ["center_of_mass"]
