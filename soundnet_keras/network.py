"""Build the Keras model of a SoundNet architecture from its layer table, and put parameters into it.

The model is functional: input ``waveform`` of shape (batch, samples), float32 in [-1, 1] at 22,050 Hz; the first
layer (``input_scaling``) multiplies by :data:`~soundnet_keras.architecture.WAVEFORM_SCALE`. Layers are named after
the table: ``conv1_pad`` (explicit symmetric zero padding), ``conv1`` (the convolution), ``conv1_bn``,
``conv1_relu``, ``pool1``, ... and the heads ``objects`` and ``scenes`` (logits). The model's outputs are the two
heads as a dict; any other stage is reachable with :func:`stage_layer`.

``fold_batchnorm=True`` builds the inference variant in which each BatchNorm is folded into the convolution before
it (same outputs to float precision, fewer operations); parameters are then folded by :func:`set_params`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from .architecture import (
    BATCHNORM_EPSILON,
    BATCHNORM_MOMENTUM,
    WAVEFORM_SCALE,
    Conv,
    Pool,
    heads,
    layer_table,
    output_names,
    trunk,
)
from .errors import ConfigError, WeightsError
from .weights import BN_VARIABLES, check_shapes


def stage_layer(arch: str, name: str) -> str:
    """Keras layer whose output is the named stage: ``convN`` -> ``convN_relu``; pools and heads keep their name."""
    for layer in layer_table(arch):
        if layer.name == name:
            return f"{name}_relu" if isinstance(layer, Conv) and layer.relu else name
    names = ", ".join(output_names(arch))
    raise ConfigError(f"unknown layer {name!r} for architecture {arch!r}: expected one of {names}")


def _conv_block(x: keras.KerasTensor, layer: Conv, fold_batchnorm: bool) -> keras.KerasTensor:
    if layer.pad:
        x = keras.layers.ZeroPadding1D(layer.pad, name=f"{layer.name}_pad")(x)
    x = keras.layers.Conv1D(
        layer.filters,
        layer.kernel,
        strides=layer.stride,
        padding="valid",
        name=layer.name,
        # The authors' initialisation (main_train.lua: weights_init), used for random-init models.
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01),
        bias_initializer="zeros",
    )(x)
    if layer.batchnorm and not fold_batchnorm:
        x = keras.layers.BatchNormalization(
            epsilon=BATCHNORM_EPSILON,
            momentum=BATCHNORM_MOMENTUM,
            gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02),
            name=f"{layer.name}_bn",
        )(x)
    if layer.relu:
        x = keras.layers.ReLU(name=f"{layer.name}_relu")(x)
    return x


def build_network(arch: str = "soundnet8", *, fold_batchnorm: bool = False, name: str | None = None) -> keras.Model:
    """Build the Keras functional model of ``arch`` from its layer table (random initialisation)."""
    waveform = keras.Input(shape=(None,), name="waveform", dtype="float32")
    x = keras.layers.Reshape((-1, 1), name="add_channel")(waveform)
    x = keras.layers.Rescaling(WAVEFORM_SCALE, name="input_scaling")(x)
    for layer in trunk(arch):
        if isinstance(layer, Pool):
            x = keras.layers.MaxPooling1D(layer.size, strides=layer.stride, padding="valid", name=layer.name)(x)
        else:
            x = _conv_block(x, layer, fold_batchnorm)
    outputs = {head.name: _conv_block(x, head, fold_batchnorm) for head in heads(arch)}
    suffix = "_folded" if fold_batchnorm else ""
    return keras.Model(waveform, outputs, name=name or f"{arch}{suffix}")


def fold_params(arch: str, keras_params: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """Fold every BatchNorm into the preceding convolution (exact in eval mode, computed in float64)."""
    folded: dict[str, dict[str, np.ndarray]] = {}
    for layer in layer_table(arch):
        if not isinstance(layer, Conv):
            continue
        kernel = np.asarray(keras_params[layer.name]["kernel"], np.float64)
        bias = np.asarray(keras_params[layer.name]["bias"], np.float64)
        if layer.batchnorm:
            bn = {var: np.asarray(keras_params[f"{layer.name}_bn"][var], np.float64) for var in BN_VARIABLES}
            scale = bn["gamma"] / np.sqrt(bn["moving_variance"] + BATCHNORM_EPSILON)
            kernel = kernel * scale
            bias = (bias - bn["moving_mean"]) * scale + bn["beta"]
        folded[layer.name] = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
    return folded


def _weighted_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    return {layer.name: layer for layer in model.layers if layer.weights}


def get_params(model: keras.Model) -> dict[str, dict[str, np.ndarray]]:
    """Read a (non-folded) model's parameters in Keras layout: layer -> {variable: array}."""
    params = {}
    for name, layer in _weighted_layers(model).items():
        names = BN_VARIABLES if isinstance(layer, keras.layers.BatchNormalization) else ("kernel", "bias")
        params[name] = dict(zip(names, (np.asarray(w) for w in layer.get_weights()), strict=True))
    return params


def set_params(model: keras.Model, arch: str, keras_params: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Put Keras-layout parameters into ``model`` strictly: every weighted layer filled, every parameter used.

    A model built with ``fold_batchnorm=True`` receives the folded parameters automatically.
    """
    check_shapes(arch, keras_params)
    layers = _weighted_layers(model)
    folded = not any(isinstance(layer, keras.layers.BatchNormalization) for layer in layers.values())
    params = fold_params(arch, keras_params) if folded else keras_params
    missing = sorted(set(layers) - set(params))
    unused = sorted(set(params) - set(layers))
    if missing or unused:
        raise WeightsError(f"model {model.name!r}: layers without parameters {missing}, parameters unused {unused}")
    for name, layer in layers.items():
        names: Sequence[str] = (
            BN_VARIABLES if isinstance(layer, keras.layers.BatchNormalization) else ("kernel", "bias")
        )
        layer.set_weights([np.asarray(params[name][var], np.float32) for var in names])
