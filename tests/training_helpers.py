"""What the training tests share: the synthetic shards, a simulated kill, and a training script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
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
