"""The clip classifier: a linear head fitted on windows of SoundNet feature frames, clip scores aggregated over the
windows (see :mod:`~soundnet_keras.transfer.windows`), saved as a ``.keras`` file
(:mod:`~soundnet_keras.transfer.head_files`: no pickle, nothing executed on load).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from ..architecture import SAMPLE_RATE
from ..errors import ConfigError
from ..results import ClipResult, HeadScores
from ..validation import check_choice, check_positive
from .features import (
    ClipFeatures,
    FeatureExtractor,
    check_layers,
    extractor_for,
    model_identity,
    progress_bar,
    resolve_net,
)
from .head_files import FINETUNED_FORMAT, FORMAT, read_head, save_head
from .heads import DEFAULT_C, HEADS, FitInfo, LinearHead, fit_head
from .inputs import Item, NoProbabilitiesError, NotFittedError, as_items, check_clips, label_array
from .windows import AGGREGATES, WINDOW_FEATURES, aggregate, stack_windows, window_frames, window_rows, window_times

__all__ = ["AGGREGATES", "FINETUNED_FORMAT", "FORMAT", "ClipClassifier", "check_settings", "tune_C"]

_HEAD_FIT_PARAMS = ("tol", "max_iter", "epochs", "batch_size", "learning_rate", "seed")
SAVED_PARAMS = ("head", "window", "window_features", "aggregate", "standardize", "C", "C_grid", "cv_folds")
SAVED_PARAMS += (*_HEAD_FIT_PARAMS, "variant", "duration", "sample_rate", "channels")
"""The constructor parameters saved with a head (the rest -- network, cache, progress -- belong to the machine)."""


class ClipClassifier(ClassifierMixin, BaseEstimator):
    """A head on SoundNet features of time windows, with clip scores aggregated over the windows.

    Fit on labelled clips (paths or waveforms at ``sample_rate``, see :mod:`~soundnet_keras.transfer.inputs`), then
    :meth:`predict`, :meth:`decision_function`, :meth:`predict_proba` (logistic and perceptron heads: mean of the
    window probabilities), :meth:`predict_files` (one :class:`~soundnet_keras.results.ClipResult` per file).
    :meth:`save` writes a ``.keras`` file that :meth:`load` and :func:`~soundnet_keras.transfer.load_classifier` read.

    Defaults are the paper's transfer protocol on pool5: 1 s windows of concatenated frames, linear SVM with C=0.01,
    mean decision value per clip. ``C=None`` takes the head's default (svm 0.01, logistic 1, perceptron 1);
    ``C_grid`` instead selects C by stratified ``cv_folds``-fold cross-validation over the training clips.
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
        self.head, self.layer, self.window, self.window_features = head, layer, window, window_features
        self.aggregate, self.standardize, self.C, self.C_grid, self.cv_folds = (
            aggregate,
            standardize,
            C,
            C_grid,
            cv_folds,
        )
        self.tol, self.max_iter, self.epochs, self.batch_size = tol, max_iter, epochs, batch_size
        self.learning_rate, self.seed, self.variant, self.duration = learning_rate, seed, variant, duration
        self.sample_rate, self.channels, self.net, self.weights = sample_rate, channels, net, weights
        self.cache, self.cache_dir, self.progress = cache, cache_dir, progress

    def __sklearn_clone__(self) -> ClipClassifier:
        return type(self)(**self.get_params(deep=False))  # shares ``net`` (a network is not copied per clone)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True  # tabular test data read as tiny clips says nothing about sounds
        return tags

    @property
    def classes(self) -> list[Any]:
        """Class labels in score order (after fitting or loading)."""
        self._check_fitted()
        return self.classes_.tolist()

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "head_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise NotFittedError("this ClipClassifier is not fitted yet: call fit() or ClipClassifier.load() first")

    def extractor(self) -> FeatureExtractor:
        """The :class:`FeatureExtractor` of this classifier's input settings and layers."""
        return self._extractor()[0]

    def _extractor(self) -> tuple[FeatureExtractor, str]:
        """The extractor and the network's weights identity, hashed once for this call; a fitted head refuses
        weights other than those it was trained on."""
        layers = getattr(self, "layers_", None) or check_settings(self)
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

    def fit(self, X: Sequence[Item | ClipFeatures], y: Sequence[Any]) -> ClipClassifier:
        """Fit the head on clips ``X`` (paths, waveforms or :class:`ClipFeatures`) with one label per clip."""
        layers = check_settings(self)
        items = as_items(X)
        check_clips(items, self.channels)
        labels = label_array(y, len(items))
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ConfigError(
                f"need clips of at least 2 classes to train a classifier, got 1 class: {classes.tolist()}"
            )
        for stale in ("head_", "classes_", "window_frames_", "weights_identity_", "arch_", "fit_info_", "n_iter_"):
            self.__dict__.pop(stale, None)
        self.layers_ = layers
        extractor, identity = self._extractor()
        clips = extractor.extract(items, progress=self.progress, desc="features (train)", identity=identity)
        targets = np.searchsorted(classes, labels)
        width = None
        if self.window is not None:
            width = window_frames(clips[0].layers[layers[0]].shape[0], self.window, clips[0].seconds)
        info = FitInfo(n_clips=len(clips), C=float(self.C) if self.C is not None else DEFAULT_C[self.head])
        if self.C_grid is not None:
            info.cv_accuracy = tune_C(self, [self._rows(clip, width) for clip in clips], targets, len(classes))
            best = max(info.cv_accuracy.values())
            info.C = next(float(c) for c in self.C_grid if info.cv_accuracy[f"{float(c):g}"] == best)
        x, counts = stack_windows(clips, layers, width, self.window_features)
        info.n_windows = len(x)
        self.head_ = self._fit_rows(x, np.repeat(targets, counts), len(classes), info.C)
        self.classes_, self.window_frames_, self.weights_identity_ = classes, width, identity
        self.arch_, self.fit_info_, self.n_iter_ = extractor.net.arch, info, self.head_.n_iter
        return self

    def _rows(self, clip: ClipFeatures, width: int | None) -> np.ndarray:
        return window_rows(clip, self.layers_, width, self.window_features)

    def _fit_rows(self, x: np.ndarray, targets: np.ndarray, n_classes: int, C: float) -> LinearHead:
        options = {name: getattr(self, name) for name in _HEAD_FIT_PARAMS}
        return fit_head(self.head, x, targets, n_classes, C=C, standardize=bool(self.standardize), **options)

    def _scores(self, X: Sequence[Item | ClipFeatures]) -> tuple[np.ndarray, np.ndarray]:
        """Window scores of all clips of ``X`` stacked, and each clip's number of windows."""
        self._check_fitted()
        items = as_items(X)
        check_clips(items, self.channels)
        x, counts = stack_windows(self.features(items), self.layers_, self.window_frames_, self.window_features)
        return self.head_.scores(self._checked(x)), counts

    def _checked(self, rows: np.ndarray) -> np.ndarray:
        if rows.shape[1] != self.head_.weights.shape[1]:
            raise ConfigError(
                f"window features have {rows.shape[1]} dimensions, the head expects {self.head_.weights.shape[1]}"
            )
        return rows

    def window_scores(self, X: Sequence[Item | ClipFeatures]) -> list[np.ndarray]:
        """Per clip, the (windows, classes) decision values / logits of its windows."""
        scores, counts = self._scores(X)
        return np.split(scores, np.cumsum(counts)[:-1])

    def _clip_scores(self, X: Sequence[Item | ClipFeatures]) -> np.ndarray:
        return aggregate(*self._scores(X), self.aggregate)

    def decision_function(self, X: Sequence[Item | ClipFeatures]) -> np.ndarray:
        """Clip scores (clips, classes): window decision values (svm) or logits, aggregated over the windows. With two
        classes, scikit-learn's convention: one column, the second class's score minus the first's (> 0 favours
        ``classes_[1]``)."""
        scores = self._clip_scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X: Sequence[Item | ClipFeatures]) -> np.ndarray:
        """Predicted class per clip: the class with the highest aggregated score."""
        best = self._clip_scores(X).argmax(axis=1)
        return self.classes_[best]

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
        return np.stack([softmax(s, axis=-1).mean(axis=0) for s in self.window_scores(X)])

    def predict_files(self, paths: Sequence[Item], *, progress: bool = False) -> list[ClipResult]:
        """One :class:`~soundnet_keras.results.ClipResult` per clip: head ``classes`` with one frame per window
        (probabilities for the logistic and perceptron heads, decision values for the svm) and the clip's scores,
        window times in seconds of the audio fed, ``source`` the file. ``duration`` is the clip's own length; where
        the audio fed was longer (repeated to the ``duration`` setting, or padded to the layer's minimum),
        ``padded_to_s`` says how long and ``padded_frames`` which windows heard the repetition."""
        self._check_fitted()
        return window_results(self, as_items(paths, "paths"), progress)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted head and its settings to a ``.keras`` file, atomically (``format`` = :data:`FORMAT`)."""
        self._check_fitted()
        return save_head(path, self.head_, saved_settings(self))

    @classmethod
    def load(cls, path: str | os.PathLike, *, net: Any = None, weights: str | os.PathLike | None = None,
             cache: bool = True, cache_dir: str | os.PathLike | None = None) -> ClipClassifier:  # fmt: skip
        """Read a head file written by :meth:`save`. The network is ``net``, else ``weights``, else the preset or
        file named in the head; its weights must be those the head was trained on."""
        head, settings = read_head(path)
        return restore(cls, head, settings, str(path), net=net, weights=weights, cache=cache, cache_dir=cache_dir)


# ---------------------------------------------------------------------------------------------------- settings
def check_settings(model: ClipClassifier) -> tuple[str, ...]:
    """Validate a classifier's parameters (at fit, as scikit-learn expects); returns its layers."""
    check_choice(model.head, HEADS, "head")
    check_choice(model.window_features, WINDOW_FEATURES, "window_features")
    check_choice(model.aggregate, AGGREGATES, "aggregate")
    check_positive(model.window, "window", allow_none=True)
    check_positive(model.C, "C", allow_none=True)
    for name in ("cv_folds", "max_iter", "epochs", "batch_size"):
        check_positive(getattr(model, name), name, integer=True)
    check_positive(model.learning_rate, "learning_rate")
    check_positive(model.tol, "tol", allow_none=True)
    if model.C_grid is not None:
        if isinstance(model.C_grid, (str, bytes)) or not isinstance(model.C_grid, Sequence) or not model.C_grid:
            raise ConfigError(f"C_grid must be a non-empty list of positive numbers or None, got {model.C_grid!r}")
        for value in model.C_grid:
            check_positive(value, "each C_grid value")
    layers = check_layers(model.layer, model.net.arch if model.net is not None else "soundnet8")
    if model.window is None and model.window_features == "flatten":
        raise ConfigError(
            "window=None (one window per clip) needs window_features 'mean', 'max' or 'meanmax', "
            "not 'flatten' (clips differ in length)"
        )
    if len(layers) > 1 and model.window is not None:
        raise ConfigError(
            f"combining layers {list(layers)} needs window=None (clip-level statistics): their frames have "
            "different rates"
        )
    return layers


