"""AVC training of L³-Net with ``soundnet-train --objective avc`` (:mod:`soundnet_keras.training.objectives`).

The small configuration ``l3-small`` trains on the synthetic audio-visual shards of the session fixture
``synthetic_avc`` (:mod:`l3_helpers`); the learnability test is ``slow`` (a few minutes on a shared 2-core CPU).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from l3_helpers import needs_ffmpeg
from training_helpers import SMALL_RUN, kill_after, one_and_two_replicas, synthetic_shards

from soundnet_keras.errors import ConfigError, SoundNetError

pytestmark = needs_ffmpeg

SMALL_AVC = {
    "arch": "l3-small",
    "objective": "avc",
    "steps": 6,
    "batch_size": 8,
    "checkpoint_every": 2,
    "seed": 5,
    "verbose": 0,
    "tensorboard": False,
    "shuffle_buffer": 32,
}
"""``TrainConfig`` settings of the small AVC runs: 3 intervals of 2 steps on batches of 8 pairs."""


def _config(shards: Path, folder: Path, **changes):
    from soundnet_keras.training.train import TrainConfig

    return TrainConfig(shards, folder, **{**SMALL_AVC, **changes})


@pytest.fixture(scope="module")
def teacher_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_shards(tmp_path_factory)


# ------------------------------------------------------------------------------------------ resume
def test_a_killed_avc_run_resumes_to_the_weights_of_an_uninterrupted_one(synthetic_avc: dict, tmp_path: Path) -> None:
    from soundnet_keras import load_network
    from soundnet_keras.l3 import L3Net
    from soundnet_keras.l3.weights import get_params
    from soundnet_keras.training.train import train

    shards = synthetic_avc["shards"]
    settings = {"val_fraction": 0.25, "lr_schedule": "cosine", "warmup_steps": 1}
    full = train(_config(shards, tmp_path / "full", **settings))
    assert full.steps_done == 6 and len(full.history["val_accuracy"]) == 3 and len(full.held_out) == 9
    assert all(0 <= a <= 1 for a in full.history["val_accuracy"]) and "accuracy" in full.history
    killed = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(_config(shards, killed, **settings), callbacks=[kill_after(3)])
    said: list[str] = []
    resumed = train(_config(shards, killed, **settings), log=said.append)
    assert any("at step 2" in line for line in said) and len(resumed.history["loss"]) == 2
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(full.history["val_accuracy"][-1], resumed.history["val_accuracy"][-1], atol=1e-9)
    # the exported weights are L³-Net's files: load_network and L3Net.from_pretrained give the trained network
    assert resumed.weights_path == killed / "final.weights.h5"
    net = load_network(resumed.weights_path)
    assert isinstance(net, L3Net) and net.arch == "l3-small"
    trained = get_params(resumed.model, "l3-small")
    step4 = L3Net.from_pretrained(killed / "checkpoints" / "step-00000004.weights.h5").get_params()
    for layer, variables in trained.items():
        for var, value in variables.items():
            np.testing.assert_array_equal(net.get_params()[layer][var], value)
    assert not np.array_equal(step4["audio_conv1_1"]["kernel"], trained["audio_conv1_1"]["kernel"])


# ------------------------------------------------------------------------------------------ replicas and workers
def test_avc_on_two_mirrored_replicas_trains_on_the_batches_of_one(synthetic_avc: dict, tmp_path: Path) -> None:
    """``strategy="mirrored"`` splits each global batch of pairs over the replicas (BatchNorm synchronised): the
    first step's loss equals one device's, and the held-out accuracy is computed over both."""
    settings = {**SMALL_AVC, "steps": 2, "checkpoint_every": 2, "val_fraction": 0.25}
    result = one_and_two_replicas(synthetic_avc["shards"], tmp_path, settings)
    assert (result["one"]["replicas"], result["two"]["replicas"]) == (1, 2)
    one, two = result["one"]["losses"][0], result["two"]["losses"][0]
    assert math.isclose(one, two, rel_tol=1e-5), (one, two)
    assert all(0 <= a <= 1 for a in result["two"]["history"]["val_accuracy"])


def test_avc_batches_are_sharded_across_workers_by_data(synthetic_avc: dict) -> None:
    """Under ``MultiWorkerMirroredStrategy`` each worker keeps its slice of every global batch of pairs (``DATA``),
    as the teacher stream does (``tests/test_multiworker.py`` runs a two-worker teacher cluster)."""
    import tensorflow as tf

    from soundnet_keras.l3.avc_data import make_avc_dataset

    dataset = make_avc_dataset(synthetic_avc["shards"], 8, frame_size=64)
    assert dataset.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


# ------------------------------------------------------------------------------------------ mixed precision
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_avc_trains_under_mixed_precision_and_exports_float32_weights(
    synthetic_avc: dict, tmp_path: Path, precision: str
) -> None:
    """Under a mixed policy the convolutions compute in 16 bits while the spectrogram stays float32 (the waveform is
    not rounded before the STFT); the loss and the held-out accuracy are finite, the exported weights are float32
    L³ files, and the global policy is restored afterwards."""
    import keras

    from soundnet_keras import load_network
    from soundnet_keras.training.train import train

    before = keras.mixed_precision.global_policy().name
    run = {"steps": 4, "checkpoint_every": 2, "val_fraction": 0.25, "precision": precision}
    result = train(_config(synthetic_avc["shards"], tmp_path / precision, **run))
    assert keras.mixed_precision.global_policy().name == before
    half = precision.removeprefix("mixed_")
    assert result.model.get_layer("audio_conv1_1").compute_dtype == half
    assert result.model.get_layer("spectrogram").compute_dtype == "float32"
    assert all(np.isfinite(result.history["loss"])) and all(0 <= a <= 1 for a in result.history["val_accuracy"])
    params = load_network(result.weights_path).get_params()
    assert {value.dtype for variables in params.values() for value in variables.values()} == {np.dtype("float32")}


# ------------------------------------------------------------------------------------------ signature and errors
def test_a_teacher_backup_is_refused_for_an_avc_run(synthetic_avc: dict, teacher_shards: Path, tmp_path: Path) -> None:
    from soundnet_keras.training.train import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(teacher_shards, run, **{**SMALL_RUN, "steps": 2}))
    with pytest.raises(ConfigError, match=r"other arguments: .*objective None \(now 'avc'\)"):
        train(_config(synthetic_avc["shards"], run))


def test_the_wrong_shards_or_architecture_for_an_objective_are_one_line_errors(
    synthetic_avc: dict, teacher_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from soundnet_keras.cli.train import main
    from soundnet_keras.training.train import TrainConfig, train

    avc = synthetic_avc["shards"]
    cases = [
        (_config(teacher_shards, tmp_path / "a"), r"the avc objective trains on AVC shards \(soundnet_keras\.avc_sh"),
        (
            TrainConfig(avc, tmp_path / "b", arch="soundnet5"),
            r"the teacher objective trains on teacher shards \(soundnet_keras\.teacher_shards/1, written by soundnet-t",
        ),
        (_config(avc, tmp_path / "c", arch="soundnet5"), r"trains an L³-Net architecture \('l3', 'l3-small'\), got "),
        (TrainConfig(avc, tmp_path / "d", arch="l3"), r"'l3' is an L³-Net one, which trains with --objective avc"),
        (_config(avc, tmp_path / "e", objective="kl"), "unknown training objective 'kl': expected one of teacher, avc"),
        (_config(avc, tmp_path / "f", heads=["objects"]), "heads are the teacher objective's"),
    ]
    for config, message in cases:
        with pytest.raises(SoundNetError, match=message) as caught:
            train(config)
        assert "\n" not in str(caught.value)
    assert main(["--objective", "avc", "--arch", "l3-small", str(teacher_shards), "-o", str(tmp_path / "g")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "the avc objective trains on AVC shards" in error, error
    assert not (tmp_path / "g").exists()


# ------------------------------------------------------------------------------------------ learnability
LEARN = {
    "steps": 400,
    "batch_size": 32,
    "learning_rate": 3e-3,
    "lr_schedule": "cosine",
    "warmup_steps": 20,
    "checkpoint_every": 100,
    "seed": 0,
    "shuffle_buffer": 128,
    "val_fraction": 0.25,
}
"""The learnability run: 400 steps of 32 pairs (about 5.5 minutes on a shared 2-core CPU)."""
CONTROL_STEPS = 50
"""The control's steps: its labels carry no information about the pairs, so it stays at chance however long it
runs; 50 steps keep the test to a few minutes."""
LEARN_VIDEOS, LEARN_SECONDS = 72, 10
"""The learnability set: 72 videos of 10 s (54 for training, 18 held out: 360 held-out pairs, so that one pair is
0.3 points of accuracy); the shared 36 videos of 6 s give 108 held-out pairs, too few to measure 90 % on."""


@pytest.fixture(scope="module")
def learning_set(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """:data:`LEARN_VIDEOS` synthetic videos of :data:`LEARN_SECONDS` and their AVC shards (about 95 s)."""
    from l3_helpers import render_synthetic_avc

    return render_synthetic_avc(tmp_path_factory.mktemp("l3-learn"), LEARN_VIDEOS, LEARN_SECONDS)


def _clips(shards: Path, videos: list[str], truth: dict) -> tuple[np.ndarray, np.ndarray]:
    """Every 1-s clip of ``videos`` (the audio of each pair of one pass) and the class it sounds like."""
    from soundnet_keras.l3.avc_data import make_avc_dataset

    audio, classes = [], []
    for inputs, _, ids in make_avc_dataset(shards, 64, videos=videos, training=False, with_ids=True):
        audio.append(inputs["audio"].numpy())
        video, time = ids["audio_video"].numpy(), ids["audio_time"].numpy()
        classes += [truth[int(v)][int(t)] for v, t in zip(video, time, strict=True)]
    return np.concatenate(audio), np.asarray(classes)


def _fit_and_score(train: tuple, test: tuple) -> float:
    """Held-out accuracy of a logistic regression on standardised features: ``(features, labels)`` each."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # random-init features may not converge: still a score
        head.fit(*train)
    return float(head.score(*test))


