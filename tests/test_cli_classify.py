"""``soundnet-classify`` and ``soundnet-extract`` end to end, through subprocesses as a user runs them."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from soundnet_keras.audio import example_clip

pytestmark = pytest.mark.slow


def run(module: str, *args: object, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", f"soundnet_keras.cli.{module}", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A stereo 44.1 kHz WAV (4 s, padded by the CLI), a 16 kHz FLAC long enough for 2 frames, a corrupt file."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    t = np.arange(44100 * 4) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.1 * rng.standard_normal(t.size)], axis=1)
    soundfile.write(folder / "short_stereo.wav", stereo, 44100, subtype="PCM_16")
    soundfile.write(folder / "noise.flac", 0.2 * rng.standard_normal(16000 * 13), 16000)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    return {
        "short": folder / "short_stereo.wav",
        "long": folder / "noise.flac",
        "broken": folder / "broken.wav",
        "folder": folder,
    }


def test_text_report_with_frames_skips_the_corrupt_file(clips, pretrained_path, tmp_path):
    proc = run(
        "classify", clips["folder"], "--frames", "--top-k", "3", "--weights", pretrained_path, "-q", cwd=tmp_path
    )
    no_traceback(proc)
    assert proc.returncode == 1
    out = proc.stdout
    assert f"{clips['short']}: 4.00 s, 4 frames" in out and "repeated circularly to 20.00 s" in out
    assert f"{clips['long']}: 13.00 s, 2 frames" in out and "first 0.95 s were appended at its end" in out
    assert out.count("frame 0  ") == 2 and out.count("frame 1  ") == 2 and out.count("frame 3  ") == 1
    assert out.count("scenes:") == (1 + 4) + (1 + 2) and out.count("objects:") == 8
    assert out.count("(hears repeated audio)") == 4 + 1  # every frame of the loop, the long clip's last frame
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, proc.stderr
    assert str(clips["broken"]) in errors[0] and "not a readable audio file" in errors[0]
    assert errors[1] == "error: 1 of 3 files failed"
    assert "I0000" not in proc.stderr.split("error:")[-1]


@pytest.mark.backend
def test_json_csv_plot_and_output_files(clips, pretrained_path, tmp_path):
    out_json, plot = tmp_path / "result.json", tmp_path / "timeline.png"
    files = (example_clip(), clips["long"])
    proc = run(
        "classify",
        "--example",
        clips["long"],
        "--json",
        "--frames",
        "-k",
        "2",
        "--output",
        out_json,
        "--plot",
        plot,
        "--weights",
        pretrained_path,
        "-q",
        cwd=tmp_path,
    )
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    records = json.loads(out_json.read_text())
    assert [r["file"] for r in records] == [str(f) for f in files]
    first = records[0]
    assert first["duration_s"] == pytest.approx(12.0) and first["frames"] == 1 and not first["padded"]
    assert len(first["scenes"]) == 2 and len(first["objects"]) == 2
    assert 0 < first["scenes"][1]["probability"] <= first["scenes"][0]["probability"] <= 1
    assert len(records[1]["frame_results"]) == 2
    frame = records[1]["frame_results"][1]  # 13 s: the last frame lacked 0.95 s, which was appended
    assert 0 < frame["start_s"] < frame["end_s"] <= 13.0 and frame["padded"]
    assert records[1]["padded_to_s"] == pytest.approx((209_374 + 65_536 + 32_768) / 22050, abs=1e-4)
    assert not records[1]["frame_results"][0]["padded"]
    pngs = sorted(tmp_path.glob("timeline_*.png"))
    assert [p.name for p in pngs] == ["timeline_example_train.png", "timeline_noise.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)

    proc = run(
        "classify",
        clips["long"],
        clips["short"],
        "--csv",
        "--frames",
        "-k",
        "2",
        "--no-pad",
        "--weights",
        pretrained_path,
        "-q",
        cwd=tmp_path,
    )
    no_traceback(proc)
    assert proc.returncode == 1
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert {r["file"] for r in rows} == {str(clips["long"])}
    assert len(rows) == 2 * 2 * 2  # (clip + its 1 reliable frame of 2) x 2 heads x top-2
    assert [r["frame"] for r in rows[::4]] == ["all", "0"] and {r["padded"] for r in rows} == {"0"}
    assert all(0 <= float(r["probability"]) <= 1 for r in rows)
    assert "needs at least 242142 samples" in proc.stderr and "--no-pad" in proc.stderr


def test_usage_errors_exit_non_zero_with_one_line(clips, pretrained_path, tmp_path, capsys):
    proc = run("classify", tmp_path / "nothing-here", "--weights", pretrained_path, cwd=tmp_path)
    no_traceback(proc)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and lines[-2:] == [
        f"error: {str(tmp_path / 'nothing-here')!r}: no such file",
        "error: 1 of 1 files failed",
    ]
    # the same checks in-process (argument errors stop before TensorFlow work)
    from soundnet_keras.cli import classify, extract

    with pytest.raises(SystemExit) as info:
        classify.main([str(clips["short"]), "--top-k", "0"])
    assert info.value.code == 2 and "positive integer" in capsys.readouterr().err
    assert classify.main([str(clips["short"]), "--output", str(tmp_path / "no" / "dir.txt")]) == 2
    assert capsys.readouterr().err == f"error: --output: folder {str(tmp_path / 'no')!r} does not exist\n"
    assert extract.main([str(clips["short"]), "--output", str(tmp_path / "features.npz")]) == 2
    assert "writes one feature file per input into a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert classify.main([str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.startswith("error: no audio files found in")
    assert classify.main([]) == 2
    assert "--example" in capsys.readouterr().err


@pytest.mark.backend
def test_extract_npz_and_hdf5(clips, pretrained_path, tmp_path):
    from soundnet_keras import load_features
    from soundnet_keras.architecture import output_length

    target = tmp_path / "features"
    proc = run(
        "extract",
        clips["folder"],
        "-l",
        "pool5",
        "-l",
        "conv7",
        "-o",
        target,
        "--weights",
        pretrained_path,
        "-q",
        cwd=tmp_path,
    )
    no_traceback(proc)
    assert proc.returncode == 1 and "broken.wav" in proc.stderr
    features = load_features(target)
    assert sorted(features) == sorted(str(clips[k]) for k in ("short", "long"))  # not the broken file
    long = features[str(clips["long"])]
    frames = output_length("soundnet8", "pool5", 13 * 22050)
    assert long["pool5"].values.shape == (frames, 256) and long["pool5"].times.center.shape == (frames,)
    assert long["conv7"].values.shape == (output_length("soundnet8", "conv7", 13 * 22050), 1024)
    assert features[str(clips["short"])].provenance["padding"]["padded"] is False  # 4 s suffices for pool5/conv7

    h5 = tmp_path / "features-h5"
    proc = run("extract", clips["long"], "-o", h5, "--format", "hdf5", "--weights", pretrained_path, "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (again,) = load_features(h5).values()
    np.testing.assert_allclose(again["pool5"].values, long["pool5"].values, rtol=1e-5, atol=1e-5)
    assert again.input == str(clips["long"]) and again.path.suffix == ".h5"


def test_esc10_clips_classify(shared_dir, pretrained_path, tmp_path):
    clips = sorted((shared_dir / "esc10-dev" / "audio").glob("*.wav"))[:6]
    if not clips:
        pytest.skip("no ESC-10 clips in the shared folder")
    proc = run("classify", *clips, "--json", "--weights", pretrained_path, "-q", cwd=tmp_path)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert len(records) == len(clips) and all(r["padded"] and r["duration_s"] == pytest.approx(5.0) for r in records)


@pytest.mark.backend
@pytest.mark.slow
def test_classify_with_a_trained_head(shared_dir, pretrained_net, pretrained_path, tmp_path):
    from soundnet_keras.transfer import ClipClassifier

    audio = shared_dir / "esc10-dev" / "audio"
    wanted = {"1": "dog", "41": "chainsaw", "10": "rain"}  # ESC-50 targets in the file names
    paths = sorted(p for p in audio.glob("1-*.wav") if p.stem.rsplit("-", 1)[1] in wanted)
    labels = [wanted[p.stem.rsplit("-", 1)[1]] for p in paths]
    head = ClipClassifier(head="logistic", net=pretrained_net, cache_dir=tmp_path / "cache").fit(paths, labels)
    head_file = head.save(tmp_path / "three.head.keras")
    tests = sorted(p for p in audio.glob("2-*.wav") if p.stem.rsplit("-", 1)[1] in wanted)[:6]
    proc = run("classify", *tests, "--head", head_file, "--json", "--frames", "-k", "3",
               "--weights", pretrained_path, "-q", cwd=tmp_path)  # fmt: skip
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert [r["file"] for r in records] == [str(p) for p in tests]
    expected = head.predict_proba(tests)
    for record, probs in zip(records, expected, strict=True):
        best = record["classes"][0]
        assert set(best) == {"label", "probability"} and len(record["classes"]) == 3
        assert best["label"] == head.classes[int(np.argmax(probs))]
        assert best["probability"] == pytest.approx(float(np.max(probs)), abs=1e-6)
        assert record["frames"] == len(record["frame_results"]) > 1
    correct = sum(r["classes"][0]["label"] == wanted[Path(r["file"]).stem.rsplit("-", 1)[1]] for r in records)
    assert correct >= 4  # well above chance (1/3) on held-out fold-2 clips
    proc = run("classify", tests[0], "--head", tmp_path / "missing.h5", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("does not exist")
