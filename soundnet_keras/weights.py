"""Parameters of a SoundNet: their expected shapes, the ``.weights.h5`` file format, strict loading.

Two layouts exist and are converted in one place each:

* **Torch layout** (what the authors' ``.t7`` files hold, squeezed of the unused width axis): per table layer
  ``weight`` (out, in, kernel), ``bias``; per BatchNorm ``gamma``, ``beta``, ``running_mean``, ``running_var``.
* **Keras layout** (what :mod:`keras` layers hold): per Keras layer name (``conv1``, ``conv1_bn``, ``objects``...)
  the variables ``kernel`` (kernel, in, out), ``bias``, ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``.

Loading is strict (as in timm): a missing, unused or mis-shaped parameter is an error naming it.

File format (written atomically): Keras' own ``.weights.h5`` layout, as ``keras.Model.save_weights`` writes it, so
``build_network(arch).load_weights(path)`` (or any Keras model of the same table) reads it; our metadata sits beside
the weights as root attributes: ``format`` (:data:`FORMAT`), ``architecture``, ``source``, ``source_sha256`` and,
when known, ``categories_objects`` / ``categories_scenes`` (JSON lists of names) and, for heads of other sizes than
the original's (a student of a Places365 teacher: 365 scenes), ``head_classes`` (JSON ``{"objects": 1000, "scenes":
365}``; absent: the tables' 1000 and 401, which every file written before it has). Files of the first format
(:data:`LEGACY_FORMAT`: arrays under ``/weights/<keras layer>/<variable>``) are still read; the pretrained cache
rewrites them in the Keras layout on first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .architecture import (
    HEAD_NAMES,
    Conv,
    HeadClasses,
    architectures,
    check_head_classes,
    describe,
    heads,
    is_standard,
    layer_table,
)
from .errors import ConfigError, ConversionError, WeightsError
from .files import atomic_path
from .l3 import tables as l3_tables

FORMAT = "soundnet_keras.weights/2"
"""Keras' ``.weights.h5`` layout plus our metadata attributes."""

LEGACY_FORMAT = "soundnet_keras.weights/1"
"""The first format: our own HDF5 layout, which Keras cannot read (read here, never written)."""

TorchParams = dict[str, dict[str, np.ndarray]]
KerasParams = dict[str, dict[str, np.ndarray]]

BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def keras_shapes(arch: str, head_classes: HeadClasses | None = None) -> dict[str, dict[str, tuple[int, ...]]]:
    """Expected Keras-layout parameter shapes of ``arch`` (heads sized by ``head_classes``), from its layer table."""
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    in_channels = 1
    trunk_channels = 1
    for layer in layer_table(arch, head_classes):
        if not isinstance(layer, Conv):
            continue
        source = trunk_channels if layer.head else in_channels
        shapes[layer.name] = {"kernel": (layer.kernel, source, layer.filters), "bias": (layer.filters,)}
        if layer.batchnorm:
            shapes[f"{layer.name}_bn"] = {var: (layer.filters,) for var in BN_VARIABLES}
        if not layer.head:
            in_channels = trunk_channels = layer.filters
    return shapes


def torch_to_keras(arch: str, torch_params: Mapping[str, Mapping[str, np.ndarray]]) -> KerasParams:
    """Map Torch-layout parameters (per table layer) to Keras layout, strictly (see module docstring)."""
    keras_params: KerasParams = {}
    expected = {"weight", "bias"}
    for layer in layer_table(arch):
        if not isinstance(layer, Conv):
            continue
        if layer.name not in torch_params:
            raise WeightsError(f"{arch}: no parameters for layer {layer.name!r}")
        params = dict(torch_params[layer.name])
        wanted = expected | ({"gamma", "beta", "running_mean", "running_var"} if layer.batchnorm else set())
        missing, unused = wanted - params.keys(), params.keys() - wanted
        if missing or unused:
            raise WeightsError(
                f"{arch} layer {layer.name!r}: missing parameters {sorted(missing)}, unused parameters {sorted(unused)}"
            )
        weight = np.asarray(params["weight"])
        if weight.ndim != 3:
            raise WeightsError(f"{arch} layer {layer.name!r}: weight must be (out, in, kernel), got {weight.shape}")
        keras_params[layer.name] = {"kernel": weight.transpose(2, 1, 0), "bias": np.asarray(params["bias"])}
        if layer.batchnorm:
            keras_params[f"{layer.name}_bn"] = {
                "gamma": np.asarray(params["gamma"]),
                "beta": np.asarray(params["beta"]),
                "moving_mean": np.asarray(params["running_mean"]),
                "moving_variance": np.asarray(params["running_var"]),
            }
    unused_layers = set(torch_params) - {layer.name for layer in layer_table(arch)}
    if unused_layers:
        raise WeightsError(f"{arch}: parameters for unknown layers {sorted(unused_layers)}")
    check_shapes(arch, keras_params)
    return {name: {k: v.astype(np.float32) for k, v in vars_.items()} for name, vars_ in keras_params.items()}


