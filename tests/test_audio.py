"""Audio input: every format, rate, channel layout and sample type, and a specific error for each bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from soundnet_keras import audio
from soundnet_keras.audio import AudioError, decode_files, example_clip, expand_paths, load_audio

RATES = (8000, 16000, 22050, 44100, 48000)


def tone(rate: int, seconds: float = 1.0, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(waveform: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(waveform.size)))
    return float(np.fft.rfftfreq(waveform.size, 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix", "tolerance"),
    [
        ("WAV", "PCM_16", ".wav", 2e-4),
        ("WAV", "PCM_24", ".wav", 1e-5),
        ("WAV", "FLOAT", ".wav", 1e-6),
        ("FLAC", "PCM_16", ".flac", 2e-4),
        ("OGG", "VORBIS", ".ogg", None),
        ("MP3", "MPEG_LAYER_III", ".mp3", None),
    ],
)
def test_formats_and_rates_decode_to_22050_mono(tmp_path, rate, fmt, subtype, suffix, tolerance):
    signal = tone(rate)
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, signal, rate, format=fmt, subtype=subtype)
    waveform, out_rate = load_audio(path)
    assert out_rate == 22050 and waveform.dtype == np.float32 and waveform.ndim == 1
    expected = soxr.resample(signal, rate, 22050, quality="HQ") if rate != 22050 else signal
    if tolerance is not None:
        assert waveform.size == expected.size
        np.testing.assert_allclose(waveform, expected, atol=tolerance)
    else:  # lossy codecs: same pitch and level; encoders add delay and padding
        assert abs(waveform.size - expected.size) < 0.2 * 22050
        assert abs(dominant_hz(waveform, 22050) - 440.0) < 3.0
        rms = float(np.sqrt(np.mean(waveform[2000:-2000] ** 2)))
        assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_integer_and_float_sources_share_the_scale(tmp_path):
    signal = tone(44100, amp=0.9)
    decoded = {}
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        path = tmp_path / f"{subtype}.wav"
        soundfile.write(path, signal, 44100, subtype=subtype)
        decoded[subtype], _ = load_audio(path, target_rate=None)
    for subtype, waveform in decoded.items():
        np.testing.assert_allclose(waveform, signal, atol=1e-2 if subtype == "PCM_U8" else 1e-4, err_msg=subtype)
    assert float(np.max(np.abs(decoded["PCM_16"]))) == pytest.approx(0.9, abs=1e-3)


def test_stereo_mixes_down_or_takes_the_first_channel(tmp_path):
    left = tone(48000, amp=0.6)
    right = -0.5 * left
    path = tmp_path / "stereo.flac"
    soundfile.write(path, np.stack([left, right], axis=1), 48000)
    mixed, _ = load_audio(path, target_rate=None)
    first, _ = load_audio(path, target_rate=None, channels="first")
    np.testing.assert_allclose(mixed, 0.25 * left, atol=1e-4)
    np.testing.assert_allclose(first, left, atol=1e-4)
    with pytest.raises(AudioError, match="channels must be 'mix' or 'first', got 'left'"):
        load_audio(path, channels="left")


def test_six_channels_mix_to_their_mean(tmp_path):
    base = tone(16000, amp=0.3)
    data = np.stack([base * (i - 2.5) / 2.5 for i in range(6)], axis=1)
    path = tmp_path / "surround.wav"
    soundfile.write(path, data, 16000, subtype="FLOAT")
    mixed, rate = load_audio(path, target_rate=None)
    assert rate == 16000
    np.testing.assert_allclose(mixed, data.mean(axis=1), atol=1e-6)


def test_block_decoding_equals_one_shot_resampling(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    signal = (0.3 * rng.standard_normal(44100 * 3)).astype(np.float32)
    path = tmp_path / "noise.wav"
    soundfile.write(path, signal, 44100, subtype="FLOAT")
    monkeypatch.setattr(audio, "BLOCK_FRAMES", 10_007)  # many blocks of an odd size
    blocked, _ = load_audio(path)
    np.testing.assert_allclose(blocked, soxr.resample(signal, 44100, 22050, quality="HQ"), atol=1e-6)


def test_silence_is_valid(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(16000, np.int16), 16000)
    waveform, _ = load_audio(path)
    assert waveform.size == 22050 and not waveform.any()


def _write_zero_length(path: Path) -> None:
    with soundfile.SoundFile(path, "w", 22050, 1, subtype="PCM_16"):
        pass


def _write_nan(path: Path) -> None:
    signal = tone(22050)
    signal[100] = np.nan
    soundfile.write(path, signal, 22050, subtype="FLOAT")


def _write_inf(path: Path) -> None:
    signal = tone(22050)
    signal[-5] = np.inf
    soundfile.write(path, signal, 22050, subtype="FLOAT")


def _write_truncated(path: Path) -> None:
    soundfile.write(path, tone(22050, seconds=2), 22050, format="FLAC")
    path.write_bytes(path.read_bytes()[:60])


@pytest.mark.parametrize(
    ("name", "make", "match"),
    [
        ("missing.wav", None, "no such file"),
        ("folder.wav", lambda p: p.mkdir(), "is a folder"),
        ("empty.wav", lambda p: p.write_bytes(b""), r"empty \(0 bytes\)"),
        ("text.wav", lambda p: p.write_text("this is not audio\n" * 20), "not a readable audio file"),
        ("noise.mp3", lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "not a readable audio file"),
        ("zero.wav", _write_zero_length, "zero length"),
        ("nan.wav", _write_nan, "NaN or Inf"),
        ("inf.wav", _write_inf, "NaN or Inf"),
        ("truncated.flac", _write_truncated, "not a readable audio file|corrupt|zero length"),
    ],
)
def test_bad_inputs_get_specific_one_line_errors(tmp_path, name, make, match):
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(AudioError, match=match) as info:
        load_audio(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.wav"
    soundfile.write(path, tone(8000), 8000)
    path.chmod(0)
    with pytest.raises(AudioError, match="cannot read"):
        load_audio(path)


def test_float_file_far_outside_unit_range_is_rejected(tmp_path):
    path = tmp_path / "loud.wav"
    soundfile.write(path, tone(8000) * 100, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"\[-1, 1\]"):
        load_audio(path)


def test_decode_files_keeps_order_and_reports_failures(tmp_path):
    paths = []
    for i, rate in enumerate((8000, 44100, 16000)):
        path = tmp_path / f"{i}.wav"
        soundfile.write(path, tone(rate, seconds=0.5 + i), rate)
        paths.append(path)
    paths.insert(1, tmp_path / "missing.wav")
    for workers in (0, 2):
        results = list(decode_files(paths, workers=workers, prefetch=1))
        assert [r.path for r in results] == paths
        assert [r.ok for r in results] == [True, False, True, True]
        assert "no such file" in str(results[1].error) and results[1].waveform is None
        assert [round(r.duration, 2) for r in results] == [0.5, 0.0, 1.5, 2.5]


def test_expand_paths_recurses_into_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.wav", "a.FLAC", "sub/c.mp3", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    explicit = tmp_path / "notes.txt"
    found = expand_paths([tmp_path, explicit, tmp_path / "b.wav"])
    assert found == [tmp_path / "a.FLAC", tmp_path / "b.wav", tmp_path / "sub" / "c.mp3", explicit]


def test_example_clip_ships_with_the_package():
    path = example_clip()
    assert path.is_file() and path.stat().st_size < 300_000
    waveform, rate = load_audio(path)
    assert rate == 22050 and waveform.size >= 10 * 22050
    assert 0.05 < float(np.max(np.abs(waveform))) <= 1.0


def test_esc10_clips_decode(shared_dir):
    clips = sorted((shared_dir / "esc10-dev" / "audio").glob("*.wav"))[:8]
    if not clips:
        pytest.skip("no ESC-10 clips in the shared folder")
    for item in decode_files(clips):
        assert item.ok, item.error
        assert item.sample_rate == 22050 and abs(item.waveform.size - 5 * 22050) <= 2
