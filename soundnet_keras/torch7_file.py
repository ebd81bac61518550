"""Torch7 binary files (``.t7``): every Lua value, tensor and storage decoded here, with resource bounds.

The files are binary Torch7 serialisations (little-endian, 4-byte ints, 8-byte longs, as the authors' Linux x86_64
machines wrote them). :func:`load_t7` returns the decoded object (tables as dicts or lists, class instances as
``torchfile.TorchObject``, tensors as NumPy arrays); :mod:`soundnet_keras.torch7` maps a SoundNet in it to the layer
table. Only the container types of :mod:`torchfile` are used: its reader trusts every size in the file (a storage
declaring a terabyte is allocated, a tensor's sizes and strides are not checked against its storage, a table key
that is itself a table turned list is a ``TypeError``), so the decoding is done here and no code from the file is
ever run (a serialised Lua function is kept as inert bytes, ``torchfile.LuaFunction``).

Every bound is decided before anything is allocated, so a hostile or corrupt file fails fast with a
:class:`~soundnet_keras.errors.ConversionError` naming the file, the byte offset and what was expected:

* a string or a serialised function may not declare more bytes than are left in the file, nor a storage more
  elements than the bytes left hold, nor a table more entries than those bytes could encode;
* a tensor's sizes, strides and offset must be non-negative and its extent (``offset + sum((size - 1) * stride) +
  1``) must lie inside its storage; it may hold at most :data:`MAX_TENSOR_ELEMENTS` elements (SoundNet's largest,
  the SoundNet-8 ``objects`` head, has 1000 x 1024 x 8 = 8,192,000), and all tensors of a file together at most
  :data:`TENSOR_BYTES_PER_FILE_BYTE` times the file's size plus :data:`TENSOR_BYTES_SLACK` once copied (tensors
  with stride 0 repeat their storage's elements, so a small file could otherwise declare gigabytes);
* values may nest at most :data:`MAX_DEPTH` levels deep, and a file may hold at most :data:`MAX_VALUES` values.

A Torch7 file carries no checksum: a flipped bit inside a tensor's data, or in a number of a module's fields that
still makes sense, gives a file that reads without error with changed values. Only comparing the file's sha256 with
the one of a known good copy can tell; the package knows none for the authors' ``.t7`` files (their zip was never
pinned), only for ``sound8.npy`` (:data:`soundnet_keras.sound8_npy.SOUND8_NPY_SHA256`).
"""

from __future__ import annotations

import math
import os
import struct
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torchfile

from .errors import ConversionError

MAX_DEPTH = 100
"""Most levels of nested values (tables, objects, tensors) accepted; a SoundNet file nests 13."""

MAX_VALUES = 2_000_000
"""Most values (numbers, strings, tables, objects...) decoded from one file; a SoundNet-8 file has about 1,100."""

MAX_TENSOR_ELEMENTS = 1 << 26
"""Most elements of one tensor (67,108,864: 8 times SoundNet-8's largest, the 1000 x 1024 x 8 ``objects`` head)."""

TENSOR_BYTES_PER_FILE_BYTE = 4
"""With :data:`TENSOR_BYTES_SLACK`, bounds the bytes of all tensors of a file once copied, relative to its size."""

TENSOR_BYTES_SLACK = 64 << 20
"""Bytes of tensors any file may decode to beyond :data:`TENSOR_BYTES_PER_FILE_BYTE` times its size."""

MAX_NDIM = 32
"""Most dimensions of a tensor (NumPy 1's limit; SoundNet's tensors have at most 4)."""

NO_CHECKSUM = (
    "Torch7 files carry no checksum, so only comparing the file's sha256 with that of a known good copy tells an "
    "intact file"
)
"""Said in the errors about a corrupt file (a flipped bit inside a tensor's data goes unnoticed)."""

_TYPE_NAMES = {
    torchfile.TYPE_NIL: "nil",
    torchfile.TYPE_NUMBER: "number",
    torchfile.TYPE_STRING: "string",
    torchfile.TYPE_TABLE: "table",
    torchfile.TYPE_TORCH: "torch object",
    torchfile.TYPE_BOOLEAN: "boolean",
    torchfile.TYPE_FUNCTION: "function",
    torchfile.LEGACY_TYPE_RECUR_FUNCTION: "function",
    torchfile.TYPE_RECUR_FUNCTION: "function",
}
_FUNCTIONS = frozenset({torchfile.TYPE_FUNCTION, torchfile.LEGACY_TYPE_RECUR_FUNCTION, torchfile.TYPE_RECUR_FUNCTION})


