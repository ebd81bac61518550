"""Synthetic audio-visual videos whose picture determines their sound: a learnability test for AVC training.

Each video shows a coloured shape moving over a cluttered grey background; its sound is a harmonic tone under
background noise. The *class* of each second (``0 .. classes - 1``, at most :data:`MAX_CLASSES`) fixes both:

- colour ``class % 8`` (one of :data:`HUES`, saturated) ↔ pitch: the fundamental :data:`FREQUENCIES` ``[class % 8]``
  with :data:`HARMONICS` partials at its multiples (amplitude ``1/k``);
- shape ``class // 8``: a disc ↔ the tone held steady, a square ↔ the tone in :data:`PULSE_RATE` pulses a second.

Why harmonic tones, and a rhythm rather than tone-versus-noise: L³-Net's audio network is a stack of 3 × 3
convolutions ending in a max pooling over the whole spectrogram, so it recognises *patterns* wherever they sit on
the frequency axis, as it must for real sounds; the absolute position of a lone spectral line, which is all that
told one pure tone from another, is what it is built to ignore (the first version of this set used pure tones and
half-octave noise bands: trained L³ models confused the tones above 3 kHz with each other and, below 700 Hz,
noise bands narrower than two 94-Hz spectrogram bins with tones). A harmonic tone's pitch is in the spacing of its
partials, 3–32 spectrogram bins here, and a pulsed tone differs from a steady one everywhere in the spectrogram.

Distractors keep the task from being trivial: static grey clutter, a grey shape wandering over the whole frame,
pixel noise and flicker, the coloured shape's own motion and size; broadband noise, mains hum and clicks in the
sound, per-video frequency and loudness jitter. The class changes within a video (segments of whole seconds), so
the correspondence is temporal, not a per-video property. The shape stays inside the central square of the frame,
which survives a centre crop to a square.

Everything is a function of ``seed``: video ``i`` draws from ``numpy.random.default_rng([seed, i])`` and the files
are encoded single-threaded with ffmpeg's bit-exact flags. :func:`render_videos` returns each video's path and its
class per second, also written to ``ground_truth.json`` (read back with :func:`read_ground_truth`).

Command line: ``python -m soundnet_keras.l3.synthetic OUT --videos 40 [--seconds 6] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import subprocess
import sys
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ConfigError, SoundNetError
from ..training.teacher import VideoError, find_ffmpeg
from ..validation import check_positive

L3_SAMPLE_RATE = 48_000
"""L³-Net's audio rate (Hz)."""
HUES = tuple(i / 8 for i in range(8))
"""The shape's hue (HSV, 0..1) for ``class % 8``: red, orange, chartreuse, green, cyan, azure, violet, rose."""
FREQUENCIES = tuple(float(f) for f in np.geomspace(300.0, 3000.0, 8))
"""Fundamental frequency (Hz) of the sound for ``class % 8``: 300 Hz to 3 kHz, 0.47 octave apart."""
HARMONICS = 6
"""Partials of a tone: the fundamental and its multiples up to 6 × (those below 0.45 × the sample rate)."""
PULSE_RATE = 8.0
"""Pulses per second of a square's tone (on half of each period, 5-ms ramps)."""
SHAPES = ("disc", "square")
KINDS = ("steady", "pulsed")
"""The shape for ``class // 8`` and how it sounds: a disc as a steady tone, a square as a pulsed one."""
MAX_CLASSES = len(HUES) * len(SHAPES)
RAMP_SECONDS = 0.005
GROUND_TRUTH_NAME = "ground_truth.json"
GROUND_TRUTH_FORMAT = "soundnet_keras.l3_synthetic/1"


@dataclass(frozen=True)
class SyntheticVideo:
    """One rendered video: its file and the class shown and heard during each whole second."""

    path: Path
    classes: np.ndarray
    """int64 (seconds,): the class of second ``k`` (frames and audio of ``[k, k + 1)`` s)."""


def class_colour(label: int) -> np.ndarray:
    """The shape's RGB colour (float, 0..255) for class ``label``."""
    return np.array(colorsys.hsv_to_rgb(HUES[label % len(HUES)], 0.85, 0.95)) * 255.0


