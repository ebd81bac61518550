"""SoundNet architectures as layer tables, and every number derived from them.

The tables below are the single source of truth for the network: the Keras model, the weight converters, the
NumPy reference forward pass, the minimum input lengths, hops, receptive fields, frame times and the chunk
planning for long files are all computed from them. They mirror Table 1 of the paper and the authors'
``main_train.lua`` (SoundNet-8) and ``main_train_small.lua`` (SoundNet-5).

Geometry, per layer with kernel ``k``, stride ``s`` and symmetric zero padding ``p`` (Torch7 semantics, floor mode)::

    out = floor((n + 2 p - k) / s) + 1

so the smallest input giving ``m`` outputs is ``(m - 1) s + k - 2 p``. For a named output the *hop* is the
number of input samples between two consecutive frames, the *receptive field* the number of input samples a frame
sees (padding included), and the *offset* the input position of the first sample of frame 0's receptive field
(negative where padding reaches before the start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import ConfigError, InputTooShortError

SAMPLE_RATE = 22050
"""Sample rate (Hz) the network was trained on."""

WAVEFORM_SCALE = 256.0
"""Factor from a [-1, 1] waveform to the network's input range [-256, 256].

The original scripts load audio with Torch's ``audio.load`` (int32-range samples) and multiply by 2^-23; a 16-bit
or float file read as [-1, 1] therefore enters the network multiplied by 2^31 * 2^-23 = 256. This is the one place
where that constant lives; the Keras model applies it in its first layer (``input_scaling``).
"""

BATCHNORM_EPSILON = 1e-5
"""Torch7's BatchNormalization epsilon (Keras defaults to 1e-3, a numerical bug of the public Keras ports)."""

BATCHNORM_MOMENTUM = 0.9
"""Keras momentum equivalent to Torch7's default running-average momentum 0.1."""


@dataclass(frozen=True)
class Conv:
    """A 1-D convolution along time. ``head`` convolutions read the trunk's last output and give logits."""

    name: str
    filters: int
    kernel: int
    stride: int
    pad: int
    batchnorm: bool = True
    relu: bool = True
    head: bool = False


@dataclass(frozen=True)
class Pool:
    """A 1-D max pooling along time (floor mode, no padding)."""

    name: str
    size: int
    stride: int

    @property
    def kernel(self) -> int:
        return self.size

    @property
    def pad(self) -> int:
        return 0


Layer = Conv | Pool


def _head(name: str, classes: int, kernel: int, stride: int, pad: int) -> Conv:
    return Conv(name, classes, kernel, stride, pad, batchnorm=False, relu=False, head=True)


OBJECT_CLASSES = 1000
SCENE_CLASSES = 401

LAYER_TABLES: dict[str, tuple[Layer, ...]] = {
    # SoundNet-8, the recommended (and pretrained) model: Table 1 of the paper, main_train.lua.
    "soundnet8": (
        Conv("conv1", 16, 64, 2, 32),
        Pool("pool1", 8, 8),
        Conv("conv2", 32, 32, 2, 16),
        Pool("pool2", 8, 8),
        Conv("conv3", 64, 16, 2, 8),
        Conv("conv4", 128, 8, 2, 4),
        Conv("conv5", 256, 4, 2, 2),
        Pool("pool5", 4, 4),
        Conv("conv6", 512, 4, 2, 2),
        Conv("conv7", 1024, 4, 2, 2),
        _head("objects", OBJECT_CLASSES, 8, 2, 0),  # conv8, ImageNet teacher
        _head("scenes", SCENE_CLASSES, 8, 2, 0),  # conv8_2, Places2 teacher
    ),
    # SoundNet-5, the original's small model: main_train_small.lua.
    "soundnet5": (
        Conv("conv1", 32, 64, 2, 32),
        Pool("pool1", 8, 8),
        Conv("conv2", 64, 32, 2, 16),
        Pool("pool2", 8, 8),
        Conv("conv3", 128, 16, 2, 8),
        Pool("pool3", 8, 8),
        Conv("conv4", 256, 8, 2, 4),
        _head("objects", OBJECT_CLASSES, 16, 12, 4),  # conv5, ImageNet teacher
        _head("scenes", SCENE_CLASSES, 16, 12, 4),  # conv5_2, Places2 teacher
    ),
}

HEAD_NAMES = ("objects", "scenes")


def architectures() -> tuple[str, ...]:
    """Names of the architectures that have a layer table."""
    return tuple(LAYER_TABLES)


def layer_table(arch: str) -> tuple[Layer, ...]:
    """The layer table of architecture ``arch`` (``"soundnet8"`` or ``"soundnet5"``)."""
    try:
        return LAYER_TABLES[arch]
    except KeyError:
        raise ConfigError(
            f"unknown architecture {arch!r}: expected one of {', '.join(map(repr, LAYER_TABLES))}"
        ) from None


def trunk(arch: str) -> tuple[Layer, ...]:
    """The table's layers before the heads, in order."""
    return tuple(layer for layer in layer_table(arch) if not (isinstance(layer, Conv) and layer.head))


def heads(arch: str) -> tuple[Conv, ...]:
    """The two classification heads (objects, scenes), which both read the trunk's last output."""
    return tuple(layer for layer in layer_table(arch) if isinstance(layer, Conv) and layer.head)


def output_names(arch: str) -> tuple[str, ...]:
    """Every named output of the architecture, in forward order (``conv1``, ``pool1``, ..., ``objects``, ``scenes``).

    ``convN`` is the output of that convolution after BatchNorm and ReLU; ``poolN`` after max pooling; the heads
    give logits.
    """
    return tuple(layer.name for layer in layer_table(arch))


