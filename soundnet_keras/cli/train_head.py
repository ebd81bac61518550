"""``soundnet-train-head``: train a classifier head on SoundNet features from labelled audio files.

Data is a folder with one subfolder per class (audio files inside, any depth) or a CSV file of ``file,label`` rows
(header optional; relative paths are relative to the CSV's folder). The command extracts the features once (cached),
reports stratified cross-validated clip accuracy, fits the head on all clips and saves it as one file that
``soundnet-classify --head FILE`` uses::

    soundnet-train-head my_sounds/ -o my_sounds.head.keras --head svm --cv 5
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from ..errors import ConfigError
from ..labelled import read_labelled
from .common import (
    ArgumentParser,
    add_cache_arguments,
    add_precision_argument,
    add_version_argument,
    clear_cache_if_asked,
    guard,
    keras_output,
    load_model,
)


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


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="soundnet-train-head",
        description="Train a classifier head (linear SVM, logistic regression or perceptron) on SoundNet features.",
    )
    parser.add_argument("data", help="folder with one subfolder of audio files per class, or a CSV of file,label")
    parser.add_argument("-o", "--output", required=True, help="head file to write (.keras, e.g. my.head.keras)")
    parser.add_argument("--head", default="svm", choices=("svm", "logistic", "perceptron"), help="default: svm")
    parser.add_argument(
        "--layer",
        default=None,
        help="layer, or comma-separated layers (needs --window none); default: the network's embedding layer "
        "(SoundNet pool5, L³-Net audio_pool4)",
    )
    parser.add_argument(
        "--window",
        default="1.0",
        help="window length in seconds, or 'none' for one window per clip (default: 1.0, the paper's)",
    )
    parser.add_argument(
        "--window-features",
        default="flatten",
        choices=("flatten", "mean", "max", "meanmax"),
        help="window frames concatenated (paper) or pooled over time; default: flatten",
    )
    parser.add_argument(
        "--aggregate",
        default="mean",
        choices=("mean", "max"),
        help="clip score from window scores (default: mean, the paper's)",
    )
    parser.add_argument("--standardize", action="store_true", help="standardise features before the head")
    parser.add_argument("-C", type=float, default=None, help="regularisation C (default: svm 0.01, else 1)")
    parser.add_argument("--C-grid", default=None, help="comma-separated C values chosen by inner cross-validation")
    parser.add_argument(
        "--variant",
        default="resampled",
        choices=("resampled", "exact"),
        help="resampled to the network's rate (default; SoundNet 22,050 Hz, L³-Net 48 kHz) or, SoundNet only, the "
        "original's unresampled x2^-22 input",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="repeat/cut every clip to this many seconds (the paper: 10); default: as is",
    )
    parser.add_argument("--epochs", type=int, default=100, help="perceptron training epochs (default: 100)")
    parser.add_argument("--cv", type=int, default=5, help="cross-validation folds to report (0: skip; default: 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default="soundnet8", help="pretrained preset or weights file (default: soundnet8)")
    add_cache_arguments(parser)
    add_precision_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_version_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``soundnet-train-head``."""
    args = build_parser().parse_args(argv)
    return guard(lambda: _train(args))


def _train(args: argparse.Namespace) -> int:
    from ..transfer import ClipClassifier, cross_val_accuracy  # heavy (scikit-learn): only when the command runs
    from ..transfer.clip_classifier import check_settings

    start = time.monotonic()
    data = read_labelled(args.data)
    paths, labels = data.paths, data.labels
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ConfigError(f"need at least 2 classes to train a head, found only {classes!r} in {args.data!r}")
    if args.cv < 0 or args.cv == 1:
        raise ConfigError(f"--cv must be 0 (skip) or at least 2 folds, got {args.cv}")
    output = keras_output(args.output, "my.head.keras")
    clear_cache_if_asked(args)
    net = load_model(args.weights, verbose=True, precision=args.precision)
    chosen = net.embedding_layer if args.layer is None else args.layer
    layers = [name.strip() for name in chosen.split(",") if name.strip()]
    model = ClipClassifier(
        args.head,
        layers if len(layers) > 1 else (layers[0] if layers else ""),
        window=parse_window(args.window),
        window_features=args.window_features,
        aggregate=args.aggregate,
        standardize=args.standardize,
        C=args.C,
        C_grid=parse_float_list(args.C_grid, "--C-grid") if args.C_grid else None,
        epochs=args.epochs,
        seed=args.seed,
        variant=args.variant,
        duration=args.duration,
        net=net,
        weights=args.weights,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
    )
    check_settings(model)
    counts = {c: labels.count(c) for c in classes}
    print(f"{len(paths)} clips, {len(classes)} classes: " + ", ".join(f"{c} ({n})" for c, n in counts.items()))
    clips = model.features([str(p) for p in paths], desc="features")
    if args.cv:
        scores = cross_val_accuracy(model, clips, labels, folds=args.cv, seed=args.seed, progress=not args.no_progress)
        mean = sum(scores) / len(scores)
        print(
            f"cross-validated accuracy ({len(scores)} folds): {100 * mean:.2f}% "
            f"(folds: {', '.join(f'{100 * s:.1f}' for s in scores)})"
        )
    model.fit(clips, labels)
    model.save(output)
    info = model.fit_info_
    tuned = f", C chosen by inner CV from {info.cv_accuracy}" if info.cv_accuracy else ""
    print(f"trained {args.head} head on {info.n_clips} clips ({info.n_windows} windows, C={info.C:g}{tuned})")
    print(f"saved {output} ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
