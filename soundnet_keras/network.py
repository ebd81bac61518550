"""Build the Keras model of a SoundNet architecture from its layer table, and put parameters into it.

The model is functional: input ``waveform`` of shape (batch, samples), float32 in [-1, 1] at 22,050 Hz; the first
layer (``input_scaling``) multiplies by :data:`~soundnet_keras.architecture.WAVEFORM_SCALE`. Layers are named after
the table: ``conv1_pad`` (explicit symmetric zero padding), ``conv1`` (the convolution), ``conv1_bn``,
``conv1_relu``, ``pool1``, ... and the heads ``objects`` and ``scenes`` (logits). The model's outputs are the two
heads as a dict; any other stage is reachable with :func:`stage_layer`.

The fast inference pass over the same table (what :meth:`SoundNet.forward` runs) is :mod:`soundnet_keras.inference`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np

from .architecture import (
    BATCHNORM_EPSILON,
    BATCHNORM_MOMENTUM,
    HEAD_NAMES,
    WAVEFORM_SCALE,
    Conv,
    HeadClasses,
    Pool,
    geometry,
    head_margin,
    heads,
    layer_table,
    margin_length,
    output_names,
    reliable_min_samples,
    repeated_length,
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


def _conv_block(x: keras.KerasTensor, layer: Conv) -> keras.KerasTensor:
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
    if layer.batchnorm:
        x = keras.layers.BatchNormalization(
            epsilon=BATCHNORM_EPSILON,
            momentum=BATCHNORM_MOMENTUM,
            gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02),
            name=f"{layer.name}_bn",
        )(x)
    if layer.relu:
        x = keras.layers.ReLU(name=f"{layer.name}_relu")(x)
    return x


def build_network(
    arch: str = "soundnet8", *, name: str | None = None, head_classes: HeadClasses | None = None
) -> keras.Model:
    """Build the Keras functional model of ``arch`` from its layer table (random initialisation).

    ``head_classes`` (head -> classes) sizes the heads otherwise than the original (1000 objects, 401 scenes): the
    same layers, names and geometry, other output channels (see :func:`~soundnet_keras.architecture.layer_table`).
    """
    waveform = keras.Input(shape=(None,), name="waveform", dtype="float32")
    x = keras.layers.Reshape((-1, 1), name="add_channel")(waveform)
    x = keras.layers.Rescaling(WAVEFORM_SCALE, name="input_scaling")(x)
    for layer in trunk(arch):
        if isinstance(layer, Pool):
            x = keras.layers.MaxPooling1D(layer.size, strides=layer.stride, padding="valid", name=layer.name)(x)
        else:
            x = _conv_block(x, layer)
    outputs = {head.name: _conv_block(x, head) for head in heads(arch, head_classes)}
    return keras.Model(waveform, outputs, name=name or arch)


def _weighted_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    return {layer.name: layer for layer in model.layers if layer.weights}


def get_params(model: keras.Model) -> dict[str, dict[str, np.ndarray]]:
    """Read a (non-folded) model's parameters in Keras layout: layer -> {variable: array}."""
    params = {}
    for name, layer in _weighted_layers(model).items():
        names = BN_VARIABLES if isinstance(layer, keras.layers.BatchNormalization) else ("kernel", "bias")
        params[name] = dict(zip(names, (np.asarray(w) for w in layer.get_weights()), strict=True))
    return params


def set_params(
    model: keras.Model,
    arch: str,
    keras_params: Mapping[str, Mapping[str, np.ndarray]],
    *,
    head_classes: HeadClasses | None = None,
) -> None:
    """Put Keras-layout parameters into ``model`` strictly: every weighted layer filled, every parameter used
    (heads sized by ``head_classes``, as the model was built)."""
    check_shapes(arch, keras_params, head_classes)
    layers = _weighted_layers(model)
    params = keras_params
    missing = sorted(set(layers) - set(params))
    unused = sorted(set(params) - set(layers))
    if missing or unused:
        raise WeightsError(f"model {model.name!r}: layers without parameters {missing}, parameters unused {unused}")
    for name, layer in layers.items():
        names: Sequence[str] = (
            BN_VARIABLES if isinstance(layer, keras.layers.BatchNormalization) else ("kernel", "bias")
        )
        layer.set_weights([np.asarray(params[name][var], np.float32) for var in names])


