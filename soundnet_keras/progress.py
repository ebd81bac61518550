"""Progress of batch work, honest in every place it is read: a bar on a terminal, one line per N items in a log.

A tqdm bar redraws itself with carriage returns; written to a file or a CI log, that is thousands of lines. So
:class:`Progress` draws a bar only where someone watches one — a terminal (``isatty``) or a notebook — and
elsewhere writes one plain line every ``every`` items (default: 5 % of the total) or every ``interval_s`` seconds,
whichever comes first, with the count, the rate and the time left, and a last line with the total time::

    extract: 250/1000 files (25 %), 3.1 files/s, 4 min 2 s left
    extract: 1000/1000 files in 5 min 22 s (3.1 files/s)
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

from .errors import ConfigError

Item = TypeVar("Item")

LOG_FRACTION = 0.05
"""A log line every this fraction of the total (at least one item)."""
LOG_INTERVAL_S = 60.0
"""And at least one line every this many seconds while work goes on."""


def _in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (not merely in a process that imported ipykernel)."""
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except AttributeError:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def _watched(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def duration_text(seconds: float) -> str:
    """``"4 min 2 s"``, ``"12 s"``, ``"2 h 5 min"``: a duration for people."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class Progress:
    """Progress of ``total`` items of ``unit`` (``"file"``), described as ``desc``.

    ``mode``: ``"auto"`` (a bar on a terminal or in a notebook, log lines elsewhere), ``"bar"``, ``"log"`` or
    ``"off"``. ``stream`` defaults to stderr. Use :meth:`update` after each item (or :meth:`track` around an
    iterable), :meth:`clear` before printing something else while a bar is shown, and :meth:`close` at the end.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "file",
        *,
        mode: str = "auto",
        stream: IO[str] | None = None,
        every: int | None = None,
        interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in ("auto", "bar", "log", "off"):
            raise ConfigError(f"progress mode must be auto, bar, log or off, got {mode!r}")
        self.total, self.desc, self.unit = int(total), desc, unit
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            mode = "bar" if _watched(self.stream) or _in_notebook() else "log"
        self.mode = mode
        self.every = every or max(1, math.ceil(self.total * LOG_FRACTION))
        self.interval_s, self.clock = interval_s, clock
        self.done = 0
        self._started = clock()
        self._last_line_at, self._last_line_done = self._started, 0
        self._closed = False
        self._bar: Any = None
        if mode == "bar":
            from tqdm.auto import tqdm  # console or notebook bar; ~30 ms to import: only when one is drawn

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream, leave=False)

    def _units(self, count: int) -> str:
        return self.unit if count == 1 else f"{self.unit}s"

    def update(self, count: int = 1) -> None:
        """``count`` more items are finished."""
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        if self.mode != "log" or self.done >= self.total:
            return
        now = self.clock()
        if self.done - self._last_line_done >= self.every or now - self._last_line_at >= self.interval_s:
            self._last_line_at, self._last_line_done = now, self.done
            elapsed = max(now - self._started, 1e-9)
            rate = self.done / elapsed
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            percent = 100.0 * self.done / max(self.total, 1)
            self._line(
                f"{self.desc}: {self.done}/{self.total} {self._units(self.total)} ({percent:.0f} %), "
                f"{rate:.3g} {self._units(2)}/s, {duration_text(left)} left"
            )

    def clear(self) -> None:
        """Remove the bar from the terminal for a moment (before printing a message); nothing in log mode."""
        if self._bar is not None:
            self._bar.clear()

    def close(self) -> None:
        """Remove the bar, or write the last log line (count, total time, rate). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            return
        if self.mode == "log" and self.total > 1:
            elapsed = self.clock() - self._started
            rate = self.done / elapsed if elapsed > 0 else float("inf")
            self._line(
                f"{self.desc}: {self.done}/{self.total} {self._units(self.total)} in {duration_text(elapsed)} "
                f"({rate:.3g} {self._units(2)}/s)"
            )

    def track(self, items: Iterable[Item]) -> Iterator[Item]:
        """Yield ``items``, counting each one as finished when the next is asked for; closes at the end."""
        try:
            for item in items:
                yield item
                self.update()
        finally:
            self.close()

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
