"""Fine-tuning: a new classification head for N labelled classes on a pretrained SoundNet trunk (``main_finetune.lua``).

The original replaces the two teacher heads by one new convolution over the trunk's last layer and trains on
labelled clips. Here the head (``Conv1D(N, head_kernel, head_stride)``) reads any named trunk stage (default
``pool5``; ``conv7`` with ``head_kernel=8, head_stride=2`` is the original's conv8-shaped head), its per-frame
logits are averaged over time (``aggregation="mean"``) and a softmax gives the class probabilities; the trunk can be
frozen (BatchNorm then stays in inference mode) or trained with it. Defaults (pool5, lr 0.01 with a frozen trunk)
were chosen on ESC-10 (fold 1 -> fold 2, 8 epochs: 0.85 held-out accuracy vs 0.74 for conv7; lower the learning
rate, e.g. 1e-4, when training the trunk too). Training clips are cut to ``window_seconds`` (a random crop each
epoch when longer; repeated circularly, as the original scripts do, when shorter); prediction runs the whole clip.

Data: a folder with one sub-folder per class (audio files inside), or a CSV with a path column and a label column
(e.g. ESC-50's ``meta/esc50.csv``: ``filename``, ``category``, ``fold``). Held-out clips: a CSV fold value
(``val_fold``) or a stratified random fraction (``val_fraction``).

Export: ONE HDF5 file, no pickle. Root attributes: ``format = "soundnet_keras.finetuned/1"``, ``arch``, ``layer``
(the stage the head reads), ``head_kernel``, ``head_stride``, ``window_seconds``, ``aggregation``, ``pad``,
``classes`` (JSON list of names), ``source``; group ``weights/<keras layer>/<variable>`` holds every parameter of the
trunk up to ``layer`` and of the head (``head/kernel``, ``head/bias``). :func:`load_finetuned` reads it back.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..architecture import SAMPLE_RATE, geometry, output_names, pad_to_length
from ..audio import as_clip, check_sample_rate, load_audio, resample
from ..errors import ConfigError, WeightsError
from ..files import atomic_path
from ..labelled import LabelledFiles, read_class_folders, read_labelled_csv
from ..results import ClipResult, HeadScores, frame_times_from_spans
from ..validation import check_positive

FINETUNED_FORMAT = "soundnet_keras.finetuned/1"
AGGREGATIONS = ("mean", "max")


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
def min_samples_for(arch: str, layer: str, head_kernel: int) -> int:
    """Shortest input giving ``head_kernel`` frames of ``layer`` (so the head gives one output)."""
    geo = geometry(arch, layer)
    return geo.min_samples + (head_kernel - 1) * geo.hop


def build_classifier(
    arch: str, layer: str, num_classes: int, *, head_kernel: int = 1, head_stride: int = 1, aggregation: str = "mean"
):
    """(trunk submodel, full classifier model): waveform -> trunk ``layer`` -> head conv -> time pooling -> softmax."""
    import keras

    from ..network import build_network, stage_layer

    if layer not in output_names(arch) or layer in ("objects", "scenes"):
        raise ConfigError(
            f"layer {layer!r} is not a trunk stage of {arch}: expected one of "
            f"{', '.join(n for n in output_names(arch) if n not in ('objects', 'scenes'))}"
        )
    if aggregation not in AGGREGATIONS:
        raise ConfigError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    net = build_network(arch)
    trunk = keras.Model(net.input, net.get_layer(stage_layer(arch, layer)).output, name=f"{arch}_to_{layer}")
    waveform = keras.Input(shape=(None,), name="waveform", dtype="float32")
    x = trunk(waveform)
    x = keras.layers.Conv1D(num_classes, head_kernel, strides=head_stride, name="head")(x)
    pool = keras.layers.GlobalAveragePooling1D if aggregation == "mean" else keras.layers.GlobalMaxPooling1D
    x = pool(name="time_pool")(x)
    probs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return trunk, keras.Model(waveform, probs, name=f"{arch}_finetuned")


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
    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 1e-2
    seed: int = 0


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
    import keras

    from .train import load_init_params

    say = log or (lambda message: None)
    if len(train_idx) == 0:
        raise ConfigError("no training clips")
    for name in ("epochs", "batch_size", "head_kernel", "head_stride"):
        check_positive(getattr(config, name), name, integer=True)
    keras.utils.set_random_seed(config.seed)
    weights_arch = _weights_arch(config.init)
    trunk, model = build_classifier(
        weights_arch,
        config.layer,
        len(clips.classes),
        head_kernel=config.head_kernel,
        head_stride=config.head_stride,
        aggregation=config.aggregation,
    )
    _load_trunk(trunk, load_init_params(config.init, weights_arch), weights_arch)
    trunk.trainable = not config.freeze_trunk
    window = max(
        round(config.window_seconds * SAMPLE_RATE), min_samples_for(weights_arch, config.layer, config.head_kernel)
    )
    say(f"loading {len(train_idx) + len(val_idx)} clips")
    audio = {i: load_audio(clips.paths[i])[0] for i in (*train_idx, *val_idx)}
    train_idx = np.asarray(train_idx)
    labels = clips.labels

    class Clips(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def __len__(self) -> int:
            return math.ceil(len(train_idx) / config.batch_size)

        def __getitem__(self, index: int):
            rng = np.random.default_rng([config.seed, self.epoch, index])
            order = np.random.default_rng([config.seed, self.epoch]).permutation(train_idx)
            chosen = order[index * config.batch_size : (index + 1) * config.batch_size]
            batch = np.stack([_fit_length(audio[i], window, rng) for i in chosen])
            return batch, labels[chosen]

        def on_epoch_end(self) -> None:
            self.epoch += 1

    model.compile(
        keras.optimizers.Adam(config.learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(Clips(), epochs=config.epochs, verbose=verbose)
    classifier = FinetunedClassifier(
        model,
        arch=weights_arch,
        layer=config.layer,
        classes=list(clips.classes),
        head_kernel=config.head_kernel,
        head_stride=config.head_stride,
        window_seconds=config.window_seconds,
        aggregation=config.aggregation,
        source=f"soundnet-finetune from {config.init}",
    )
    train_acc = float(history.history["accuracy"][-1])
    val_acc = None
    if len(val_idx):
        predicted = [
            classifier.classes.index(classifier.predict_waveform(audio[i], SAMPLE_RATE).label()) for i in val_idx
        ]
        val_acc = float(np.mean(np.asarray(predicted) == labels[np.asarray(val_idx)]))
        say(f"held-out accuracy {val_acc:.3f} on {len(val_idx)} clips ({len(clips.classes)} classes)")
    return FinetuneResult(classifier, val_acc, train_acc, dict(history.history))


def _weights_arch(init: str) -> str:
    from ..pretrained import resolve
    from ..weights import load_weights

    return load_weights(resolve(init, log=None)).architecture


def _load_trunk(trunk, params: dict, arch: str) -> None:
    from ..weights import BN_VARIABLES

    for layer in trunk.layers:
        if not layer.weights:
            continue
        if layer.name not in params:
            raise WeightsError(f"initial weights have no parameters for layer {layer.name!r} of {arch}")
        names = BN_VARIABLES if "moving_mean" in params[layer.name] else ("kernel", "bias")
        layer.set_weights([np.asarray(params[layer.name][v], np.float32) for v in names])


# ------------------------------------------------------------------------------------------------- export/load
class FinetunedClassifier:
    """A SoundNet trunk with a fine-tuned head: ``classes``, :meth:`predict_waveform`, :meth:`predict_files`,
    :meth:`save`. Obtain one from :func:`finetune` or :func:`load_finetuned`."""

    def __init__(
        self,
        model,
        *,
        arch: str,
        layer: str,
        classes: list[str],
        head_kernel: int,
        head_stride: int,
        window_seconds: float,
        aggregation: str,
        source: str = "",
    ) -> None:
        self.model = model
        self.arch = arch
        self.layer = layer
        self.classes = list(classes)
        self.head_kernel = head_kernel
        self.head_stride = head_stride
        self.window_seconds = float(window_seconds)
        self.aggregation = aggregation
        self.source = source
        self._run = None

    @property
    def min_samples(self) -> int:
        """Clips shorter than this (at 22,050 Hz) are repeated circularly up to it before prediction."""
        return min_samples_for(self.arch, self.layer, self.head_kernel)

    def _probabilities(self, audio: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        if self._run is None:
            model = self.model

            @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)], reduce_retracing=True)
            def run(batch):
                return model(batch, training=False)

            self._run = run
        return np.asarray(self._run(audio[None].astype(np.float32)))[0].astype(np.float64)

    def predict_waveform(self, waveform: object, sample_rate: int = SAMPLE_RATE, *, source: str = "") -> ClipResult:
        """Class probabilities of one clip (float in [-1, 1] or integer samples, any rate; (samples,) or (samples,
        channels), mixed — the layout rule of :func:`~soundnet_keras.audio.as_clip`): a
        :class:`~soundnet_keras.results.ClipResult` with head ``classes`` and one frame, the whole clip
        (``result.label()`` is the best class)."""
        audio = resample(as_clip(waveform), check_sample_rate(sample_rate))
        duration = audio.size / SAMPLE_RATE
        padded = pad_to_length(audio, self.min_samples, "repeat")
        probs = self._probabilities(padded)[None]
        padded_to = padded.size / SAMPLE_RATE if padded.size > audio.size else None
        flags = None if padded_to is None else np.ones(1, bool)
        times = frame_times_from_spans([0.0], [duration])
        return ClipResult({"classes": HeadScores(probs, self.classes)}, times, duration, source, padded_to, flags)

    def predict_files(
        self, paths: Sequence[str | os.PathLike], *, channels: str = "mix", progress: bool = False
    ) -> list[ClipResult]:
        """One :class:`~soundnet_keras.results.ClipResult` per audio file, in order (see :meth:`predict_waveform`);
        unreadable files raise ``AudioError``."""
        results = []
        for path in paths:
            waveform, rate = load_audio(path, channels=channels)
            results.append(self.predict_waveform(waveform, rate, source=os.fspath(path)))
        return results

    def save(self, path: str | os.PathLike) -> Path:
        """Write the single-file HDF5 export (see the module docstring), atomically."""
        import h5py

        path = Path(path)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs.update(
                {
                    "format": FINETUNED_FORMAT,
                    "arch": self.arch,
                    "layer": self.layer,
                    "head_kernel": self.head_kernel,
                    "head_stride": self.head_stride,
                    "window_seconds": self.window_seconds,
                    "aggregation": self.aggregation,
                    "pad": "repeat",
                    "classes": json.dumps(self.classes),
                    "source": self.source,
                }
            )
            group = f.create_group("weights")
            for layer in _weighted(self.model):
                sub = group.create_group(layer.name)
                for var in layer.weights:
                    sub.create_dataset(var.name, data=np.asarray(var))
        return path

    def __repr__(self) -> str:
        return f"FinetunedClassifier({self.arch!r}, layer={self.layer!r}, classes={len(self.classes)})"


def _weighted(model) -> list:
    layers = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            layers += [inner for inner in layer.layers if inner.weights]
        elif layer.weights:
            layers.append(layer)
    return layers


def load_finetuned(path: str | os.PathLike) -> FinetunedClassifier:
    """Read a file written by :meth:`FinetunedClassifier.save` (format ``soundnet_keras.finetuned/1``)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"fine-tuned model {str(path)!r} does not exist")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{str(path)!r} is not an HDF5 file: {exc}") from None
    with handle as f:
        found = f.attrs.get("format")
        if found != FINETUNED_FORMAT:
            raise WeightsError(f"{str(path)!r}: expected format {FINETUNED_FORMAT!r}, found {found!r}")
        try:
            attrs = {
                k: f.attrs[k]
                for k in ("arch", "layer", "head_kernel", "head_stride", "window_seconds", "aggregation", "classes")
            }
            classes = json.loads(str(attrs["classes"]))
            _, model = build_classifier(
                str(attrs["arch"]),
                str(attrs["layer"]),
                len(classes),
                head_kernel=int(attrs["head_kernel"]),
                head_stride=int(attrs["head_stride"]),
                aggregation=str(attrs["aggregation"]),
            )
            stored = f["weights"]
            layers = _weighted(model)
            missing = [layer.name for layer in layers if layer.name not in stored]
            unused = sorted(set(stored) - {layer.name for layer in layers})
            if missing or unused:
                raise WeightsError(f"{str(path)!r}: layers without weights {missing}, weights unused {unused}")
            for layer in layers:
                values = []
                for var in layer.weights:
                    if var.name not in stored[layer.name]:
                        raise WeightsError(f"{str(path)!r}: layer {layer.name!r} has no variable {var.name!r}")
                    array = np.asarray(stored[layer.name][var.name])
                    if array.shape != tuple(var.shape):
                        raise WeightsError(
                            f"{str(path)!r}: {layer.name}/{var.name} has shape {array.shape}, "
                            f"expected {tuple(var.shape)}"
                        )
                    values.append(array)
                layer.set_weights(values)
        except KeyError as exc:
            raise WeightsError(f"{str(path)!r}: missing entry {exc}") from None
        source = str(f.attrs.get("source", ""))
    return FinetunedClassifier(
        model,
        arch=str(attrs["arch"]),
        layer=str(attrs["layer"]),
        classes=classes,
        head_kernel=int(attrs["head_kernel"]),
        head_stride=int(attrs["head_stride"]),
        window_seconds=float(attrs["window_seconds"]),
        aggregation=str(attrs["aggregation"]),
        source=source,
    )
