"""The scikit-learn transformer: clips in, one pooled SoundNet feature vector per clip out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..architecture import SAMPLE_RATE, geometry
from ..validation import check_choice
from .features import ClipFeatures, FeatureExtractor, extractor_for, resolve_net
from .inputs import Item, NotFittedError, as_items, check_clips
from .windows import POOLINGS, pool_frames


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
        return extractor_for(self, resolve_net(self.net, self.weights), self.layer)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # network activations are float32 whatever comes in
        return tags

    def fit(self, X: Sequence[Item], y: object = None) -> SoundNetFeatures:
        """Validate the settings and the clips, and fix the output columns (there is nothing to learn); returns
        self."""
        extractor = self.extractor()
        check_clips(as_items(X), self.channels)
        self.layers_ = extractor.layers
        self.feature_names_out_ = np.asarray(
            [
                f"{layer}_{statistic}_{channel}"
                for layer in extractor.layers
                for statistic in (("mean", "max") if self.pooling == "meanmax" else (self.pooling,))
                for channel in range(geometry(extractor.net.arch, layer).channels)
            ],
            dtype=object,
        )
        self.n_features_out_ = len(self.feature_names_out_)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "layers_"):
            raise NotFittedError("this SoundNetFeatures is not fitted yet: call fit() first")

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Names of the output columns: ``<layer>_<statistic>_<channel>`` (e.g. ``pool5_mean_0``), in order."""
        self._check_fitted()
        return self.feature_names_out_.copy()

    def transform_frames(self, X: Sequence[Item]) -> list[ClipFeatures]:
        """Per-clip frame-level features (:class:`ClipFeatures`) instead of pooled vectors."""
        self._check_fitted()
        return self.extractor().extract(X, progress=self.progress)

    def transform(self, X: Sequence[Item]) -> np.ndarray:
        """(n_clips, dims) float32: each layer's frames pooled over time, layers concatenated in order.

        Reads the estimator, never changes it (``fit`` fixed the columns)."""
        self._check_fitted()
        extractor = self.extractor()
        clips = extractor.extract(X, progress=self.progress)
        rows = [np.concatenate([pool_frames(c.layers[n], self.pooling) for n in extractor.layers]) for c in clips]
        return np.stack(rows).astype(np.float32, copy=False)
