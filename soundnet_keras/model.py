"""The public :class:`SoundNet` class: pretrained loading, prediction and feature extraction on waveforms."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import architecture as arch_mod
from .architecture import SAMPLE_RATE, FrameTimes, Geometry, PadMode, frame_times, geometry, output_names
from .audio import as_waveform, check_sample_rate, resample
from .errors import ConfigError
from .network import build_network, get_params, set_params
from .weights import WeightsFile, load_weights, save_weights


@dataclass
class Features:
    """Activations of one layer for one clip (or a batch of equal-length clips).

    ``values`` is (frames, channels), or (batch, frames, channels) for a 2-D input; ``times`` gives each frame's
    receptive-field start, centre and end in seconds; ``num_samples`` is the length the network saw (22,050 Hz,
    after any padding) and ``padded`` says whether the input was padded to reach it.
    """

    layer: str
    values: np.ndarray
    times: FrameTimes
    num_samples: int
    padded: bool = False


@dataclass
class Prediction:
    """Object (ImageNet, 1000) and scene (Places2, 401) probabilities per output frame of one clip."""

    objects: np.ndarray
    scenes: np.ndarray
    object_names: list[str]
    scene_names: list[str]
    times: FrameTimes
    num_samples: int
    padded: bool = False

    def probabilities(self, head: str = "scenes", frame: int | None = None) -> np.ndarray:
        """Probabilities of ``head`` for one frame, or averaged over all frames when ``frame`` is None."""
        if head not in ("objects", "scenes"):
            raise ConfigError(f"head must be 'objects' or 'scenes', got {head!r}")
        probs = self.objects if head == "objects" else self.scenes
        if frame is None:
            return probs.mean(axis=-2)
        if not -probs.shape[-2] <= frame < probs.shape[-2]:
            raise ConfigError(f"frame {frame} out of range: this prediction has {probs.shape[-2]} frames")
        return probs[..., frame, :]

    def top(self, head: str = "scenes", k: int = 5, frame: int | None = None) -> list[tuple[str, float]]:
        """The ``k`` most probable names of ``head`` with their probabilities (clip mean, or one frame)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        probs = self.probabilities(head, frame)
        if probs.ndim != 1:
            raise ConfigError("top() works on one clip; index a batched prediction's arrays directly")
        names = self.object_names if head == "objects" else self.scene_names
        order = np.argsort(-probs, kind="stable")[:k]
        return [(names[i], float(probs[i])) for i in order]


DEFAULT_CHUNK_SECONDS = 120.0

MATMUL_MIN_CHANNELS = 256
"""Convolutions reading at least this many channels run as framed matrix products (see benchmarks/README.md)."""


