"""``soundnet-bench``: benchmarks of SoundNet features. ``soundnet-bench esc`` runs the paper's ESC-50/ESC-10
protocol (and variants beyond it) on the official ESC-50 layout::

    soundnet-bench esc --root ESC-50-master              # ESC-50, 5 folds, both paper variants
    soundnet-bench esc --root ESC-50-master --esc10      # ESC-10
    soundnet-bench esc --root ESC-50-master --variants all --folds 1,2

It prints per-fold and mean accuracy per variant, and writes a confusion-matrix plot per variant and
``results.json`` into ``--out``. Missing folds or clips are reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..files import write_text_atomic
from ..l3.tables import is_l3
from .common import (
    ArgumentParser,
    add_cache_arguments,
    add_precision_argument,
    add_version_argument,
    clear_cache_if_asked,
    guard,
    load_model,
)


def build_parser() -> ArgumentParser:
    from ..transfer.esc import PROTOCOLS  # heavy (scikit-learn): loaded when the parser is built, not on import

    parser = ArgumentParser(prog="soundnet-bench", description="Benchmarks of SoundNet features.")
    sub = parser.add_subparsers(dest="benchmark", required=True, parser_class=ArgumentParser)
    esc = sub.add_parser(
        "esc",
        help="ESC-50 / ESC-10 classification with the paper's protocol (eval_esc50.lua) and variants",
        description="Leave-one-fold-out over the selected folds: train on the others, test on each.",
    )
    esc.add_argument("--root", required=True, help="ESC-50 folder in the official layout (audio/, meta/esc50.csv)")
    esc.add_argument("--esc10", action="store_true", help="the ESC-10 subset (10 classes)")
    esc.add_argument("--folds", default="1,2,3,4,5", help="comma-separated folds (default: 1,2,3,4,5)")
    esc.add_argument(
        "--variants",
        default="paper",
        help="'paper' (paper-exact,paper-resampled; default), 'all', or comma-separated names: " + ", ".join(PROTOCOLS),
    )
    esc.add_argument("--out", default="soundnet-bench-esc", help="folder for plots and results.json")
    esc.add_argument("--weights", default="soundnet8", help="pretrained preset or weights file (default: soundnet8)")
    add_cache_arguments(esc)
    add_precision_argument(esc)
    esc.add_argument("--no-plot", action="store_true", help="do not write confusion-matrix plots")
    esc.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_version_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``soundnet-bench``."""
    args = build_parser().parse_args(argv)
    return guard(lambda: _esc(args))


def _esc(args: argparse.Namespace) -> int:
    # heavy (scikit-learn): only when the command runs
    from ..transfer.esc import format_results, parse_protocols, plot_confusion, read_esc, run_benchmark

    start = time.monotonic()
    protocols = parse_protocols(args.variants)
    dataset = read_esc(args.root, esc10=args.esc10, folds=args.folds)
    clear_cache_if_asked(args)
    for line in dataset.report():
        print(line)
    net = load_model(args.weights, verbose=True, precision=args.precision)
    results = run_benchmark(
        dataset,
        net,
        protocols,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    print(format_results(results, dataset, l3=is_l3(getattr(net, "arch", None))))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_plot:
        for result in results:
            path = plot_confusion(
                result,
                out / f"confusion_{result.protocol.name}.png",
                title=f"{dataset.name} {result.protocol.name}: {100 * result.mean_accuracy:.1f}%",
            )
            print(f"confusion matrix: {path}")
    summary = {
        "dataset": dataset.name,
        "root": str(dataset.root),
        "folds": list(dataset.folds),
        "missing_folds": dataset.missing_folds,
        "missing_files": dataset.missing_files,
        "clips": len(dataset.clips),
        "weights": str(args.weights),
        "results": [result.as_dict() for result in results],
    }
    write_text_atomic(out / "results.json", json.dumps(summary, indent=1))
    print(f"results: {out / 'results.json'} ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
