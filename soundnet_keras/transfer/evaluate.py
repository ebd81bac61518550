"""Cross-validated accuracy of a :class:`~soundnet_keras.transfer.ClipClassifier` on labelled clips."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone

from ..errors import ConfigError
from ..validation import check_positive
from .clip_classifier import ClipClassifier
from .features import ClipFeatures, progress_bar
from .inputs import Item, as_items, label_array


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
    from sklearn.model_selection import StratifiedKFold  # ~50 ms to import: only for cross-validation

    folds = check_positive(folds, "folds", integer=True)
    items = as_items(X)
    labels = label_array(y, len(items))
    clips = classifier.features(items)
    _, codes = np.unique(labels, return_inverse=True)
    smallest = int(np.bincount(codes).min())
    n_splits = min(folds, smallest)
    if n_splits < 2:
        raise ConfigError(f"cross-validation needs at least 2 clips per class; the smallest class has {smallest}")
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(items)), codes))
    iterator = progress_bar(splits, len(splits), "cross-validation", "fold") if progress else splits
    accuracies = []
    for train, test in iterator:
        model = clone(classifier).set_params(progress=False)
        model.fit([clips[i] for i in train], labels[train])
        accuracies.append(model.score([clips[i] for i in test], labels[test]))
    return accuracies


# --------------------------------------------------------------------------------------------- loading / CLI use