class _FormatError(Exception):
    """Raised while decoding; turned into a ConversionError naming the file."""


_ELEMENTS = {
    "Byte": np.dtype("u1"),
    "Char": np.dtype("i1"),
    "Short": np.dtype("<i2"),
    "Int": np.dtype("<i4"),
    "Long": np.dtype("<i8"),
    "Float": np.dtype("<f4"),
    "Double": np.dtype("<f8"),
    "Half": np.dtype("<f2"),
}


def _numeric_classes() -> tuple[dict[bytes, np.dtype], dict[bytes, np.dtype]]:
    tensors, storages = {}, {}
    for element, dtype in _ELEMENTS.items():
        for prefix in ("torch.", "torch.Cuda"):
            cuda_name = "" if prefix == "torch.Cuda" and element == "Float" else element  # torch.CudaTensor
            tensors[f"{prefix}{cuda_name}Tensor".encode()] = dtype
            storages[f"{prefix}{cuda_name}Storage".encode()] = dtype
    return tensors, storages


_TENSOR_CLASSES, _STORAGE_CLASSES = _numeric_classes()
_TDS_CLASSES = frozenset({b"tds.Vec", b"tds.Hash"})


def _kind(value: Any) -> str:
    """A short description of a decoded value, for messages."""
    if isinstance(value, np.ndarray):
        return f"tensor {value.shape}"
    if isinstance(value, torchfile.TorchObject):
        return f"{value.torch_typename().decode('utf8', 'replace')} object"
    if isinstance(value, list):
        return "Lua list"
    return "Lua table" if isinstance(value, dict) else type(value).__name__


