"""What a training objective decides, for :func:`~.train.train`: its shards, model, loss, validation and weights.

:func:`~.train.train` is the objective-independent loop (strategies, precision, crash-safe backups and resume,
numbered checkpoints, schedules, progress, early stopping); an objective fills in the rest:

=================  ===========================================  ===============================================
                   ``teacher`` (:class:`TeacherObjective`)      ``avc`` (:class:`AVCObjective`)
=================  ===========================================  ===============================================
architectures      SoundNet (``soundnet8``, ``soundnet5``)      L³-Net (``l3``; ``l3-small`` for CPUs / tests)
shards             teacher shards (``soundnet-teacher``)        AVC shards (``python -m soundnet_keras.l3.avc_data``)
model              the student (:func:`~.train.build_student`)  ``L3Net(arch).avc_model``
loss               KL to the teachers × λ, summed over heads    cross-entropy of the 2-way logits
batches            :func:`~.data.make_dataset` (crops)          :func:`~soundnet_keras.l3.avc_data.make_avc_dataset`
held out           :func:`~.data.held_out_videos`               :func:`~soundnet_keras.l3.avc_data.split_videos`
validation         ``val_loss`` (held-out KL)                   ``val_loss`` (held-out AVC loss), ``val_accuracy``
weights            package ``.weights.h5`` (both heads)         L³ ``.weights.h5`` (``L3Net.from_pretrained``)
=================  ===========================================  ===============================================

Both export ``final.weights.h5`` (and numbered checkpoints) that :func:`soundnet_keras.load_network` loads.
The AVC objective ignores the teacher's ``crop_seconds`` and ``loss_lambda``; ``heads`` is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..architecture import architectures
from ..errors import ConfigError, SoundNetError
from ..l3.avc_data import AVC_FORMAT, make_avc_dataset, split_videos
from ..l3.tables import ARCHITECTURES as L3_ARCHITECTURES
from ..l3.tables import is_l3, tables
from ..precision import check_training_precision
from . import OBJECTIVES
from .data import SHARD_FORMAT, crop_steps_for, damaged_shard_error, read_manifest

_FORMATS = {"teacher": SHARD_FORMAT, "avc": AVC_FORMAT}


def _say_shards(objective: str) -> str:
    return {
        "teacher": f"teacher shards ({SHARD_FORMAT}, written by soundnet-teacher)",
        "avc": f"AVC shards ({AVC_FORMAT}, written by python -m soundnet_keras.l3.avc_data)",
    }[objective]


def _shard_manifest(shards: Path, objective: str) -> dict:
    """The manifest of ``shards`` for ``objective``; the other objective's shards are a one-line :class:`ConfigError`
    naming what was expected."""
    try:
        return read_manifest(shards, _FORMATS[objective])
    except ConfigError as error:
        other = next(name for name in OBJECTIVES if name != objective)
        try:
            read_manifest(shards, _FORMATS[other])
        except ConfigError:
            raise error from None
    raise ConfigError(
        f"the {objective} objective trains on {_say_shards(objective)}, but {str(shards)!r} holds "
        f"{_say_shards(other)}: give --objective {other} (and a matching --arch), or other shards"
    )


def adam(config, learning_rate) -> keras.optimizers.Optimizer:
    """The training optimizer of every objective: Adam with ``config``'s β1 and epsilon, at ``learning_rate`` (a
    number or a schedule)."""
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=config.beta_1, epsilon=config.adam_epsilon)


class TeacherObjective:
    """SoundNet student–teacher training (the original's): see the module docstring."""

    name = "teacher"

    def __init__(self) -> None:
        self.dataset = self.validation = self.info = None
        self.held_out: list[str] | None = None

    def check(self, config) -> tuple[dict, int]:
        """``(manifest, crop steps)`` of ``config``'s shards, the architecture checked first."""
        from ..architecture import layer_table

        if config.shuffled_pairs:
            raise ConfigError("shuffled_pairs is the avc objective's chance-level control")
        if is_l3(config.arch):
            raise ConfigError(
                f"the teacher objective trains a SoundNet architecture ({', '.join(map(repr, architectures()))}); "
                f"{config.arch!r} is an L³-Net one, which trains with --objective avc"
            )
        layer_table(config.arch)
        manifest = _shard_manifest(config.shards, self.name)
        return manifest, crop_steps_for(manifest, config.crop_seconds)

    def prepare(self, config, plan, start_epoch: int, say: Callable[[str], None]) -> None:
        """Make the training and validation datasets (the stream skips the ``start_epoch`` intervals done)."""
        from .train import _datasets

        self.dataset, self.info, self.validation, self.held_out = _datasets(config, plan, start_epoch, say)

    def summary(self, config, plan, replicas: int, lr: float) -> str:
        from .train import _run_summary

        return _run_summary(config, self.info, plan.crop_steps, replicas, plan.batch_size, lr)

    def build(self, config, learning_rate, say: Callable[[str], None]):
        """The compiled student (call inside the strategy's scope)."""
        from .train import _say_unnamed, build_student, compile_student

        _say_unnamed(self.info.heads, self.info.categories, say)
        model = build_student(config.arch, self.info.heads, init=config.init)
        compile_student(model, loss_lambda=config.loss_lambda, optimizer=adam(config, learning_rate))
        return model

    def validation_callback(self):
        from .train import _HeldOutKL

        return _HeldOutKL(self.validation) if self.validation is not None else None

    def exporter(self, config, source: str) -> Callable[[object, Path], Path]:
        """``export(model, path)``: the package's weights format (both heads, the teachers' names), else Keras'."""
        from .train import export_weights

        categories = self.info.categories
        return lambda model, path: export_weights(model, config.arch, path, source, categories)

    def final_name(self, model) -> str:
        from .train import both_heads

        return "final.weights.h5" if both_heads(model) else "final_keras.weights.h5"

    def damaged(self, config, exc: Exception) -> SoundNetError:
        """The error for a corrupted record met while training (naming the shard)."""
        error = damaged_shard_error(config.shards, exc, _FORMATS[self.name])
        if config.val_shards is not None and "is damaged" not in str(error):
            error = damaged_shard_error(config.val_shards, exc, _FORMATS[self.name])
        return error


class AVCObjective(TeacherObjective):
    """L³-Net's audio-visual correspondence (AVC) training: see the module docstring."""

    name = "avc"

    def check(self, config) -> tuple[dict, int]:
        if not is_l3(config.arch):
            raise ConfigError(
                f"the avc objective trains an L³-Net architecture ({', '.join(map(repr, L3_ARCHITECTURES))}), got "
                f"{config.arch!r}"
                + (" (a SoundNet one: --objective teacher)" if config.arch in architectures() else "")
            )
        if config.heads is not None:
            raise ConfigError("heads are the teacher objective's (SoundNet's object/scene heads); L³-Net has none")
        return _shard_manifest(config.shards, self.name), 1

    def prepare(self, config, plan, start_epoch: int, say: Callable[[str], None]) -> None:
        size = tables(config.arch).frame_size
        common = {"batch_size": plan.batch_size, "frame_size": size}
        train_videos = None
        if config.val_fraction:
            split = split_videos(config.shards, config.val_fraction, seed=config.seed)
            train_videos, self.held_out = split.train, split.held_out
            self.validation = make_avc_dataset(
                config.shards, videos=split.held_out, training=False, seed=config.seed, **common
            )
            say(f"validation: {len(split.held_out)} held-out videos of {config.shards} (seed {config.seed})")
        elif config.val_shards is not None:
            self.validation = make_avc_dataset(
                _checked_val_shards(config.val_shards), training=False, seed=config.seed, **common
            )
            say(f"validation: the videos of {config.val_shards}")
        dataset = make_avc_dataset(
            config.shards,
            videos=train_videos,
            seed=config.seed,
            shuffle_buffer=config.shuffle_buffer,
            shuffled=config.shuffled_pairs,
            **common,
        )
        self.dataset = dataset.skip(start_epoch * plan.every) if start_epoch else dataset
        self.videos = len(train_videos) if train_videos is not None else _done(plan.manifest)

    def summary(self, config, plan, replicas: int, lr: float) -> str:
        size = tables(config.arch).frame_size
        held = f", {len(self.held_out)} held out" if self.held_out else ""
        return (
            f"{config.arch} (AVC): {self.videos} training videos{held}, {size} x {size} frames and 1-s clips; "
            f"{replicas} replica(s), global batch {plan.batch_size}, lr {lr:g}, precision "
            f"{check_training_precision(config.precision)}"
        )

    def build(self, config, learning_rate, say: Callable[[str], None]):
        """``L3Net(arch)``'s AVC model (``init``: an L³ weights file), compiled (call inside the strategy's
        scope)."""
        from ..l3.model import L3Net
        from .train import synchronize_batchnorm

        net = L3Net.from_pretrained(config.init) if config.init is not None else L3Net(config.arch)
        if net.arch != config.arch:
            raise ConfigError(f"initial weights {config.init!r} are for {net.arch!r}, but arch is {config.arch!r}")
        model = net.avc_model
        synchronize_batchnorm(model)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="avc_loss")
        model.compile(optimizer=adam(config, learning_rate), loss=loss, metrics=["accuracy"])
        return model

    def validation_callback(self):
        return _HeldOutAVC(self.validation) if self.validation is not None else None

    def exporter(self, config, source: str) -> Callable[[object, Path], Path]:
        """``export(model, path)``: an L³ weights file (``L3Net.from_pretrained``, ``load_network``)."""
        from ..l3.weights import L3Weights, get_params, save_l3_weights

        def export(model, path: Path) -> Path:
            return save_l3_weights(path, model, L3Weights(config.arch, get_params(model, config.arch), source))

        return export

    def final_name(self, model) -> str:
        return "final.weights.h5"


