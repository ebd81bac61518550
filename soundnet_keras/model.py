"""The public :class:`SoundNet` class: pretrained loading, prediction and feature extraction on waveforms.

Input contract: file paths (decoded), or float waveforms in [-1, 1] (integer arrays are scaled by their full range) at
any sample rate (resampled to 22,050 Hz with soxr): shape (samples,) or (samples, channels) for one clip (channels
mixed, or the first with ``channels="first"``), a list for several clips of any lengths, a (clips, samples) array only
with ``batch=True``. :meth:`predict` pads short clips as the network was trained (see
:func:`~soundnet_keras.architecture.plan_input`). The [-1, 1] -> [-256, 256] scaling of the original scripts is done
by the model's first layer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax

from . import architecture as arch_mod
from .architecture import SAMPLE_RATE, Geometry, PadMode, geometry, output_names
from .audio import read_inputs
from .errors import ConfigError
from .inference import compile_inference
from .network import build_network, build_serving_model, export_serving, get_params, set_params
from .precision import DEFAULT_PRECISION, check_precision
from .pretrained import load_pretrained, report
from .results import ClipResult, Features, HeadScores
from .running import FeatureMethods, run_clip, run_clips
from .weights import WeightsFile, category_names, custom_head_classes, save_weights


@dataclass
class Prediction(ClipResult):
    """SoundNet's own heads on one clip: a :class:`~soundnet_keras.results.ClipResult` with heads ``objects``
    (ImageNet, 1000) and ``scenes`` (Places2, 401), softmax probabilities per output frame.

    ``input_samples`` is the clip's length and ``num_samples`` the length the network was fed (22,050 Hz): a clip
    shorter than 10.98 s is repeated to the 20-s training crop, a longer one whose last frame would read the end
    padding gets up to 1.49 s of its start appended (``pad="repeat"``, the default; see
    :func:`~soundnet_keras.architecture.plan_input`); ``padded_to_s`` and ``padded_frames`` say so.
    """

    num_samples: int = 0
    input_samples: int = 0

    @property
    def objects(self) -> np.ndarray:
        """Object probabilities, (frames, 1000)."""
        return self.heads["objects"].values

    @property
    def scenes(self) -> np.ndarray:
        """Scene probabilities, (frames, 401)."""
        return self.heads["scenes"].values

    @property
    def object_names(self) -> list[str]:
        return list(self.heads["objects"].labels)

    @property
    def scene_names(self) -> list[str]:
        return list(self.heads["scenes"].labels)

    def probabilities(self, head: str = "scenes", frame: int | None = None) -> np.ndarray:
        """Probabilities of ``head`` for one frame, or averaged over all frames when ``frame`` is None."""
        return self.head(head).scores(frame)

    def top(self, head: str = "scenes", k: int = 5, frame: int | None = None) -> list[tuple[str, float]]:
        """The ``k`` most probable names of ``head`` with their probabilities (clip mean, or one frame)."""
        return self.head(head).top(k, frame)

    @classmethod
    def from_heads(
        cls, heads: dict[str, Features], categories: dict[str, Sequence[str]], source: str = ""
    ) -> Prediction:
        """The prediction of the two heads' logits ``heads`` (softmax per frame) with their ``categories``."""
        objects = heads["objects"]
        return cls(
            {
                name: HeadScores(softmax(heads[name].values.astype(np.float64), axis=-1), list(categories[name]))
                for name in ("objects", "scenes")
            },
            objects.times,
            objects.input_samples / SAMPLE_RATE,
            source,
            objects.padded_to_s,
            objects.padded_frames,
            num_samples=objects.num_samples,
            input_samples=objects.input_samples,
        )


DEFAULT_CHUNK_SECONDS = 120.0


def _source(item: object) -> str:
    """What a result says it came from: the file path, or empty for an array."""
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else ""


