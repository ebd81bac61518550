"""Two training workers on this machine (``MultiWorkerMirroredStrategy``, one ``TF_CONFIG`` each) train as one.

The workers run :func:`~soundnet_keras.training.train.train` with ``strategy="multiworker"``, as users do, on
127.0.0.1. TensorFlow's gRPC server listens on every interface of the machine (it binds ``0.0.0.0``, with no option
to choose), so where the system lets an unprivileged user make a network namespace (``unshare --user --net``), the
workers run in one of their own, where loopback is the only interface; elsewhere their two ports are open on the
machine's interfaces while the test runs.

What is compared, and why (measured on a 2-core Xeon without GPU; the numbers are in the README):

* the two workers' weights: bit-identical at every step (one all-reduced gradient applied to the same weights);
* with a single process training on 2 mirrored CPU devices with the same global batch (one worker, the same split
  of each batch): every step's weights and BatchNorm statistics, to float32 noise (measured: identical);
* with one device (the single-worker run users compare with): the initial weights (identical) and the first step
  (the first global batch: the same loss, the weights within 1 % of the step's change, :data:`FIRST_STEP_TOLERANCE`).
  Later steps are not compared with one device: these runs are chaotic at float32 precision. After 4 steps, one
  device whose initial weights were changed by one float32 ulp ends 1 % (these settings) to 12 % (without a held-out
  part) of the weights' change away from itself; two workers end 4 % and 0.8 % away from it.

Adam runs in its linear regime (epsilon 1000, learning rate 1: each update is about 1e-3 x the gradient's running
mean): Adam's first steps are ``lr x g / |g|``, which turns the float noise of exactly-zero gradients (conv biases
before BatchNorm) into lr-sized differences; the linear regime shows the gradient itself, as SGD would.

A second run resumes the killed cluster, started again with each worker's place in a cluster resolver given to
``train(strategy=MultiWorkerMirrored(cluster_resolver=...))`` and no ``TF_CONFIG`` (as with ``SlurmClusterResolver``):
worker 1 lost its latest backup (its metadata, as a kill while writing it leaves), so the workers agree
(``agreed_epoch``, a collective) on the newest backup both hold and continue from there to the weights of the
uninterrupted single-process run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from training_helpers import SMALL_RUN, run_script, script_env, synthetic_shards

TRAIN_SCRIPT = textwrap.dedent("""
    # train() once per run of argv[1] (a JSON list of [TrainConfig settings, result path without suffix]); each
    # run's weights after every step go to RESULT.npz ("STEP/INDEX"; step 0: when training began), the rest to
    # RESULT.json
    import json, sys
    from pathlib import Path
    runs = json.loads(sys.argv[1])
    replicas = max(len(settings.get("devices") or ()) for settings, _ in runs)
    if replicas > 1:  # logical CPU devices, set before TensorFlow starts
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    import os
    import keras
    import numpy as np
    from soundnet_keras.training.train import TrainConfig, train
    from training_helpers import step_losses

    strategy = None
    if os.environ.get("SOUNDNET_TEST_CLUSTER"):  # no TF_CONFIG: the cluster is the strategy's resolver's
        import tensorflow as tf
        from soundnet_keras.training.multiworker import MultiWorkerMirrored
        place = json.loads(os.environ["SOUNDNET_TEST_CLUSTER"])
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(place["cluster"]), task_type="worker", task_id=place["index"], rpc_layer="grpc")
        strategy = MultiWorkerMirrored(cluster_resolver=resolver)

    class StepWeights(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps = []
        def on_train_begin(self, logs=None):
            self.steps.append(self.model.get_weights())
        def on_train_batch_end(self, batch, logs=None):
            self.steps.append(self.model.get_weights())

    for settings, result in runs:
        losses, weights, said = step_losses(), StepWeights(), []
        paths = {"shards": Path(settings["shards"]), "output_dir": Path(settings["output_dir"])}
        config = TrainConfig(**{**settings, **paths})
        done = train(config, callbacks=[losses, weights], strategy=strategy, log=said.append)
        np.savez(result + ".npz", **{f"{s}/{i}": w for s, ws in enumerate(weights.steps) for i, w in enumerate(ws)})
        Path(result + ".json").write_text(json.dumps({
            "losses": losses.losses, "history": done.history, "said": said, "replicas": done.replicas,
            "steps_done": done.steps_done, "weights_path": done.weights_path and str(done.weights_path),
            "checkpoints": [str(p) for p in done.checkpoints], "trainable": [v.trainable for v in done.model.weights],
        }))
""")

CLUSTER_SCRIPT = textwrap.dedent("""
    # start one TRAIN_SCRIPT worker per run of argv[2] on 127.0.0.1 (ports chosen now), each told its place by its
    # TF_CONFIG, or (argv[5] "resolver") by a cluster resolver the script gives train(); wait for all (at most
    # argv[3] seconds), kill the others as soon as one fails; print each worker's exit status
    import fcntl, json, os, socket, struct, subprocess, sys, time
    script, runs, timeout = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
    private, told = sys.argv[4] == "1", sys.argv[5]
    if private:  # a new network namespace: bring its loopback interface up (SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            flags = struct.unpack("16sH14s", fcntl.ioctl(s, 0x8913, struct.pack("16sH14s", b"lo", 0, b"")))[1]
            fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", flags | 1, b""))
    sockets = [socket.socket() for _ in runs]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    workers = []
    try:
        for index, (settings, result) in enumerate(runs):
            env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
            env["TMPDIR"] = result + ".tmp"
            if told == "resolver":
                env["SOUNDNET_TEST_CLUSTER"] = json.dumps({"cluster": cluster, "index": index})
            else:
                env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            os.makedirs(env["TMPDIR"])
            with open(result + ".log", "w") as log:
                command = [sys.executable, "-c", script, json.dumps([[settings, result]])]
                workers.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(w.poll() is None for w in workers):
            if any(w.poll() for w in workers):  # one failed: the others would wait for it forever
                break
            time.sleep(0.2)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
            w.wait()
    print(json.dumps({"returncodes": [w.returncode for w in workers], "cluster": cluster}))
""")


def _private_network() -> list[str]:
    """The command prefix that runs a program in a network namespace of its own (only loopback), where the system
    lets an unprivileged user make one; else none."""
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        return []
    probe = subprocess.run([unshare, "--user", "--map-root-user", "--net", "true"], capture_output=True, check=False)
    return [unshare, "--user", "--map-root-user", "--net"] if probe.returncode == 0 else []


def _run_cluster(runs: list[list], told: str = "tf_config", timeout: int = 300) -> dict:
    """Run one training worker per run (``[settings, result path]``) as a cluster of this machine, each told its
    place by ``TF_CONFIG`` or (``told="resolver"``) by a ``SimpleClusterResolver`` given to ``train``; a worker that
    fails fails the test with its log. Every process is gone when this returns."""
    prefix = _private_network()
    command = [*prefix, sys.executable, "-c", CLUSTER_SCRIPT, TRAIN_SCRIPT, json.dumps(runs), str(timeout)]
    command += ["1" if prefix else "0", told]
    launcher = subprocess.Popen(
        command, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = launcher.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the cluster launcher did not finish within {timeout + 60} s")
    finally:  # a timeout, or the test interrupted: the launcher and its workers (a session of their own) killed
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
    assert launcher.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    for (_, result), code in zip(runs, report["returncodes"], strict=True):
        assert code == 0, f"worker {result} exited with {code}:\n{Path(result + '.log').read_text()[-4000:]}"
    report["private_network"] = bool(prefix)
    return report


def _result(stem: Path) -> tuple[dict, list[list[np.ndarray]]]:
    """A run's JSON record and its weights after each step (index 0: when training began)."""
    record = json.loads(stem.with_suffix(".json").read_text())
    with np.load(stem.with_suffix(".npz")) as saved:
        steps = 1 + max(int(key.split("/")[0]) for key in saved.files)
        count = len(record["trainable"])
        weights = [[saved[f"{s}/{i}"] for i in range(count)] for s in range(steps)]
    return record, weights


def _differences(a: list[np.ndarray], b: list[np.ndarray], trainable: list[bool]) -> tuple[float, float]:
    """``(largest difference of a trainable weight, largest difference of a BatchNorm statistic relative to the
    largest magnitude of its array)``."""
    weights = max(float(np.max(np.abs(x - y))) for x, y, t in zip(a, b, trainable, strict=True) if t)
    statistics = max(
        float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x))), 1e-12))
        for x, y, t in zip(a, b, trainable, strict=True)
        if not t
    )
    return weights, statistics


