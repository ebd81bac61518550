"""L³-Net: layer tables against the paper's numbers, the log-spectrogram against NumPy, embeddings, weights files,
and the downstream tools (soundnet-extract, soundnet-train-head, soundnet-bench) on L³ weights.

The audio subnetwork costs about 0.25 s per 1-s window on a 2-core CPU, so the real clips here are cut to 1.3-2.5 s.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile

from soundnet_keras.errors import ConfigError, InputTooShortError, SoundNetError, WeightsError
from soundnet_keras.l3 import tables

ESC_RATE = 44100


# ------------------------------------------------------------------------------------------------- tables (no Keras)
def test_tables_give_the_papers_shapes() -> None:
    t = tables.tables("l3")
    assert (tables.FREQUENCY_BINS, tables.SPECTROGRAM_FRAMES) == (257, 199)
    assert (tables.STFT_WINDOW, tables.STFT_HOP, tables.FFT_LENGTH) == (480, 240, 512)
    audio = tables.map_shapes(t.audio, t.audio_input)
    vision = tables.map_shapes(t.vision, t.vision_input)
    assert [audio[f"audio_pool{b}"] for b in (1, 2, 3)] == [(128, 99, 64), (64, 49, 128), (32, 24, 256)]
    assert audio["audio_conv4_2"] == (32, 24, 512) and audio["audio_pool4"] == (1, 1, 512)
    assert vision["vision_conv4_2"] == (28, 28, 512) and vision["vision_pool4"] == (1, 1, 512)
    assert tables.parameter_shapes("l3")["fusion_fc1"]["kernel"] == (1024, 128)
    assert tables.parameter_shapes("l3")["fusion_fc2"]["kernel"] == (128, 2)


def test_embedding_stream_geometry() -> None:
    from soundnet_keras.architecture import frame_times, geometry, output_length, plan_input, sample_rate

    geo = geometry("l3", "audio_pool4")
    assert (geo.min_samples, geo.hop, geo.receptive_field, geo.offset, geo.channels) == (48000, 4800, 48000, 0, 512)
    assert geo.sample_rate == sample_rate("l3") == 48000 and geo.min_seconds == 1.0
    assert output_length("l3", "audio_pool4", 5 * 48000) == 41
    times = frame_times("l3", "audio_conv2_1", 3, 5 * 48000)
    np.testing.assert_allclose(times.start, [0.0, 0.1, 0.2])
    np.testing.assert_allclose(times.end, [1.0, 1.1, 1.2])
    assert plan_input("l3", ("audio_pool4",), 1000, "zeros").network_samples == 48000
    with pytest.raises(InputTooShortError, match=r"needs at least 48000 samples \(1.000 s at 48000 Hz\)"):
        plan_input("l3", ("audio_pool4",), 1000, None)
    with pytest.raises(ConfigError, match=r"L³-Net architecture.*no SoundNet layer table"):
        from soundnet_keras.architecture import layer_table

        layer_table("l3")


# ------------------------------------------------------------------------------------------------------ Keras
@pytest.fixture(scope="module")
def net():
    from soundnet_keras.l3 import L3Net

    return L3Net()


@pytest.fixture(scope="module")
def clip(shared_dir: Path) -> np.ndarray:
    """The first 2.5 s of a real ESC-10 clip (dog bark), at 44.1 kHz."""
    waveform, rate = soundfile.read(shared_dir / "esc10-dev" / "audio" / "1-100032-A-0.wav", dtype="float32")
    assert rate == ESC_RATE
    return waveform[: int(2.5 * ESC_RATE)]


@pytest.fixture(scope="module")
def one_pass(net, clip):
    return net.features(clip, ESC_RATE)


@pytest.mark.backend
def test_spectrogram_equals_numpy_stft(rng) -> None:
    import keras
    from scipy.signal import get_window

    from soundnet_keras.l3.spectrogram import LogSpectrogram

    audio = rng.uniform(-0.5, 0.5, (2, 48000)).astype(np.float32)
    layer = LogSpectrogram()
    got = keras.ops.convert_to_numpy(layer(audio))
    assert got.shape == (2, 257, 199, 1)
    starts = np.arange(199) * 240
    frames = audio[:, starts[:, None] + np.arange(480)] * get_window("hann", 480)  # periodic Hann
    reference = np.log(np.abs(np.fft.rfft(frames, n=512, axis=-1)) + 1e-6).transpose(0, 2, 1)
    np.testing.assert_allclose(got[..., 0], reference, atol=2e-4)
    clone = LogSpectrogram.from_config(layer.get_config())
    assert (clone.window, clone.hop, clone.fft_length, clone.epsilon) == (480, 240, 512, 1e-6)
    with pytest.raises(ConfigError, match="fft_length 256 is shorter than its window 480"):
        LogSpectrogram(fft_length=256)


def test_models_give_the_papers_outputs(net, rng) -> None:
    audio = rng.uniform(-0.5, 0.5, (2, 48000)).astype(np.float32)
    frame = rng.uniform(0, 1, (2, 224, 224, 3)).astype(np.float32)
    assert net.keras_model.predict_on_batch(audio).shape == (2, 512)
    assert net.vision_model.predict_on_batch(frame).shape == (2, 512)
    assert net.avc_model.predict_on_batch({"frame": frame, "audio": audio}).shape == (2, 2)
    assert net.layers[0] == "audio_conv1_1" and net.layers[-1] == net.embedding_layer == "audio_pool4"
    # the three models share their layers: one set of parameters
    assert net.keras_model.get_layer("audio_conv1_1") is net.avc_model.get_layer("audio_conv1_1")


def test_features_one_embedding_per_hop(net, clip, one_pass) -> None:
    feats = one_pass
    assert feats.values.shape == (16, 512)  # (2.5 s - 1 s) / 0.1 s + 1
    np.testing.assert_allclose(feats.times.start, np.arange(16) * 0.1, atol=1e-9)
    np.testing.assert_allclose(feats.times.end, np.arange(16) * 0.1 + 1.0, atol=1e-9)
    assert not feats.padded and feats.sample_rate == 48000 and feats.input_samples == 120000
    # frame 5 is the audio model on the window [0.5 s, 1.5 s) of the 48 kHz clip
    from soundnet_keras.audio import resample

    audio = resample(clip, ESC_RATE, 48000)
    window = audio[None, 5 * 4800 : 5 * 4800 + 48000]
    np.testing.assert_allclose(feats.values[5], net.keras_model.predict_on_batch(window)[0], rtol=1e-4, atol=1e-4)
    both = net.intermediates(clip, ESC_RATE, ["audio_pool1", "audio_pool4"])
    assert both["audio_pool1"].values.shape == (16, 64)
    np.testing.assert_allclose(both["audio_pool4"].values, feats.values, rtol=1e-5, atol=1e-5)


def test_chunked_long_input_equals_one_pass(net, clip, one_pass) -> None:
    net.chunk_seconds = 0.0  # the smallest chunks there are (two windows and two hops)
    try:
        chunked = net.features(clip, ESC_RATE)
    finally:
        net.chunk_seconds = 120.0
    np.testing.assert_allclose(chunked.values, one_pass.values, rtol=1e-5, atol=1e-5)


def test_short_clips_follow_the_padding_policy(net, clip) -> None:
    short = clip[: ESC_RATE // 2]
    padded = net.features(short, ESC_RATE, pad="repeat")
    assert padded.values.shape == (1, 512) and padded.padded and padded.padded_to_s == 1.0
    assert padded.padded_frames.tolist() == [True]
    with pytest.raises(InputTooShortError, match="needs at least 48000 samples"):
        net.features(short, ESC_RATE)


def test_bad_arguments(net) -> None:
    from soundnet_keras.l3 import L3Net

    with pytest.raises(ConfigError, match="unknown layer 'pool5' for architecture 'l3'"):
        net.features(np.zeros(48000, np.float32), layer="pool5")
    with pytest.raises(ConfigError, match="forward\\(\\) takes a \\(batch, samples\\) array"):
        net.forward(np.zeros(48000, np.float32), ["audio_pool4"])
    with pytest.raises(ConfigError, match="no object/scene heads"):
        net.predict(np.zeros(48000, np.float32))
    with pytest.raises(ConfigError, match="precision 'highest' or 'default', got 'mixed_bfloat16'"):
        L3Net(precision="mixed_bfloat16")
    with pytest.raises(ConfigError, match="unknown L³-Net architecture 'soundnet8'"):
        L3Net("soundnet8")
    with pytest.raises(WeightsError, match=r"no such file.*no L³-Net presets"):
        L3Net.from_pretrained("l3")
    from soundnet_keras.transfer import FeatureExtractor

    with pytest.raises(ConfigError, match=r"variant 'exact'.*does not apply to 'l3'"):
        FeatureExtractor(net, "audio_pool4", variant="exact", cache=False)


# ----------------------------------------------------------------------------------------------------- weights
@pytest.fixture(scope="module")
def l3_file(net, tmp_path_factory) -> Path:
    return net.save_weights(tmp_path_factory.mktemp("l3") / "l3.weights.h5")


def test_weights_round_trip_is_strict(net, l3_file, tmp_path) -> None:
    from soundnet_keras import SoundNet, load_network
    from soundnet_keras.l3 import L3Net

    loaded = load_network(l3_file)
    assert isinstance(loaded, L3Net)
    for layer, variables in net.get_params().items():
        for var, value in variables.items():
            np.testing.assert_array_equal(loaded.get_params()[layer][var], value)
    missing = tmp_path / "missing.weights.h5"
    missing.write_bytes(l3_file.read_bytes())
    with h5py.File(missing, "a") as f:
        key = next(k for k in f["layers"] if f["layers"][k]["vars"].attrs.get("name") == "fusion_fc2")
        del f["layers"][key]
    with pytest.raises(WeightsError, match="missing layer 'fusion_fc2'"):
        L3Net.from_pretrained(missing)
    extra = tmp_path / "extra.weights.h5"
    extra.write_bytes(l3_file.read_bytes())
    with h5py.File(extra, "a") as f:
        group = f["layers"].create_group("dense_extra").create_group("vars")
        group.attrs["name"] = "fusion_fc3"
        group["0"], group["1"] = np.zeros((2, 2), np.float32), np.zeros(2, np.float32)
    with pytest.raises(WeightsError, match="unused layer 'fusion_fc3'"):
        L3Net.from_pretrained(extra)
    with pytest.raises(WeightsError, match=r"is an L³-Net weights file.*load_network"):
        SoundNet.from_pretrained(l3_file)
    soundnet_file = SoundNet("soundnet5").save_weights(tmp_path / "s5.weights.h5")
    with pytest.raises(WeightsError, match="architecture 'soundnet5', not an L³-Net one"):
        L3Net.from_pretrained(soundnet_file)
    assert isinstance(load_network(soundnet_file), SoundNet)


# ----------------------------------------------------------------------------------------- downstream tools
@pytest.fixture(scope="module")
def short_clips(shared_dir: Path, tmp_path_factory) -> Path:
    """Four real ESC-10 clips (two dog, two rooster) cut to 1.3 s, in class folders."""
    root = tmp_path_factory.mktemp("l3clips")
    meta = (shared_dir / "esc10-dev" / "meta" / "esc50.csv").read_text().splitlines()[1:]
    for category in ("dog", "rooster"):
        rows = [line.split(",") for line in meta if line.split(",")[3] == category][:2]
        (root / category).mkdir()
        for row in rows:
            waveform, rate = soundfile.read(shared_dir / "esc10-dev" / "audio" / row[0], dtype="float32")
            soundfile.write(root / category / row[0], waveform[: int(1.3 * rate)], rate)
    return root


def test_soundnet_extract_on_l3_weights(l3_file, short_clips, tmp_path, capsys) -> None:
    from soundnet_keras.cli.extract import main

    out = tmp_path / "features"
    code = main([str(short_clips), "-o", str(out), "--weights", str(l3_file), "-l", "audio_pool4", "--quiet"])
    assert code == 0, capsys.readouterr().err
    from soundnet_keras import load_features

    folder = load_features(out)
    assert len(folder) == 4
    first = folder[next(iter(folder))]
    feats = first["audio_pool4"]
    assert feats.values.shape == (4, 512)  # (1.3 s - 1 s) / 0.1 s + 1
    np.testing.assert_allclose(feats.times.end, [1.0, 1.1, 1.2, 1.3], atol=1e-9)
    assert feats.sample_rate == 48000
    record = first.provenance
    assert record["architecture"] == "l3" and record["sample_rate"] == 48000
    assert record["layers"]["audio_pool4"]["hop_s"] == 0.1


def test_soundnet_train_head_on_l3_weights(l3_file, short_clips, tmp_path, capsys) -> None:
    from soundnet_keras.cli.train_head import main

    out = tmp_path / "l3.head.keras"
    args = [str(short_clips), "-o", str(out), "--weights", str(l3_file), "--cv", "0", "--no-cache", "--no-progress"]
    code = main([*args, "--window", "none", "--window-features", "meanmax"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "4 clips, 2 classes" in captured.out and out.is_file()


def test_cli_refusals_on_l3_weights(l3_file, short_clips, shared_dir, tmp_path, capsys) -> None:
    from soundnet_keras.cli.bench import main as bench
    from soundnet_keras.cli.classify import main as classify

    assert classify([str(short_clips / "dog"), "--weights", str(l3_file)]) == 2
    assert "no object/scene heads" in capsys.readouterr().err
    root = str(shared_dir / "esc10-dev")
    code = bench(["esc", "--root", root, "--esc10", "--weights", str(l3_file), "--out", str(tmp_path), "--no-cache"])
    assert code == 2
    assert "variant 'exact'" in capsys.readouterr().err
    assert issubclass(WeightsError, SoundNetError)


def test_the_esc_table_cites_the_paper_of_the_network_benchmarked() -> None:
    from types import SimpleNamespace

    from soundnet_keras.transfer.esc import format_results

    result = SimpleNamespace(
        protocol=SimpleNamespace(name="paper-resampled"), fold_accuracy={1: 0.5}, mean_accuracy=0.5
    )
    dataset = SimpleNamespace(folds=(1,), esc10=True, name="ESC-10")
    soundnet, l3 = format_results([result], dataset), format_results([result], dataset, l3=True)
    assert soundnet.splitlines()[-1] == "(paper, SoundNet-8 pool5 + linear SVM, all 5 folds of ESC-10: 92.2)"
    assert l3.splitlines()[-1].startswith("(papers: L³-Net audio_pool4 + linear SVM, ESC-50: 79.3; SoundNet-8")
    assert soundnet.splitlines()[:-1] == l3.splitlines()[:-1]
