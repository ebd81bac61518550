"""Inference on every Keras backend: throughput, compile cost and error of each precision, against a plain PyTorch
implementation of the same network in the same run.

Run from the repository root; each backend runs in its own process (``KERAS_BACKEND`` is read once per process)::

    python benchmarks/bench_backends.py                      # tensorflow, jax, torch; random weights
    python benchmarks/bench_backends.py --backends jax torch # e.g. on a machine without TensorFlow
    python benchmarks/bench_backends.py --weights soundnet8.weights.h5 \\
        --golden ../shared/golden/railroad_soundnet8.npz \\
        --clip ../shared/audio/railroad_audio.wav     # adds the error of each precision vs the golden outputs

Per backend and precision: ``SoundNet.forward`` (the package's inference pass, BatchNorm folded) on 10-s clips in
batches of 16 (x real time = seconds of audio per wall second, best of the repeats after a warm-up), the first call
(tracing/compilation included), and the cost of a new input length (one call at a length not seen before). The
reference is a plain ``torch.nn`` SoundNet-8 (Conv1d + BatchNorm1d + MaxPool1d, eval mode) holding the same weights,
in float32 under ``torch.inference_mode``, on the same device, and in bfloat16 autocast where ``mixed_bfloat16`` is
measured. On a GPU both sides use the GPU (JAX and PyTorch see it themselves).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SR = 22050
BATCH, SECONDS = 16, 10


def best_of(fn, repeats: int) -> tuple[float, float]:
    """(first call, best of ``repeats`` further calls), seconds."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, min(times)


def torch_reference(net):
    """A plain ``torch.nn`` module of ``net``'s layer table with ``net``'s weights: (batch, samples) -> heads."""
    import torch

    from soundnet_keras.architecture import WAVEFORM_SCALE, Conv, heads, trunk
    from soundnet_keras.network import get_params

    params = get_params(net.keras_model)

    def conv(spec: Conv) -> list:
        kernel = params[spec.name]["kernel"]  # (k, c_in, c_out)
        layer = torch.nn.Conv1d(kernel.shape[1], kernel.shape[2], spec.kernel, spec.stride, spec.pad)
        layer.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 1, 0)))
        layer.bias.data = torch.from_numpy(params[spec.name]["bias"])
        modules = [layer]
        if spec.batchnorm:
            bn = torch.nn.BatchNorm1d(kernel.shape[2], eps=1e-5)
            values = params[f"{spec.name}_bn"]
            bn.weight.data, bn.bias.data = torch.from_numpy(values["gamma"]), torch.from_numpy(values["beta"])
            bn.running_mean.data = torch.from_numpy(values["moving_mean"])
            bn.running_var.data = torch.from_numpy(values["moving_variance"])
            modules.append(bn)
        if spec.relu:
            modules.append(torch.nn.ReLU())
        return modules

    class Reference(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers = []
            for spec in trunk(net.arch):
                layers += conv(spec) if isinstance(spec, Conv) else [torch.nn.MaxPool1d(spec.size, spec.stride)]
            self.trunk = torch.nn.Sequential(*layers)
            self.heads = torch.nn.ModuleDict({h.name: torch.nn.Sequential(*conv(h)) for h in heads(net.arch)})

        def forward(self, batch):
            x = self.trunk(batch[:, None, :] * WAVEFORM_SCALE)
            return {name: head(x) for name, head in self.heads.items()}

    return Reference().eval()


def run_reference(net, batch: np.ndarray, repeats: int, bfloat16: bool) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch_reference(net).to(device)
    data = torch.from_numpy(batch).to(device)

    def step():
        with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=bfloat16):
            out = model(data)
            if device == "cuda":
                torch.cuda.synchronize()
            return out

    first, best = best_of(step, repeats)
    return {"first_s": first, "best_s": best, "device": device}


