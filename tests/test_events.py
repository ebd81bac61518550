"""Sound event lists without a network: post-processing of frame scores, the clip's time axis for padded clips,
the DCASE text format, sed_eval scoring, argument errors, and the timeline picture's layout."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from soundnet_keras.architecture import SAMPLE_RATE, frame_times
from soundnet_keras.cli import classify
from soundnet_keras.cli.event_options import EventCollector
from soundnet_keras.errors import ConfigError, EventListError, SoundNetError
from soundnet_keras.events import (
    Event,
    EventSettings,
    clip_frames,
    detect_events,
    evaluate_events,
    format_event_list,
    parse_event_list,
    read_event_list,
    write_event_list,
)
from soundnet_keras.results import ClipResult, HeadScores, frame_times_from_spans
from soundnet_keras.timeline import timeline_figure, timeline_rows


def result_of(
    values: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    duration: float,
    *,
    labels: tuple[str, ...] = ("a", "b"),
    kind: str = "probability",
    padded_to: float | None = None,
    padded_frames: np.ndarray | None = None,
) -> ClipResult:
    head = HeadScores(np.asarray(values, np.float64), list(labels), kind)
    times = frame_times_from_spans(starts, ends)
    return ClipResult({"classes": head}, times, duration, "clip.wav", padded_to, padded_frames)


def one_second_frames(active_a: list[int], active_b: list[int] | None = None, score: float = 0.9) -> ClipResult:
    """Ten 1-s frames of a 10-s clip (frame i covers i..i+1 s): class ``a`` scores ``score`` where ``active_a``."""
    values = np.full((10, 2), 0.1)
    values[np.flatnonzero(active_a), 0] = score
    if active_b is not None:
        values[np.flatnonzero(active_b), 1] = score
    starts = np.arange(10.0)
    return result_of(values, starts, starts + 1, 10.0)


def spans(events: list[Event], label: str = "a") -> list[tuple[float, float]]:
    return [(round(e.onset, 6), round(e.offset, 6)) for e in events if e.label == label]


PATTERN = [0, 1, 0, 0, 1, 1, 1, 0, 1, 1]


def test_threshold_runs_become_events_on_frame_stretches() -> None:
    events = detect_events(one_second_frames(PATTERN, [0] * 9 + [1]))
    assert spans(events) == [(1, 2), (4, 7), (8, 10)] and spans(events, "b") == [(9, 10)]
    assert all(e.filename == "clip.wav" for e in events)
    assert [e.onset for e in events] == sorted(e.onset for e in events)
    # the comparison is strict: a score equal to the threshold is not active
    assert detect_events(one_second_frames(PATTERN, score=0.5)) == []
    assert spans(detect_events(one_second_frames(PATTERN, score=0.5), threshold=0.4)) == [(1, 2), (4, 7), (8, 10)]
    assert spans(detect_events(one_second_frames(PATTERN), labels=["b"])) == []


def test_median_filter_min_duration_and_min_gap() -> None:
    result = one_second_frames(PATTERN)
    # a 3-frame median removes the lone frame 1 and fills the one-frame gap at frame 7
    assert spans(detect_events(result, median_frames=3)) == [(4, 10)]
    assert spans(detect_events(result, min_duration=1.5)) == [(4, 7), (8, 10)]
    assert spans(detect_events(result, min_gap=1.0)) == [(1, 2), (4, 10)]
    assert spans(detect_events(result, min_gap=0.99)) == [(1, 2), (4, 7), (8, 10)]
    # gaps are closed before short events are dropped
    assert spans(detect_events(result, min_gap=1.0, min_duration=2.5)) == [(4, 10)]


def test_frame_stretches_are_halfway_between_centres() -> None:
    centres = np.array([1.0, 2.0, 4.0])
    result = result_of(np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1]]), centres - 0.5, centres + 0.5, 6.0)
    frames = clip_frames(result, "classes")
    np.testing.assert_allclose(frames.onsets, [0.0, 1.5, 3.0])
    np.testing.assert_allclose(frames.offsets, [1.5, 3.0, 6.0])
    assert spans(detect_events(result)) == [(0, 1.5), (3, 6)] and spans(detect_events(result), "b") == [(1.5, 3)]


def test_decision_values_default_threshold_is_zero() -> None:
    values = np.array([[-0.2, 0.3], [0.4, -0.1], [0.1, -0.5]])
    starts = np.arange(3.0)
    result = result_of(values, starts, starts + 1, 3.0, kind="decision")
    events = detect_events(result)
    assert spans(events) == [(1, 3)] and spans(events, "b") == [(0, 1)]
    assert spans(detect_events(result, threshold=-1.0)) == [(0, 3)]


def soundnet_short_clip(values: np.ndarray, seconds: float = 5.0) -> ClipResult:
    """SoundNet's head frames for a clip repeated to the 20-s crop, as ``SoundNet.predict`` reports them."""
    fed = 20 * SAMPLE_RATE
    times = frame_times("soundnet8", "scenes", 4, fed)
    head = HeadScores(np.asarray(values, np.float64), ["a", "b"])
    return ClipResult({"scenes": head}, times, seconds, "short.wav", 20.0, np.ones(4, bool))


