"""Fine-tuning: a new classification head for N labelled classes on a pretrained SoundNet trunk (``main_finetune.lua``).

The original replaces the two teacher heads by one new convolution over the trunk's last layer and trains on
labelled clips. Here the head (``Conv1D(N, head_kernel, head_stride)``) reads any named trunk stage (default
``pool5``; ``conv7`` with ``head_kernel=8, head_stride=2`` is the original's conv8-shaped head), its per-frame
logits are averaged over time (``aggregation="mean"``) and a softmax gives the class probabilities. The head always
trains first with the trunk frozen; with ``freeze_trunk=False`` the trunk then trains too, at a lower rate, its
BatchNorm statistics kept. Defaults were measured on esc10-dev (2 folds of 80 clips, 6 seeds; README "Fine-tuning"):
pool5 (0.85 vs 0.74 for conv7), head lr 0.01 for 20 epochs (87.8 % mean; 10 epochs: 86.9 %); with the trunk trained
too, then at 3e-5 for 20 epochs with augmentation, 88.1 % (sd 0.4), equal to the linear probe (88.1 %), where
training everything from the start collapsed (25 % at 1e-4, 72.5 % at 1e-3). Training clips are cut to
``window_seconds`` (a random crop each epoch when longer; repeated circularly, as the original scripts do, when
shorter); prediction runs the whole clip.

Data: a folder with one sub-folder per class (audio files inside), or a CSV with a path column and a label column
(e.g. ESC-50's ``meta/esc50.csv``: ``filename``, ``category``, ``fold``). Held-out clips: a CSV fold value
(``val_fold``) or a stratified random fraction (``val_fraction``).

Export: one ``.keras`` file (see :mod:`soundnet_keras.training.finetuned`), no pickle.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..architecture import SAMPLE_RATE, pad_to_length
from ..audio import load_audio
from ..errors import ConfigError, WeightsError
from ..labelled import LabelledFiles, read_class_folders, read_labelled_csv
from ..pretrained import resolve
from ..validation import check_positive
from ..weights import BN_VARIABLES, load_weights
from .finetuned import (  # noqa: F401  (re-exported: the first home of these names)
    AGGREGATIONS,
    FINETUNED_FORMAT,
    FinetunedClassifier,
    build_classifier,
    load_finetuned,
    min_samples_for,
)


# --------------------------------------------------------------------------------------------------------- data
@dataclass
class LabelledClips:
    """Audio paths with class indices, and the class names (sorted)."""

    paths: list[Path]
    labels: np.ndarray
    classes: list[str]
    folds: list[str] | None = None


def _clips(files: LabelledFiles, source: str) -> LabelledClips:
    classes = sorted(set(files.labels))
    if len(classes) < 2:
        raise ConfigError(f"{source} must name at least 2 classes, found {classes}")
    labels = np.asarray([classes.index(label) for label in files.labels])
    return LabelledClips(files.paths, labels, classes, files.folds)


def clips_from_folder(root: str | os.PathLike) -> LabelledClips:
    """One sub-folder per class, audio files inside (class names = sub-folder names, sorted); see
    :mod:`soundnet_keras.labelled`."""
    return _clips(read_class_folders(root), f"data folder {str(root)!r}")


def clips_from_csv(
    csv_path: str | os.PathLike,
    *,
    audio_dir: str | os.PathLike | None = None,
    path_column: str = "filename",
    label_column: str = "category",
    fold_column: str | None = "fold",
) -> LabelledClips:
    """Clips listed in a CSV; relative paths are taken from ``audio_dir`` (default: the CSV's folder); see
    :func:`soundnet_keras.labelled.read_labelled_csv`."""
    files = read_labelled_csv(
        csv_path, audio_dir=audio_dir, path_column=path_column, label_column=label_column, fold_column=fold_column
    )
    return _clips(files, f"{str(csv_path)!r}: column {label_column!r}")


def split_clips(
    clips: LabelledClips, *, val_fold: str | None = None, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of training and held-out clips: by fold when ``val_fold`` is given, else stratified by class."""
    n = len(clips.paths)
    if val_fold is not None:
        if clips.folds is None:
            raise ConfigError("val_fold needs a CSV with a fold column")
        val = np.asarray([f == str(val_fold) for f in clips.folds])
        if not val.any() or val.all():
            raise ConfigError(
                f"fold {val_fold!r} must select some but not all clips; folds are {sorted(set(clips.folds))}"
            )
        return np.flatnonzero(~val), np.flatnonzero(val)
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    val = np.zeros(n, bool)
    for label in np.unique(clips.labels):
        members = rng.permutation(np.flatnonzero(clips.labels == label))
        val[members[: round(len(members) * val_fraction)]] = True
    return np.flatnonzero(~val), np.flatnonzero(val)


# -------------------------------------------------------------------------------------------------------- model
def _fit_length(clip: np.ndarray, length: int, rng: np.random.Generator | None) -> np.ndarray:
    if len(clip) < length:
        return pad_to_length(clip, length, "repeat")
    start = 0 if rng is None else int(rng.integers(0, len(clip) - length + 1))
    return clip[start : start + length]


# ------------------------------------------------------------------------------------------------------ training
@dataclass
class FinetuneConfig:
    """Settings of :func:`finetune` (the CLI ``soundnet-finetune`` maps its flags onto these)."""

    init: str = "soundnet8"
    layer: str = "pool5"
    head_kernel: int = 1
    head_stride: int = 1
    aggregation: str = "mean"
    window_seconds: float = 5.0
    freeze_trunk: bool = True
    """False: after the head's ``epochs``, ``trunk_epochs`` more train the trunk too (BatchNorm kept in inference
    mode, its statistics frozen) at ``trunk_learning_rate``: the head first, so that the trunk is never trained
    against a random head."""
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-2
    seed: int = 0
    trunk_epochs: int = 20
    trunk_learning_rate: float = 3e-5
    augment: bool | None = None
    """Training crops circularly shifted by a random offset and scaled by a random gain (0.5-1.5); None: on when the
    trunk trains (measured: it steadies trunk training), off for the head alone."""

    @property
    def augments(self) -> bool:
        """Whether training crops are augmented (``augment``, or by default only when the trunk trains)."""
        return (not self.freeze_trunk) if self.augment is None else bool(self.augment)


@dataclass
class FinetuneResult:
    """The fitted classifier, its held-out accuracy (None without held-out clips) and history."""

    classifier: FinetunedClassifier
    val_accuracy: float | None
    train_accuracy: float
    history: dict


def finetune(
    clips: LabelledClips,
    train_idx: Sequence[int],
    val_idx: Sequence[int],
    config: FinetuneConfig,
    *,
    log: Callable[[str], None] | None = None,
    verbose: int | str = "auto",
) -> FinetuneResult:
    """Fit a new head (and optionally the trunk) on ``clips[train_idx]``; report accuracy on ``clips[val_idx]``."""
    import keras  # heavy (Keras/TensorFlow): soundnet-finetune imports this module before checking its inputs

    say = log or (lambda message: None)
    if len(train_idx) == 0:
        raise ConfigError("no training clips")
    for name in ("epochs", "batch_size", "head_kernel", "head_stride"):
        check_positive(getattr(config, name), name, integer=True)
    check_positive(config.learning_rate, "learning_rate")
    if not config.freeze_trunk:
        check_positive(config.trunk_epochs, "trunk_epochs", integer=True)
        check_positive(config.trunk_learning_rate, "trunk_learning_rate")
    keras.utils.set_random_seed(config.seed)
    classifier = _initial_classifier(clips, config)
    window = max(round(config.window_seconds * SAMPLE_RATE), classifier.min_samples)
    say(f"loading {len(train_idx) + len(val_idx)} clips")
    audio = {i: load_audio(clips.paths[i])[0] for i in (*train_idx, *val_idx)}
    batches = _crop_batches(audio, np.asarray(train_idx), clips.labels, window, config)
    history = _fit(classifier.model, batches, config.learning_rate, config.epochs, verbose)
    if not config.freeze_trunk and config.trunk_epochs:
        say(f"training the trunk too for {config.trunk_epochs} epoch(s) at {config.trunk_learning_rate:g}")
        _unfreeze_trunk(classifier.model)
        more = _fit(classifier.model, batches, config.trunk_learning_rate, config.trunk_epochs, verbose)
        history = {k: [*history[k], *more[k]] for k in history}
    train_acc = float(history["accuracy"][-1])
    val_acc = None
    if len(val_idx):
        val_acc = _accuracy(classifier, [audio[i] for i in val_idx], clips.labels[np.asarray(val_idx)])
        say(f"held-out accuracy {val_acc:.3f} on {len(val_idx)} clips ({len(clips.classes)} classes)")
    return FinetuneResult(classifier, val_acc, train_acc, history)


def _fit(model, batches, learning_rate: float, epochs: int, verbose: int | str) -> dict[str, list[float]]:
    """Compile ``model`` with Adam at ``learning_rate`` and fit ``epochs`` epochs; the history."""
    import keras  # heavy (Keras/TensorFlow): soundnet-finetune imports this module before checking its inputs

    model.compile(keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return dict(model.fit(batches, epochs=epochs, verbose=verbose).history)


def _unfreeze_trunk(model) -> None:
    """Make the trunk trainable except its BatchNorm layers, which stay in inference mode (small fine-tuning batches
    would replace the statistics learned on two million videos)."""
    import keras  # heavy (Keras/TensorFlow): soundnet-finetune imports this module before checking its inputs

    for layer in model.layers:
        if isinstance(layer, keras.Model):  # the trunk
            layer.trainable = True
            for inner in layer.layers:
                if isinstance(inner, keras.layers.BatchNormalization):
                    inner.trainable = False


def _initial_classifier(clips: LabelledClips, config: FinetuneConfig) -> FinetunedClassifier:
    """The classifier before training: the pretrained trunk (frozen or not, as ``config`` says) and a new head."""
    from .train import load_init_params  # heavy (Keras/TensorFlow): .train imports them at its top

    arch = _weights_arch(config.init)
    trunk, model = build_classifier(
        arch,
        config.layer,
        len(clips.classes),
        head_kernel=config.head_kernel,
        head_stride=config.head_stride,
        aggregation=config.aggregation,
    )
    _load_trunk(trunk, load_init_params(config.init, arch), arch)
    trunk.trainable = False  # the head trains first; see FinetuneConfig.freeze_trunk
    return FinetunedClassifier(
        model,
        arch=arch,
        layer=config.layer,
        classes=list(clips.classes),
        head_kernel=config.head_kernel,
        head_stride=config.head_stride,
        window_seconds=config.window_seconds,
        aggregation=config.aggregation,
        source=f"soundnet-finetune from {config.init}",
    )


def _crop_batches(audio: dict, train_idx: np.ndarray, labels: np.ndarray, window: int, config: FinetuneConfig):
    """A ``keras.utils.PyDataset`` of shuffled training batches, each clip cut (or repeated) to ``window`` samples;
    order and crops depend only on ``config.seed``, the epoch and the batch index."""
    import keras  # heavy (Keras/TensorFlow): soundnet-finetune imports this module before checking its inputs

    class CropBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def __len__(self) -> int:
            return math.ceil(len(train_idx) / config.batch_size)

        def __getitem__(self, index: int):
            rng = np.random.default_rng([config.seed, self.epoch, index])
            order = np.random.default_rng([config.seed, self.epoch]).permutation(train_idx)
            chosen = order[index * config.batch_size : (index + 1) * config.batch_size]
            crops = np.stack([_fit_length(audio[i], window, rng) for i in chosen])
            if config.augments:
                crops = _augmented(crops, rng)
            return crops, labels[chosen]

        def on_epoch_end(self) -> None:
            self.epoch += 1

    return CropBatches()


def _augmented(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each crop circularly shifted by a random offset and scaled by a random gain in [0.5, 1.5], kept in [-1, 1]."""
    shifted = np.stack([np.roll(crop, int(rng.integers(0, crop.shape[-1]))) for crop in crops])
    gains = rng.uniform(0.5, 1.5, (len(crops), 1)).astype(np.float32)
    return np.clip(shifted * gains, -1.0, 1.0)


def _accuracy(classifier: FinetunedClassifier, waveforms: list[np.ndarray], labels: np.ndarray) -> float:
    """Clip accuracy of ``classifier`` on whole 22,050 Hz ``waveforms`` with class indices ``labels``."""
    predicted = [classifier.classes.index(classifier.predict_waveform(w, SAMPLE_RATE).label()) for w in waveforms]
    return float(np.mean(np.asarray(predicted) == labels))


def _weights_arch(init: str) -> str:
    return load_weights(resolve(init, log=None)).architecture


def _load_trunk(trunk, params: dict, arch: str) -> None:
    for layer in trunk.layers:
        if not layer.weights:
            continue
        if layer.name not in params:
            raise WeightsError(f"initial weights have no parameters for layer {layer.name!r} of {arch}")
        names = BN_VARIABLES if "moving_mean" in params[layer.name] else ("kernel", "bias")
        layer.set_weights([np.asarray(params[layer.name][v], np.float32) for v in names])
