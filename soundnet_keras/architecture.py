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

L³-Net (:mod:`soundnet_keras.l3`) is served by the same functions: its audio embedding stream (the audio
subnetwork on 1-s windows every hop, one frame per window) has the geometry of one convolution with a kernel of one
window and a stride of the hop, at its own sample rate (48 kHz; :func:`sample_rate`), and its tables live in
:mod:`soundnet_keras.l3.tables`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from .errors import ConfigError, InputTooShortError
from .l3 import tables as l3_tables

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


STANDARD_HEAD_CLASSES: dict[str, int] = {"objects": OBJECT_CLASSES, "scenes": SCENE_CLASSES}
"""Class counts of the original's heads (ImageNet objects, Places2 scenes), the tables' own."""

MAX_HEAD_CLASSES = 32768
"""Most classes a head may have (ImageNet-21k has 21,841): bounds what a weights file's metadata can ask for."""

HeadClasses = Mapping[str, int]


def check_head_classes(arch: str, head_classes: HeadClasses | None) -> dict[str, int]:
    """Class count of each head of ``arch``: the table's own, overridden by ``head_classes`` (head -> classes).

    ``head_classes`` may name one head or both; each count must be an integer from 1 to :data:`MAX_HEAD_CLASSES`.
    """
    layer_table(arch)  # ConfigError for an unknown architecture
    sizes = dict(STANDARD_HEAD_CLASSES)
    if head_classes is None:
        return sizes
    if not isinstance(head_classes, Mapping):
        raise ConfigError(f"head classes must map head names to class counts, got {type(head_classes).__name__}")
    for head, classes in head_classes.items():
        if head not in sizes:
            raise ConfigError(f"class count for unknown head {head!r}: expected {' or '.join(map(repr, HEAD_NAMES))}")
        if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)):
            raise ConfigError(f"head {head!r} class count must be an integer, got {classes!r}")
        if not 1 <= int(classes) <= MAX_HEAD_CLASSES:
            raise ConfigError(f"head {head!r} class count must be from 1 to {MAX_HEAD_CLASSES}, got {int(classes)}")
        sizes[head] = int(classes)
    return sizes


def is_standard(head_classes: HeadClasses | None) -> bool:
    """Whether ``head_classes`` (None: the tables' own) are the original's head sizes (objects 1000, scenes 401)."""
    if head_classes is None:
        return True
    return set(head_classes) <= set(STANDARD_HEAD_CLASSES) and all(
        head_classes.get(head, classes) == classes for head, classes in STANDARD_HEAD_CLASSES.items()
    )


def layer_table(arch: str, head_classes: HeadClasses | None = None) -> tuple[Layer, ...]:
    """The layer table of architecture ``arch`` (``"soundnet8"`` or ``"soundnet5"``).

    ``head_classes`` (head -> classes) gives heads of other sizes (e.g. a 365-class Places365 scenes head): the same
    kernel, stride and padding with other output channels (see :func:`check_head_classes`).
    """
    try:
        table = LAYER_TABLES[arch]
    except KeyError:
        if l3_tables.is_l3(arch):
            raise ConfigError(
                f"{arch!r} is an L³-Net architecture, which has no SoundNet layer table (and no object/scene heads): "
                "use soundnet_keras.l3 (L3Net) for it"
            ) from None
        raise ConfigError(
            f"unknown architecture {arch!r}: expected one of {', '.join(map(repr, LAYER_TABLES))} "
            f"(or the L³-Net {', '.join(map(repr, l3_tables.ARCHITECTURES))})"
        ) from None
    if is_standard(head_classes):
        return table
    sizes = check_head_classes(arch, head_classes)
    return tuple(replace(layer, filters=sizes[layer.name]) if layer.name in sizes else layer for layer in table)


def trunk(arch: str) -> tuple[Layer, ...]:
    """The table's layers before the heads, in order."""
    return tuple(layer for layer in layer_table(arch) if not (isinstance(layer, Conv) and layer.head))


def heads(arch: str, head_classes: HeadClasses | None = None) -> tuple[Conv, ...]:
    """The two classification heads (objects, scenes), which both read the trunk's last output; ``head_classes``
    as for :func:`layer_table`."""
    return tuple(layer for layer in layer_table(arch, head_classes) if isinstance(layer, Conv) and layer.head)