def check_shapes(
    arch: str, keras_params: Mapping[str, Mapping[str, np.ndarray]], head_classes: HeadClasses | None = None
) -> None:
    """Raise :class:`WeightsError` listing every missing, unused or mis-shaped parameter (heads sized by
    ``head_classes``; None: the table's own sizes)."""
    check_params(keras_shapes(arch, head_classes), keras_params, describe(arch, head_classes))


def check_params(
    expected: Mapping[str, Mapping[str, tuple[int, ...]]],
    keras_params: Mapping[str, Mapping[str, np.ndarray]],
    what: str,
) -> None:
    """Raise :class:`WeightsError` listing every parameter of ``keras_params`` that is missing, unused, mis-shaped or
    not finite against the ``expected`` shapes (layer -> variable -> shape) of the network ``what``."""
    problems = []
    for layer, variables in expected.items():
        got = keras_params.get(layer)
        if got is None:
            problems.append(f"missing layer {layer!r}")
            continue
        for var, shape in variables.items():
            if var not in got:
                problems.append(f"missing {layer}/{var}")
            elif tuple(np.shape(got[var])) != shape:
                problems.append(f"{layer}/{var} has shape {tuple(np.shape(got[var]))}, expected {shape}")
        problems += [f"unused {layer}/{var}" for var in sorted(set(got) - set(variables))]
    problems += [f"unused layer {layer!r}" for layer in sorted(set(keras_params) - set(expected))]
    for layer, variables in expected.items():  # only where the shape is right (a mis-shaped one may be huge)
        for var, shape in variables.items():
            value = keras_params.get(layer, {}).get(var)
            if value is not None and tuple(np.shape(value)) == shape and not np.all(np.isfinite(value)):
                problems.append(f"{layer}/{var} has NaN or Inf values")
    if problems:
        raise WeightsError(f"weights do not fit {what}: " + "; ".join(problems))


def check_categories(
    arch: str, categories: Mapping[str, Sequence[str]] | None, head_classes: HeadClasses | None = None
) -> dict[str, list[str]]:
    """Check category names against the heads of ``arch`` (sized by ``head_classes``; one name per class) and return
    them as lists."""
    if not categories:
        return {}
    checked: dict[str, list[str]] = {}
    sizes = {head.name: head.filters for head in heads(arch, head_classes)}
    for head, names in categories.items():
        if head not in sizes:
            raise ConfigError(f"categories for unknown head {head!r}: expected {' or '.join(map(repr, HEAD_NAMES))}")
        if isinstance(names, str) or not all(isinstance(name, str) and name for name in names):
            raise ConfigError(f"categories for {head!r} must be a sequence of non-empty strings")
        names = list(names)
        if len(names) != sizes[head]:
            raise ConversionError(
                f"{len(names)} category names for {head!r}, but the {describe(arch, head_classes)} head {head!r} has "
                f"{sizes[head]} classes"
            )
        checked[head] = names
    return checked


def category_names(
    arch: str, categories: Mapping[str, Sequence[str]] | None, head_classes: HeadClasses | None = None
) -> dict[str, list[str]]:
    """Checked category names of both heads (:func:`check_categories`), ``<head>_0000``... where none are known."""
    checked = check_categories(arch, categories, head_classes)
    return {
        head.name: checked.get(head.name) or generic_names(head.name, head.filters)
        for head in heads(arch, head_classes)
    }


