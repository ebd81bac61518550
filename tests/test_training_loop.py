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
from training_helpers import SMALL_RUN, kill_after, one_and_two_replicas, run_script, synthetic_shards

from soundnet_keras.errors import ConfigError
from soundnet_keras.training.data import held_out_videos, make_dataset, read_manifest
from soundnet_keras.training.losses import reference_loss

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_shards(tmp_path_factory)


def _config(shards: Path, folder: Path, **changes):
    from soundnet_keras.training.train import TrainConfig

    return TrainConfig(shards, folder, **{**SMALL_RUN, **changes})


def test_one_and_two_replicas_train_on_the_same_batches(shards: Path, tmp_path: Path) -> None:
    settings = {"arch": "soundnet5", "steps": 2, "batch_size": 4, "crop_seconds": 3, "checkpoint_every": 2, "seed": 11,
                "verbose": 0, "tensorboard": False}  # fmt: skip
    result = one_and_two_replicas(shards, tmp_path, settings)
    assert (result["one"]["replicas"], result["two"]["replicas"]) == (1, 2)
    one, two = result["one"]["losses"][0], result["two"]["losses"][0]
    assert math.isclose(one, two, rel_tol=1e-5), (one, two)  # same weights and the same first global batch


def test_missing_devices_are_named_quickly(tmp_path: Path, shards: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from soundnet_keras.cli.train import main
    from soundnet_keras.training.strategies import check_devices, make_strategy

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
    with pytest.raises(ConfigError, match=r"need the data_parallel \(or mirrored\) strategy"):
        make_strategy("default", ["/cpu:0"])
    with pytest.raises(ConfigError, match="unknown strategy 'horovod': expected one of default, data_parallel"):
        make_strategy("horovod")


EXPECTED_STRATEGIES = {  # what each backend makes of each strategy name: a class name, or the refusal's words
    "tensorflow": {
        "default": "_DefaultDistributionStrategy",
        "data_parallel": "MirroredStrategy",
        "mirrored": "MirroredStrategy",
    },
    "jax": {
        "default": "OneDevice",
        "data_parallel": "DataParallel",
        "mirrored": "the mirrored strategy is tf.distribute and needs KERAS_BACKEND=tensorflow (now jax); "
        "--strategy data_parallel",
        "multiworker": "the multiworker strategy is tf.distribute and needs KERAS_BACKEND=tensorflow (now jax)",
    },
    "torch": {
        "default": "OneDevice",
        "data_parallel": "the data_parallel strategy needs KERAS_BACKEND=tensorflow or jax (now torch): Keras has "
        "no distribution API for the torch backend",
        "mirrored": "the mirrored strategy is tf.distribute and needs KERAS_BACKEND=tensorflow (now torch); Keras has "
        "no distribution API",
    },
}


@pytest.mark.backend
def test_each_backend_makes_or_refuses_each_strategy_by_name() -> None:
    import keras

    from soundnet_keras.training.strategies import make_strategy

    for kind, expected in EXPECTED_STRATEGIES[keras.backend.backend()].items():
        if expected[0].isupper() or expected.startswith("_"):
            strategy = make_strategy(kind, ["/cpu:0"] if kind in ("data_parallel", "mirrored") else None)
            assert type(strategy).__name__ == expected, (kind, strategy)
            assert strategy.num_replicas_in_sync == 1
            with strategy.scope():
                pass
        else:
            with pytest.raises(ConfigError) as error:
                make_strategy(kind)
            assert str(error.value).startswith(expected), (kind, str(error.value))


JAX_DATA_PARALLEL_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # two logical CPU devices
    import keras
    import numpy as np
    import tensorflow as tf  # tf.data feeds every backend
    from soundnet_keras.training.data import make_dataset
    from soundnet_keras.training.strategies import make_strategy
    from soundnet_keras.training.train import TrainConfig, build_student, compile_student, train
    from training_helpers import step_losses

    shards, out = Path(sys.argv[1]), Path(sys.argv[2])
    ds, info = make_dataset(shards, arch="soundnet5", batch_size=4, crop_steps=3, training=False)
    batch = next(iter(ds))
    keras.utils.set_random_seed(0)
    init = build_student("soundnet5", info.heads).get_weights()
    weights, replicas, sharding = {}, {}, {}
    for name, kind in (("one", "default"), ("two", "data_parallel")):
        strategy = make_strategy(kind, ["cpu:0", "/CPU:1"] if kind == "data_parallel" else None)
        with strategy.scope():
            model = build_student("soundnet5", info.heads)
            model.set_weights(init)
            compile_student(model, optimizer=keras.optimizers.SGD(0.01))  # SGD: see the mirrored test
            model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False)
        weights[name], replicas[name] = model.get_weights(), strategy.num_replicas_in_sync
        sharding[name] = len(model.weights[0].value.sharding.device_set)
    trainable = [v.trainable for v in model.weights]
    def largest(pairs, relative=False):
        return max(float(np.max(np.abs(a - b) / (np.abs(a) + 1e-3 if relative else 1)))
                   for (a, b), t in zip(pairs, trainable) if t == (not relative))

    runs = {}
    for name, kind in (("one", "default"), ("two", "data_parallel")):
        losses = step_losses()
        result = train(TrainConfig(shards, out / name, arch="soundnet5", steps=2, batch_size=4, crop_seconds=3,
                                   checkpoint_every=2, seed=11, verbose=0, tensorboard=False, strategy=kind,
                                   precision="highest", val_fraction=0.25), callbacks=[losses])
        runs[name] = {"losses": losses.losses, "replicas": result.replicas,
                      "val_loss": result.history["val_loss"], "weights": str(result.weights_path)}
    print(json.dumps({
        "diff": largest(list(zip(weights["one"], weights["two"]))),
        "moved": largest(list(zip(weights["one"], init))),
        "stats_rel_diff": largest(list(zip(weights["one"], weights["two"])), relative=True),
        "stats_rel_moved": largest(list(zip(weights["one"], init)), relative=True),
        "replicas": replicas, "sharding": sharding, "runs": runs,
    }))
""")


def test_jax_data_parallel_on_two_devices_equals_one_device(shards: Path, tmp_path: Path) -> None:
    """keras.distribution.DataParallel over two logical CPU devices under JAX: one step gives the weights of one
    device (BatchNorm statistics of the global batch included), and train() runs on it with the same batches."""
    done = run_script(JAX_DATA_PARALLEL_SCRIPT, shards, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == {"one": 1, "two": 2} and result["sharding"] == {"one": 1, "two": 2}, result
    assert result["moved"] > 1e-3 and result["stats_rel_moved"] > 1e-2, result  # the step changed the weights
    assert result["diff"] < 1e-3 * result["moved"], result  # trainable weights: same step to float tolerance
    assert result["stats_rel_diff"] < 1e-4, result  # moving statistics: global-batch statistics on both
    one, two = result["runs"]["one"], result["runs"]["two"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert math.isclose(one["losses"][0], two["losses"][0], rel_tol=1e-5), (one, two)
    assert math.isclose(one["val_loss"][0], two["val_loss"][0], rel_tol=1e-3), (one, two)
    from soundnet_keras.weights import load_weights

    for run in (one, two):  # the package's weights file, written from sharded variables
        assert load_weights(run["weights"]).architecture == "soundnet5"


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