def describe(arch: str, head_classes: HeadClasses | None = None) -> str:
    """``arch``, followed by its head sizes where they are not the original's (``soundnet8 (objects 1000, scenes
    365 classes)``)."""
    if is_standard(head_classes):
        return arch
    sizes = check_head_classes(arch, head_classes)
    return f"{arch} ({', '.join(f'{head} {classes}' for head, classes in sizes.items())} classes)"


def sample_rate(arch: str) -> int:
    """Sample rate (Hz) of the input of ``arch``: 22,050 Hz for SoundNet, 48 kHz for L³-Net."""
    if l3_tables.is_l3(arch):
        return l3_tables.SAMPLE_RATE
    layer_table(arch)  # ConfigError for an unknown architecture
    return SAMPLE_RATE


def output_names(arch: str) -> tuple[str, ...]:
    """Every named output of the architecture, in forward order (``conv1``, ``pool1``, ..., ``objects``, ``scenes``).

    ``convN`` is the output of that convolution after BatchNorm and ReLU; ``poolN`` after max pooling; the heads
    give logits. For L³-Net: the outputs of its audio embedding stream (``audio_conv1_1`` ... ``audio_pool4``).
    """
    if l3_tables.is_l3(arch):
        return tuple(l3_tables.stream_channels(arch))
    return tuple(layer.name for layer in layer_table(arch))


def path_to(arch: str, name: str, head_classes: HeadClasses | None = None) -> tuple[Layer, ...]:
    """The chain of layers from the input to the named output, inclusive (heads sized by ``head_classes``).

    For L³-Net one layer: the 1-s window taken every hop, as a convolution of that kernel and stride.
    """
    names = output_names(arch)
    if name not in names:
        raise ConfigError(f"unknown layer {name!r} for architecture {arch!r}: expected one of {', '.join(names)}")
    if l3_tables.is_l3(arch):
        window = l3_tables.WINDOW_SAMPLES
        hop = l3_tables.tables(arch).hop_samples
        return (Conv(name, l3_tables.stream_channels(arch)[name], window, hop, 0, batchnorm=False, relu=False),)
    chain = []
    for layer in trunk(arch):
        chain.append(layer)
        if layer.name == name:
            return tuple(chain)
    return (*chain, next(h for h in heads(arch, head_classes) if h.name == name))


def conv_output_length(length: int, kernel: int, stride: int, pad: int) -> int:
    """Torch7 floor-mode output length of one convolution or pooling layer (0 if the input is too short)."""
    span = length + 2 * pad - kernel
    return span // stride + 1 if span >= 0 else 0


@dataclass(frozen=True)
class Geometry:
    """Where the frames of one named output sit on the input waveform, in samples (at ``sample_rate``: 22,050 Hz
    for SoundNet, 48 kHz for L³-Net)."""

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
    sample_rate: int = SAMPLE_RATE
    """Sample rate (Hz) of the samples above."""

    @property
    def min_seconds(self) -> float:
        return self.min_samples / self.sample_rate


def geometry(arch: str, name: str, head_classes: HeadClasses | None = None) -> Geometry:
    """Derive minimum length, hop, receptive field and offset of the named output from the layer table (a head's
    channels as ``head_classes`` sizes it)."""
    chain = path_to(arch, name, head_classes)
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
    return Geometry(name, needed, hop, receptive_field, offset, channels, sample_rate(arch))


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


def check_length(
    arch: str,
    name: str,
    num_samples: int,
    *,
    min_samples: int | None = None,
    reason: str = "for one output frame",
) -> None:
    """Raise :class:`InputTooShortError` if ``num_samples`` (at :func:`sample_rate`) is below the named output's
    minimum.

    ``min_samples`` overrides the geometric minimum (e.g. :func:`reliable_min_samples` for the heads), ``reason``
    says what the minimum is for.
    """
    need = geometry(arch, name).min_samples if min_samples is None else min_samples
    if num_samples < need:
        rate = sample_rate(arch)
        received_s = num_samples / rate
        advice = "" if l3_tables.is_l3(arch) else " ask for an earlier layer,"
        raise InputTooShortError(
            f"{arch} layer {name!r} needs at least {need} samples ({need / rate:.3f} s at "
            f"{rate} Hz) {reason}, but received {num_samples} samples ({received_s:.3f} s "
            f"after resampling to {rate} Hz). Pass a longer clip,{advice} or pad it: "
            f"pad='repeat' (circular repeat, as the original scripts do) or pad='zeros'.",
            layer=name,
            min_samples=need,
            received_samples=num_samples,
        )


PadMode = Literal["repeat", "zeros"]
PAD_MODES = ("repeat", "zeros")


