"""The tag tree of a Gatan Digital Micrograph ``.dm4`` / ``.dm3`` file, walked without reading
array payloads.

File layout: a header (version i32 = 4 or 3, root size u64 (DM4) or u32 (DM3), data byte order
i32: 1 = little-endian), then a tree of tag groups (kind 20) and data tags (kind 21), always
big-endian in its structure (DM4 sizes and counts are u64, DM3 u32); the values themselves are
in the data byte order. A data tag is ``%%%%``, its type description (a list of numbers: a
simple type, a string, a struct or an array of one of them) and its value. Groups become dicts,
or lists when their tags are unnamed; ``ImageData.Data`` and long arrays are left in the file
as :class:`ArrayRef` (where they start, how many values of what size).
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass

import numpy as np

# tag value types: struct format (the size follows from it)
TAG_TYPES = {
    2: "h",
    3: "i",
    4: "H",
    5: "I",
    6: "f",
    7: "d",
    8: "?",
    9: "b",
    10: "B",
    11: "q",
    12: "Q",
}
STRUCT, STRING, ARRAY = 15, 18, 20
KEEP_VALUES = 256  # arrays up to this length are copied into the metadata


@dataclass(frozen=True)
class ArrayRef:
    """An array payload left in the file: ``count`` values of tag type ``kind`` (or
    ``itemsize``-byte elements) at byte ``offset``."""

    offset: int
    count: int
    itemsize: int
    kind: int

    def describe(self) -> str:
        name = TAG_TYPES.get(self.kind, f"type {self.kind}")
        return f"<{self.count} values ({name}, {self.itemsize} B) at byte {self.offset}>"


class _Truncated(ValueError):
    pass


class _Stop(Exception):  # noqa: N818 - not an error: the walk ends early
    def __init__(self, value):
        super().__init__()
        self.value = value


def _add(named: dict, items: list, name: str, value):
    if value is None:
        return
    if name:
        named[name] = value
    else:
        items.append(value)


def _finish(named: dict, items: list):
    if named and items:
        named.update({str(k): v for k, v in enumerate(items)})
    return named if named or not items else items


class TagReader:
    """Walks a DM tag tree from an open file; groups become dicts, or lists when their tags
    are unnamed; ``ImageData.Data`` and long arrays become :class:`ArrayRef`."""

    def __init__(self, f, path, size: int):
        self.f, self.path, self.size = f, path, size
        self.version = struct.unpack(">i", self._read(4))[0]
        if self.version not in (3, 4):
            raise ValueError(f"path: {path} is DM version {self.version}; only 3 and 4 are read")
        self.wide = self.version == 4
        self._u()  # root size
        self.endian = "<" if struct.unpack(">i", self._read(4))[0] == 1 else ">"

    def _read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise _Truncated(f"the file ends at byte {self.size} inside the tag tree")
        return data

    def _u(self) -> int:
        return (
            struct.unpack(">Q", self._read(8))[0]
            if self.wide
            else struct.unpack(">I", self._read(4))[0]
        )

    def root(self) -> dict:
        """The tag tree; when the image data run past the end of the file, the tree read so
        far, with :attr:`truncated` = the tag's path."""
        self.truncated = None
        self._read(2)  # sorted, open
        try:
            return self._group(self._u(), "")
        except _Stop as stop:
            return stop.value

    def _group(self, ntags: int, where: str):
        named, items, name, value = {}, [], "", None
        try:
            for k in range(ntags):
                value = None
                kind = self._read(1)[0]
                name = self._read(struct.unpack(">H", self._read(2))[0]).decode("latin-1")
                here = f"{where}.{name or k}".lstrip(".")
                if self.wide:
                    self._read(8)  # the tag's byte size
                if kind == 20:
                    self._read(2)  # sorted, open
                    value = self._group(self._u(), here)
                elif kind == 21:
                    value = self._data(here, data=name == "Data" and where.endswith("ImageData"))
                else:
                    raise ValueError(
                        f"path: {self.path} is corrupt: tag {here!r} at byte "
                        f"{self.f.tell()} has kind {kind} (expected 20 or 21)"
                    )
                _add(named, items, name, value)
        except _Stop as stop:  # the image data run past the end: keep what was read
            _add(named, items, name, stop.value)
            raise _Stop(_finish(named, items)) from None
        return _finish(named, items)

    def _data(self, where: str, data: bool):
        if self._read(4) != b"%%%%":
            raise ValueError(
                f"path: {self.path} is corrupt: tag {where!r} lacks its '%%%%' "
                f"delimiter (byte {self.f.tell() - 4})"
            )
        info = [self._u() for _ in range(self._u())]
        if not info:
            raise ValueError(f"path: {self.path} is corrupt: tag {where!r} has no type")
        kind = info[0]
        if kind in TAG_TYPES and len(info) == 1:
            fmt = self.endian + TAG_TYPES[kind]
            return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]
        if kind == STRING:
            return self._read(info[1]).decode("latin-1")
        if kind == STRUCT:
            fields = [info[4 + 2 * k] for k in range(info[2])]
            fmt = self.endian + "".join(TAG_TYPES[t] for t in fields)
            return list(struct.unpack(fmt, self._read(struct.calcsize(fmt))))
        if kind != ARRAY:
            raise ValueError(f"path: {self.path} is corrupt: tag {where!r} has type {kind}")
        itemsize, _ = _element_size(info, 1)
        count = info[-1]
        offset = self.f.tell()
        if (
            data
            or info[1] not in TAG_TYPES
            or count > KEEP_VALUES
            and info[1] != 4
            or count > 65536
        ):
            end = offset + count * itemsize
            if end > self.size:
                if not data:
                    raise _Truncated(
                        f"the file ends at byte {self.size}, inside {where} "
                        f"({count} values of {itemsize} B from byte {offset})"
                    )
                self.truncated = where
                raise _Stop(ArrayRef(offset, count, itemsize, info[1]))
            self.f.seek(end)
            return ArrayRef(offset, count, itemsize, info[1])
        values = np.frombuffer(self._read(count * itemsize), dtype=self.endian + TAG_TYPES[info[1]])
        if info[1] == 4:  # UTF-16 text
            return values.astype("<u2").tobytes().decode("utf-16-le", errors="replace")
        return values.tolist()


