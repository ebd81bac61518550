"""Event lists in the DCASE text format: one event per line, ``filename<TAB>onset<TAB>offset<TAB>label``.

Times are seconds on the file's own time axis, written with millisecond precision. A line holding only a file name
lists a file in which nothing was detected (as the DCASE challenges' result files do), and a first line
``filename<TAB>onset<TAB>offset<TAB>event_label`` (the later challenges' header) is accepted when reading;
``dcase_util`` and ``sed_eval`` read what :func:`write_event_list` writes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import EventListError
from .files import write_text_atomic

HEADER = ("filename", "onset", "offset", "event_label")


@dataclass(frozen=True, order=True)
class Event:
    """One sound event: ``label`` heard in ``filename`` from ``onset`` to ``offset`` (seconds of that file)."""

    filename: str
    onset: float
    offset: float
    label: str

    @property
    def duration(self) -> float:
        return self.offset - self.onset


def _checked_field(text: str, what: str) -> str:
    if any(c in text for c in "\t\r\n"):
        raise EventListError(f"{what} {text!r} holds a tab or a line break: it cannot be written in a DCASE event list")
    return text


def format_event_list(events: Iterable[Event], files: Sequence[str] = ()) -> str:
    """The DCASE text of ``events``: files in the order of ``files`` (then of their first event), each file's
    events by onset; a file of ``files`` without events gets a line with its name alone."""
    by_file: dict[str, list[Event]] = {name: [] for name in files}
    for event in events:
        by_file.setdefault(event.filename, []).append(event)
    lines = []
    for name, items in by_file.items():
        _checked_field(name, "file name")
        if not items:
            lines.append(name)
        for event in sorted(items, key=lambda e: (e.onset, e.offset, e.label)):
            label = _checked_field(event.label, "label")
            lines.append(f"{name}\t{event.onset:.3f}\t{event.offset:.3f}\t{label}")
    return "".join(f"{line}\n" for line in lines)


def write_event_list(path: str | os.PathLike, events: Iterable[Event], files: Sequence[str] = ()) -> Path:
    """Write :func:`format_event_list` of ``events`` to ``path`` atomically; returns the path."""
    return write_text_atomic(path, format_event_list(events, files))


def parse_event_list(text: str, source: str = "event list") -> list[Event]:
    """The events of a DCASE event list's text (see the module docstring); ``source`` names it in errors."""
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if number == 1 and tuple(f.strip().lower() for f in fields) == HEADER:
            continue
        if len(fields) == 1 or (len(fields) == 4 and not any(f.strip() for f in fields[1:])):
            continue  # a file in which nothing happens
        where = f"{source}, line {number}"
        if len(fields) != 4:
            raise EventListError(
                f"{where}: expected 4 tab-separated fields (filename, onset, offset, label), got {len(fields)}: "
                f"{line!r}"
            )
        name, onset_text, offset_text, label = fields
        times = []
        for what, value in (("onset", onset_text), ("offset", offset_text)):
            try:
                seconds = float(value)
            except ValueError:
                seconds = math.nan
            if not math.isfinite(seconds) or seconds < 0:
                raise EventListError(f"{where}: {what} must be a number of seconds >= 0, got {value!r}")
            times.append(seconds)
        if times[1] < times[0]:
            raise EventListError(f"{where}: offset {times[1]:g} s is before onset {times[0]:g} s")
        if not label.strip():
            raise EventListError(f"{where}: the label is empty")
        events.append(Event(name, times[0], times[1], label))
    return events


def read_event_list(path: str | os.PathLike) -> list[Event]:
    """The events of a DCASE event list file (a file named alone on a line has none)."""
    path = Path(path)
    if not path.is_file():
        raise EventListError(f"event list {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EventListError(f"event list {str(path)!r} is not UTF-8 text: {exc}") from None
    return parse_event_list(text, repr(str(path)))
