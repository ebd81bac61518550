"""Student–teacher training of SoundNet on teacher shards (and AVC training of L³-Net on AVC shards), on one
device, all GPUs of a machine, or many machines.

:func:`train` runs the whole procedure of the authors' ``main_train.lua`` with Keras ``fit``. It is the
objective-independent loop: ``config.objective`` (``teacher``, the default, or ``avc``) picks an objective object of
:mod:`.objectives`, which decides the shards, the model, its loss, the batches, the held-out validation and the
exported weights; everything below is shared (for ``avc``, read "AVC pairs" for "crops" and the held-out AVC loss
and ``val_accuracy`` for the held-out KL):

* **Strategy** (``default`` | ``data_parallel`` | ``mirrored`` | ``multiworker``; see
  :mod:`~soundnet_keras.training.strategies` for each backend): the model and optimizer are created in
  ``strategy.scope()``. ``data_parallel`` is ``MirroredStrategy`` under TensorFlow and
  ``keras.distribution.DataParallel`` under JAX. ``multiworker`` is configured by ``TF_CONFIG`` (one process per
  machine, all started with the same arguments and the same ``output_dir``, a shared folder or one per machine);
  without ``TF_CONFIG`` it runs as a single worker. The chief alone writes ``checkpoints/`` and the final weights;
  every worker writes its own backups (the chief in ``backup/``, worker N in ``backup/worker-N``), and a restarted
  cluster resumes from the newest backup every worker holds (:func:`agreed_epoch`).
* **Batch and learning rate**: ``batch_size`` is the *global* batch (the original: 64), split evenly over the
  replicas (it must be divisible by their number). The loss is the mean over the global batch (Keras divides each
  replica's loss by the number of replicas, and gradients are summed across replicas), so one step on N replicas
  equals one step on one device with the same global batch, and the learning rate needs no change.
  ``scale_lr=True`` applies the linear scaling rule instead (``lr × batch_size / 64``) for users who raise the
  global batch. BatchNorm statistics are those of the global batch, as on one device (synchronized BatchNorm under
  TensorFlow; one program over all devices under JAX).
* **Precision**: ``default`` (float32 with the backend's own settings: TF32 on recent GPUs), ``highest`` (float32,
  TF32 off), ``mixed_bfloat16`` (recent CPUs / TPUs / Ampere+ GPUs) or ``mixed_float16`` (GPUs; the optimizer gets
  dynamic loss scaling); ``float32`` is read as ``default``. The loss is always computed in float32.
* **Steps, checkpoints and resumption**: training runs ``steps`` optimizer steps; a Keras *epoch* is one checkpoint
  interval of ``checkpoint_every`` steps. At each interval's end a numbered checkpoint is written
  (``checkpoints/step-NNNNNNNN.weights.h5``, the package's weights format when the student has both heads, of any
  sizes, with the teachers' category names: loadable with ``SoundNet.from_pretrained``) and a crash-safe backup of
  weights and optimizer state is written (``backup/epoch-NNNNNNNN.weights.h5`` and ``.json``; see
  :func:`write_backup`). A killed run started again with
  the same arguments restores the newest intact backup and skips the batches already consumed, so (with
  ``deterministic=True``) it ends with the same weights as an uninterrupted run.
* **Data order**: the training stream is a function of ``seed`` alone (stateless per-pass shard order, a record
  shuffle that does not reshuffle per iterator), so 1 and N replicas see the same global batches, split across the
  replicas: with one seed, their step-1 losses are equal to float tolerance. Across workers too: the stream is
  sharded by data (each worker runs it whole and keeps its slice of every global batch; see
  :func:`~.data.make_dataset`).
* **Optimizer**: Adam with Torch's epsilon 1e-8 (the original's ``optim.adam``; Keras' default is 1e-7).
  ``lr_schedule`` ``constant`` or ``cosine`` (to 0 at the last step), after ``warmup_steps`` of linear warmup
  (:class:`WarmupSchedule`, driven by the optimizer's step count, which a backup restores).
* **Validation**: ``val_fraction`` holds out that fraction of the shards' videos (chosen by ``seed``), or
  ``val_shards`` names another shard folder; the held-out KL (first crop of each video, the training loss's units)
  is ``val_loss`` in the logs, History and TensorBoard after every checkpoint interval. ``best_only`` writes a
  numbered checkpoint only when ``val_loss`` improves (``checkpoints/best.json`` records it, and a resumed run reads
  it); ``early_stopping`` stops after that many intervals without improvement (its patience counter starts afresh
  when a run is resumed). ``keep_checkpoints`` keeps the newest N numbered checkpoints.
* **Backups** every ``backup_every`` steps, a multiple of ``checkpoint_every``: a run resumes at the start of a
  checkpoint interval (it skips whole intervals of batches), so backups between interval ends are not offered.
* **Logs**: TensorBoard scalars in ``logs/``, Keras' progress bar, and one line per interval (loss, val_loss,
  learning rate, clips/s of the training steps alone).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..architecture import HEAD_NAMES, OBJECT_CLASSES, SCENE_CLASSES, check_head_classes, heads
from ..errors import ConfigError
from ..files import sha256_file, write_text_atomic
from ..network import build_network, get_params, set_params
from ..precision import DEFAULT_TRAINING_PRECISION, check_training_precision, precision_scope, training_policy
from ..pretrained import resolve
from ..validation import check_positive
from ..weights import WeightsFile, custom_head_classes, generic_names, keras_shapes, load_weights, save_weights
from .data import (
    DatasetInfo,
    held_out_videos,
    make_dataset,
)
from .losses import LOSS_LAMBDA, TeacherKLDivergence, head_weight
from .strategies import cluster_size, fit_scope, make_strategy, worker_info

REFERENCE_BATCH = 64
"""The original's batch size, the reference of ``scale_lr``."""
STANDARD_CLASSES = {"objects": OBJECT_CLASSES, "scenes": SCENE_CLASSES}


