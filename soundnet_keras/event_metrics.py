"""An event list scored against a reference with ``sed_eval`` (the DCASE metrics): segment-based and event-based
F-score and error rate, micro-averaged over the files and classes.

``sed_eval`` comes with the ``events`` extra (``pip install "soundnet-keras[events]"``); nothing else in the
package needs it, and it is imported only when :func:`evaluate_events` runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .event_lists import Event
from .validation import check_positive


@dataclass
class EventMetrics:
    """Micro-averaged scores of an event list: ``segment_f`` and ``segment_error_rate`` on segments of
    ``time_resolution`` seconds, ``event_f`` and ``event_error_rate`` of events matched by onset and offset.
    ``segment`` and ``event`` are the ``sed_eval`` metric objects (``str()`` prints their full report, per class
    too)."""

    segment_f: float
    segment_error_rate: float
    event_f: float
    event_error_rate: float
    segment: Any
    event: Any


def _sed_eval():
    try:
        with warnings.catch_warnings():  # third-party internals: dcase_util imports the deprecated pkg_resources,
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            for category in (DeprecationWarning, SyntaxWarning):  # and has invalid escapes, where compiled on import
                warnings.filterwarnings("ignore", category=category)
            import sed_eval  # optional (the events extra): only when an event list is scored
    except ImportError as exc:
        raise ConfigError(f'scoring event lists needs sed_eval: pip install "soundnet-keras[events]" ({exc})') from None
    return sed_eval


def _records(events: Iterable[Event]) -> list[dict[str, object]]:
    return [{"filename": e.filename, "onset": e.onset, "offset": e.offset, "event_label": e.label} for e in events]


def evaluate_events(
    reference: Sequence[Event],
    estimated: Sequence[Event],
    *,
    labels: Sequence[str] | None = None,
    time_resolution: float = 1.0,
    t_collar: float = 0.2,
    percentage_of_length: float = 0.5,
    durations: Mapping[str, float] | None = None,
) -> EventMetrics:
    """Score ``estimated`` events against ``reference`` ones, file by file, with ``sed_eval``.

    ``labels``: the classes scored (default: every label of either list). Segment-based metrics use segments of
    ``time_resolution`` seconds over each file's ``durations[filename]`` (default: up to its last offset);
    event-based ones count an estimated event correct where its label matches a reference event's, its onset is
    within ``t_collar`` seconds of that event's and its offset within the larger of ``t_collar`` and
    ``percentage_of_length`` of the event's length (the DCASE 2016-2017 settings by default).
    """
    check_positive(time_resolution, "time_resolution")
    check_positive(t_collar, "t_collar")
    if not 0.0 <= percentage_of_length <= 1.0:
        raise ConfigError(f"percentage_of_length must be in [0, 1], got {percentage_of_length!r}")
    reference, estimated = list(reference), list(estimated)
    names = sorted({e.label for e in reference} | {e.label for e in estimated}) if labels is None else list(labels)
    if not names:
        raise ConfigError("nothing to score: the reference and the estimated lists hold no events and no labels")
    sed_eval = _sed_eval()
    segment = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=names, time_resolution=time_resolution)
    event = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=names, t_collar=t_collar, percentage_of_length=percentage_of_length
    )
    for metrics in (segment, event):
        metrics.empty_system_output_handling = "zero_score"  # no estimated event scores F = 0, not NaN
    files = list(dict.fromkeys(e.filename for e in [*reference, *estimated]))
    for name in files:
        ref = _records(e for e in reference if e.filename == name and e.label in names)
        est = _records(e for e in estimated if e.filename == name and e.label in names)
        if not ref and not est:
            continue  # nothing to count: no reference event, none estimated
        length = None if durations is None or name not in durations else float(durations[name])
        segment.evaluate(reference_event_list=ref, estimated_event_list=est, evaluated_length_seconds=length)
        event.evaluate(reference_event_list=ref, estimated_event_list=est)
    seg, ev = segment.results_overall_metrics(), event.results_overall_metrics()
    return EventMetrics(
        float(seg["f_measure"]["f_measure"]),
        float(seg["error_rate"]["error_rate"]),
        float(ev["f_measure"]["f_measure"]),
        float(ev["error_rate"]["error_rate"]),
        segment,
        event,
    )
