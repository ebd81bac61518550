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
when known, ``categories_objects`` / ``categories_scenes`` (JSON lists of names). Files of the first format
(:data:`LEGACY_FORMAT`: arrays under ``/weights/<keras layer>/<variable>``) are still read; the pretrained cache
rewrites them in the Keras layout on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .architecture import HEAD_NAMES, Conv, heads, layer_table
from .errors import ConfigError, ConversionError, WeightsError
from .files import atomic_path

FORMAT = "soundnet_keras.weights/2"
"""Keras' ``.weights.h5`` layout plus our metadata attributes."""

LEGACY_FORMAT = "soundnet_keras.weights/1"
"""The first format: our own HDF5 layout, which Keras cannot read (read here, never written)."""

TorchParams = dict[str, dict[str, np.ndarray]]
KerasParams = dict[str, dict[str, np.ndarray]]

BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def keras_shapes(arch: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """Expected Keras-layout parameter shapes of ``arch``, derived from its layer table."""
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    in_channels = 1
    trunk_channels = 1
    for layer in layer_table(arch):
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


def check_shapes(arch: str, keras_params: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Raise :class:`WeightsError` listing every missing, unused or mis-shaped parameter."""
    expected = keras_shapes(arch)
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
    for layer, variables in keras_params.items():
        for var, value in variables.items():
            if not np.all(np.isfinite(value)):
                problems.append(f"{layer}/{var} has NaN or Inf values")
    if problems:
        raise WeightsError(f"weights do not fit {arch}: " + "; ".join(problems))


def check_categories(arch: str, categories: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    """Check category names against the heads of ``arch`` (one name per class) and return them as lists."""
    if not categories:
        return {}
    checked: dict[str, list[str]] = {}
    sizes = {head.name: head.filters for head in heads(arch)}
    for head, names in categories.items():
        if head not in sizes:
            raise ConfigError(f"categories for unknown head {head!r}: expected {' or '.join(map(repr, HEAD_NAMES))}")
        if isinstance(names, str) or not all(isinstance(name, str) and name for name in names):
            raise ConfigError(f"categories for {head!r} must be a sequence of non-empty strings")
        names = list(names)
        if len(names) != sizes[head]:
            raise ConversionError(
                f"{len(names)} category names for {head!r}, but the {arch} head {head!r} has {sizes[head]} classes"
            )
        checked[head] = names
    return checked


def category_names(arch: str, categories: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    """Checked category names of both heads (:func:`check_categories`), ``<head>_0000``... where none are known."""
    checked = check_categories(arch, categories)
    return {
        head.name: checked.get(head.name) or [f"{head.name}_{i:04d}" for i in range(head.filters)]
        for head in heads(arch)
    }


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


def save_weights(path: str | os.PathLike, weights: WeightsFile) -> Path:
    """Write ``weights`` to ``path`` in Keras' layout with our metadata (see the module docstring), atomically: a
    reader sees the old file or the complete new one, never half."""
    import h5py  # heavy (h5py): only when a file is read or written; pretrained and reference import this module

    from .network import build_network, set_params  # imports Keras: only when a file is written

    check_shapes(weights.architecture, weights.params)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_network(weights.architecture)
    set_params(model, weights.architecture, weights.params)
    with atomic_path(path, suffix=".weights.h5") as tmp:  # Keras insists on the .weights.h5 ending
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs["format"] = FORMAT
            f.attrs["architecture"] = weights.architecture
            f.attrs["source"] = weights.source
            f.attrs["source_sha256"] = weights.source_sha256
            for head, names in weights.categories.items():
                f.attrs[f"categories_{head}"] = json.dumps(list(names))
    return path


def _keras_layout_params(f) -> KerasParams:
    """Parameters of a file in Keras' layout: ``layers/<auto name>/vars`` (attribute ``name``: our layer name) holds
    the variables in creation order (Conv1D: kernel, bias; BatchNormalization: gamma, beta, moving mean, variance)."""
    params: KerasParams = {}
    for group in f["layers"].values():
        variables = group.get("vars")
        if variables is None or not len(variables):
            continue
        name = str(variables.attrs.get("name", ""))
        names = BN_VARIABLES if name.endswith("_bn") else ("kernel", "bias")
        arrays = [np.asarray(variables[str(i)][()]) for i in range(len(variables))]
        if len(arrays) != len(names):
            raise WeightsError(
                f"layer {name!r} has {len(arrays)} variables, expected {len(names)} ({', '.join(names)})"
            )
        params[name] = dict(zip(names, arrays, strict=True))
    return params


def load_weights(path: str | os.PathLike) -> WeightsFile:
    """Read a ``.weights.h5`` file written by :func:`save_weights`, checking format and shapes strictly."""
    import h5py  # heavy (h5py): only when a file is read or written; pretrained and reference import this module

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            if fmt not in (FORMAT, LEGACY_FORMAT):
                raise WeightsError(
                    f"{str(path)!r} is not a soundnet_keras weights file: format attribute is {fmt!r}, expected "
                    f"{FORMAT!r} (convert Torch7 files with convert/t7_to_h5.py)"
                )
            arch = str(f.attrs["architecture"])
            if fmt == FORMAT:
                params = _keras_layout_params(f)
            else:
                params = {
                    layer: {var: np.asarray(ds[()]) for var, ds in group.items()}
                    for layer, group in f["weights"].items()
                }
            categories = {
                key.removeprefix("categories_"): json.loads(f.attrs[key])
                for key in f.attrs
                if key.startswith("categories_")
            }
            source, source_sha256 = str(f.attrs.get("source", "")), str(f.attrs.get("source_sha256", ""))
            weights = WeightsFile(arch, params, source, source_sha256, categories, str(fmt))
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {str(path)!r}: {exc}") from None
    except KeyError as exc:
        raise WeightsError(f"weights file {str(path)!r} is damaged: it lacks {exc}") from None
    check_shapes(weights.architecture, weights.params)
    return weights


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
