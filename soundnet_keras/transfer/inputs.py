"""What the estimators accept: ``X`` (clips) and ``y`` (one label per clip), checked as scikit-learn users expect.

``X`` is a list of clips -- file paths, 1-D waveforms, (samples, channels) arrays or :class:`ClipFeatures` -- or one
2-D array whose rows are equal-length mono clips (any array-like: NumPy, pandas, a tensor). Errors are
:class:`~soundnet_keras.errors.ConfigError` / :class:`~soundnet_keras.errors.AudioError` (both ``ValueError``) that
name the clip; where scikit-learn's own wording exists for the same mistake (``Reshape your data``, ``Complex data
not supported``, ``Unknown label type``) the message contains it, so code written against scikit-learn recognises it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils import assert_all_finite
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ..audio import as_clip
from ..errors import ConfigError


class NotFittedError(ConfigError, SklearnNotFittedError):
    """An estimator of this package used before ``fit``: both our :class:`ConfigError` and scikit-learn's
    ``NotFittedError``, so ``check_is_fitted``-style handling works."""


class NoProbabilitiesError(ConfigError, AttributeError):
    """``predict_proba`` of a head that gives decision values only: ``hasattr(model, "predict_proba")`` is False,
    as scikit-learn expects, and calling it says why."""


Item = str | os.PathLike | np.ndarray


def as_items(items: object, what: str = "X") -> list[Any]:
    """``items`` as a list of clips (paths, waveforms or :class:`ClipFeatures`); a 2-D array gives its rows."""
    if isinstance(items, (str, os.PathLike)):
        raise ConfigError(f"{what} must be a list of clips (file paths or waveforms), got a single path {items!r}")
    if scipy.sparse.issparse(items):
        raise ConfigError(
            f"{what} is a scipy sparse matrix: sparse input is not supported; pass a list of clips (file paths or "
            "1-D waveforms) or a dense (clips, samples) array"
        )
    if not isinstance(items, (Sequence, np.ndarray)) and hasattr(items, "__array__"):
        items = np.asarray(items)  # array-likes: pandas, tensors, memmaps behind wrappers
    if isinstance(items, np.ndarray):
        return _array_items(items, what)
    if not isinstance(items, Sequence):
        raise ConfigError(f"{what} must be a list of clips (file paths or waveforms), got {type(items).__name__}")
    if len(items) == 0:
        raise ConfigError(f"{what} is empty: at least one clip is needed")
    return list(items)


def _array_items(array: np.ndarray, what: str) -> list[Any]:
    if array.ndim == 1 and array.dtype.kind not in "OUS":
        raise ConfigError(
            f"{what} must be a list of clips, got one 1-D array of {array.shape[0]} samples. Reshape your data: "
            f"wrap a single waveform in a list ([waveform]), or pass a (clips, samples) array"
        )
    if array.ndim > 2:
        raise ConfigError(
            f"{what} has shape {array.shape}: pass a list of clips, or a 2-D (clips, samples) array of mono clips"
        )
    if array.shape[0] == 0:
        raise ConfigError(f"{what} is empty (shape {array.shape}): at least one clip is needed")
    if array.ndim == 2 and array.shape[1] == 0:
        raise ConfigError(
            f"{what} is a (clips, samples) array without samples: 0 feature(s) (shape={array.shape}) while a "
            "minimum of 1 is required."
        )
    return list(array) if array.ndim == 2 else array.tolist()


def check_clips(items: Sequence[Any], channels: str = "mix") -> None:
    """Validate every in-memory clip of ``items`` (dtype, shape, NaN/Inf, range) without running the network; paths
    are checked when read, :class:`ClipFeatures` are taken as they are."""
    from .features import ClipFeatures  # circular: transfer.features imports this module

    for index, item in enumerate(items):
        if not isinstance(item, (str, os.PathLike, ClipFeatures)):
            as_clip(item, name=f"clip {index}", channels=channels)


def label_array(y: object, n: int, estimator: str = "ClipClassifier") -> np.ndarray:
    """``y`` as a 1-D array of class labels, one per clip (strings or integers; scikit-learn's target rules)."""
    if y is None:
        raise ConfigError(f"{estimator} requires y to be passed, but the target y is None: give one label per clip")
    if isinstance(y, (str, bytes)) or not (hasattr(y, "__len__") or hasattr(y, "__array__")):
        raise ConfigError(f"y must be a list of labels (one per clip), got {type(y).__name__}")
    labels = np.asarray(y)
    if labels.dtype.kind == "c":
        raise ConfigError("y has complex values: Complex data not supported; labels are strings or integers")
    labels = column_or_1d(labels, warn=True)
    if labels.dtype.kind == "f":
        assert_all_finite(labels, input_name="y")
    if len(labels) != n:
        raise ConfigError(f"X has {n} clips but y has {len(labels)} labels; they must match")
    check_classification_targets(labels)
    return labels