def class_sound(label: int) -> tuple[float, str]:
    """``(fundamental frequency in Hz, "steady" or "pulsed")`` of class ``label``."""
    return FREQUENCIES[label % len(FREQUENCIES)], KINDS[label // len(FREQUENCIES)]


def _segments(rng: np.random.Generator, seconds: int, classes: int, longest: int) -> np.ndarray:
    """The class of each second: segments of 1..``longest`` whole seconds, each of another class than the last."""
    labels: list[int] = []
    while len(labels) < seconds:
        previous = labels[-1] if labels else -1
        label = int(rng.integers(classes - 1)) if previous >= 0 else int(rng.integers(classes))
        if previous >= 0 and label >= previous:
            label += 1  # uniform over the classes other than the previous one
        labels.extend([label] * int(rng.integers(1, longest + 1)))
    return np.asarray(labels[:seconds], np.int64)


def _sound(rng: np.random.Generator, label: int, samples: int, sample_rate: int, detune: float) -> np.ndarray:
    """One segment of class ``label``: a harmonic tone, steady or pulsed, faded in and out over 5 ms."""
    freq, kind = class_sound(label)
    freq *= detune
    t = np.arange(samples) / sample_rate
    signal = np.zeros(samples)
    for k in range(1, HARMONICS + 1):
        if k * freq < 0.45 * sample_rate:
            signal += np.sin(2 * np.pi * k * freq * t + rng.uniform(0, 2 * np.pi)) / k
    signal *= rng.uniform(0.15, 0.35) / np.sqrt(2) / max(float(np.std(signal)), 1e-12)
    if kind == "pulsed":  # on for the first half of each period, rising and falling over RAMP_SECONDS
        half = sample_rate / PULSE_RATE / 2
        phase = np.mod(np.arange(samples) + rng.uniform(0, 2 * half), 2 * half)
        edge = np.minimum(phase, half - phase) / (RAMP_SECONDS * sample_rate)
        signal *= np.where(phase < half, np.clip(edge, 0.0, 1.0), 0.0)
    ramp = np.linspace(0.0, 1.0, min(samples // 2, int(RAMP_SECONDS * sample_rate)))
    signal[: len(ramp)] *= ramp
    signal[samples - len(ramp) :] *= ramp[::-1]
    return signal


def _soundtrack(rng: np.random.Generator, labels: np.ndarray, sample_rate: int) -> np.ndarray:
    """The audio of a video with per-second ``labels``, under noise, hum and clicks (float32 in [-1, 1])."""
    n = len(labels) * sample_rate
    detune = rng.uniform(0.97, 1.03)
    audio = rng.uniform(0.01, 0.04) * rng.standard_normal(n)
    t = np.arange(n) / sample_rate
    audio += rng.uniform(0.0, 0.05) * np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * t)
    for at in rng.integers(0, n - 100, size=int(rng.integers(0, 6))):
        audio[at : at + 100] += rng.uniform(-0.5, 0.5) * np.exp(-np.arange(100) / 15)
    start = 0
    for end in [*np.flatnonzero(np.diff(labels)) + 1, len(labels)]:
        audio[start * sample_rate : end * sample_rate] += _sound(
            rng, int(labels[start]), (end - start) * sample_rate, sample_rate, detune
        )
        start = end
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def _bouncing(rng: np.random.Generator, count: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``count`` positions (x, y) moving at a random constant speed, reflected at the box ``low``..``high``."""
    span = np.maximum(high - low, 1e-6)
    start = rng.uniform(0, 1, 2) * span
    velocity = rng.uniform(-1, 1, 2) * span * rng.uniform(0.02, 0.08)
    path = start + np.arange(count)[:, None] * velocity
    folded = np.mod(path, 2 * span)
    return low + np.where(folded > span, 2 * span - folded, folded)


def _frames(rng: np.random.Generator, labels: np.ndarray, size: tuple[int, int], fps: int) -> np.ndarray:
    """The picture of a video with per-second ``labels``: uint8 (seconds × fps, height, width, 3)."""
    height, width = size
    count = len(labels) * fps
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.full((height, width), rng.uniform(70, 150), np.float32)
    for _ in range(int(rng.integers(4, 9))):  # static grey clutter
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        h, w = rng.integers(height // 10, height // 3), rng.integers(width // 10, width // 3)
        background[y0 : y0 + h, x0 : x0 + w] = rng.uniform(30, 220)
    side = min(height, width)
    centre_box = np.array([(width - side) / 2, (height - side) / 2])
    radius = rng.uniform(0.09, 0.15, size=len(labels)) * side  # the shape's size changes every second
    margin = 0.16 * side
    shape_path = _bouncing(rng, count, centre_box + margin, centre_box + side - margin)
    distractor_path = _bouncing(rng, count, np.zeros(2), np.array([width, height], float))
    distractor_radius, distractor_grey = rng.uniform(0.08, 0.2) * side, rng.uniform(20, 235)
    flicker = 1 + 0.04 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * np.arange(count) / fps)
    frames = np.empty((count, height, width, 3), np.uint8)
    for j in range(count):
        second = j // fps
        image = np.repeat(background[:, :, None], 3, axis=2)
        dx, dy = xx - distractor_path[j, 0], yy - distractor_path[j, 1]
        image[dx**2 + dy**2 < distractor_radius**2] = distractor_grey
        label, r = int(labels[second]), radius[second]
        dx, dy = xx - shape_path[j, 0], yy - shape_path[j, 1]
        inside = dx**2 + dy**2 < r**2 if SHAPES[label // len(HUES)] == "disc" else (abs(dx) < r) & (abs(dy) < r)
        image[inside] = class_colour(label)
        image = image * flicker[j] + rng.normal(0, 5, image.shape).astype(np.float32)
        frames[j] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def synthetic_clip(
    seed: Sequence[int] | int,
    *,
    seconds: int = 6,
    classes: int = MAX_CLASSES,
    longest_segment: int = 3,
    size: tuple[int, int] = (120, 160),
    fps: int = 10,
    sample_rate: int = L3_SAMPLE_RATE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic video as arrays: ``(frames uint8 (seconds × fps, height, width, 3), audio float32
    (seconds × sample_rate,), class per second int64 (seconds,))``, a function of ``seed`` alone."""
    rng = np.random.default_rng(seed)
    labels = _segments(rng, seconds, classes, longest_segment)
    return _frames(rng, labels, size, fps), _soundtrack(rng, labels, sample_rate), labels


@lru_cache(maxsize=1)
def _video_codec(ffmpeg: str) -> list[str]:
    """ffmpeg's options for the video stream: H.264 (libx264) when this ffmpeg has it, else MPEG-4 part 2."""
    encoders = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    if " libx264 " in encoders:
        return ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
    return ["-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p"]


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.round(np.clip(audio, -1, 32767 / 32768) * 32768).astype("<i2").tobytes())


def encode_video(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int, sample_rate: int) -> Path:
    """Encode uint8 RGB ``frames`` (piped raw to ffmpeg) and mono ``audio`` (a 16-bit WAV) into the video ``path``
    (``.mp4``: H.264 or MPEG-4 video, AAC audio; ``.mkv``/``.avi``: the same video, 16-bit PCM audio)."""
    ffmpeg, _ = find_ffmpeg()
    count, height, width, _ = frames.shape
    audio_codec = ["-c:a", "aac", "-b:a", "192k"] if path.suffix.lower() == ".mp4" else ["-c:a", "pcm_s16le"]
    with tempfile.TemporaryDirectory(prefix="soundnet-l3-") as tmp:
        wav = Path(tmp) / "audio.wav"
        _write_wav(wav, audio, sample_rate)
        command = [
            ffmpeg, "-v", "error", "-y", "-fflags", "+bitexact",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0",
            "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", *_video_codec(ffmpeg), "-threads", "1",
            *audio_codec, "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1",
            "-t", f"{count / fps:g}", str(path),
        ]  # fmt: skip
        done = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise VideoError(f"{path}: ffmpeg could not encode it: {lines[-1] if lines else 'no message'}")
    return path


def _check_int(value: object, what: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``low..high``, else a :class:`ConfigError` naming ``what``."""
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{what} must be a whole number {bound}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def render_videos(
    output_dir: str | os.PathLike,
    num_videos: int = 40,
    *,
    seconds: int = 6,
    classes: int = MAX_CLASSES,
    longest_segment: int = 3,
    size: tuple[int, int] = (120, 160),
    fps: int = 10,
    sample_rate: int = L3_SAMPLE_RATE,
    seed: int = 0,
    extension: str = ".mp4",
) -> list[SyntheticVideo]:
    """Render ``num_videos`` synthetic videos of ``seconds`` s (``size`` = (height, width), ``fps`` frames per
    second, audio at ``sample_rate``) as ``video-NNNN.mp4`` in ``output_dir``, with ``ground_truth.json``.

    Classes ``0 .. classes - 1`` (see the module docstring) in segments of 1..``longest_segment`` s. Returns the
    videos with their class per second."""
    num_videos = _check_int(num_videos, "num_videos", 1)
    seconds = _check_int(seconds, "seconds", 1)
    classes = _check_int(classes, "classes", 2, MAX_CLASSES)
    longest_segment = _check_int(longest_segment, "longest_segment", 1)
    fps = _check_int(fps, "fps", 1)
    sample_rate = _check_int(sample_rate, "sample_rate", round(max(FREQUENCIES) / 0.45) + 1)
    if not isinstance(size, tuple | list) or len(size) != 2:
        raise ConfigError(f"size must be (height, width), got {size!r}")
    size = (_check_int(size[0], "size height", 32), _check_int(size[1], "size width", 32))
    if extension not in (".mp4", ".mkv", ".avi"):
        raise ConfigError(f"extension must be '.mp4', '.mkv' or '.avi', got {extension!r}")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    videos = []
    for i in range(num_videos):
        frames, audio, labels = synthetic_clip(
            [seed, i],
            seconds=seconds,
            classes=classes,
            longest_segment=longest_segment,
            size=size,
            fps=fps,
            sample_rate=sample_rate,
        )
        path = encode_video(output / f"video-{i:04d}{extension}", frames, audio, fps, sample_rate)
        videos.append(SyntheticVideo(path.resolve(), labels))
    truth = {
        "format": GROUND_TRUTH_FORMAT,
        "seed": seed,
        "sample_rate": sample_rate,
        "fps": fps,
        "size": list(size),
        "classes": classes,
        "videos": {v.path.name: v.classes.tolist() for v in videos},
    }
    (output / GROUND_TRUTH_NAME).write_text(json.dumps(truth, indent=1))
    return videos


def read_ground_truth(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The class per second of each video :func:`render_videos` wrote into ``folder``, by file name."""
    path = Path(folder) / GROUND_TRUTH_NAME
    try:
        truth = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{str(path)!r}: cannot read the synthetic ground truth ({exc})") from None
    if not isinstance(truth, dict) or truth.get("format") != GROUND_TRUTH_FORMAT:
        raise ConfigError(f"{str(path)!r}: expected format {GROUND_TRUTH_FORMAT!r}")
    return {name: np.asarray(labels, np.int64) for name, labels in truth["videos"].items()}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m soundnet_keras.l3.synthetic OUT --videos N``: render synthetic audio-visual videos."""
    parser = argparse.ArgumentParser(prog="python -m soundnet_keras.l3.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("output", help="folder for video-NNNN.mp4 and ground_truth.json")
    parser.add_argument("--videos", type=int, default=40, help="number of videos (default 40)")
    parser.add_argument("--seconds", type=int, default=6, help="length of each video in seconds (default 6)")
    parser.add_argument("--classes", type=int, default=MAX_CLASSES, help=f"classes, 2..{MAX_CLASSES}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        check_positive(args.videos, "--videos", integer=True)
        videos = render_videos(args.output, args.videos, seconds=args.seconds, classes=args.classes, seed=args.seed)
    except SoundNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(videos)} videos in {args.output} ({args.seconds} s each); classes per second in {GROUND_TRUTH_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
