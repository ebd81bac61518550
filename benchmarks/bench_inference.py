"""Inference benchmark: network throughput, end-to-end CLI throughput, peak memory on a one-hour file.

Run from the repository root (needs the pretrained weights cached, or network access once)::

    python benchmarks/bench_inference.py            # full run, about 3-5 minutes on 2 cores
    python benchmarks/bench_inference.py --quick    # fewer repeats

(a) network throughput, seconds of audio per wall second, 10-s clips, batch 16, up to conv7 and the full model:
    * baseline: the network as the public Keras ports build it (ZeroPadding1D + Conv1D + BatchNormalization, which
      is exactly ``build_network``), one ``model.predict`` per clip;
    * keras model called inside ``tf.function``, batch 16 (no BN folding);
    * this package's runner (``SoundNet.forward``): layer table with ``tf.nn`` ops, BN and input scaling folded into
      the convolutions inside the compiled function, batch 16, with XLA ``jit_compile`` off and on.
(b) end-to-end: a folder of 5-s 44.1 kHz WAV clips through the CLI's code path (parallel decode + soxr resample +
    repeat to the 20-s training crop + batched inference + formatting), in process after warm-up; and the CLI as a
    subprocess, TensorFlow import and model loading included.
(c) peak resident memory of ``soundnet-classify`` on a one-hour 22,050 Hz file (subprocess, ru_maxrss).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import soundfile

SR = 22050


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up (tracing, allocation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def network_table(net, repeats: int) -> list[tuple[str, str, float]]:
    import keras
    import tensorflow as tf

    from soundnet_keras.network import stage_layer

    rng = np.random.default_rng(0)
    batch = (0.1 * rng.standard_normal((16, 10 * SR))).astype(np.float32)
    audio_seconds = batch.shape[0] * batch.shape[1] / SR
    rows = []
    for label, names in (("conv1-conv7", ("conv7",)), ("full model", ("objects", "scenes"))):
        model = net.keras_model
        outputs = {n: model.get_layer(stage_layer(net.arch, n)).output for n in names}
        sub = keras.Model(model.input, outputs)

        def baseline(sub=sub):
            for clip in batch:
                sub.predict(clip[None], verbose=0)

        keras_fn = tf.function(lambda x, sub=sub: sub(x, training=False), reduce_retracing=True)

        def keras_batched(keras_fn=keras_fn):
            {k: v.numpy() for k, v in keras_fn(batch).items()}

        results = {"baseline: Keras ports (ZeroPadding1D+Conv1D+BN), predict per clip": best_of(baseline, repeats)}
        results["keras model in tf.function, batch 16"] = best_of(keras_batched, repeats)
        for jit in (False, True):
            net.jit_compile = jit
            results[f"soundnet-keras forward (BN folded), batch 16, XLA {'on' if jit else 'off'}"] = best_of(
                lambda names=names: net.forward(batch, names), repeats
            )
        net.jit_compile = False
        for variant, seconds in results.items():
            rows.append((label, variant, audio_seconds / seconds))
    return rows


def make_clips(folder: Path, count: int) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(5 * 44100) / 44100
    for i in range(count):
        wave = 0.2 * np.sin(2 * np.pi * (200 + 30 * i) * t) + 0.05 * rng.standard_normal(t.size)
        soundfile.write(folder / f"clip{i:03d}.wav", wave.astype(np.float32), 44100, subtype="PCM_16")


def end_to_end(net, folder: Path, count: int, weights: str) -> tuple[float, float, float]:
    import contextlib
    import io

    from soundnet_keras.cli import classify

    args = [str(folder), "--json", "-q", "--weights", weights]
    # the CLI's own code path with the model already loaded (its classifier hook returns the loaded network)
    original = classify.make_classifier
    classify.make_classifier = lambda a: classify.Classifier(net, pad=not a.no_pad, batch_size=a.batch_size)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            classify.main(args)  # warm-up: traces the batch shapes
            start = time.perf_counter()
            status = classify.main(args)
            in_process = time.perf_counter() - start
    finally:
        classify.make_classifier = original
    assert status == 0
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "soundnet_keras.cli.classify", *args], capture_output=True, text=True, check=False
    )
    subprocess_wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    audio = 5.0 * count
    return audio / in_process, audio / subprocess_wall, in_process


def peak_memory_one_hour(workdir: Path, weights: str) -> tuple[float, float]:
    path = workdir / "one_hour.wav"
    rng = np.random.default_rng(2)
    with soundfile.SoundFile(path, "w", SR, 1, subtype="PCM_16") as handle:
        for _ in range(60):
            handle.write((0.1 * rng.standard_normal(60 * SR)).astype(np.float32))
    # a fresh parent whose only child is the CLI, so ru_maxrss of its children is the CLI's own peak
    probe = (
        "import resource, subprocess, sys, time; start = time.perf_counter(); "
        "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "assert proc.returncode == 0, proc.stderr; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - start)"
    )
    cli = [sys.executable, "-m", "soundnet_keras.cli.classify", str(path), "-q", "--weights", weights]
    out = subprocess.run([sys.executable, "-c", probe, *cli], capture_output=True, text=True, check=True).stdout
    peak_kib, wall = out.split()
    return int(peak_kib) / 1024**2, float(wall)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and clips")
    parser.add_argument("--weights", default="soundnet8")
    args = parser.parse_args()
    import tensorflow as tf

    from soundnet_keras import SoundNet

    net = SoundNet.from_pretrained(args.weights, verbose=False)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}; {time.strftime('%Y-%m-%d')}"
    )
    print("\n(a) network throughput, 10-s clips, batch 16 (x real time = seconds of audio per wall second)")
    rows = network_table(net, 2 if args.quick else 5)
    baseline = {layers: x for layers, variant, x in rows if variant.startswith("baseline")}
    print(f"| {'layers':<12} | {'variant':<70} | {'x real time':>11} | {'vs baseline':>11} |")
    print(f"|{'-' * 14}|{'-' * 72}|{'-' * 13}|{'-' * 13}|")
    for layers, variant, x in rows:
        print(f"| {layers:<12} | {variant:<70} | {x:>11.0f} | {x / baseline[layers]:>10.2f}x |")

    count = 32 if args.quick else 96
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        make_clips(folder, count)
        in_proc, sub, seconds = end_to_end(net, folder, count, args.weights)
        print(
            f"\n(b) end to end, {count} x 5-s 44.1 kHz 16-bit WAV clips (decode + resample + repeat to the 20-s "
            "training crop + inference + JSON)"
        )
        print(
            f"    CLI code path, in process, model loaded, warm: {in_proc:.0f}x real time "
            f"({seconds:.2f} s for {5 * count} s of audio)"
        )
        print(f"    CLI subprocess incl. TensorFlow import and model load: {sub:.0f}x real time")
        peak_gib, wall = peak_memory_one_hour(Path(tmp), args.weights)
        print(
            f"\n(c) one-hour 22,050 Hz file through soundnet-classify: peak RSS {peak_gib:.2f} GiB, "
            f"wall {wall:.1f} s ({3600 / wall:.0f}x real time incl. start-up)"
        )


if __name__ == "__main__":
    main()