def test_padded_5s_clip_events_stay_inside_the_clip() -> None:
    # every frame heard the whole 5-s clip, repeated: they have no position in it and are pooled into one frame
    values = np.array([[0.9, 0.1], [0.8, 0.1], [0.9, 0.1], [0.7, 0.9]])
    result = soundnet_short_clip(values)
    frames = clip_frames(result, "scenes")
    assert frames.pooled and frames.scores.shape == (1, 2)
    np.testing.assert_allclose(frames.scores[0], values.mean(axis=0))
    events = detect_events(result)
    assert spans(events) == [(0, 5)]
    # class b is above the threshold only in the last frame, centred at 13.7 s on the loop: no event anywhere
    assert spans(events, "b") == [] and max(e.offset for e in events) <= 5.0
    assert spans(detect_events(result, threshold=0.25), "b") == [(0, 5)]


def test_windows_past_a_repeated_clips_end_make_no_events() -> None:
    # a head whose clips are repeated to 10 s: a 5-s clip's 1-s windows centred past 5 s heard only the repetition
    starts = np.arange(10.0)
    values = np.full((10, 2), 0.1)
    values[6:, 0] = 0.9  # only in the repetition
    values[3:7, 1] = 0.9  # across the clip's end
    result = result_of(values, starts, starts + 1, 5.0, padded_to=10.0, padded_frames=starts + 1 > 5.0)
    events = detect_events(result)
    assert spans(events) == [] and spans(events, "b") == [(3, 5)]


def test_extended_long_clip_ends_at_its_own_duration() -> None:
    # a 13-s clip gets 0.95 s of its start appended so that its last frame hears audio: events end at 13 s
    fed = 209_374 + 65_536 + 32_768
    times = frame_times("soundnet8", "scenes", 2, fed)
    head = HeadScores(np.array([[0.1, 0.9], [0.9, 0.1]]), ["a", "b"])
    result = ClipResult({"scenes": head}, times, 13.0, "long.wav", fed / SAMPLE_RATE, np.array([False, True]))
    events = detect_events(result)
    middle = round((times.center[0] + times.center[1]) / 2, 6)
    assert spans(events) == [(middle, 13.0)] and spans(events, "b") == [(0.0, middle)]
    assert not clip_frames(result, "scenes").pooled


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": float("nan")}, "threshold must be a finite number or None, got nan"),
        ({"threshold": "0.5"}, "threshold must be a finite number or None, got '0.5'"),
        ({"threshold": True}, "threshold must be a finite number or None, got True"),
        ({"threshold": 1.0}, r"threshold must be in \[0, 1\) for a head that gives probabilities, got 1.0"),
        ({"threshold": -0.1}, r"threshold must be in \[0, 1\) for a head that gives probabilities, got -0.1"),
        ({"median_frames": 2}, "median_frames must be odd .* got 2"),
        ({"median_frames": 0}, "median_frames must be a positive integer, got 0"),
        ({"median_frames": 2.5}, "median_frames must be a positive integer, got 2.5"),
        ({"min_duration": -1}, r"min_duration \(seconds\) must be a number >= 0, got -1"),
        ({"min_duration": math.inf}, r"min_duration \(seconds\) must be a number >= 0, got inf"),
        ({"min_gap": -0.5}, r"min_gap \(seconds\) must be a number >= 0, got -0.5"),
        ({"head": "scenes"}, "head must be one of 'classes', got 'scenes'"),
        ({"labels": ["c"]}, r"label 'c' is not a class of head 'classes' \(2 classes\)"),
        ({"labels": []}, "labels must name at least one class of head 'classes'"),
    ],
)
def test_bad_event_arguments_raise_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        detect_events(one_second_frames(PATTERN), **options)


