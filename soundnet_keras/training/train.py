"""Student–teacher training of SoundNet on teacher shards, on one device, all GPUs of a machine, or many machines.

:func:`train` runs the whole procedure of the authors' ``main_train.lua`` with Keras ``fit``:

* **Strategy** (``default`` | ``mirrored`` | ``multiworker``): the model and optimizer are created in
  ``strategy.scope()``. ``multiworker`` is configured by ``TF_CONFIG`` (one process per machine, all started with
  the same arguments); without ``TF_CONFIG`` it runs as a single worker.
* **Batch and learning rate**: ``batch_size`` is the *global* batch (the original: 64), split evenly over the
  replicas (it must be divisible by their number). The loss is the mean over the global batch (Keras divides each
  replica's loss by the number of replicas, and gradients are summed across replicas), so one step on N replicas
  equals one step on one device with the same global batch, and the learning rate needs no change.
  ``scale_lr=True`` applies the linear scaling rule instead (``lr × batch_size / 64``) for users who raise the
  global batch. BatchNorm statistics are synchronised across replicas (global-batch statistics, as on one device).
* **Precision**: ``float32`` (default), ``mixed_float16`` (GPUs; the optimizer gets dynamic loss scaling) or
  ``mixed_bfloat16`` (recent CPUs / TPUs / Ampere+ GPUs). The loss is always computed in float32.
* **Steps, checkpoints and resumption**: training runs ``steps`` optimizer steps; a Keras *epoch* is one checkpoint
  interval of ``checkpoint_every`` steps. At each interval's end a numbered checkpoint is written
  (``checkpoints/step-NNNNNNNN.weights.h5``, the package's weights format when the student has both heads, of any
  sizes, with the teachers' category names: loadable with ``SoundNet.from_pretrained``) and a crash-safe backup of
  weights and optimizer state is written (``backup/epoch-NNNNNNNN.weights.h5`` and ``.json``; see
  :func:`write_backup`). A killed run started again with the same arguments restores the newest intact backup and
  skips the batches already consumed, so (with ``deterministic=True``) it ends with the same weights as an
  uninterrupted run.
* **Logs**: TensorBoard scalars in ``logs/`` and Keras' progress bar.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from ..architecture import HEAD_NAMES, OBJECT_CLASSES, SCENE_CLASSES, check_head_classes, heads, layer_table
from ..errors import ConfigError
from ..files import sha256_file
from ..network import build_network, get_params, set_params
from ..pretrained import resolve
from ..validation import check_positive
from ..weights import WeightsFile, custom_head_classes, generic_names, keras_shapes, load_weights, save_weights
from .data import DatasetInfo, crop_steps_for, damaged_shard_error, make_dataset, read_manifest
from .losses import LOSS_LAMBDA, TeacherKLDivergence, head_weight

STRATEGIES = ("default", "mirrored", "multiworker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
REFERENCE_BATCH = 64
"""The original's batch size, the reference of ``scale_lr``."""
STANDARD_CLASSES = {"objects": OBJECT_CLASSES, "scenes": SCENE_CLASSES}


# ------------------------------------------------------------------------------------------------ strategies
def worker_info() -> tuple[str, int, bool]:
    """(task type, task index, is chief) of this process from ``TF_CONFIG`` (``("worker", 0, True)`` without it)."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return "worker", 0, True
    try:
        config = json.loads(raw)
        task = config.get("task", {})
        kind, index = str(task.get("type", "worker")), int(task.get("index", 0))
        cluster = config.get("cluster", {})
    except (ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON with a 'task' entry: {exc}") from None
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return kind, index, chief


def make_strategy(kind: str = "default", devices: Sequence[str] | None = None):
    """A ``tf.distribute`` strategy: ``default`` (one device), ``mirrored`` (``devices`` or all GPUs, else the
    CPU), ``multiworker`` (``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``)."""
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if kind == "multiworker":
        if devices:
            raise ConfigError("devices cannot be chosen for the multiworker strategy; TF_CONFIG describes the cluster")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {kind!r}: expected one of {', '.join(STRATEGIES)}")


def set_precision(precision: str) -> None:
    """Set Keras' global dtype policy (``float32``, ``mixed_float16`` or ``mixed_bfloat16``)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    keras.mixed_precision.set_global_policy(precision)


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
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True  # global-batch statistics under MirroredStrategy (read at call time)
    outputs = {spec.name: base.get_layer(spec.name).output for spec in heads(arch) if spec.name in head_classes}
    return keras.Model(base.input, outputs, name=f"{arch}_student")


