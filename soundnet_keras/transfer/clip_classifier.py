"""The clip classifier: a linear head fitted on sliding windows of SoundNet feature frames, clip scores aggregated
over the windows, saved to and loaded from one HDF5 file (no pickle, no code executed on load).

Windows (``window=`` seconds, ``None`` for one window over the whole clip): the window width in frames is
``ceil(window / clip_seconds * T)`` for a clip of ``T`` frames (``eval_esc50.lua``'s ``twindow_size``), fixed from the
first training clip; every offset gives one sample. ``window_features="flatten"`` concatenates the window's frames
(channel-major, as the Lua ``view(-1)`` of a (channels, frames) slice); ``"mean"``, ``"max"`` and ``"meanmax"``
pool them over time instead. :func:`classify_files` gives per-file records (label, score per class, optional
per-window scores) for the CLIs, for heads and fine-tuned networks alike.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from ..architecture import SAMPLE_RATE, FrameTimes
from ..errors import ConfigError, SoundNetError
from ..files import atomic_path
from ..results import ClipResult, HeadScores, frame_times_from_spans
from ..validation import check_choice, check_positive
from .features import (
    VARIANTS,
    WINDOW_FEATURES,
    ClipFeatures,
    FeatureExtractor,
    Item,
    NoProbabilitiesError,
    NotFittedError,
    as_items,
    check_layers,
    extractor_for,
    model_identity,
    pool_frames,
    progress_bar,
    resolve_net,
    sliding_windows,
    window_frames,
)
from .heads import DEFAULT_C, HEADS, FitInfo, LinearHead, fit_head

FORMAT = "soundnet_keras.head/1"
"""Value of the ``format`` attribute of a head file written by :meth:`ClipClassifier.save`."""

FINETUNED_FORMAT = "soundnet_keras.finetuned/1"
"""``format`` attribute of a fine-tuned network file (read by :mod:`soundnet_keras.training.finetune`)."""

AGGREGATES = ("mean", "max")


def label_list(y: object, n: int) -> list[Any]:
    labels = list(y.tolist() if isinstance(y, np.ndarray) else y) if isinstance(y, (Sequence, np.ndarray)) else None
    if labels is None or isinstance(y, str):
        raise ConfigError(f"y must be a list of labels (one per clip), got {type(y).__name__}")
    if len(labels) != n:
        raise ConfigError(f"X has {n} clips but y has {len(labels)} labels; they must match")
    for label in labels:
        if isinstance(label, bool) or not isinstance(label, (str, int, np.integer)):
            raise ConfigError(f"labels must be strings or integers, got {label!r} ({type(label).__name__})")
    return [int(label) if isinstance(label, np.integer) else label for label in labels]


class ClipClassifier(ClassifierMixin, BaseEstimator):
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
            raise ConfigError(
                "window=None (one window per clip) needs window_features 'mean', 'max' or 'meanmax', "
                "not 'flatten' (clips differ in length)"
            )
        if len(layers) > 1 and self.window is not None:
            raise ConfigError(
                f"combining layers {list(layers)} needs window=None (clip-level statistics): their "
                "frames have different rates"
            )
        return layers

    @property
    def classes(self) -> list[Any]:
        """Class labels in score order (after fitting or loading)."""
        self._check_fitted()
        return list(self.classes_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise NotFittedError("this ClipClassifier is not fitted yet: call fit() or ClipClassifier.load() first")

    def extractor(self) -> FeatureExtractor:
        """The :class:`FeatureExtractor` of this classifier's input settings and layers."""
        return self._extractor()[0]

    def _extractor(self) -> tuple[FeatureExtractor, str]:
        """The extractor and the network's weights identity, hashed once for this call; a fitted head refuses
        weights other than those it was trained on."""
        layers = getattr(self, "layers_", None) or self._check_settings()
        net = resolve_net(self.net, self.weights)
        identity = model_identity(net)
        expected = getattr(self, "weights_identity_", None)
        if expected and identity != expected:
            raise ConfigError(
                f"this head was trained on features of other network weights (identity {expected[:12]}...) than "
                f"{net!r} ({identity[:12]}...); pass the same weights"
            )
        return extractor_for(self, net, layers), identity

    def features(self, X: Sequence[Item | ClipFeatures], *, desc: str = "features") -> list[ClipFeatures]:
        """Extract (or pass through) the features of clips ``X`` for this classifier."""
        extractor, identity = self._extractor()
        return extractor.extract(X, progress=self.progress, desc=desc, identity=identity)

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
        labels = label_list(y, len(items))
        classes = sorted(set(labels), key=lambda c: (isinstance(c, str), c))
        if len(classes) < 2:
            raise ConfigError(f"need clips of at least 2 classes to train a classifier, got only {classes!r}")
        for stale in ("head_", "classes_", "window_frames_", "weights_identity_", "arch_", "fit_info_"):
            self.__dict__.pop(stale, None)
        self.layers_ = layers
        extractor, identity = self._extractor()
        clips = extractor.extract(items, progress=self.progress, desc="features (train)", identity=identity)
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
        self.weights_identity_ = identity
        self.arch_ = extractor.net.arch
        self.fit_info_ = info
        return self

    def _fit_rows(self, x: np.ndarray, targets: np.ndarray, n_classes: int, C: float) -> LinearHead:
        return fit_head(
            self.head,
            x,
            targets,
            n_classes,
            C=C,
            standardize=bool(self.standardize),
            tol=self.tol,
            max_iter=int(self.max_iter),
            epochs=int(self.epochs),
            batch_size=int(self.batch_size),
            learning_rate=float(self.learning_rate),
            seed=int(self.seed),
        )

    def _tune(self, clips: list[ClipFeatures], targets: np.ndarray, n_classes: int, width: int | None) -> dict:
        from sklearn.model_selection import StratifiedKFold

        smallest = int(np.bincount(targets, minlength=n_classes).min())
        folds = min(int(self.cv_folds), smallest)
        if folds < 2:
            raise ConfigError(
                f"C_grid tuning needs at least 2 training clips per class, the smallest class has {smallest}"
            )
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

    @property
    def predict_proba(self):
        """Class probabilities per clip (logistic and perceptron heads): mean of the windows' softmax.

        The svm head has none: ``hasattr(model, "predict_proba")`` is then False, as scikit-learn expects of a
        classifier without probabilities, and calling it raises :class:`NoProbabilitiesError` saying why.
        """
        if self.head == "svm":
            raise NoProbabilitiesError(
                "the svm head gives decision values, not probabilities: use decision_function(), or "
                "train a 'logistic' or 'perceptron' head"
            )
        return self._predict_proba

    def _predict_proba(self, X: Sequence[Item | ClipFeatures]) -> np.ndarray:
        self._check_fitted()
        return np.stack([softmax(s, axis=-1).mean(axis=0) for s in self.window_scores(X)])

    def score(self, X: Sequence[Item | ClipFeatures], y: Sequence[Any]) -> float:
        """Clip accuracy on ``X`` with labels ``y``."""
        labels = label_list(y, len(as_items(X)))
        predicted = self.predict(X)
        return float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))

    def predict_files(self, paths: Sequence[Item], *, progress: bool = False) -> list[ClipResult]:
        """One :class:`~soundnet_keras.results.ClipResult` per clip: head ``classes`` with one frame per window
        (window scores: probabilities for the logistic and perceptron heads, decision values for the svm) and the
        clip's aggregated scores, window times in seconds of the audio fed, ``source`` the file."""
        self._check_fitted()
        items = as_items(paths, "paths")
        probabilistic = self.head != "svm"
        labels = [str(c) for c in self.classes_]
        results = []
        extractor, identity = self._extractor()
        for index, item in enumerate(progress_bar(items, len(items), "classify") if progress else items):
            clip = extractor.extract_one(item, index, identity=identity)
            rows = self._window_rows(clip, self.window_frames_)
            self._check_dims(rows)
            window_scores = self.head_.scores(rows)
            clip_scores = self._aggregate(window_scores, np.array([len(rows)]))[0]
            shown = softmax(window_scores, axis=-1) if probabilistic else window_scores
            head = HeadScores(
                shown, labels, "probability" if probabilistic else "decision",
                shown.mean(axis=0) if probabilistic else clip_scores,
            )  # fmt: skip
            source = os.fspath(item) if isinstance(item, (str, os.PathLike)) else clip.source
            results.append(ClipResult({"classes": head}, self._window_times(clip, len(rows)), clip.seconds, source))
        return results

    def _window_times(self, clip: ClipFeatures, windows: int) -> FrameTimes:
        """Start and end (seconds of the audio fed) of each window: its first frame's start, its last frame's end."""
        start, end = clip.frame_times(self.arch_, self.layers_[0])
        width = self.window_frames_ or len(start)
        first = np.minimum(np.arange(windows), len(start) - 1)
        last = np.minimum(np.arange(windows) + width - 1, len(end) - 1)
        return frame_times_from_spans(start[first], end[last])

    # ------------------------------------------------------------------------------------------- save / load
    _SAVED_PARAMS = (
        "head",
        "window",
        "window_features",
        "aggregate",
        "standardize",
        "C",
        "C_grid",
        "cv_folds",
        "tol",
        "max_iter",
        "epochs",
        "batch_size",
        "learning_rate",
        "seed",
        "variant",
        "duration",
        "sample_rate",
        "channels",
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
            "fit_info": {
                "n_clips": self.fit_info_.n_clips,
                "n_windows": self.fit_info_.n_windows,
                "C": self.fit_info_.C,
                "cv_accuracy": self.fit_info_.cv_accuracy,
            },
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
                    raise ConfigError(
                        f"{str(path)!r} is not a soundnet_keras head file: format attribute is {fmt!r}, "
                        f"expected {FORMAT!r}"
                    )
                settings = json.loads(f.attrs["settings"])
                arrays = {
                    name: np.asarray(f[name][()], np.float64)
                    for name in ("weights", "bias", "mean", "scale")
                    if name in f
                }
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, SoundNetError):
                raise
            raise ConfigError(f"cannot read head file {str(path)!r}: {exc}") from None
        try:
            params = {name: settings[name] for name in cls._SAVED_PARAMS}
            classes, layers = settings["classes"], settings["layers"]
            model = cls(
                layer=layers if len(layers) > 1 else layers[0],
                net=net,
                weights=weights or settings["weights"] or "soundnet8",
                cache=cache,
                cache_dir=cache_dir,
                **params,
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
            raise ConfigError(
                f"head file {str(path)!r} is inconsistent: {len(classes)} classes but weights of shape "
                f"{model.head_.weights.shape} and bias {model.head_.bias.shape}"
            )
        return model


# ---------------------------------------------------------------------------------------------- cross-validation
