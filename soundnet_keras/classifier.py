"""Classifier heads on SoundNet features: the paper's transfer protocol, and your own sound classes.

SoundNet's hidden layers with a linear classifier trained on a little labelled data recognise natural sounds (ESC-50
74.2 %, ESC-10 92.2 % with SoundNet-8 pool5 features and a linear SVM in the paper). This module provides:

* :class:`FeatureExtractor` -- activations of one or several layers per clip (:class:`ClipFeatures`), from files or
  waveforms, with a content-keyed on-disk cache (:class:`FeatureCache`);
* :class:`SoundNetFeatures` -- a scikit-learn transformer giving one pooled feature vector per clip, so that
  ``make_pipeline(SoundNetFeatures(), LinearSVC())`` works;
* :class:`ClipClassifier` -- a head (linear SVM, logistic regression, or a single-layer perceptron trained with
  Keras) fitted on sliding windows of feature frames, with clip scores aggregated over the windows, saved to and
  loaded from one HDF5 file (:func:`load_classifier`; no pickle, no code executed on load);
* :func:`classify_files` -- per-file records (label, score per class, optional per-window scores) for the CLIs.

Input variants (``variant=``):

``"resampled"``
    audio resampled to 22,050 Hz, samples in [-1, 1] (the network's own x256, i.e. int32 x 2^-23 as in the original
    training scripts).
``"exact"``
    what the authors' ``eval_esc50.lua`` did: the file's samples fed *without resampling* (44.1 kHz ESC audio read as
    if it were 22,050 Hz) and scaled by 2^-22 instead of 2^-23, i.e. x2 here.

``duration=`` (seconds) repeats each clip circularly and cuts it to exactly that length of the audio fed (the file's
own rate in the exact variant), as ``eval_esc50.lua`` does with ``sound_length = 10``; ``None`` keeps clips as they
are (repeat-padded only where shorter than the deepest layer's minimum).

Windows (``window=`` seconds, ``None`` for one window over the whole clip): the window width in frames is
``ceil(window / clip_seconds * T)`` for a clip of ``T`` frames (``eval_esc50.lua``'s ``twindow_size``), fixed from the
first training clip; every offset gives one sample. ``window_features="flatten"`` concatenates the window's frames
(channel-major, as the Lua ``view(-1)`` of a (channels, frames) slice); ``"mean"``, ``"max"`` and ``"meanmax"``
pool them over time instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, TransformerMixin

from .architecture import SAMPLE_RATE, InputPlan, frame_times, geometry, pad_to_length, plan_input
from .errors import AudioError, ConfigError, SoundNetError
from .files import atomic_path, sha256_file
from .validation import check_choice, check_positive

FORMAT = "soundnet_keras.head/1"
"""Value of the ``format`` attribute of a head file written by :meth:`ClipClassifier.save`."""

FINETUNED_FORMAT = "soundnet_keras.finetuned/1"
"""``format`` attribute of a fine-tuned network file (read by :mod:`soundnet_keras.training.finetune`)."""

VARIANTS = ("resampled", "exact")
HEADS = ("svm", "logistic", "perceptron")
WINDOW_FEATURES = ("flatten", "mean", "max", "meanmax")
POOLINGS = ("mean", "max", "meanmax")
AGGREGATES = ("mean", "max")
EXACT_GAIN = 2.0
"""Extra gain of the ``"exact"`` variant: the original scaled int32 samples by 2^-22, the network assumes 2^-23."""

DEFAULT_C = {"svm": 0.01, "logistic": 1.0, "perceptron": 1.0}
DEFAULT_TOL = {"svm": 0.1, "logistic": 1e-4, "perceptron": 0.0}
"""liblinear's default stopping tolerance for ``-s 1`` is 0.1; sklearn's LinearSVC default (1e-4) is stricter."""

Item = str | os.PathLike | np.ndarray
Progress = Callable[[Iterable[Any], int, str], Iterable[Any]]


def check_layers(layer: str | Sequence[str], arch: str = "soundnet8") -> tuple[str, ...]:
    """Validate a layer name or a sequence of distinct names of ``arch``; returns them as a tuple."""
    layers = (layer,) if isinstance(layer, str) else tuple(layer) if isinstance(layer, (list, tuple)) else None
    if not layers or not all(isinstance(name, str) for name in layers):
        raise ConfigError(f"layer must be a layer name or a non-empty list of names, got {layer!r}")
    if len(set(layers)) != len(layers):
        raise ConfigError(f"layer lists a name twice: {list(layers)}")
    for name in layers:
        geometry(arch, name)  # raises ConfigError naming the valid layers
    return layers


# ------------------------------------------------------------------------------------------------- model identity
_NETS: dict[str, Any] = {}


def model_identity(net: Any) -> str:
    """sha256 of a SoundNet's architecture and its parameter values *now*: the weights part of feature-cache keys.

    Computed from the live variables on every call (about 0.1 s for SoundNet-8), never remembered: after
    fine-tuning, ``load_weights`` or ``set_weights`` the key changes, so cached features of the old weights are
    not returned.
    """
    from .network import get_params

    digest = hashlib.sha256(net.arch.encode())
    for layer, variables in sorted(get_params(net.keras_model).items()):
        for var, value in sorted(variables.items()):
            array = np.ascontiguousarray(value, dtype=np.float32)
            digest.update(f"{layer}/{var}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def resolve_net(net: Any = None, weights: str | os.PathLike = "soundnet8") -> Any:
    """``net`` itself when given, else the SoundNet of ``weights`` (preset or file), loaded once per process."""
    from .model import SoundNet

    if net is not None:
        if not isinstance(net, SoundNet):
            raise ConfigError(f"net must be a SoundNet instance or None, got {type(net).__name__}")
        return net
    if not isinstance(weights, (str, os.PathLike)):
        raise ConfigError(f"weights must be a preset name or a weights file path, got {weights!r}")
    key = os.fspath(weights)
    if key not in _NETS:
        _NETS[key] = SoundNet.from_pretrained(weights)
    return _NETS[key]


# ------------------------------------------------------------------------------------------------------- features
@dataclass
class ClipFeatures:
    """Activations of one clip at one or several layers, as the network computed them.

    ``layers`` maps a layer name to (frames, channels) float32; ``num_samples`` is the length fed to the network and
    ``input_rate`` the real sample rate of that audio (22,050 Hz, or the file's rate in the exact variant), so that
    frame times in seconds of the audio are the network's times scaled by ``22050 / input_rate``.
    """

    layers: dict[str, np.ndarray]
    num_samples: int
    input_rate: int
    source: str = ""

    @property
    def seconds(self) -> float:
        """Duration of the audio fed to the network, in seconds of that audio."""
        return self.num_samples / self.input_rate

    def frame_times(self, arch: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """Start and end (seconds of the audio fed) of each frame's receptive field at ``layer``."""
        times = frame_times(arch, layer, self.layers[layer].shape[0], self.num_samples)
        scale = SAMPLE_RATE / self.input_rate
        return times.start * scale, times.end * scale


class FeatureCache:
    """Per-clip features on disk, keyed by content sha256 + layer + input settings + network identity.

    Layout: ``root/<identity[:16]>/<settings>/<layer>/<sha[:2]>/<sha>.npz`` holding ``values``, ``num_samples`` and
    ``input_rate``; files are written atomically and read with ``allow_pickle=False``. An unreadable entry is
    treated as absent (and rewritten).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        if root is None:
            from .pretrained import cache_dir

            root = cache_dir() / "features"
        self.root = Path(root).expanduser()

    def path(self, identity: str, settings: str, layer: str, content: str) -> Path:
        """Where the entry of one clip/layer lives."""
        return self.root / identity[:16] / settings / layer / content[:2] / f"{content}.npz"

    def get(self, identity: str, settings: str, layer: str, content: str) -> tuple[np.ndarray, int, int] | None:
        """``(values, num_samples, input_rate)`` of a cached entry, or None."""
        path = self.path(identity, settings, layer, content)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return np.asarray(data["values"], np.float32), int(data["num_samples"]), int(data["input_rate"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None

    def clear(self) -> int:
        """Delete every entry of this cache (only files of its own layout) and the folders left empty; returns how
        many entries were deleted. Features are recomputed on next use."""
        removed = 0
        for entry in self.root.glob("*/*/*/*/*.npz"):
            entry.unlink(missing_ok=True)
            removed += 1
        for folder in sorted((p for p in self.root.glob("**/*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only empty folders go
        return removed

    def put(
        self, identity: str, settings: str, layer: str, content: str, values: np.ndarray, num_samples: int, rate: int
    ) -> None:
        """Write one entry atomically (a concurrent reader sees the old entry or the complete new one)."""
        path = self.path(identity, settings, layer, content)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, values=np.asarray(values, np.float32), num_samples=num_samples, input_rate=rate)


def _default_progress(iterable: Iterable[Any], total: int, desc: str, unit: str = "clip") -> Iterable[Any]:
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False)


class FeatureExtractor:
    """Extract the activations of ``layers`` for clips given as file paths or 1-D waveforms.

    Waveforms are at ``sample_rate`` and in [-1, 1] (see :func:`soundnet_keras.audio.as_waveform`); files are
    decoded with :func:`soundnet_keras.audio.load_audio` (``channels`` as there). ``variant`` and ``duration`` are
    described in the module docstring. ``cache`` enables the :class:`FeatureCache` under ``cache_dir`` (default:
    ``<soundnet-keras cache>/features``).
    """

    def __init__(
        self,
        net: Any,
        layers: str | Sequence[str] = "pool5",
        *,
        variant: str = "resampled",
        duration: float | None = None,
        channels: str = "mix",
        sample_rate: int = SAMPLE_RATE,
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        from .audio import check_sample_rate

        self.net = resolve_net(net)
        self.layers = check_layers(layers, self.net.arch)
        self.variant = check_choice(variant, VARIANTS, "variant")
        self.duration = check_positive(duration, "duration", allow_none=True)
        self.channels = check_choice(channels, ("mix", "first"), "channels")
        self.sample_rate = check_sample_rate(sample_rate)
        self.cache = FeatureCache(cache_dir) if cache else None

    @property
    def settings_tag(self) -> str:
        """The input-settings part of cache keys."""
        duration = "asis" if self.duration is None else f"{self.duration:g}s"
        return f"{self.variant}-{duration}-{self.channels}"

    def prepare(self, waveform: np.ndarray, rate: int) -> tuple[np.ndarray, int, InputPlan]:
        """The 1-D float32 input the network sees for a [-1, 1] waveform at ``rate``, that audio's real rate, and
        the padding plan (:func:`~soundnet_keras.architecture.plan_input`, ``pad="repeat"``) that made it."""
        from .audio import resample

        if self.variant == "resampled":
            audio, input_rate = resample(waveform, rate), SAMPLE_RATE
        else:
            audio, input_rate = waveform * np.float32(EXACT_GAIN), rate
        if self.duration is not None:
            length = round(self.duration * input_rate)
            audio = pad_to_length(audio, length, "repeat")[:length]
        plan = plan_input(self.net.arch, self.layers, audio.shape[-1], "repeat")
        return np.ascontiguousarray(plan.apply(audio), dtype=np.float32), int(input_rate), plan

    def _load(self, item: Item, index: int) -> tuple[np.ndarray, int, str]:
        from .audio import as_clip, load_audio

        if isinstance(item, (str, os.PathLike)):
            target = SAMPLE_RATE if self.variant == "resampled" else None
            waveform, rate = load_audio(item, target_rate=target, channels=self.channels)
            return waveform, rate, os.fspath(item)
        waveform = as_clip(item, name=f"clip {index}", channels=self.channels)
        return waveform, self.sample_rate, f"<waveform {index}>"

    def _content_key(self, item: Item, index: int) -> str:
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if not path.is_file():
                raise AudioError(f"{str(path)!r}: no such file" if not path.exists() else f"{str(path)!r}: not a file")
            return sha256_file(path)
        from .audio import as_clip

        waveform = as_clip(item, name=f"clip {index}", channels=self.channels)
        digest = hashlib.sha256(f"waveform/{self.sample_rate}/".encode())
        digest.update(np.ascontiguousarray(waveform, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def extract_one(self, item: Item | ClipFeatures, index: int = 0, *, identity: str | None = None) -> ClipFeatures:
        """Features of one clip (path, waveform, or :class:`ClipFeatures` already holding the layers).

        ``identity`` is :func:`model_identity` of the network *now* (computed here when None); :meth:`extract`
        computes it once per call, so features never come from a cache entry of weights no longer in use.
        """
        if isinstance(item, ClipFeatures):
            missing = [name for name in self.layers if name not in item.layers]
            if missing:
                raise ConfigError(f"clip {index} ({item.source or 'features'}) lacks layers {missing}")
            return item
        if self.cache and identity is None:
            identity = model_identity(self.net)
        identity = identity or ""
        content = self._content_key(item, index) if self.cache else ""
        found: dict[str, np.ndarray] = {}
        meta: tuple[int, int] | None = None
        if self.cache:
            for name in self.layers:
                entry = self.cache.get(identity, self.settings_tag, name, content)
                if entry is not None:
                    found[name] = entry[0]
                    meta = (entry[1], entry[2])
        source = os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"<waveform {index}>"
        if len(found) == len(self.layers) and meta is not None:
            return ClipFeatures(found, meta[0], meta[1], source)
        waveform, rate, source = self._load(item, index)
        audio, input_rate, plan = self.prepare(waveform, rate)
        missing = tuple(name for name in self.layers if name not in found)
        values = self.net.forward(audio[None], missing)
        for name in missing:
            found[name] = np.asarray(values[name][0, : plan.frames(name)], np.float32)
            if self.cache:
                self.cache.put(identity, self.settings_tag, name, content, found[name], audio.shape[-1], input_rate)
        return ClipFeatures({name: found[name] for name in self.layers}, audio.shape[-1], input_rate, source)

    def extract(
        self, items: Sequence[Item | ClipFeatures], *, progress: bool | Progress = False, desc: str = "features"
    ) -> list[ClipFeatures]:
        """Features of every clip in ``items``, in order (see :meth:`extract_one`)."""
        items = as_items(items)
        identity = model_identity(self.net) if self.cache else None
        iterator: Iterable[tuple[int, Any]] = enumerate(items)
        if progress and not all(isinstance(item, ClipFeatures) for item in items):
            wrap = _default_progress if progress is True else progress
            iterator = wrap(iterator, len(items), desc)
        return [self.extract_one(item, index, identity=identity) for index, item in iterator]


def as_items(items: object, what: str = "X") -> list[Any]:
    """Check that ``items`` is a sequence of clips (paths, 1-D waveforms or ClipFeatures) and return it as a list."""
    if isinstance(items, (str, os.PathLike)):
        raise ConfigError(f"{what} must be a list of clips (file paths or waveforms), got a single path {items!r}")
    if isinstance(items, np.ndarray):
        if items.ndim == 1 and items.dtype.kind in "fiu":
            raise ConfigError(f"{what} must be a list of clips; wrap a single waveform in a list")
        if items.ndim == 2 and items.dtype.kind in "fiu":
            return list(items)
        return items.tolist() if items.dtype.kind in "OU" else list(items)
    if not isinstance(items, Sequence):
        raise ConfigError(f"{what} must be a list of clips (file paths or waveforms), got {type(items).__name__}")
    if len(items) == 0:
        raise ConfigError(f"{what} is empty: at least one clip is needed")
    return list(items)


# ----------------------------------------------------------------------------------------------- pooling/windows
def pool_frames(frames: np.ndarray, how: str) -> np.ndarray:
    """Statistics over time of (..., frames, channels): ``mean``, ``max`` or both concatenated (``meanmax``)."""
    if how == "mean":
        return frames.mean(axis=-2)
    if how == "max":
        return frames.max(axis=-2)
    if how == "meanmax":
        return np.concatenate([frames.mean(axis=-2), frames.max(axis=-2)], axis=-1)
    raise ConfigError(f"pooling must be one of {', '.join(map(repr, POOLINGS))}, got {how!r}")


def window_frames(num_frames: int, window_seconds: float, clip_seconds: float) -> int:
    """Window width in frames, ``ceil(window / clip_seconds * T)`` -- ``eval_esc50.lua``'s ``twindow_size``.

    Computed in double precision as the Lua script does; at least one frame.
    """
    return max(1, math.ceil((window_seconds / clip_seconds) * num_frames))


def sliding_windows(frames: np.ndarray, width: int, how: str = "flatten") -> np.ndarray:
    """One row per window of ``width`` consecutive frames at every offset: (T - width + 1, dims).

    ``flatten`` concatenates the window channel-major (dims = channels x width, Lua's ``view(-1)`` of a (channels,
    frames) slice); ``mean``/``max``/``meanmax`` pool it over time. Clips shorter than ``width`` frames are repeated
    circularly to ``width`` frames first.
    """
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[0] == 0:
        raise ConfigError(f"frames must be a non-empty (frames, channels) array, got shape {frames.shape}")
    if frames.shape[0] < width:
        frames = np.concatenate([frames] * math.ceil(width / frames.shape[0]), axis=0)[:width]
    view = np.lib.stride_tricks.sliding_window_view(frames, width, axis=0)  # (n, channels, width)
    if how == "flatten":
        return view.reshape(view.shape[0], -1)
    return pool_frames(np.swapaxes(view, -1, -2), how)


# ---------------------------------------------------------------------------------------- scikit-learn transformer
class SoundNetFeatures(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: clips (file paths or 1-D waveforms) -> one SoundNet feature vector per clip.

    ``layer`` is a layer name or a list of names (their pooled statistics are concatenated); ``pooling`` the
    statistics over time (``mean``, ``max``, ``meanmax``). Features are cached per clip content, layer, input
    settings and network weights (``cache``/``cache_dir``). ``net`` is a :class:`~soundnet_keras.SoundNet`
    instance, shared (not copied) by :func:`sklearn.base.clone`; when None the ``weights`` preset/file is loaded.

    >>> from sklearn.pipeline import make_pipeline     # doctest: +SKIP
    >>> from sklearn.svm import LinearSVC              # doctest: +SKIP
    >>> model = make_pipeline(SoundNetFeatures(), LinearSVC()).fit(paths, labels)  # doctest: +SKIP
    """

    def __init__(
        self,
        layer: str | Sequence[str] = "pool5",
        pooling: str = "mean",
        *,
        variant: str = "resampled",
        duration: float | None = None,
        sample_rate: int = SAMPLE_RATE,
        channels: str = "mix",
        net: Any = None,
        weights: str | os.PathLike = "soundnet8",
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = False,
    ) -> None:
        self.layer = layer
        self.pooling = pooling
        self.variant = variant
        self.duration = duration
        self.sample_rate = sample_rate
        self.channels = channels
        self.net = net
        self.weights = weights
        self.cache = cache
        self.cache_dir = cache_dir
        self.progress = progress

    def __sklearn_clone__(self) -> SoundNetFeatures:
        return type(self)(**self.get_params(deep=False))

    def extractor(self) -> FeatureExtractor:
        """The :class:`FeatureExtractor` these settings describe (validates them)."""
        check_choice(self.pooling, POOLINGS, "pooling")
        return FeatureExtractor(
            resolve_net(self.net, self.weights),
            self.layer,
            variant=self.variant,
            duration=self.duration,
            channels=self.channels,
            sample_rate=self.sample_rate,
            cache=self.cache,
            cache_dir=self.cache_dir,
        )

    def fit(self, X: Sequence[Item], y: object = None) -> SoundNetFeatures:
        """Validate the settings (there is nothing to learn); returns self."""
        self.layers_ = self.extractor().layers
        self.n_features_out_: int | None = None
        return self

    def transform_frames(self, X: Sequence[Item]) -> list[ClipFeatures]:
        """Per-clip frame-level features (:class:`ClipFeatures`) instead of pooled vectors."""
        return self.extractor().extract(X, progress=self.progress)

    def transform(self, X: Sequence[Item]) -> np.ndarray:
        """(n_clips, dims) float32: each layer's frames pooled over time, layers concatenated in order."""
        extractor = self.extractor()
        clips = extractor.extract(X, progress=self.progress)
        rows = [np.concatenate([pool_frames(c.layers[n], self.pooling) for n in extractor.layers]) for c in clips]
        out = np.stack(rows).astype(np.float32, copy=False)
        self.n_features_out_ = out.shape[1]
        return out