def compile_student(
    model, *, learning_rate: float = 1e-3, beta_1: float = 0.9, loss_lambda: float = LOSS_LAMBDA, optimizer=None
) -> None:
    """Compile with Adam (the original's lr 0.001, β1 0.9; or ``optimizer``) and one :class:`TeacherKLDivergence`
    per head."""
    names = list(model.output.keys()) if isinstance(model.output, dict) else list(model.output_names)
    weight = head_weight(len(names), loss_lambda)
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1),
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


# -------------------------------------------------------------------------------------------------- training
@dataclass
class TrainConfig:
    """Everything :func:`train` needs; the CLI ``soundnet-train`` maps its flags one to one onto these fields."""

    shards: Path
    output_dir: Path
    arch: str = "soundnet8"
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
    precision: str = "float32"
    seed: int = 0
    deterministic: bool = False
    shuffle_buffer: int = 256
    tensorboard: bool | None = None
    """TensorBoard logs in ``output_dir/logs``: True (error when the ``tensorboard`` package is absent), False, or
    None (when it is installed)."""
    verbose: int | str = "auto"


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model: object
    steps_done: int
    history: dict
    weights_path: Path | None
    checkpoints: list[Path]
    learning_rate: float
    replicas: int


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


def run_signature(arch: str, batch_size: int, every: int) -> dict:
    """The arguments a backup is only valid for (they decide the model and which batches an epoch consumed)."""
    return {"arch": arch, "batch_size": int(batch_size), "checkpoint_every": int(every)}


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
        changed = ", ".join(f"{k} {run.get(k)!r} (now {v!r})" for k, v in signature.items() if run.get(k) != v)
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


class _StepCheckpoint:
    """Keras callback factory: numbered weights files at the end of every checkpoint interval (chief only)."""

    @staticmethod
    def create(
        arch: str,
        folder: Path,
        steps_per_epoch: int,
        source: str,
        written: list[Path],
        categories: Mapping[str, Sequence[str]] | None = None,
    ):
        class StepCheckpoint(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                folder.mkdir(parents=True, exist_ok=True)
                step = (epoch + 1) * steps_per_epoch
                path = folder / f"step-{step:08d}.weights.h5"
                written.append(export_weights(self.model, arch, path, source, categories))

        return StepCheckpoint()


class _BackupCallback:
    """Keras callback factory: a crash-safe backup (:func:`write_backup`) at the end of every checkpoint interval."""

    @staticmethod
    def create(folder: Path, signature: Mapping):
        import keras

        class CrashSafeBackup(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                write_backup(self.model, folder, epoch + 1, signature)

        return CrashSafeBackup()


@dataclass(frozen=True)
class _Workspace:
    """Where this process writes: the output folder and its backup folder, and whether it is the chief."""

    output: Path
    backup_dir: Path
    worker: int
    chief: bool


def _checked_settings(config: TrainConfig) -> tuple[int, int, int, int]:
    """``(steps, batch_size, checkpoint_every, crop_steps)`` of ``config``, checked before anything is built."""
    steps = check_positive(config.steps, "steps", integer=True)
    batch_size = check_positive(config.batch_size, "batch_size", integer=True)
    every = check_positive(min(config.checkpoint_every, steps), "checkpoint_every", integer=True)
    if not config.learning_rate > 0:
        raise ConfigError(f"learning_rate must be positive, got {config.learning_rate!r}")
    layer_table(config.arch)
    manifest = read_manifest(config.shards)
    return steps, batch_size, every, crop_steps_for(manifest, config.crop_seconds)


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


def _workspace(output_dir: Path) -> _Workspace:
    """Create ``output_dir``; the chief backs up in ``backup/``, other workers in ``backup/worker-N``."""
    _, worker, chief = worker_info()
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    backup_dir = output / "backup" if chief else output / "backup" / f"worker-{worker}"
    return _Workspace(output, backup_dir, worker, chief)


def _cluster_size() -> int:
    """Number of worker processes (chief included) ``TF_CONFIG`` describes (1 without it)."""
    raw = os.environ.get("TF_CONFIG", "")
    try:
        cluster = json.loads(raw).get("cluster", {}) if raw else {}
        return max(1, sum(len(cluster.get(kind, [])) for kind in ("chief", "worker")))
    except (ValueError, AttributeError, TypeError):
        return 1


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
    if _cluster_size() > 1:
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
        f"global batch {batch_size}, lr {lr:g}, precision {config.precision}"
    )


def _training_callbacks(
    config: TrainConfig,
    workspace: _Workspace,
    every: int,
    source: str,
    written: list[Path],
    signature: Mapping,
    say: Callable[[str], None],
    categories: Mapping[str, Sequence[str]] | None = None,
) -> list:
    """The built-in callbacks: crash-safe backups, numbered checkpoints (with ``categories``, the teachers' names)
    and, when wanted, TensorBoard logs."""
    output = workspace.output
    checkpoint_dir = output / "checkpoints" if workspace.chief else Path(tempfile.mkdtemp(prefix="soundnet-worker-"))
    cbs = [
        _BackupCallback.create(workspace.backup_dir, signature),
        _StepCheckpoint.create(config.arch, checkpoint_dir, every, source, written, categories),
    ]
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
    model,
    config: TrainConfig,
    workspace: _Workspace,
    source: str,
    say: Callable[[str], None],
    categories: Mapping[str, Sequence[str]] | None = None,
) -> Path | None:
    """Write the final weights (chief only) with ``categories`` (the teachers' names) and return their path, or None
    on other workers."""
    if not workspace.chief:
        return None
    name = "final.weights.h5" if both_heads(model) else "final_keras.weights.h5"
    weights_path = export_weights(model, config.arch, workspace.output / name, source, categories)
    say(f"wrote {weights_path}")
    return weights_path


