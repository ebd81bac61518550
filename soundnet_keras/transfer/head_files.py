"""A fitted :class:`~soundnet_keras.transfer.ClipClassifier` as a file: a ``.keras`` model plus our settings.

The Keras model is the head itself -- window features (float64) -> ``standardize`` (a ``Normalization`` layer, only
when the head standardises) -> ``scores`` (``Dense``: decision values for the svm, logits otherwise) -- so
``keras.saving.load_model(path, safe_mode=True)`` gives a model that scores window rows without this package. Our
settings (classes, layers, window, the network's weights identity...) are the archive's
:data:`~soundnet_keras.keras_files.METADATA_MEMBER`. Files of the first format (HDF5, ``soundnet_keras.head/1``)
are still read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, SoundNetError
from ..keras_files import float64_scope, is_keras_archive, load_keras, read_metadata, save_keras
from .heads import LinearHead

FORMAT = "soundnet_keras.head/2"
"""``format`` of a head file written by :meth:`ClipClassifier.save` (a ``.keras`` archive)."""

LEGACY_FORMAT = "soundnet_keras.head/1"
"""``format`` attribute of the first head files (HDF5), still read."""

FINETUNED_FORMAT = "soundnet_keras.finetuned/2"
"""``format`` of a fine-tuned network file (read by :mod:`soundnet_keras.training.finetune`)."""

LEGACY_FINETUNED_FORMAT = "soundnet_keras.finetuned/1"


def head_model(head: LinearHead) -> Any:
    """The Keras model of ``head``: (windows, dims) float64 -> (windows, classes) scores, as
    :meth:`LinearHead.scores` computes them."""
    import keras  # heavy (Keras/TensorFlow): soundnet_keras.transfer is imported without Keras

    classes, dims = head.weights.shape
    rows = keras.Input((dims,), name="window_features", dtype="float64")
    x = rows
    if head.mean is not None and head.scale is not None:
        standardize = keras.layers.Normalization(name="standardize", dtype="float64")
        x = standardize(x)
        standardize.set_weights([head.mean, np.square(head.scale), np.int64(0)])
        standardize.finalize_state()
    dense = keras.layers.Dense(classes, name="scores", dtype="float64")
    model = keras.Model(rows, dense(x), name="soundnet_head")
    dense.set_weights([head.weights.T, head.bias])
    return model


def head_from_model(model: Any, where: str) -> LinearHead:
    """The :class:`LinearHead` of a model built by :func:`head_model` (``sqrt`` of the variance gives back the
    exact scale: the square root of a correctly rounded square is exact)."""
    names = {layer.name: layer for layer in model.layers}
    if "scores" not in names or set(names) - {"window_features", "standardize", "scores"}:
        raise ConfigError(f"{where}: expected layers window_features, [standardize,] scores; found {sorted(names)}")
    kernel, bias = (np.asarray(w, np.float64) for w in names["scores"].get_weights())
    mean = scale = None
    if "standardize" in names:
        mean, variance, _count = (np.asarray(w, np.float64) for w in names["standardize"].get_weights())
        scale = np.sqrt(variance)
    return LinearHead(kernel.T, bias, mean, scale)


def save_head(path: str | os.PathLike, head: LinearHead, settings: dict[str, Any]) -> Path:
    """Write ``head`` and ``settings`` to the ``.keras`` file ``path``, atomically (float64 on every backend)."""
    with float64_scope():
        return save_keras(head_model(head), path, {"format": FORMAT, "settings": settings})


def read_head(path: str | os.PathLike) -> tuple[LinearHead, dict[str, Any]]:
    """The head and settings of a head file (``.keras``, or the first HDF5 format)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"head file {str(path)!r} does not exist")
    if not is_keras_archive(path):
        return _read_legacy(path)
    settings = read_metadata(path, [FORMAT], "head file").get("settings")
    if not isinstance(settings, dict):
        raise ConfigError(f"head file {str(path)!r} has no settings")
    with float64_scope():
        return head_from_model(load_keras(path, "head file"), repr(str(path))), settings


def _read_legacy(path: Path) -> tuple[LinearHead, dict[str, Any]]:
    import h5py  # heavy (h5py): only for head files of the first (HDF5) format

    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            if fmt != LEGACY_FORMAT:
                raise ConfigError(
                    f"{str(path)!r} is not a soundnet_keras head file: format attribute is {fmt!r}, expected "
                    f"{FORMAT!r} (.keras) or {LEGACY_FORMAT!r} (HDF5)"
                )
            settings = json.loads(f.attrs["settings"])
            arrays = {
                name: np.asarray(f[name][()], np.float64) for name in ("weights", "bias", "mean", "scale") if name in f
            }
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, SoundNetError):
            raise
        raise ConfigError(f"cannot read head file {str(path)!r}: {exc}") from None
    try:
        return LinearHead(arrays["weights"], arrays["bias"], arrays.get("mean"), arrays.get("scale")), settings
    except KeyError as exc:
        raise ConfigError(f"head file {str(path)!r} lacks the array {exc}") from None