def test_label_errors_suggest_close_names_and_results_are_checked() -> None:
    result = result_of(np.full((2, 2), 0.1), np.zeros(2), np.ones(2), 1.0, labels=("railroad_track", "field_road"))
    with pytest.raises(ConfigError, match="close: 'railroad_track'"):
        detect_events(result, labels=["railroad"])
    batched = result_of(np.full((3, 2, 2), 0.1), np.zeros(2), np.ones(2), 1.0)
    with pytest.raises(ConfigError, match=r"one clip's \(frames, classes\) scores, got an array of shape \(3, 2, 2\)"):
        detect_events(batched)
    two_heads = ClipResult({"x": batched.heads["classes"], "y": batched.heads["classes"]}, batched.times, 1.0)
    with pytest.raises(ConfigError, match=r"this result has heads \['x', 'y'\]: name the one events come from"):
        detect_events(two_heads)


def test_dcase_list_round_trip_and_files_without_events(tmp_path: Path) -> None:
    events = [Event("b.wav", 1.25, 2.5, "tench, Tinca tinca"), Event("a.wav", 3.0, 4.0, "rain"),
              Event("a.wav", 0.0, 1.0, "dog")]  # fmt: skip
    path = write_event_list(tmp_path / "events.tsv", events, files=["a.wav", "quiet.wav", "b.wav"])
    assert path.read_text() == (
        "a.wav\t0.000\t1.000\tdog\na.wav\t3.000\t4.000\train\nquiet.wav\nb.wav\t1.250\t2.500\ttench, Tinca tinca\n"
    )
    assert read_event_list(path) == sorted(events)
    header = "filename\tonset\toffset\tevent_label\n" + format_event_list(events)
    assert sorted(parse_event_list(header)) == sorted(events)  # files in the order of their first event
    assert parse_event_list("a.wav\t\t\t\n\n") == []  # a file without events, in the later challenges' layout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.wav\t1.0\t2.0\n", r"line 1: expected 4 tab-separated fields \(filename, onset, offset, label\), got 3"),
        ("a.wav\t0\t1\tx\na.wav\tsoon\t2.0\tdog\n", "line 2: onset must be a number of seconds >= 0, got 'soon'"),
        ("a.wav\t1.0\t-2\tdog\n", "line 1: offset must be a number of seconds >= 0, got '-2'"),
        ("a.wav\t1.0\tnan\tdog\n", "line 1: offset must be a number of seconds >= 0, got 'nan'"),
        ("a.wav\t3.0\t2.0\tdog\n", "line 1: offset 2 s is before onset 3 s"),
        ("a.wav\t1.0\t2.0\t \n", "line 1: the label is empty"),
    ],
)
def test_malformed_event_lists_raise_event_list_errors(text: str, message: str) -> None:
    with pytest.raises(EventListError, match=message):
        parse_event_list(text)