def set_precision(precision: str) -> str:
    """Set Keras' global dtype policy for training under ``precision`` (see
    :data:`~soundnet_keras.precision.TRAINING_PRECISIONS`) and return the policy's name."""
    policy = training_policy(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


# ------------------------------------------------------------------------------------------------ the student
def load_init_params(init: str | os.PathLike, arch: str) -> dict:
    """Keras-layout parameters from a preset name (``"soundnet8"``) or a ``.weights.h5`` / ``.t7`` / ``.npy`` file."""
    weights = load_weights(resolve(init, log=None))
    if weights.architecture != arch:
        raise ConfigError(f"initial weights {str(init)!r} are for {weights.architecture!r}, but arch is {arch!r}")
    return weights.params


def build_student(
    arch: str = "soundnet8",
    head_classes: Mapping[str, int] | None = None,
    *,
    init: str | os.PathLike | None = None,
    synchronized_batchnorm: bool = True,
):
    """The SoundNet model to train: ``arch`` with one output per head in ``head_classes`` (name -> classes).

    Every head is the architecture's own layer (same name, kernel, stride and padding), with as many classes as its
    teacher has (objects 1000, scenes 401 in the original; e.g. 365 for a Places365 teacher): see
    :func:`~soundnet_keras.network.build_network`. ``init`` loads pretrained weights (preset name or file) into the
    trunk and every head of the same size; other heads start from the authors' random initialisation.
    Call inside ``strategy.scope()`` for distributed training.
    """
    head_classes = dict(head_classes or STANDARD_CLASSES)
    unknown = [h for h in head_classes if h not in HEAD_NAMES]
    if unknown or not head_classes:
        raise ConfigError(f"heads must be among {HEAD_NAMES}, got {list(head_classes)}")
    sizes = custom_head_classes(arch, check_head_classes(arch, head_classes))
    base = build_network(arch, head_classes=sizes)
    if init is not None:
        params = load_init_params(init, arch)
        fresh = get_params(base)
        for spec in heads(arch):  # a head of another size than the file's keeps its random initialisation
            if {var: tuple(value.shape) for var, value in params.get(spec.name, {}).items()} != {
                var: value.shape for var, value in fresh[spec.name].items()
            }:
                params = {**params, spec.name: fresh[spec.name]}
        set_params(base, arch, params, head_classes=sizes)
    if synchronized_batchnorm:
        synchronize_batchnorm(base)
    outputs = {spec.name: base.get_layer(spec.name).output for spec in heads(arch) if spec.name in head_classes}
    return keras.Model(base.input, outputs, name=f"{arch}_student")


def synchronize_batchnorm(model) -> None:
    """Make ``model``'s BatchNormalization layers use global-batch statistics under ``MirroredStrategy`` (read at
    call time; TensorFlow only: JAX and PyTorch have no such option)."""
    if keras.backend.backend() == "tensorflow":
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True


ADAM_EPSILON = 1e-8
"""Adam's epsilon: Torch's ``optim.adam`` default, which the original used (Keras' default is 1e-7)."""


def compile_student(
    model,
    *,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    beta_1: float = 0.9,
    loss_lambda: float = LOSS_LAMBDA,
    epsilon: float = ADAM_EPSILON,
    optimizer=None,
) -> None:
    """Compile with Adam (the original's lr 0.001, β1 0.9 and Torch's epsilon 1e-8; or ``optimizer``) and one
    :class:`TeacherKLDivergence` per head. ``learning_rate`` may be a schedule (:class:`WarmupSchedule`)."""
    names = list(model.output.keys()) if isinstance(model.output, dict) else list(model.output_names)
    weight = head_weight(len(names), loss_lambda)
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, epsilon=epsilon),
        loss={name: TeacherKLDivergence(weight, name=f"{name}_kl") for name in names},
    )


def standard_heads(model) -> bool:
    """Whether ``model`` has both heads at the architecture's own sizes (exportable as a package weights file)."""
    return set(model.output.keys()) == set(HEAD_NAMES) and all(
        model.output[h].shape[-1] == STANDARD_CLASSES[h] for h in HEAD_NAMES
    )


def both_heads(model) -> bool:
    """Whether ``model`` has both heads, of any sizes (exportable as a package weights file)."""
    return set(model.output.keys()) == set(HEAD_NAMES)


def export_weights(
    model, arch: str, path: str | os.PathLike, source: str, categories: Mapping[str, Sequence[str]] | None = None
) -> Path:
    """Write ``model``'s parameters: the package's ``.weights.h5`` format when it has both heads (their sizes and
    ``categories``, the teachers' names, recorded; ``SoundNet.from_pretrained`` loads it), else Keras weights."""
    path = Path(path)
    if both_heads(model):
        sizes = custom_head_classes(arch, {h: int(model.output[h].shape[-1]) for h in HEAD_NAMES})
        expected = keras_shapes(arch, sizes)
        params = {k: v for k, v in get_params(model).items() if k in expected}
        names = {h: list(v) for h, v in (categories or {}).items() if h in HEAD_NAMES}
        return save_weights(path, WeightsFile(arch, params, source=source, categories=names, head_classes=sizes))
    model.save_weights(str(path))
    return path


# ------------------------------------------------------------------------------------------- learning rate
LR_SCHEDULES = ("constant", "cosine")


