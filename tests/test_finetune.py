"""Fine-tuning a new head on pretrained SoundNet: ESC-10 (shared data) beats chance; export -> load -> predict."""

from __future__ import annotations

from pathlib import Path

import h5py
import keras
import numpy as np
import pytest


@pytest.fixture(scope="module")
def esc10_result(shared_dir: Path, pretrained_path: Path, tmp_path_factory: pytest.TempPathFactory):
    from soundnet_keras.training.finetune import FinetuneConfig, clips_from_csv, finetune, split_clips

    root = shared_dir / "esc10-dev"
    clips = clips_from_csv(root / "meta" / "esc50.csv", audio_dir=root / "audio")
    train_idx, val_idx = split_clips(clips, val_fold="2")
    result = finetune(clips, train_idx, val_idx, FinetuneConfig(init=str(pretrained_path), epochs=5), verbose=0)
    path = result.classifier.save(tmp_path_factory.mktemp("finetuned") / "esc10.keras")
    return clips, val_idx, result, path


@pytest.mark.backend
def test_finetune_on_esc10_beats_chance_on_held_out_fold(esc10_result) -> None:
    clips, val_idx, result, _ = esc10_result
    assert len(clips.classes) == 10 and len(val_idx) == 80
    assert result.val_accuracy is not None and result.val_accuracy > 0.4  # chance is 0.1


@pytest.mark.backend
def test_export_load_predict_round_trip(esc10_result) -> None:
    from soundnet_keras.audio import load_audio
    from soundnet_keras.keras_files import read_metadata, weighted_layers
    from soundnet_keras.training.finetune import FINETUNED_FORMAT, load_finetuned

    clips, val_idx, result, path = esc10_result
    meta = read_metadata(path, [FINETUNED_FORMAT], "fine-tuned model")
    assert meta["layer"] == "pool5" and meta["arch"] == "soundnet8" and meta["classes"] == clips.classes
    plain = keras.saving.load_model(path, safe_mode=True)  # Keras alone: waveform -> class probabilities
    layers = weighted_layers(plain)
    assert "head" in layers and "conv1_bn" in layers and "conv6" not in layers
    loaded = load_finetuned(path)
    assert loaded.classes == clips.classes
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, (1, 5 * 22050)).astype(np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(plain(audio)), keras.ops.convert_to_numpy(loaded.model(audio)), atol=1e-6
    )
    files = [clips.paths[i] for i in val_idx[:3]]
    predictions = loaded.predict_files(files)
    for file, prediction in zip(files, predictions, strict=True):
        head = prediction.head("classes")
        assert list(head.labels) == clips.classes and abs(float(head.scores().sum()) - 1) < 1e-5
        assert prediction.frames == 1 and prediction.source == str(file) and not prediction.padded
        assert prediction.label() == head.top(1)[0][0]
        waveform, rate = load_audio(file, target_rate=None)
        original = result.classifier.predict_waveform(waveform, rate)
        assert original.label() == prediction.label()
        np.testing.assert_allclose(original.head("classes").values, head.values, atol=1e-5)
    # a clip shorter than pool5's minimum is repeated up to it, and says so
    short = loaded.predict_waveform(np.zeros(1000, np.float32), 22050)
    assert short.label() in clips.classes and short.padded and short.padded_frames.tolist() == [True]


def test_load_finetuned_rejects_other_files(tmp_path: Path) -> None:
    from soundnet_keras.errors import WeightsError
    from soundnet_keras.training.finetune import load_finetuned

    other = tmp_path / "other.keras"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(WeightsError, match=r"expected format 'soundnet_keras.finetuned/2', found 'something-else'"):
        load_finetuned(other)


def test_finetune_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from soundnet_keras.cli.finetune import main

    assert main(["--csv", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "m.keras")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CSV file") and "missing.csv" in err and err.count("\n") == 1


@pytest.mark.slow
def test_training_the_trunk_comes_after_the_head_and_keeps_batchnorm_statistics(
    shared_dir: Path, pretrained_path: Path
) -> None:
    """--train-trunk: the head trains first (trunk frozen), then the trunk's convolutions move while its BatchNorm
    statistics (learned on two million videos) stay as they were; augmentation runs along."""
    from soundnet_keras.training.finetune import FinetuneConfig, clips_from_csv, finetune, split_clips
    from soundnet_keras.weights import load_weights

    root = shared_dir / "esc10-dev"
    clips = clips_from_csv(root / "meta" / "esc50.csv", audio_dir=root / "audio")
    train_idx, _ = split_clips(clips, val_fold="2")
    config = FinetuneConfig(
        init=str(pretrained_path), freeze_trunk=False, epochs=1, trunk_epochs=1, batch_size=8, augment=True
    )
    result = finetune(clips, train_idx[:16], [], config, verbose=0)
    assert len(result.history["loss"]) == 2  # one head epoch, then one with the trunk
    trunk = next(layer for layer in result.classifier.model.layers if isinstance(layer, keras.Model))
    before = load_weights(pretrained_path).params
    conv = trunk.get_layer("conv3")
    bn = trunk.get_layer("conv3_bn")
    assert not np.allclose(conv.get_weights()[0], before["conv3"]["kernel"])  # the trunk learned
    moving_mean = next(v for v in bn.weights if "moving_mean" in v.path)
    np.testing.assert_array_equal(np.asarray(moving_mean), before["conv3_bn"]["moving_mean"])


def test_augmentation_defaults_on_with_trunk_training_only() -> None:
    from soundnet_keras.training.finetune import FinetuneConfig

    assert not FinetuneConfig().augments and FinetuneConfig(freeze_trunk=False).augments
    assert not FinetuneConfig(freeze_trunk=False, augment=False).augments and FinetuneConfig(augment=True).augments
    assert (FinetuneConfig().epochs, FinetuneConfig().trunk_epochs, FinetuneConfig().trunk_learning_rate) == (
        20,
        20,
        3e-5,
    )
