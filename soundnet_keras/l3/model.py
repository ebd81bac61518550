"""The public :class:`L3Net` class: L³-Net's audio embeddings with SoundNet's API, and its AVC models.

Input contract of the audio side (:meth:`L3Net.features`, :meth:`L3Net.intermediates`): as SoundNet's — file paths
(decoded), or float waveforms in [-1, 1] at any sample rate, resampled to 48 kHz with soxr; one clip, a list of clips
of any lengths, or a (clips, samples) array with ``batch=True``. A clip of any length gives one embedding per hop
(0.1 s): the audio subnetwork runs on the 1-s windows starting every hop, a batch of windows at a time, so memory is
bounded by :attr:`L3Net.window_batch` windows (and long files run in chunks of :attr:`L3Net.chunk_seconds`). A clip
shorter than 1 s is padded as ``pad`` says (``"repeat"``, ``"zeros"``) or refused (``None``:
:class:`~soundnet_keras.errors.InputTooShortError`), by SoundNet's policy
(:func:`~soundnet_keras.architecture.plan_input`).

Input contract of the AVC model (:attr:`L3Net.avc_model`, for training on audio-visual correspondence)::

    {"frame": (B, 224, 224, 3) float32 RGB in [0, 1],   # one video frame
     "audio": (B, 48000) float32 in [-1, 1]}            # 1 s of mono audio at 48 kHz
    -> logits (B, 2)                                    # class 1: they belong together

(224 is the ``l3`` table's frame size; the CPU / test configuration ``l3-small`` reads 64 × 64 frames.)

(:attr:`L3Net.vision_model` takes ``frame`` alone and gives (B, 512); :attr:`L3Net.keras_model` takes ``audio`` alone
and gives the 512-d ``audio_pool4`` embedding.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np

from ..architecture import Geometry, check_length, geometry, output_length, output_names
from ..errors import ConfigError, WeightsError
from ..precision import DEFAULT_PRECISION, check_precision, precision_scope
from ..running import FeatureMethods
from ..validation import check_positive
from .network import build_l3, stream_model
from .tables import ARCHITECTURES, WINDOW_SAMPLES, is_l3, tables
from .weights import L3Weights, get_params, load_l3_weights, save_l3_weights, set_params

DEFAULT_CHUNK_SECONDS = 120.0
DEFAULT_WINDOW_BATCH = 16

L3_PRECISIONS = ("highest", "default")
"""Precisions L³-Net runs under (``mixed_bfloat16`` is SoundNet's folded inference pass only)."""


class L3Net(FeatureMethods):
    """L³-Net (Arandjelović & Zisserman, *Look, Listen and Learn*, ICCV 2017) in Keras 3.

    >>> net = L3Net()                       # doctest: +SKIP
    >>> net.geometry("audio_pool4").hop     # doctest: +SKIP
    4800

    ``weights``: an :class:`~.weights.L3Weights` (see :meth:`from_pretrained`), or None for Keras' random
    initialisation. Inputs: see the module docstring.
    """

    def __init__(self, arch: str = "l3", *, weights: L3Weights | None = None, precision: str = DEFAULT_PRECISION):
        if not is_l3(arch):
            raise ConfigError(
                f"unknown L³-Net architecture {arch!r}: expected one of {', '.join(map(repr, ARCHITECTURES))}"
            )
        self.precision = precision
        if weights is not None and weights.architecture != arch:
            raise ConfigError(f"weights are for {weights.architecture!r}, not {arch!r}")
        self.arch = arch
        self._models = build_l3(arch)
        self.weights_source = "random initialisation"
        if weights is not None:
            set_params(self._models.avc, arch, weights.params)
            self.weights_source = weights.source or "weights file"
        self._streams: dict[tuple[str, ...], keras.Model] = {}
        self.chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS
        """Inputs longer than this (at 48 kHz) run in chunks of about this length; the result equals one pass."""
        self.window_batch: int = DEFAULT_WINDOW_BATCH
        """How many 1-s windows the audio subnetwork runs at once (memory: about 80 MB of activations each)."""

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, *, verbose: bool = True, precision: str = DEFAULT_PRECISION
    ) -> L3Net:
        """Load an L³-Net ``.weights.h5`` file (written by :meth:`save_weights`), strictly.

        There are no L³-Net presets yet: a name that is not a file is a :class:`~soundnet_keras.errors.WeightsError`;
        a SoundNet file is one too (load it with ``SoundNet.from_pretrained`` or ``soundnet_keras.load_network``).
        ``verbose`` is accepted for the same signature as SoundNet's (nothing is downloaded).
        """
        check_precision_l3(precision)
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise ConfigError(f"name_or_path must be a weights file path, got {type(name_or_path).__name__}")
        if not Path(name_or_path).exists():
            raise WeightsError(
                f"L³-Net weights {os.fspath(name_or_path)!r}: no such file (there are no L³-Net presets: pass a "
                ".weights.h5 file written by L3Net.save_weights)"
            )
        weights = load_l3_weights(name_or_path)
        return cls(weights.architecture, weights=weights, precision=precision)

    def get_params(self) -> dict[str, dict[str, np.ndarray]]:
        """Every parameter (audio, vision, fusion) by layer and variable, as NumPy arrays."""
        return get_params(self._models.avc, self.arch)

    def save_weights(self, path: str | os.PathLike) -> Path:
        """Write every parameter to a ``.weights.h5`` file, atomically (see :mod:`.weights`)."""
        return save_l3_weights(path, self._models.avc, L3Weights(self.arch, self.get_params(), self.weights_source))

    # ------------------------------------------------------------------------------------------------- models
    @property
    def keras_model(self) -> keras.Model:
        """The audio embedding model: ``audio`` (B, 48000) float32 in [-1, 1] at 48 kHz -> (B, 512)."""
        return self._models.audio

    @property
    def vision_model(self) -> keras.Model:
        """The vision embedding model: ``frame`` (B, 224, 224, 3) float32 RGB in [0, 1] -> (B, 512)."""
        return self._models.vision

    @property
    def avc_model(self) -> keras.Model:
        """The AVC model: ``{"frame": (B, 224, 224, 3), "audio": (B, 48000)}`` -> logits (B, 2)."""
        return self._models.avc

    # ------------------------------------------------------------------------------------------------- geometry
    @property
    def layers(self) -> tuple[str, ...]:
        """Names of the outputs :meth:`features` accepts, in forward order (``audio_conv1_1`` ... ``audio_pool4``)."""
        return output_names(self.arch)

    @property
    def embedding_layer(self) -> str:
        """The layer downstream tools read by default: ``audio_pool4``, the paper's 512-d audio embedding."""
        return tables(self.arch).embedding

    def geometry(self, layer: str = "audio_pool4") -> Geometry:
        """Minimum input, hop, receptive field and offset (samples at 48 kHz) of a named output."""
        return geometry(self.arch, layer)

    # ------------------------------------------------------------------------------------------------ execution
    @property
    def precision(self) -> str:
        """``"highest"`` (float32, TensorFloat-32 off, the default) or ``"default"`` (the backend's settings)."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._precision = check_precision_l3(value)

    def _stream(self, names: tuple[str, ...]) -> keras.Model:
        if names not in self._streams:
            self._streams[names] = stream_model(self._models, names)
        return self._streams[names]

    def forward(self, batch: np.ndarray, layers: Iterable[str]) -> dict[str, np.ndarray]:
        """Run a prepared (batch, samples) float32 array at 48 kHz (no padding): each requested output as
        (batch, frames, channels), frame ``i`` the window ``[i * hop, i * hop + 48000)``. Prefer :meth:`features`.

        Input shorter than 1 s raises :class:`~soundnet_keras.errors.InputTooShortError`.
        """
        names = tuple(layers)
        if not names:
            raise ConfigError("forward() needs at least one layer name")
        geos = [geometry(self.arch, name) for name in names]  # validates each name
        if np.ndim(batch) != 2 or np.shape(batch)[1] < 1:
            raise ConfigError(f"forward() takes a (batch, samples) array, got shape {np.shape(batch)}; see features()")
        batch = np.asarray(batch, dtype=np.float32)
        clips, samples = batch.shape
        check_length(self.arch, names[0], samples)
        frames, hop = output_length(self.arch, names[0], samples), geos[0].hop
        out = {name: np.empty((clips, frames, geo.channels), np.float32) for name, geo in zip(names, geos, strict=True)}
        model, step = self._stream(names), check_positive(self.window_batch, "window_batch", integer=True)
        total = clips * frames
        for begin in range(0, total, step):
            index = np.arange(begin, min(begin + step, total))
            size = min(step, 1 << int(len(index) - 1).bit_length())  # a few batch shapes only: few traces
            rows = np.zeros((size, WINDOW_SAMPLES), np.float32)
            for row, i in enumerate(index):
                start = (i % frames) * hop
                rows[row] = batch[i // frames, start : start + WINDOW_SAMPLES]
            with precision_scope(self.precision):
                values = model.predict_on_batch(rows)
            for name in names:
                out[name].reshape(total, -1)[index] = np.asarray(values[name])[: len(index)]
        return out

    def predict(self, *args: object, **kwargs: object) -> None:
        """SoundNet's object and scene heads: L³-Net has none (its head is the AVC classifier, :attr:`avc_model`)."""
        raise ConfigError(
            "L³-Net has no object/scene heads, so predict() does not apply: take its embeddings with features(), "
            "train a head on them (soundnet-train-head), or score audio-visual correspondence with avc_model"
        )

    def __getstate__(self) -> dict[str, object]:
        """Pickle / deepcopy state (scikit-learn's clone, joblib workers): the weights as arrays, no Keras graph."""
        return {
            "weights": L3Weights(self.arch, self.get_params(), self.weights_source),
            "chunk_seconds": self.chunk_seconds,
            "window_batch": self.window_batch,
            "precision": self.precision,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        weights: L3Weights = state["weights"]  # type: ignore[assignment]
        self.__init__(weights.architecture, weights=weights, precision=str(state["precision"]))  # type: ignore[misc]
        self.chunk_seconds, self.window_batch = state["chunk_seconds"], state["window_batch"]  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"L3Net({self.arch!r}, weights={self.weights_source!r})"


def check_precision_l3(precision: str) -> str:
    """A precision L³-Net runs under (:data:`L3_PRECISIONS`); a :class:`~soundnet_keras.errors.ConfigError` else."""
    check_precision(precision)
    if precision not in L3_PRECISIONS:
        raise ConfigError(
            f"L³-Net runs with precision {' or '.join(map(repr, L3_PRECISIONS))}, got {precision!r} (mixed_bfloat16 "
            "is SoundNet's folded inference pass only)"
        )
    return precision