def _element_size(info, i: int) -> tuple[int, int]:
    """Byte size of the element type defined at ``info[i]`` and the index after it."""
    kind = info[i]
    if kind in TAG_TYPES:
        return struct.calcsize(TAG_TYPES[kind]), i + 1
    if kind == STRING:
        return info[i + 1], i + 2
    if kind == STRUCT:
        n = info[i + 2]
        return sum(struct.calcsize(TAG_TYPES[info[i + 4 + 2 * k]]) for k in range(n)), i + 3 + 2 * n
    if kind == ARRAY:
        size, j = _element_size(info, i + 1)
        return size * info[j], j + 1
    raise ValueError(f"unknown DM tag type {kind}")


def read_tags(path) -> tuple[dict, int, str, str | None]:
    """``(tag tree, DM version, data byte order, truncated)`` of ``path``: ``truncated`` is the
    path of the image data tag the file ends in (the tree then stops there), else None.
    ``ValueError`` for a corrupt tree or one truncated elsewhere."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        reader = TagReader(f, path, size)
        try:
            tree = reader.root()
        except _Truncated as err:
            raise ValueError(
                f"path: {path} is truncated: {err.args[0]}; the tags after that "
                "point (image dimensions, type) cannot be read"
            ) from None
        except (struct.error, KeyError, IndexError, UnicodeDecodeError) as err:
            raise ValueError(
                f"path: {path} is corrupt: its tag tree cannot be parsed at byte "
                f"{f.tell()} ({type(err).__name__}: {err})"
            ) from None
    return tree, reader.version, reader.endian, reader.truncated


def tags_metadata(value):
    """A tag tree (or part of one) as JSON-able values: :class:`ArrayRef` s described, not
    read; non-finite floats as text."""
    if isinstance(value, dict):
        return {k: tags_metadata(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tags_metadata(v) for v in value]
    if isinstance(value, ArrayRef):
        return value.describe()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
