"""Teacher shards (TFRecord) and the ``tf.data`` pipeline that feeds student–teacher training.

Shard layout: a folder with ``manifest.json`` and ``shard-NNNNN.tfrecord`` files. Each record is one video: its
audio track (22,050 Hz mono, 16-bit PCM, exactly ``num_steps × step_samples`` samples) and, per head, the teacher's
class distribution for each of its ``num_steps`` windows of ``step_seconds`` (the original: one per 5 s). The
manifest names the heads, their class counts, teachers and (when the teacher has them) category names, the shards
with their record counts, and every video processed (done or failed), which is what makes
:mod:`~soundnet_keras.training.teacher` resumable.

Time alignment. Training crops ``crop_steps`` whole teacher windows starting on a window boundary (the original:
20-s crops = 4 windows). The student gives ``T = output_length(arch, "objects", crop_samples)`` frames; output frame
``i`` is trained against teacher window ``floor((i + 0.5) · crop_steps / T)`` of the crop. When ``T == crop_steps``
this is the original's one-to-one pairing (frame ``t`` ↔ window ``t``): SoundNet-8 *and* SoundNet-5 both give 4
frames on a 20-s crop, so both train exactly as the authors did; other crop lengths are spread proportionally.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..architecture import SAMPLE_RATE, TRAINING_CROP_SECONDS, geometry, layer_table, output_length
from ..errors import ConfigError, SoundNetError
from ..files import write_text_atomic
from ..validation import check_positive

SHARD_FORMAT = "soundnet_keras.teacher_shards/1"
MANIFEST_NAME = "manifest.json"
DEFAULT_STEP_SECONDS = 5.0
DEFAULT_CROP_SECONDS = TRAINING_CROP_SECONDS


class ShardError(SoundNetError):
    """A teacher shard file is damaged: missing, truncated, a corrupted record, or other records than its manifest's."""


