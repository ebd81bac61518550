"""Teacher shards from videos: audio track + image-teacher class distributions per window, as TFRecord shards.

For every video: the audio track is decoded to 22,050 Hz mono with ffmpeg; one frame is taken at the centre of
each ``step_seconds`` window (the original: one per 5 s), resized (shorter side) and centre-cropped to the teacher's
input size; each teacher image model gives a class distribution per frame. The audio (cut to whole windows) and the
distributions go into ``shard-NNNNN.tfrecord`` files described by ``manifest.json`` (see
:mod:`~soundnet_keras.training.data`).

Teachers are any Keras image classifiers, one per student head (``objects``: an ImageNet CNN, 1000 classes;
``scenes``: a Places CNN): a ``keras.applications`` model by name (``"vgg16"``, ``"resnet50"``, ...; ImageNet
weights are downloaded by Keras on first use) with its own preprocessing, or a saved ``.keras`` / ``.h5`` model file
(preprocessing named with ``preprocess=``: ``none`` (RGB 0..255), ``unit`` (÷255), ``tf`` ([-1, 1]), ``caffe``,
``torch``). Outputs must be probabilities unless ``output=logits`` is given.

Category names travel with the distributions (manifest -> trained weights -> predictions): a ``keras.applications``
model with ImageNet weights has the names ``decode_predictions`` gives; any teacher takes ``labels=FILE`` (one name
per line, as many as it has classes; Places365's ``categories_places365.txt`` lines ``/a/airfield 0`` are read as
``/a/airfield``). Without names, the student's classes are called ``scenes_0000``, ``scenes_0001``...

Resumable: a shard's videos enter the manifest only once the shard file is complete, so a rerun skips exactly the
finished videos (and the ones recorded as failed, unless ``retry_failed``); a broken video (unreadable, no audio
track, shorter than one window) is reported, recorded as failed and skipped.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..architecture import HEAD_NAMES, SAMPLE_RATE
from ..errors import ConfigError, SoundNetError
from ..validation import check_positive
from .data import (
    ShardWriter,
    add_shard,
    encode_record,
    manifest_head,
    new_manifest,
    next_shard_index,
    read_manifest,
    step_samples_for,
    write_manifest,
)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv")
PREPROCESS_MODES = ("none", "unit", "tf", "caffe", "torch")
OUTPUT_KINDS = ("probabilities", "logits")

# keras.applications models by lower-case name: (class name, module with preprocess_input)
APPLICATIONS: dict[str, tuple[str, str]] = {
    "vgg16": ("VGG16", "vgg16"),
    "vgg19": ("VGG19", "vgg19"),
    "resnet50": ("ResNet50", "resnet"),
    "resnet101": ("ResNet101", "resnet"),
    "resnet152": ("ResNet152", "resnet"),
    "resnet50v2": ("ResNet50V2", "resnet_v2"),
    "resnet101v2": ("ResNet101V2", "resnet_v2"),
    "resnet152v2": ("ResNet152V2", "resnet_v2"),
    "inceptionv3": ("InceptionV3", "inception_v3"),
    "inceptionresnetv2": ("InceptionResNetV2", "inception_resnet_v2"),
    "xception": ("Xception", "xception"),
    "mobilenet": ("MobileNet", "mobilenet"),
    "mobilenetv2": ("MobileNetV2", "mobilenet_v2"),
    "densenet121": ("DenseNet121", "densenet"),
    "densenet169": ("DenseNet169", "densenet"),
    "densenet201": ("DenseNet201", "densenet"),
    "nasnetmobile": ("NASNetMobile", "nasnet"),
    "nasnetlarge": ("NASNetLarge", "nasnet"),
    **{f"efficientnetb{i}": (f"EfficientNetB{i}", "efficientnet") for i in range(8)},
    **{f"convnext{s}": (f"ConvNeXt{s.capitalize()}", "convnext") for s in ("tiny", "small", "base", "large")},
}


class FFmpegNotFoundError(SoundNetError):
    """ffmpeg / ffprobe (system tools needed to read videos) are not installed."""


class VideoError(SoundNetError):
    """A video cannot be used (unreadable, no audio track, too short)."""


# ------------------------------------------------------------------------------------------------------ ffmpeg
def find_ffmpeg() -> tuple[str, str]:
    """Paths of ``ffmpeg`` and ``ffprobe``; :class:`FFmpegNotFoundError` with install hints when absent."""
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if not ffmpeg or not ffprobe:
        missing = " and ".join(n for n, p in (("ffmpeg", ffmpeg), ("ffprobe", ffprobe)) if not p)
        raise FFmpegNotFoundError(
            f"{missing} not found on PATH: reading videos needs the ffmpeg system tools; install them "
            "(Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg; conda: conda install ffmpeg)"
        )
    return ffmpeg, ffprobe


def _run(command: Sequence[str], video: Path) -> bytes:
    try:
        done = subprocess.run(list(command), capture_output=True, check=False)
    except OSError as exc:
        raise VideoError(f"{video}: cannot run {command[0]}: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise VideoError(f"{video}: {Path(command[0]).name} failed: {message[-1] if message else 'no message'}")
    return done.stdout


def has_audio(video: Path, ffprobe: str) -> bool:
    """Whether ``video`` has an audio stream."""
    out = _run(
        [ffprobe, "-v", "error", "-select_streams", "a", "-show_entries", "stream=index", "-of", "csv=p=0", str(video)],
        video,
    )
    return bool(out.strip())


def extract_audio(video: Path, ffmpeg: str, ffprobe: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The first audio track of ``video`` as float32 mono (channels mixed) at ``sample_rate`` (SoundNet's 22,050 Hz
    unless told; L³-Net's is 48 kHz)."""
    if not has_audio(video, ffprobe):
        raise VideoError(f"{video}: has no audio track")
    raw = _run(
        [
            ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(video),
            "-map",
            "0:a:0",
            "-vn",
            "-ac",
            "1",
            "-ar",
            str(sample_rate),
            "-f",
            "f32le",
            "-acodec",
            "pcm_f32le",
            "-",
        ],
        video,
    )
    audio = np.frombuffer(raw, "<f4").astype(np.float32)
    if not np.all(np.isfinite(audio)):
        raise VideoError(f"{video}: the audio track decodes to NaN or Inf samples")
    return np.clip(audio, -1.0, 1.0)


