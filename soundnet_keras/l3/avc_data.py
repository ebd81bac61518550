"""AVC (audio-visual correspondence) data for L³-Net: shards of frames + 48 kHz audio, and a ``tf.data`` pipeline.

**Shards.** :func:`write_avc_shards` decodes each video once with ``soundnet-teacher``'s machinery
(:func:`~soundnet_keras.training.teacher.decode_video`: the audio track as mono float at ``sample_rate``, one frame
at the centre of each ``step_seconds`` window, scaled to cover ``frame_size`` and centre-cropped) and writes one
record per video into ``shard-NNNNN.tfrecord`` files with a ``manifest.json`` of format :data:`AVC_FORMAT` (the
same layout, writer and CRC checks as the teacher shards of :mod:`~soundnet_keras.training.data`). A record holds
the video's name, ``num_steps``, its audio as 16-bit PCM (``num_steps × step_samples`` samples) and its frames as
raw uint8 ``(num_steps, height, width, 3)``. Resumable like ``soundnet-teacher``: a rerun skips the videos already
written or recorded as failed; a broken video is reported, recorded as failed and skipped.

**Batches.** :func:`make_avc_dataset` gives ``({"frame": (B, H, W, 3) float32 RGB in [0, 1], "audio": (B,
clip_samples) float32 in [-1, 1]}, label (B,) int32)``, L³-Net's input contract (224 × 224 frames, 1-s clips at
48 kHz by default). Every frame window ``w`` of a video (frame at ``(w + 0.5) · step_seconds``) gives two examples
next to each other: a positive (label 1: the frame and the ``clip_seconds`` of audio centred at the same time of the
same video) and a negative (label 0: the same frame and a clip of a *different* video, the first of ``candidates``
windows drawn from a second, independently shuffled stream whose video differs; a window whose ``candidates`` are
all from its own video is dropped). So each batch holds exactly ``B / 2`` of each, in an order permuted by a
stateless RNG of ``(seed, batch number)``. ``shuffled=True`` is the chance-level control: the labels are a
random permutation of the batch's labels, no longer tied to whether a pair corresponds.

Training streams repeat forever (file order, records and windows shuffled, all stateless functions of ``seed``);
``training=False`` makes one pass over the windows in order (negatives still drawn by ``seed``), for the AVC
accuracy on held-out videos. :func:`split_videos` splits the videos (not the windows) into training and held-out
parts; ``videos=`` restricts a dataset to one part.

Command line: ``python -m soundnet_keras.l3.avc_data VIDEO_OR_FOLDER... --output SHARDS``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, SoundNetError
from ..training.data import (
    ShardError,
    _deterministic_options,
    _name_hashes,
    _record_stream,
    _VideoFilter,
    check_shard,
    held_out_videos,
    read_manifest,
    step_samples_for,
    video_features,
    write_manifest,
)
from ..training.teacher import (
    ExtractReport,
    ShardSink,
    collect_videos,
    decoded_in_order,
    decoding_workers,
    find_ffmpeg,
    record_failure,
    videos_to_do,
)
from ..validation import check_positive
from .synthetic import L3_SAMPLE_RATE

AVC_FORMAT = "soundnet_keras.avc_shards/1"
DEFAULT_FRAME_SIZE = 224
DEFAULT_CLIP_SECONDS = 1.0
DEFAULT_STEP_SECONDS = 1.0

__all__ = [
    "AVC_FORMAT",
    "AVCSplit",
    "ShardError",
    "encode_avc_record",
    "make_avc_dataset",
    "new_avc_manifest",
    "split_videos",
    "video_ids",
    "write_avc_shards",
]


# ------------------------------------------------------------------------------------------------------ shards
def new_avc_manifest(step_seconds: float, sample_rate: int, frame_size: tuple[int, int]) -> dict:
    """An empty AVC manifest: frames of ``frame_size`` (height, width) every ``step_seconds``, audio at
    ``sample_rate``."""
    return {
        "format": AVC_FORMAT,
        "sample_rate": int(sample_rate),
        "step_seconds": float(step_seconds),
        "step_samples": step_samples_for(step_seconds, sample_rate),
        "frame_size": [int(frame_size[0]), int(frame_size[1])],
        "shards": [],
        "videos": {},
    }


def encode_avc_record(video: str, audio: np.ndarray, frames: np.ndarray, step_samples: int) -> bytes:
    """Serialise one video as a ``tf.train.Example``: 16-bit audio and raw uint8 frames, one per window."""
    import tensorflow as tf  # heavy (TensorFlow)

    feature, num_steps = video_features(video, audio, step_samples)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != num_steps or frames.shape[3] != 3:
        raise ConfigError(
            f"{video}: frames must be uint8 ({num_steps}, height, width, 3), got {frames.dtype} {frames.shape}"
        )
    feature["frames"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[frames.tobytes()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _frame_size(frame_size: int | tuple[int, int]) -> tuple[int, int]:
    size = (frame_size, frame_size) if isinstance(frame_size, int) else tuple(frame_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 8 for s in size):
        raise ConfigError(f"frame_size must be an int or (height, width) of at least 8 pixels, got {frame_size!r}")
    return size  # type: ignore[return-value]


def _open_avc_manifest(output: Path, step_seconds: float, sample_rate: int, frame_size: tuple[int, int]) -> dict:
    """The manifest of ``output``: the existing one (which must have the same settings) or a new one, written."""
    wanted = new_avc_manifest(step_seconds, sample_rate, frame_size)
    if not (output / "manifest.json").exists():
        write_manifest(output, wanted)
        return wanted
    manifest = read_manifest(output, AVC_FORMAT)
    settings = ("sample_rate", "step_seconds", "frame_size")
    if any(manifest.get(key) != wanted[key] for key in settings):
        raise ConfigError(
            f"{output} already holds AVC shards made with other settings "
            f"({ {k: manifest.get(k) for k in settings} }); now { {k: wanted[k] for k in settings} }. "
            "Use another output folder"
        )
    return manifest


def write_avc_shards(
    videos: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    step_seconds: float = DEFAULT_STEP_SECONDS,
    sample_rate: int = L3_SAMPLE_RATE,
    frame_size: int | tuple[int, int] = DEFAULT_FRAME_SIZE,
    videos_per_shard: int = 16,
    retry_failed: bool = False,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
) -> ExtractReport:
    """Write AVC shards for ``videos`` (files; see :func:`~soundnet_keras.training.teacher.collect_videos` for
    folders and lists) into ``output_dir``: resumable, broken videos recorded as failed (see the module docstring).
    ``workers`` threads decode ahead (default: the CPU count, at most 4; 0: in this thread)."""
    say = log or (lambda message: None)
    find_ffmpeg()
    workers = decoding_workers(workers)
    videos_per_shard = check_positive(videos_per_shard, "videos_per_shard", integer=True)
    sample_rate = check_positive(sample_rate, "sample_rate", integer=True)
    size = _frame_size(frame_size)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    manifest = _open_avc_manifest(output, step_seconds, sample_rate, size)
    report = ExtractReport()
    todo = videos_to_do(videos, manifest, retry_failed, report)
    say(f"{len(todo)} video(s) to process, {len(report.skipped)} already done or failed before")
    shards = ShardSink(output, manifest)
    step_samples = manifest["step_samples"]
    try:
        for n, item in enumerate(decoded_in_order(todo, [size], step_seconds, workers, sample_rate), 1):
            if item.error is not None:
                record_failure(output, manifest, report, item.key, item.error)
                say(f"[{n}/{len(todo)}] skipped: {item.error}")
                continue
            steps = len(item.audio) // step_samples
            shards.add_record(item.key, encode_avc_record(item.key, item.audio, item.frames[size], step_samples), steps)
            report.done.append(item.key)
            say(f"[{n}/{len(todo)}] {Path(item.key).name}: {steps} frame(s)")
            shards.close_if_full(videos_per_shard)
        shards.close()
    finally:
        shards.abandon()
    return report


# ------------------------------------------------------------------------------------------------------ splits
@dataclass(frozen=True)
class AVCSplit:
    """The videos (manifest names) of the training and held-out parts."""

    train: list[str]
    held_out: list[str]


def _done_videos(manifest: dict) -> list[str]:
    return sorted(name for name, v in manifest["videos"].items() if v["status"] == "done")


def split_videos(shard_dir: str | os.PathLike, held_out: float = 0.2, *, seed: int = 0) -> AVCSplit:
    """Split the videos of ``shard_dir`` into training and held-out parts: ``round(held_out × n)`` videos drawn by
    ``seed`` from the sorted names (:func:`~soundnet_keras.training.data.held_out_videos`); each part needs at
    least 2 videos, since a negative pairs two of them."""
    manifest = read_manifest(shard_dir, AVC_FORMAT)
    held = held_out_videos(manifest, held_out, seed=seed, crop_steps=1)
    train = [name for name in _done_videos(manifest) if name not in set(held)]
    if len(held) < 2 or len(train) < 2:
        raise ConfigError(
            f"held_out={held_out:g} splits the {len(held) + len(train)} videos of {str(shard_dir)!r} into "
            f"{len(train)} for training and {len(held)} held out; each part needs at least 2 videos (a negative "
            "pairs a frame with another video's audio)"
        )
    return AVCSplit(train, held)


def video_ids(names: Collection[str]) -> dict[str, int]:
    """The id each video name has in ``make_avc_dataset(..., with_ids=True)`` (a keyed 63-bit hash of it)."""
    import tensorflow as tf  # heavy (TensorFlow)

    ordered = sorted(names)
    hashes = _name_hashes(tf.constant(ordered, tf.string, shape=[len(ordered)])).numpy()
    return {name: int(h) for name, h in zip(ordered, hashes, strict=True)}


# ------------------------------------------------------------------------------------------------------ batches
def _chosen_videos(manifest: dict, videos: Collection[str] | None, shard_dir: str | os.PathLike) -> list[str]:
    """The videos a dataset reads (all done ones when ``videos`` is None), checked: known, done, at least 2."""
    done = _done_videos(manifest)
    if videos is None:
        chosen = done
    else:
        chosen = sorted(set(videos))
        unknown = [name for name in chosen if name not in set(done)]
        if unknown:
            raise ConfigError(
                f"videos {unknown[:3]}{'...' if len(unknown) > 3 else ''} are not among the {len(done)} videos "
                f"written to {str(shard_dir)!r}"
            )
    if len(chosen) < 2:
        raise ConfigError(
            f"an AVC dataset needs at least 2 videos (a negative pairs a frame with another video's audio), "
            f"{str(shard_dir)!r} gives {len(chosen)}"
        )
    return chosen


def _window_functions(manifest: dict, clip_samples: int, chosen: _VideoFilter) -> tuple[Callable, Callable]:
    """``(keep(record), windows(record, with_frames))``: the video filter of the record stream, and each record's
    windows as a dataset of dicts (``frame`` uint8, ``audio`` int16 clip, ``video`` id, ``time`` s)."""
    import tensorflow as tf  # heavy (TensorFlow)

    height, width = manifest["frame_size"]
    step_samples, step_seconds = int(manifest["step_samples"]), float(manifest["step_seconds"])
    kept = chosen.predicate()
    spec = {
        "video": tf.io.FixedLenFeature([], tf.string),
        "num_steps": tf.io.FixedLenFeature([], tf.int64),
        "audio": tf.io.FixedLenFeature([], tf.string),
    }

    def keep(record):
        return kept(tf.io.parse_single_example(record, {"video": spec["video"]})["video"])

    def windows(record, with_frames: bool):
        features = {**spec, "frames": tf.io.FixedLenFeature([], tf.string)} if with_frames else spec
        ex = tf.io.parse_single_example(record, features)
        pcm = tf.io.decode_raw(ex["audio"], tf.int16, little_endian=True)
        steps = ex["num_steps"]
        centres = (tf.range(steps, dtype=tf.int64) * 2 + 1) * step_samples // 2
        starts = centres - clip_samples // 2
        fits = (starts >= 0) & (starts + clip_samples <= tf.size(pcm, tf.int64))
        index = tf.boolean_mask(tf.range(steps, dtype=tf.int64), fits)
        video = _name_hashes(tf.reshape(ex["video"], [1]))[0]
        frames = tf.reshape(tf.io.decode_raw(ex["frames"], tf.uint8), [-1, height, width, 3]) if with_frames else None

        def window(i):
            item = {
                "audio": tf.ensure_shape(pcm[starts[i] : starts[i] + clip_samples], [clip_samples]),
                "video": video,
                "time": tf.cast(i, tf.float32) * step_seconds + step_seconds / 2,
            }
            if with_frames:
                item["frame"] = frames[i]
            return item

        return tf.data.Dataset.from_tensor_slices(index).map(window)

    return keep, windows


def make_avc_dataset(
    shard_dir: str | os.PathLike,
    batch_size: int,
    *,
    videos: Collection[str] | None = None,
    training: bool = True,
    seed: int = 0,
    shuffled: bool = False,
    clip_seconds: float = DEFAULT_CLIP_SECONDS,
    shuffle_buffer: int = 256,
    record_buffer: int = 8,
    candidates: int = 8,
    cycle_length: int = 4,
    with_ids: bool = False,
    frame_size: int | None = None,
):
    """AVC batches from the shards of ``shard_dir`` (see the module docstring): ``({"frame", "audio"}, label)``.

    ``videos``: only these (manifest names, e.g. one part of :func:`split_videos`; default: all). ``batch_size``
    must be even (half positives, half negatives). ``shuffle_buffer`` windows and ``record_buffer`` videos are
    shuffled in memory (a window of a 224² frame and a 1-s clip takes about 250 kB). ``with_ids=True`` adds a third
    element for checks (not for ``fit``, which would take it as sample weights): ``{"pair"`` (1 where the pair
    really corresponds; differs from the label under ``shuffled``), ``"frame_video"``, ``"audio_video"`` (ids of
    :func:`video_ids`), ``"frame_time"``, ``"audio_time"`` (centres in s)``}``. ``frame_size``: frames resized
    (bilinear, antialiased) to ``frame_size`` × ``frame_size`` (e.g. 64 for ``l3-small``); None: the shards' size.

    Every shard's record headers are checked first (a missing or truncated shard is a :class:`ShardError` naming
    it); a corrupted record raises ``tf.errors.DataLossError`` when read, which
    ``damaged_shard_error(shard_dir, exc, AVC_FORMAT)`` turns into a :class:`ShardError` naming the shard.
    """
    import tensorflow as tf  # heavy (TensorFlow)

    manifest = read_manifest(shard_dir, AVC_FORMAT)
    batch_size = check_positive(batch_size, "batch_size", integer=True)
    if batch_size % 2:
        raise ConfigError(f"batch_size must be even (half positive, half negative pairs), got {batch_size}")
    for value, what in ((shuffle_buffer, "shuffle_buffer"), (record_buffer, "record_buffer")):
        check_positive(value, what, integer=True)
    candidates = check_positive(candidates, "candidates", integer=True)
    clip_samples = step_samples_for(check_positive(clip_seconds, "clip_seconds"), int(manifest["sample_rate"]))
    resize = None if frame_size is None or [frame_size] * 2 == list(manifest["frame_size"]) else _frame_size(frame_size)
    chosen = _chosen_videos(manifest, videos, shard_dir)
    read = [s for s in manifest["shards"] if s["examples"] > 0]
    for entry in read:
        check_shard(Path(shard_dir) / entry["file"], int(entry["examples"]))
    files = [str(Path(shard_dir) / s["file"]) for s in read]
    keep, windows = _window_functions(manifest, clip_samples, _VideoFilter(frozenset(chosen), True))
    stream = {"shuffle_buffer": record_buffer, "cycle_length": cycle_length}

    anchors = _record_stream(files, keep, training=training, seed=seed, **stream)
    anchors = anchors.flat_map(lambda record: windows(record, True))
    if training:
        anchors = anchors.shuffle(shuffle_buffer, seed=seed + 2, reshuffle_each_iteration=False)
    others = _record_stream(files, keep, training=True, seed=seed + 7919, **stream)
    others = others.flat_map(lambda record: windows(record, False))
    others = others.shuffle(shuffle_buffer, seed=seed + 3, reshuffle_each_iteration=False).batch(candidates)

    def pair(anchor, pool):
        other = tf.argmax(tf.cast(pool["video"] != anchor["video"], tf.int32), output_type=tf.int32)
        found = pool["video"][other] != anchor["video"]
        both = {
            "frame": tf.stack([anchor["frame"], anchor["frame"]]),
            "audio": tf.stack([anchor["audio"], pool["audio"][other]]),
            "pair": tf.constant([1, 0], tf.int32),
            "frame_video": tf.stack([anchor["video"], anchor["video"]]),
            "audio_video": tf.stack([anchor["video"], pool["video"][other]]),
            "frame_time": tf.stack([anchor["time"], anchor["time"]]),
            "audio_time": tf.stack([anchor["time"], pool["time"][other]]),
        }
        return found, both

    def has_other(found, both):
        return found

    def examples(found, both):
        return both

    pairs = tf.data.Dataset.zip(anchors, others).map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    pairs = pairs.filter(has_other).map(examples).unbatch()
    batches = pairs.batch(batch_size, drop_remainder=training).enumerate()

    def finish(number, batch):
        size = tf.shape(batch["pair"])[0]
        order = tf.argsort(tf.random.stateless_uniform([size], seed=tf.stack([tf.constant(seed, tf.int64), number])))
        batch = {key: tf.gather(value, order) for key, value in batch.items()}
        label = batch["pair"]
        if shuffled:
            control = tf.stack([tf.constant(seed + 1, tf.int64), number])
            label = tf.gather(label, tf.argsort(tf.random.stateless_uniform([size], seed=control)))
        frame = tf.cast(batch.pop("frame"), tf.float32) / 255.0
        if resize is not None:
            frame = tf.clip_by_value(tf.image.resize(frame, resize, antialias=True), 0.0, 1.0)
        inputs = {
            "frame": frame,
            "audio": tf.cast(batch.pop("audio"), tf.float32) / 32768.0,
        }
        return (inputs, label, batch) if with_ids else (inputs, label)

    batches = batches.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE).with_options(_deterministic_options())


# ------------------------------------------------------------------------------------------------------ CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m soundnet_keras.l3.avc_data VIDEOS... --output SHARDS``: write (or resume) AVC shards."""
    parser = argparse.ArgumentParser(
        prog="python -m soundnet_keras.l3.avc_data", description="Write AVC shards (frames + 48 kHz audio) for L³-Net."
    )
    parser.add_argument("inputs", nargs="+", help="videos, folders (searched recursively) or .txt lists")
    parser.add_argument("--output", required=True, help="shard folder (a rerun resumes it)")
    parser.add_argument("--step-seconds", type=float, default=DEFAULT_STEP_SECONDS, help="one frame per step")
    parser.add_argument("--frame-size", type=int, default=DEFAULT_FRAME_SIZE, help="square frame side in pixels")
    parser.add_argument("--sample-rate", type=int, default=L3_SAMPLE_RATE)
    parser.add_argument("--videos-per-shard", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: CPUs, at most 4)")
    parser.add_argument("--retry-failed", action="store_true", help="try again the videos that failed before")
    args = parser.parse_args(argv)
    try:
        report = write_avc_shards(
            collect_videos(args.inputs),
            args.output,
            step_seconds=args.step_seconds,
            sample_rate=args.sample_rate,
            frame_size=args.frame_size,
            videos_per_shard=args.videos_per_shard,
            retry_failed=args.retry_failed,
            workers=args.workers,
            log=print,
        )
    except SoundNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(report.done)} written, {len(report.skipped)} skipped, {len(report.failed)} failed")
    for video, reason in report.failed:
        print(f"failed: {video}: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
