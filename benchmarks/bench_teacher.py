"""Teacher-labelling throughput: ``extract_shards`` on generated videos with two image teachers.

    python benchmarks/bench_teacher.py [--videos 16] [--seconds 20] [--workers N]

Videos: ffmpeg's ``testsrc2`` pattern (320x240, 25 fps, H.264) with a sine tone, ``--seconds`` long. Teachers:
``keras.applications.MobileNetV2`` with random weights (nothing to download), 1000 classes for objects and 365
for scenes, 224x224 input, 5-s steps as the original. Prints videos/s and teacher windows/s; the shards go to a
temporary folder. ``--workers`` is passed to ``extract_shards`` when it takes one (0: decode in the main thread).
"""

from __future__ import annotations

import argparse
import inspect
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def make_videos(folder: Path, count: int, seconds: float) -> list[Path]:
    """``count`` test videos of ``seconds`` each (pattern + tone), made with ffmpeg."""
    videos = []
    for i in range(count):
        path = folder / f"video{i:03d}.mp4"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={seconds}",
             "-f", "lavfi", "-i", f"sine=frequency={200 + 50 * i}:duration={seconds}",
             "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path)],
            check=True,
        )  # fmt: skip
        videos.append(path)
    return videos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    import keras

    from soundnet_keras.training.teacher import extract_shards, load_teacher, parse_teacher_spec

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        videos = make_videos(root, args.videos, args.seconds)
        made = time.perf_counter() - started
        teachers = {}
        for head, classes in (("objects", 1000), ("scenes", 365)):
            path = root / f"{head}.keras"
            keras.applications.MobileNetV2(weights=None, classes=classes).save(path)
            teachers[head] = load_teacher(parse_teacher_spec(head, f"{path},preprocess=tf"))
        options = {}
        if args.workers is not None and "workers" in inspect.signature(extract_shards).parameters:
            options["workers"] = args.workers
        teachers["objects"].probabilities(__import__("numpy").zeros((1, 224, 224, 3), "uint8"))  # warm up
        teachers["scenes"].probabilities(__import__("numpy").zeros((1, 224, 224, 3), "uint8"))
        started = time.perf_counter()
        report = extract_shards(videos, root / "shards", teachers, step_seconds=5.0, **options)
        elapsed = time.perf_counter() - started
    windows = len(report.done) * int(args.seconds // 5)
    print(
        f"{len(report.done)} videos of {args.seconds:g} s ({windows} windows x 2 teachers) in {elapsed:.1f} s: "
        f"{len(report.done) / elapsed:.2f} videos/s, {windows / elapsed:.1f} windows/s "
        f"(options {options or 'none'}; {os.cpu_count()} CPUs; videos made in {made:.1f} s)"
    )


if __name__ == "__main__":
    main()