# ---------------------------------------------------------------------------------------------------------- heads
@dataclass
class LinearHead:
    """A fitted linear head as plain arrays: ``scores = ((x - mean) / scale) @ weights.T + bias``, one per class."""

    weights: np.ndarray
    bias: np.ndarray
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        # C-contiguous float64 always, so a saved and re-loaded head computes bit-identical scores
        self.weights = np.ascontiguousarray(self.weights, dtype=np.float64)
        self.bias = np.ascontiguousarray(self.bias, dtype=np.float64)
        if self.mean is not None and self.scale is not None:
            self.mean = np.ascontiguousarray(self.mean, dtype=np.float64)
            self.scale = np.ascontiguousarray(self.scale, dtype=np.float64)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Decision values (SVM) or logits (logistic, perceptron) of rows ``x``: (n, classes) float64."""
        x = np.asarray(x, np.float64)
        if self.mean is not None and self.scale is not None:
            x = (x - self.mean) / self.scale
        return x @ self.weights.T + self.bias


def _fit_scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return mean, scale


def _linear_from_sklearn(coef: np.ndarray, intercept: np.ndarray, n_classes: int, symmetric: bool) -> tuple:
    coef = np.asarray(coef, np.float64)
    intercept = np.asarray(intercept, np.float64).reshape(-1)
    if n_classes == 2 and coef.shape[0] == 1:
        if symmetric:  # SVM: class 1 scores +s, class 0 scores -s
            return np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept])
        return np.concatenate([np.zeros_like(coef), coef]), np.concatenate([np.zeros_like(intercept), intercept])
    return coef, intercept


def fit_head(
    head: str,
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    C: float,
    standardize: bool = False,
    tol: float | None = None,
    max_iter: int = 1000,
    epochs: int = 100,
    batch_size: int = 64,
    learning_rate: float = 1e-2,
    seed: int = 0,
) -> LinearHead:
    """Fit one head on rows ``x`` (n, dims) with integer labels ``y`` in ``range(n_classes)``.

    ``svm``: scikit-learn ``LinearSVC`` (liblinear ``-s 1``: L2-regularised squared hinge, dual, one-vs-rest) with
    ``intercept_scaling=1``, i.e. liblinear ``-B 1`` -- the bias is an extra constant feature and is regularised like
    the weights, as in the original. ``logistic``: multinomial logistic regression (lbfgs). ``perceptron``: one Keras
    softmax layer trained with Adam on the cross-entropy plus an L2 penalty equal to the logistic objective's
    (``||W||^2 / (2 C n)``), ``epochs`` passes.
    """
    x = np.asarray(x, np.float64)
    mean = scale = None
    if standardize:
        mean, scale = _fit_scaler(x)
        x = (x - mean) / scale
    tol = DEFAULT_TOL[head] if tol is None else tol
    if head == "svm":
        from sklearn.svm import LinearSVC

        model = LinearSVC(
            C=C, loss="squared_hinge", penalty="l2", dual=True, tol=tol, fit_intercept=True, intercept_scaling=1.0,
            max_iter=max_iter, random_state=seed,
        )
        model.fit(x, y)
        weights, bias = _linear_from_sklearn(model.coef_, model.intercept_, n_classes, symmetric=True)
    elif head == "logistic":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=C, tol=tol, max_iter=max_iter, random_state=seed)
        model.fit(x, y)
        weights, bias = _linear_from_sklearn(model.coef_, model.intercept_, n_classes, symmetric=False)
    elif head == "perceptron":
        weights, bias = _fit_perceptron(x, y, n_classes, C, epochs, batch_size, learning_rate, seed)
    else:
        raise ConfigError(f"head must be one of {', '.join(map(repr, HEADS))}, got {head!r}")
    return LinearHead(np.asarray(weights, np.float64), np.asarray(bias, np.float64), mean, scale)


def _fit_perceptron(
    x: np.ndarray, y: np.ndarray, n_classes: int, C: float, epochs: int, batch_size: int, lr: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((x.shape[1],), name="features")
    penalty = keras.regularizers.L2(1.0 / (2 * C * len(x)))
    dense = keras.layers.Dense(n_classes, activation="softmax", name="softmax", kernel_regularizer=penalty)
    model = keras.Model(inputs, dense(inputs), name="perceptron")
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy")
    model.fit(x.astype(np.float32), y.astype(np.int32), epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    kernel, bias = dense.get_weights()
    return np.asarray(kernel, np.float64).T, np.asarray(bias, np.float64)


# ---------------------------------------------------------------------------------------------- clip classifier
@dataclass
class FitInfo:
    """What :meth:`ClipClassifier.fit` chose and saw (saved with the head)."""

    n_clips: int = 0
    n_windows: int = 0
    C: float = 0.0
    cv_accuracy: dict[str, float] = field(default_factory=dict)
    """Inner cross-validated clip accuracy per candidate C (only when ``C_grid`` was given)."""


def _label_list(y: object, n: int) -> list[Any]:
    labels = list(y.tolist() if isinstance(y, np.ndarray) else y) if isinstance(y, (Sequence, np.ndarray)) else None
    if labels is None or isinstance(y, str):
        raise ConfigError(f"y must be a list of labels (one per clip), got {type(y).__name__}")
    if len(labels) != n:
        raise ConfigError(f"X has {n} clips but y has {len(labels)} labels; they must match")
    for label in labels:
        if isinstance(label, bool) or not isinstance(label, (str, int, np.integer)):
            raise ConfigError(f"labels must be strings or integers, got {label!r} ({type(label).__name__})")
    return [int(label) if isinstance(label, np.integer) else label for label in labels]


class ClipClassifier(BaseEstimator):
    """A head on SoundNet features of time windows, with clip scores aggregated over the windows.

    Fit on labelled clips (paths or 1-D waveforms at ``sample_rate``), then :meth:`predict`, :meth:`decision_function`
    (clip scores: ``aggregate`` of window decision values / logits), :meth:`predict_proba` (logistic and perceptron
    heads: mean of window probabilities), :meth:`predict_files` (per-file records). :meth:`save` writes one HDF5 file
    that :meth:`load` / :func:`load_classifier` read back without executing anything from it.

    Defaults are the paper's transfer protocol on pool5: 1 s windows of concatenated frames, linear SVM with C=0.01,
    mean decision value per clip. ``C=None`` takes the head's default (svm 0.01, logistic 1, perceptron 1);
    ``C_grid`` instead selects C by stratified ``cv_folds``-fold cross-validation over the training clips (clip
    accuracy), never looking at anything else.
    """

    def __init__(
        self,
        head: str = "svm",
        layer: str | Sequence[str] = "pool5",
        *,
        window: float | None = 1.0,
        window_features: str = "flatten",
        aggregate: str = "mean",
        standardize: bool = False,
        C: float | None = None,
        C_grid: Sequence[float] | None = None,
        cv_folds: int = 3,
        tol: float | None = None,
        max_iter: int = 1000,
        epochs: int = 100,
        batch_size: int = 64,
        learning_rate: float = 1e-2,
        seed: int = 0,
        variant: str = "resampled",
        duration: float | None = None,
        sample_rate: int = SAMPLE_RATE,
        channels: str = "mix",
        net: Any = None,
        weights: str | os.PathLike = "soundnet8",
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = False,
    ) -> None:
        self.head = head
        self.layer = layer
        self.window = window
        self.window_features = window_features
        self.aggregate = aggregate
        self.standardize = standardize
        self.C = C
        self.C_grid = C_grid
        self.cv_folds = cv_folds
        self.tol = tol
        self.max_iter = max_iter
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.variant = variant
        self.duration = duration
        self.sample_rate = sample_rate
        self.channels = channels
        self.net = net
        self.weights = weights
        self.cache = cache
        self.cache_dir = cache_dir
        self.progress = progress

    def __sklearn_clone__(self) -> ClipClassifier:
        return type(self)(**self.get_params(deep=False))

    # --------------------------------------------------------------------------------------------- settings
    def _check_settings(self) -> tuple[str, ...]:
        check_choice(self.head, HEADS, "head")
        check_choice(self.window_features, WINDOW_FEATURES, "window_features")
        check_choice(self.aggregate, AGGREGATES, "aggregate")
        check_choice(self.variant, VARIANTS, "variant")
        check_positive(self.window, "window", allow_none=True)
        check_positive(self.C, "C", allow_none=True)
        check_positive(self.cv_folds, "cv_folds", integer=True)
        check_positive(self.max_iter, "max_iter", integer=True)
        check_positive(self.epochs, "epochs", integer=True)
        check_positive(self.batch_size, "batch_size", integer=True)
        check_positive(self.learning_rate, "learning_rate")
        if self.tol is not None:
            check_positive(self.tol, "tol")
        if self.C_grid is not None:
            if isinstance(self.C_grid, (str, bytes)) or not isinstance(self.C_grid, Sequence) or not self.C_grid:
                raise ConfigError(f"C_grid must be a non-empty list of positive numbers or None, got {self.C_grid!r}")
            for value in self.C_grid:
                check_positive(value, "each C_grid value")
        arch = self.net.arch if self.net is not None else "soundnet8"
        layers = check_layers(self.layer, arch)
        if self.window is None and self.window_features == "flatten":
            raise ConfigError("window=None (one window per clip) needs window_features 'mean', 'max' or 'meanmax', "
                              "not 'flatten' (clips differ in length)")
        if len(layers) > 1 and self.window is not None:
            raise ConfigError(f"combining layers {list(layers)} needs window=None (clip-level statistics): their "
                              "frames have different rates")
        return layers

    @property
    def classes(self) -> list[Any]:
        """Class labels in score order (after fitting or loading)."""
        self._check_fitted()
        return list(self.classes_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise ConfigError("this ClipClassifier is not fitted yet: call fit() or ClipClassifier.load() first")

    def extractor(self) -> FeatureExtractor:
        """The :class:`FeatureExtractor` of this classifier's input settings and layers."""
        layers = getattr(self, "layers_", None) or self._check_settings()
        net = resolve_net(self.net, self.weights)
        expected = getattr(self, "weights_identity_", None)
        if expected and model_identity(net) != expected:
            raise ConfigError(
                f"this head was trained on features of other network weights (identity {expected[:12]}...) than "
                f"{net!r} ({model_identity(net)[:12]}...); pass the same weights"
            )
        return FeatureExtractor(
            net, layers, variant=self.variant, duration=self.duration, channels=self.channels,
            sample_rate=self.sample_rate, cache=self.cache, cache_dir=self.cache_dir,
        )

    def features(self, X: Sequence[Item | ClipFeatures], *, desc: str = "features") -> list[ClipFeatures]:
        """Extract (or pass through) the features of clips ``X`` for this classifier."""
        return self.extractor().extract(X, progress=self.progress, desc=desc)

    # --------------------------------------------------------------------------------------------- windows
    def _window_rows(self, clip: ClipFeatures, width: int | None) -> np.ndarray:
        layers = self.layers_
        if width is None:
            return np.concatenate([pool_frames(clip.layers[n], self.window_features) for n in layers])[None]
        return sliding_windows(clip.layers[layers[0]], width, self.window_features)

    def _windows(self, clips: Sequence[ClipFeatures], width: int | None) -> tuple[np.ndarray, np.ndarray]:
        rows = [self._window_rows(clip, width) for clip in clips]
        counts = np.array([len(r) for r in rows])
        dims = {r.shape[1] for r in rows}
        if len(dims) > 1:
            raise ConfigError(f"window features differ in size between clips: {sorted(dims)}")
        return np.concatenate(rows), counts

    def _aggregate(self, window_scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
        bounds = np.concatenate([[0], np.cumsum(counts)])
        reduce = np.mean if self.aggregate == "mean" else np.max
        return np.stack([reduce(window_scores[a:b], axis=0) for a, b in itertools.pairwise(bounds)])

    # ------------------------------------------------------------------------------------------------- fit
    def fit(self, X: Sequence[Item | ClipFeatures], y: Sequence[Any]) -> ClipClassifier:
        """Fit the head on clips ``X`` (paths, waveforms or :class:`ClipFeatures`) with one label per clip."""
        layers = self._check_settings()
        items = as_items(X)
        labels = _label_list(y, len(items))
        classes = sorted(set(labels), key=lambda c: (isinstance(c, str), c))
        if len(classes) < 2:
            raise ConfigError(f"need clips of at least 2 classes to train a classifier, got only {classes!r}")
        for stale in ("head_", "classes_", "window_frames_", "weights_identity_", "arch_", "fit_info_"):
            self.__dict__.pop(stale, None)
        self.layers_ = layers
        extractor = self.extractor()
        clips = extractor.extract(items, progress=self.progress, desc="features (train)")
        index = {c: i for i, c in enumerate(classes)}
        targets = np.array([index[label] for label in labels])
        width = None
        if self.window is not None:
            width = window_frames(clips[0].layers[layers[0]].shape[0], self.window, clips[0].seconds)
        info = FitInfo(n_clips=len(clips))
        C = float(self.C) if self.C is not None else DEFAULT_C[self.head]
        if self.C_grid is not None:
            info.cv_accuracy = self._tune(clips, targets, len(classes), width)
            best = max(info.cv_accuracy.values())
            C = next(float(c) for c in self.C_grid if info.cv_accuracy[f"{float(c):g}"] == best)
        x, counts = self._windows(clips, width)
        info.n_windows, info.C = len(x), C
        self.head_ = self._fit_rows(x, np.repeat(targets, counts), len(classes), C)
        self.classes_ = np.array(classes, dtype=object)
        self.window_frames_ = width
        self.weights_identity_ = model_identity(extractor.net)
        self.arch_ = extractor.net.arch
        self.fit_info_ = info
        return self

    def _fit_rows(self, x: np.ndarray, targets: np.ndarray, n_classes: int, C: float) -> LinearHead:
        return fit_head(
            self.head, x, targets, n_classes, C=C, standardize=bool(self.standardize), tol=self.tol,
            max_iter=int(self.max_iter), epochs=int(self.epochs), batch_size=int(self.batch_size),
            learning_rate=float(self.learning_rate), seed=int(self.seed),
        )

    def _tune(self, clips: list[ClipFeatures], targets: np.ndarray, n_classes: int, width: int | None) -> dict:
        from sklearn.model_selection import StratifiedKFold

        smallest = int(np.bincount(targets, minlength=n_classes).min())
        folds = min(int(self.cv_folds), smallest)
        if folds < 2:
            raise ConfigError(f"C_grid tuning needs at least 2 training clips per class, the smallest class has "
                              f"{smallest}")
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(self.seed))
        rows = [self._window_rows(clip, width) for clip in clips]
        accuracy = {}
        for C in self.C_grid:
            correct = 0
            for train, test in splitter.split(np.zeros(len(clips)), targets):
                x = np.concatenate([rows[i] for i in train])
                y = np.concatenate([np.full(len(rows[i]), targets[i]) for i in train])
                head = self._fit_rows(x, y, n_classes, float(C))
                counts = np.array([len(rows[i]) for i in test])
                scores = self._aggregate(head.scores(np.concatenate([rows[i] for i in test])), counts)
                correct += int((scores.argmax(axis=1) == targets[test]).sum())
            accuracy[f"{float(C):g}"] = correct / len(clips)
        return accuracy

    # ------------------------------------------------------------------------------------------------ predict
    def window_scores(self, X: Sequence[Item | ClipFeatures]) -> list[np.ndarray]:
        """Per clip, the (windows, classes) decision values / logits of its windows."""
        self._check_fitted()
        clips = self.features(as_items(X), desc="features")
        x, counts = self._windows(clips, self.window_frames_)
        self._check_dims(x)
        scores = self.head_.scores(x)
        return np.split(scores, np.cumsum(counts)[:-1])

    def _check_dims(self, x: np.ndarray) -> None:
        expected = self.head_.weights.shape[1]
        if x.shape[1] != expected:
            raise ConfigError(f"window features have {x.shape[1]} dimensions, the head expects {expected}")

    def decision_function(self, X: Sequence[Item | ClipFeatures]) -> np.ndarray:
        """Clip scores (clips, classes): window decision values (SVM) or logits aggregated over the windows."""
        self._check_fitted()
        clips = self.features(as_items(X))
        x, counts = self._windows(clips, self.window_frames_)
        self._check_dims(x)
        return self._aggregate(self.head_.scores(x), counts)

    def predict(self, X: Sequence[Item | ClipFeatures]) -> np.ndarray:
        """Predicted class per clip: the class with the highest aggregated score."""
        scores = self.decision_function(X)
        return self.classes_[scores.argmax(axis=1)]

    def predict_proba(self, X: Sequence[Item | ClipFeatures]) -> np.ndarray:
        """Class probabilities per clip (logistic and perceptron heads): mean of the windows' softmax."""
        self._check_fitted()
        if self.head == "svm":
            raise ConfigError("the svm head gives decision values, not probabilities: use decision_function(), or "
                              "train a 'logistic' or 'perceptron' head")
        return np.stack([softmax(s, axis=-1).mean(axis=0) for s in self.window_scores(X)])

    def score(self, X: Sequence[Item | ClipFeatures], y: Sequence[Any]) -> float:
        """Clip accuracy on ``X`` with labels ``y``."""
        labels = _label_list(y, len(as_items(X)))
        predicted = self.predict(X)
        return float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))

    def predict_files(
        self, paths: Sequence[str | os.PathLike], *, windows: bool = False, progress: bool = False
    ) -> list[dict[str, Any]]:
        """One record per file: ``file``, ``label``, ``scores`` (class -> score), ``score_kind`` and, with
        ``windows=True``, ``windows`` (``start``/``end`` seconds of the audio fed, ``label``, ``scores``)."""
        self._check_fitted()
        items = as_items(paths, "paths")
        probabilistic = self.head != "svm"
        records = []
        extractor = self.extractor()
        for index, item in enumerate(_default_progress(items, len(items), "classify") if progress else items):
            clip = extractor.extract_one(item, index)
            rows = self._window_rows(clip, self.window_frames_)
            self._check_dims(rows)
            window_scores = self.head_.scores(rows)
            clip_scores = self._aggregate(window_scores, np.array([len(rows)]))[0]
            shown = softmax(window_scores, axis=-1).mean(axis=0) if probabilistic else clip_scores
            record: dict[str, Any] = {
                "file": os.fspath(item) if isinstance(item, (str, os.PathLike)) else clip.source,
                "label": self.classes_[int(clip_scores.argmax())],
                "scores": {str(c): float(s) for c, s in zip(self.classes_, shown, strict=True)},
                "score_kind": "probability" if probabilistic else "decision",
            }
            if windows:
                record["windows"] = self._window_records(clip, window_scores, probabilistic)
            records.append(record)
        return records

    def _window_records(self, clip: ClipFeatures, scores: np.ndarray, probabilistic: bool) -> list[dict[str, Any]]:
        layer = self.layers_[0]
        start, end = clip.frame_times(self.arch_, layer)
        width = self.window_frames_ or len(start)
        shown = softmax(scores, axis=-1) if probabilistic else scores
        out = []
        for i, row in enumerate(shown):
            last = min(i + width - 1, len(end) - 1)
            out.append({
                "start": float(start[min(i, len(start) - 1)]),
                "end": float(end[last]),
                "label": self.classes_[int(scores[i].argmax())],
                "scores": {str(c): float(s) for c, s in zip(self.classes_, row, strict=True)},
            })
        return out

    # ------------------------------------------------------------------------------------------- save / load
    _SAVED_PARAMS = (
        "head", "window", "window_features", "aggregate", "standardize", "C", "C_grid", "cv_folds", "tol",
        "max_iter", "epochs", "batch_size", "learning_rate", "seed", "variant", "duration", "sample_rate", "channels",
    )

    def settings(self) -> dict[str, Any]:
        """The JSON-serialisable settings saved with the head."""
        self._check_fitted()
        params = {name: getattr(self, name) for name in self._SAVED_PARAMS}
        params["C_grid"] = None if self.C_grid is None else [float(c) for c in self.C_grid]
        weights = ""
        if isinstance(self.weights, (str, os.PathLike)):
            weights = os.fspath(self.weights)
            if Path(weights).expanduser().is_file():
                weights = str(Path(weights).expanduser().resolve())
        return {
            **params,
            "layers": list(self.layers_),
            "classes": list(self.classes_),
            "window_frames": self.window_frames_,
            "arch": self.arch_,
            "weights": weights,
            "weights_identity": self.weights_identity_,
            "fit_info": {"n_clips": self.fit_info_.n_clips, "n_windows": self.fit_info_.n_windows,
                         "C": self.fit_info_.C, "cv_accuracy": self.fit_info_.cv_accuracy},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted head and its settings to one HDF5 file, atomically (``format`` = :data:`FORMAT`)."""
        import h5py

        settings = self.settings()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["settings"] = json.dumps(settings)
            f.create_dataset("weights", data=self.head_.weights)
            f.create_dataset("bias", data=self.head_.bias)
            if self.head_.mean is not None:
                f.create_dataset("mean", data=self.head_.mean)
                f.create_dataset("scale", data=self.head_.scale)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        net: Any = None,
        weights: str | os.PathLike | None = None,
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
    ) -> ClipClassifier:
        """Read a head file written by :meth:`save`. The network is ``net``, else ``weights``, else the preset or
        file named in the head; its weights must be those the head was trained on."""
        import h5py

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"head file {str(path)!r} does not exist")
        try:
            with h5py.File(path, "r") as f:
                fmt = f.attrs.get("format")
                if fmt != FORMAT:
                    raise ConfigError(f"{str(path)!r} is not a soundnet_keras head file: format attribute is {fmt!r}, "
                                      f"expected {FORMAT!r}")
                settings = json.loads(f.attrs["settings"])
                arrays = {name: np.asarray(f[name][()], np.float64) for name in ("weights", "bias", "mean", "scale")
                          if name in f}
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, SoundNetError):
                raise
            raise ConfigError(f"cannot read head file {str(path)!r}: {exc}") from None
        try:
            params = {name: settings[name] for name in cls._SAVED_PARAMS}
            classes, layers = settings["classes"], settings["layers"]
            model = cls(
                layer=layers if len(layers) > 1 else layers[0], net=net,
                weights=weights or settings["weights"] or "soundnet8", cache=cache, cache_dir=cache_dir, **params,
            )
            model.layers_ = model._check_settings()
            model.head_ = LinearHead(arrays["weights"], arrays["bias"], arrays.get("mean"), arrays.get("scale"))
            model.classes_ = np.array(classes, dtype=object)
            model.window_frames_ = settings["window_frames"]
            model.arch_ = settings["arch"]
            model.weights_identity_ = settings["weights_identity"]
            info = settings["fit_info"]
            model.fit_info_ = FitInfo(info["n_clips"], info["n_windows"], info["C"], info["cv_accuracy"])
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"head file {str(path)!r} has incomplete settings: {exc!r}") from None
        n_classes, _dims = model.head_.weights.shape if model.head_.weights.ndim == 2 else (-1, -1)
        if n_classes != len(classes) or model.head_.bias.shape != (n_classes,):
            raise ConfigError(f"head file {str(path)!r} is inconsistent: {len(classes)} classes but weights of shape "
                              f"{model.head_.weights.shape} and bias {model.head_.bias.shape}")
        return model


# ---------------------------------------------------------------------------------------------- cross-validation
def cross_val_accuracy(
    classifier: ClipClassifier,
    X: Sequence[Item | ClipFeatures],
    y: Sequence[Any],
    *,
    folds: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Stratified ``folds``-fold cross-validated clip accuracy of (fresh copies of) ``classifier`` on ``X``, ``y``.

    Features are extracted once; each fold fits a clone on the other folds (including any ``C_grid`` tuning, which
    therefore sees only that fold's training clips). ``folds`` is reduced to the smallest class size; at least 2
    clips per class are needed.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    folds = check_positive(folds, "folds", integer=True)
    items = as_items(X)
    labels = _label_list(y, len(items))
    clips = classifier.features(items)
    _, codes = np.unique(np.array([f"{type(v).__name__}:{v}" for v in labels]), return_inverse=True)
    smallest = int(np.bincount(codes).min())
    n_splits = min(folds, smallest)
    if n_splits < 2:
        raise ConfigError(f"cross-validation needs at least 2 clips per class; the smallest class has {smallest}")
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(items)), codes))
    iterator = _default_progress(splits, len(splits), "cross-validation", "fold") if progress else splits
    accuracies = []
    for train, test in iterator:
        model = clone(classifier).set_params(progress=False)
        model.fit([clips[i] for i in train], [labels[i] for i in train])
        accuracies.append(model.score([clips[i] for i in test], [labels[i] for i in test]))
    return accuracies


# --------------------------------------------------------------------------------------------- loading / CLI use
def read_format(path: str | os.PathLike) -> str:
    """The ``format`` attribute of an HDF5 file (``""`` when it has none)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"classifier file {str(path)!r} does not exist")
    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get("format", "")
    except OSError as exc:
        raise ConfigError(f"{str(path)!r} is not a classifier file (HDF5 expected): {exc}") from None
    return value.decode() if isinstance(value, bytes) else str(value)