def extract_frames(video: Path, ffmpeg: str, step_seconds: float, count: int, size: tuple[int, int]) -> np.ndarray:
    """Up to ``count`` RGB frames (uint8, (n, height, width, 3)), one at the centre of each window.

    Frames are scaled so that they cover ``size`` and centre-cropped to it.
    """
    height, width = size
    filters = (
        f"fps=1/{step_seconds:g},scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height}"
    )
    raw = _run(
        [
            ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-ss",
            f"{step_seconds / 2:g}",
            "-i",
            str(video),
            "-map",
            "0:v:0",
            "-an",
            "-vf",
            filters,
            "-frames:v",
            str(count),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        video,
    )
    frame_bytes = height * width * 3
    n = len(raw) // frame_bytes
    return np.frombuffer(raw[: n * frame_bytes], np.uint8).reshape(n, height, width, 3)


# ------------------------------------------------------------------------------------------------------ teachers
@dataclass(frozen=True)
class TeacherSpec:
    """Which image model teaches a head: ``source`` is a ``keras.applications`` name or a model file."""

    head: str
    source: str
    preprocess: str | None = None
    output: str = "probabilities"
    size: int | None = None
    weights: str | None = "imagenet"
    labels: str | None = None
    """A text file of the teacher's category names, one per line (see the module docstring)."""

    @property
    def description(self) -> str:
        return f"{self.source} (preprocess={self.preprocess or 'model default'}, output={self.output})"


def parse_teacher_spec(head: str, text: str) -> TeacherSpec:
    """Parse ``"NAME_OR_PATH[,preprocess=MODE][,output=logits][,size=224][,weights=none][,labels=FILE]"`` for
    ``head``."""
    if head not in HEAD_NAMES:
        raise ConfigError(f"teacher head must be one of {HEAD_NAMES}, got {head!r}")
    parts = [p.strip() for p in str(text).split(",")]
    if not parts[0]:
        raise ConfigError(f"{head} teacher: expected a keras.applications name or a model file, got {text!r}")
    options: dict[str, object] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or key not in ("preprocess", "output", "size", "weights", "labels"):
            raise ConfigError(
                f"{head} teacher option {part!r}: expected preprocess=, output=, size=, weights= or labels="
            )
        if key == "size":
            if not value.isdigit() or int(value) < 8:
                raise ConfigError(f"{head} teacher size must be an integer of at least 8 pixels, got {value!r}")
            options[key] = int(value)
        elif key == "weights":
            options[key] = None if value.lower() == "none" else value
        elif key == "labels":
            if not value:
                raise ConfigError(f"{head} teacher option labels= needs a file: one category name per line")
            options[key] = value
        else:
            options[key] = value
    spec = TeacherSpec(head, parts[0], **options)  # type: ignore[arg-type]
    if spec.preprocess is not None and spec.preprocess not in PREPROCESS_MODES:
        raise ConfigError(f"{head} teacher preprocess must be one of {PREPROCESS_MODES}, got {spec.preprocess!r}")
    if spec.output not in OUTPUT_KINDS:
        raise ConfigError(f"{head} teacher output must be one of {OUTPUT_KINDS}, got {spec.output!r}")
    return spec


def _preprocess_fn(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    from keras.applications import imagenet_utils  # heavy (Keras/TensorFlow): only when a teacher is loaded

    if mode == "none":
        return lambda x: x
    if mode == "unit":
        return lambda x: x / 255.0
    return lambda x: imagenet_utils.preprocess_input(x, mode=mode)


TEACHER_BATCH = 32
"""Frames per teacher call; :func:`extract_shards` gathers several videos' frames so that calls are full."""


@dataclass
class Teacher:
    """A loaded teacher: ``probabilities(frames)`` maps uint8 RGB frames to (frames, classes) distributions."""

    spec: TeacherSpec
    model: object
    size: tuple[int, int]
    classes: int
    preprocess: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    names: list[str] | None = field(default=None, repr=False)
    """The teacher's category names, one per class (None: unknown)."""

    def probabilities(self, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
        outputs = []
        for i in range(0, len(frames), batch_size):
            batch = self.preprocess(frames[i : i + batch_size].astype(np.float32))
            outputs.append(np.asarray(self.model.predict_on_batch(batch), np.float64))
        scores = np.concatenate(outputs).reshape(len(frames), -1)
        if self.spec.output == "logits":
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        elif np.any(scores < -1e-6) or np.any(np.abs(scores.sum(axis=1) - 1) > 1e-3):
            raise ConfigError(
                f"{self.spec.head} teacher {self.spec.source!r} does not output probabilities (row sums "
                f"{scores.sum(axis=1)[:3].round(4).tolist()}...); add ',output=logits' to its spec if it gives logits"
            )
        scores = np.clip(scores, 0, None)
        return (scores / scores.sum(axis=1, keepdims=True)).astype(np.float32)


def _application(keras, class_name: str, kwargs: dict, spec: TeacherSpec):
    """Build a ``keras.applications`` model; a failed weights download is one clear error, not Keras' traceback."""
    try:
        return getattr(keras.applications, class_name)(**kwargs)
    except Exception as exc:  # Keras' get_file raises a bare Exception("URL fetch failure ...") when offline
        if "URL fetch failure" not in str(exc) and not isinstance(exc, OSError):
            raise
        raise ConfigError(
            f"{spec.head} teacher {spec.source!r}: its {spec.weights} weights cannot be downloaded ({exc}). On a "
            f"machine with network, save the model once (keras.applications.{class_name}().save('teacher.keras')) "
            "and pass that file instead"
        ) from None


def load_teacher(spec: TeacherSpec) -> Teacher:
    """Load the image model of ``spec`` (``keras.applications`` by name, or a saved model file)."""
    import keras  # heavy (Keras/TensorFlow): only when a teacher is loaded, after soundnet-teacher's checks

    path = Path(spec.source).expanduser()
    key = spec.source.lower().replace("_", "").replace("-", "")
    if path.suffix in (".keras", ".h5") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{spec.head} teacher model file {str(path)!r} does not exist")
        try:
            model = keras.saving.load_model(str(path), compile=False)
        except Exception as exc:  # Keras raises many types for a bad file
            raise ConfigError(f"{spec.head} teacher {str(path)!r}: cannot load it as a Keras model ({exc})") from None
        preprocess = _preprocess_fn(spec.preprocess or "none")
    elif key in APPLICATIONS:
        class_name, module = APPLICATIONS[key]
        app_module = importlib.import_module(f"keras.applications.{module}")
        kwargs = {"weights": spec.weights}
        if spec.size:
            kwargs["input_shape"] = (spec.size, spec.size, 3)
        model = _application(keras, class_name, kwargs, spec)
        preprocess = _preprocess_fn(spec.preprocess) if spec.preprocess else app_module.preprocess_input
    else:
        raise ConfigError(
            f"{spec.head} teacher {spec.source!r} is neither a model file nor a keras.applications model; known "
            f"names: {', '.join(sorted(APPLICATIONS))}"
        )
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ConfigError(
            f"{spec.head} teacher {spec.source!r} must take (batch, height, width, 3) images, "
            f"its input shape is {shape}"
        )
    height, width = shape[1] or spec.size or 224, shape[2] or spec.size or 224
    out_shape = tuple(model.output_shape)
    if len(out_shape) != 2 or not out_shape[1]:
        raise ConfigError(f"{spec.head} teacher {spec.source!r} must output (batch, classes), gives {out_shape}")
    classes = int(out_shape[1])
    if spec.labels:
        names = read_labels(spec.labels, classes, spec.head)
    elif key in APPLICATIONS and spec.weights == "imagenet" and classes == IMAGENET_CLASSES:
        names = imagenet_names()
    else:
        names = None
    return Teacher(spec, model, (int(height), int(width)), classes, preprocess, names)


IMAGENET_CLASSES = 1000
_INDEXED_LINE = re.compile(r"^(.*\S)\s+(\d+)$")


def read_labels(path: str | os.PathLike, classes: int, head: str) -> list[str]:
    """The category names in the text file ``path``: one per line, ``classes`` of them (blank lines at the end
    ignored). Lines that all end with their own index (``/a/airfield 0``, Places365's ``categories_places365.txt``)
    give the text before it."""
    file = Path(path).expanduser()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{head} teacher labels file {str(file)!r} cannot be read: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    indexed = [_INDEXED_LINE.match(name) for name in names]
    if names and all(m is not None and int(m.group(2)) == i for i, m in enumerate(indexed)):
        names = [m.group(1) for m in indexed]  # type: ignore[union-attr]
    empty = [i + 1 for i, name in enumerate(names) if not name]
    if empty:
        raise ConfigError(f"{head} teacher labels file {str(file)!r}: line {empty[0]} is empty, expected a name")
    if len(names) != classes:
        raise ConfigError(
            f"{head} teacher labels file {str(file)!r} has {len(names)} names, but the teacher gives {classes} classes"
        )
    return names


def imagenet_names() -> list[str] | None:
    """The 1000 ImageNet class names ``keras.applications``' ``decode_predictions`` gives (``tench``, ``goldfish``...;
    Keras downloads their index once), or None when they cannot be had (offline): the student's classes are then
    called ``objects_0000``..."""
    from keras.applications import imagenet_utils  # heavy (Keras/TensorFlow): only when a teacher is loaded

    try:
        decoded = imagenet_utils.decode_predictions(np.eye(IMAGENET_CLASSES, dtype=np.float32), top=1)
    except Exception:  # Keras' download raises many types (offline, proxy, damaged cache)
        return None
    return [str(rows[0][1]) for rows in decoded]


# ------------------------------------------------------------------------------------------------------ videos
def collect_videos(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Video files from folders (searched recursively by extension), list files (``.txt``: one path a line,
    relative to the list's folder) and video paths, in a stable order without duplicates."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS))
        elif path.is_file() and path.suffix.lower() == ".txt":
            for line in path.read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    entry = Path(line.strip()).expanduser()
                    found.append(entry if entry.is_absolute() else path.parent / entry)
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"video input {str(path)!r} does not exist (expected a video, a folder or a .txt list)")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise ConfigError(
            f"no video files found in {[str(i) for i in inputs]} (extensions {', '.join(VIDEO_EXTENSIONS)})"
        )
    return unique


@dataclass
class ExtractReport:
    """Outcome of :func:`extract_shards`."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def decode_video(
    video: Path,
    sizes: Iterable[tuple[int, int]],
    step_seconds: float,
    ffmpeg: str,
    ffprobe: str,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, dict[tuple[int, int], np.ndarray]]:
    """Audio at ``sample_rate`` (whole windows) and one frame per window at each of ``sizes`` of one video (ffmpeg
    only: safe to run in threads)."""
    step_samples = step_samples_for(step_seconds, sample_rate)
    audio = extract_audio(video, ffmpeg, ffprobe, sample_rate)
    windows = len(audio) // step_samples
    if windows < 1:
        raise VideoError(
            f"{video}: audio is {len(audio) / sample_rate:.2f} s, shorter than one {step_seconds:g}-s window"
        )
    frames_by_size = {size: extract_frames(video, ffmpeg, step_seconds, windows, size) for size in dict.fromkeys(sizes)}
    windows = min([windows, *(len(f) for f in frames_by_size.values())])
    if windows < 1:
        raise VideoError(f"{video}: no video frame could be decoded")
    return audio[: windows * step_samples], {size: frames[:windows] for size, frames in frames_by_size.items()}


def process_video(
    video: Path, teachers: Mapping[str, Teacher], step_seconds: float, ffmpeg: str, ffprobe: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Audio (whole windows) and per-head teacher distributions (windows, classes) of one video."""
    audio, frames = decode_video(video, (t.size for t in teachers.values()), step_seconds, ffmpeg, ffprobe)
    return audio, {h: t.probabilities(frames[t.size]) for h, t in teachers.items()}


@dataclass
class DecodedVideo:
    """One video decoded by a worker thread: its audio and frames, or why it failed."""

    key: str
    audio: np.ndarray | None = None
    frames: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    error: VideoError | None = None


def decoded_in_order(
    keys: Sequence[str],
    sizes: list[tuple[int, int]],
    step_seconds: float,
    workers: int,
    sample_rate: int = SAMPLE_RATE,
) -> Iterator[DecodedVideo]:
    """Decode ``keys`` (:func:`decode_video`, audio at ``sample_rate``) with ``workers`` threads (0: in this
    thread), yielding in input order; at most a few videos per worker wait decoded in memory."""
    ffmpeg, ffprobe = find_ffmpeg()

    def one(key: str) -> DecodedVideo:
        try:
            audio, frames = decode_video(Path(key), sizes, step_seconds, ffmpeg, ffprobe, sample_rate)
        except VideoError as exc:
            return DecodedVideo(key, error=exc)
        return DecodedVideo(key, audio, frames)

    if workers <= 0:
        yield from map(one, keys)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="soundnet-teacher") as pool:
        pending: deque = deque()
        for key in keys:
            pending.append(pool.submit(one, key))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _label(group: list[DecodedVideo], teachers: Mapping[str, Teacher]) -> list[dict[str, np.ndarray]]:
    """Each decoded video's teacher distributions, the teachers run once over the frames of the whole group (full
    batches across videos)."""
    windows = [len(next(iter(item.frames.values()))) for item in group]
    bounds = np.cumsum([0, *windows])
    per_head = {}
    for head, teacher in teachers.items():
        frames = np.concatenate([item.frames[teacher.size] for item in group])
        per_head[head] = teacher.probabilities(frames, batch_size=TEACHER_BATCH)
    return [{h: d[bounds[i] : bounds[i + 1]] for h, d in per_head.items()} for i in range(len(group))]


def _open_manifest(output: Path, teachers: Mapping[str, Teacher], step_seconds: float) -> dict:
    """The manifest of ``output``: the existing one (which must have the same settings) or a new one, written."""
    heads = {h: manifest_head(h, t.classes, t.spec.description, t.names) for h, t in teachers.items()}
    if not (output / "manifest.json").exists():
        manifest = new_manifest(step_seconds, heads)
        write_manifest(output, manifest)
        return manifest
    manifest = read_manifest(output)
    without = {h: {k: v for k, v in entry.items() if k != "categories"} for h, entry in heads.items()}
    if manifest["heads"] == without and without != heads and manifest["step_seconds"] == float(step_seconds):
        # shards made without names (an earlier version): the same teachers add their names now
        manifest["heads"] = heads
        write_manifest(output, manifest)
    if manifest["step_seconds"] != float(step_seconds) or manifest["heads"] != heads:
        raise ConfigError(
            f"{output} already holds shards made with other settings (step {manifest['step_seconds']} s, heads "
            f"{manifest['heads']}); now step {float(step_seconds)} s, heads {heads}. Use another output folder"
        )
    return manifest


def videos_to_do(
    videos: Sequence[str | os.PathLike], manifest: Mapping, retry_failed: bool, report: ExtractReport
) -> list[str]:
    """Resolved paths of the videos still to process; the others (done, or failed) go to ``report.skipped``."""
    todo = []
    for video in videos:
        key = str(Path(video).resolve())
        state = manifest["videos"].get(key, {}).get("status")
        if state == "done" or (state == "failed" and not retry_failed):
            report.skipped.append(key)
        else:
            todo.append(key)
    return todo


class ShardSink:
    """The shard being written: opened on the first record, entered in the manifest when closed."""

    def __init__(self, output: Path, manifest: dict) -> None:
        self.output = output
        self.manifest = manifest
        self.step_samples = manifest["step_samples"]
        self.writer: ShardWriter | None = None

    def add(self, key: str, audio: np.ndarray, distributions: Mapping[str, np.ndarray]) -> int:
        """Write one video's teacher record (opening a shard if none is open); returns its number of windows."""
        steps = len(audio) // self.step_samples
        self.add_record(key, encode_record(key, audio, distributions, self.step_samples), steps)
        return steps

    def add_record(self, key: str, record: bytes, steps: int) -> None:
        """Write one video's serialised ``record`` of ``steps`` windows (opening a shard if none is open)."""
        if self.writer is None:
            self.writer = ShardWriter(self.output, next_shard_index(self.manifest))
        self.writer.write(key, record, steps)

    def videos(self) -> int:
        """Number of videos in the open shard (0 when none is open)."""
        return 0 if self.writer is None else len(self.writer.videos)

    def close_if_full(self, videos_per_shard: int) -> None:
        """Close the open shard once it holds ``videos_per_shard`` videos."""
        if self.videos() >= videos_per_shard:
            self.close()

    def close(self) -> None:
        """Close the open shard, if any, and record it and its videos in the manifest (written)."""
        if self.writer is not None:
            self.writer.close()
            add_shard(self.manifest, self.writer)
            write_manifest(self.output, self.manifest)
            self.writer = None

    def abandon(self) -> None:
        """Drop the open shard, if any (interrupted: its videos are redone on the next run)."""
        if self.writer is not None:
            self.writer.abandon()


def record_failure(output: Path, manifest: dict, report: ExtractReport, key: str, exc: VideoError) -> None:
    """Record a broken video as failed in the report and the manifest (written)."""
    report.failed.append((key, str(exc)))
    manifest["videos"][key] = {"status": "failed", "error": str(exc)}
    write_manifest(output, manifest)


def decoding_workers(workers: int | None) -> int:
    """Threads that decode videos ahead: ``workers`` (checked: a whole number >= 0, 0 decodes in the caller's
    thread) or, when None, the CPU count, at most 4."""
    if workers is None:
        return min(4, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be a whole number >= 0 (0: decode in this thread), got {workers!r}")
    return workers


def extract_shards(
    videos: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    teachers: Mapping[str, Teacher],
    *,
    step_seconds: float = 5.0,
    videos_per_shard: int = 64,
    retry_failed: bool = False,
    log: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> ExtractReport:
    """Write teacher shards for ``videos`` into ``output_dir`` (resumable; see the module docstring).

    ``workers`` threads decode videos ahead (ffmpeg runs outside the GIL; default: the CPU count, at most 4; 0
    decodes in this thread) while the teachers label the frames of several videos in full batches. Records are
    written in input order."""
    say = log or (lambda message: None)
    find_ffmpeg()
    workers = decoding_workers(workers)
    if not teachers:
        raise ConfigError("at least one teacher is needed (objects and/or scenes)")
    videos_per_shard = check_positive(videos_per_shard, "videos_per_shard", integer=True)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    manifest = _open_manifest(output, teachers, step_seconds)
    for head, teacher in teachers.items():
        if teacher.names is None:
            say(
                f"note: the {head} teacher {teacher.spec.source!r} has no category names (add labels=FILE to its "
                f"spec): a student trained on these shards calls its classes {head}_0000, {head}_0001, ..."
            )
    shards = ShardSink(output, manifest)
    report = ExtractReport()
    todo = videos_to_do(videos, manifest, retry_failed, report)
    say(f"{len(todo)} video(s) to process, {len(report.skipped)} already done or failed before")
    sizes = [t.size for t in teachers.values()]
    group: list[DecodedVideo] = []

    def flush() -> None:
        for item, distributions in zip(group, _label(group, teachers) if group else [], strict=True):
            steps = shards.add(item.key, item.audio, distributions)
            report.done.append(item.key)
            say(f"[{len(report.done) + len(report.failed)}/{len(todo)}] {Path(item.key).name}: {steps} window(s)")
            shards.close_if_full(videos_per_shard)
        group.clear()

    try:
        for item in decoded_in_order(todo, sizes, step_seconds, workers):
            if item.error is not None:
                record_failure(output, manifest, report, item.key, item.error)
                say(f"[{len(report.done) + len(group) + len(report.failed)}/{len(todo)}] skipped: {item.error}")
                continue
            group.append(item)
            if sum(len(next(iter(g.frames.values()))) for g in group) >= TEACHER_BATCH * 4:
                flush()
        flush()
        shards.close()
    finally:
        shards.abandon()
    return report