def test_event_list_files_and_fields_are_checked(tmp_path: Path) -> None:
    with pytest.raises(EventListError, match="does not exist"):
        read_event_list(tmp_path / "absent.tsv")
    (tmp_path / "latin1.tsv").write_bytes("a.wav\t0\t1\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(EventListError, match="is not UTF-8 text"):
        read_event_list(tmp_path / "latin1.tsv")
    with pytest.raises(EventListError, match="label 'a\\\\tb' holds a tab or a line break"):
        format_event_list([Event("x.wav", 0, 1, "a\tb")])
    assert issubclass(EventListError, SoundNetError)


def test_sed_eval_scores_perfect_wrong_and_empty_lists() -> None:
    reference = [Event("a.wav", 0.0, 5.0, "rain"), Event("a.wav", 5.0, 8.0, "dog"), Event("b.wav", 1.0, 3.0, "dog")]
    perfect = evaluate_events(reference, reference, durations={"a.wav": 10.0, "b.wav": 5.0})
    assert (perfect.segment_f, perfect.segment_error_rate, perfect.event_f, perfect.event_error_rate) == (1, 0, 1, 0)
    swapped = [Event(e.filename, e.onset, e.offset, "dog" if e.label == "rain" else "rain") for e in reference]
    wrong = evaluate_events(reference, swapped)
    assert wrong.segment_f == 0.0 and wrong.event_f == 0.0 and wrong.segment_error_rate >= 1.0
    nothing = evaluate_events(reference, [])
    assert nothing.segment_f == 0.0 and nothing.event_f == 0.0 and nothing.segment_error_rate == 1.0
    late = [Event(e.filename, e.onset + 0.5, e.offset + 0.5, e.label) for e in reference]
    assert evaluate_events(reference, late).event_f == 0.0  # onsets off by more than the 0.2-s collar
    assert evaluate_events(reference, late, t_collar=0.6).event_f == 1.0
    with pytest.raises(ConfigError, match=r"percentage_of_length must be in \[0, 1\], got 2"):
        evaluate_events(reference, reference, percentage_of_length=2)
    with pytest.raises(ConfigError, match="nothing to score"):
        evaluate_events([], [])


def cli_args(*options: str):
    return classify.build_parser().parse_args(["x.wav", *options])


def test_cli_event_options_are_checked_against_the_heads() -> None:
    heads = {"objects": (["tench, Tinca tinca", "pier"], "probability"), "scenes": (["pier", "railroad_track"],
             "probability")}  # fmt: skip
    settings = EventSettings()
    collector = EventCollector(cli_args("--events", "e.tsv"), settings, heads)
    assert collector.head == "scenes" and collector.threshold == 0.5
    with pytest.raises(ConfigError, match="--event-head must be one of 'objects', 'scenes', got 'classes'"):
        EventCollector(cli_args("--events", "e.tsv", "--event-head", "classes"), settings, heads)
    with pytest.raises(ConfigError, match="label 'railroad_track' is not a class of head 'objects'"):
        EventCollector(cli_args("--events", "e.tsv", "--event-head", "objects", "--label", "railroad_track"),
                       settings, heads)  # fmt: skip
    with pytest.raises(ConfigError, match=r"threshold must be in \[0, 1\)"):
        EventCollector(cli_args("--events", "e.tsv"), EventSettings(threshold=2.0), heads)
    svm = {"classes": (["dog", "rain"], "decision")}
    assert EventCollector(cli_args("--events", "e.tsv"), EventSettings(threshold=2.0), svm).threshold == 2.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--threshold", "0.3"], "error: --threshold applies to event lists: add --events FILE"),
        (["--median-frames", "3"], "error: --median-frames applies to event lists: add --events FILE"),
        (["--events", "{tmp}/e.tsv", "--median-frames", "4"], "error: median_frames must be odd"),
        (["--events", "{tmp}/e.tsv", "--min-duration", "-1"], "error: min_duration (seconds) must be a number >= 0"),
        (["--events", "{tmp}/e.tsv", "--threshold", "abc"], "error: argument --threshold: invalid float value: 'abc'"),
        (["--events", "{tmp}/e.tsv", "--output", "{tmp}/e.tsv"], "is also the --output file; give another name"),
        (["--events", "{tmp}/absent/e.tsv"], "error: --events: folder"),
    ],
)
def test_cli_event_argument_errors_are_one_line(options: list[str], message: str, tmp_path: Path, capsys) -> None:
    argv = ["--example", *(o.replace("{tmp}", str(tmp_path)) for o in options)]
    try:
        status = classify.main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1 and err.startswith("error: "), err


def test_timeline_rows_are_chosen_over_the_whole_file() -> None:
    # 20 frames: class 3 is heard in one frame only, class 4 a little everywhere; by clip mean 4 wins, by frame 3
    values = np.full((20, 5), 0.02)
    values[:, 0], values[:, 1], values[:, 2], values[:, 4] = 0.5, 0.3, 0.1, 0.08
    values[7] = [0.05, 0.05, 0.05, 0.8, 0.05]
    head = HeadScores(values, list("abcde"))
    assert timeline_rows(head, 2) == [3, 0]  # the k highest peaks: frame 7's sound gets a row
    assert timeline_rows(head, 1) == [3, 0]  # every frame's best class, even past k
    assert "d" not in [label for label, _ in head.top(3)]  # the clip's mean would have hidden it


def test_timeline_of_a_padded_5s_clip_marks_its_extent_and_events() -> None:
    values = np.tile([0.6, 0.3], (4, 1))
    result = soundnet_short_clip(values)
    events = detect_events(result)
    figure = timeline_figure(result, top_k=2, events=events, event_head="scenes")
    strip, heatmap, panel = figure.axes[:3]
    assert [t.get_text() for t in strip.get_yticklabels()] == ["frames", "audio"]
    frame_bars = strip.collections[-1]
    assert len(frame_bars.get_paths()) == 4 and all(
        np.allclose(c, (1.0, 0.498, 0.055, 1.0), atol=1e-3) for c in frame_bars.get_facecolors()
    )  # every frame of the repeated clip is orange: it heard repeated audio
    assert heatmap.get_xlim() == (0.0, 20.0)
    assert [t.get_text() for t in heatmap.get_yticklabels()] == ["a", "b"]
    extent_lines = [line.get_xdata()[0] for ax in figure.axes[:3] for line in ax.get_lines()]
    assert extent_lines == [5.0, 5.0, 5.0]  # the clip's end, in every panel
    assert [t.get_text() for t in panel.get_yticklabels()] == ["a"]
    (bar,) = panel.collections[0].get_paths()
    np.testing.assert_allclose([bar.get_extents().x0, bar.get_extents().x1], [0.0, 5.0])