@keras.saving.register_keras_serializable(package="soundnet_keras")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to ``peak`` over ``warmup_steps`` steps, then ``constant`` or ``cosine`` decay to 0 at
    ``total_steps``.

    Step ``s`` (0-based, the optimizer's iteration count, restored with a backup) gets ``peak × (s + 1) / warmup``
    during the warmup (the first step is not wasted at lr 0), then ``peak`` (constant) or
    ``peak × ½ (1 + cos(π (s − warmup) / (total − warmup)))`` (cosine).
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, kind: str = "constant") -> None:
        if kind not in LR_SCHEDULES:
            raise ConfigError(f"unknown learning-rate schedule {kind!r}: expected one of {', '.join(LR_SCHEDULES)}")
        if not 0 <= int(warmup_steps) < int(total_steps):
            raise ConfigError(
                f"warmup_steps must be at least 0 and fewer than the {int(total_steps)} training steps, "
                f"got {warmup_steps!r}"
            )
        self.peak, self.total_steps, self.warmup_steps, self.kind = (
            float(peak),
            int(total_steps),
            int(warmup_steps),
            kind,
        )

    def __call__(self, step):
        ops = keras.ops  # the optimizer's step is a tensor of the active backend
        step = ops.cast(step, "float32")
        peak = ops.convert_to_tensor(self.peak, "float32")
        if self.kind == "cosine":
            progress = (step - self.warmup_steps) / float(self.total_steps - self.warmup_steps)
            after = peak * 0.5 * (1.0 + ops.cos(math.pi * ops.clip(progress, 0.0, 1.0)))
        else:
            after = peak * ops.ones_like(step)
        if not self.warmup_steps:
            return after
        return ops.where(step < self.warmup_steps, peak * (step + 1.0) / self.warmup_steps, after)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "kind": self.kind,
        }


# -------------------------------------------------------------------------------------------------- training
@dataclass
class TrainConfig:
    """Everything :func:`train` needs; the CLI ``soundnet-train`` maps its flags one to one onto these fields."""

    shards: Path
    output_dir: Path
    arch: str = "soundnet8"
    objective: str = "teacher"
    """``teacher`` (a SoundNet student on teacher shards: KL to the teachers) or ``avc`` (an L³-Net ``arch`` on AVC
    shards: audio-visual correspondence, cross-entropy; see :mod:`.objectives`)."""
    init: str | None = None
    steps: int = 1000
    batch_size: int = REFERENCE_BATCH
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    scale_lr: bool = False
    loss_lambda: float = LOSS_LAMBDA
    crop_seconds: float = 20.0
    heads: Sequence[str] | None = None
    checkpoint_every: int = 500
    strategy: str = "default"
    devices: Sequence[str] | None = None
    precision: str = DEFAULT_TRAINING_PRECISION
    """``highest`` | ``default`` | ``mixed_bfloat16`` | ``mixed_float16`` (see
    :data:`~soundnet_keras.precision.TRAINING_PRECISIONS`; ``float32``, the earlier name, means ``default``)."""
    seed: int = 0
    deterministic: bool = False
    shuffle_buffer: int = 256
    tensorboard: bool | None = None
    """TensorBoard logs in ``output_dir/logs``: True (error when the ``tensorboard`` package is absent), False, or
    None (when it is installed)."""
    verbose: int | str = "auto"
    adam_epsilon: float = ADAM_EPSILON
    val_fraction: float = 0.0
    """Fraction of the shards' videos held out for validation (:func:`~.data.held_out_videos`, chosen by ``seed``);
    0: none (unless ``val_shards``)."""
    val_shards: Path | None = None
    """A separate shard folder to validate on (instead of ``val_fraction``)."""
    lr_schedule: str = "constant"
    """``constant`` or ``cosine`` (to 0 at the last step); both after ``warmup_steps`` of linear warmup."""
    warmup_steps: int = 0
    keep_checkpoints: int = 0
    """Numbered checkpoints kept: the newest N (older ones deleted); 0 keeps all."""
    best_only: bool = False
    """Write a numbered checkpoint only when ``val_loss`` is the best so far (needs validation)."""
    early_stopping: int = 0
    """Stop when ``val_loss`` has not improved for this many checkpoint intervals (0: never; needs validation)."""
    backup_every: int | None = None
    """Steps between crash-safe backups: a multiple of ``checkpoint_every`` (None: every checkpoint interval)."""
    shuffled_pairs: bool = False
    """AVC only: the chance-level control, training labels shuffled within each batch (no longer tied to whether a
    pair corresponds; ``make_avc_dataset(shuffled=True)``); validation keeps the true labels."""


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model: object
    steps_done: int
    history: dict
    weights_path: Path | None
    """The final weights file (None on workers other than the chief)."""
    checkpoints: list[Path]
    """The numbered checkpoints written and kept (none on workers other than the chief)."""
    learning_rate: float
    replicas: int
    held_out: list[str] | None = None
    """The training shards' videos held out for validation (``val_fraction``), or None."""


# ---------------------------------------------------------------------------------------------------- backups
BACKUP_FORMAT = "soundnet_keras.training_backup/1"
BACKUP_GENERATIONS = 2
"""Complete backups kept in a backup folder: the latest and the previous one, used when the latest is damaged."""
PARTIAL_PREFIX = ".partial-"
"""Start of the temporary name a backup is written under before it is renamed into place."""
_GENERATION = re.compile(r"^epoch-(\d{8})\.(weights\.h5|json)$")
_LEGACY_WEIGHTS, _LEGACY_METADATA = "latest.weights.h5", "training_metadata.json"
"""The files of ``keras.callbacks.BackupAndRestore``, which earlier versions used (still resumed from)."""


@dataclass(frozen=True)
class Backup:
    """An intact backup: the epoch (checkpoint intervals done) a run resumes at from it, and its weights file."""

    epoch: int
    weights: Path