def _make_inference(model, arch: str, names: tuple[str, ...]):
    """Inference function of ``names`` over the layer table, reading ``model``'s live variables on every call."""
    import tensorflow as tf

    table = arch_mod.layer_table(arch)
    chain = arch_mod.trunk(arch)
    wanted_heads = [h for h in arch_mod.heads(arch) if h.name in names]
    if not wanted_heads:
        last = max(output_names(arch).index(n) for n in names)
        chain = tuple(layer for layer in chain if output_names(arch).index(layer.name) <= last)
    first_conv = next(layer.name for layer in table if isinstance(layer, arch_mod.Conv))
    layers = {layer.name: layer for layer in model.layers}

    def folded(layer: arch_mod.Conv):
        conv = layers[layer.name]
        kernel, bias = tf.convert_to_tensor(conv.kernel), tf.convert_to_tensor(conv.bias)
        bn = layers.get(f"{layer.name}_bn")
        if layer.batchnorm and bn is not None:
            scale = tf.convert_to_tensor(bn.gamma) * tf.math.rsqrt(
                tf.convert_to_tensor(bn.moving_variance) + arch_mod.BATCHNORM_EPSILON
            )
            kernel = kernel * scale
            bias = (bias - tf.convert_to_tensor(bn.moving_mean)) * scale + tf.convert_to_tensor(bn.beta)
        if layer.name == first_conv:
            kernel = kernel * arch_mod.WAVEFORM_SCALE  # the input scaling, exact: zero padding stays zero
        return kernel, bias

    def conv(x, layer: arch_mod.Conv):
        kernel, bias = folded(layer)
        if layer.pad:
            x = tf.pad(x, [[0, 0], [layer.pad, layer.pad], [0, 0]])
        in_channels = kernel.shape[1]
        if in_channels >= MATMUL_MIN_CHANNELS:
            # Few positions, many channels (the deep layers and heads): frames @ kernel is several times faster on
            # CPU than conv1d, which re-lays out the large kernel on every call. Same sums, same layout (k, c_in).
            frames = tf.signal.frame(x, layer.kernel, layer.stride, axis=1)  # (batch, positions, k, c_in)
            flat = tf.reshape(frames, tf.concat([tf.shape(frames)[:2], [layer.kernel * in_channels]], 0))
            x = tf.einsum("bpi,io->bpo", flat, tf.reshape(kernel, [layer.kernel * in_channels, -1]))
        else:
            x = tf.nn.conv1d(x, kernel, layer.stride, "VALID")
        x = tf.nn.bias_add(x, bias)
        return tf.nn.relu(x) if layer.relu else x

    def run(batch):
        x = batch[:, :, None]
        out = {}
        for layer in chain:
            if isinstance(layer, arch_mod.Pool):
                x = tf.nn.max_pool1d(x, layer.size, layer.stride, "VALID")
            else:
                x = conv(x, layer)
            if layer.name in names:
                out[layer.name] = x
        for head in wanted_heads:
            out[head.name] = conv(x, head)
        return out

    return run


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class SoundNet:
    """SoundNet (Aytar, Vondrick & Torralba, NIPS 2016) on raw 22,050 Hz waveforms, in Keras 3.

    Pretrained::

        >>> from soundnet_keras import SoundNet
        >>> net = SoundNet.from_pretrained()              # doctest: +SKIP
        >>> pred = net.predict(waveform, sample_rate=44100)  # doctest: +SKIP
        >>> pred.top("scenes", k=3)                          # doctest: +SKIP
        [('railroad_track', 0.61), ('train_station/platform', 0.2), ...]
        >>> feats = net.features(waveform, 44100, layer="pool5")  # doctest: +SKIP
        >>> feats.values.shape                              # doctest: +SKIP
        (54, 256)

    Random initialisation (the authors' init; e.g. for training)::

        >>> net = SoundNet("soundnet5")
        >>> net.keras_model.name
        'soundnet5'
        >>> net.geometry("objects").min_samples
        56798

    Input contract: float waveforms in [-1, 1] (integer arrays are scaled by their full range), mono, any sample
    rate (resampled to 22,050 Hz with soxr), any length at least the requested layer's ``min_samples`` unless
    ``pad`` is given; shape (samples,), (batch, samples), or a list of 1-D arrays of different lengths. The
    [-1, 1] -> [-256, 256] scaling of the original scripts is done by the model's first layer.
    """

    def __init__(
        self,
        arch: str = "soundnet8",
        *,
        weights: WeightsFile | None = None,
        categories: dict[str, Sequence[str]] | None = None,
    ) -> None:
        arch_mod.layer_table(arch)  # validates the name
        self.arch = arch
        self.keras_model = build_network(arch)
        self.weights_source = "random initialisation"
        if weights is not None:
            if weights.architecture != arch:
                raise ConfigError(f"weights are for {weights.architecture!r}, not {arch!r}")
            set_params(self.keras_model, arch, weights.params)
            self.weights_source = weights.source or "weights file"
            categories = categories or weights.categories
        self.categories = self._check_categories(categories or {})
        self._runners: dict[tuple[str, ...], object] = {}
        self.jit_compile = False
        """Compile inference with XLA (measured slower on 2-core CPUs for variable lengths; see benchmarks/)."""
        self.chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS
        """Inputs longer than this (at 22,050 Hz) run in chunks of about this length with bounded memory; the
        result equals one pass to float precision (see :mod:`soundnet_keras.chunking`); None: always one pass."""

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "soundnet8", *, verbose: bool = True) -> SoundNet:
        """Load a preset (``"soundnet8"``) or a weights file (``.weights.h5``, authors' ``.t7``, ``sound8.npy``).

        Presets are taken from the cache, or obtained, verified, converted and cached on first use (see
        :mod:`soundnet_keras.pretrained`); ``verbose`` reports those steps on stderr.
        """
        from .pretrained import report, resolve

        path = resolve(name_or_path, log=report if verbose else None)
        weights = load_weights(path)
        return cls(weights.architecture, weights=weights)

    @staticmethod
    def _check_categories(categories: dict[str, Sequence[str]]) -> dict[str, list[str]]:
        checked = {}
        for head, expected in (("objects", arch_mod.OBJECT_CLASSES), ("scenes", arch_mod.SCENE_CLASSES)):
            names = list(categories.get(head, ()))
            if names and len(names) != expected:
                raise ConfigError(f"{head} categories: expected {expected} names, got {len(names)}")
            checked[head] = names or [f"{head}_{i:04d}" for i in range(expected)]
        return checked

    def save_weights(self, path: str | os.PathLike) -> Path:
        """Write this model's parameters (and category names) to a ``.weights.h5`` file, atomically."""
        return save_weights(
            path,
            WeightsFile(
                self.arch, get_params(self.keras_model), source=self.weights_source, categories=self.categories
            ),
        )

    # ------------------------------------------------------------------------------------------------- geometry
    @property
    def layers(self) -> tuple[str, ...]:
        """Names of the outputs that :meth:`features` accepts, in forward order."""
        return output_names(self.arch)

    def geometry(self, layer: str = "objects") -> Geometry:
        """Minimum input length, hop, receptive field and offset (samples at 22,050 Hz) of a named output."""
        return geometry(self.arch, layer)

    # ------------------------------------------------------------------------------------------------ execution
    def _runner(self, names: tuple[str, ...]):
        """Compiled inference function of the named outputs: (batch, samples) float32 -> {name: (batch, frames, ch)}.

        It runs the layer table directly with ``tf.nn`` ops and folds each BatchNorm (and the input scaling) into
        the convolution before it *inside* the compiled function, from the model's live variables: as fast as a
        folded model, and never stale when ``keras_model``'s weights change (training, ``set_weights``).
        """
        key = (*names, f"jit={self.jit_compile}")
        if key not in self._runners:
            import tensorflow as tf

            self._runners[key] = tf.function(
                _make_inference(self.keras_model, self.arch, names),
                input_signature=[tf.TensorSpec([None, None], tf.float32)],
                reduce_retracing=True,
                jit_compile=self.jit_compile,
                autograph=False,  # plain Python loops over the layer table: nothing for AutoGraph to convert
            )
        return self._runners[key]

    def forward(self, batch: np.ndarray, layers: Iterable[str]) -> dict[str, np.ndarray]:
        """Run a prepared (batch, samples) float32 array at 22,050 Hz through the network (no checks, no padding).

        Returns each requested output as (batch, frames, channels). Prefer :meth:`features` / :meth:`predict`.
        """
        names = tuple(layers)
        out = self._runner(names)(np.ascontiguousarray(batch, dtype=np.float32))
        return {name: np.asarray(out[name]) for name in names}

    def _forward_any_length(self, batch: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """:meth:`forward`, in chunks (:mod:`~soundnet_keras.chunking`) when longer than :attr:`chunk_seconds`."""
        if self.chunk_seconds is None:
            return self.forward(batch, names)
        from .chunking import min_chunk_samples, run_chunked

        chunk = max(round(self.chunk_seconds * SAMPLE_RATE), min_chunk_samples(self.arch, names))
        if batch.shape[-1] <= chunk:
            return self.forward(batch, names)
        return run_chunked(self.forward, self.arch, batch, names, chunk)

    def _prepare(
        self, waveform: np.ndarray, sample_rate: int, layer: str, pad: PadMode | None
    ) -> tuple[np.ndarray, bool]:
        audio = resample(waveform, sample_rate)
        need = geometry(self.arch, layer).min_samples
        padded = False
        if audio.shape[-1] < need:
            if pad is None:
                arch_mod.check_length(self.arch, layer, audio.shape[-1])
            audio = arch_mod.pad_to_length(audio, need, pad)
            padded = True
        return audio, padded

    def _inputs(self, waveform: object, sample_rate: object) -> tuple[list[np.ndarray] | np.ndarray, int, bool]:
        sample_rate = check_sample_rate(sample_rate)
        if isinstance(waveform, (list, tuple)) and waveform and not np.isscalar(waveform[0]):
            clips = [as_waveform(w, name=f"waveform[{i}]", allow_batch=False) for i, w in enumerate(waveform)]
            return clips, sample_rate, True
        return as_waveform(waveform), sample_rate, False

    def intermediates(
        self,
        waveform: object,
        sample_rate: int = SAMPLE_RATE,
        layers: Iterable[str] | None = None,
        *,
        pad: PadMode | None = None,
    ) -> dict[str, Features]:
        """Several named outputs of one clip (or equal-length batch) in a single pass (``forward_intermediates``)."""
        names = tuple(layers) if layers is not None else self.layers
        for name in names:
            geometry(self.arch, name)  # validates each name
        audio, sample_rate, is_list = self._inputs(waveform, sample_rate)
        if is_list:
            raise ConfigError("intermediates() takes one clip or an equal-length batch; call it once per clip")
        deepest = max(names, key=lambda n: geometry(self.arch, n).min_samples)
        audio, padded = self._prepare(audio, sample_rate, deepest, pad)
        batch = audio if audio.ndim == 2 else audio[None]
        values = self._forward_any_length(batch, names)
        num_samples = batch.shape[-1]
        result = {}
        for name in names:
            array = values[name] if audio.ndim == 2 else values[name][0]
            times = frame_times(self.arch, name, array.shape[-2], num_samples)
            result[name] = Features(name, array, times, num_samples, padded)
        return result

    def features(
        self,
        waveform: object,
        sample_rate: int = SAMPLE_RATE,
        layer: str = "pool5",
        *,
        pad: PadMode | None = None,
    ) -> Features | list[Features]:
        """Activations of ``layer`` (``conv1`` ... ``conv7`` after BN+ReLU, ``pool*``, or head logits).

        Returns :class:`Features` with ``values`` (frames, channels) and frame times, or a list of them for a list
        of clips. ``pad="repeat"`` / ``"zeros"`` pads clips shorter than the layer's minimum; otherwise they raise
        :class:`~soundnet_keras.errors.InputTooShortError`.
        """
        geometry(self.arch, layer)
        audio, sample_rate, is_list = self._inputs(waveform, sample_rate)
        if is_list:
            return [self.intermediates(clip, sample_rate, (layer,), pad=pad)[layer] for clip in audio]
        return self.intermediates(audio, sample_rate, (layer,), pad=pad)[layer]

    def predict(
        self, waveform: object, sample_rate: int = SAMPLE_RATE, *, pad: PadMode | None = None
    ) -> Prediction | list[Prediction]:
        """Object and scene probabilities (softmax of the heads) per output frame, with names and frame times.

        Inputs as for :meth:`features`; the heads need ``geometry("objects").min_samples`` samples (≈9.5 s for
        SoundNet-8) unless ``pad`` is given.
        """
        audio, sample_rate, is_list = self._inputs(waveform, sample_rate)
        if is_list:
            return [self.predict(clip, sample_rate, pad=pad) for clip in audio]
        heads = self.intermediates(audio, sample_rate, ("objects", "scenes"), pad=pad)
        objects, scenes = heads["objects"], heads["scenes"]
        return Prediction(
            _softmax(objects.values.astype(np.float64)),
            _softmax(scenes.values.astype(np.float64)),
            self.categories["objects"],
            self.categories["scenes"],
            objects.times,
            objects.num_samples,
            objects.padded,
        )

    def __repr__(self) -> str:
        return f"SoundNet({self.arch!r}, weights={self.weights_source!r})"
