"""L³-Net parameters and their ``.weights.h5`` files: the same format as SoundNet's (:mod:`soundnet_keras.weights`).

A file is Keras' own ``.weights.h5`` of the AVC model (audio, vision and fusion layers; ``keras.Model.load_weights``
of :func:`~.network.build_l3`'s ``avc`` reads it) with the root attributes ``format``
(:data:`~soundnet_keras.weights.FORMAT`), ``architecture`` (``"l3"``), ``source`` and ``source_sha256``. Loading is
strict: every parameter of :func:`~.tables.parameter_shapes` present with its shape and finite, nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from ..errors import WeightsError
from ..weights import (
    FORMAT,
    KerasParams,
    check_params,
    keras_layout_params,
    keras_weights_file,
    reading_weights,
    text_attr,
)
from .tables import ARCHITECTURES, is_l3, parameter_shapes


@dataclass
class L3Weights:
    """The content of an L³-Net ``.weights.h5`` file."""

    architecture: str
    params: KerasParams
    source: str = ""
    source_sha256: str = ""


def get_params(model: keras.Model, arch: str) -> KerasParams:
    """The parameters of ``model`` (an AVC model of ``arch``) by layer and variable, as NumPy arrays."""
    return {
        name: dict(zip(variables, (np.asarray(w) for w in model.get_layer(name).get_weights()), strict=True))
        for name, variables in parameter_shapes(arch).items()
    }


def set_params(model: keras.Model, arch: str, params: KerasParams) -> None:
    """Put ``params`` into ``model`` (an AVC model of ``arch``), strictly (see the module docstring)."""
    shapes = parameter_shapes(arch)
    check_params(shapes, params, arch)
    for name, variables in shapes.items():
        model.get_layer(name).set_weights([np.asarray(params[name][var], np.float32) for var in variables])


def save_l3_weights(path: str | os.PathLike, model: keras.Model, weights: L3Weights) -> Path:
    """Write ``weights`` (put into ``model``, the AVC model of their architecture) to ``path``, atomically."""
    set_params(model, weights.architecture, weights.params)
    with keras_weights_file(path, model, weights.architecture, weights.source, weights.source_sha256):
        pass
    return Path(path)


def load_l3_weights(path: str | os.PathLike) -> L3Weights:
    """Read an L³-Net weights file strictly; a SoundNet file, another format or any damage is a
    :class:`~soundnet_keras.errors.WeightsError` naming the file."""
    import h5py

    path = Path(path)
    with reading_weights(path):
        with h5py.File(path, "r") as f:
            fmt = text_attr(f.attrs, "format", "")
            if fmt != FORMAT:
                raise WeightsError(
                    f"is not an L³-Net weights file: format attribute is {fmt or None!r}, expected {FORMAT!r}"
                )
            arch = text_attr(f.attrs, "architecture")
            if not is_l3(arch):
                raise WeightsError(
                    f"holds architecture {arch!r:.80}, not an L³-Net one ({', '.join(map(repr, ARCHITECTURES))}): "
                    "load a SoundNet file with SoundNet.from_pretrained, or either with soundnet_keras.load_network"
                )
            params = keras_layout_params(f, parameter_shapes(arch))
            source, sha = text_attr(f.attrs, "source", ""), text_attr(f.attrs, "source_sha256", "")
        check_params(parameter_shapes(arch), params, arch)
    return L3Weights(arch, params, source or str(path), sha)
