"""Vendor metadata as JSON-able values (what readers put in ``attrs["metadata"]``)."""

from __future__ import annotations

import math

import numpy as np


def text_value(text: str):
    """A header or side-file value given as text, as the JSON value it stands for:
    ``"True"``/``"False"`` -> bool, an integer -> int, a finite number -> float, else the
    stripped text (``"nan"`` and ``"inf"`` stay text)."""
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return value if math.isfinite(value) else text
    return text


SMALL = 16  # arrays up to this many values are kept as lists; larger ones are described


def json_value(value):
    """A header value (HDF5 attribute or dataset value, numpy scalar or array, bytes) as
    JSON-able Python: bytes decoded, small arrays as lists, larger ones as a short description
    (``"<uint32 array (192, 192)>"``), non-finite floats as text."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return json_value(value.ravel()[0])
        if value.size > SMALL:
            return f"<{value.dtype} array {value.shape}>"
        return [json_value(v) for v in value.ravel().tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