# ------------------------------------------------------------------------------------------------------ manifest
def step_samples_for(step_seconds: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Samples per window of ``step_seconds`` at ``sample_rate`` (SoundNet's 22,050 Hz unless told); the window
    must be a whole number of samples."""
    if not step_seconds > 0:
        raise ConfigError(f"step_seconds must be positive, got {step_seconds!r}")
    samples = step_seconds * sample_rate
    if abs(samples - round(samples)) > 1e-6:
        raise ConfigError(
            f"step_seconds={step_seconds} is not a whole number of samples at {sample_rate} Hz ({samples:.3f})"
        )
    return round(samples)


def manifest_head(head: str, classes: int, teacher: str, categories: Sequence[str] | None = None) -> dict:
    """A manifest's entry for one head: ``{"classes", "teacher"}`` and, when known, ``"categories"`` (the teacher's
    class names, one per class, which the trained weights carry on)."""
    entry: dict[str, object] = {"classes": int(classes), "teacher": str(teacher)}
    if categories is not None:
        names = list(categories)
        if len(names) != int(classes) or not all(isinstance(name, str) and name for name in names):
            raise ConfigError(
                f"{head} teacher {teacher!r}: expected {int(classes)} non-empty category names (one per class), "
                f"received {len(names)}"
            )
        entry["categories"] = names
    return entry


def new_manifest(step_seconds: float, heads: Mapping[str, Mapping[str, object]]) -> dict:
    """An empty manifest for shards with ``heads`` (name -> {"classes": int, "teacher": str[, "categories":
    [str]]})."""
    if not heads:
        raise ConfigError("at least one teacher head is needed (objects and/or scenes)")
    return {
        "format": SHARD_FORMAT,
        "sample_rate": SAMPLE_RATE,
        "step_seconds": float(step_seconds),
        "step_samples": step_samples_for(step_seconds),
        "heads": {
            name: manifest_head(name, int(h["classes"]), str(h["teacher"]), h.get("categories"))  # type: ignore[arg-type]
            for name, h in heads.items()
        },
        "shards": [],
        "videos": {},
    }


def manifest_categories(manifest: Mapping, heads: Iterable[str], directory: str | os.PathLike) -> dict[str, list[str]]:
    """Category names the manifest records for ``heads`` (those whose teacher had names; checked)."""
    found = {}
    for head in heads:
        entry = manifest["heads"][head]
        if "categories" in entry:
            try:
                found[head] = manifest_head(head, entry["classes"], entry["teacher"], entry["categories"])["categories"]
            except (ConfigError, TypeError) as exc:
                raise ConfigError(f"{str(Path(directory) / MANIFEST_NAME)!r}: bad category names: {exc}") from None
    return found


def read_manifest(directory: str | os.PathLike, expected_format: str = SHARD_FORMAT) -> dict:
    """Read and check a shard folder's ``manifest.json`` (of ``expected_format``: teacher shards unless told)."""
    path = Path(directory) / MANIFEST_NAME
    if not Path(directory).is_dir():
        raise ConfigError(f"shard folder {str(directory)!r} does not exist")
    if not path.is_file():
        raise ConfigError(f"{str(directory)!r} is not a shard folder ({expected_format}): it has no {MANIFEST_NAME}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{str(path)!r}: cannot read the manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != expected_format:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ConfigError(f"{str(path)!r}: expected format {expected_format!r}, found {found!r}")
    return manifest


def write_manifest(directory: str | os.PathLike, manifest: Mapping) -> None:
    """Write ``manifest.json`` atomically (a crash leaves the previous one intact)."""
    write_text_atomic(Path(directory) / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True))


# -------------------------------------------------------------------------------------------------- records
def video_features(video: str, audio: np.ndarray, step_samples: int) -> tuple[dict, int]:
    """The ``tf.train.Feature`` s every shard record starts with (``video`` name, ``num_steps``, ``audio`` as
    16-bit PCM of exactly ``num_steps × step_samples`` samples) and ``num_steps``."""
    import tensorflow as tf  # heavy (TensorFlow): training.teacher (soundnet-teacher) imports this module

    audio = np.asarray(audio, np.float32)
    num_steps = audio.shape[0] // step_samples
    if audio.ndim != 1 or num_steps < 1 or audio.shape[0] != num_steps * step_samples:
        raise ConfigError(
            f"{video}: audio must be a whole number of {step_samples}-sample windows, got shape {audio.shape}"
        )
    pcm = np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype("<i2")
    feature = {
        "video": tf.train.Feature(bytes_list=tf.train.BytesList(value=[video.encode()])),
        "num_steps": tf.train.Feature(int64_list=tf.train.Int64List(value=[num_steps])),
        "audio": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pcm.tobytes()])),
    }
    return feature, num_steps


