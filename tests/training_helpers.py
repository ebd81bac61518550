"""What the training tests share: the synthetic shards, a simulated kill, and a training script in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from soundnet_keras.training.data import write_synthetic_shards

REPO = Path(__file__).resolve().parents[1]


SMALL_RUN = {
    "arch": "soundnet5",
    "steps": 6,
    "batch_size": 4,
    "crop_seconds": 3,
    "checkpoint_every": 2,
    "seed": 11,
    "verbose": 0,
    "tensorboard": False,
}
"""``TrainConfig`` settings of the training tests' small run: SoundNet-5, 3 checkpoint intervals of 2 steps on
batches of 4 three-second crops, quiet."""


def synthetic_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 synthetic videos of 2-5 one-second steps (the shards both training test modules train on)."""
    return write_synthetic_shards(
        tmp_path_factory.mktemp("synthetic"), num_videos=20, steps_per_video=[3, 4, 3, 5, 2] * 4, step_seconds=1.0
    )


def kill_after(steps: int):
    """A Keras callback that simulates a crash (``RuntimeError("simulated kill")``) after ``steps`` batches."""
    import keras  # heavy (Keras/TensorFlow): only in the tests that train

    class Kill(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if self.steps == steps:
                raise RuntimeError("simulated kill")

    return Kill()


def step_losses():
    """A Keras callback recording each training batch's loss in ``.losses``."""
    import keras  # heavy (Keras/TensorFlow): only in the tests that train

    class Losses(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.losses: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))

    return Losses()


def script_env() -> dict[str, str]:
    """The environment of a test script's Python: it imports this checkout and these helpers; TensorFlow's logs
    silenced."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}


def run_script(script: str, *args: object, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run ``script`` with ``args`` in a fresh Python (:func:`script_env`)."""
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=timeout,
        check=False,
    )


REPLICAS_SCRIPT = textwrap.dedent("""
    # train(TrainConfig(SHARDS, OUT / name, **SETTINGS)) on one device, then mirrored over 2 logical CPU devices
    import json, sys
    from pathlib import Path
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from soundnet_keras.training.train import TrainConfig, train
    from training_helpers import step_losses

    out = {}
    for name, strategy, devices in (("one", "default", None), ("two", "mirrored", ["/cpu:0", "/cpu:1"])):
        losses = step_losses()
        config = TrainConfig(Path(sys.argv[1]), Path(sys.argv[2]) / name, strategy=strategy, devices=devices,
                             **json.loads(sys.argv[3]))
        result = train(config, callbacks=[losses])
        history = {key: [float(v) for v in values] for key, values in result.history.items()}
        out[name] = {"losses": losses.losses, "replicas": result.replicas, "history": history}
    print(json.dumps(out))
""")


def one_and_two_replicas(shards: Path, folder: Path, settings: dict) -> dict:
    """``{"one": ..., "two": ...}``: the step losses, replicas and history of ``TrainConfig(shards, ...,
    **settings)`` trained on one device and mirrored over 2 logical CPU devices, in a fresh Python."""
    done = run_script(REPLICAS_SCRIPT, str(shards), str(folder), json.dumps(settings))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
