"""Student–teacher training: the KL loss, crop alignment, 2-replica equivalence, learning, kill-and-resume."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from training_helpers import kill_after, run_script, synthetic_shards

from soundnet_keras.errors import ConfigError
from soundnet_keras.training.data import crop_alignment, make_dataset, write_synthetic_shards
from soundnet_keras.training.losses import TeacherKLDivergence, head_weight, reference_loss

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_shards(tmp_path_factory)


def _random_teacher(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    p = rng.random(shape) * (rng.random(shape) < 0.5)  # about half the classes exactly zero
    p[..., 0] += 1e-3  # every row has mass
    return p / p.sum(axis=-1, keepdims=True)


@pytest.mark.backend
def test_kl_loss_equals_numpy_with_teacher_zeros(rng: np.random.Generator) -> None:
    teacher = {"objects": _random_teacher(rng, (3, 4, 1000)), "scenes": _random_teacher(rng, (3, 4, 401))}
    logits = {h: rng.normal(0, 3, p.shape) for h, p in teacher.items()}
    assert (teacher["objects"] == 0).mean() > 0.3
    weight = head_weight(2)
    ours = sum(
        float(TeacherKLDivergence(weight)(teacher[h].astype(np.float32), logits[h].astype(np.float32))) for h in teacher
    )
    assert np.isclose(ours, reference_loss(teacher, logits), rtol=1e-5)
    # a hand-computed case: one-hot teacher, uniform student over 2 classes -> KL = log 2, averaged over C=2 elements
    one = TeacherKLDivergence(1.0)(np.array([[[1.0, 0.0]]], np.float32), np.zeros((1, 1, 2), np.float32))
    assert np.isclose(float(one), np.log(2) / 2, rtol=1e-6)
    # equal distributions give zero loss, zeros included
    p = teacher["scenes"].astype(np.float32)
    assert abs(float(TeacherKLDivergence(1.0)(p, np.log(np.maximum(p, 1e-30))))) < 1e-6


def test_crop_alignment_matches_the_original() -> None:
    # 20-s crops of 5-s windows: both architectures give 4 frames, paired one to one with the windows
    assert crop_alignment("soundnet8", 4, 110250).tolist() == [0, 1, 2, 3]
    assert crop_alignment("soundnet5", 4, 110250).tolist() == [0, 1, 2, 3]
    assert crop_alignment("soundnet5", 3, 22050).tolist() == [1]
    with pytest.raises(ConfigError, match="too short for soundnet8"):
        crop_alignment("soundnet8", 2, 22050)


def test_dataset_crops_and_targets(shards: Path) -> None:
    ds, info = make_dataset(shards, arch="soundnet5", batch_size=4, crop_steps=3, seed=3)
    assert (info.usable_examples, info.total_examples, info.frames) == (16, 20, 1)
    audio, targets = next(iter(ds))
    assert audio.shape == (4, 66150) and targets["objects"].shape == (4, 1, 5) and targets["scenes"].shape == (4, 1, 3)
    assert np.allclose(targets["objects"].numpy().sum(-1), 1, atol=1e-6)
    again, _ = make_dataset(shards, arch="soundnet5", batch_size=4, crop_steps=3, seed=3)
    skipped, _ = make_dataset(shards, arch="soundnet5", batch_size=4, crop_steps=3, seed=3, skip_batches=2)
    first = [a.numpy() for a, _ in again.take(3)]
    assert np.array_equal(first[0], audio.numpy())
    assert np.array_equal(next(iter(skipped))[0].numpy(), first[2])


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from soundnet_keras.training.data import make_dataset, write_synthetic_shards
    from soundnet_keras.training.train import build_student, compile_student, make_strategy

    shards = write_synthetic_shards(sys.argv[1], num_videos=8, steps_per_video=3)
    ds, info = make_dataset(shards, arch="soundnet5", batch_size=4, crop_steps=3, training=False)
    batch = next(iter(ds))
    keras.utils.set_random_seed(0)
    init = build_student("soundnet5", info.heads).get_weights()
    weights, replicas = {}, {}
    for name, strategy in (("one", make_strategy("default")), ("two", make_strategy("mirrored", ["/cpu:0", "/cpu:1"]))):
        with strategy.scope():
            model = build_student("soundnet5", info.heads)
            model.set_weights(init)
            # SGD: Adam's first step is lr * g / |g|, which turns the float noise of exactly-zero gradients (conv
            # biases before BatchNorm) into lr-sized differences; SGD shows the gradient itself.
            compile_student(model, optimizer=keras.optimizers.SGD(0.01))
        model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False)
        weights[name], replicas[name] = model.get_weights(), strategy.num_replicas_in_sync
    trainable = [v.trainable for v in model.weights]
    def largest(pairs, relative=False):
        return max(float(np.max(np.abs(a - b) / (np.abs(a) + 1e-3 if relative else 1)))
                   for (a, b), t in zip(pairs, trainable) if t == (not relative))
    print(json.dumps({
        "diff": largest(list(zip(weights["one"], weights["two"]))),
        "moved": largest(list(zip(weights["one"], init))),
        "stats_rel_diff": largest(list(zip(weights["one"], weights["two"])), relative=True),
        "stats_rel_moved": largest(list(zip(weights["one"], init)), relative=True),
        "replicas": replicas,
    }))
""")


