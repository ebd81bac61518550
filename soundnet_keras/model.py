"""The public :class:`SoundNet` class: pretrained loading, prediction and feature extraction on waveforms."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax

from . import architecture as arch_mod
from .architecture import SAMPLE_RATE, FrameTimes, Geometry, PadMode, frame_times, geometry, output_names
from .audio import as_batch, as_clip, check_channels, check_sample_rate, load_audio, resample
from .errors import ConfigError, InputTooShortError
from .network import build_network, get_params, inference_function, set_params
from .results import ClipResult, HeadScores
from .validation import check_positive
from .weights import WeightsFile, load_weights, save_weights


@dataclass
class Features:
    """Activations of one layer for one clip (or a batch of equal-length clips).

    ``values`` is (frames, channels), or (batch, frames, channels) for ``batch=True``; ``times`` gives each frame's
    receptive-field start, centre and end in seconds, clipped to the clip (to the 20-s loop for a clip repeated to
    it); ``input_samples`` is the clip's length and ``num_samples`` the length the network saw (22,050 Hz);
    ``padded`` says whether padding appended anything, and ``padded_frames`` which frames read appended audio (see
    :func:`~soundnet_keras.architecture.plan_input`).
    """

    layer: str
    values: np.ndarray
    times: FrameTimes
    num_samples: int
    padded: bool = False
    input_samples: int = 0
    padded_frames: np.ndarray | None = None

    @property
    def padded_to_s(self) -> float | None:
        """Seconds the clip was padded to, or None when nothing was appended."""
        return self.num_samples / SAMPLE_RATE if self.padded else None


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


DEFAULT_CHUNK_SECONDS = 120.0


def _source(item: object) -> str:
    """What a result says it came from: the file path, or empty for an array."""
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else ""


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

    Input contract: file paths (decoded), or float waveforms in [-1, 1] (integer arrays are scaled by their full
    range) at any sample rate (resampled to 22,050 Hz with soxr): shape (samples,) or (samples, channels) for one
    clip (channels mixed, or the first with ``channels="first"``), a list for several clips of any lengths, a
    (clips, samples) array only with ``batch=True``. :meth:`predict` pads short clips as the network was trained
    (see :func:`~soundnet_keras.architecture.plan_input`). The [-1, 1] -> [-256, 256] scaling of the original
    scripts is done by the model's first layer.
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

    # -------------------------------------------------------------------------------------------------- serving
    def serving_model(self):
        """:attr:`keras_model` (same weights) behind the heads' padding policy: (batch, samples) float32 at 22,050 Hz
        -> head logits per reported frame, as :meth:`predict` computes them, for any input of at least one sample.

        :attr:`keras_model` is the bare network: it needs ``geometry("objects").min_samples`` samples and knows no
        policy. Save or export this model instead (see :meth:`export`).
        """
        from .network import build_serving_model

        return build_serving_model(self.keras_model, self.arch)

    def export(self, path: str | os.PathLike, *, format: str = "keras") -> Path:
        """Write :meth:`serving_model`: ``format="keras"`` a ``.keras`` file, or ``"tf_saved_model"`` a SavedModel
        folder whose ``serve`` signature takes (batch, samples) float32 and needs nothing of this package.

        Load the ``.keras`` file with ``keras.saving.load_model(path)`` (``safe_mode=True`` works: no lambdas) after
        ``import soundnet_keras.network``, which registers the two policy layers (``LoopPad``, ``KeepFrames``).
        """
        path = Path(path)
        model = self.serving_model()
        if format == "keras":
            if path.suffix != ".keras":
                raise ConfigError(f"a Keras model file must end in .keras, got {str(path)!r}")
            model.save(path)
        elif format == "tf_saved_model":
            model.export(str(path), format="tf_saved_model", verbose=False)
        else:
            raise ConfigError(f"unknown export format {format!r}: expected 'keras' or 'tf_saved_model'")
        return path

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
                inference_function(self.keras_model, self.arch, names),
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

    def _chunk_samples(self, names: tuple[str, ...]) -> int | None:
        """Input length above which :meth:`_forward_any_length` runs in chunks (None: never)."""
        if self.chunk_seconds is None:
            return None
        from .chunking import min_chunk_samples

        return max(round(self.chunk_seconds * SAMPLE_RATE), min_chunk_samples(self.arch, names))

    def _forward_any_length(
        self, batch: np.ndarray, names: tuple[str, ...], tail: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """:meth:`forward` of ``batch`` followed by ``tail`` (appended by the padding policy), in chunks
        (:mod:`~soundnet_keras.chunking`) when longer than :attr:`chunk_seconds` — then without copying ``batch``."""
        chunk = self._chunk_samples(names)
        total = batch.shape[-1] + (0 if tail is None else tail.shape[-1])
        if chunk is None or total <= chunk:
            return self.forward(batch if tail is None else np.concatenate([batch, tail], axis=-1), names)
        from .chunking import run_chunked

        return run_chunked(self.forward, self.arch, batch, names, chunk, tail=tail)

    def _inputs(
        self, waveform: object, sample_rate: object, channels: str, batch: bool
    ) -> tuple[list[np.ndarray] | np.ndarray, bool]:
        """Inputs at 22,050 Hz: one 1-D clip, a (clips, samples) batch (``batch=True``) or a list of 1-D clips.

        Paths (``str`` / ``os.PathLike``) are decoded with :func:`~soundnet_keras.audio.load_audio`; arrays follow
        the layout rule of :func:`~soundnet_keras.audio.as_clip` and are resampled from ``sample_rate`` (22,050 Hz
        when None).
        """
        check_channels(channels)
        if isinstance(waveform, (list, tuple)) and waveform and not np.isscalar(waveform[0]):
            if batch:
                raise ConfigError("batch=True takes one 2-D array (clips, samples); a list is already several clips")
            clips = [self._clip(w, sample_rate, channels, f"waveform[{i}]") for i, w in enumerate(waveform)]
            return clips, True
        if batch:
            if isinstance(waveform, (str, os.PathLike)):
                raise ConfigError("batch=True takes a 2-D array (clips, samples), not a file path")
            return resample(as_batch(waveform), self._rate(sample_rate)), False
        return self._clip(waveform, sample_rate, channels, "waveform"), False

    @staticmethod
    def _rate(sample_rate: object) -> int:
        return SAMPLE_RATE if sample_rate is None else check_sample_rate(sample_rate)

    def _clip(self, waveform: object, sample_rate: object, channels: str, name: str) -> np.ndarray:
        if isinstance(waveform, (str, os.PathLike)):
            if sample_rate is not None:
                raise ConfigError(
                    f"{name} is a file path ({os.fspath(waveform)!r}), which carries its own sample rate: leave "
                    f"sample_rate out (got {sample_rate!r}), or decode it yourself with soundnet_keras.audio.load_audio"
                )
            return load_audio(waveform, channels=channels)[0]
        if isinstance(waveform, bytes):
            raise ConfigError(f"{name} is bytes: pass a file path, or decode it with soundnet_keras.audio.load_audio")
        return resample(as_clip(waveform, name=name, channels=channels), self._rate(sample_rate))

    def _run(self, audio: np.ndarray, names: tuple[str, ...], pad: PadMode | None) -> dict[str, Features]:
        """Plan (padding policy), run and trim one clip (samples,) or batch (clips, samples) at 22,050 Hz."""
        plan = arch_mod.plan_input(self.arch, names, audio.shape[-1], pad)
        batch = audio if audio.ndim == 2 else audio[None]
        values = self._forward_any_length(batch, names, plan.appended(batch))
        return self._features(plan, {name: v if audio.ndim == 2 else v[0] for name, v in values.items()})

    def _run_many(
        self, clips: Sequence[np.ndarray], names: tuple[str, ...], pad: PadMode | None, batch_size: int
    ) -> list[dict[str, Features]]:
        """:meth:`_run` for 1-D clips of any lengths, batching those the policy feeds with the same length."""
        batch_size = check_positive(batch_size, "batch_size", integer=True)
        plans = []
        for index, clip in enumerate(clips):
            try:
                plans.append(arch_mod.plan_input(self.arch, names, clip.shape[-1], pad))
            except InputTooShortError as exc:
                raise exc.with_context(f"waveform[{index}]") from None
        groups: dict[int, list[int]] = {}
        for index, plan in enumerate(plans):
            groups.setdefault(plan.network_samples, []).append(index)
        results: list[dict[str, Features]] = [{} for _ in clips]
        chunk = self._chunk_samples(names)
        for length, members in groups.items():
            if chunk is not None and length > chunk:  # long files: one at a time, chunked, never copied
                for index in members:
                    results[index] = self._run(clips[index], names, pad)
                continue
            for begin in range(0, len(members), batch_size):
                part = members[begin : begin + batch_size]
                batch = np.stack([plans[i].apply(clips[i]) for i in part])
                values = self._forward_any_length(batch, names)
                for row, index in enumerate(part):
                    results[index] = self._features(plans[index], {name: v[row] for name, v in values.items()})
        return results

    def _features(self, plan: arch_mod.InputPlan, values: dict[str, np.ndarray]) -> dict[str, Features]:
        """Trim each output to the frames the plan reports and attach times and padding flags."""
        result = {}
        for name, array in values.items():
            frames = plan.frames(name)
            result[name] = Features(
                name,
                array[..., :frames, :],
                frame_times(self.arch, name, frames, plan.timeline_samples),
                plan.network_samples,
                plan.padded,
                plan.input_samples,
                plan.padded_frames(name, frames),
            )
        return result

    def intermediates(
        self,
        waveform: object,
        sample_rate: int | None = None,
        layers: Iterable[str] | None = None,
        *,
        pad: PadMode | None = None,
        channels: str = "mix",
        batch: bool = False,
    ) -> dict[str, Features]:
        """Several named outputs of one clip (or a ``batch=True`` array) in a single pass (``forward_intermediates``).

        Inputs and ``pad`` as for :meth:`features`; with a head among ``layers`` the heads' padding policy applies to
        the whole pass (see :func:`~soundnet_keras.architecture.plan_input`).
        """
        names = tuple(layers) if layers is not None else self.layers
        for name in names:
            geometry(self.arch, name)  # validates each name
        audio, is_list = self._inputs(waveform, sample_rate, channels, batch)
        if is_list:
            raise ConfigError("intermediates() takes one clip or a batch=True array; call it once per clip")
        return self._run(audio, names, arch_mod.check_pad(pad))

    def features(
        self,
        waveform: object,
        sample_rate: int | None = None,
        layer: str = "pool5",
        *,
        pad: PadMode | None = None,
        channels: str = "mix",
        batch: bool = False,
        batch_size: int = 16,
    ) -> Features | list[Features]:
        """Activations of ``layer`` (``conv1`` ... ``conv7`` after BN+ReLU, ``pool*``, or head logits).

        ``waveform``: a 1-D array (one clip); a (samples, channels) array (one clip, channels mixed or the first
        taken, as ``channels`` says); a file path (decoded); a list of those (several clips, any lengths); or with
        ``batch=True`` a (clips, samples) array. Arrays are at ``sample_rate`` (22,050 Hz when None) and resampled.
        Returns :class:`Features` with ``values`` (frames, channels) and frame times, or a list of them for a list
        (clips fed with equal lengths run in batches of ``batch_size``).
        ``pad="repeat"`` / ``"zeros"`` pads clips too short for ``layer``; with ``pad=None`` they raise
        :class:`~soundnet_keras.errors.InputTooShortError`.
        """
        geometry(self.arch, layer)
        audio, is_list = self._inputs(waveform, sample_rate, channels, batch)
        pad = arch_mod.check_pad(pad)
        if is_list:
            return [out[layer] for out in self._run_many(audio, (layer,), pad, batch_size)]
        return self._run(audio, (layer,), pad)[layer]

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
        audio, is_list = self._inputs(waveform, sample_rate, channels, batch)
        pad = arch_mod.check_pad(pad)
        names = ("objects", "scenes")
        if is_list:
            sources = [_source(item) for item in waveform]  # type: ignore[union-attr]
            runs = self._run_many(audio, names, pad, batch_size)
            return [self._prediction(out, source) for out, source in zip(runs, sources, strict=True)]
        return self._prediction(self._run(audio, names, pad), _source(waveform))

    def _prediction(self, heads: dict[str, Features], source: str = "") -> Prediction:
        objects = heads["objects"]
        return Prediction(
            {
                name: HeadScores(softmax(heads[name].values.astype(np.float64), axis=-1), self.categories[name])
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

    def __repr__(self) -> str:
        return f"SoundNet({self.arch!r}, weights={self.weights_source!r})"
