"""Build L³-Net's Keras models from its layer tables (:mod:`.tables`): audio, vision and AVC, sharing layers.

* ``audio`` — input ``audio`` (batch, 48,000) float32 in [-1, 1] at 48 kHz -> the log-spectrogram (``spectrogram``
  layer, :class:`~.spectrogram.LogSpectrogram`) -> four conv blocks -> ``audio_pool4`` (batch, 512);
* ``vision`` — input ``frame`` (batch, 224, 224, 3) float32 RGB in [0, 1] -> scaled to [-1, 1]
  (``frame_scaling``) -> four conv blocks -> ``vision_pool4`` (batch, 512);
* ``avc`` — inputs ``{"frame": ..., "audio": ...}`` -> concatenation (1024) -> ``fusion_fc1`` (128, ReLU) ->
  ``fusion_fc2``: logits (batch, 2) of the audio-visual correspondence (softmax outside the model, as a loss
  ``from_logits=True`` wants it).

Layers are named after the tables: ``audio_conv1_1`` (the convolution), ``audio_conv1_1_bn``,
``audio_conv1_1_relu``, ``audio_pool1``, ... The three models are one graph: the audio and vision models are the
AVC model's branches, so training the AVC model trains the embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import keras

from .spectrogram import LogSpectrogram
from .tables import BATCHNORM_EPSILON, BATCHNORM_MOMENTUM, WINDOW_SAMPLES, Conv2D, Pool2D, tables


@dataclass
class L3Models:
    """The three Keras models of one L³-Net, sharing their layers; ``stages`` maps each audio table name to its
    output tensor in the audio model's graph (what :func:`stream_model` reads)."""

    audio: keras.Model
    vision: keras.Model
    avc: keras.Model
    stages: Mapping[str, keras.KerasTensor]


def stage_layer(name: str, table: tuple[Conv2D | Pool2D, ...]) -> str:
    """Keras layer whose output is the table stage ``name``: a convolution's ReLU, a pool itself."""
    layer = next(layer for layer in table if layer.name == name)
    return f"{name}_relu" if isinstance(layer, Conv2D) else name


def _subnetwork(
    x, table: tuple[Conv2D | Pool2D, ...], stages: dict, momentum: float = BATCHNORM_MOMENTUM
) -> keras.KerasTensor:
    for layer in table:
        if isinstance(layer, Pool2D):
            if layer.size is None:
                x = keras.layers.GlobalMaxPooling2D(name=layer.name)(x)
            else:
                x = keras.layers.MaxPooling2D(layer.size, strides=layer.size, padding="valid", name=layer.name)(x)
        else:
            x = keras.layers.Conv2D(layer.filters, layer.kernel, padding="same", use_bias=False, name=layer.name)(x)
            x = keras.layers.BatchNormalization(epsilon=BATCHNORM_EPSILON, momentum=momentum, name=f"{layer.name}_bn")(
                x
            )
            x = keras.layers.ReLU(name=f"{layer.name}_relu")(x)
        stages[layer.name] = x
    return x


def build_l3(arch: str = "l3") -> L3Models:
    """The audio, vision and AVC models of ``arch`` (random initialisation: Keras' defaults)."""
    t = tables(arch)
    audio_in = keras.Input(shape=(WINDOW_SAMPLES,), name="audio", dtype="float32")
    frame_in = keras.Input(shape=t.vision_input, name="frame", dtype="float32")
    stages: dict[str, keras.KerasTensor] = {}
    # float32 whatever the global dtype policy: under mixed precision the waveform is not rounded to 16 bits
    # before the STFT, and the convolutions take the log-spectrogram in their own compute dtype
    spectrogram = LogSpectrogram(name="spectrogram", dtype="float32")(audio_in)
    audio = _subnetwork(spectrogram, t.audio, stages, t.batchnorm_momentum)
    vision_stages: dict[str, keras.KerasTensor] = {}
    scaled = keras.layers.Rescaling(2.0, offset=-1.0, name="frame_scaling")(frame_in)
    vision = _subnetwork(scaled, t.vision, vision_stages, t.batchnorm_momentum)
    x = keras.layers.Concatenate(name="fusion_concat")([vision, audio])
    for layer in t.fusion:
        x = keras.layers.Dense(layer.units, name=layer.name)(x)
        if layer.relu:
            x = keras.layers.ReLU(name=f"{layer.name}_relu")(x)
    return L3Models(
        keras.Model(audio_in, audio, name=f"{arch}_audio"),
        keras.Model(frame_in, vision, name=f"{arch}_vision"),
        keras.Model({"frame": frame_in, "audio": audio_in}, x, name=f"{arch}_avc"),
        stages,
    )


def stream_model(models: L3Models, names: tuple[str, ...]) -> keras.Model:
    """The audio model with the outputs ``names``, each max-pooled over frequency and time: (batch, channels) per
    name (the embedding stream's frame of one window). Shares every layer with ``models``."""
    outputs = {}
    for name in names:
        tensor = models.stages[name]
        outputs[name] = tensor if len(tensor.shape) == 2 else keras.layers.GlobalMaxPooling2D()(tensor)
    return keras.Model(models.audio.input, outputs, name=f"{models.audio.name}_stream")
