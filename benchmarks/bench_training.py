"""Training throughput of SoundNet (clips/s) on 20-s crops: one optimizer step = forward + KL loss + backward + Adam.

Measures the model, not the input pipeline: one random batch (audio in [-1, 1], random teacher distributions) is
repeated from device memory. Each precision is measured in a fresh process (Keras' dtype policy is global).

    python benchmarks/bench_training.py                          # soundnet8, batch 64, default + mixed_float16
    python benchmarks/bench_training.py --batch-size 2 --steps 3 --precision default mixed_bfloat16   # CPU smoke run
    python benchmarks/bench_training.py --strategy data_parallel # all GPUs; --batch-size is the global batch
    KERAS_BACKEND=jax python benchmarks/bench_training.py       # any Keras backend (data_parallel: TF or JAX)

Prints one JSON line per precision: arch, batch, crop seconds, precision, device, replicas, seconds per step and
clips/s (median over the timed steps, after the warm-up steps).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def measure(args: argparse.Namespace, precision: str) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from soundnet_keras.architecture import SAMPLE_RATE, output_length
    from soundnet_keras.precision import precision_scope
    from soundnet_keras.training.strategies import fit_scope
    from soundnet_keras.training.train import (
        STANDARD_CLASSES,
        build_student,
        compile_student,
        make_strategy,
        set_precision,
    )

    set_precision(precision)
    keras.utils.set_random_seed(0)
    strategy = make_strategy(args.strategy)
    samples = round(args.crop_seconds * SAMPLE_RATE)
    frames = output_length(args.arch, "objects", samples)
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.5, 0.5, (args.batch_size, samples)).astype(np.float32)
    targets = {}
    for head, classes in STANDARD_CLASSES.items():
        p = rng.random((args.batch_size, frames, classes)).astype(np.float32)
        targets[head] = p / p.sum(-1, keepdims=True)
    data = tf.data.Dataset.from_tensors((audio, targets)).repeat()
    with strategy.scope():
        model = build_student(args.arch)
        compile_student(model)
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # wait for the step to finish
            times.append(time.perf_counter() - self.start)

    with fit_scope(strategy), precision_scope("highest" if precision == "highest" else "default"):
        model.fit(data, steps_per_epoch=args.warmup + args.steps, epochs=1, verbose=0, callbacks=[Timer()])
    step = float(np.median(times[args.warmup :]))
    gpus, device = _accelerators()
    return {
        "arch": args.arch,
        "batch": args.batch_size,
        "crop_seconds": args.crop_seconds,
        "precision": precision,
        "backend": keras.backend.backend(),
        "device": device,
        "gpus": len(gpus),
        "cpu_threads": os.cpu_count(),
        "strategy": args.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "steps_timed": args.steps,
        "seconds_per_step": round(step, 4),
        "clips_per_s": round(args.batch_size / step, 3),
    }


def _accelerators() -> tuple[list, str]:
    """(the GPUs the active backend sees, the first one's name or "CPU")."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return gpus, tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"
    if backend == "jax":
        import jax

        gpus = jax.devices("gpu") if jax.default_backend() == "gpu" else []
        return gpus, gpus[0].device_kind if gpus else "CPU"
    import torch

    count = torch.cuda.device_count()
    return list(range(count)), torch.cuda.get_device_name(0) if count else "CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="soundnet8", choices=("soundnet8", "soundnet5"))
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (default 64, the original's)")
    parser.add_argument("--crop-seconds", type=float, default=20.0)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (tracing, autotuning)")
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["default", "mixed_float16"],
        choices=("highest", "default", "mixed_bfloat16", "mixed_float16"),
    )
    parser.add_argument("--strategy", default="default", choices=("default", "data_parallel", "mirrored"))
    parser.add_argument("--_one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one:
        print(json.dumps(measure(args, args._one)), flush=True)
        return 0
    status = 0
    for precision in args.precision:
        argv = [a for a in sys.argv[1:]]
        done = subprocess.run([sys.executable, __file__, *argv, "--_one", precision], capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            print(json.dumps({"precision": precision, "error": done.stderr.strip().splitlines()[-1:]}))
            status = 1
        else:
            print(lines[-1], flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
