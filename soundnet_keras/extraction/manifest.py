"""The extraction manifest: one JSON line per finished attempt, appended and synced, read back to resume.

``manifest.jsonl`` in the output folder holds, for each input tried, a line such as::

    {"input": "/data/dog/1.wav", "output": "dog/1.wav.npz", "status": "done", "settings": "3f2a...",
     "size": 441044, "mtime_ns": 1796147410414363000, "seconds": 0.41, "time": "2026-12-01T18:02:11Z"}
    {"input": "/data/bad.wav", "output": "bad.wav.npz", "status": "failed", "error": "...", ...}

The last line of an input decides. An output counts as done when its line says ``done``, the output file exists,
the settings digest (layers, format, padding, channels, weights, precision) is the run's, and the input's size and
modification time are unchanged; everything else is extracted again. The line is appended only after the output is
renamed into place, so a kill between the two redoes that one file; a kill while appending leaves a partial last
line, which is skipped with a note.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigError

MANIFEST_NAME = "manifest.jsonl"
STATUSES = ("done", "failed")


@dataclass(frozen=True)
class Entry:
    """The last manifest line of one input."""

    input: str
    output: str
    status: str
    settings: str
    size: int | None
    mtime_ns: int | None
    error: str | None


def input_stamp(path: Path) -> tuple[int | None, int | None]:
    """(size, modification time in ns) of an input, or (None, None) when it cannot be read."""
    try:
        info = path.stat()
    except OSError:
        return None, None
    return info.st_size, info.st_mtime_ns


class Manifest:
    """The manifest of one output folder: what was done, and an append handle for what is done next."""

    def __init__(self, folder: Path, *, since: int = 0) -> None:
        """Read the manifest of ``folder``; ``since``: only the lines from that byte offset on (an earlier
        :meth:`end`), i.e. what was appended after it."""
        self.path = Path(folder) / MANIFEST_NAME
        self.entries: dict[str, Entry] = {}
        self.skipped_lines = 0
        self._handle: TextIO | None = None
        if self.path.exists():
            self._read(since)

    def end(self) -> int:
        """The manifest's current length in bytes (0 when there is none yet)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _read(self, since: int) -> None:
        with open(self.path, "rb") as handle:
            handle.seek(since)
            for line in handle:
                if since and not line.strip():
                    continue  # the newline that ended a line cut off before ``since``
                try:
                    raw = json.loads(line.decode("utf-8", errors="replace"))
                    entry = Entry(
                        input=str(raw["input"]),
                        output=str(raw["output"]),
                        status=str(raw["status"]),
                        settings=str(raw.get("settings", "")),
                        size=raw.get("size"),
                        mtime_ns=raw.get("mtime_ns"),
                        error=raw.get("error"),
                    )
                except (ValueError, KeyError, TypeError):
                    self.skipped_lines += 1  # a line cut off by a kill, or edited by hand
                    continue
                self.entries[entry.input] = entry

    def is_done(self, input_path: Path, output: Path, settings: str, folder: Path) -> bool:
        """Whether ``input_path``'s features in ``output`` (relative to ``folder``) are complete and current."""
        entry = self.entries.get(_key(input_path))
        if entry is None or entry.status != "done" or entry.settings != settings or entry.output != str(output):
            return False
        if (entry.size, entry.mtime_ns) != input_stamp(input_path):
            return False
        return (folder / output).is_file()

    def previous_error(self, input_path: Path) -> str | None:
        """The error of the input's last attempt, when it failed."""
        entry = self.entries.get(_key(input_path))
        return entry.error if entry is not None and entry.status == "failed" else None

    def record(
        self,
        input_path: Path,
        output: Path,
        status: str,
        settings: str,
        *,
        error: str | None = None,
        seconds: float | None = None,
        stamp: tuple[int | None, int | None] | None = None,
    ) -> None:
        """Append one line and sync it to disk. ``stamp``: the input's (size, mtime) as read before extraction."""
        if status not in STATUSES:
            raise ConfigError(f"manifest status must be one of {STATUSES}, got {status!r}")
        size, mtime_ns = stamp if stamp is not None else input_stamp(input_path)
        line: dict[str, Any] = {
            "input": _key(input_path),
            "output": str(output),
            "status": status,
            "settings": settings,
            "size": size,
            "mtime_ns": mtime_ns,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if seconds is not None:
            line["seconds"] = round(seconds, 4)
        if error is not None:
            line["error"] = error
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open across records)
            self._repair_end(self._handle)
        self._handle.write(json.dumps(line, sort_keys=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.entries[line["input"]] = Entry(line["input"], str(output), status, settings, size, mtime_ns, error)

    def _repair_end(self, appender: TextIO) -> None:
        """Start on a new line when a killed run left the last one unfinished."""
        if self.path.stat().st_size:
            with open(self.path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    appender.write("\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def counts(self) -> Mapping[str, int]:
        """Inputs per status, by their last line."""
        out = dict.fromkeys(STATUSES, 0)
        for entry in self.entries.values():
            out[entry.status] = out.get(entry.status, 0) + 1
        return out


def _key(path: Path) -> str:
    return os.path.abspath(path)