# ------------------------------------------------------------------------------------------------------- serving
@keras.saving.register_keras_serializable(package="soundnet_keras")
class LoopPad(keras.layers.Layer):
    """The heads' padding policy inside a model: (batch, samples) -> (batch, padded samples), circularly.

    Inputs shorter than ``short_below`` samples are repeated to ``crop_samples`` (the training crop); where the last
    head frame (``min_samples`` + k ``hop``) of a longer input has less than ``margin`` samples after it, the input's
    start is appended up to that (see :func:`~soundnet_keras.architecture.plan_input`, ``pad="repeat"``).
    """

    def __init__(self, short_below: int, crop_samples: int, min_samples: int, hop: int, margin: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.short_below, self.crop_samples = int(short_below), int(crop_samples)
        self.min_samples, self.hop, self.margin = int(min_samples), int(hop), int(margin)

    def call(self, waveform):
        ops = keras.ops
        length = ops.shape(waveform)[1]
        if isinstance(length, int):  # a static length (JAX, PyTorch, eager TensorFlow): plain arithmetic
            needed = margin_length(max(length, self.min_samples), self.min_samples, self.hop, self.margin)
            target = self.crop_samples if length < self.short_below else max(length, needed)
        else:  # a symbolic length (a TensorFlow graph of any input size)
            needed = margin_length(ops.maximum(length, self.min_samples), self.min_samples, self.hop, self.margin)
            target = ops.where(length < self.short_below, self.crop_samples, ops.maximum(length, needed))
        return ops.take(waveform, ops.arange(target) % length, axis=1)  # sample i is sample i mod n

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None)

    def get_config(self) -> dict:
        names = ("short_below", "crop_samples", "min_samples", "hop", "margin")
        return {**super().get_config(), **{name: getattr(self, name) for name in names}}


@keras.saving.register_keras_serializable(package="soundnet_keras")
class KeepFrames(keras.layers.Layer):
    """Keep the head frames :class:`LoopPad`'s policy reports: [logits (batch, frames, classes), waveform] -> logits.

    For input shorter than ``short_below`` every frame of the repeated crop; otherwise the frames the unpadded input
    has, ``(samples - min_samples) // hop + 1``.
    """

    def __init__(self, short_below: int, min_samples: int, hop: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.short_below, self.min_samples, self.hop = int(short_below), int(min_samples), int(hop)

    def call(self, inputs):
        logits, waveform = inputs
        length, available = keras.ops.shape(waveform)[1], keras.ops.shape(logits)[1]
        if isinstance(length, int):  # a static length (JAX, PyTorch, eager TensorFlow): plain arithmetic
            frames = available if length < self.short_below else (length - self.min_samples) // self.hop + 1
        else:  # a symbolic length (a TensorFlow graph of any input size)
            frames = keras.ops.where(length < self.short_below, available, (length - self.min_samples) // self.hop + 1)
        return logits[:, :frames]

    def compute_output_shape(self, input_shapes):
        logits_shape = input_shapes[0]
        return (logits_shape[0], None, logits_shape[2])

    def get_config(self) -> dict:
        names = ("short_below", "min_samples", "hop")
        return {**super().get_config(), **{name: getattr(self, name) for name in names}}


def build_serving_model(network: keras.Model, arch: str) -> keras.Model:
    """``network`` (shared weights) behind the heads' padding policy: any input of at least one sample gives the
    head logits that :meth:`SoundNet.predict` turns into probabilities (``pad="repeat"``), never a shape error or NaN.
    """
    short_below = reliable_min_samples(arch)
    geo = geometry(arch, HEAD_NAMES[0])
    waveform = keras.Input(shape=(None,), name="waveform", dtype="float32")
    loop = LoopPad(short_below, repeated_length(arch), geo.min_samples, geo.hop, head_margin(arch), name="loop_pad")
    logits = network(loop(waveform))
    keep = KeepFrames(short_below, geo.min_samples, geo.hop, name="keep_frames")
    outputs = {name: keep([logits[name], waveform]) for name in HEAD_NAMES}
    return keras.Model(waveform, outputs, name=f"{network.name}_serving")


EXPORT_FORMATS = ("keras", "tf_saved_model")

SAVED_MODEL_BACKENDS = ("tensorflow",)
"""Backends the serving model exports as a SavedModel from: JAX's exporter cannot express the padding policy (an
output length chosen by comparing the input length), PyTorch has no SavedModel exporter."""


def export_serving(network: keras.Model, arch: str, path: str | os.PathLike, export_format: str = "keras") -> Path:
    """Write :func:`build_serving_model` of ``network``: a ``.keras`` file (``export_format="keras"``), or a SavedModel
    folder (``"tf_saved_model"``) whose ``serve`` signature takes (batch, samples) float32 and needs nothing of this
    package."""
    path = Path(path)
    if export_format not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {export_format!r}: expected 'keras' or 'tf_saved_model'")
    if export_format == "keras" and path.suffix != ".keras":
        raise ConfigError(f"a Keras model file must end in .keras, got {str(path)!r}")
    backend = keras.backend.backend()
    if export_format == "tf_saved_model" and backend not in SAVED_MODEL_BACKENDS:
        raise ConfigError(
            f"export format 'tf_saved_model' needs the TensorFlow Keras backend (KERAS_BACKEND=tensorflow), but this "
            f"process runs {backend!r}; export format 'keras' works on every backend"
        )
    model = build_serving_model(network, arch)
    if export_format == "keras":
        model.save(path)
    else:
        model.export(str(path), format="tf_saved_model", verbose=False)
    return path