def train(config: TrainConfig, *, callbacks: Sequence = (), strategy=None, log: Callable[[str], None] | None = None):
    """Train a student on ``config.shards`` (see the module docstring); returns a :class:`TrainResult`.

    ``callbacks`` are extra Keras callbacks (run after the built-in ones); ``strategy`` overrides
    ``config.strategy`` with a ready ``tf.distribute`` strategy.
    """
    say = log or (lambda message: None)
    steps, batch_size, every, crop_steps = _checked_settings(config)
    previous_policy = keras.mixed_precision.global_policy()
    set_precision(config.precision)
    try:
        _seed_everything(config)
        strategy = strategy or make_strategy(config.strategy, config.devices)
        replicas = _replicas(strategy, batch_size)
        lr = config.learning_rate * (batch_size / REFERENCE_BATCH if config.scale_lr else 1.0)
        epochs = _epochs(steps, every, say)
        workspace = _workspace(config.output_dir)
        signature = run_signature(config.arch, batch_size, every)
        backup = _resume(workspace, strategy, signature, every, say)
        start_epoch = backup.epoch if backup else 0
        dataset, info = make_dataset(
            config.shards,
            arch=config.arch,
            batch_size=batch_size,
            crop_steps=crop_steps,
            heads=config.heads,
            seed=config.seed,
            shuffle_buffer=config.shuffle_buffer,
            skip_batches=start_epoch * every,
        )
        say(_run_summary(config, info, crop_steps, replicas, batch_size, lr))
        _say_unnamed(info.heads, info.categories, say)
        with strategy.scope():
            model = build_student(config.arch, info.heads, init=config.init)
            compile_student(model, learning_rate=lr, beta_1=config.beta_1, loss_lambda=config.loss_lambda)
            if backup:
                restore_backup(model, backup, workspace.backup_dir)
        source = f"soundnet-train on {config.shards}"
        written: list[Path] = []
        cbs = _training_callbacks(config, workspace, every, source, written, signature, say, info.categories)
        cbs.extend(callbacks)
        try:
            history = model.fit(
                dataset,
                epochs=epochs,
                initial_epoch=start_epoch,
                steps_per_epoch=every,
                callbacks=cbs,
                verbose=config.verbose,
                shuffle=False,
            )
        except tf.errors.DataLossError as exc:  # a shard record fails its CRC: name the shard
            raise damaged_shard_error(config.shards, exc) from None
        weights_path = _export_final(model, config, workspace, source, say, info.categories)
        return TrainResult(model, epochs * every, dict(history.history), weights_path, written, lr, replicas)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
