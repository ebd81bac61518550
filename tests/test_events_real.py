"""Sound event lists on real recordings: a head trained with the package's API on fold-1 ESC-10 clips finds the
events of a joined fold-2 sequence followed by the railroad recording, scored with sed_eval against a hand-labelled
reference; SoundNet's own heads list the railroad recording's scene and keep a 5-s clip's events inside it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile

from soundnet_keras.audio import load_audio
from soundnet_keras.cli import classify
from soundnet_keras.events import Event, detect_events, evaluate_events, parse_event_list, read_event_list

pytestmark = pytest.mark.slow

CLASSES = ("chainsaw", "crying_baby", "helicopter", "rain", "rooster")

SEQUENCE = (
    "2-101676-A-10.wav",  # rain
    "2-95258-A-1.wav",  # rooster, then silence
    "2-50667-A-41.wav",  # chainsaw
    "2-188822-A-40.wav",  # helicopter
    "2-50665-A-20.wav",  # crying_baby, then silence
    "2-117625-A-10.wav",  # rain
    "2-65750-A-1.wav",  # rooster, then silence
    "2-77945-B-41.wav",  # chainsaw
    "2-50666-A-20.wav",  # crying_baby, then silence
    "2-37806-B-40.wav",  # helicopter
)
"""Fold-2 ESC-10 clips (5 s each) joined in this order, followed by the 19.93-s railroad recording."""

REFERENCE = """\
SEQ\t0.0\t5.0\train
SEQ\t5.0\t8.1\trooster
SEQ\t10.0\t15.0\tchainsaw
SEQ\t15.0\t20.0\thelicopter
SEQ\t20.0\t22.7\tcrying_baby
SEQ\t25.0\t30.0\train
SEQ\t30.0\t31.9\trooster
SEQ\t35.0\t40.0\tchainsaw
SEQ\t40.0\t44.4\tcrying_baby
SEQ\t45.0\t50.0\thelicopter
"""
"""The hand-labelled events: onsets at the joins; a clip whose sound stops before its 5 s (ESC clips are padded
with digital silence) ends where its level falls below -50 dBFS, read off its envelope in 0.1-s steps. The railroad
recording (50.0-69.93 s) is a train, none of the head's classes: no event."""


