"""L³-Net (Arandjelović & Zisserman, *Look, Listen and Learn*, ICCV 2017) as layer tables, and its audio geometry.

The tables below are the single source of truth for the L³ models: the Keras builder (:mod:`.network`), the
parameter shapes of the weights files, the feature-map sizes and the embedding stream's geometry (which
:mod:`soundnet_keras.architecture` serves to every downstream tool, like SoundNet's) are all computed from them.

The paper's numbers, checked against each other:

* **Audio front end.** 1 s of audio at 48 kHz (48,000 samples) becomes a 257 × 199 log-spectrogram. 257 frequency
  bins are ``fft / 2 + 1`` of a 512-point FFT; the paper's window of 0.01 s is 480 samples with half-window overlap,
  a hop of 0.005 s = 240 samples, and without centre padding the frames are ``(48,000 - 480) / 240 + 1 = 199``.
  Each 480-sample frame is multiplied by a periodic Hann window and zero-padded to 512 for the FFT; the value is
  the natural log of the magnitude plus :data:`LOG_EPSILON` (``log(|X| + 1e-6)``: silence gives -13.8, not -inf).
* **Subnetworks.** Vision and audio have the same shape: four blocks of two 3 × 3 convolutions ("same" padding,
  each followed by BatchNorm and ReLU) and a max pooling; widths 64, 128, 256, 512. Pools 1-3 are 2 × 2 with
  stride 2 (floor), so the 224 × 224 frame gives 112, 56, 28 and the 257 × 199 spectrogram 128 × 99, 64 × 49,
  32 × 24; pool4 max-pools the whole remaining map (28 × 28 for vision, 32 × 24 for audio) into 1 × 1 × 512.
* **Fusion.** The two 512-d vectors are concatenated (1024-d), then a fully connected layer of 128 with ReLU and
  one of 2 give the logits of the 2-way softmax (corresponds / does not).

The **audio embedding stream** of a clip of any length runs the audio subnetwork on 1-s windows taken every
:data:`DEFAULT_HOP_SECONDS` (0.1 s = 4,800 samples, OpenL3's default hop): one frame per window, each named
output (``audio_conv1_1`` ... ``audio_pool4``) max-pooled over its frequency and time positions to one vector per
window (for ``audio_pool4`` that is the layer itself). Its geometry is that of one convolution with a kernel of
48,000 samples and a stride of the hop: minimum input 1 s, receptive field 1 s, offset 0.

This module imports nothing heavy (no Keras) and nothing of the package, so that the SoundNet geometry can serve it.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 48_000
"""Sample rate (Hz) of L³-Net's audio."""

WINDOW_SECONDS = 1.0
WINDOW_SAMPLES = round(WINDOW_SECONDS * SAMPLE_RATE)
"""The audio subnetwork's input: 1 s = 48,000 samples."""

STFT_WINDOW = round(0.01 * SAMPLE_RATE)
"""Spectrogram frame length: 0.01 s = 480 samples (periodic Hann)."""
STFT_HOP = STFT_WINDOW // 2
"""Spectrogram hop: half a frame, 0.005 s = 240 samples."""
FFT_LENGTH = 512
"""FFT size: the power of two enclosing 480, giving 257 frequency bins."""
LOG_EPSILON = 1e-6
"""Added to the STFT magnitude before the natural log."""

FREQUENCY_BINS = FFT_LENGTH // 2 + 1
SPECTROGRAM_FRAMES = (WINDOW_SAMPLES - STFT_WINDOW) // STFT_HOP + 1

FRAME_SIZE = 224
"""The vision subnetwork's input: a 224 × 224 RGB frame."""

DEFAULT_HOP_SECONDS = 0.1
"""Hop of the audio embedding stream (OpenL3's default)."""

BLOCK_WIDTHS = (64, 128, 256, 512)
"""Output channels of the four conv blocks, vision and audio alike."""
CONVS_PER_BLOCK = 2
KERNEL = 3
POOL = 2
FUSION_UNITS = 128
CLASSES = 2
"""The AVC task: frame and audio correspond (1) or not (0)."""

BATCHNORM_EPSILON = 1e-5
BATCHNORM_MOMENTUM = 0.99


@dataclass(frozen=True)
class Conv2D:
    """A 3 × 3 convolution, "same" padding, no bias, followed by BatchNorm (``<name>_bn``) and ReLU."""

    name: str
    filters: int
    kernel: int = KERNEL


@dataclass(frozen=True)
class Pool2D:
    """Max pooling, ``size`` × ``size`` with stride ``size`` (floor); ``size=None``: over the whole map (global)."""

    name: str
    size: int | None = POOL


@dataclass(frozen=True)
class Dense:
    """A fully connected layer with bias, optionally followed by ReLU."""

    name: str
    units: int
    relu: bool


Layer = Conv2D | Pool2D | Dense


def _subnetwork(prefix: str, widths: tuple[int, ...] = BLOCK_WIDTHS) -> tuple[Conv2D | Pool2D, ...]:
    """Four blocks of :data:`CONVS_PER_BLOCK` convolutions (``widths`` channels) and a pool; the last pool is global
    (the paper's pool4)."""
    layers: list[Conv2D | Pool2D] = []
    for block, width in enumerate(widths, start=1):
        layers += [Conv2D(f"{prefix}_conv{block}_{i}", width) for i in range(1, CONVS_PER_BLOCK + 1)]
        layers.append(Pool2D(f"{prefix}_pool{block}", POOL if block < len(widths) else None))
    return tuple(layers)


