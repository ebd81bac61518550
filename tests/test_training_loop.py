"""The training loop around ``fit``: one data order for any number of replicas, device checks, validation KL,
learning-rate schedule, checkpoint retention, best-only checkpoints, early stopping, backup frequency."""

from __future__ import annotations

import json
import math
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from training_helpers import kill_after, run_script, synthetic_shards

from soundnet_keras.errors import ConfigError
from soundnet_keras.training.data import held_out_videos, make_dataset, read_manifest
from soundnet_keras.training.losses import reference_loss

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_shards(tmp_path_factory)


def _config(shards: Path, folder: Path, **changes):
    from soundnet_keras.training.train import TrainConfig

    settings = {
        "arch": "soundnet5",
        "steps": 6,
        "batch_size": 4,
        "crop_seconds": 3,
        "checkpoint_every": 2,
        "seed": 11,
        "verbose": 0,
        "tensorboard": False,
    }
    return TrainConfig(shards, folder, **{**settings, **changes})


REPLICAS_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from soundnet_keras.training.train import TrainConfig, train

    class Losses(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.losses = []

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))

    out = {}
    for name, strategy, devices in (("one", "default", None), ("two", "mirrored", ["/cpu:0", "/cpu:1"])):
        losses = Losses()
        result = train(TrainConfig(Path(sys.argv[1]), Path(sys.argv[2]) / name, arch="soundnet5", steps=2,
                                   batch_size=4, crop_seconds=3, checkpoint_every=2, seed=11, verbose=0,
                                   tensorboard=False, strategy=strategy, devices=devices), callbacks=[losses])
        out[name] = {"losses": losses.losses, "replicas": result.replicas}
    print(json.dumps(out))