def path_to(arch: str, name: str) -> tuple[Layer, ...]:
    """The chain of layers from the input to the named output, inclusive."""
    names = output_names(arch)
    if name not in names:
        raise ConfigError(
            f"unknown layer {name!r} for architecture {arch!r}: expected one of {', '.join(names)}"
        )
    chain = []
    for layer in trunk(arch):
        chain.append(layer)
        if layer.name == name:
            return tuple(chain)
    return (*chain, next(h for h in heads(arch) if h.name == name))


def conv_output_length(length: int, kernel: int, stride: int, pad: int) -> int:
    """Torch7 floor-mode output length of one convolution or pooling layer (0 if the input is too short)."""
    span = length + 2 * pad - kernel
    return span // stride + 1 if span >= 0 else 0


@dataclass(frozen=True)
class Geometry:
    """Where the frames of one named output sit on the input waveform, in samples (22,050 Hz)."""

    layer: str
    min_samples: int
    """Smallest input length that gives one output frame."""
    hop: int
    """Input samples between consecutive output frames (product of the strides)."""
    receptive_field: int
    """Input samples that one output frame depends on, padding included."""
    offset: int
    """Input index of the first sample of frame 0's receptive field (negative where padding reaches before 0)."""
    channels: int

    @property
    def min_seconds(self) -> float:
        return self.min_samples / SAMPLE_RATE


def geometry(arch: str, name: str) -> Geometry:
    """Derive minimum length, hop, receptive field and offset of the named output from the layer table."""
    chain = path_to(arch, name)
    hop, receptive_field, offset = 1, 1, 0
    channels = 1
    for layer in chain:
        receptive_field += (layer.kernel - 1) * hop
        offset -= layer.pad * hop
        hop *= layer.stride
        if isinstance(layer, Conv):
            channels = layer.filters
    needed = 1
    for layer in reversed(chain):
        needed = max(1, (needed - 1) * layer.stride + layer.kernel - 2 * layer.pad)
    return Geometry(name, needed, hop, receptive_field, offset, channels)


def output_length(arch: str, name: str, num_samples: int) -> int:
    """Number of frames the named output has for an input of ``num_samples`` samples (0 if too short)."""
    if num_samples < 1:
        return 0
    length = num_samples
    for layer in path_to(arch, name):
        length = conv_output_length(length, layer.kernel, layer.stride, layer.pad)
        if length <= 0:
            return 0
    return length


def check_length(arch: str, name: str, num_samples: int, sample_rate: int = SAMPLE_RATE) -> None:
    """Raise :class:`InputTooShortError` if ``num_samples`` (at 22,050 Hz) gives no frame of the named output."""
    geo = geometry(arch, name)
    if num_samples < geo.min_samples:
        received_s = num_samples / SAMPLE_RATE
        raise InputTooShortError(
            f"{arch} layer {name!r} needs at least {geo.min_samples} samples ({geo.min_seconds:.3f} s at "
            f"{SAMPLE_RATE} Hz) for one output frame, but received {num_samples} samples ({received_s:.3f} s "
            f"after resampling to {SAMPLE_RATE} Hz). Pass a longer clip, ask for an earlier layer, or pad it: "
            f"pad='repeat' (circular repeat, as the original scripts do) or pad='zeros'.",
            layer=name,
            min_samples=geo.min_samples,
            received_samples=num_samples,
        )


PadMode = Literal["repeat", "zeros"]


def pad_to_length(waveform: np.ndarray, length: int, mode: PadMode) -> np.ndarray:
    """Pad ``waveform`` along its last axis to at least ``length`` samples.

    ``"repeat"`` tiles the clip circularly (the original scripts' ``torch.repeatTensor``); ``"zeros"`` appends
    silence. Longer waveforms are returned unchanged.
    """
    current = waveform.shape[-1]
    if current >= length:
        return waveform
    if mode == "repeat":
        if current == 0:
            raise ConfigError("cannot repeat an empty waveform: it has 0 samples")
        reps = math.ceil(length / current)
        tiled = np.tile(waveform, (1,) * (waveform.ndim - 1) + (reps,))
        return tiled[..., :length]
    if mode == "zeros":
        widths = [(0, 0)] * (waveform.ndim - 1) + [(0, length - current)]
        return np.pad(waveform, widths)
    raise ConfigError(f"unknown pad mode {mode!r}: expected 'repeat', 'zeros' or None")


@dataclass(frozen=True)
class FrameTimes:
    """Time stamps (seconds) of the frames of one output: receptive-field span clipped to the clip, and centre."""

    start: np.ndarray
    center: np.ndarray
    end: np.ndarray


def frame_times(arch: str, name: str, num_frames: int, num_samples: int | None = None) -> FrameTimes:
    """Times of ``num_frames`` frames of the named output.

    The centre is the middle of each frame's receptive field; start and end are its edges, clipped to
    ``[0, num_samples]`` when the input length is given.
    """
    geo = geometry(arch, name)
    first = geo.offset + geo.hop * np.arange(num_frames, dtype=np.float64)
    last = first + geo.receptive_field
    center = first + geo.receptive_field / 2
    if num_samples is not None:
        first = np.clip(first, 0, num_samples)
        last = np.clip(last, 0, num_samples)
        center = np.clip(center, 0, num_samples)
    return FrameTimes(first / SAMPLE_RATE, center / SAMPLE_RATE, last / SAMPLE_RATE)