def generic_names(head: str, classes: int) -> list[str]:
    """The names of a head whose categories are unknown: ``<head>_0000``, ``<head>_0001``..."""
    return [f"{head}_{i:04d}" for i in range(classes)]


def custom_head_classes(arch: str, head_classes: HeadClasses | None) -> dict[str, int] | None:
    """Both heads' class counts (:func:`~soundnet_keras.architecture.check_head_classes`) where they differ from the
    original's, else None (what :class:`WeightsFile` holds and a file records)."""
    return None if is_standard(head_classes) else check_head_classes(arch, head_classes)


@dataclass
class WeightsFile:
    """The content of a ``.weights.h5`` file."""

    architecture: str
    params: KerasParams
    source: str = ""
    source_sha256: str = ""
    categories: dict[str, list[str]] = field(default_factory=dict)
    file_format: str = FORMAT
    """The format the file was read from (:data:`FORMAT`, or :data:`LEGACY_FORMAT` for a file to rewrite)."""
    head_classes: dict[str, int] | None = None
    """Class count of each head where they differ from the original's (objects 1000, scenes 401); None: those."""


def save_weights(path: str | os.PathLike, weights: WeightsFile) -> Path:
    """Write ``weights`` to ``path`` in Keras' layout with our metadata (see the module docstring), atomically: a
    reader sees the old file or the complete new one, never half."""
    from .network import build_network, set_params  # imports Keras: only when a file is written

    head_classes = custom_head_classes(weights.architecture, weights.head_classes)
    check_shapes(weights.architecture, weights.params, head_classes)
    check_categories(weights.architecture, weights.categories, head_classes)
    model = build_network(weights.architecture, head_classes=head_classes)
    set_params(model, weights.architecture, weights.params, head_classes=head_classes)
    with keras_weights_file(path, model, weights.architecture, weights.source, weights.source_sha256) as f:
        for head, names in weights.categories.items():
            f.attrs[f"categories_{head}"] = json.dumps(list(names))
        if head_classes is not None:
            f.attrs["head_classes"] = json.dumps(head_classes)
    return Path(path)


