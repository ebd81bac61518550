"""Any trained classifier file (a head or a fine-tuned network): recognise it, load it, classify files with it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..keras_files import is_keras_archive, read_metadata
from ..results import ClipResult
from .clip_classifier import ClipClassifier
from .head_files import FINETUNED_FORMAT, FORMAT, LEGACY_FINETUNED_FORMAT, LEGACY_FORMAT
from .inputs import as_items


def read_format(path: str | os.PathLike) -> str:
    """The ``format`` of a classifier file: our metadata's in a ``.keras`` archive, the ``format`` attribute of an
    HDF5 file of the first formats (``""`` when there is none)."""
    import h5py  # heavy (h5py): only when a classifier file is read

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"classifier file {str(path)!r} does not exist")
    if is_keras_archive(path):
        formats = [FORMAT, FINETUNED_FORMAT]
        return str(read_metadata(path, formats, "classifier file (head or fine-tuned network)")["format"])
    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get("format", "")
    except OSError as exc:
        raise ConfigError(f"{str(path)!r} is not a classifier file (.keras expected): {exc}") from None
    return value.decode() if isinstance(value, bytes) else str(value)


def load_classifier(path: str | os.PathLike, **kwargs: Any) -> Any:
    """Load a trained classifier file by its format: a head (:data:`FORMAT`, -> :class:`ClipClassifier`) or a
    fine-tuned network (:data:`FINETUNED_FORMAT`, -> ``soundnet_keras.training.finetune.load_finetuned``); files of
    the first (HDF5) formats too.

    Both offer ``classes`` and ``predict_files(paths, ...)``. Keyword arguments go to the loader (e.g. ``net=``).
    """
    fmt = read_format(path)
    if fmt in (FORMAT, LEGACY_FORMAT):
        return ClipClassifier.load(path, **kwargs)
    if fmt in (FINETUNED_FORMAT, LEGACY_FINETUNED_FORMAT):
        try:
            from ..training.finetune import load_finetuned  # circular: training.finetuned imports transfer.head_files
        except ImportError as exc:
            raise ConfigError(
                f"{str(path)!r} is a fine-tuned network, but this installation cannot load it: {exc}"
            ) from None
        return load_finetuned(path, **kwargs)
    raise ConfigError(
        f"{str(path)!r} is not a classifier file: format attribute is {fmt!r}, expected {FORMAT!r} or "
        f"{FINETUNED_FORMAT!r}"
    )


def classify_files(classifier: Any, paths: Sequence[str | os.PathLike], *, progress: bool = False) -> list[ClipResult]:
    """Classify audio files with a loaded classifier (a path is loaded with :func:`load_classifier` first): one
    :class:`~soundnet_keras.results.ClipResult` per file, head ``classes`` (a head's windows as frames; a
    fine-tuned network's clip as one frame). Unreadable files raise :class:`~soundnet_keras.errors.AudioError`
    naming the file."""
    if isinstance(classifier, (str, os.PathLike)):
        classifier = load_classifier(classifier)
    if not hasattr(classifier, "predict_files"):
        kind = type(classifier).__name__
        raise ConfigError(f"classifier must be a loaded classifier or a classifier file, got {kind}")
    return classifier.predict_files(as_items(paths, "paths"), progress=progress)
