"""``soundnet-extract``: features of named SoundNet layers for many audio files, to ``.npz`` or HDF5, with frame times.

Examples::

    soundnet-extract clips/ --layer pool5 --output features.npz
    soundnet-extract a.wav b.flac --layer conv5 --layer conv7 --output features.h5

Layout, for file number ``i`` (in input order) and each requested layer ``L``:

* ``.npz``: ``files`` (paths, strings), ``layers``, ``clip{i}/{L}`` (frames, channels) float32,
  ``clip{i}/{L}_times`` (frames, 3) float64 start / centre / end seconds, ``clip{i}/duration`` seconds,
  ``clip{i}/padded`` bool;
* HDF5 (``.h5`` / ``.hdf5``): group ``clip{i}`` with attributes ``path``, ``duration``, ``padded`` and datasets
  ``{L}`` and ``{L}_times`` as above; root attributes ``files`` and ``layers``.

Clips shorter than the deepest requested layer needs are repeated circularly (``--no-pad`` rejects them). Failed
files are reported and skipped (their index is absent); the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..architecture import output_names
from ..audio import CHANNEL_MODES, decode_files
from ..errors import ConfigError, SoundNetError
from ..files import atomic_path
from .common import (
    EXIT_FILE_FAILED,
    EXIT_OK,
    add_precision_argument,
    check_output,
    input_files,
    load_model,
    positive_float,
    print_error,
    run_cli,
)

FORMATS = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5"}


def build_parser() -> argparse.ArgumentParser:
    """The ``soundnet-extract`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="soundnet-extract",
        description="Write SoundNet features of named layers for many audio files to .npz or HDF5, with frame times.",
    )
    parser.add_argument("inputs", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    parser.add_argument(
        "-l",
        "--layer",
        action="append",
        dest="layers",
        metavar="NAME",
        help=f"layer to extract, repeatable (default pool5); one of {', '.join(output_names('soundnet8'))}",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file: .npz, .h5 or .hdf5")
    parser.add_argument("--channels", choices=CHANNEL_MODES, default="mix", help="mix to mono (default) or first")
    parser.add_argument(
        "--no-pad", action="store_true", help="reject clips too short for the layer instead of repeating them"
    )
    parser.add_argument("--weights", default="soundnet8", help="pretrained preset or weights file (default soundnet8)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: CPUs, at most 8)")
    parser.add_argument("--chunk-seconds", type=positive_float, default=None, help="chunk length for long files")
    add_precision_argument(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or model-loading messages")
    return parser


def _run(args: argparse.Namespace) -> int:
    fmt = FORMATS.get(args.output.suffix.lower())
    if fmt is None:
        raise ConfigError(f"--output {str(args.output)!r}: expected a .npz, .h5 or .hdf5 file name")
    files = input_files(args.inputs)
    check_output(args.output, "--output", files)
    net = load_model(args.weights, verbose=not args.quiet, precision=args.precision)
    layers = tuple(dict.fromkeys(args.layers or ["pool5"]))
    for layer in layers:
        net.geometry(layer)  # validates the names before any work
    if args.chunk_seconds is not None:
        net.chunk_seconds = args.chunk_seconds
    arrays: dict[str, np.ndarray] = {}
    clips: dict[int, dict[str, object]] = {}
    failed = 0
    from tqdm import tqdm  # ~30 ms to import: only when the command runs, so --help stays fast

    decoded = decode_files(files, channels=args.channels, workers=args.workers)
    for index, item in enumerate(tqdm(decoded, total=len(files), unit="file", disable=True if args.quiet else None)):
        try:
            if not item.ok:
                raise item.error
            feats = net.intermediates(item.waveform, layers=layers, pad=None if args.no_pad else "repeat")
        except SoundNetError as exc:
            failed += 1
            message = str(exc) if str(item.path) in str(exc) else f"{str(item.path)!r}: {exc}"
            print_error(message)
            continue
        info: dict[str, object] = {"path": str(item.path), "duration": item.duration, "padded": False}
        for layer, feat in feats.items():
            times = np.stack([feat.times.start, feat.times.center, feat.times.end], axis=1)
            info[layer] = feat.values.astype(np.float32, copy=False)
            info[f"{layer}_times"] = times
            info["padded"] = bool(info["padded"] or feat.padded)
        clips[index] = info
    if fmt == "npz":
        arrays["files"] = np.array([str(f) for f in files])
        arrays["layers"] = np.array(layers)
        for index, info in clips.items():
            for key, value in info.items():
                if key != "path":
                    arrays[f"clip{index}/{key}"] = np.asarray(value)
        _write_npz(args.output, arrays)
    else:
        _write_hdf5(args.output, files, layers, clips)
    if failed:
        print_error(f"{failed} of {len(files)} files failed")
        return EXIT_FILE_FAILED
    return EXIT_OK


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def _write_hdf5(path: Path, files: Sequence[Path], layers: Sequence[str], clips: dict[int, dict[str, object]]) -> None:
    import h5py  # heavy (h5py): only for HDF5 output

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["files"] = [str(f) for f in files]
        handle.attrs["layers"] = list(layers)
        for index, info in clips.items():
            group = handle.create_group(f"clip{index}")
            for key, value in info.items():
                if key in ("path", "duration", "padded"):
                    group.attrs[key] = value
                else:
                    group.create_dataset(key, data=np.asarray(value), compression="gzip")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``soundnet-extract``; returns the exit status (0: all files done, 1: some failed)."""
    return run_cli(_run, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
