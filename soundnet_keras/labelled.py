"""Labelled clips on disk: a folder per class, or a CSV of file and label (ESC-50's ``meta/esc50.csv`` included).

The one reader behind ``soundnet-train-head``, ``soundnet-finetune`` and :mod:`soundnet_keras.training.finetune`:

* a folder holding one sub-folder per class, audio files inside (any depth; hidden files and folders skipped;
  audio = :data:`~soundnet_keras.audio.AUDIO_EXTENSIONS`); labels are the sub-folder names;
* a CSV file with a header naming its path and label columns (``file,label``, ESC-50's ``filename,category``, or
  the columns you name), optionally a fold column; or without a header, rows of ``file,label``. Relative paths are
  read from ``audio_dir`` (default: the CSV's folder).

Every problem (missing file, empty class folder, missing column, bad row) is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from .audio import AUDIO_EXTENSIONS
from .errors import ConfigError

HEADERS = (("file", "label"), ("filename", "category"))
"""(path column, label column) pairs recognised in a CSV header when the columns are not named explicitly."""


@dataclass
class LabelledFiles:
    """Audio files with their labels (strings) and, where the CSV had a fold column, their folds."""

    paths: list[Path]
    labels: list[str]
    folds: list[str] | None = None


def _is_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def read_class_folders(root: str | os.PathLike) -> LabelledFiles:
    """Audio files of a class-per-sub-folder layout, labelled with their sub-folder's name (classes sorted)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data folder {str(root)!r} does not exist")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ConfigError(f"{str(root)!r} has no class subfolders: expected one subfolder of audio files per class")
    paths: list[Path] = []
    labels: list[str] = []
    empty = []
    for folder in classes:
        files = sorted(p for p in folder.rglob("*") if _is_audio(p))
        if not files:
            empty.append(folder.name)
        paths += files
        labels += [folder.name] * len(files)
    if empty:
        raise ConfigError(
            f"class folder(s) without audio files in {str(root)!r}: {', '.join(empty)} (audio files have one of "
            f"the suffixes {', '.join(AUDIO_EXTENSIONS)})"
        )
    return LabelledFiles(paths, labels)


def _columns(header: list[str], path_column: str | None, label_column: str | None) -> tuple[str, str] | None:
    """The (path, label) columns of ``header``: the named ones, or a recognised pair; None: no header."""
    names = [cell.strip() for cell in header]
    if path_column is not None or label_column is not None:
        wanted = (path_column or "file", label_column or "label")
        missing = [column for column in wanted if column not in names]
        if missing:
            raise ConfigError(f"has no column {missing[0]!r}; its columns are {names}")
        return wanted
    lowered = [name.lower() for name in names]
    for pair in HEADERS:
        if all(column in lowered for column in pair):
            return names[lowered.index(pair[0])], names[lowered.index(pair[1])]
    return None


def read_labelled_csv(
    csv_path: str | os.PathLike,
    *,
    audio_dir: str | os.PathLike | None = None,
    path_column: str | None = None,
    label_column: str | None = None,
    fold_column: str | None = "fold",
) -> LabelledFiles:
    """Clips listed in a CSV (see the module docstring); every listed file must exist."""
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise ConfigError(f"CSV file {str(csv_path)!r} does not exist")
    base = Path(audio_dir).expanduser() if audio_dir is not None else csv_path.parent
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ConfigError(f"{str(csv_path)!r} lists no clips: expected rows of file,label")
    try:
        columns = _columns(rows[0], path_column, label_column)
    except ConfigError as exc:
        raise ConfigError(f"{str(csv_path)!r} {exc}") from None
    header = [cell.strip() for cell in rows[0]]
    if columns is None:
        where, folds_at, body = (0, 1), None, rows
    else:
        where = (header.index(columns[0]), header.index(columns[1]))
        folds_at = header.index(fold_column) if fold_column is not None and fold_column in header else None
        body = rows[1:]
    if not body:
        raise ConfigError(f"{str(csv_path)!r} lists no clips: it has a header but no rows")
    paths, labels, folds, missing = [], [], [], []
    for number, row in enumerate(body, start=1):
        cells = [row[i].strip() if i < len(row) else "" for i in where]
        if not all(cells):
            raise ConfigError(f"{str(csv_path)!r} row {number}: expected a file and a label, got {row!r}")
        file = Path(cells[0]).expanduser()
        file = file if file.is_absolute() else base / file
        if not file.is_file():
            missing.append(str(file))
        paths.append(file)
        labels.append(cells[1])
        if folds_at is not None:
            folds.append(row[folds_at].strip() if folds_at < len(row) else "")
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(
            f"{len(missing)} file(s) listed in {str(csv_path)!r} do not exist: {shown} (relative paths are read "
            f"from {str(base)!r})"
        )
    return LabelledFiles(paths, labels, folds if folds_at is not None else None)


def read_labelled(data: str | os.PathLike, **csv_options) -> LabelledFiles:
    """Files and labels from a class-per-sub-folder folder or a CSV file (``csv_options`` as
    :func:`read_labelled_csv`)."""
    path = Path(data).expanduser()
    if path.is_dir():
        return read_class_folders(path)
    if path.is_file():
        return read_labelled_csv(path, **csv_options)
    raise ConfigError(
        f"training data {str(path)!r} does not exist: expected a folder of class subfolders or a CSV file of "
        "file,label rows"
    )