""")


def test_one_and_two_replicas_train_on_the_same_batches(shards: Path, tmp_path: Path) -> None:
    done = run_script(REPLICAS_SCRIPT, str(shards), str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["one"]["replicas"], result["two"]["replicas"]) == (1, 2)
    one, two = result["one"]["losses"][0], result["two"]["losses"][0]
    assert math.isclose(one, two, rel_tol=1e-5), (one, two)  # same weights and the same first global batch


def test_missing_devices_are_named_quickly(tmp_path: Path, shards: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from soundnet_keras.cli.train import main
    from soundnet_keras.training.train import check_devices, make_strategy

    began = time.monotonic()
    args = [str(shards), "-o", str(tmp_path / "run"), "--strategy", "mirrored", "--devices", "/cpu:0", "/cpu:7"]
    assert main([*args, "--arch", "soundnet5", "--crop-seconds", "3", "-q"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1, err
    error = err.strip().splitlines()[-1]
    assert error.startswith("error: device(s) /cpu:7 not found on this machine; available: ") and "/cpu:0" in error
    assert time.monotonic() - began < 60
    with pytest.raises(ConfigError, match=r"name\(s\) the same device twice"):
        check_devices(["/cpu:0", "CPU:0"])
    with pytest.raises(ConfigError, match="need the mirrored strategy"):
        make_strategy("default", ["/cpu:0"])


@pytest.mark.backend
def test_warmup_and_cosine_schedule() -> None:
    from soundnet_keras.training.train import WarmupSchedule

    schedule = WarmupSchedule(1e-3, total_steps=10, warmup_steps=2, kind="cosine")
    got = [float(schedule(step)) for step in range(11)]
    expected = [5e-4, 1e-3] + [1e-3 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 8)) for s in range(2, 11)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)
    assert [float(WarmupSchedule(2.0, 4, 0)(s)) for s in range(4)] == [2.0] * 4
    with pytest.raises(ConfigError, match="warmup_steps"):
        WarmupSchedule(1e-3, total_steps=4, warmup_steps=4)


@pytest.mark.backend
def test_validation_kl_schedule_and_kept_checkpoints(shards: Path, tmp_path: Path) -> None:
    import keras

    from soundnet_keras.training.train import train

    class Rates(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.rates: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    rates, said = Rates(), []
    config = _config(
        shards, tmp_path / "run", steps=8, val_fraction=0.25, lr_schedule="cosine", warmup_steps=2, keep_checkpoints=2
    )
    result = train(config, callbacks=[rates], log=said.append)
    held = held_out_videos(read_manifest(shards), 0.25, seed=11, crop_steps=3)
    assert result.held_out == held and len(held) == 4  # a quarter of the 16 videos long enough for a crop
    history = result.history
    assert len(history["val_loss"]) == 4 and all(np.isfinite(history["val_loss"]))
    assert len(history["clips_per_second"]) == 4 and min(history["clips_per_second"]) > 0
    assert any(line.startswith("step 8/8: loss ") and "val_loss" in line and "clips/s" in line for line in said)
    # val_loss is the original loss over the held-out videos (first crop of each), after the last interval
    ds, _ = make_dataset(shards, arch="soundnet5", batch_size=16, crop_steps=3, training=False, only_videos=held)
    audio, targets = next(iter(ds))
    logits = result.model.predict_on_batch(audio.numpy())
    expected_kl = reference_loss({h: targets[h].numpy() for h in targets}, {h: np.asarray(logits[h]) for h in targets})
    assert audio.shape[0] == 4 and math.isclose(history["val_loss"][-1], expected_kl, rel_tol=1e-4)
    rest, info = make_dataset(
        shards, arch="soundnet5", batch_size=16, crop_steps=3, training=False, exclude_videos=held
    )
    assert info.usable_examples == 12 and sum(int(a.shape[0]) for a, _ in rest) == 12  # the others train
    expected = [5e-4, 1e-3] + [1e-3 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 6)) for s in range(2, 8)]
    np.testing.assert_allclose(rates.rates, expected, rtol=1e-5, atol=1e-9)
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000006.weights.h5", "step-00000008.weights.h5"]
    assert [p.name for p in result.checkpoints] == ["step-00000006.weights.h5", "step-00000008.weights.h5"]


def test_best_only_and_early_stopping(shards: Path, tmp_path: Path) -> None:
    from soundnet_keras.training.train import train

    # a far too high learning rate: the held-out KL soon stops improving
    config = _config(
        shards, tmp_path / "run", steps=40, val_fraction=0.25, learning_rate=0.5, best_only=True, early_stopping=2
    )
    result = train(config)
    val = result.history["val_loss"]
    best = [i for i, v in enumerate(val) if v < min(val[:i], default=math.inf)]
    assert len(val) < 20 and best[-1] == len(val) - 3, val  # stopped 2 intervals after the last improvement
    assert result.steps_done == 2 * len(val)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*"))
    assert names == [f"step-{2 * (i + 1):08d}.weights.h5" for i in best]
    record = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert record["step"] == 2 * (best[-1] + 1) and math.isclose(record["val_loss"], min(val), rel_tol=1e-6)
    with pytest.raises(ConfigError, match="early_stopping watches val_loss: it needs validation"):
        train(_config(shards, tmp_path / "other", early_stopping=2))


def test_kill_and_resume_with_sparser_backups_and_validation(shards: Path, tmp_path: Path) -> None:

    from soundnet_keras.training.train import train

    settings = {"val_fraction": 0.2, "lr_schedule": "cosine", "warmup_steps": 1, "backup_every": 4}
    full = train(_config(shards, tmp_path / "full", **settings))
    killed = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(_config(shards, killed, **settings), callbacks=[kill_after(5)])
    assert sorted(p.name for p in (killed / "backup").iterdir()) == ["epoch-00000002.json", "epoch-00000002.weights.h5"]
    said: list[str] = []
    resumed = train(_config(shards, killed, **settings), log=said.append)
    assert any("at step 4" in line for line in said) and len(resumed.history["loss"]) == 1
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert math.isclose(full.history["val_loss"][-1], resumed.history["val_loss"][-1], rel_tol=1e-6)
    with pytest.raises(ConfigError, match=r"backup_every must be a multiple of checkpoint_every \(2\)"):
        train(_config(shards, tmp_path / "odd", backup_every=3))