def _assert_identical(a: list[np.ndarray], b: list[np.ndarray], what: str) -> None:
    for index, (x, y) in enumerate(zip(a, b, strict=True)):
        assert np.array_equal(x, y), f"{what}: weight {index} differs by up to {np.max(np.abs(x - y))}"


SPLIT_TOLERANCE = 1e-6
"""Two workers vs 2 mirrored devices in one process (the same split of each global batch): float32 noise of the
weights (at most about 1.05, BatchNorm's gamma) and of each BatchNorm statistic relative to its array's largest
magnitude. Measured: 0 and 0 (identical)."""
FIRST_STEP_TOLERANCE = 1e-2
"""Two workers vs one device after the first step: the largest difference of a trainable weight, relative to the
largest change the step made. Measured 1.1e-3, in conv1 and conv2 (relative to their own changes: 1.1e-3 and
3.7e-3), whose gradients sum over 4 crops x 33,076 and x 2,068 time positions, in another order when the batch is
split in two (conv3 and later layers, 130 positions or fewer: 2e-5). The step itself is not that sensitive: one
device with its initial weights changed by one float32 ulp gives 1.3e-5."""


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_shards(tmp_path_factory)


SETTINGS = {**SMALL_RUN, "steps": 4, "adam_epsilon": 1000.0, "learning_rate": 1.0, "val_fraction": 0.2}
"""The training of every run: 2 checkpoint intervals of 2 steps, the held-out KL after each; Adam linear."""