def test_mirrored_two_replicas_equal_one_replica(tmp_path: Path) -> None:
    done = run_script(MIRRORED_SCRIPT, str(tmp_path / "shards"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == {"one": 1, "two": 2}
    assert result["moved"] > 1e-3 and result["stats_rel_moved"] > 1e-2, result  # the step changed the weights
    assert result["diff"] < 1e-3 * result["moved"], result  # trainable weights: same step to float tolerance
    assert result["stats_rel_diff"] < 1e-4, result  # BatchNorm moving statistics (synchronised across replicas)


def _eval_kl(model, shards: Path) -> tuple[float, float]:
    ds, _ = make_dataset(shards, arch="soundnet5", batch_size=16, crop_steps=3, training=False)
    audio, targets = next(iter(ds))
    logits = model.predict_on_batch(audio.numpy())  # NumPy on every backend
    teacher = {h: targets[h].numpy() for h in targets}
    kl = reference_loss(teacher, {h: np.asarray(logits[h]) for h in teacher}, loss_lambda=1.0)
    accuracy = float(np.mean(teacher["objects"].argmax(-1) == np.asarray(logits["objects"]).argmax(-1)))
    return kl, accuracy


@pytest.mark.backend
def test_synthetic_task_loss_falls_and_student_approaches_teacher(shards: Path, tmp_path: Path) -> None:
    import keras

    from soundnet_keras.training.train import TrainConfig, build_student, train

    keras.utils.set_random_seed(7)
    before, _ = _eval_kl(build_student("soundnet5", {"objects": 5, "scenes": 3}), shards)
    result = train(
        TrainConfig(
            shards,
            tmp_path / "run",
            arch="soundnet5",
            steps=40,
            batch_size=8,
            crop_seconds=3,
            checkpoint_every=20,
            learning_rate=1e-4,
            seed=7,
            verbose=0,
            tensorboard=False,
        )
    )
    after, accuracy = _eval_kl(result.model, shards)
    losses = result.history["loss"]
    assert losses[-1] < 0.6 * losses[0], losses
    assert after < 0.5 * before, (before, after)
    assert accuracy >= 0.75
    assert [p.name for p in result.checkpoints] == ["step-00000020.weights.h5", "step-00000040.weights.h5"]
    assert result.weights_path is not None and result.weights_path.is_file()


def _kill_config(shards: Path, folder: Path):
    """The small run of the kill-and-resume tests: 3 checkpoint intervals of 2 steps, a backup after each."""
    from soundnet_keras.training.train import TrainConfig

    return TrainConfig(
        shards,
        folder,
        arch="soundnet5",
        steps=6,
        batch_size=4,
        crop_seconds=3,
        checkpoint_every=2,
        seed=11,
        verbose=0,
        tensorboard=False,
    )


@pytest.fixture(scope="module")
def uninterrupted(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """The weights after the uninterrupted run of :func:`_kill_config`."""
    from soundnet_keras.training.train import train

    return train(_kill_config(shards, tmp_path_factory.mktemp("full") / "run")).model.get_weights()


def _assert_same_weights(expected: list[np.ndarray], model) -> None:
    for a, b in zip(expected, model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def _resume(shards: Path, folder: Path):
    """Start the run in ``folder`` again; returns its result and what it said."""
    from soundnet_keras.training.train import train

    said: list[str] = []
    return train(_kill_config(shards, folder), log=said.append), "\n".join(said)


def test_kill_and_resume_gives_the_same_weights(
    shards: Path, tmp_path: Path, uninterrupted: list[np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from soundnet_keras.cli.train import main
    from soundnet_keras.training.train import train

    killed = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(_kill_config(shards, killed), callbacks=[kill_after(5)])
    backup = killed / "backup"
    assert sorted(p.name for p in backup.iterdir()) == [
        "epoch-00000001.json",
        "epoch-00000001.weights.h5",
        "epoch-00000002.json",
        "epoch-00000002.weights.h5",
    ]
    assert json.loads((backup / "epoch-00000002.json").read_text())["epoch"] == 2
    damaged = tmp_path / "damaged"
    shutil.copytree(killed, damaged)

    resumed, said = _resume(shards, killed)
    assert len(resumed.history["loss"]) == 1  # only the last interval ran again
    assert "at step 4" in said
    _assert_same_weights(uninterrupted, resumed.model)
    assert sorted(p.name for p in backup.iterdir())[-2:] == ["epoch-00000003.json", "epoch-00000003.weights.h5"]
    assert len(list(backup.iterdir())) == 4  # two generations kept

    # the latest backup truncated (lost on disk): named, and the run resumes from the previous one
    latest = damaged / "backup" / "epoch-00000002.weights.h5"
    previous = damaged / "backup" / "epoch-00000001.weights.h5"
    os.truncate(latest, latest.stat().st_size // 2)
    spare = tmp_path / "spare"
    shutil.copytree(damaged, spare)
    resumed, said = _resume(shards, damaged)
    assert f"skipped the damaged training backup {str(latest)!r}: truncated" in said
    assert f"resuming from the backup {previous} at step 2" in said
    assert len(resumed.history["loss"]) == 2
    _assert_same_weights(uninterrupted, resumed.model)

    # no intact backup left (the previous one bit-flipped too): one error line naming the folder, exit status 2
    previous = spare / "backup" / "epoch-00000001.weights.h5"
    data = bytearray(previous.read_bytes())
    data[len(data) // 2] ^= 0x40
    previous.write_bytes(bytes(data))
    args = [str(shards), "-o", str(spare), "--arch", "soundnet5", "--batch-size", "4", "--crop-seconds", "3"]
    args += ["--steps", "6", "--checkpoint-every", "2", "--seed", "11", "--no-tensorboard", "-q"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1, err
    error = err.strip().splitlines()[-1]
    assert error.startswith(f"error: no usable training backup in {str(spare / 'backup')!r}"), error
    assert "epoch-00000002.weights.h5': truncated" in error and "epoch-00000001.weights.h5': corrupted" in error
    assert "Delete that folder" in error


def test_train_cli_reports_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from soundnet_keras.cli.train import main

    assert main([str(tmp_path / "nowhere"), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: shard folder") and err.count("\n") == 1


KILL_DURING_BACKUP_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import keras
    from soundnet_keras.training.train import PARTIAL_PREFIX, TrainConfig, train

    save = keras.Model.save_weights
    backups = []

    def save_then_die(self, filepath, *args, **kwargs):
        save(self, filepath, *args, **kwargs)
        if Path(filepath).name.startswith(PARTIAL_PREFIX):
            backups.append(filepath)
            if len(backups) == 2:  # the backup of step 4 is half written when the process is killed
                os.truncate(filepath, os.path.getsize(filepath) // 2)
                os.kill(os.getpid(), signal.SIGKILL)

    keras.Model.save_weights = save_then_die
    train(TrainConfig(Path(sys.argv[1]), Path(sys.argv[2]), arch="soundnet5", steps=6, batch_size=4, crop_seconds=3,
                      checkpoint_every=2, seed=11, verbose=0, tensorboard=False))
""")


def test_sigkill_while_writing_a_backup_resumes_from_the_last_complete_one(
    shards: Path, tmp_path: Path, uninterrupted: list[np.ndarray]
) -> None:
    run = tmp_path / "run"
    done = run_script(KILL_DURING_BACKUP_SCRIPT, str(shards), str(run))
    assert done.returncode == -9, done.stderr[-3000:]  # SIGKILL, in the middle of the second backup
    partial = [p for p in (run / "backup").iterdir() if p.name.startswith(".partial-")]
    assert len(partial) == 1 and not (run / "backup" / "epoch-00000002.json").exists()

    resumed, said = _resume(shards, run)
    assert f"removed {partial[0]}, a backup that a killed run did not finish writing" in said
    assert f"resuming from the backup {run / 'backup' / 'epoch-00000001.weights.h5'} at step 2" in said
    assert len(resumed.history["loss"]) == 2
    _assert_same_weights(uninterrupted, resumed.model)
    assert not partial[0].exists()


def test_keras_backup_left_by_an_earlier_version_is_checked(
    shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from soundnet_keras.cli.train import main

    backup = tmp_path / "run" / "backup"
    backup.mkdir(parents=True)
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))  # a truncated HDF5 file
    (backup / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    assert main([str(shards), "-o", str(tmp_path / "run"), "--arch", "soundnet5", "--crop-seconds", "3", "-q"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1, err
    error = err.strip().splitlines()[-1]
    assert error.startswith(
        f"error: no usable training backup in {str(backup)!r}: {str(backup / 'latest.weights.h5')!r}"
    )
    assert "cannot be opened as HDF5" in error


def _damaged_copy(shards: Path, folder: Path, damage: str) -> Path:
    """A copy of ``shards`` whose second shard is truncated by 1000 bytes or has one bit flipped in a record."""
    import shutil

    copy = Path(shutil.copytree(shards, folder))
    shard = copy / "shard-00001.tfrecord"
    if damage == "truncated":
        os.truncate(shard, shard.stat().st_size - 1000)
    else:
        data = bytearray(shard.read_bytes())
        data[5000] ^= 0x10  # inside the first record's audio
        shard.write_bytes(bytes(data))
    return copy


def test_damaged_shards_are_named(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from soundnet_keras.cli.train import main
    from soundnet_keras.training.data import ShardError

    truncated = _damaged_copy(shards, tmp_path / "truncated", "truncated")
    name = str(truncated / "shard-00001.tfrecord")
    with pytest.raises(ShardError, match=rf"shard '{re.escape(name)}': truncated record at offset \d+ \(it needs"):
        make_dataset(truncated, arch="soundnet5", batch_size=4, crop_steps=3)

    flipped = _damaged_copy(shards, tmp_path / "flipped", "flipped")
    make_dataset(flipped, arch="soundnet5", batch_size=4, crop_steps=3)  # the headers are intact: found when read
    args = ["--arch", "soundnet5", "--batch-size", "4", "--crop-seconds", "3", "--steps", "2", "--no-tensorboard", "-q"]
    for folder, what in (
        (truncated, "truncated record at offset"),
        (flipped, "is damaged: corrupted record at offset"),
    ):
        capsys.readouterr()
        assert main([str(folder), "-o", str(tmp_path / f"run-{folder.name}"), *args]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("error:") == 1, err
        error = err.strip().splitlines()[-1]
        assert error.startswith(f"error: shard {str(folder / 'shard-00001.tfrecord')!r}") and what in error, error
    assert error.endswith("(CRC mismatch)")


# ------------------------------------------------------------------------------- heads of any size, with their names
PLACES365_NAMES = [f"/p/place_{i:03d}" for i in range(365)]
IMAGENET_NAMES = [f"object {i}" for i in range(1000)]


@pytest.fixture(scope="module")
def places365_run(tmp_path_factory: pytest.TempPathFactory):
    """A short run whose scenes teacher is a 365-class stand-in for Places365 (with names), objects a named
    1000-class one: ``(TrainResult, messages said)``."""
    from soundnet_keras.training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("places365")
    shards = write_synthetic_shards(
        root / "shards",
        num_videos=8,
        steps_per_video=3,
        classes={"objects": 1000, "scenes": 365},
        categories={"objects": IMAGENET_NAMES, "scenes": PLACES365_NAMES},
    )
    config = TrainConfig(
        shards, root / "run", arch="soundnet5", steps=2, batch_size=4, crop_seconds=3, checkpoint_every=2, seed=5
    )
    config.verbose, config.tensorboard = 0, False
    messages: list[str] = []
    return train(config, log=messages.append), messages


@pytest.mark.backend
def test_student_of_a_places365_teacher_loads_with_its_names(places365_run, rng: np.random.Generator) -> None:
    from soundnet_keras import SoundNet
    from soundnet_keras.weights import load_weights

    result, messages = places365_run
    assert result.weights_path is not None and result.weights_path.name == "final.weights.h5"
    assert not any(m.startswith("note:") for m in messages), messages
    weights = load_weights(result.weights_path)
    assert weights.head_classes == {"objects": 1000, "scenes": 365}
    assert weights.categories == {"objects": IMAGENET_NAMES, "scenes": PLACES365_NAMES}
    assert [load_weights(p).categories["scenes"] for p in result.checkpoints] == [PLACES365_NAMES]
    net = SoundNet.from_pretrained(result.weights_path, verbose=False)
    assert net.head_classes == {"objects": 1000, "scenes": 365} and net.geometry("scenes").channels == 365
    clip = (0.3 * rng.standard_normal(4 * 22050)).astype(np.float32)
    prediction = net.predict(clip, 22050)
    scenes = prediction.head("scenes")
    assert scenes.values.shape[-1] == 365 and list(scenes.labels) == PLACES365_NAMES
    assert prediction.top("scenes", k=1)[0][0] in PLACES365_NAMES
    assert prediction.top("objects", k=1)[0][0] in IMAGENET_NAMES
    # the same logits as the trained Keras model, and a round trip through save_weights keeps sizes and names
    expected = keras.ops.convert_to_numpy(result.model(clip[None, :66150], training=False)["scenes"])
    np.testing.assert_allclose(net.forward(clip[None, :66150], ["scenes"])["scenes"], expected, rtol=1e-4, atol=1e-5)
    again = SoundNet.from_pretrained(net.save_weights(result.weights_path.parent / "again.weights.h5"), verbose=False)
    assert again.categories == net.categories and again.head_classes == net.head_classes


def test_student_of_a_places365_teacher_classifies_and_finetunes(
    places365_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import soundfile

    from soundnet_keras import SoundNet
    from soundnet_keras.cli import classify, finetune
    from soundnet_keras.transfer import ClipClassifier

    weights = places365_run[0].weights_path
    rng = np.random.default_rng(3)
    t = np.arange(22050 * 3) / 22050
    for label, freq in (("low", 200.0), ("high", 3000.0)):
        (tmp_path / "clips" / label).mkdir(parents=True)
        for i in range(4):
            wave = 0.4 * np.sin(2 * np.pi * freq * (1 + 0.02 * i) * t) + 0.01 * rng.standard_normal(t.size)
            soundfile.write(tmp_path / "clips" / label / f"{i}.wav", wave, 22050)
    clip = tmp_path / "clips" / "low" / "0.wav"

    assert classify.main([str(clip), "--weights", str(weights), "--json", "-k", "3", "-q"]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    scenes = record["scenes"]
    assert len(scenes) == 3 and all(entry["label"] in PLACES365_NAMES for entry in scenes), record

    out = tmp_path / "tuned.keras"
    argv = ["--folder", str(tmp_path / "clips"), "-o", str(out), "--init", str(weights), "--layer", "conv4"]
    assert finetune.main([*argv, "--epochs", "1", "--window-seconds", "3", "--val-fraction", "0", "-q"]) == 0, (
        capsys.readouterr().err
    )
    assert out.is_file()

    net = SoundNet.from_pretrained(weights, verbose=False)
    clips = [str(p) for p in sorted((tmp_path / "clips").rglob("*.wav"))]
    labels = [Path(p).parent.name for p in clips]
    model = ClipClassifier(layer="conv4", net=net, cache=False, window=None, window_features="mean").fit(clips, labels)
    assert set(model.predict(clips)) <= {"low", "high"}


def test_student_with_unnamed_teachers_is_a_package_file_with_generic_names(shards: Path, tmp_path: Path) -> None:
    from soundnet_keras import SoundNet
    from soundnet_keras.training.train import TrainConfig, train

    config = TrainConfig(shards, tmp_path / "run", arch="soundnet5", steps=1, batch_size=4, crop_seconds=3)
    config.checkpoint_every, config.verbose, config.tensorboard = 1, 0, False
    messages: list[str] = []
    result = train(config, log=messages.append)
    notes = [m for m in messages if m.startswith("note:")]
    assert len(notes) == 2 and "objects_0000 ... objects_0004" in notes[0] and "scenes_0002" in notes[1], notes
    net = SoundNet.from_pretrained(result.weights_path, verbose=False)
    assert net.head_classes == {"objects": 5, "scenes": 3}
    assert net.categories == {
        "objects": [f"objects_{i:04d}" for i in range(5)],
        "scenes": ["scenes_0000", "scenes_0001", "scenes_0002"],
    }
