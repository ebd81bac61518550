"""Keras-native model files with our metadata: a standard ``.keras`` archive plus one JSON member.

A trained head (:class:`~soundnet_keras.transfer.ClipClassifier`) and a fine-tuned network
(:class:`~soundnet_keras.training.finetune.FinetunedClassifier`) are saved as ``.keras`` files that Keras itself
loads -- ``keras.saving.load_model(path, safe_mode=True)``, built-in layers only, no lambdas, no pickle -- and that
carry, beside Keras' ``config.json``, ``metadata.json`` and ``model.weights.h5``, a member :data:`METADATA_MEMBER`
with what our loaders need (format, class names, settings). Our loaders never build a model from the archive's
``config.json``: they rebuild it from the metadata and load the weights strictly (every variable, right shapes).
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .files import atomic_path

METADATA_MEMBER = "soundnet_keras.json"
"""Name of the JSON member holding our metadata inside a ``.keras`` archive (Keras ignores it)."""

MAX_METADATA_BYTES = 16 * 2**20
"""Our metadata is a few kB; a larger member is refused rather than read into memory."""


@contextlib.contextmanager
def float64_scope() -> Iterator[None]:
    """Let Keras hold float64 variables inside the block on every backend: JAX truncates float64 to float32 unless
    its 64-bit mode is on, so on JAX the block runs with it on (TensorFlow and PyTorch have float64 always)."""
    import keras  # heavy (Keras): only where a Keras model is built or loaded

    if keras.backend.backend() != "jax":
        yield
        return
    import jax  # the active backend: Keras has imported it already

    with jax.enable_x64(True):
        yield


def save_keras(model: Any, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write ``model`` to ``path`` (a ``.keras`` file) with ``metadata`` beside it, atomically: a reader sees the old
    file or the complete new one."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ConfigError(f"a Keras model file must end in .keras, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=1))
    return path


def is_keras_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip archive (a ``.keras`` file) rather than, e.g., an HDF5 file."""
    return zipfile.is_zipfile(path)


def read_metadata(path: str | os.PathLike, formats: Sequence[str], what: str) -> dict[str, Any]:
    """Our metadata of the ``.keras`` file ``path``, whose ``format`` must be one of ``formats``; ``what`` names the
    kind of file in errors ("head file", "fine-tuned model")."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(METADATA_MEMBER)
            if info.file_size > MAX_METADATA_BYTES:
                raise ConfigError(f"{what} {str(path)!r}: {METADATA_MEMBER} is {info.file_size} bytes, too large")
            metadata = json.loads(archive.read(info).decode("utf-8"))
    except KeyError:
        raise ConfigError(
            f"{str(path)!r} is a .keras file but not a soundnet_keras {what}: it has no {METADATA_MEMBER}"
        ) from None
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"cannot read {what} {str(path)!r}: {exc}") from None
    found = metadata.get("format") if isinstance(metadata, dict) else None
    if found not in formats:
        expected = " or ".join(map(repr, formats))
        raise ConfigError(f"{str(path)!r} is not a soundnet_keras {what}: format is {found!r}, expected {expected}")
    return metadata


def load_keras(path: str | os.PathLike, what: str) -> Any:
    """The Keras model of the ``.keras`` file ``path``, loaded by Keras with ``safe_mode=True`` (no lambdas, no
    code from the file) and not compiled."""
    import keras  # heavy (Keras/TensorFlow): reading a file's metadata needs no Keras

    try:
        return keras.saving.load_model(os.fspath(path), safe_mode=True, compile=False)
    except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"cannot load the Keras model of {what} {str(path)!r}: {exc}") from None


def weighted_layers(model: Any) -> dict[str, Any]:
    """The layers of ``model`` that hold variables, by name, looking one level into nested models (a trunk)."""
    layers = {}
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        for sub in inner if inner else [layer]:
            if sub.weights:
                layers[sub.name] = sub
    return layers


def copy_weights_strict(source: Any, target: Any, where: str) -> None:
    """Copy every variable of ``source`` into the same-named layer of ``target``: a layer missing on either side, or
    a variable of another shape, is an error naming ``where`` (the file)."""
    have, want = weighted_layers(source), weighted_layers(target)
    missing, unused = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or unused:
        raise ConfigError(f"{where}: layers without weights {missing}, weights unused {unused}")
    for name, layer in want.items():
        values = have[name].get_weights()
        shapes = [tuple(v.shape) for v in layer.weights]
        if [np.shape(v) for v in values] != shapes:
            found = [np.shape(v) for v in values]
            raise ConfigError(f"{where}: layer {name!r} has variables of shapes {found}, expected {shapes}")
        layer.set_weights(values)