def tune_C(model: ClipClassifier, rows: list[np.ndarray], targets: np.ndarray, n_classes: int) -> dict[str, float]:
    """Inner stratified cross-validated clip accuracy of each ``model.C_grid`` value on the training clips' window
    ``rows`` (one array per clip)."""
    from sklearn.model_selection import StratifiedKFold  # ~50 ms to import: only for C_grid tuning

    smallest = int(np.bincount(targets, minlength=n_classes).min())
    folds = min(int(model.cv_folds), smallest)
    if folds < 2:
        raise ConfigError(f"C_grid tuning needs at least 2 training clips per class, the smallest class has {smallest}")
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=int(model.seed)).split(rows, targets))
    accuracy = {}
    for C in model.C_grid:
        correct = 0
        for train, test in splits:
            x = np.concatenate([rows[i] for i in train])
            head = model._fit_rows(x, np.repeat(targets[train], [len(rows[i]) for i in train]), n_classes, float(C))
            counts = np.array([len(rows[i]) for i in test])
            scores = aggregate(head.scores(np.concatenate([rows[i] for i in test])), counts, model.aggregate)
            correct += int((scores.argmax(axis=1) == targets[test]).sum())
        accuracy[f"{float(C):g}"] = correct / len(rows)
    return accuracy


def saved_settings(model: ClipClassifier) -> dict[str, Any]:
    """The JSON-serialisable settings saved with a fitted head."""
    params = {name: getattr(model, name) for name in SAVED_PARAMS}
    params["C_grid"] = None if model.C_grid is None else [float(c) for c in model.C_grid]
    weights = ""
    if isinstance(model.weights, (str, os.PathLike)):
        weights = os.fspath(model.weights)
        if Path(weights).expanduser().is_file():
            weights = str(Path(weights).expanduser().resolve())
    info = model.fit_info_
    return {
        **params,
        "layers": list(model.layers_),
        "classes": model.classes_.tolist(),
        "window_frames": model.window_frames_,
        "arch": model.arch_,
        "weights": weights,
        "weights_identity": model.weights_identity_,
        "fit_info": {
            "n_clips": info.n_clips,
            "n_windows": info.n_windows,
            "C": info.C,
            "cv_accuracy": info.cv_accuracy,
        },
    }


