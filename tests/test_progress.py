"""Progress reports: a bar where someone watches, one plain line per N items in logs (never a flood of bars)."""

from __future__ import annotations

import io

import pytest

from soundnet_keras.errors import ConfigError
from soundnet_keras.progress import Progress, duration_text


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_mode_writes_a_line_per_five_percent_with_rate_and_time_left() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress(1000, "extract", "file", stream=stream, clock=clock)  # a StringIO is no terminal
    assert progress.mode == "log"
    for _ in range(1000):
        clock.now += 0.5
        progress.update()
    progress.close()
    progress.close()  # idempotent
    lines = stream.getvalue().splitlines()
    assert len(lines) == 20 and "\r" not in stream.getvalue()  # 19 lines every 50 files, then the summary
    assert lines[0] == "extract: 50/1000 files (5 %), 2 files/s, 7 min 55 s left"
    assert lines[-2] == "extract: 950/1000 files (95 %), 2 files/s, 25 s left"
    assert lines[-1] == "extract: 1000/1000 files in 8 min 20 s (2 files/s)"


def test_log_mode_also_reports_on_time_when_items_are_slow() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress(100, "teacher", "video", stream=stream, clock=clock, interval_s=60)
    for seconds in (10, 70, 200):  # 1 video after 10 s: no line (5 are due); then over a minute passed each time
        clock.now = seconds
        progress.update()
    assert stream.getvalue().splitlines() == [
        "teacher: 2/100 videos (2 %), 0.0286 videos/s, 57 min 10 s left",
        "teacher: 3/100 videos (3 %), 0.015 videos/s, 1 h 47 min left",
    ]


def test_bar_mode_off_mode_and_tracking() -> None:
    stream = io.StringIO()
    assert list(Progress(3, "x", mode="off", stream=stream).track([1, 2, 3])) == [1, 2, 3]
    assert stream.getvalue() == ""
    bar = Progress(3, "x", mode="bar", stream=stream)
    for _ in bar.track(range(3)):
        pass
    assert bar.done == 3
    with pytest.raises(ConfigError, match="progress mode must be auto, bar, log or off, got 'loud'"):
        Progress(3, "x", mode="loud")


def test_a_process_that_imported_ipykernel_is_no_notebook() -> None:
    import ipykernel  # noqa: F401 (imported, as the notebook tests do, without running a kernel)

    assert Progress(3, "x", stream=io.StringIO()).mode == "log"


def test_durations_read_like_a_person_writes_them() -> None:
    assert [duration_text(s) for s in (0.25, 12.4, 75, 3600 * 2 + 300)] == ["0.2 s", "12 s", "1 min 15 s", "2 h 5 min"]