def measure(args: argparse.Namespace) -> dict:
    """This process's backend: every precision, plus the PyTorch reference (when PyTorch is installed)."""
    import importlib.util

    import keras

    from soundnet_keras import SoundNet
    from soundnet_keras.precision import PRECISIONS

    net = SoundNet.from_pretrained(args.weights, verbose=False) if args.weights else SoundNet("soundnet8")
    batch = (0.1 * np.random.default_rng(0).standard_normal((BATCH, SECONDS * SR))).astype(np.float32)
    odd = batch[:, : SECONDS * SR - 2_345]  # still one head frame (209,374 samples)
    audio_seconds = BATCH * SECONDS
    golden = np.load(args.golden) if args.golden else None
    clip = None
    if golden is not None:
        import soundfile

        clip, rate = soundfile.read(args.clip, dtype="float32")
    result = {"backend": keras.backend.backend(), "rows": []}
    for precision in PRECISIONS:
        net.precision = precision
        first, best = best_of(lambda: net.forward(batch, ("objects", "scenes")), args.repeats)
        start = time.perf_counter()
        net.forward(odd, ("objects", "scenes"))
        new_length = time.perf_counter() - start
        row = {
            "precision": precision,
            "x_real_time": audio_seconds / best,
            "first_call_s": first,
            "new_length_s": new_length,
        }
        if golden is not None:
            got = net.intermediates(clip, rate)
            row["golden_error"] = max(
                float(np.max(np.abs(got[n].values - golden[n])) / np.max(np.abs(golden[n])))
                for n in golden.files
                if n in got
            )
        result["rows"].append(row)
    if importlib.util.find_spec("torch") is not None:
        for bfloat16 in (False, True):
            ref = run_reference(net, batch, args.repeats, bfloat16)
            result["rows"].append(
                {
                    "precision": "reference " + ("bf16 autocast" if bfloat16 else "float32"),
                    "x_real_time": audio_seconds / ref["best_s"],
                    "first_call_s": ref["first_s"],
                    "device": ref["device"],
                }
            )
    return result


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
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--weights", default=None, help="weights file (default: random initialisation)")
    parser.add_argument("--golden", default=None, help="golden outputs .npz (needs --weights and --clip)")
    parser.add_argument("--clip", default=None, help="the golden outputs' clip")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args)))
        return
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d')}"
    )
    print(f"SoundNet-8 heads, {BATCH} x {SECONDS}-s clips per call; x real time = seconds of audio per wall second\n")
    print("| backend | precision | x real time | vs reference | first call (s) | new length (s) | error vs golden |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for backend in args.backends:
        command = [sys.executable, __file__, "--worker", "--repeats", str(args.repeats)]
        for option in ("weights", "golden", "clip"):
            if getattr(args, option):
                command += [f"--{option}", getattr(args, option)]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            print(f"| {backend} | failed: {done.stderr.strip().splitlines()[-1:]} | | | | | |")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        reference = {r["precision"]: r["x_real_time"] for r in result["rows"] if r["precision"].startswith("ref")}
        for row in result["rows"]:
            if row["precision"].startswith("ref") and backend != args.backends[-1]:
                continue  # the reference once, with the last backend
            base = reference.get(
                "reference bf16 autocast" if row["precision"] == "mixed_bfloat16" else "reference float32"
            )
            ratio = f"{row['x_real_time'] / base:.2f}x" if base and not row["precision"].startswith("ref") else ""
            error = f"{row['golden_error']:.1e}" if "golden_error" in row else ""
            new_length = f"{row['new_length_s']:.2f}" if "new_length_s" in row else ""
            label = backend if not row["precision"].startswith("ref") else f"torch.nn ({row.get('device', '')})"
            print(
                f"| {label} | {row['precision']} | {row['x_real_time']:.0f} | {ratio} | {row['first_call_s']:.2f} | "
                f"{new_length} | {error} |"
            )


if __name__ == "__main__":
    main()