@pytest.fixture(scope="module")
def esc10(shared_dir: Path) -> dict[str, list[Path]]:
    """ESC-10 clips of :data:`CLASSES` per fold."""
    audio = shared_dir / "esc10-dev" / "audio"
    with open(shared_dir / "esc10-dev" / "meta" / "esc50.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["category"] in CLASSES]
    return {fold: [audio / r["filename"] for r in rows if r["fold"] == fold] for fold in ("1", "2")}


@pytest.fixture(scope="module")
def head_file(esc10, pretrained_net, feature_cache: Path, tmp_path_factory) -> Path:
    """A logistic head on the 40 fold-1 clips of the five classes, trained with the package's API and saved."""
    from soundnet_keras.transfer import ClipClassifier

    paths = esc10["1"]
    labels = [Path(p).stem.rsplit("-", 1)[1] for p in paths]
    names = {"41": "chainsaw", "20": "crying_baby", "40": "helicopter", "10": "rain", "1": "rooster"}
    head = ClipClassifier(head="logistic", net=pretrained_net, cache_dir=feature_cache)
    head.fit(paths, [names[label] for label in labels])
    assert head.classes == list(CLASSES)
    return head.save(tmp_path_factory.mktemp("events-head") / "esc5.head.keras")


@pytest.fixture(scope="module")
def recording(shared_dir: Path, tmp_path_factory) -> Path:
    """The joined fold-2 clips and the railroad recording as one 22,050-Hz WAV (69.93 s)."""
    audio = shared_dir / "esc10-dev" / "audio"
    parts = [load_audio(audio / name, target_rate=22050)[0] for name in SEQUENCE]
    assert all(part.size == 5 * 22050 for part in parts)
    parts.append(load_audio(shared_dir / "audio" / "railroad_audio.wav", target_rate=22050)[0])
    path = tmp_path_factory.mktemp("events-recording") / "esc10_then_railroad.wav"
    soundfile.write(path, np.concatenate(parts), 22050, subtype="FLOAT")
    return path


def test_trained_head_events_match_the_hand_labelled_reference(
    head_file, recording, pretrained_net, pretrained_path, feature_cache, tmp_path, monkeypatch, capsys
) -> None:
    from soundnet_keras.transfer import load_classifier

    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path / "cache"))  # the CLI's feature cache, not the user's
    events_file, plot = tmp_path / "events.tsv", tmp_path / "timeline.png"
    argv = [str(recording), "--head", str(head_file), "--weights", str(pretrained_path), "-q"]
    argv += ["--events", str(events_file), "--median-frames", "5", "--plot", str(plot)]
    assert classify.main(argv) == 0, capsys.readouterr().err
    estimated = read_event_list(events_file)
    # the CLI's list is the library's, on the head's own result
    head = load_classifier(head_file, net=pretrained_net, cache_dir=feature_cache)
    result = head.predict_files([recording])[0]
    assert result.duration == pytest.approx(69.93, abs=0.01) and not result.padded
    library = detect_events(result, median_frames=5)
    assert [(e.label, round(e.onset, 3), round(e.offset, 3)) for e in library] == [
        (e.label, e.onset, e.offset) for e in estimated
    ]
    assert all(0.0 <= e.onset < e.offset <= result.duration for e in estimated)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    reference = parse_event_list(REFERENCE.replace("SEQ", str(recording)))
    lengths = {str(recording): result.duration}
    scores = evaluate_events(reference, estimated, labels=CLASSES, durations=lengths)
    loose = evaluate_events(reference, estimated, labels=CLASSES, durations=lengths, t_collar=1.0)
    # measured: segment F 0.615 (ER 0.86), event F 0.333 with the 0.2-s collar (ER 1.60), 0.583 with 1 s (ER 1.00)
    assert scores.segment_f >= 0.5 and scores.segment_error_rate <= 1.0
    assert scores.event_f >= 0.25 and loose.event_f >= 0.45
    # control: the same reference times with each label replaced by the next class (measured F 0.051 and 0.000)
    rotated = [Event(e.filename, e.onset, e.offset, CLASSES[(CLASSES.index(e.label) + 1) % 5]) for e in reference]
    wrong = evaluate_events(rotated, estimated, labels=CLASSES, durations=lengths, t_collar=1.0)
    assert wrong.segment_f <= 0.1 and wrong.event_f <= 0.1
    assert scores.segment_f - wrong.segment_f >= 0.4 and loose.event_f - wrong.event_f >= 0.4


def test_soundnet_heads_events_on_the_railroad_recording_and_a_5s_clip(
    shared_dir, pretrained_net, pretrained_path, tmp_path, capsys
) -> None:
    railroad, short = shared_dir / "audio" / "railroad_audio.wav", shared_dir / "esc10-dev" / "audio" / SEQUENCE[0]
    events_file, plot = tmp_path / "events.tsv", tmp_path / "t.png"
    argv = [str(railroad), str(short), "--weights", str(pretrained_path), "-q", "-k", "3"]
    argv += ["--events", str(events_file), "--threshold", "0.04", "--plot", str(plot)]
    assert classify.main(argv) == 0, capsys.readouterr().err
    events = read_event_list(events_file)
    by_file = {name: [e for e in events if e.filename == name] for name in (str(railroad), str(short))}
    # the train: the scene railroad_track from the start (its frames score 0.34, 0.30, 0.19, 0.10)
    rail = [e for e in by_file[str(railroad)] if e.label == "railroad_track"]
    assert len(rail) == 1 and rail[0].onset == 0.0 and rail[0].offset == pytest.approx(19.933, abs=1e-3)
    # the 5-s clip was repeated to 20 s: its frames have no position in it, each event is the whole clip
    assert by_file[str(short)] and all((e.onset, e.offset) == (0.0, 5.0) for e in by_file[str(short)])
    prediction = pretrained_net.predict(short)
    assert prediction.padded_to_s == 20.0
    assert [e.label for e in by_file[str(short)]] == [e.label for e in detect_events(prediction, threshold=0.04)]
    pngs = sorted(p.name for p in tmp_path.glob("t_*.png"))
    assert pngs == [f"t_{short.stem}.png", "t_railroad_audio.png"]
    # the default threshold (0.5) lists nothing from SoundNet's 401 scenes and says what the best score was
    assert classify.main([str(railroad), "--weights", str(pretrained_path), "-q", "--events", str(events_file)]) == 0
    assert "highest frame score of head 'scenes' was 0.342 ('railroad_track')" in capsys.readouterr().err
    assert events_file.read_text() == f"{railroad}\n"
