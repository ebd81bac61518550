"""Sound event lists from frame scores: which class is heard when in a file, from one head of a
:class:`~soundnet_keras.results.ClipResult` (SoundNet's ``scenes`` or ``objects``, or a trained head's ``classes``).

Per class of the head (all of them, or the ``labels`` asked for), :func:`detect_events`:

1. marks a frame active where its score is above ``threshold`` (default 0.5 for probabilities, 0 for an SVM's
   decision values);
2. smooths the activity with a median filter over ``median_frames`` frames (odd; 1, the default: none; the clip's
   first and last frames are repeated at its edges);
3. turns each run of active frames into an event: a frame stands for the stretch of the clip nearest its centre,
   from halfway to the previous frame's centre (the clip's start for the first) to halfway to the next one's (the
   clip's end for the last);
4. closes gaps of at most ``min_gap`` seconds between events of one class, then drops events shorter than
   ``min_duration`` seconds.

Times are on the clip's own axis, within ``[0, result.duration]``. Frames whose centre lies past the clip's end
heard only audio the padding appended and make no event. A clip shorter than one frame's span, repeated to feed
the network (a 5-s clip is repeated to 20 s for SoundNet's heads), gives frames that each heard the whole clip
several times: they have no position inside it, so their mean is the clip's one frame, spanning it.

:mod:`~soundnet_keras.event_lists` reads and writes the DCASE text format of :class:`Event` lists;
:func:`evaluate_events` scores a list against a reference with ``sed_eval``.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .architecture import SAMPLE_RATE
from .errors import ConfigError
from .event_lists import Event, format_event_list, parse_event_list, read_event_list, write_event_list
from .event_metrics import EventMetrics, evaluate_events
from .results import ClipResult
from .validation import check_non_negative, check_positive

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ClipFrames",
    "Event",
    "EventMetrics",
    "EventSettings",
    "clip_frames",
    "default_event_head",
    "detect_events",
    "evaluate_events",
    "format_event_list",
    "frame_edges",
    "label_columns",
    "parse_event_list",
    "read_event_list",
    "write_event_list",
]

DEFAULT_THRESHOLDS = {"probability": 0.5, "decision": 0.0}
"""Score above which a frame is active, per score kind, when no ``threshold`` is given."""

SOUNDNET_EVENT_HEAD = "scenes"
"""The head events come from when a result has SoundNet's two heads and none is named."""


@dataclass(frozen=True)
class EventSettings:
    """The post-processing of :func:`detect_events`, checked on construction (see the module docstring)."""

    threshold: float | None = None
    median_frames: int = 1
    min_duration: float = 0.0
    min_gap: float = 0.0

    def __post_init__(self) -> None:
        finite = isinstance(self.threshold, numbers.Real) and not isinstance(self.threshold, bool)
        if self.threshold is not None and not (finite and math.isfinite(self.threshold)):
            raise ConfigError(f"threshold must be a finite number or None, got {self.threshold!r}")
        median = check_positive(self.median_frames, "median_frames", integer=True)
        if median % 2 == 0:
            raise ConfigError(
                f"median_frames must be odd (the filter is centred on each frame), got {self.median_frames!r}"
            )
        check_non_negative(self.min_duration, "min_duration (seconds)")
        check_non_negative(self.min_gap, "min_gap (seconds)")

    def threshold_for(self, kind: str) -> float:
        """The threshold for scores of ``kind``; a probability threshold must lie in [0, 1)."""
        threshold = DEFAULT_THRESHOLDS[kind] if self.threshold is None else float(self.threshold)
        if kind == "probability" and not 0.0 <= threshold < 1.0:
            raise ConfigError(
                f"threshold must be in [0, 1) for a head that gives probabilities, got {self.threshold!r}"
            )
        return threshold


@dataclass
class ClipFrames:
    """One head's frames on the clip's own time axis: ``scores`` (frames, classes) and the stretch of the clip each
    frame stands for, ``onsets`` to ``offsets`` (seconds). ``pooled``: the frames had no position inside the clip
    (each heard all of it, repeated) and were averaged into one frame spanning it."""

    scores: np.ndarray
    onsets: np.ndarray
    offsets: np.ndarray
    pooled: bool = False


def frame_edges(centres: np.ndarray, start: float, end: float) -> np.ndarray:
    """Edges (frames + 1) of the stretches that frames centred at ``centres`` (ascending) stand for: halfway between
    neighbouring centres, ``start`` before the first and ``end`` after the last."""
    centres = np.asarray(centres, np.float64)
    middle = np.clip((centres[1:] + centres[:-1]) / 2, start, end)
    return np.concatenate([[start], middle, [end]])