class _Reader:
    """Decoder of one binary Torch7 stream with fixed little-endian x86_64 sizes and the bounds of the module doc.

    torchfile 0.1.0 reads longs with the platform's C ``long`` (4 bytes on Windows), its ``force_8bytes_long``
    option fails under Python 3 and it checks no size, so the format is decoded here; its ``TorchObject``,
    ``hashable_uniq_dict`` and ``LuaFunction`` hold the values, as :func:`torchfile.load` returns them.
    """

    def __init__(self, handle: BinaryIO, file_size: int) -> None:
        self.f = handle
        self.file_size = file_size
        self.objects: dict[int, Any] = {}
        self.tensor_types: Counter[str] = Counter()
        self.storage_types: Counter[str] = Counter()
        self.trailing_bytes = 0
        self.depth = 0
        self.values = 0
        self.tensor_bytes = 0
        self.tensor_budget = TENSOR_BYTES_PER_FILE_BYTE * file_size + TENSOR_BYTES_SLACK

    # ---- primitives

    def left(self) -> int:
        """Bytes left in the file after the current position."""
        return self.file_size - self.f.tell()

    def _exact(self, count: int) -> bytes:
        data = self.f.read(count)
        if len(data) != count:
            raise _FormatError(f"file ends at byte {self.f.tell()} in the middle of a value ({count} bytes wanted)")
        return data

    def read_int(self) -> int:
        return struct.unpack("<i", self._exact(4))[0]

    def read_long(self) -> int:
        return struct.unpack("<q", self._exact(8))[0]

    def read_long_array(self, n: int) -> list[int]:
        return list(struct.unpack(f"<{n}q", self._exact(8 * n)))

    def read_double(self) -> float:
        return struct.unpack("<d", self._exact(8))[0]

    def read_string(self, what: str = "string") -> bytes:
        start = self.f.tell()
        size = self.read_int()
        if not 0 <= size <= self.left():
            raise _FormatError(
                f"{what} at byte {start} declares {size} bytes, but {self.left()} bytes are left in the file "
                f"(expected a length from 0 to that)"
            )
        return self._exact(size)

    # ---- values

    def read_obj(self) -> Any:
        """The next value of the file (nil, number, boolean, string, table, torch object, function)."""
        start = self.f.tell()
        self.values += 1
        if self.values > MAX_VALUES:
            raise _FormatError(f"more than {MAX_VALUES} values (at byte {start}); a SoundNet-8 file has about 1,100")
        if self.depth >= MAX_DEPTH:
            raise _FormatError(f"value at byte {start} is nested more than {MAX_DEPTH} levels deep")
        self.depth += 1
        try:
            return self._read_value(start)
        finally:
            self.depth -= 1

    def _read_value(self, start: int) -> Any:
        tag = self.read_int()
        if tag == torchfile.TYPE_NIL:
            return None
        if tag == torchfile.TYPE_NUMBER:
            number = self.read_double()
            return int(number) if number.is_integer() else number
        if tag == torchfile.TYPE_BOOLEAN:
            return self.read_int() == 1
        if tag == torchfile.TYPE_STRING:
            return self.read_string()
        if tag not in _TYPE_NAMES:
            raise _FormatError(
                f"unknown type tag {tag} at byte {start} (expected 0 nil, 1 number, 2 string, 3 table, 4 torch "
                f"object, 5 boolean or 6-8 function)"
            )
        index = self.read_int()
        if index in self.objects:  # a reference to an object read before (shared or recursive)
            return self.objects[index]
        if tag in _FUNCTIONS:
            dumped = self.read_string("function bytecode")  # kept as bytes, never run
            upvalues = self.read_obj()
            value = torchfile.LuaFunction(len(dumped), dumped, upvalues)
            self.objects[index] = value
            return value
        if tag == torchfile.TYPE_TORCH:
            return self._read_torch(index, start)
        return self._read_table(index, start)

    def _count(self, what: str, start: int, count: int, min_bytes: int) -> int:
        """``count`` checked against the bytes left (each item takes at least ``min_bytes``)."""
        if not 0 <= count <= self.left() // min_bytes:
            raise _FormatError(
                f"{what} at byte {start} declares {count} entries, but the {self.left()} bytes left in the file "
                f"hold at most {self.left() // min_bytes}"
            )
        return count

    def _set(self, table: dict, key: Any, value: Any, key_at: int) -> None:
        try:
            table[key] = value
        except TypeError:  # a list or tensor as a key: Lua allows it, Python dicts do not (and no SoundNet has one)
            raise _FormatError(f"table key at byte {key_at} is a {_kind(key)}, which cannot be a key here") from None

    def _read_table(self, index: int, start: int) -> dict | list:
        size = self._count("table", start, self.read_int(), 8)
        table = torchfile.hashable_uniq_dict()
        self.objects[index] = table  # before the entries: they may refer to the table
        for _ in range(size):
            key_at = self.f.tell()
            key = self.read_obj()
            self._set(table, key, self.read_obj(), key_at)
        if all(type(key) is int for key in table) and sorted(table) == list(range(1, len(table) + 1)):
            items = []
            for i in range(len(table)):  # a Lua list, as torchfile's list heuristic makes it
                item = table[i + 1]
                items.append(items if item is table else item)
            self.objects[index] = items
            return items
        return table

    def _read_torch(self, index: int, start: int) -> Any:
        version = self.read_string("class version")
        version_number = 0
        if version.startswith(b"V "):
            try:
                version_number = int(float(version[2:]))
            except (ValueError, OverflowError):
                raise _FormatError(f"invalid class version {version!r} at byte {start} (expected 'V <n>')") from None
            class_name = self.read_string("class name")
        else:
            class_name = version  # written before Torch7 versioned its classes
        if class_name in _TENSOR_CLASSES or class_name in _STORAGE_CLASSES or class_name in _TDS_CLASSES:
            self.objects[index] = None  # a reference to it while it is read is nil, as in torchfile
            if class_name in _TENSOR_CLASSES:
                value = self._read_tensor(class_name, start)
            elif class_name in _STORAGE_CLASSES:
                value = self._read_storage(class_name, start)
            else:
                value = self._read_tds(class_name, start)
            self.objects[index] = value
            return value
        obj = torchfile.TorchObject(class_name, version_number=version_number)
        self.objects[index] = obj  # before its fields: they may refer to it
        obj._obj = self.read_obj()
        return obj

    def _read_tds(self, class_name: bytes, start: int) -> Any:
        """``tds.Vec`` (a list) and ``tds.Hash`` (a table), with their custom serialisation."""
        size = self.read_int()
        self.read_obj()  # the metatable's placeholder
        if class_name == b"tds.Vec":
            return [self.read_obj() for _ in range(self._count("tds.Vec", start, size, 4))]
        table = torchfile.hashable_uniq_dict()
        for _ in range(self._count("tds.Hash", start, size, 8)):
            key_at = self.f.tell()
            key = self.read_obj()
            self._set(table, key, self.read_obj(), key_at)
        return table

    def _read_storage(self, class_name: bytes, start: int) -> np.ndarray:
        name = class_name.decode()
        dtype = _STORAGE_CLASSES[class_name]
        size = self.read_long()
        left = self.left()
        if not 0 <= size <= left // dtype.itemsize:
            raise _FormatError(
                f"{name} of {size} elements ({size * dtype.itemsize} bytes) at byte {start} does not fit in the "
                f"{left} bytes left in the file of {self.file_size} bytes (truncated?)"
            )
        self.storage_types[name] += 1
        return np.frombuffer(self._exact(size * dtype.itemsize), dtype=dtype)

    def _read_tensor(self, class_name: bytes, start: int) -> np.ndarray:
        name = class_name.decode()
        dtype = _TENSOR_CLASSES[class_name]
        ndim = self.read_int()
        if not 0 <= ndim <= MAX_NDIM:
            raise _FormatError(f"{name} at byte {start} has {ndim} dimensions, expected 0 to {MAX_NDIM}")
        sizes = self.read_long_array(ndim)
        strides = self.read_long_array(ndim)
        offset = self.read_long() - 1
        where = f"{name} at byte {start} (sizes {sizes}, strides {strides}, offset {offset + 1})"
        if min(sizes, default=0) < 0 or min(strides, default=0) < 0 or offset < 0:
            raise _FormatError(f"{where}: sizes and strides must be >= 0 and the offset >= 1")
        elements = math.prod(sizes)
        if elements > MAX_TENSOR_ELEMENTS:
            raise _FormatError(
                f"{where} declares {elements} elements; at most {MAX_TENSOR_ELEMENTS} are accepted per tensor "
                f"(SoundNet's largest has 8192000)"
            )
        storage = self.read_obj()
        self.tensor_types[name] += 1
        if storage is None or ndim == 0:
            return np.empty((0,), dtype=dtype)
        if not isinstance(storage, np.ndarray) or storage.ndim != 1 or storage.dtype != dtype:
            got = storage.dtype if isinstance(storage, np.ndarray) else _kind(storage)
            raise _FormatError(f"{where} has a storage of element type {got}, expected {dtype}")
        if elements == 0:
            return np.empty(sizes, dtype=dtype)
        extent = offset + sum((size - 1) * stride for size, stride in zip(sizes, strides, strict=True)) + 1
        if extent > storage.size:
            raise _FormatError(f"{where} reaches element {extent} of a storage of {storage.size} elements")
        nbytes = elements * dtype.itemsize
        if self.tensor_bytes + nbytes > self.tensor_budget:
            raise _FormatError(
                f"{where} would bring the file's tensors to {self.tensor_bytes + nbytes} bytes, more than the "
                f"{self.tensor_budget} accepted for a file of {self.file_size} bytes (stride-0 tensors repeat "
                f"their storage's elements)"
            )
        self.tensor_bytes += nbytes
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=sizes, strides=[stride * dtype.itemsize for stride in strides], writeable=False
        )
        return np.array(view, dtype=dtype.newbyteorder("="))


