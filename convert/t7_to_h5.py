"""Convert an authors' SoundNet Torch7 model (soundnet8_final.t7, soundnet5_final.t7) to a .weights.h5 file.

    python convert/t7_to_h5.py soundnet8_final.t7 soundnet8.weights.h5 \\
        [--arch soundnet8|soundnet5] [--categories-objects FILE --categories-scenes FILE]

The structure of the file is checked against the layer table (every kernel, stride, padding, channel count, BN eps),
the weights are written atomically with their metadata and validated against a float64 NumPy reference at every
layer; the per-layer difference table is printed. Errors print one line, ``error: ...``, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _import_package() -> None:
    """Make ``soundnet_keras`` importable when this script runs from a checkout without installation."""
    try:
        import soundnet_keras  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="t7_to_h5.py",
        description="Convert an original SoundNet Torch7 model (.t7) to a validated soundnet_keras .weights.h5 file.",
    )
    parser.add_argument("input", type=Path, help="the authors' Torch7 model, e.g. soundnet8_final.t7")
    parser.add_argument("output", type=Path, help="the .weights.h5 file to write (replaced atomically)")
    parser.add_argument(
        "--arch",
        choices=("soundnet8", "soundnet5"),
        default=None,
        help="architecture to check the file against (default: detected from the file)",
    )
    parser.add_argument(
        "--categories-objects", type=Path, metavar="FILE", help="text file of the 1000 object names, one per line"
    )
    parser.add_argument(
        "--categories-scenes", type=Path, metavar="FILE", help="text file of the 401 scene names, one per line"
    )
    parser.add_argument(
        "--validate-samples",
        type=int,
        default=None,
        metavar="N",
        help="length of the synthetic validation waveform (default: one frame of the heads plus 0.25 s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the converter; returns the exit status (0 success, 2 error)."""
    args = build_parser().parse_args(argv)
    # Checked before importing the package (and TensorFlow with it), so that a mistyped path fails at once.
    for path, what in [(args.input, "Torch7 file"), (args.categories_objects, "category file"),
                       (args.categories_scenes, "category file")]:  # fmt: skip
        if path is not None and not path.exists():
            print(f"error: {what} {str(path)!r} does not exist", file=sys.stderr)
            return 2
    _import_package()
    from soundnet_keras.cli.common import guard
    from soundnet_keras.convert import convert, read_category_file

    def body() -> int:
        categories = {}
        if args.categories_objects is not None:
            categories["objects"] = read_category_file(args.categories_objects)
        if args.categories_scenes is not None:
            categories["scenes"] = read_category_file(args.categories_scenes)
        convert(
            args.input,
            args.output,
            arch=args.arch,
            categories=categories or None,
            validate_samples=args.validate_samples,
            log=print,
        )
        return 0

    return guard(body)


if __name__ == "__main__":
    sys.exit(main())
