"""Throughput of ``soundnet-extract`` (files/s) on real clips, as a user runs it: a fresh process per run.

    python benchmarks/bench_extract.py --weights soundnet8.weights.h5 ../shared/esc10-dev/audio
    python benchmarks/bench_extract.py --weights W --layers pool5 conv7 --format parquet --repeat 2 DIR
    python benchmarks/bench_extract.py --weights W --runner direct --direct-num-workers 2 DIR   # Apache Beam

Runs the extraction into a fresh folder (cold: start-up, model load, every file), then again into the same folder
(resume: everything already done, so only the manifest check), and prints one JSON line per run: files, seconds
of the whole process, files/s, and the files/s of the extraction alone (the tool's own summary line, which
excludes start-up and model loading). ``--runner`` runs the Apache Beam pipeline instead (``--direct-num-workers``
worker processes, ``multi_processing`` mode, for the DirectRunner); its extraction time includes starting the
workers and loading the model in each.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"(\d+) written, (\d+) already done, (\d+) failed of (\d+) input\(s\) in ([\d.]+) s")


def run_once(args: argparse.Namespace, output: Path) -> dict:
    command = [sys.executable, "-m", "soundnet_keras.cli.extract", *args.inputs, "-o", str(output)]
    command += ["--weights", args.weights, "--format", args.format, "--batch-size", str(args.batch_size)]
    command += [arg for layer in args.layers for arg in ("-l", layer)] + ["--progress", "off"]
    if args.runner:
        command += ["--runner", args.runner]
        if args.direct_num_workers:
            command += ["--direct-num-workers", str(args.direct_num_workers)]
            command += ["--direct-running-mode", "multi_processing"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - began
    match = SUMMARY.search(done.stderr)
    if not match:
        raise SystemExit(f"no summary line from soundnet-extract (exit {done.returncode}): {done.stderr[-2000:]}")
    written, skipped, failed, total, inner = (*map(int, match.groups()[:4]), float(match.group(5)))
    return {
        "files": total,
        "written": written,
        "skipped": skipped,
        "failed": failed,
        "process_s": round(seconds, 2),
        "files_per_s": round(total / seconds, 2),
        "extraction_s": inner,
        "extraction_files_per_s": round(total / inner, 2) if inner else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="audio files or folders")
    parser.add_argument("--weights", required=True, help="a converted soundnet8.weights.h5 (or a preset name)")
    parser.add_argument("--layers", nargs="+", default=["pool5"])
    parser.add_argument("--format", default="npz", choices=("npz", "hdf5", "parquet"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="cold runs, each into a fresh folder (default 1)")
    parser.add_argument("--runner", default=None, help="an Apache Beam runner (direct...); default: one process")
    parser.add_argument("--direct-num-workers", type=int, default=None, help="DirectRunner worker processes")
    args = parser.parse_args()
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-extract-") as folder:
            output = Path(folder) / "features"
            cold = run_once(args, output)
            engine = {"runner": args.runner or "single-process", "workers": args.direct_num_workers}
            print(json.dumps({"run": "cold", "format": args.format, "layers": args.layers, **engine, **cold}))
            again = run_once(args, output)
            print(json.dumps({"run": "resume", "format": args.format, "layers": args.layers, **engine, **again}))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