class SoundNet(FeatureMethods):
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

    Inputs: see the module docstring.
    """

    def __init__(
        self,
        arch: str = "soundnet8",
        *,
        weights: WeightsFile | None = None,
        categories: dict[str, Sequence[str]] | None = None,
        head_classes: dict[str, int] | None = None,
        precision: str = DEFAULT_PRECISION,
    ) -> None:
        arch_mod.layer_table(arch)  # validates the name
        self.precision = precision
        if weights is not None:
            if weights.architecture != arch:
                raise ConfigError(f"weights are for {weights.architecture!r}, not {arch!r}")
            if head_classes is not None and custom_head_classes(arch, head_classes) != weights.head_classes:
                raise ConfigError(
                    f"head_classes {dict(head_classes)} do not fit the weights, whose heads have "
                    f"{arch_mod.check_head_classes(arch, weights.head_classes)} classes"
                )
            head_classes = weights.head_classes
        self.arch = arch
        self.head_classes = custom_head_classes(arch, head_classes)
        """Class count of each head where not the original's (objects 1000, scenes 401; None: those)."""
        self.keras_model = build_network(arch, head_classes=self.head_classes)
        self.weights_source = "random initialisation"
        if weights is not None:
            set_params(self.keras_model, arch, weights.params, head_classes=self.head_classes)
            self.weights_source = weights.source or "weights file"
            categories = categories or weights.categories
        self.categories = category_names(arch, categories, self.head_classes)
        self._runners: dict[tuple, object] = {}
        self.jit_compile: bool | None = None
        """Compile the whole inference pass: TensorFlow's XLA, ``jax.jit`` (None: the backend's default, XLA off on
        TensorFlow, jit on JAX; see :data:`~soundnet_keras.inference.JIT_BY_DEFAULT` and benchmarks/)."""
        self.chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS
        """Inputs longer than this (at 22,050 Hz) run in chunks of about this length with bounded memory; the
        result equals one pass to float precision (see :mod:`soundnet_keras.chunking`); None: always one pass."""

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike = "soundnet8",
        *,
        verbose: bool = True,
        precision: str = DEFAULT_PRECISION,
    ) -> SoundNet:
        """Load a preset (``"soundnet8"``) or a weights file (``.weights.h5``, authors' ``.t7``, ``sound8.npy``).

        Presets are taken from the cache, or obtained, verified, converted and cached on first use (see
        :mod:`soundnet_keras.pretrained`); ``verbose`` reports those steps on stderr. ``precision``: see
        :attr:`precision`.
        """
        check_precision(precision)  # before any download
        weights = load_pretrained(name_or_path, log=report if verbose else None)
        return cls(weights.architecture, weights=weights, precision=precision)

    def save_weights(self, path: str | os.PathLike) -> Path:
        """Write this model's parameters (and category names) to a ``.weights.h5`` file, atomically."""
        return save_weights(
            path,
            WeightsFile(
                self.arch,
                get_params(self.keras_model),
                source=self.weights_source,
                categories=self.categories,
                head_classes=self.head_classes,
            ),
        )

    # -------------------------------------------------------------------------------------------------- serving
    def serving_model(self):
        """:attr:`keras_model` (same weights) behind the heads' padding policy: (batch, samples) float32 at 22,050 Hz
        -> head logits per reported frame, as :meth:`predict` computes them, for any input of at least one sample.

        :attr:`keras_model` is the bare network: it needs ``geometry("objects").min_samples`` samples and knows no
        policy. Save or export this model instead (see :meth:`export`).
        """
        return build_serving_model(self.keras_model, self.arch)

    def export(self, path: str | os.PathLike, *, format: str = "keras") -> Path:
        """Write :meth:`serving_model`: ``format="keras"`` a ``.keras`` file, or ``"tf_saved_model"`` a SavedModel
        folder whose ``serve`` signature takes (batch, samples) float32 and needs nothing of this package.

        Load the ``.keras`` file with ``keras.saving.load_model(path)`` (``safe_mode=True`` works: no lambdas) after
        ``import soundnet_keras.network``, which registers the two policy layers (``LoopPad``, ``KeepFrames``).
        """
        return export_serving(self.keras_model, self.arch, path, format)

    # ------------------------------------------------------------------------------------------------- geometry
    @property
    def layers(self) -> tuple[str, ...]:
        """Names of the outputs that :meth:`features` accepts, in forward order."""
        return output_names(self.arch)

    embedding_layer = "pool5"
    """The layer downstream tools read by default (the paper's transfer features)."""

    def geometry(self, layer: str = "objects") -> Geometry:
        """Minimum input length, hop, receptive field and offset (samples at 22,050 Hz) of a named output."""
        return geometry(self.arch, layer, self.head_classes)

    # ------------------------------------------------------------------------------------------------ execution
    @property
    def precision(self) -> str:
        """How inference computes: ``"highest"`` (float32, TensorFloat-32 off: Torch7-exact on any device, the
        default), ``"default"`` (the backend's settings: TF32 on recent GPUs) or ``"mixed_bfloat16"``; see
        :mod:`soundnet_keras.precision` and the README's "Precision" for the measured errors."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._precision = check_precision(value)

    def _runner(self, names: tuple[str, ...]):
        """The compiled inference function of ``names`` (:func:`~soundnet_keras.inference.compile_inference`), cached
        per precision and compilation setting."""
        key = (names, self.jit_compile, self.precision)
        if key not in self._runners:
            self._runners[key] = compile_inference(
                self.keras_model, self.arch, names, jit_compile=self.jit_compile, precision=self.precision
            )
        return self._runners[key]

    def forward(self, batch: np.ndarray, layers: Iterable[str]) -> dict[str, np.ndarray]:
        """Run a prepared (batch, samples) float32 array at 22,050 Hz through the network (no padding).

        Returns each requested output as (batch, frames, channels). Prefer :meth:`features` / :meth:`predict`.
        An input shorter than an output's ``min_samples`` raises :class:`~soundnet_keras.errors.InputTooShortError`.
        """
        names = tuple(layers)
        if np.ndim(batch) != 2 or np.shape(batch)[1] < 1:
            raise ConfigError(f"forward() takes a (batch, samples) array, got shape {np.shape(batch)}; see features()")
        for name in names:
            arch_mod.check_length(self.arch, name, np.shape(batch)[1])
        out = self._runner(names)(batch)
        return {name: out[name] for name in names}

    def predict(
        self,
        waveform: object,
        sample_rate: int | None = None,
        *,
        pad: PadMode | None = "repeat",
        channels: str = "mix",
        batch: bool = False,
        batch_size: int = 16,
    ) -> Prediction | list[Prediction]:
        """Object and scene probabilities (softmax of the heads) per output frame, with names and frame times.

        Inputs as for :meth:`features`. By default (``pad="repeat"``) the network hears what it was trained on: a
        clip shorter than 10.98 s is repeated circularly to the 20-s training crop, and where a longer clip's last
        frame would be dominated by padding, up to 1.49 s of the clip's start is appended; the result says so
        (``padded``, ``padded_to_s``, ``padded_frames``). ``pad=None`` appends nothing, reports only frames with
        the training margin and raises :class:`~soundnet_keras.errors.InputTooShortError` below 10.98 s.
        """
        pad = arch_mod.check_pad(pad)  # before any file is decoded
        audio, is_list = read_inputs(waveform, sample_rate, channels, batch)
        names = ("objects", "scenes")
        if is_list:
            sources = [_source(item) for item in waveform]  # type: ignore[union-attr]
            runs = run_clips(self.forward, self.arch, audio, names, pad, batch_size, self.chunk_seconds)
            return [
                Prediction.from_heads(out, self.categories, source) for out, source in zip(runs, sources, strict=True)
            ]
        heads = run_clip(self.forward, self.arch, audio, names, pad, self.chunk_seconds)
        return Prediction.from_heads(heads, self.categories, _source(waveform))

    def __getstate__(self) -> dict[str, object]:
        """Pickle / deepcopy state (joblib workers, scikit-learn's clone): weights as arrays, no compiled graph."""
        weights = WeightsFile(
            self.arch,
            get_params(self.keras_model),
            self.weights_source,
            categories=self.categories,
            head_classes=self.head_classes,
        )
        return {
            "weights": weights,
            "jit_compile": self.jit_compile,
            "chunk_seconds": self.chunk_seconds,
            "precision": self.precision,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        weights = state["weights"]
        self.__init__(weights.architecture, weights=weights)  # type: ignore[misc, union-attr]
        self.jit_compile, self.chunk_seconds = state["jit_compile"], state["chunk_seconds"]
        self.precision = str(state.get("precision", DEFAULT_PRECISION))  # pickles of 0.1.0 have none

    def __repr__(self) -> str:
        return f"SoundNet({self.arch!r}, weights={self.weights_source!r})"