def _linear_probe(net, train: tuple, test: tuple) -> float:
    """:func:`_fit_and_score` on ``net``'s ``audio_pool4`` embeddings of the ``(clips, classes)`` pairs."""

    def embed(audio):
        return np.concatenate([net.keras_model.predict_on_batch(audio[i : i + 64]) for i in range(0, len(audio), 64)])

    return _fit_and_score((embed(train[0]), train[1]), (embed(test[0]), test[1]))


@pytest.mark.slow
def test_avc_training_learns_correspondence_and_audio_features(
    learning_set: dict, shared_dir: Path, tmp_path: Path
) -> None:
    """``l3-small`` trained with AVC (:data:`LEARN`) on the 54 training videos of :func:`learning_set` reaches well
    above chance on its 18 held-out videos (measured on a shared 2-core CPU: 91.1 % of 360 pairs after 400 steps,
    about 5.5 minutes; asserted: >= 88 %, two standard errors of 360 pairs below, for other CPUs' float rounding;
    the ceiling is about 97 %: a negative's audio shows the frame's class 1 time in 16), while the ``shuffled_pairs``
    control (labels untied from the pairs) stays at chance (measured 49.4 %). A linear head on the trained
    ``audio_pool4`` embeddings tells the 16 synthetic sound classes of held-out clips apart (measured 94.2 %,
    asserted >= 90 %; random initialisations do as well on this easy set: 98.9 % and 92.5 %), and on real sound,
    ESC-10 of ``../shared/esc10-dev``, beats the same network at random initialisation (measured 68.8 % against
    45.0 % and 43.8 %; asserted: 10 points above their mean)."""
    import keras

    from soundnet_keras.l3 import L3Net
    from soundnet_keras.training.train import train

    shards, truth = learning_set["shards"], learning_set["truth_by_id"]
    result = train(_config(shards, tmp_path / "avc", **LEARN))
    accuracy = result.history["val_accuracy"]
    control_run = {**LEARN, "steps": CONTROL_STEPS, "checkpoint_every": CONTROL_STEPS, "shuffled_pairs": True}
    control = train(_config(shards, tmp_path / "control", **control_run)).history["val_accuracy"]
    print(f"held-out AVC accuracy every 100 steps: {accuracy}; shuffled-pairs control: {control}")
    assert len(result.held_out) == 18
    assert accuracy[-1] >= 0.88, accuracy
    assert abs(control[-1] - 0.5) <= 0.1, control

    held = set(result.held_out)
    train_clips = _clips(shards, [v for v in _video_names(shards) if v not in held], truth)
    test_clips = _clips(shards, sorted(held), truth)
    trained_net = L3Net.from_pretrained(result.weights_path)
    synthetic = _linear_probe(trained_net, train_clips, test_clips)
    esc = {"trained": _esc10_probe(trained_net, shared_dir)}
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        esc[f"random {seed}"] = _esc10_probe(L3Net("l3-small"), shared_dir)
    print(f"linear head on audio_pool4: 16 synthetic classes of held-out clips {synthetic:.3f}; ESC-10 {esc}")
    assert synthetic >= 0.9, synthetic
    assert esc["trained"] >= np.mean([esc["random 0"], esc["random 1"]]) + 0.1, esc