def restore(
    cls: type[ClipClassifier], head: LinearHead, settings: dict[str, Any], where: str, **machine: Any
) -> ClipClassifier:
    """A fitted classifier from a saved ``head`` and its ``settings``; ``machine`` holds ``net``, ``weights``,
    ``cache``, ``cache_dir`` (``weights`` None: the preset or file named in the settings)."""
    try:
        params = {name: settings[name] for name in SAVED_PARAMS}
        classes, layers = settings["classes"], settings["layers"]
        machine["weights"] = machine.get("weights") or settings["weights"] or "soundnet8"
        model = cls(layer=layers if len(layers) > 1 else layers[0], **machine, **params)
        model.layers_ = check_settings(model)
        model.head_, model.classes_ = head, np.array(classes)
        model.window_frames_, model.arch_ = settings["window_frames"], settings["arch"]
        model.weights_identity_ = settings["weights_identity"]
        info = settings["fit_info"]
        model.fit_info_ = FitInfo(info["n_clips"], info["n_windows"], info["C"], info["cv_accuracy"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"head file {where!r} has incomplete settings: {exc!r}") from None
    n_classes = head.weights.shape[0] if head.weights.ndim == 2 else -1
    if n_classes != len(classes) or head.bias.shape != (n_classes,):
        raise ConfigError(
            f"head file {where!r} is inconsistent: {len(classes)} classes but weights of shape {head.weights.shape} "
            f"and bias {head.bias.shape}"
        )
    return model


PADDING_TOLERANCE_S = 1e-3
"""Audio fed beyond a clip's own length by less than this (resampling rounds lengths by a sample) is not padding."""


def window_results(model: ClipClassifier, items: list[Item], progress: bool) -> list[ClipResult]:
    """:meth:`ClipClassifier.predict_files` of a fitted ``model``: clips read and classified one at a time."""
    extractor, identity = model._extractor()
    labels = [str(c) for c in model.classes_]
    results = []
    for index, item in enumerate(progress_bar(items, len(items), "classify") if progress else items):
        clip = extractor.extract_one(item, index, identity=identity)
        scores = model.head_.scores(model._checked(model._rows(clip, model.window_frames_)))
        if model.head == "svm":
            clip_scores = aggregate(scores, np.array([len(scores)]), model.aggregate)[0]
            head = HeadScores(scores, labels, "decision", clip_scores)
        else:
            probabilities = softmax(scores, axis=-1)
            head = HeadScores(probabilities, labels, "probability", probabilities.mean(axis=0))
        times = window_times(clip, model.arch_, model.layers_[0], model.window_frames_, len(scores))
        source = os.fspath(item) if isinstance(item, (str, os.PathLike)) else clip.source
        duration, padded_to, padded_frames = clip.seconds, None, None
        own = extractor.source_seconds(item, index)
        if own is not None and clip.seconds - own > PADDING_TOLERANCE_S:  # repeated to ``duration`` or padded
            duration, padded_to, padded_frames = own, clip.seconds, times.end > own + PADDING_TOLERANCE_S
        results.append(ClipResult({"classes": head}, times, duration, source, padded_to, padded_frames))
    return results