def clip_frames(result: ClipResult, head: str) -> ClipFrames:
    """The frames of ``head`` on the clip's own time axis (see the module docstring)."""
    scores = np.asarray(result.head(head).values, np.float64)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ConfigError(f"events need one clip's (frames, classes) scores, got an array of shape {scores.shape}")
    duration = float(result.duration)
    if not duration > 0:
        raise ConfigError(f"events need a clip with a positive duration, got {duration!r} s")
    times = result.times
    hears_all = (times.end - times.start) >= duration - 1 / SAMPLE_RATE
    inside = times.center < duration
    if (result.padded and bool(hears_all.all())) or not inside.any():
        return ClipFrames(scores.mean(axis=0, keepdims=True), np.zeros(1), np.full(1, duration), pooled=True)
    edges = frame_edges(times.center[inside], 0.0, duration)
    return ClipFrames(scores[inside], edges[:-1], edges[1:])


def default_event_head(heads: Sequence[str] | Mapping[str, object]) -> str:
    """The head events come from when none is named: the only one, or ``scenes`` of SoundNet's two heads."""
    names = list(heads)
    if len(names) == 1:
        return names[0]
    if SOUNDNET_EVENT_HEAD in names:
        return SOUNDNET_EVENT_HEAD
    raise ConfigError(f"this result has heads {names}: name the one events come from")


def label_columns(available: Sequence[str], labels: Sequence[str] | None, head: str) -> list[int]:
    """Score columns of ``labels`` among a head's ``available`` labels (all of them for None), in the order asked."""
    if labels is None:
        return list(range(len(available)))
    if isinstance(labels, str):
        labels = [labels]
    if not labels:
        raise ConfigError(f"labels must name at least one class of head {head!r}, or be None for all of them")
    index = {str(label): i for i, label in enumerate(available)}
    for label in labels:
        if label not in index:
            close = difflib.get_close_matches(str(label), index, n=3, cutoff=0.6)
            hint = f"; close: {', '.join(map(repr, close))}" if close else ""
            raise ConfigError(f"label {label!r} is not a class of head {head!r} ({len(available)} classes){hint}")
    return list(dict.fromkeys(index[label] for label in labels))


def activity_events(
    active: np.ndarray,
    onsets: np.ndarray,
    offsets: np.ndarray,
    labels: Sequence[str],
    filename: str,
    *,
    min_duration: float = 0.0,
    min_gap: float = 0.0,
) -> list[Event]:
    """Events of a (frames, classes) boolean activity whose frames stand for ``onsets`` to ``offsets``: runs of
    active frames, gaps of at most ``min_gap`` s closed, events shorter than ``min_duration`` s dropped."""
    events = []
    for column, label in enumerate(labels):
        flags = np.concatenate([[False], active[:, column], [False]])
        changes = np.flatnonzero(flags[1:] != flags[:-1])
        merged: list[list[float]] = []
        for first, stop in zip(changes[::2], changes[1::2], strict=True):
            onset, offset = float(onsets[first]), float(offsets[stop - 1])
            if merged and onset - merged[-1][1] <= min_gap:
                merged[-1][1] = offset
            else:
                merged.append([onset, offset])
        events += [Event(filename, a, b, str(label)) for a, b in merged if b - a >= min_duration]
    return sorted(events, key=lambda e: (e.onset, e.offset, e.label))


def detect_events(
    result: ClipResult,
    *,
    head: str | None = None,
    labels: Sequence[str] | None = None,
    threshold: float | None = None,
    median_frames: int = 1,
    min_duration: float = 0.0,
    min_gap: float = 0.0,
) -> list[Event]:
    """The sound events of one clip's result: per class of ``head`` (default: the only head, or ``scenes`` of
    SoundNet's two), runs of frames scoring above ``threshold``, median-filtered over ``median_frames`` frames,
    gaps up to ``min_gap`` s closed, events shorter than ``min_duration`` s dropped; see the module docstring.

    ``labels`` restricts the classes (None: every class of the head). Events are named by ``result.source`` and
    sorted by onset; their times are seconds of the clip, within ``[0, result.duration]``.
    """
    settings = EventSettings(threshold, median_frames, min_duration, min_gap)
    name = default_event_head(result.heads) if head is None else head
    scores = result.head(name)
    columns = label_columns(scores.labels, labels, name)
    frames = clip_frames(result, name)
    active = frames.scores[:, columns] > settings.threshold_for(scores.kind)
    if settings.median_frames > 1:
        from scipy.ndimage import median_filter  # ~0.3 s to import: not on soundnet-classify's start-up path

        active = median_filter(active.astype(np.uint8), size=(settings.median_frames, 1), mode="nearest") > 0
    names = [str(scores.labels[c]) for c in columns]
    return activity_events(
        active, frames.onsets, frames.offsets, names, result.source, min_duration=min_duration, min_gap=min_gap
    )