def _esc10_probe(net, shared_dir: Path) -> float:
    """ESC-10 accuracy on fold 2 of a logistic regression trained on fold 1 of ``../shared/esc10-dev``, on the
    standardised mean and max of ``net``'s ``audio_pool4`` over 1-s windows every 0.5 s of each 5-s clip."""
    from soundnet_keras.audio import load_audio
    from soundnet_keras.transfer.esc import read_esc

    features: dict[int, list] = {1: [], 2: []}
    labels: dict[int, list] = {1: [], 2: []}
    for clip in read_esc(shared_dir / "esc10-dev", esc10=True, folds=[1, 2]).clips:
        audio, _ = load_audio(clip.path, target_rate=48_000)
        windows = np.stack([audio[i : i + 48_000] for i in range(0, len(audio) - 48_000 + 1, 24_000)])
        embedding = net.keras_model.predict_on_batch(windows)
        features[clip.fold].append(np.concatenate([embedding.mean(axis=0), embedding.max(axis=0)]))
        labels[clip.fold].append(clip.target)
    return _fit_and_score(
        (np.stack(features[1]), np.asarray(labels[1])), (np.stack(features[2]), np.asarray(labels[2]))
    )


def _video_names(shards: Path) -> list[str]:
    from soundnet_keras.l3.avc_data import AVC_FORMAT
    from soundnet_keras.training.data import read_manifest

    return sorted(n for n, v in read_manifest(shards, AVC_FORMAT)["videos"].items() if v["status"] == "done")
