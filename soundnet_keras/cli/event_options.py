"""``soundnet-classify --events``: the options of sound event lists, checked before any file is classified, and the
list collected over the files (the detection itself is :func:`soundnet_keras.events.detect_events`)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..event_lists import Event, write_event_list
from ..events import EventSettings, clip_frames, default_event_head, detect_events, label_columns
from ..results import ClipResult

EVENT_DEFAULTS = {"event_head": None, "label": None, "threshold": None, "median_frames": 1, "min_duration": 0.0,
                  "min_gap": 0.0}  # fmt: skip
"""The event options' defaults: any other value needs ``--events``."""

NUMBER_OPTIONS = (
    ("--threshold", float, "X", "a frame is active above this score (default 0.5 for probabilities, 0 for an SVM "
     "head's decision values)"),
    ("--median-frames", int, "N", "median filter over N frames (odd) of each class's activity (default 1: none)"),
    ("--min-duration", float, "S", "drop events shorter than S seconds (default 0)"),
    ("--min-gap", float, "S", "join events of one class separated by at most S seconds (default 0)"),
)  # fmt: skip
"""The post-processing options: flag, type, metavar, help."""


def add_event_arguments(parser: argparse.ArgumentParser) -> None:
    """``--events TSV`` and the post-processing options of the event list."""
    group = parser.add_argument_group(
        "sound event lists",
        "runs of frames scoring above a threshold, per class of one head (README: Sound event lists)",
    )
    group.add_argument(
        "--events",
        type=Path,
        metavar="TSV",
        help="write the events of every file to this DCASE list: filename<TAB>onset<TAB>offset<TAB>label, times in "
        "seconds of each file",
    )
    group.add_argument(
        "--event-head",
        default=EVENT_DEFAULTS["event_head"],
        metavar="HEAD",
        help="the head events come from: scenes (default with SoundNet's heads) or objects; a trained head's classes",
    )
    group.add_argument(
        "--label",
        action="append",
        default=EVENT_DEFAULTS["label"],
        metavar="LABEL",
        help="only this class may make events (repeat for several; default: every class of the head)",
    )
    for flag, kind, metavar, text in NUMBER_OPTIONS:
        default = EVENT_DEFAULTS[flag[2:].replace("-", "_")]
        group.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)


def check_event_arguments(args: argparse.Namespace) -> EventSettings | None:
    """The event settings of the command line (None without ``--events``); options given without ``--events``
    and values out of range raise :class:`ConfigError` before any work."""
    if args.events is None:
        given = [name for name, default in EVENT_DEFAULTS.items() if getattr(args, name) != default]
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} applies to event lists: add --events FILE")
        return None
    settings = EventSettings(args.threshold, args.median_frames, args.min_duration, args.min_gap)
    for option, path in (("--output", args.output), ("--plot", args.plot)):
        if path is not None and Path(path).resolve() == Path(args.events).resolve():
            raise ConfigError(f"--events {str(args.events)!r} is also the {option} file; give another name")
    return settings


class EventCollector:
    """The event list of one run: each file's events by :func:`~soundnet_keras.events.detect_events` on the head
    ``--event-head`` names, checked against the classifier's heads (``{head: (labels, kind)}``) before any work."""

    def __init__(self, args: argparse.Namespace, settings: EventSettings, heads: dict[str, tuple[list[str], str]]):
        head = args.event_head if args.event_head is not None else default_event_head(heads)
        if head not in heads:
            raise ConfigError(f"--event-head must be one of {', '.join(map(repr, heads))}, got {head!r}")
        labels, kind = heads[head]
        label_columns(labels, args.label, head)
        self.path: Path = args.events
        self.head, self.labels, self.settings = head, args.label, settings
        self.threshold = settings.threshold_for(kind)
        self.events: list[Event] = []
        self.files: list[str] = []
        self.peak: tuple[float, str] | None = None

    def add(self, result: ClipResult) -> list[Event]:
        """Detect and keep the events of one file's result; returns them."""
        events = detect_events(result, head=self.head, labels=self.labels, **asdict(self.settings))
        self.events += events
        self.files.append(result.source)
        scores = result.head(self.head)
        columns = label_columns(scores.labels, self.labels, self.head)
        values = clip_frames(result, self.head).scores[:, columns]
        row, column = np.unravel_index(int(values.argmax()), values.shape)
        peak = (float(values[row, column]), str(scores.labels[columns[column]]))
        self.peak = peak if self.peak is None else max(self.peak, peak)
        return events

    def write(self) -> str | None:
        """Write the list; returns a note for the terminal when it holds no event at all."""
        write_event_list(self.path, self.events, self.files)
        if self.events or self.peak is None:
            return None
        score, label = self.peak
        return (
            f"no events above the threshold {self.threshold:g} in {len(self.files)} file(s): the highest frame score "
            f"of head {self.head!r} was {score:.3f} ({label!r}); lower --threshold to list more"
        )