@dataclass(frozen=True)
class L3Tables:
    """The three layer tables of an L³-Net architecture, and its input sizes."""

    audio: tuple[Conv2D | Pool2D, ...]
    vision: tuple[Conv2D | Pool2D, ...]
    fusion: tuple[Dense, ...]
    hop_samples: int
    """Hop of the audio embedding stream, in samples at :data:`SAMPLE_RATE`."""
    frame_size: int = FRAME_SIZE
    """Side of the square RGB frame the vision subnetwork reads."""
    batchnorm_momentum: float = BATCHNORM_MOMENTUM
    """Momentum of every BatchNorm layer's moving statistics."""

    @property
    def audio_input(self) -> tuple[int, int, int]:
        """The spectrogram the audio subnetwork reads: (frequency, time, 1)."""
        return (FREQUENCY_BINS, SPECTROGRAM_FRAMES, 1)

    @property
    def vision_input(self) -> tuple[int, int, int]:
        return (self.frame_size, self.frame_size, 3)

    @property
    def embedding(self) -> str:
        """The audio embedding layer (the paper's pool4)."""
        return self.audio[-1].name


def _l3_tables(
    widths: tuple[int, ...], fusion_units: int, frame_size: int, momentum: float = BATCHNORM_MOMENTUM
) -> L3Tables:
    """The tables of an L³-Net with conv blocks of ``widths`` channels, a fusion layer of ``fusion_units``,
    ``frame_size`` frames and BatchNorm ``momentum``: everything else (layers, kernels, pools, the audio front end)
    is the paper's."""
    return L3Tables(
        _subnetwork("audio", widths),
        _subnetwork("vision", widths),
        (Dense("fusion_fc1", fusion_units, relu=True), Dense("fusion_fc2", CLASSES, relu=False)),
        hop_samples=round(DEFAULT_HOP_SECONDS * SAMPLE_RATE),
        frame_size=frame_size,
        batchnorm_momentum=momentum,
    )


SMALL_BLOCK_WIDTHS = (8, 16, 32, 64)
SMALL_FUSION_UNITS = 64
SMALL_FRAME_SIZE = 64
SMALL_BATCHNORM_MOMENTUM = 0.9

LAYER_TABLES: dict[str, L3Tables] = {
    "l3": _l3_tables(BLOCK_WIDTHS, FUSION_UNITS, FRAME_SIZE),
    "l3-small": _l3_tables(SMALL_BLOCK_WIDTHS, SMALL_FUSION_UNITS, SMALL_FRAME_SIZE, SMALL_BATCHNORM_MOMENTUM),
}
"""``l3`` is the paper's network. ``l3-small`` is a CPU / test configuration of the same structure (same layers,
kernels, pools and 1-s 48 kHz audio front end) with 8 times fewer channels (8, 16, 32, 64; a 64-d embedding), a
fusion layer of 64, 64 × 64 frames (:func:`~soundnet_keras.l3.avc_data.make_avc_dataset` resizes the shards'
frames) and a BatchNorm momentum of 0.9 (moving statistics usable after the few hundred steps of a short run): a
small fraction of the paper's multiply-adds, for tests and demonstrations, not a model to publish."""

ARCHITECTURES = tuple(LAYER_TABLES)


def is_l3(arch: object) -> bool:
    """Whether ``arch`` names an L³-Net architecture."""
    return isinstance(arch, str) and arch in LAYER_TABLES


def tables(arch: str) -> L3Tables:
    """The layer tables of ``arch``; a KeyError for another name (callers raise the package's error)."""
    return LAYER_TABLES[arch]


def stream_channels(arch: str) -> dict[str, int]:
    """Every named output of the audio embedding stream with its channels, in forward order."""
    channels, out = {}, 1
    for layer in tables(arch).audio:
        if isinstance(layer, Conv2D):
            out = layer.filters
        channels[layer.name] = out
    return channels


def map_shapes(table: tuple[Conv2D | Pool2D, ...], input_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """(height, width, channels) of every layer's output map for an input of ``input_shape``."""
    height, width, channels = input_shape
    shapes = {}
    for layer in table:
        if isinstance(layer, Conv2D):
            channels = layer.filters
        elif layer.size is None:
            height = width = 1
        else:
            height, width = height // layer.size, width // layer.size
        shapes[layer.name] = (height, width, channels)
    return shapes


def parameter_shapes(arch: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """Keras-layout parameter shapes of every weighted layer of ``arch`` (audio, vision, fusion), from its tables."""
    t = tables(arch)
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    inputs = ((t.audio, t.audio_input), (t.vision, t.vision_input))
    for table, (_, _, channels) in inputs:
        for layer in table:
            if isinstance(layer, Conv2D):
                shapes[layer.name] = {"kernel": (layer.kernel, layer.kernel, channels, layer.filters)}
                shapes[f"{layer.name}_bn"] = {
                    var: (layer.filters,) for var in ("gamma", "beta", "moving_mean", "moving_variance")
                }
                channels = layer.filters
    features = sum(map_shapes(table, size)[table[-1].name][-1] for table, size in inputs)
    for layer in t.fusion:
        shapes[layer.name] = {"kernel": (features, layer.units), "bias": (layer.units,)}
        features = layer.units
    return shapes
