"""Torch7 binary files (``.t7``): generic Lua values through :mod:`torchfile`, tensors and storages decoded here.

The files are binary Torch7 serialisations (little-endian, 4-byte ints, 8-byte longs, as the authors' Linux x86_64
machines wrote them). Generic Lua values (numbers, strings, tables, class instances) are decoded by
:mod:`torchfile`; tensors and storages are decoded here, with explicit little-endian sizes and bounds checks, so
that a corrupt or truncated file gives a clear error instead of reading past its data (and so that the tensor
types are known). :func:`load_t7` returns the decoded object; :mod:`soundnet_keras.torch7` maps a SoundNet in it
to the layer table.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torchfile

from .errors import ConversionError

# --------------------------------------------------------------------------------------------------------------------
# Binary decoding


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
_MAX_NDIM = 64


class _Reader(torchfile.T7Reader):
    """torchfile's reader with fixed little-endian x86_64 sizes and checked tensor/storage decoding.

    torchfile 0.1.0 reads longs with the platform's C ``long`` (4 bytes on Windows) and its ``force_8bytes_long``
    option fails under Python 3 (it uses ``xrange``), so sizes are fixed here. Tensors are decoded here because
    torchfile builds them with ``as_strided`` without checking that sizes and strides stay inside the storage.
    """

    def __init__(self, handle: BinaryIO, file_size: int) -> None:
        super().__init__(handle, use_list_heuristic=True, use_int_heuristic=True, utf8_decode_strings=False)
        self.file_size = file_size
        self.tensor_types: Counter[str] = Counter()
        self.storage_types: Counter[str] = Counter()
        self.trailing_bytes = 0

    def _exact(self, count: int) -> bytes:
        data = self.f.read(count)
        if len(data) != count:
            raise _FormatError(f"file ends at byte {self.f.tell()} in the middle of a value ({count} bytes wanted)")
        return data

    def _read(self, fmt: str) -> tuple:
        fmt = "<" + fmt.lstrip("<>=!@").replace("l", "q")
        return struct.unpack(fmt, self._exact(struct.calcsize(fmt)))

    def read_int(self) -> int:
        return self._read("i")[0]

    def read_long(self) -> int:
        return self._read("q")[0]

    def read_long_array(self, n: int) -> list[int]:
        return list(struct.unpack(f"<{n}q", self._exact(8 * n)))

    def read_double(self) -> float:
        return self._read("d")[0]

    def read_float(self) -> float:
        return self._read("f")[0]

    def read_string(self, disable_utf8: bool = False) -> bytes | str:
        size = self.read_int()
        if size < 0 or size > self.file_size:
            raise _FormatError(f"string of invalid length {size} at byte {self.f.tell() - 4}")
        data = self._exact(size)
        return data if disable_utf8 or not self.utf8_decode_strings else data.decode("utf8")

    def read_obj(self) -> Any:
        start = self.f.tell()
        if self.read_int() == torchfile.TYPE_TORCH:
            index = self.read_int()
            if index not in self.objects:
                version = self.read_string(disable_utf8=True)
                class_name = self.read_string(disable_utf8=True) if version.startswith(b"V ") else version
                if class_name in _TENSOR_CLASSES or class_name in _STORAGE_CLASSES:
                    self.objects[index] = None
                    if class_name in _TENSOR_CLASSES:
                        value = self._read_tensor(class_name)
                    else:
                        value = self._read_storage(class_name)
                    self.objects[index] = value
                    return value
        self.f.seek(start)
        return super().read_obj()

    def _read_storage(self, class_name: bytes) -> np.ndarray:
        dtype = _STORAGE_CLASSES[class_name]
        size = self.read_long()
        if size < 0 or size * dtype.itemsize > self.file_size:
            raise _FormatError(
                f"{class_name.decode()} of {size} elements at byte {self.f.tell() - 8} does not fit in the file of "
                f"{self.file_size} bytes (truncated?)"
            )
        self.storage_types[class_name.decode()] += 1
        return np.frombuffer(self._exact(size * dtype.itemsize), dtype=dtype)

    def _read_tensor(self, class_name: bytes) -> np.ndarray:
        name = class_name.decode()
        dtype = _TENSOR_CLASSES[class_name]
        ndim = self.read_int()
        if not 0 <= ndim <= _MAX_NDIM:
            raise _FormatError(f"{name} with invalid number of dimensions {ndim}")
        sizes = self.read_long_array(ndim)
        strides = self.read_long_array(ndim)
        offset = self.read_long() - 1
        storage = self.read_obj()
        self.tensor_types[name] += 1
        if storage is None or ndim == 0:
            return np.empty((0,), dtype=dtype)
        if not isinstance(storage, np.ndarray) or storage.ndim != 1 or storage.dtype != dtype:
            got = storage.dtype if isinstance(storage, np.ndarray) else type(storage).__name__
            raise _FormatError(f"{name} has a storage of element type {got}, expected {dtype}")
        if min(sizes) < 0 or min(strides) < 0 or offset < 0:
            raise _FormatError(f"{name} with invalid sizes {sizes}, strides {strides} or offset {offset + 1}")
        if min(sizes) == 0:
            return np.empty(sizes, dtype=dtype)
        last = offset + sum((size - 1) * stride for size, stride in zip(sizes, strides, strict=True))
        if last >= storage.size:
            raise _FormatError(
                f"{name} of sizes {sizes}, strides {strides}, offset {offset + 1} reaches element {last + 1} of a "
                f"storage of {storage.size} elements"
            )
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
    size = path.stat().st_size
    try:
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
            trailing = size - handle.tell()
            reader.trailing_bytes = trailing
    except ConversionError:
        raise
    except OSError as exc:
        raise ConversionError(f"cannot read {str(path)!r}: {exc}") from None
    except RecursionError:
        raise ConversionError(f"cannot read {str(path)!r} as a Torch7 binary file: objects nested too deeply") from None
    except (_FormatError, torchfile.T7ReaderException, struct.error, ValueError, NotImplementedError) as exc:
        raise ConversionError(f"cannot read {str(path)!r} as a Torch7 binary file: {exc}") from None
    return value, reader


def load_t7(path: str | os.PathLike) -> Any:
    """Decode any binary Torch7 file: tables as dicts or lists, class instances as ``torchfile.TorchObject``,
    tensors as NumPy arrays (copies, bounds-checked against their storage), storages as read-only 1-D arrays.

    Raises :class:`~soundnet_keras.errors.ConversionError` for a missing, unreadable, truncated or corrupt file.
    """
    return load_with_reader(Path(path))[0]
