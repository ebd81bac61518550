"""Helpers shared by the command-line tools: a quiet backend start, error handling, input expansion, output files."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .. import __version__
from ..audio import expand_paths
from ..errors import ConfigError, SoundNetError
from ..precision import DEFAULT_PRECISION, PRECISIONS

EXIT_OK = 0
EXIT_FILE_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def error_line(message: object) -> str:
    """One line ``error: ...`` for a user-facing problem (newlines folded)."""
    text = " ".join(str(message).split())
    return f"error: {text}"


def print_error(message: object) -> None:
    """Print :func:`error_line` on stderr."""
    print(error_line(message), file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for native libraries (TensorFlow's import-time C++ log lines) inside the block.

    Python exceptions still propagate and print after the block. Does nothing where fd 2 cannot be duplicated.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def guard(body: Callable[[], int]) -> int:
    """Run a command body; user errors become one ``error:`` line, never a traceback.

    The exit statuses of every soundnet_keras command: 0 success; 1 a batch finished but some files failed (the
    body returns it; the other files' results are complete); 2 the command stopped on a user error — bad arguments
    (argparse), a :class:`SoundNetError` or an :class:`OSError` (missing input, unwritable output); 130 Ctrl-C.
    """
    try:
        return body()
    except SoundNetError as exc:
        print_error(exc)
        return EXIT_USAGE
    except OSError as exc:
        name = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        print_error(f"{exc.strerror or exc}{':' if name else ''}{name}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED


def run_cli(
    body: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> int:
    """Parse ``argv`` (bad arguments exit 2, argparse) and run ``body`` under :func:`guard`."""
    args = parser.parse_args(argv)
    return guard(lambda: body(args))


def input_files(inputs: Sequence[str]) -> list[Path]:
    """Expand the command line's files and folders (folders: audio files inside, recursively, sorted)."""
    files = expand_paths(inputs)
    if not files:
        raise SoundNetError(
            f"no audio files found in {', '.join(map(repr, inputs))}: expected files or folders holding .wav, "
            ".flac, .ogg or .mp3 files"
        )
    return files


def check_output(path: Path, option: str, inputs: Sequence[Path] = ()) -> Path:
    """An output file named on the command line, checked before any work is done: its folder exists and is
    writable, it is not a folder, and it is not one of the ``inputs`` (an input is never overwritten by a report)."""
    if path.is_dir():
        raise SoundNetError(f"{option} {str(path)!r} is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise SoundNetError(f"{option}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise SoundNetError(f"{option}: folder {str(folder)!r} is not writable")
    target = path.resolve()
    for item in inputs:
        if item.resolve() == target or (path.exists() and item.exists() and os.path.samefile(item, path)):
            raise SoundNetError(f"{option} {str(path)!r} is one of the input files; it would be overwritten")
    return path


def keras_output(text: str, example: str) -> Path:
    """An ``--output`` model file: a ``.keras`` name that is not a folder, checked before any work is done."""
    path = Path(text)
    if path.is_dir():
        raise ConfigError(f"--output {text!r} is a folder; give a file name such as {example}")
    if path.suffix != ".keras":
        raise ConfigError(f"--output {text!r}: a model file must end in .keras, e.g. {example}")
    return path


def _positive(text: str, kind: type, what: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return int(_positive(text, int, "integer"))


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return float(_positive(text, float, "number"))


def start_backend() -> None:
    """Import Keras and start its backend's devices with their native start-up noise silenced (TensorFlow writes
    device lines to the terminal on first use); the backend is the one ``KERAS_BACKEND`` names."""
    with quiet_native_stderr():
        import keras  # heavy (Keras and its backend): only when the command runs

        keras.ops.convert_to_numpy(keras.ops.zeros(1))  # initialises the devices


def load_model(weights: str, *, verbose: bool, precision: str = DEFAULT_PRECISION):
    """Load the network for a CLI (pretrained preset or weights file; a SoundNet or, for an L³-Net weights file, an
    :class:`~soundnet_keras.l3.L3Net`: see :func:`~soundnet_keras.loading.load_network`) to run under
    ``precision``."""
    start_backend()
    from ..loading import load_network  # heavy (Keras): only when the command runs

    return load_network(weights, verbose=verbose, precision=precision)


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision``: how the network computes (see :mod:`soundnet_keras.precision`)."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help="highest: float32 with TF32 off, Torch7-exact on any device (default); default: the backend's own "
        "settings (TF32 on recent GPUs); mixed_bfloat16: about 1e-2 relative error, faster on GPUs",
    )


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """``-V`` / ``--version``: print the package version and exit."""
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s (soundnet-keras) {__version__}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line ``error: <message>`` usage errors (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        print_error(message)
        raise SystemExit(EXIT_USAGE)


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """Feature-cache options of the tools that extract features: ``--cache-dir``, ``--no-cache``, ``--clear-cache``."""
    parser.add_argument("--cache-dir", default=None, help="feature cache folder (default: user cache)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    parser.add_argument(
        "--clear-cache", action="store_true", help="delete every entry of the feature cache before running"
    )


def clear_cache_if_asked(args: argparse.Namespace) -> None:
    """Empty the feature cache when ``--clear-cache`` was given, saying how many entries went (stderr)."""
    if args.clear_cache:
        from ..transfer import FeatureCache  # heavy (scikit-learn): only when the command runs

        cache = FeatureCache(args.cache_dir)
        removed = cache.clear()
        print(f"cleared the feature cache {str(cache.root)!r}: {removed} entries deleted", file=sys.stderr)
