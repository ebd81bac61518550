"""``soundnet-train-head``: train a classifier head on SoundNet features from labelled audio files.

Data is a folder with one subfolder per class (audio files inside, any depth) or a CSV file of ``file,label`` rows
(header optional; relative paths are relative to the CSV's folder). The command extracts the features once (cached),
reports stratified cross-validated clip accuracy, fits the head on all clips and saves it as one file that
``soundnet-classify --head FILE`` uses::

    soundnet-train-head my_sounds/ -o my_sounds.head.h5 --head svm --cv 5
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ..errors import ConfigError
from .common import EXIT_USAGE, add_cache_arguments, clear_cache_if_asked, guard, load_model, print_error

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".snd", ".w64", ".caf"})


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line ``error: <message>`` usage errors (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        print_error(message)
        raise SystemExit(EXIT_USAGE)


def parse_float_list(text: str, what: str) -> tuple[float, ...]:
    """``"0.01,0.1,1"`` -> floats; a clear error otherwise."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{what} is empty")
    return values


def parse_window(text: str) -> float | None:
    """Window length in seconds, or ``none``/``clip`` for one window per clip."""
    if text.lower() in ("none", "clip"):
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--window must be seconds or 'none', got {text!r}") from None


def read_folder(root: Path) -> tuple[list[Path], list[str]]:
    """Audio files of a class-per-subfolder layout, and their labels (the subfolder names)."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ConfigError(f"{str(root)!r} has no class subfolders: expected one subfolder of audio files per class")
    paths, labels, empty = [], [], []
    for folder in classes:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            empty.append(folder.name)
        paths.extend(files)
        labels.extend([folder.name] * len(files))
    if empty:
        raise ConfigError(f"class folder(s) without audio files in {str(root)!r}: {', '.join(empty)} (audio files "
                          f"have one of the suffixes {', '.join(sorted(AUDIO_SUFFIXES))})")
    return paths, labels


def read_csv_list(path: Path) -> tuple[list[Path], list[str]]:
    """``file,label`` rows of a CSV file (header ``file,label`` optional); relative files from the CSV's folder."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "label"]:
        rows = rows[1:]
    if not rows:
        raise ConfigError(f"{str(path)!r} lists no clips: expected rows of file,label")
    paths, labels, missing = [], [], []
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise ConfigError(f"{str(path)!r} row {number}: expected file,label, got {row!r}")
        file = Path(row[0].strip()).expanduser()
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            missing.append(str(file))
        paths.append(file)
        labels.append(row[1].strip())
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(f"{len(missing)} file(s) listed in {str(path)!r} do not exist: {shown}")
    return paths, labels


def read_labelled(data: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """Files and labels from a class-per-subfolder folder or a ``file,label`` CSV file."""
    path = Path(data).expanduser()
    if path.is_dir():
        return read_folder(path)
    if path.is_file():
        return read_csv_list(path)
    raise ConfigError(f"training data {str(path)!r} does not exist: expected a folder of class subfolders or a CSV "
                      "file of file,label rows")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="soundnet-train-head",
        description="Train a classifier head (linear SVM, logistic regression or perceptron) on SoundNet features.",
    )
    parser.add_argument("data", help="folder with one subfolder of audio files per class, or a CSV of file,label")
    parser.add_argument("-o", "--output", required=True, help="head file to write (HDF5, e.g. my.head.h5)")
    parser.add_argument("--head", default="svm", choices=("svm", "logistic", "perceptron"), help="default: svm")
    parser.add_argument("--layer", default="pool5", help="layer, or comma-separated layers (needs --window none)")
    parser.add_argument("--window", default="1.0", help="window length in seconds, or 'none' for one window per "
                        "clip (default: 1.0, the paper's)")
    parser.add_argument("--window-features", default="flatten", choices=("flatten", "mean", "max", "meanmax"),
                        help="window frames concatenated (paper) or pooled over time; default: flatten")
    parser.add_argument("--aggregate", default="mean", choices=("mean", "max"),
                        help="clip score from window scores (default: mean, the paper's)")
    parser.add_argument("--standardize", action="store_true", help="standardise features before the head")
    parser.add_argument("-C", type=float, default=None, help="regularisation C (default: svm 0.01, else 1)")
    parser.add_argument("--C-grid", default=None, help="comma-separated C values chosen by inner cross-validation")
    parser.add_argument("--variant", default="resampled", choices=("resampled", "exact"),
                        help="resampled to 22,050 Hz (default) or the original's unresampled x2^-22 input")
    parser.add_argument("--duration", type=float, default=None,
                        help="repeat/cut every clip to this many seconds (the paper: 10); default: as is")
    parser.add_argument("--epochs", type=int, default=100, help="perceptron training epochs (default: 100)")
    parser.add_argument("--cv", type=int, default=5, help="cross-validation folds to report (0: skip; default: 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default="soundnet8", help="pretrained preset or weights file (default: soundnet8)")
    add_cache_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``soundnet-train-head``."""
    args = build_parser().parse_args(argv)
    return guard(lambda: _train(args))


def _train(args: argparse.Namespace) -> int:
    from ..classifier import ClipClassifier, cross_val_accuracy

    start = time.monotonic()
    paths, labels = read_labelled(args.data)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ConfigError(f"need at least 2 classes to train a head, found only {classes!r} in {args.data!r}")
    if args.cv < 0 or args.cv == 1:
        raise ConfigError(f"--cv must be 0 (skip) or at least 2 folds, got {args.cv}")
    output = Path(args.output)
    if output.is_dir():
        raise ConfigError(f"--output {str(output)!r} is a folder; give a file name such as my.head.h5")
    layers = [name.strip() for name in args.layer.split(",") if name.strip()]
    clear_cache_if_asked(args)
    net = load_model(args.weights, verbose=True)
    model = ClipClassifier(
        args.head, layers if len(layers) > 1 else (layers[0] if layers else ""), window=parse_window(args.window),
        window_features=args.window_features, aggregate=args.aggregate, standardize=args.standardize, C=args.C,
        C_grid=parse_float_list(args.C_grid, "--C-grid") if args.C_grid else None, epochs=args.epochs,
        seed=args.seed, variant=args.variant, duration=args.duration, net=net, weights=args.weights,
        cache=not args.no_cache, cache_dir=args.cache_dir, progress=not args.no_progress,
    )
    model._check_settings()
    counts = {c: labels.count(c) for c in classes}
    print(f"{len(paths)} clips, {len(classes)} classes: " + ", ".join(f"{c} ({n})" for c, n in counts.items()))
    clips = model.features([str(p) for p in paths], desc="features")
    if args.cv:
        scores = cross_val_accuracy(model, clips, labels, folds=args.cv, seed=args.seed,
                                    progress=not args.no_progress)
        mean = sum(scores) / len(scores)
        print(f"cross-validated accuracy ({len(scores)} folds): {100 * mean:.2f}% "
              f"(folds: {', '.join(f'{100 * s:.1f}' for s in scores)})")
    model.fit(clips, labels)
    model.save(output)
    info = model.fit_info_
    tuned = f", C chosen by inner CV from {info.cv_accuracy}" if info.cv_accuracy else ""
    print(f"trained {args.head} head on {info.n_clips} clips ({info.n_windows} windows, C={info.C:g}{tuned})")
    print(f"saved {output} ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
