"""Phase retrieval from 4D-STEM: centre of mass, segmented-detector CoM and DPC."""

from .com import center_of_mass
from .dpc import DPC
from .segmented import monolithic_com, segmented_com

__all__ = ["center_of_mass", "segmented_com", "monolithic_com", "DPC"]