def check_pad(pad: object) -> PadMode | None:
    """Validate a ``pad`` argument: ``"repeat"``, ``"zeros"`` or None."""
    if pad is not None and pad not in PAD_MODES:
        raise ConfigError(f"unknown pad mode {pad!r}: expected 'repeat', 'zeros' or None")
    return pad  # type: ignore[return-value]


def pad_to_length(waveform: np.ndarray, length: int, mode: PadMode) -> np.ndarray:
    """Pad ``waveform`` along its last axis to at least ``length`` samples.

    ``"repeat"`` tiles the clip circularly (the original scripts' ``torch.repeatTensor``); ``"zeros"`` appends
    silence. Longer waveforms are returned unchanged.
    """
    check_pad(mode)
    current = waveform.shape[-1]
    if current >= length:
        return waveform
    if mode == "repeat":
        if current == 0:
            raise ConfigError("cannot repeat an empty waveform: it has 0 samples")
        reps = math.ceil(length / current)
        tiled = np.tile(waveform, (1,) * (waveform.ndim - 1) + (reps,))
        return tiled[..., :length]
    widths = [(0, 0)] * (waveform.ndim - 1) + [(0, length - current)]
    return np.pad(waveform, widths)


# ------------------------------------------------------------------------------------- what the heads were trained on
TRAINING_CROP_SECONDS = 20.0
"""Length of the crops SoundNet was trained on (``main_train.lua``: ``fineSize = 22050*20``)."""

TRAINING_CROP_SAMPLES = round(TRAINING_CROP_SECONDS * SAMPLE_RATE)


def head_margin(arch: str) -> int:
    """Input samples a head frame needs beyond its own minimum length to be like the frames it was trained on.

    A head frame whose window ends on the *last* frame of the trunk output (conv7 for SoundNet-8) reads the zero
    padding of every layer at the end of the input, which the heads never saw in training (a 20-s crop leaves
    35,018 samples past its last frame's minimum); the pretrained heads then answer with logits of -130 to -25
    instead of +1 to +5, the same wrong scene for every clip. One more trunk frame, i.e. the hop of the trunk
    output (32,768 samples for SoundNet-8), is enough: measured on real clips, the logits jump back to normal at
    exactly that margin (``benchmarks/bench_short_clips.py``).
    """
    return geometry(arch, trunk(arch)[-1].name).hop


def reliable_min_samples(arch: str) -> int:
    """Shortest input whose first head frame is not dominated by padding: the heads' minimum plus the margin."""
    return geometry(arch, HEAD_NAMES[0]).min_samples + head_margin(arch)


def repeated_length(arch: str) -> int:
    """What a clip shorter than :func:`reliable_min_samples` is repeated (or padded) to: the training crop."""
    return max(TRAINING_CROP_SAMPLES, reliable_min_samples(arch))


def margin_length(length, min_samples: int, hop: int, margin: int):
    """Input length at which the last head frame of an input of ``length`` samples (at least ``min_samples``) has
    ``margin`` samples after its own minimum length. Plain arithmetic, so it serves :func:`plan_input` on ints and
    the serving graph (:class:`~soundnet_keras.network.LoopPad`) on tensors alike."""
    return min_samples + (length - min_samples) // hop * hop + margin


def reliable_head_frames(arch: str, num_samples: int) -> int:
    """How many head frames of an unpadded input of ``num_samples`` samples have the margin of the training crops."""
    return output_length(arch, HEAD_NAMES[0], num_samples - head_margin(arch))