def _done(manifest: dict) -> int:
    return sum(1 for video in manifest["videos"].values() if video["status"] == "done")


def _checked_val_shards(folder: Path) -> Path:
    _shard_manifest(folder, "avc")
    return folder


class _HeldOutAVC(keras.callbacks.Callback):
    """Adds ``val_loss`` (mean cross-entropy) and ``val_accuracy`` to each interval's logs: every held-out pair
    (one pass, inference mode, on the model's own variables, as :class:`~.train._HeldOutKL` does)."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.dataset = dataset
        self._batch = None

    def _batch_sums(self):
        model = self.model

        @tf.function(reduce_retracing=True)
        def batch_sums(inputs, labels):
            logits = tf.cast(model(inputs, training=False), tf.float32)
            labels = tf.cast(labels, tf.int32)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            right = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float64)
            return tf.reduce_sum(tf.cast(loss, tf.float64)), tf.reduce_sum(right), tf.size(labels)

        return batch_sums

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        self._batch = self._batch or self._batch_sums()
        totals = np.zeros(3)
        for inputs, labels in self.dataset:
            totals += [float(value) for value in self._batch(inputs, labels)]
        logs["val_loss"] = totals[0] / max(totals[2], 1)
        logs["val_accuracy"] = totals[1] / max(totals[2], 1)


def make_objective(name: str) -> TeacherObjective:
    """The objective called ``name`` (:data:`OBJECTIVES`)."""
    if name == "teacher":
        return TeacherObjective()
    if name == "avc":
        return AVCObjective()
    raise ConfigError(f"unknown training objective {name!r}: expected one of {', '.join(OBJECTIVES)}")


__all__ = ["OBJECTIVES", "AVCObjective", "TeacherObjective", "adam", "make_objective"]
