"""Which files to extract and where each one's features go: inputs from folders, globs or a list, mirrored outputs.

Every input gets one output file, at a path that depends only on how that input was named, so a rerun with more,
fewer or reordered inputs finds the same outputs:

* a file in a folder named on the command line: its path relative to that folder
  (``audio/`` → ``audio/dog/1.wav`` is ``dog/1.wav``);
* any other file (named, matched by a glob, or listed on stdin): its path relative to ``relative_to`` (the current
  folder by default) when it lies inside it, else its absolute path without the leading ``/``.

The output is that relative path under the output folder with the format's extension appended
(``dog/1.wav.npz``: the input's extension is kept, so ``1.wav`` and ``1.flac`` do not collide). Two inputs that
would share an output are an error before any work is done.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..audio import AUDIO_EXTENSIONS
from ..errors import ConfigError

GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Job:
    """One input file and the output path (relative to the output folder) its features are written to."""

    input: Path
    output: Path


def _folder_files(folder: Path) -> list[Path]:
    suffixes = tuple(ext.lower() for ext in AUDIO_EXTENSIONS)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def read_list(stream: TextIO) -> list[str]:
    """Paths listed one per line (blank lines and lines starting with ``#`` skipped; surrounding spaces kept out)."""
    return [line.strip() for line in stream if line.strip() and not line.lstrip().startswith("#")]


def _relative(path: Path, base: Path) -> Path:
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(base)
    except ValueError:
        return Path(*absolute.parts[1:])  # outside the base: the absolute path without its root


def plan_jobs(
    inputs: Sequence[str],
    suffix: str,
    *,
    stdin: TextIO | None = None,
    relative_to: str | os.PathLike | None = None,
) -> list[Job]:
    """The jobs of ``inputs`` (files, folders searched recursively for audio files, glob patterns such as
    ``"clips/**/*.wav"``, and ``"-"`` for a list of paths read from ``stdin``), in order, without duplicates.

    ``suffix`` (``".npz"``) is appended to each output name. A glob that matches nothing, a folder without audio
    files, or two inputs mapped to one output raise :class:`ConfigError`; a named file that does not exist is kept
    (extraction reports it as failed, so a list with a missing file still runs the others).
    """
    base = Path(os.path.abspath(relative_to if relative_to is not None else os.curdir))
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}  # resolved input -> its output
    owners: dict[Path, Path] = {}  # output -> the input it belongs to

    def add(path: Path, relative: Path) -> None:
        key = Path(os.path.abspath(path))
        if key in seen:
            return
        output = relative.with_name(relative.name + suffix)
        if output in owners:
            raise ConfigError(
                f"inputs {str(owners[output])!r} and {str(path)!r} would both write {str(output)!r}; name them "
                f"through their folders, or run them into separate output folders"
            )
        seen[key], owners[output] = output, path
        jobs.append(Job(path, output))

    for item in _expanded(inputs, stdin):
        if isinstance(item, tuple):
            folder, files = item
            for path in files:
                add(path, path.relative_to(folder))
        else:
            add(item, _relative(item, base))
    if not jobs:
        raise ConfigError("no input files: expected audio files, folders, glob patterns or '-' (a list on stdin)")
    return jobs


def _expanded(inputs: Sequence[str], stdin: TextIO | None) -> Iterable[Path | tuple[Path, list[Path]]]:
    """Each input as a file path, or a ``(folder, its audio files)`` pair."""
    for text in inputs:
        if text == "-":
            if stdin is None:
                raise ConfigError("'-' reads a list of paths from standard input, but none is available")
            yield from (Path(line) for line in read_list(stdin))
            continue
        path = Path(text)
        if path.is_dir():
            files = _folder_files(path)
            if not files:
                raise ConfigError(
                    f"folder {text!r} holds no audio files: expected files ending in {', '.join(AUDIO_EXTENSIONS)}"
                )
            yield path, files
        elif GLOB_CHARACTERS & set(text) and not path.exists():
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                raise ConfigError(f"pattern {text!r} matches no files")
            yield from matches
        else:
            yield path