@dataclass(frozen=True)
class InputPlan:
    """How a clip of ``input_samples`` samples (22,050 Hz) is fed to the network.

    Made by :func:`plan_input`. The network sees ``network_samples`` samples: the clip, followed by what the
    padding policy appended (repeated audio or silence). :meth:`frames` says how many frames of each output are
    reported, :meth:`padded_frames` which of them read appended audio.
    """

    arch: str
    input_samples: int
    network_samples: int
    pad: PadMode | None
    trim_to_input: bool
    """Report only the frames the unpadded clip has (the end was extended only to give them real audio)."""

    @property
    def padded(self) -> bool:
        return self.network_samples > self.input_samples

    @property
    def timeline_samples(self) -> int:
        """Length that frame times are clipped to: the clip's own, or the repeated crop's for a clip repeated to it."""
        return self.input_samples if self.trim_to_input else self.network_samples

    def frames(self, name: str) -> int:
        """Number of frames of output ``name`` to report (frames of degenerate or appended-only input are left out)."""
        if self.trim_to_input:
            return output_length(self.arch, name, self.input_samples)
        if name in HEAD_NAMES and not self.padded:
            return reliable_head_frames(self.arch, self.input_samples)
        return output_length(self.arch, name, self.network_samples)

    def padded_frames(self, name: str, frames: int) -> np.ndarray:
        """Per frame: whether its receptive field reads samples the policy appended (always False unpadded)."""
        if not self.padded:
            return np.zeros(frames, dtype=bool)
        geo = geometry(self.arch, name)
        ends = geo.offset + geo.hop * np.arange(frames) + geo.receptive_field
        return ends > self.input_samples

    def appended(self, waveform: np.ndarray) -> np.ndarray:
        """Only the samples the policy appends after ``waveform`` (last axis ``input_samples`` long), without
        copying the clip: a long file's end is extended with a few seconds, not a second copy of the file."""
        if waveform.shape[-1] != self.input_samples:
            raise ConfigError(f"this plan is for {self.input_samples} samples, got {waveform.shape[-1]}")
        extra = self.network_samples - self.input_samples
        if extra <= self.input_samples:  # at most one more turn of the loop: the clip's start (or silence)
            head = waveform[..., :extra]
            return np.zeros_like(head) if self.pad == "zeros" else np.ascontiguousarray(head)
        looped = pad_to_length(waveform, self.network_samples, self.pad)  # type: ignore[arg-type]
        return looped[..., self.input_samples :]

    def apply(self, waveform: np.ndarray) -> np.ndarray:
        """The network input: ``waveform`` (last axis ``input_samples`` long) padded to ``network_samples``."""
        tail = self.appended(waveform)  # checks the length too
        return np.concatenate([waveform, tail], axis=-1) if tail.shape[-1] else waveform


def plan_input(arch: str, names: tuple[str, ...] | list[str], num_samples: int, pad: PadMode | None) -> InputPlan:
    """The padding policy: how a clip of ``num_samples`` samples is fed to the network for the outputs ``names``.

    Hidden layers only (``pool5``, ``conv7``...): a clip shorter than the deepest one's minimum is padded to that
    minimum (``pad``), or refused with :class:`InputTooShortError` (``pad=None``).

    With a head (``objects``/``scenes``) the network must see what it was trained on (see :func:`head_margin`):

    * ``pad="repeat"`` / ``"zeros"``: a clip shorter than :func:`reliable_min_samples` (10.98 s for SoundNet-8) is
      repeated circularly (or followed by silence) to the 20-s training crop and every frame of that is reported;
      a longer clip whose last frame lacks the margin gets what it lacks appended at its end (at most
      :func:`head_margin` samples, 1.49 s: the clip's start again, as a loop, or silence), and exactly the frames
      of the unpadded clip are reported, the last one now reading audio; any other clip is fed as it is;
    * ``pad=None``: nothing is appended; only head frames with the training margin are reported, and a clip with
      none (shorter than 10.98 s) raises :class:`InputTooShortError`.
    """
    names = tuple(names)
    pad = check_pad(pad)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ConfigError(f"num_samples must be a positive number of samples, got {num_samples!r}")
    num_samples = int(num_samples)
    deepest = max(names, key=lambda n: geometry(arch, n).min_samples)
    if not any(name in HEAD_NAMES for name in names):
        need = geometry(arch, deepest).min_samples
        if num_samples >= need:
            return InputPlan(arch, num_samples, num_samples, pad, False)
        if pad is None:
            check_length(arch, deepest, num_samples)
        return InputPlan(arch, num_samples, need, pad, False)
    reliable = reliable_min_samples(arch)
    if pad is None:
        check_length(arch, deepest, num_samples, min_samples=reliable, reason=RELIABLE_REASON)
        return InputPlan(arch, num_samples, num_samples, None, False)
    if num_samples < reliable:
        return InputPlan(arch, num_samples, repeated_length(arch), pad, False)
    head = geometry(arch, HEAD_NAMES[0])
    needed = margin_length(num_samples, head.min_samples, head.hop, head_margin(arch))
    if needed <= num_samples:
        return InputPlan(arch, num_samples, num_samples, pad, False)
    return InputPlan(arch, num_samples, needed, pad, True)


RELIABLE_REASON = (
    "for one head frame that is not dominated by the zero padding at the end of the input (the network was trained "
    "on 20-s crops; shorter unpadded input gives the same wrong scene for every clip)"
)


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
    rate = sample_rate(arch)
    return FrameTimes(first / rate, center / rate, last / rate)