@dataclass
class BackupScan:
    """What a backup folder holds: the intact backups (newest first), the damaged ones (file: what is wrong), and
    weights files without metadata (a kill before the backup was complete: they never counted as backups)."""

    usable: list[Backup]
    damaged: list[str]
    incomplete: list[Path]


def backup_files(folder: Path, epoch: int) -> tuple[Path, Path]:
    """``(weights, metadata)`` paths of the backup taken after ``epoch`` checkpoint intervals."""
    stem = f"epoch-{epoch:08d}"
    return folder / f"{stem}.weights.h5", folder / f"{stem}.json"


def run_signature(
    arch: str, batch_size: int, every: int, val_fraction: float = 0.0, objective: str = "teacher"
) -> dict:
    """The arguments a backup is only valid for (they decide the model, its loss and which batches an epoch
    consumed; a validation fraction removes videos from the training stream). The teacher objective's signature has
    no ``objective`` key (as before there were objectives), every other one has it."""
    signature = {"arch": arch, "batch_size": int(batch_size), "checkpoint_every": int(every)}
    if val_fraction:
        signature["val_fraction"] = float(val_fraction)
    if objective != "teacher":
        signature["objective"] = objective
    return signature


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a folder: a rename in it) to disk; folders that cannot be synced are left alone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _durable_replace(tmp: Path, target: Path) -> None:
    """Flush ``tmp``, rename it over ``target`` and flush the folder: after a crash, the old file or the new one."""
    _fsync(tmp)
    os.replace(tmp, target)
    _fsync(target.parent)