def _said(record: dict) -> str:
    return "\n".join(record["said"])


def test_the_training_stream_is_sharded_across_workers_by_data(shards: Path) -> None:
    # sharded by data, not by file: N workers train on the global batches of one device (a FILE policy would give
    # each worker other shard files, an AUTO one would depend on how the pipeline is built)
    import tensorflow as tf

    from soundnet_keras.training.data import make_dataset

    dataset, _ = make_dataset(shards, arch="soundnet5", batch_size=4, crop_steps=3, seed=11)
    assert dataset.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


@dataclass
class FirstRun:
    """The two-worker run from scratch and its single-process references (every run's record and step weights)."""

    cluster: Path
    workers: list[Path]
    runs: list[list]
    chief: tuple[dict, list]
    other: tuple[dict, list]
    one_device: tuple[dict, list]
    two_devices: tuple[dict, list]
    private_network: bool


@pytest.fixture(scope="module")
def first_run(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """Two workers train 4 steps from scratch; meanwhile one process trains the same on one device, then on 2
    mirrored CPU devices."""
    folder = tmp_path_factory.mktemp("multiworker")
    settings = {**SETTINGS, "shards": str(shards)}
    cluster = folder / "cluster"  # one output folder, as on a shared file system
    workers = [folder / "worker-0", folder / "worker-1"]
    runs = [[{**settings, "output_dir": str(cluster), "strategy": "multiworker"}, str(w)] for w in workers]
    one, two = folder / "one-device", folder / "two-devices"
    mirrored = {"strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]}
    reference = [
        [{**settings, "output_dir": str(one)}, str(one)],
        [{**settings, **mirrored, "output_dir": str(two)}, str(two)],
    ]
    with ThreadPoolExecutor(1) as pool:  # the single-process runs while the workers start and wait for each other
        single_process = pool.submit(run_script, TRAIN_SCRIPT, json.dumps(reference), timeout=400)
        report = _run_cluster(runs)
        done = single_process.result()
    assert done.returncode == 0, done.stderr[-3000:]
    chief, other = (_result(w) for w in workers)
    return FirstRun(cluster, workers, runs, chief, other, _result(one), _result(two), report["private_network"])


@pytest.mark.slow
def test_two_workers_end_with_the_weights_of_one_worker(first_run: FirstRun) -> None:
    (chief, chief_steps), (other, other_steps) = first_run.chief, first_run.other
    (single, single_steps), (mirrored, mirrored_steps) = first_run.one_device, first_run.two_devices
    cluster, trainable = first_run.cluster, single["trainable"]

    # only the chief wrote the final weights and the numbered checkpoints; worker 1 backed up in backup/worker-1
    assert (chief["replicas"], other["replicas"]) == (2, 2)
    assert chief["weights_path"] == str(cluster / "final.weights.h5") and other["weights_path"] is None
    assert [Path(p).name for p in chief["checkpoints"]] == ["step-00000002.weights.h5", "step-00000004.weights.h5"]
    assert other["checkpoints"] == []
    assert sorted(p.name for p in cluster.iterdir()) == ["backup", "checkpoints", "final.weights.h5"]
    assert sorted(p.name for p in (cluster / "checkpoints").iterdir()) == [Path(p).name for p in chief["checkpoints"]]
    generations = [
        "epoch-00000001.json",
        "epoch-00000001.weights.h5",
        "epoch-00000002.json",
        "epoch-00000002.weights.h5",
    ]
    assert sorted(p.name for p in (cluster / "backup" / "worker-1").iterdir()) == generations
    assert sorted(p.name for p in (cluster / "backup").iterdir()) == [*generations, "worker-1"]
    temporary = [p for w in first_run.workers for p in Path(f"{w}.tmp").iterdir()]
    assert not [p for p in temporary if p.name.startswith("soundnet-worker-")], temporary

    # the two workers: one set of weights at every step, one loss and one held-out KL
    assert len(chief_steps) == len(other_steps) == 5
    for step, (a, b) in enumerate(zip(chief_steps, other_steps, strict=True)):
        _assert_identical(a, b, f"worker 0 vs worker 1 after step {step}")
    assert chief["losses"] == other["losses"] and chief["history"]["val_loss"] == other["history"]["val_loss"]

    # vs one process on 2 mirrored devices (one worker, the same global batches split the same way)
    split = [_differences(weights, mirrored_steps[step], trainable) for step, weights in enumerate(chief_steps)]
    assert max(max(d) for d in split) <= SPLIT_TOLERANCE, split
    np.testing.assert_allclose(chief["losses"], mirrored["losses"], rtol=1e-6)
    np.testing.assert_allclose(chief["history"]["val_loss"], mirrored["history"]["val_loss"], rtol=1e-6)

    # vs one device: the same initial weights, and the same first step (the first global batch, split in two)
    _assert_identical(chief_steps[0], single_steps[0], "initial weights, worker 0 vs one device")
    assert np.isclose(chief["losses"][0], single["losses"][0], rtol=1e-5), (chief["losses"], single["losses"])
    moved = _differences(single_steps[1], single_steps[0], trainable)
    weights, statistics = _differences(chief_steps[1], single_steps[1], trainable)
    assert moved[0] > 1e-3 and moved[1] > 1e-3, moved  # the step changed the weights and the statistics
    assert weights < FIRST_STEP_TOLERANCE * moved[0], (weights, moved)
    assert statistics < 1e-4, statistics
    print(
        f"\nnetwork namespace of their own: {first_run.private_network}; vs 2 mirrored devices, largest (weight, "
        f"statistic) difference: {max(d[0] for d in split):.3g}, {max(d[1] for d in split):.3g}; vs one device after "
        f"step 1: {weights / moved[0]:.3g} of the step's largest change, statistics {statistics:.3g}"
    )


@pytest.mark.slow
def test_workers_resume_from_the_newest_backup_both_hold(first_run: FirstRun, tmp_path: Path) -> None:
    # worker 1 lost its latest backup (killed while writing its metadata): both continue from step 2, the newest
    # backup both hold, to the weights of the uninterrupted run on 2 mirrored devices. Restarted with their places
    # in a cluster resolver given to train() and no TF_CONFIG: each knows its place from the strategy
    cluster = tmp_path / "cluster"
    shutil.copytree(first_run.cluster, cluster)
    backup = cluster / "backup"
    (backup / "worker-1" / "epoch-00000002.json").unlink()
    resumed = [tmp_path / "worker-0", tmp_path / "worker-1"]
    again = [[{**run[0], "output_dir": str(cluster)}, str(w)] for run, w in zip(first_run.runs, resumed, strict=True)]
    _run_cluster(again, told="resolver")
    (chief, chief_steps), (other, other_steps) = (_result(w) for w in resumed)
    newest = "(the newest backup every worker holds)"
    assert f"resuming from the backup {backup / 'epoch-00000001.weights.h5'} at step 2 {newest}" in _said(chief)
    assert f"ignored {backup / 'worker-1' / 'epoch-00000002.weights.h5'}, a backup without its " in _said(other)
    assert f"resuming from the backup {backup / 'worker-1' / 'epoch-00000001.weights.h5'} at step 2" in _said(other)
    assert chief["steps_done"] == other["steps_done"] == 4 and len(chief_steps) == 3  # steps 3 and 4 ran again
    assert [Path(p).name for p in chief["checkpoints"]] == ["step-00000004.weights.h5"]
    (_, mirrored_steps), trainable = first_run.two_devices, chief["trainable"]
    for step, (a, b) in enumerate(zip(chief_steps, other_steps, strict=True), start=2):
        _assert_identical(a, b, f"resumed worker 0 vs worker 1 after step {step}")
        largest = _differences(a, mirrored_steps[step], trainable)
        assert max(largest) <= SPLIT_TOLERANCE, (step, largest)