@contextlib.contextmanager
def keras_weights_file(path: str | os.PathLike, model, architecture: str, source: str, source_sha256: str):
    """Write ``model``'s weights in Keras' layout to ``path`` atomically with our root attributes (``format``,
    ``architecture``, ``source``, ``source_sha256``); the block gets the open HDF5 file to add more before it is moved
    into place. SoundNet's and L³-Net's files are both written here."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".weights.h5") as tmp:  # Keras insists on the .weights.h5 ending
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs["format"] = FORMAT
            f.attrs["architecture"] = architecture
            f.attrs["source"] = source
            f.attrs["source_sha256"] = source_sha256
            yield f


class Damaged(Exception):
    """Raised while reading a weights file; turned into a WeightsError naming the file."""


def text_attr(attrs, name: str, default: str | None = None) -> str:
    """A string attribute (h5py gives ``str``, or ``bytes`` for fixed-length strings); ``default`` when absent."""
    if name not in attrs:
        if default is None:
            raise Damaged(f"is damaged: it lacks the attribute {name!r}")
        return default
    value = attrs[name]
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise Damaged(f"is damaged: attribute {name!r} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise Damaged(f"is damaged: attribute {name!r} is a {type(value).__name__}, expected a string")
    return value


def _read_variable(dataset, where: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """A variable's array, read only once its dtype and shape are known to be right (so a corrupt header
    declaring a huge dataset is never allocated); a mis-shaped one comes back as a zero-byte stand-in of its shape
    for :func:`check_shapes` to report."""
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise Damaged(f"is damaged: {where} is a {type(dataset).__name__}, expected a dataset")
    if dataset.dtype.kind != "f":
        raise Damaged(f"is damaged: {where} is a {dataset.dtype} dataset, expected floating point")
    if shape is None or dataset.shape != shape:
        return np.broadcast_to(np.zeros((), dataset.dtype), dataset.shape or ())
    return np.asarray(dataset[()])


def _group(f, name: str):
    import h5py

    group = f.get(name)
    if group is None:
        raise Damaged(f"is damaged: it lacks the group {name!r}")
    if not isinstance(group, h5py.Group):
        raise Damaged(f"is damaged: {name!r} is a {type(group).__name__}, expected a group")
    return group


def keras_layout_params(f, shapes: Mapping[str, Mapping[str, tuple[int, ...]]]) -> KerasParams:
    """Parameters of a file in Keras' layout: ``layers/<auto name>/vars`` (attribute ``name``: our layer name) holds
    the variables in creation order (those of ``shapes``, the expected layer -> variable -> shape; for a layer not in
    it: BatchNormalization's gamma, beta, moving mean, variance, or kernel, bias). Only arrays of the expected
    shape are read (see :func:`_read_variable`)."""
    import h5py

    params: KerasParams = {}
    for key, group in _group(f, "layers").items():
        if not isinstance(group, h5py.Group):
            raise Damaged(f"is damaged: layers/{key} is a {type(group).__name__}, expected a group")
        variables = group.get("vars")
        if variables is None or not len(variables):
            continue
        if not isinstance(variables, h5py.Group):
            raise Damaged(f"is damaged: layers/{key}/vars is a {type(variables).__name__}, expected a group")
        name = text_attr(variables.attrs, "name", "")
        names = tuple(shapes.get(name) or (BN_VARIABLES if name.endswith("_bn") else ("kernel", "bias")))
        if sorted(variables) != sorted(str(i) for i in range(len(variables))) or len(variables) != len(names):
            raise WeightsError(
                f"layer {name!r} has variables {sorted(variables)}, expected {len(names)} ({', '.join(names)})"
            )
        if name in params:
            raise Damaged(f"is damaged: layer {name!r} appears twice")
        wanted = shapes.get(name, {})
        params[name] = {
            var: _read_variable(variables[str(i)], f"layers/{key}/vars/{i} ({name}/{var})", wanted.get(var))
            for i, var in enumerate(names)
        }
    return params


def _legacy_params(f, arch: str, head_classes: HeadClasses | None) -> KerasParams:
    """Parameters of a file of :data:`LEGACY_FORMAT`: ``weights/<keras layer>/<variable>``."""
    import h5py

    shapes = keras_shapes(arch, head_classes)
    params: KerasParams = {}
    for layer, group in _group(f, "weights").items():
        if not isinstance(group, h5py.Group):
            raise Damaged(f"is damaged: weights/{layer} is a {type(group).__name__}, expected a group")
        wanted = shapes.get(layer, {})
        params[layer] = {
            var: _read_variable(ds, f"weights/{layer}/{var}", wanted.get(var)) for var, ds in group.items()
        }
    return params


def _file_head_classes(f, arch: str) -> dict[str, int] | None:
    """The ``head_classes`` attribute (both heads' class counts), None where absent (the original's sizes)."""
    if "head_classes" not in f.attrs:
        return None
    try:
        sizes = json.loads(text_attr(f.attrs, "head_classes"))
    except json.JSONDecodeError as exc:
        raise Damaged(f"is damaged: attribute 'head_classes' is not JSON ({exc})") from None
    if not isinstance(sizes, dict) or set(sizes) != set(HEAD_NAMES):
        raise Damaged(f"is damaged: attribute 'head_classes' is {sizes!r:.100}, expected a class count per head")
    try:
        return custom_head_classes(arch, sizes)
    except ConfigError as exc:
        raise Damaged(f"is damaged: attribute 'head_classes': {exc}") from None


def _file_categories(f, arch: str, head_classes: HeadClasses | None) -> dict[str, list[str]]:
    categories = {}
    for key in f.attrs:
        if key.startswith("categories_"):
            try:
                names = json.loads(text_attr(f.attrs, key))
            except json.JSONDecodeError as exc:
                raise Damaged(f"is damaged: attribute {key!r} is not JSON ({exc})") from None
            if not isinstance(names, list):
                raise Damaged(f"is damaged: attribute {key!r} holds a {type(names).__name__}, expected a list")
            categories[key.removeprefix("categories_")] = names
    try:
        return check_categories(arch, categories, head_classes)
    except ConfigError as exc:
        raise Damaged(f"has bad category names: {exc}") from None


def _read_weights_file(f) -> WeightsFile:
    fmt = text_attr(f.attrs, "format", "")
    if fmt not in (FORMAT, LEGACY_FORMAT):
        raise WeightsError(
            f"is not a soundnet_keras weights file: format attribute is {fmt or None!r}, expected {FORMAT!r} "
            f"(convert Torch7 files with convert/t7_to_h5.py)"
        )
    arch = text_attr(f.attrs, "architecture")
    if l3_tables.is_l3(arch):
        raise WeightsError(
            f"is an L³-Net weights file (architecture {arch!r}), not a SoundNet one: load it with "
            "soundnet_keras.load_network(path) or soundnet_keras.l3.L3Net.from_pretrained(path)"
        )
    if arch not in architectures():
        raise Damaged(f"is damaged: architecture {arch!r:.80}, expected one of {', '.join(architectures())}")
    head_classes = _file_head_classes(f, arch)
    if fmt == FORMAT:
        params = keras_layout_params(f, keras_shapes(arch, head_classes))
    else:
        params = _legacy_params(f, arch, head_classes)
    categories = _file_categories(f, arch, head_classes)
    source, source_sha256 = text_attr(f.attrs, "source", ""), text_attr(f.attrs, "source_sha256", "")
    return WeightsFile(arch, params, source, source_sha256, categories, fmt, head_classes)


def load_weights(path: str | os.PathLike) -> WeightsFile:
    """Read a ``.weights.h5`` file written by :func:`save_weights`, checking format and shapes strictly.

    Any missing, unreadable, truncated or corrupt file (missing attribute, group or dataset; wrong dtype or shape;
    bad category names; HDF5 structures that do not decode) raises :class:`~soundnet_keras.errors.WeightsError`
    naming the file and what is wrong; a dataset is only read once its dtype and shape are known to be right.
    HDF5 files as Keras writes them have no checksum: weight values altered by corruption are not detected, except
    NaN and Inf (compare the file's sha256 with a known good copy's to be sure).
    """
    import h5py  # heavy (h5py): only when a file is read or written; pretrained and reference import this module

    path = Path(path)
    with reading_weights(path):
        with h5py.File(path, "r") as f:
            weights = _read_weights_file(f)
        check_shapes(weights.architecture, weights.params, weights.head_classes)
    return weights


@contextlib.contextmanager
def reading_weights(path: Path) -> Iterator[None]:
    """Around reading the weights file ``path``: a missing file, damage (:class:`Damaged`), a misfit or h5py's own
    errors all become one :class:`~soundnet_keras.errors.WeightsError` naming the file."""
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    try:
        yield
    except Damaged as exc:
        raise WeightsError(f"weights file {str(path)!r} {exc}") from None
    except WeightsError as exc:
        raise WeightsError(f"weights file {str(path)!r}: {exc}") from None
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {str(path)!r}: {exc}") from None
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError, OverflowError) as exc:
        # h5py's errors for HDF5 structures that do not decode (a corrupt header, link or attribute)
        raise WeightsError(
            f"weights file {str(path)!r} is damaged: {type(exc).__name__} while reading it ({exc})"
        ) from None


def file_architecture(path: str | os.PathLike) -> str | None:
    """The ``architecture`` attribute of a soundnet_keras ``.weights.h5`` file (SoundNet's or L³-Net's), or None for
    any other file (missing, not HDF5, another format): what :func:`soundnet_keras.load_network` dispatches on."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if text_attr(f.attrs, "format", "") not in (FORMAT, LEGACY_FORMAT):
                return None
            return text_attr(f.attrs, "architecture", "") or None
    except (OSError, Damaged, KeyError, ValueError, TypeError, RuntimeError):
        return None


def params_digest(architecture: str, params: KerasParams) -> str:
    """sha256 of an architecture's parameter values (float32, sorted by layer and variable, shapes included): the
    identity of a set of weights whatever file holds them. :func:`~soundnet_keras.transfer.model_identity` is this
    digest of a live network, and :mod:`soundnet_keras.presets` pins the pretrained weights by it."""
    digest = hashlib.sha256(architecture.encode())
    for layer, variables in sorted(params.items()):
        for var, value in sorted(variables.items()):
            array = np.ascontiguousarray(value, dtype=np.float32)
            digest.update(f"{layer}/{var}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()