def load_classifier(path: str | os.PathLike, **kwargs: Any) -> Any:
    """Load a trained classifier file by its ``format`` attribute: a head (:data:`FORMAT`, -> :class:`ClipClassifier`)
    or a fine-tuned network (:data:`FINETUNED_FORMAT`, -> ``soundnet_keras.training.finetune.load_finetuned``).

    Both offer ``classes`` and ``predict_files(paths, ...)``. Keyword arguments go to the loader (e.g. ``net=``).
    """
    fmt = read_format(path)
    if fmt == FORMAT:
        return ClipClassifier.load(path, **kwargs)
    if fmt == FINETUNED_FORMAT:
        try:
            from .training.finetune import load_finetuned
        except ImportError as exc:
            raise ConfigError(f"{str(path)!r} is a fine-tuned network, but this installation cannot load it: {exc}"
                              ) from None
        return load_finetuned(path, **kwargs)
    raise ConfigError(f"{str(path)!r} is not a classifier file: format attribute is {fmt!r}, expected {FORMAT!r} or "
                      f"{FINETUNED_FORMAT!r}")


def classify_files(
    classifier: Any, paths: Sequence[str | os.PathLike], *, windows: bool = False, progress: bool = False
) -> list[dict[str, Any]]:
    """Classify audio files with a loaded classifier (a path is loaded with :func:`load_classifier` first).

    Returns one record per file: ``{"file", "label", "scores": {class: score}, "score_kind": "decision" |
    "probability"}`` plus, for heads, ``"windows"`` (per-window ``start``, ``end``, ``label``, ``scores``) with
    ``windows=True``. A fine-tuned network's ``(label, {class: probability})`` results are turned into the same
    records (without windows). Unreadable files raise :class:`~soundnet_keras.errors.AudioError` naming the file.
    """
    if isinstance(classifier, (str, os.PathLike)):
        classifier = load_classifier(classifier)
    if isinstance(classifier, ClipClassifier):
        return classifier.predict_files(paths, windows=windows, progress=progress)
    if not hasattr(classifier, "predict_files"):
        kind = type(classifier).__name__
        raise ConfigError(f"classifier must be a loaded classifier or a classifier file, got {kind}")
    items = as_items(paths, "paths")
    records = []
    for path, result in zip(items, classifier.predict_files(items), strict=True):
        if isinstance(result, dict):  # already a record
            records.append({"file": os.fspath(path), **result})
        else:  # a fine-tuned network's (label, {class: probability})
            label, scores = result
            records.append({"file": os.fspath(path), "label": label,
                            "scores": {str(c): float(s) for c, s in scores.items()}, "score_kind": "probability"})
    return records