def write_backup(model, folder: Path, epoch: int, signature: Mapping) -> Path:
    """Back up ``model``'s weights and optimizer state after ``epoch`` intervals, crash-safely; returns the weights.

    The weights go to a temporary file in ``folder`` (``.partial-*``), flushed to disk and renamed to
    ``epoch-NNNNNNNN.weights.h5``; then ``epoch-NNNNNNNN.json`` (epoch, size and sha256 of the weights, the run's
    :func:`run_signature`) is written the same way: it marks the backup complete. Only then are older backups
    deleted, all but the previous one, so a kill at any moment leaves at least one complete backup (once one was
    written), and a damaged latest backup has an intact previous one to fall back on.
    """
    folder.mkdir(parents=True, exist_ok=True)
    weights, metadata = backup_files(folder, epoch)
    fd, name = tempfile.mkstemp(prefix=PARTIAL_PREFIX, suffix=".weights.h5", dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        model.save_weights(str(tmp), overwrite=True)
        record = {
            "format": BACKUP_FORMAT,
            "epoch": int(epoch),
            "weights": weights.name,
            "size": tmp.stat().st_size,
            "sha256": sha256_file(tmp),
            "run": dict(signature),
        }
        _durable_replace(tmp, weights)
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
        _durable_replace(tmp, metadata)
    finally:
        tmp.unlink(missing_ok=True)
    _prune_backups(folder, epoch)
    return weights


def _generations(folder: Path) -> dict[int, list[Path]]:
    """The backup files in ``folder`` by epoch."""
    found: dict[int, list[Path]] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = _GENERATION.match(path.name)
            if match and path.is_file():
                found.setdefault(int(match.group(1)), []).append(path)
    return found


def _prune_backups(folder: Path, latest: int) -> None:
    """Delete every backup but ``latest`` and the newest complete one before it (newer ones belong to a timeline a
    resume abandoned), and the files of ``BackupAndRestore``."""
    generations = _generations(folder)
    previous = [e for e in generations if e < latest and backup_files(folder, e)[1].is_file()]
    keep = {latest, *sorted(previous)[-(BACKUP_GENERATIONS - 1) :]}
    for epoch, paths in generations.items():
        if epoch not in keep:
            for path in paths:
                path.unlink(missing_ok=True)
    for name in (_LEGACY_WEIGHTS, _LEGACY_METADATA):
        (folder / name).unlink(missing_ok=True)


def _check_backup(folder: Path, epoch: int, signature: Mapping | None) -> str | None:
    """What is wrong with the backup of ``epoch`` in ``folder`` (None: intact); a :class:`ConfigError` when it is
    intact but was written by a run with other arguments (``signature``)."""
    weights, metadata = backup_files(folder, epoch)
    try:
        record = json.loads(metadata.read_text(encoding="utf-8"))
        if record["format"] != BACKUP_FORMAT or int(record["epoch"]) != epoch:
            return f"its metadata {metadata.name} is not a backup record for epoch {epoch}"
        size, digest, run = int(record["size"]), str(record["sha256"]), record["run"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return f"its metadata {metadata.name} cannot be read ({type(exc).__name__}: {exc})"
    if not weights.is_file():
        return "its weights file is missing"
    if weights.stat().st_size != size:
        return f"truncated or overwritten: {weights.stat().st_size} bytes, its metadata says {size}"
    if sha256_file(weights) != digest:
        return "corrupted: its sha256 differs from the one in its metadata"
    if signature is not None and dict(run) != dict(signature):
        keys = [*signature, *(k for k in run if k not in signature)]
        changed = ", ".join(
            f"{k} {run.get(k)!r} (now {signature.get(k)!r})" for k in keys if run.get(k) != signature.get(k)
        )
        raise ConfigError(
            f"the training backup {str(weights)!r} was written by a run with other arguments: {changed}; start it "
            f"again with the same arguments, or delete {str(folder)!r} to start over from step 0"
        )
    return None


def _check_legacy(folder: Path) -> Backup | str:
    """The backup ``keras.callbacks.BackupAndRestore`` left in ``folder``, or what is wrong with it."""
    import h5py

    try:
        epoch = int(json.loads((folder / _LEGACY_METADATA).read_text(encoding="utf-8"))["epoch"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return f"its metadata {_LEGACY_METADATA} cannot be read ({type(exc).__name__}: {exc})"
    try:
        with h5py.File(folder / _LEGACY_WEIGHTS, "r"):
            pass
    except OSError as exc:
        return f"it cannot be opened as HDF5 ({' '.join(str(exc).split())})"
    return Backup(epoch, folder / _LEGACY_WEIGHTS)


def scan_backups(folder: Path, signature: Mapping | None = None) -> BackupScan:
    """Check every backup in ``folder`` (metadata, size and sha256 of the weights): intact ones newest first, and
    the damaged ones named with what is wrong. Raises :class:`ConfigError` for an intact backup of a run with
    other arguments than ``signature``."""
    usable: list[Backup] = []
    damaged: list[str] = []
    incomplete: list[Path] = []
    generations = _generations(folder)
    for epoch in sorted(generations, reverse=True):
        weights, metadata = backup_files(folder, epoch)
        if not metadata.is_file():
            incomplete.append(weights)
            continue
        problem = _check_backup(folder, epoch, signature)
        if problem is None:
            usable.append(Backup(epoch, backup_files(folder, epoch)[0]))
        else:
            damaged.append(f"{str(backup_files(folder, epoch)[0])!r}: {problem}")
    if not generations and (folder / _LEGACY_WEIGHTS).is_file():
        legacy = _check_legacy(folder)
        if isinstance(legacy, Backup):
            usable.append(legacy)
        else:
            damaged.append(f"{str(folder / _LEGACY_WEIGHTS)!r}: {legacy}")
    return BackupScan(usable, damaged, incomplete)


def _no_usable_backup(folder: Path, damaged: Sequence[str]) -> ConfigError:
    return ConfigError(
        f"no usable training backup in {str(folder)!r}: {'; '.join(damaged)}. Delete that folder (or move it away) "
        "to start this run over from step 0"
    )


def backed_up_epoch(backup_dir: Path) -> int:
    """The epoch (checkpoint interval) the backups in ``backup_dir`` resume at: the newest intact one's (0 if there
    are none); a :class:`ConfigError` naming the folder when there are backups but none is intact."""
    scan = scan_backups(Path(backup_dir))
    if scan.usable:
        return scan.usable[0].epoch
    if scan.damaged:
        raise _no_usable_backup(Path(backup_dir), scan.damaged)
    return 0


def restore_backup(model, backup: Backup, folder: Path) -> None:
    """Load ``backup``'s weights and optimizer state into ``model`` (compiled; call inside the strategy's scope)."""
    try:
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(str(backup.weights))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot restore the training backup {str(backup.weights)!r} into this model "
            f"({' '.join(str(exc).split())[:300]}); start the run again with the same arguments, or delete "
            f"{str(folder)!r} to start over from step 0"
        ) from None


def _tensorboard_wanted(setting: bool | None, say: Callable[[str], None]) -> bool:
    installed = importlib.util.find_spec("tensorboard") is not None
    if setting and not installed:
        raise ConfigError(
            "TensorBoard logs were asked for, but the 'tensorboard' package is not installed (pip install tensorboard)"
        )
    if setting is None and not installed:
        say("TensorBoard logs off: the 'tensorboard' package is not installed (pip install tensorboard)")
    return installed if setting is None else setting


_CHECKPOINT = re.compile(r"^step-(\d{8})\.weights\.h5$")
BEST_RECORD = "best.json"
"""In the checkpoint folder with ``best_only``: the step and ``val_loss`` of the best checkpoint (read on resume)."""


def prune_checkpoints(folder: Path, keep: int) -> list[Path]:
    """Delete the numbered checkpoints (``step-NNNNNNNN.weights.h5``) of ``folder`` but the newest ``keep`` (0:
    keep all); returns the deleted files. Other files (final weights, ``best.json``) are never touched."""
    if keep <= 0 or not folder.is_dir():
        return []
    numbered = sorted((int(m.group(1)), path) for path in folder.iterdir() if (m := _CHECKPOINT.match(path.name)))
    doomed = [path for _, path in numbered[:-keep]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def _best_so_far(folder: Path) -> float:
    """The best ``val_loss`` a ``best_only`` run in ``folder`` has checkpointed (inf when none or unreadable)."""
    try:
        return float(json.loads((folder / BEST_RECORD).read_text(encoding="utf-8"))["val_loss"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return math.inf


class _StepCheckpoint(keras.callbacks.Callback):
    """Numbered weights files at the end of checkpoint intervals: every one, or (``best_only``) those whose
    ``val_loss`` is the best so far; only the newest ``keep`` are kept (0: all)."""

    def __init__(
        self,
        export: Callable[[object, Path], Path],
        folder: Path,
        steps_per_epoch: int,
        written: list[Path],
        *,
        keep: int = 0,
        best_only: bool = False,
        resumed: bool = False,
    ) -> None:
        super().__init__()
        self.export, self.folder, self.every, self.written = export, folder, steps_per_epoch, written
        self.keep, self.best_only = keep, best_only
        self.best = _best_so_far(folder) if best_only and resumed else math.inf  # a fresh run ignores old records

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.every
        if self.best_only:
            value = (logs or {}).get("val_loss")
            if value is None or not float(value) < self.best:
                return
            self.best = float(value)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"step-{step:08d}.weights.h5"
        path = self.export(self.model, path)
        self.written.append(path)
        if self.best_only:
            record = json.dumps({"step": step, "val_loss": self.best, "weights": path.name})
            write_text_atomic(self.folder / BEST_RECORD, record)
        for gone in prune_checkpoints(self.folder, self.keep):
            if gone in self.written:
                self.written.remove(gone)


class _CrashSafeBackup(keras.callbacks.Callback):
    """A crash-safe backup (:func:`write_backup`) after every ``stride``-th checkpoint interval and the last one."""

    def __init__(self, folder: Path, signature: Mapping, *, stride: int = 1, epochs: int | None = None) -> None:
        super().__init__()
        self.folder, self.signature, self.stride, self.epochs = folder, signature, stride, epochs

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.stride == 0 or done == self.epochs or self.model.stop_training:
            write_backup(self.model, self.folder, done, self.signature)


class _HeldOutKL(keras.callbacks.Callback):
    """Adds ``val_loss`` to each interval's logs: the compiled loss (KL × λ, summed over the heads) averaged over
    every held-out example, first crop of each video.

    Computed here, on the model's own variables in one pass, rather than by ``fit(validation_data=...)``: Keras
    distributes validation batches over the replicas, and a last batch smaller than the number of replicas leaves
    a replica an empty batch, which BatchNormalization's inference rejects; dropping it would drop videos.
    """

    def __init__(self, dataset) -> None:
        super().__init__()
        self.dataset = dataset
        self._batch = None

    def _batch_sum(self):
        model, losses = self.model, self.model.loss

        def batch_sum(audio, targets):
            logits = model.predict_on_batch(audio)  # inference mode, on the active backend
            per_example = sum(
                np.asarray(keras.ops.convert_to_numpy(losses[head].call(targets[head], logits[head])), np.float64)
                for head in targets
            )
            return float(np.sum(per_example)), int(np.shape(audio)[0])

        if keras.backend.backend() != "tensorflow":
            return lambda audio, targets: batch_sum(
                np.asarray(audio), {head: np.asarray(value) for head, value in targets.items()}
            )

        @tf.function(reduce_retracing=True)
        def tf_batch_sum(audio, targets):
            logits = model(audio, training=False)
            per_example = tf.add_n([losses[head].call(targets[head], logits[head]) for head in targets])
            return tf.reduce_sum(tf.cast(per_example, tf.float64)), tf.shape(audio)[0]

        return tf_batch_sum

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        self._batch = self._batch or self._batch_sum()
        total, count = 0.0, 0
        for audio, targets in self.dataset:
            value, size = self._batch(audio, targets)
            total, count = total + float(value), count + int(size)
        logs["val_loss"] = total / max(count, 1)


class _Progress(keras.callbacks.Callback):
    """Adds ``clips_per_second`` (training steps only: validation and file writing excluded) and ``learning_rate``
    to each interval's logs (so History and TensorBoard have them) and says one line per interval."""

    def __init__(self, every: int, batch_size: int, total_steps: int, say: Callable[[str], None]) -> None:
        super().__init__()
        self.every, self.batch_size, self.total_steps, self.say = every, batch_size, total_steps, say
        self.started = self.trained = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.trained = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        seconds = max(self.trained - self.started, 1e-9)
        logs["clips_per_second"] = self.every * self.batch_size / seconds
        logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        shown = ", ".join(f"{k} {float(logs[k]):.4g}" for k in ("loss", "val_loss", "learning_rate") if k in logs)
        self.say(f"step {(epoch + 1) * self.every}/{self.total_steps}: {shown}, {logs['clips_per_second']:.1f} clips/s")


@dataclass(frozen=True)
class _Workspace:
    """Where this process writes: the output folder and its backup folder, and whether it is the chief."""

    output: Path
    backup_dir: Path
    worker: int
    chief: bool


@dataclass(frozen=True)
class _Plan:
    """The checked numbers of a run: steps, global batch, checkpoint interval, crop, intervals and backup stride."""

    steps: int
    batch_size: int
    every: int
    crop_steps: int
    epochs: int
    backup_stride: int
    manifest: dict


def _checked_settings(config: TrainConfig, say: Callable[[str], None], objective=None) -> _Plan:
    """The :class:`_Plan` of ``config``, every option checked before anything is built (``objective``: the
    :mod:`.objectives` object of ``config.objective``, which checks the architecture and reads the shards)."""
    from .objectives import make_objective

    objective = objective or make_objective(config.objective)
    steps = check_positive(config.steps, "steps", integer=True)
    batch_size = check_positive(config.batch_size, "batch_size", integer=True)
    every = check_positive(min(config.checkpoint_every, steps), "checkpoint_every", integer=True)
    if not config.learning_rate > 0:
        raise ConfigError(f"learning_rate must be positive, got {config.learning_rate!r}")
    if not config.adam_epsilon > 0:
        raise ConfigError(f"adam_epsilon must be positive, got {config.adam_epsilon!r}")
    for name in ("keep_checkpoints", "early_stopping", "warmup_steps"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}")
    if config.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(
            f"unknown learning-rate schedule {config.lr_schedule!r}: expected one of {', '.join(LR_SCHEDULES)}"
        )
    if config.val_fraction and config.val_shards is not None:
        raise ConfigError("give a validation fraction or validation shards, not both")
    if not 0 <= config.val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {config.val_fraction!r}")
    validating = bool(config.val_fraction) or config.val_shards is not None
    for name in ("best_only", "early_stopping"):
        if getattr(config, name) and not validating:
            raise ConfigError(f"{name} watches val_loss: it needs validation (val_fraction or val_shards)")
    manifest, crop_steps = objective.check(config)
    epochs = _epochs(steps, every, say)
    stride = 1
    if config.backup_every is not None:
        backup_every = check_positive(config.backup_every, "backup_every", integer=True)
        if backup_every % every:
            raise ConfigError(
                f"backup_every must be a multiple of checkpoint_every ({every}): a run resumes at the start of a "
                f"checkpoint interval; got {backup_every}"
            )
        stride = backup_every // every
    if config.warmup_steps >= epochs * every:
        raise ConfigError(f"warmup_steps must be fewer than the {epochs * every} steps, got {config.warmup_steps}")
    return _Plan(steps, batch_size, every, crop_steps, epochs, stride, manifest)


def _seed_everything(config: TrainConfig) -> None:
    """Seed Python, NumPy and TensorFlow; with ``config.deterministic``, make TensorFlow's ops deterministic too."""
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def _replicas(strategy, batch_size: int) -> int:
    """The strategy's number of replicas, which must divide the global batch."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(
            f"the global batch size {batch_size} must be divisible by the number of replicas ({replicas})"
        )
    return replicas


def _epochs(steps: int, every: int, say: Callable[[str], None]) -> int:
    """Checkpoint intervals (Keras epochs) to run: ``steps`` rounded up to whole intervals (said when rounded)."""
    epochs = math.ceil(steps / every)
    if epochs * every != steps:
        say(f"steps rounded up from {steps} to {epochs * every}, a whole number of checkpoint intervals")
    return epochs


def _workspace(output_dir: Path, strategy) -> _Workspace:
    """Create ``output_dir``; the chief of ``strategy``'s cluster backs up in ``backup/``, other workers in
    ``backup/worker-N``."""
    _, worker, chief = worker_info(strategy)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    backup_dir = output / "backup" if chief else output / "backup" / f"worker-{worker}"
    return _Workspace(output, backup_dir, worker, chief)


def agreed_epoch(strategy, usable: Sequence[int], unusable: bool) -> int:
    """The epoch every worker of ``strategy`` resumes at: the newest one all of them hold an intact backup of (0:
    from scratch). ``unusable``: this worker has backups but none intact. Gathered across workers (a collective
    every worker must enter); a :class:`ConfigError` on every worker when one of them has no intact backup."""
    row = sorted(set(usable), reverse=True)[:BACKUP_GENERATIONS]
    row = [-1] * BACKUP_GENERATIONS if unusable else row + [0] * (BACKUP_GENERATIONS - len(row))
    values = strategy.experimental_distribute_values_from_function(lambda _: tf.constant([row], tf.int64))
    rows = [set(r) | {0} for r in strategy.gather(values, axis=0).numpy().tolist()]
    if any(-1 in r for r in rows):
        raise ConfigError("a worker of this run has training backups but none is intact (its log names them)")
    return max(set.intersection(*rows))


def _resume(
    workspace: _Workspace, strategy, signature: Mapping, every: int, say: Callable[[str], None]
) -> Backup | None:
    """The backup to resume from (None: start at step 0), with damaged backups and leftovers of a kill said."""
    folder = workspace.backup_dir
    if folder.is_dir():
        for partial in folder.glob(PARTIAL_PREFIX + "*"):
            say(f"removed {partial}, a backup that a killed run did not finish writing")
            partial.unlink(missing_ok=True)
    scan = scan_backups(folder, signature)
    for weights in scan.incomplete:
        say(f"ignored {weights}, a backup without its metadata file (the run was killed while writing it)")
    for problem in scan.damaged:
        say(f"skipped the damaged training backup {problem}")
    epochs = [b.epoch for b in scan.usable]
    unusable = bool(scan.damaged and not scan.usable)
    epoch = max(epochs, default=0)
    if cluster_size(strategy) > 1 and hasattr(strategy, "gather"):  # tf.distribute across workers
        try:
            epoch = agreed_epoch(strategy, epochs, unusable)
        except ConfigError:
            if not unusable:
                raise
    if unusable:
        raise _no_usable_backup(folder, scan.damaged)
    if not epoch:
        return None
    backup = next(b for b in scan.usable if b.epoch == epoch)
    older = " (the newest backup every worker holds)" if epoch != epochs[0] else ""
    say(f"resuming from the backup {backup.weights} at step {epoch * every}{older}")
    return backup


def _run_summary(
    config: TrainConfig, info: DatasetInfo, crop_steps: int, replicas: int, batch_size: int, lr: float
) -> str:
    """The one-line description of the run said before the model is built."""
    return (
        f"{config.arch}: {info.usable_examples} of {info.total_examples} videos usable, crops of {crop_steps} x "
        f"{info.step_seconds:g} s -> {info.frames} frames per head, heads {info.heads}; {replicas} replica(s), "
        f"global batch {batch_size}, lr {lr:g}, precision {check_training_precision(config.precision)}"
    )


def _training_callbacks(
    config: TrainConfig,
    workspace: _Workspace,
    plan: _Plan,
    validation,
    resumed: bool,
    export: Callable[[object, Path], Path],
    written: list[Path],
    signature: Mapping,
    say: Callable[[str], None],
) -> list:
    """The built-in callbacks, in order: the objective's ``validation`` callback (held-out KL, or AVC loss and
    accuracy; None: no validation), progress (clips/s, learning rate), early stopping, crash-safe backups, numbered
    checkpoints (the chief's alone, written by ``export(model, path)``) and, when wanted, TensorBoard logs.

    Other workers write no numbered checkpoint: writing weights reads only this worker's copy of the (mirrored)
    variables, no collective the chief would wait for, and the chief's checkpoints are the same weights."""
    output, every = workspace.output, plan.every
    cbs: list = [validation] if validation is not None else []
    cbs.append(_Progress(every, plan.batch_size, plan.epochs * every, say))
    if config.early_stopping:  # before the backup, which is then written at the interval the run stops after
        cbs.append(keras.callbacks.EarlyStopping("val_loss", patience=config.early_stopping, verbose=0))
    cbs.append(_CrashSafeBackup(workspace.backup_dir, signature, stride=plan.backup_stride, epochs=plan.epochs))
    if workspace.chief:
        cbs.append(
            _StepCheckpoint(
                export,
                output / "checkpoints",
                every,
                written,
                keep=config.keep_checkpoints,
                best_only=config.best_only,
                resumed=resumed,
            )
        )
    if _tensorboard_wanted(config.tensorboard, say):
        logs = output / "logs" if workspace.chief else output / "logs" / f"worker-{workspace.worker}"
        cbs.append(keras.callbacks.TensorBoard(str(logs), update_freq=max(1, min(every, 50))))
    return cbs


def _say_unnamed(head_classes: Mapping[str, int], categories: Mapping[str, Sequence[str]], say) -> None:
    """Say which heads' teachers gave no category names, and what the weights call their classes instead."""
    for head, classes in head_classes.items():
        if head not in categories:
            generic = generic_names(head, classes)
            say(
                f"note: the {head} teacher's category names are unknown (shards made without them; give a model "
                f"file teacher labels=FILE): the weights name its {classes} classes {generic[0]} ... {generic[-1]}"
            )


def _export_final(
    model, name: str, export: Callable[[object, Path], Path], workspace: _Workspace, say: Callable[[str], None]
) -> Path | None:
    """Write the final weights (chief only) as ``name`` with ``export(model, path)`` and return their path, or None
    on other workers."""
    if not workspace.chief:
        return None
    weights_path = export(model, workspace.output / name)
    say(f"wrote {weights_path}")
    return weights_path


def _datasets(config: TrainConfig, plan: _Plan, start_epoch: int, say: Callable[[str], None]):
    """``(training dataset, its DatasetInfo, validation dataset or None, held-out videos or None)``."""
    held_out = None
    if config.val_fraction:
        held_out = held_out_videos(plan.manifest, config.val_fraction, seed=config.seed, crop_steps=plan.crop_steps)
    common = {"arch": config.arch, "batch_size": plan.batch_size, "crop_steps": plan.crop_steps, "heads": config.heads}
    dataset, info = make_dataset(
        config.shards,
        seed=config.seed,
        shuffle_buffer=config.shuffle_buffer,
        skip_batches=start_epoch * plan.every,
        exclude_videos=held_out or (),
        **common,
    )
    validation = None
    if held_out:
        validation, val_info = make_dataset(config.shards, training=False, only_videos=held_out, **common)
        say(f"validation: {val_info.usable_examples} held-out videos of {config.shards} (seed {config.seed})")
    elif config.val_shards is not None:
        validation, val_info = make_dataset(config.val_shards, training=False, **common)
        if val_info.heads != info.heads:
            raise ConfigError(
                f"validation shards {str(config.val_shards)!r} have heads {val_info.heads}, the training shards "
                f"{info.heads}"
            )
        say(f"validation: {val_info.usable_examples} videos of {config.val_shards}")
    return dataset, info, validation, held_out


def train(config: TrainConfig, *, callbacks: Sequence = (), strategy=None, log: Callable[[str], None] | None = None):
    """Train on ``config.shards`` with ``config.objective`` (see the module docstring and :mod:`.objectives`);
    returns a :class:`TrainResult`.

    ``callbacks`` are extra Keras callbacks (run after the built-in ones); ``strategy`` overrides
    ``config.strategy`` with a ready one (a ``tf.distribute`` strategy, or what
    :func:`~soundnet_keras.training.strategies.make_strategy` returns).
    """
    from .objectives import make_objective

    say = log or (lambda message: None)
    objective = make_objective(config.objective)
    plan = _checked_settings(config, say, objective)
    precision = check_training_precision(config.precision)
    previous_policy = keras.mixed_precision.global_policy()
    set_precision(precision)
    try:
        _seed_everything(config)
        strategy = strategy or make_strategy(config.strategy, config.devices)
        replicas = _replicas(strategy, plan.batch_size)
        lr = config.learning_rate * (plan.batch_size / REFERENCE_BATCH if config.scale_lr else 1.0)
        every, epochs = plan.every, plan.epochs
        workspace = _workspace(config.output_dir, strategy)
        signature = run_signature(config.arch, plan.batch_size, every, config.val_fraction, objective.name)
        if config.shuffled_pairs:
            signature["shuffled_pairs"] = True
        backup = _resume(workspace, strategy, signature, every, say)
        start_epoch = backup.epoch if backup else 0
        objective.prepare(config, plan, start_epoch, say)
        say(objective.summary(config, plan, replicas, lr))
        schedule = WarmupSchedule(lr, epochs * every, config.warmup_steps, config.lr_schedule)
        with strategy.scope():
            model = objective.build(
                config, schedule if config.lr_schedule != "constant" or config.warmup_steps else lr, say
            )
            if backup:
                restore_backup(model, backup, workspace.backup_dir)
        export = objective.exporter(config, f"soundnet-train on {config.shards}")
        written: list[Path] = []
        validation = objective.validation_callback()
        cbs = _training_callbacks(
            config, workspace, plan, validation, backup is not None, export, written, signature, say
        )
        cbs.extend(callbacks)
        try:
            with fit_scope(strategy), precision_scope("highest" if precision == "highest" else "default"):
                history = model.fit(
                    objective.dataset,
                    epochs=epochs,
                    initial_epoch=start_epoch,
                    steps_per_epoch=every,
                    callbacks=cbs,
                    verbose=config.verbose,
                    shuffle=False,
                )
        except tf.errors.DataLossError as exc:  # a shard record fails its CRC: name the shard
            raise objective.damaged(config, exc) from None
        weights_path = _export_final(model, objective.final_name(model), export, workspace, say)
        done = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        return TrainResult(model, done, dict(history.history), weights_path, written, lr, replicas, objective.held_out)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