def encode_record(video: str, audio: np.ndarray, teachers: Mapping[str, np.ndarray], step_samples: int) -> bytes:
    """Serialise one video as a ``tf.train.Example``: int16 audio, per-head float32 (steps, classes) teachers."""
    import tensorflow as tf  # heavy (TensorFlow): training.teacher (soundnet-teacher) imports this module

    feature, num_steps = video_features(video, audio, step_samples)
    for head, probs in teachers.items():
        probs = np.asarray(probs, "<f4")
        if probs.ndim != 2 or probs.shape[0] != num_steps:
            raise ConfigError(f"{video}: teacher {head!r} must be ({num_steps}, classes), got shape {probs.shape}")
        feature[head] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[probs.tobytes()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class ShardWriter:
    """Write records to ``shard-NNNNN.tfrecord`` through a temporary file, renamed into place on :meth:`close`."""

    def __init__(self, directory: str | os.PathLike, index: int) -> None:
        import tensorflow as tf  # heavy (TensorFlow): training.teacher (soundnet-teacher) imports this module

        self.name = f"shard-{index:05d}.tfrecord"
        self.path = Path(directory) / self.name
        self._tmp = self.path.with_name(self.name + ".partial")
        self._writer = tf.io.TFRecordWriter(str(self._tmp))
        self.videos: list[tuple[str, int]] = []

    def write(self, video: str, record: bytes, num_steps: int) -> None:
        self._writer.write(record)
        self.videos.append((video, num_steps))

    def close(self) -> None:
        self._writer.close()
        os.replace(self._tmp, self.path)

    def abandon(self) -> None:
        self._writer.close()
        self._tmp.unlink(missing_ok=True)


def add_shard(manifest: dict, shard: ShardWriter) -> None:
    """Record a closed shard and its videos (status ``done``) in ``manifest``."""
    manifest["shards"].append({"file": shard.name, "examples": len(shard.videos)})
    for video, steps in shard.videos:
        manifest["videos"][video] = {"status": "done", "shard": shard.name, "steps": int(steps)}


def next_shard_index(manifest: Mapping) -> int:
    """Index for a new shard file after the ones the manifest lists."""
    indices = [int(s["file"].split("-")[1].split(".")[0]) for s in manifest["shards"]]
    return max(indices, default=-1) + 1


# ------------------------------------------------------------------------------------------- damaged shards
_RECORD_HEADER = 12
"""A TFRecord record: uint64 length, uint32 masked CRC-32C of the length, the data, uint32 masked CRC-32C of it."""
_CRC32C_TABLE: list[int] = []


def _masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C (Castagnoli) of ``data``: pure Python, meant for the 8-byte length fields."""
    if not _CRC32C_TABLE:
        for byte in range(256):
            crc = byte
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
            _CRC32C_TABLE.append(crc)
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def check_shard(path: str | os.PathLike, examples: int) -> None:
    """Walk the record headers of the TFRecord file ``path`` (seeks, the data is not read): a :class:`ShardError`
    naming the file when it is missing, truncated, has a corrupted record header, or holds other than ``examples``
    records. A corrupted record *body* shows only when it is read (see :func:`damaged_shard_error`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        handle = open(path, "rb")  # noqa: SIM115 -- closed below; the OSError of opening is mapped
    except OSError as exc:
        raise ShardError(
            f"shard {str(path)!r}, listed in the manifest, cannot be read: {exc.strerror or exc}"
        ) from None
    offset = count = 0
    with handle:
        while offset < size:
            header = handle.read(_RECORD_HEADER)
            if len(header) < _RECORD_HEADER:
                raise ShardError(
                    f"shard {str(path)!r}: truncated record at offset {offset} (the file ends in its header)"
                )
            length, length_crc = struct.unpack("<QI", header)
            if _masked_crc32c(header[:8]) != length_crc:
                raise ShardError(f"shard {str(path)!r}: corrupted record at offset {offset} (length CRC mismatch)")
            end = offset + _RECORD_HEADER + length + 4
            if end > size:
                raise ShardError(
                    f"shard {str(path)!r}: truncated record at offset {offset} (it needs {end - offset} bytes, the "
                    f"file ends {size - offset} bytes after its start)"
                )
            handle.seek(end)
            offset, count = end, count + 1
    if count != examples:
        raise ShardError(f"shard {str(path)!r} holds {count} records, but the manifest lists {examples}")


def _data_loss_reason(exc: Exception) -> str:
    """What TensorFlow's ``DataLossError`` says is wrong, without its op and device noise."""
    message = getattr(exc, "message", None) or str(exc)
    found = re.search(r"(truncated|corrupted) record at (\d+)", message)
    if found is None:
        return " ".join(message.split())[:300]
    kind, offset = found.groups()
    return f"{kind} record at offset {offset}" + (" (CRC mismatch)" if kind == "corrupted" else "")


def damaged_shard_error(
    shard_dir: str | os.PathLike, exc: Exception, expected_format: str = SHARD_FORMAT
) -> ShardError:
    """The :class:`ShardError` for a ``tf.errors.DataLossError`` met while reading the shards of ``shard_dir`` (a
    manifest of ``expected_format``): each shard is read alone (CRCs checked by TensorFlow) to find and name the
    damaged one."""
    import tensorflow as tf  # heavy (TensorFlow): training.teacher (soundnet-teacher) imports this module

    for entry in read_manifest(shard_dir, expected_format)["shards"]:
        if not entry["examples"]:
            continue
        path = Path(shard_dir) / entry["file"]
        try:
            tf.data.TFRecordDataset(str(path)).reduce(np.int64(0), lambda n, _: n + 1)
        except tf.errors.DataLossError as found:
            return ShardError(f"shard {str(path)!r} is damaged: {_data_loss_reason(found)}")
    return ShardError(f"reading the shards in {str(shard_dir)!r} failed: {_data_loss_reason(exc)}")


# ---------------------------------------------------------------------------------------------- alignment
def crop_alignment(arch: str, crop_steps: int, step_samples: int) -> np.ndarray:
    """Teacher window (within a crop) that each student output frame is trained against (see module docstring)."""
    layer_table(arch)
    crop_samples = crop_steps * step_samples
    frames = output_length(arch, "objects", crop_samples)
    if frames < 1:
        need = geometry(arch, "objects").min_samples
        raise ConfigError(
            f"a crop of {crop_steps} teacher windows ({crop_samples} samples) is too short for {arch}: its heads "
            f"need at least {need} samples ({need / SAMPLE_RATE:.2f} s); use more crop steps"
        )
    return np.floor((np.arange(frames) + 0.5) * crop_steps / frames).astype(np.int64)


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`make_dataset` built: shapes, heads and how many records are long enough for a crop."""

    heads: dict[str, int]
    crop_steps: int
    crop_samples: int
    frames: int
    alignment: np.ndarray
    usable_examples: int
    total_examples: int
    step_seconds: float
    categories: dict[str, list[str]] = field(default_factory=dict)
    """Category names of the heads whose teacher had names (see :func:`manifest_head`)."""


def crop_steps_for(manifest: Mapping, crop_seconds: float) -> int:
    """Number of whole teacher windows in ``crop_seconds`` (the original: 20 s / 5 s = 4)."""
    steps = crop_seconds / manifest["step_seconds"]
    if steps < 1 or abs(steps - round(steps)) > 1e-6:
        raise ConfigError(
            f"crop of {crop_seconds} s must be a positive whole number of {manifest['step_seconds']} s teacher windows"
        )
    return round(steps)


@dataclass(frozen=True)
class _VideoFilter:
    """Which videos a dataset reads: only ``names`` (``only``) or all but ``names``."""

    names: frozenset[str]
    only: bool

    def keeps(self, video: str) -> bool:
        return (video in self.names) == self.only

    def predicate(self) -> Callable:
        """A TensorFlow function of a video name (a scalar string tensor): whether the filter keeps it."""
        import tensorflow as tf  # heavy (TensorFlow): training.teacher (soundnet-teacher) imports this module

        # the names as sorted 63-bit keyed hashes: a record is looked up in O(log n) with plain tensors (no lookup
        # table resource, which tf.distribute's dataset rewriting may not clone); a collision is ~n²/2⁶³ unlikely
        keys = tf.sort(_name_hashes(tf.constant(sorted(self.names), tf.string, shape=[len(self.names)])))
        padded = tf.concat([keys, tf.constant([-1], tf.int64)], 0)  # hashes are >= 0: -1 matches nothing

        def kept(video):
            key = _name_hashes(tf.reshape(video, [1]))
            listed = tf.reduce_all(tf.gather(padded, tf.searchsorted(keys, key)) == key)
            return listed if self.only else tf.logical_not(listed)

        return kept


def _video_filter(manifest: Mapping, exclude: Collection[str], only: Collection[str] | None) -> _VideoFilter | None:
    """The :class:`_VideoFilter` of ``make_dataset``'s ``exclude_videos`` / ``only_videos`` (None: every video)."""
    if only is not None and exclude:
        raise ConfigError("give exclude_videos or only_videos, not both")
    if only is not None:
        return _VideoFilter(frozenset(only), True)
    return _VideoFilter(frozenset(exclude), False) if exclude else None


def held_out_videos(manifest: Mapping, fraction: float, *, seed: int, crop_steps: int) -> list[str]:
    """The videos held out for validation: ``round(fraction × n)`` (at least 1) of the ``n`` videos long enough for
    a crop, drawn by a NumPy generator seeded with ``seed`` from their sorted names, so the split depends only on
    the manifest, the fraction and the seed (not on the shard order, the replicas or the machine)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"the validation fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    usable = sorted(
        name for name, v in manifest["videos"].items() if v["status"] == "done" and v["steps"] >= crop_steps
    )
    count = max(1, round(fraction * len(usable)))
    if count >= len(usable):
        raise ConfigError(
            f"a validation fraction of {fraction:g} holds out {count} of the {len(usable)} videos long enough for a "
            "crop, leaving none to train on; use a smaller fraction or separate validation shards"
        )
    order = np.random.default_rng(seed).permutation(len(usable))
    return sorted(usable[i] for i in order[:count])


def make_dataset(
    shard_dir: str | os.PathLike,
    *,
    arch: str,
    batch_size: int,
    crop_steps: int | None = None,
    heads: Sequence[str] | None = None,
    seed: int = 0,
    shuffle_buffer: int = 256,
    training: bool = True,
    skip_batches: int = 0,
    cycle_length: int = 4,
    exclude_videos: Collection[str] = (),
    only_videos: Collection[str] | None = None,
):
    """The training (or evaluation) ``tf.data.Dataset`` of (audio crops, {head: aligned teacher}) batches.

    Training: shard files are shuffled and read in parallel (``interleave``), repeated forever, records shuffled
    in a ``shuffle_buffer``; each record is cropped at a random window boundary with a stateless RNG seeded by
    ``(seed, record position)``, so the whole stream is a deterministic function of ``seed``. ``skip_batches``
    drops the first batches before any decoding (used to resume an interrupted run exactly). Evaluation
    (``training=False``): one pass, in order, first crop of each record. Records shorter than the crop are
    skipped. ``exclude_videos`` / ``only_videos`` leave out / keep only the records of those videos (the training
    and validation parts of :func:`held_out_videos`). Returns ``(dataset, DatasetInfo)``.

    Under ``MultiWorkerMirroredStrategy`` the dataset is sharded by data (``AutoShardPolicy.DATA``): each worker
    keeps its slice of every global batch, so N workers train on the batches of one device.

    Every shard's record headers are checked first (:func:`check_shard`): a missing or truncated shard is a
    :class:`ShardError` naming it. A record whose data is corrupted raises ``tf.errors.DataLossError`` when it is
    read; :func:`damaged_shard_error` turns that into a :class:`ShardError` naming the shard.
    """
    import tensorflow as tf  # heavy (TensorFlow): training.teacher (soundnet-teacher) imports this module

    manifest = read_manifest(shard_dir)
    batch_size = check_positive(batch_size, "batch_size", integer=True)
    step_samples = int(manifest["step_samples"])
    crop_steps = crop_steps or crop_steps_for(manifest, DEFAULT_CROP_SECONDS)
    head_classes = _selected_heads(manifest, heads, shard_dir)
    alignment = crop_alignment(arch, crop_steps, step_samples)
    read = [s for s in manifest["shards"] if s["examples"] > 0]
    for entry in read:
        check_shard(Path(shard_dir) / entry["file"], int(entry["examples"]))
    files = [str(Path(shard_dir) / s["file"]) for s in read]
    chosen = _video_filter(manifest, exclude_videos, only_videos)
    info = _dataset_info(manifest, shard_dir, head_classes, crop_steps, step_samples, alignment, chosen)
    long_enough, decode = _record_functions(info, step_samples, seed=seed, training=training, chosen=chosen)
    ds = _record_stream(
        files, long_enough, training=training, seed=seed, shuffle_buffer=shuffle_buffer, cycle_length=cycle_length
    )
    ds = ds.enumerate()
    if skip_batches:
        ds = ds.skip(skip_batches * batch_size)
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_deterministic_options()), info


def _selected_heads(manifest: Mapping, heads: Sequence[str] | None, shard_dir: str | os.PathLike) -> dict[str, int]:
    """Class count per head to train (``heads``, in that order; all the shards' heads when None)."""
    head_classes = {name: int(h["classes"]) for name, h in manifest["heads"].items()}
    if heads is None:
        return head_classes
    missing = [h for h in heads if h not in head_classes]
    if missing:
        raise ConfigError(f"shards in {str(shard_dir)!r} have no teacher for {missing}; they have {list(head_classes)}")
    return {h: head_classes[h] for h in heads}


def _dataset_info(
    manifest: Mapping,
    shard_dir: str | os.PathLike,
    head_classes: dict[str, int],
    crop_steps: int,
    step_samples: int,
    alignment: np.ndarray,
    chosen: _VideoFilter | None = None,
) -> DatasetInfo:
    """The :class:`DatasetInfo` of a crop setting; an error when no video is long enough for one crop."""
    videos = [v for name, v in manifest["videos"].items() if chosen is None or chosen.keeps(name)]
    total = sum(1 for v in videos if v["status"] == "done")
    usable = sum(1 for v in videos if v["status"] == "done" and v["steps"] >= crop_steps)
    info = DatasetInfo(
        head_classes,
        crop_steps,
        crop_steps * step_samples,
        len(alignment),
        alignment,
        usable,
        total,
        float(manifest["step_seconds"]),
        manifest_categories(manifest, head_classes, shard_dir),
    )
    if usable == 0:
        raise ConfigError(
            f"no video in {str(shard_dir)!r} is long enough for a crop of {crop_steps} teacher windows "
            f"({crop_steps * manifest['step_seconds']} s); {total} videos are there"
        )
    return info


def _record_functions(
    info: DatasetInfo, step_samples: int, *, seed: int, training: bool, chosen: _VideoFilter | None = None
) -> tuple[Callable, Callable]:
    """``(long_enough(record), decode(index, record))``: the filter (long enough for a crop, and a video ``chosen``)
    and the crop decoder of the record stream."""
    import tensorflow as tf  # heavy (TensorFlow): training.teacher (soundnet-teacher) imports this module

    scalar = {"num_steps": tf.io.FixedLenFeature([], tf.int64)}
    if chosen is not None:
        scalar["video"] = tf.io.FixedLenFeature([], tf.string)
        kept = chosen.predicate()
    full = {**scalar, "audio": tf.io.FixedLenFeature([], tf.string)}
    full.update({h: tf.io.FixedLenFeature([], tf.string) for h in info.heads})
    align = tf.constant(info.alignment)
    crop_steps, crop_samples = info.crop_steps, info.crop_samples

    def long_enough(record):
        ex = tf.io.parse_single_example(record, scalar)
        ok = ex["num_steps"] >= crop_steps
        return ok if chosen is None else tf.logical_and(ok, kept(ex["video"]))

    def decode(index, record):
        ex = tf.io.parse_single_example(record, full)
        start = _crop_start(ex["num_steps"], index, crop_steps, seed=seed, training=training)
        pcm = tf.io.decode_raw(ex["audio"], tf.int16, little_endian=True)
        audio = tf.cast(pcm[start * step_samples : start * step_samples + crop_samples], tf.float32) / 32768.0
        audio = tf.ensure_shape(audio, [crop_samples])
        targets = {}
        for head, classes in info.heads.items():
            probs = tf.reshape(tf.io.decode_raw(ex[head], tf.float32, little_endian=True), [-1, classes])
            window = probs[start : start + crop_steps]
            targets[head] = tf.ensure_shape(tf.gather(window, align), [len(info.alignment), classes])
        return audio, targets

    return long_enough, decode


def _name_hashes(names):
    """A keyed 63-bit hash of each video name (``tf.strings.to_hash_bucket_strong``), to find names in a sorted set."""
    import tensorflow as tf  # heavy (TensorFlow): training.teacher (soundnet-teacher) imports this module

    return tf.strings.to_hash_bucket_strong(names, 2**63 - 1, key=[0x50554E44, 0x534F554E])


def _crop_start(num_steps, index, crop_steps: int, *, seed: int, training: bool):
    """First teacher window of a record's crop: random (stateless, from ``(seed, index)``) in training, else 0."""
    import tensorflow as tf  # heavy (TensorFlow): training.teacher (soundnet-teacher) imports this module

    if not training:
        return tf.constant(0, tf.int64)
    return tf.random.stateless_uniform(
        [],
        seed=tf.stack([tf.constant(seed, tf.int64), index]),
        minval=0,
        maxval=num_steps - crop_steps + 1,
        dtype=tf.int64,
    )


_FOREVER = 2**62
"""Passes over the shard files in training: endless in practice."""


def _record_stream(
    files: list[str], long_enough: Callable, *, training: bool, seed: int, shuffle_buffer: int, cycle_length: int
):
    """The records of ``files`` long enough for a crop: shuffled, interleaved and repeated forever in training,
    one pass in order otherwise."""
    import tensorflow as tf  # heavy (TensorFlow): training.teacher (soundnet-teacher) imports this module

    if not training:
        return tf.data.TFRecordDataset(files).filter(long_enough)
    names = tf.constant(files)

    def pass_over_files(repetition):
        # the file order of each pass over the shards is a stateless function of (seed, pass): every iterator of
        # this dataset (Keras and tf.distribute make their own) sees the same stream, whatever the replicas
        keys = tf.random.stateless_uniform([len(files)], seed=tf.stack([tf.constant(seed, tf.int64), repetition]))
        return tf.data.Dataset.from_tensor_slices(tf.gather(names, tf.argsort(keys)))

    ds = tf.data.Dataset.range(_FOREVER).flat_map(pass_over_files)
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=max(1, min(cycle_length, len(files))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    # one infinite pass: reshuffle_each_iteration=False makes a new iterator repeat the same order (True would
    # draw a new order for each iterator, so a distributed run would see other batches than a single device)
    return ds.filter(long_enough).shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=False)


def _deterministic_options():
    """``tf.data.Options`` of the pipeline: deterministic order, and sharding across workers by data (``DATA``).

    With ``DATA``, every worker of a ``MultiWorkerMirroredStrategy`` runs the whole stream and keeps its own slice
    of each global batch (worker i the i-th of N equal parts), so N workers train on exactly the global batches of
    one device. ``FILE`` would give each worker its own shard files: other batches for each number of workers.
    (``AUTO`` tries ``FILE``, which fails on this pipeline's ``range`` source, and falls back to ``DATA``; naming
    ``DATA`` makes that a promise.) The cost: each worker reads and decodes every record.
    """
    import tensorflow as tf  # heavy (TensorFlow): training.teacher (soundnet-teacher) imports this module

    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


# ------------------------------------------------------------------------------------------- synthetic data
SYNTHETIC_FREQUENCIES = (150.0, 400.0, 1100.0, 3000.0, 6000.0)


def synthetic_teacher(label: int, classes: int) -> np.ndarray:
    """The synthetic task's teacher distribution for ``label``: 0.8 on it, 0.2 on the next class, zeros elsewhere."""
    probs = np.zeros(classes, np.float32)
    probs[label % classes] += 0.8
    probs[(label + 1) % classes] += 0.2
    return probs


def write_synthetic_shards(
    directory: str | os.PathLike,
    *,
    num_videos: int = 32,
    steps_per_video: Iterable[int] | int = 3,
    step_seconds: float = 1.0,
    classes: Mapping[str, int] | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    videos_per_shard: int = 8,
    seed: int = 0,
) -> Path:
    """Write a shard folder for a task whose teacher is a known function of the signal (tests, benchmarks).

    Video ``i`` is a noisy tone at one of :data:`SYNTHETIC_FREQUENCIES` (``label = i mod len``); every window's
    teacher is :func:`synthetic_teacher` of the label (objects) and of ``label`` again for scenes (with its own
    class count), so a student that hears the pitch can match the teacher exactly. ``categories`` (head -> names)
    are recorded in the manifest as a teacher's names would be. Returns the folder.
    """
    classes = dict(classes or {"objects": 5, "scenes": 3})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    step_samples = step_samples_for(step_seconds)
    categories = dict(categories or {})
    manifest = new_manifest(
        step_seconds,
        {h: manifest_head(h, c, "synthetic", categories.get(h)) for h, c in classes.items()},
    )
    rng = np.random.default_rng(seed)
    steps = [steps_per_video] * num_videos if isinstance(steps_per_video, int) else list(steps_per_video)
    writer = None
    for i in range(num_videos):
        if writer is None:
            writer = ShardWriter(directory, next_shard_index(manifest))
        label = i % len(SYNTHETIC_FREQUENCIES)
        n = steps[i] * step_samples
        t = np.arange(n) / SAMPLE_RATE
        freq = SYNTHETIC_FREQUENCIES[label] * rng.uniform(0.95, 1.05)
        audio = rng.uniform(0.3, 0.6) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
        audio = (audio + 0.02 * rng.standard_normal(n)).astype(np.float32)
        teachers = {h: np.tile(synthetic_teacher(label, c), (steps[i], 1)) for h, c in classes.items()}
        video = f"synthetic-{i:04d}"
        writer.write(video, encode_record(video, audio, teachers, step_samples), steps[i])
        if len(writer.videos) >= videos_per_shard or i == num_videos - 1:
            writer.close()
            add_shard(manifest, writer)
            writer = None
    write_manifest(directory, manifest)
    return directory
