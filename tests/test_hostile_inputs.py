"""Hostile and broken inputs: headers that lie, files cut off mid-write, outputs that would destroy inputs."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundnet_keras.audio import MAX_SAMPLE_RATE, check_sample_rate, load_audio, resample
from soundnet_keras.errors import AudioError, TruncatedAudioWarning

REPO = Path(__file__).resolve().parents[1]


def riff_wav(path: Path, rate: int, samples: np.ndarray, declared_bytes: int | None = None) -> Path:
    """A 16-bit mono WAV written byte by byte, so that its header may say anything."""
    data = np.asarray(samples, "<i2").tobytes()
    size = len(data) if declared_bytes is None else declared_bytes
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                     + b"data" + struct.pack("<I", size) + data)  # fmt: skip
    return path


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), -22050, 0, 1, 999, MAX_SAMPLE_RATE + 1, 44100.5, "44k"])
def test_bad_sample_rates_are_refused_by_name(rate) -> None:
    with pytest.raises(AudioError, match="sample_rate must"):
        check_sample_rate(rate)
    with pytest.raises(AudioError, match="sample_rate must"):
        resample(np.zeros(100, np.float32), rate)  # type: ignore[arg-type]


def test_a_1_hz_header_fails_fast_under_a_small_memory_bound(tmp_path: Path) -> None:
    """200 KB of samples whose header says 1 Hz: refused from the header, in a process limited to 1 GiB (resampling
    it to 22,050 Hz used to take 14 GB)."""
    wav = riff_wav(tmp_path / "one_hz.wav", 1, np.zeros(100_000, np.int16))
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30));"
        "from soundnet_keras.audio import load_audio; from soundnet_keras.errors import AudioError\n"
        f"try:\n    load_audio({str(wav)!r})\nexcept AudioError as exc:\n    print(exc); sys.exit(3)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "one_hz.wav" in proc.stdout and "header says 1 Hz; expected 1,000 to 768,000 Hz" in proc.stdout


def test_files_longer_than_the_cap_are_refused_from_the_header(tmp_path: Path, monkeypatch) -> None:
    import soundnet_keras.audio as audio

    monkeypatch.setattr(audio, "MAX_DURATION_S", 1800.0)  # the real cap is 12 h; a 45-min file is cheap to write
    wav = riff_wav(tmp_path / "long.wav", 1000, np.zeros(45 * 60 * 1000, np.int16))
    with pytest.raises(AudioError, match=r"long\.wav': the file header says 0\.8 h of audio; at most 0\.5 h"):
        load_audio(wav)


def test_a_wav_cut_off_mid_write_decodes_with_a_warning(tmp_path: Path) -> None:
    full = tmp_path / "full.wav"
    tone = 0.3 * np.sin(2 * math.pi * 440 * np.arange(8 * 22050) / 22050)
    sf.write(full, tone, 22050, subtype="PCM_16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(full)  # complete: no warning
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 2 * 3 * 22050])  # 3 of 8 seconds survive
    with pytest.warns(TruncatedAudioWarning, match=r"cut\.wav.*announces 8\.00 s but only 3\.00 s.*5\.00 s missing"):
        waveform, rate = load_audio(cut)
    assert rate == 22050 and abs(waveform.size - 3 * 22050) <= 16


def test_the_cli_notes_a_truncated_file_and_refuses_to_overwrite_an_input(tmp_path: Path, capsys) -> None:
    from soundnet_keras.cli.classify import main

    clip = tmp_path / "clip.wav"
    sf.write(clip, np.zeros(22050, np.float32), 22050)
    before = clip.read_bytes()
    assert main([str(clip), "-o", str(clip)]) == 2
    assert "--output" in capsys.readouterr().err and clip.read_bytes() == before
    assert main([str(clip), "--plot", str(tmp_path / "timeline.txt")]) == 2
    assert "expected an image name ending in png" in capsys.readouterr().err
    assert main([str(clip), "--plot", str(tmp_path / "absent" / "t.png")]) == 2
    err = capsys.readouterr().err
    assert "--plot: folder" in err and "absent' does not exist" in err
    assert main([str(clip), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_the_cli_reports_a_truncated_file_with_a_note(tmp_path: Path, pretrained_path: Path) -> None:
    full = tmp_path / "full.wav"
    sf.write(full, 0.1 * np.random.default_rng(0).standard_normal(12 * 22050), 22050, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 2 * 6 * 22050])
    proc = subprocess.run(
        [sys.executable, "-m", "soundnet_keras.cli.classify", str(cut), "--json", "--weights", str(pretrained_path)],
        capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                                          "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "TruncatedAudioWarning" not in proc.stderr
    assert "announces 12.00 s but only 6.00 s" in proc.stdout  # the JSON record's notes


def test_forward_names_a_wrong_shape(pretrained_net) -> None:
    from soundnet_keras.errors import ConfigError

    with pytest.raises(ConfigError, match=r"forward\(\) takes a \(batch, samples\) array, got shape \(30000,\)"):
        pretrained_net.forward(np.zeros(30000, np.float32), ["pool5"])


@pytest.mark.slow
def test_damaged_head_files_load_or_raise_our_error(pretrained_net, tmp_path: Path) -> None:
    """Seeded truncations and bit flips of a saved .keras head: each loads, or raises a SoundNetError naming the
    file -- never another exception."""
    from soundnet_keras.errors import SoundNetError
    from soundnet_keras.transfer import ClipClassifier, load_classifier

    rng = np.random.default_rng(12)
    clips = [rng.uniform(-0.3, 0.3, 22050).astype(np.float32) * (1 + i % 2) for i in range(6)]
    head = ClipClassifier(net=pretrained_net, cache=False, window=None, window_features="mean", standardize=True)
    good = head.fit(clips, ["a", "b"] * 3).save(tmp_path / "good.keras").read_bytes()
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(60):
        data = bytearray(good)
        if case % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        damaged = tmp_path / f"case{case}.keras"
        damaged.write_bytes(bytes(data))
        try:
            load_classifier(damaged, net=pretrained_net)
            outcomes["loaded"] += 1
        except SoundNetError as exc:
            assert damaged.name in str(exc), exc
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 20, outcomes


def test_outputs_never_write_through_a_planted_symlink(tmp_path: Path) -> None:
    """write_text_atomic writes a fresh temporary (mkstemp: exclusive, random name) and renames it over the target:
    a symlink planted at the output name is replaced, the file it points to is untouched."""
    from soundnet_keras.files import write_text_atomic

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    report = tmp_path / "report.txt"
    report.symlink_to(victim)
    write_text_atomic(report, "the report")
    assert victim.read_text() == "precious" and not report.is_symlink() and report.read_text() == "the report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt", "victim.txt"]
