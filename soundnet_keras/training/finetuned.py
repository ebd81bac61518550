"""A fine-tuned network: the model :func:`build_classifier` makes, :class:`FinetunedClassifier` to classify clips
with it, and its file.

File: one ``.keras`` archive (:mod:`soundnet_keras.keras_files`) that ``keras.saving.load_model(path,
safe_mode=True)`` loads as the full Keras model (waveform -> class probabilities; built-in layers only), with our
metadata: ``format = "soundnet_keras.finetuned/2"``, ``arch``, ``layer`` (the stage the head reads), ``head_kernel``,
``head_stride``, ``window_seconds``, ``aggregation``, ``pad``, ``classes``, ``source``. :func:`load_finetuned` rebuilds
the model from the metadata and copies the archive's weights in strictly. Files of the first format (HDF5,
``soundnet_keras.finetuned/1``) are still read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..architecture import SAMPLE_RATE, geometry, output_names, pad_to_length
from ..audio import as_clip, check_sample_rate, load_audio, resample
from ..errors import ConfigError, WeightsError
from ..keras_files import copy_weights_strict, is_keras_archive, load_keras, read_metadata, save_keras, weighted_layers
from ..results import ClipResult, HeadScores, frame_times_from_spans
from ..transfer.head_files import FINETUNED_FORMAT, LEGACY_FINETUNED_FORMAT

AGGREGATIONS = ("mean", "max")


def min_samples_for(arch: str, layer: str, head_kernel: int) -> int:
    """Shortest input giving ``head_kernel`` frames of ``layer`` (so the head gives one output)."""
    geo = geometry(arch, layer)
    return geo.min_samples + (head_kernel - 1) * geo.hop


def build_classifier(
    arch: str, layer: str, num_classes: int, *, head_kernel: int = 1, head_stride: int = 1, aggregation: str = "mean"
):
    """(trunk submodel, full classifier model): waveform -> trunk ``layer`` -> head conv -> time pooling -> softmax."""
    import keras  # heavy (Keras/TensorFlow): soundnet-finetune imports this module before checking its inputs

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
        import keras  # heavy (Keras): only when a fine-tuned network runs

        if self._run is None:
            model = self.model
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf  # the active backend: one trace for inputs of any length

                @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)], reduce_retracing=True)
                def run(batch):
                    return model(batch, training=False)

                self._run = run
            else:  # JAX, PyTorch: Keras' own inference step (no gradients kept)
                self._run = model.predict_on_batch
        probabilities = keras.ops.convert_to_numpy(self._run(audio[None].astype(np.float32)))
        return np.asarray(probabilities)[0].astype(np.float64)

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
        """Write the network and its metadata to a ``.keras`` file, atomically (see the module docstring)."""
        metadata = {
            "format": FINETUNED_FORMAT,
            "arch": self.arch,
            "layer": self.layer,
            "head_kernel": self.head_kernel,
            "head_stride": self.head_stride,
            "window_seconds": self.window_seconds,
            "aggregation": self.aggregation,
            "pad": "repeat",
            "classes": self.classes,
            "source": self.source,
        }
        return save_keras(self.model, path, metadata)

    def __repr__(self) -> str:
        return f"FinetunedClassifier({self.arch!r}, layer={self.layer!r}, classes={len(self.classes)})"


def load_finetuned(path: str | os.PathLike) -> FinetunedClassifier:
    """Read a file written by :meth:`FinetunedClassifier.save` (or an HDF5 file of the first format)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"fine-tuned model {str(path)!r} does not exist")
    if not is_keras_archive(path):
        return _load_legacy(path)
    meta = read_metadata(path, [FINETUNED_FORMAT], "fine-tuned model")
    try:
        classifier = _from_metadata(meta, meta["classes"], str(meta.get("source", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{str(path)!r}: incomplete metadata ({exc!r})") from None
    copy_weights_strict(load_keras(path, "fine-tuned model"), classifier.model, repr(str(path)))
    return classifier


def _from_metadata(meta: Any, classes: list[str], source: str) -> FinetunedClassifier:
    """A fine-tuned classifier of the shape ``meta`` describes, its weights not yet loaded."""
    arch, layer, kernel, stride = (
        str(meta["arch"]),
        str(meta["layer"]),
        int(meta["head_kernel"]),
        int(meta["head_stride"]),
    )
    aggregation = str(meta["aggregation"])
    _, model = build_classifier(
        arch, layer, len(classes), head_kernel=kernel, head_stride=stride, aggregation=aggregation
    )
    return FinetunedClassifier(
        model,
        arch=arch,
        layer=layer,
        classes=[str(c) for c in classes],
        head_kernel=kernel,
        head_stride=stride,
        window_seconds=float(meta["window_seconds"]),
        aggregation=aggregation,
        source=source,
    )


def _load_legacy(path: Path) -> FinetunedClassifier:
    """A fine-tuned network of the first format: one HDF5 file, ``weights/<layer>/<variable>``."""
    import h5py  # heavy (h5py): only for files of the first (HDF5) format

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{str(path)!r} is neither a .keras nor an HDF5 file: {exc}") from None
    with handle as f:
        found = f.attrs.get("format")
        if found != LEGACY_FINETUNED_FORMAT:
            raise WeightsError(f"{str(path)!r}: expected format {FINETUNED_FORMAT!r}, found {found!r}")
        try:
            classifier = _from_metadata(f.attrs, json.loads(str(f.attrs["classes"])), str(f.attrs.get("source", "")))
            stored = f["weights"]
            layers = weighted_layers(classifier.model)
            missing, unused = sorted(set(layers) - set(stored)), sorted(set(stored) - set(layers))
            if missing or unused:
                raise WeightsError(f"{str(path)!r}: layers without weights {missing}, weights unused {unused}")
            for name, layer in layers.items():
                values = [np.asarray(stored[name][var.name]) for var in layer.weights]
                shapes = [tuple(var.shape) for var in layer.weights]
                if [v.shape for v in values] != shapes:
                    raise WeightsError(
                        f"{str(path)!r}: layer {name!r} has shapes {[v.shape for v in values]}, expected {shapes}"
                    )
                layer.set_weights(values)
        except KeyError as exc:
            raise WeightsError(f"{str(path)!r}: missing entry {exc}") from None
    return classifier