def load_with_reader(path: Path) -> tuple[Any, _Reader]:
    """The decoded object of a ``.t7`` file and the reader that decoded it (which knows the tensor types seen)."""
    if not path.exists():
        raise ConversionError(f"Torch7 file {str(path)!r} does not exist")
    if not path.is_file():
        raise ConversionError(f"{str(path)!r} is not a file (expected a Torch7 .t7 model)")
    cannot = f"cannot read {str(path)!r} as a Torch7 binary file"
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4)
            if head[:1].isdigit() and head[1:2] in (b"\n", b"\r"):
                raise ConversionError(
                    f"{str(path)!r} looks like a Torch7 ascii file; only the binary format is supported "
                    f"(re-save it in Lua with torch.save(path, model, 'binary'))"
                )
            handle.seek(0)
            reader = _Reader(handle, size)
            value = reader.read_obj()
            reader.trailing_bytes = size - handle.tell()
    except ConversionError:
        raise
    except OSError as exc:
        raise ConversionError(f"cannot read {str(path)!r}: {exc}") from None
    except _FormatError as exc:
        raise ConversionError(f"{cannot}: {exc}; the file is truncated or corrupt ({NO_CHECKSUM})") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError, MemoryError) as exc:
        # Not expected (every bound above is checked first): still the package's error, never a traceback.
        raise ConversionError(f"{cannot}: {type(exc).__name__} while decoding ({exc})") from None
    return value, reader


def load_t7(path: str | os.PathLike) -> Any:
    """Decode any binary Torch7 file: tables as dicts or lists, class instances as ``torchfile.TorchObject``,
    tensors as NumPy arrays (copies, bounds-checked against their storage), storages as read-only 1-D arrays,
    functions as ``torchfile.LuaFunction`` (bytes, never run).

    Raises :class:`~soundnet_keras.errors.ConversionError` for a missing, unreadable, truncated or corrupt file and
    for any size beyond the bounds of the module docstring. A file without such damage whose tensor data was
    altered reads with the altered values: the format has no checksum (see the module docstring).
    """
    return load_with_reader(Path(path))[0]
