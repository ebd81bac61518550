"""``python -m soundnet_keras COMMAND ...``: every command-line tool of the package under one entry point."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from . import __version__

COMMANDS = {
    "classify": ("soundnet_keras.cli.classify", "objects and scenes over time for audio files (soundnet-classify)"),
    "extract": ("soundnet_keras.cli.extract", "features of any layer, one resumable file per input (soundnet-extract)"),
    "train-head": ("soundnet_keras.cli.train_head", "train a classifier head on your labelled clips"),
    "bench": ("soundnet_keras.cli.bench", "the paper's ESC-50/ESC-10 benchmark (soundnet-bench esc ...)"),
    "teacher": ("soundnet_keras.cli.teacher", "videos -> audio + teacher distributions shards (soundnet-teacher)"),
    "train": ("soundnet_keras.cli.train", "train SoundNet from teacher shards, tf.distribute (soundnet-train)"),
    "finetune": ("soundnet_keras.cli.finetune", "fine-tune pretrained SoundNet on labelled clips"),
}


def usage() -> str:
    """The help text listing the commands."""
    width = max(map(len, COMMANDS))
    lines = [
        f"soundnet_keras {__version__}: SoundNet (Aytar, Vondrick & Torralba, NIPS 2016) in Keras 3",
        "",
        "usage: python -m soundnet_keras COMMAND [options]   (COMMAND --help for its options)",
        "",
        "commands:",
        *(f"  {name:{width}s}  {text}" for name, (_module, text) in COMMANDS.items()),
        "",
        "Python API: from soundnet_keras import SoundNet; SoundNet.from_pretrained().predict(waveform, sample_rate)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the command's own ``main``; ``-h``/``--help`` or no command prints the list."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("-V", "--version"):
        print(__version__)
        return 0
    if args[0] not in COMMANDS:
        print(usage(), file=sys.stderr)
        print(f"\nerror: unknown command {args[0]!r}: expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
