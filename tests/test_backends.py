"""Every Keras backend: the work runs on the chosen one, precision is a choice with known errors, exports and heads
save and load. Marked ``backend`` tests run under TensorFlow, JAX and PyTorch in CI (see README, Tests)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from soundnet_keras import ConfigError, SoundNet
from soundnet_keras.precision import PRECISIONS, check_precision, compute_dtype, precision_scope

REPO = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()


def _golden_error(got: dict, golden) -> float:
    """Largest error of ``got`` (name -> Features) relative to each golden layer's largest magnitude."""
    errors = []
    for name in golden.files:
        if name in got:
            expected = golden[name].astype(np.float64)
            errors.append(np.max(np.abs(got[name].values - expected)) / np.max(np.abs(expected)))
    return max(errors)


@pytest.fixture(scope="module")
def golden(shared_dir):
    return np.load(shared_dir / "golden" / "railroad_soundnet8.npz")


@pytest.mark.backend
@pytest.mark.network
def test_highest_precision_meets_the_fidelity_bar_on_this_backend(pretrained_path, railroad, golden):
    net = SoundNet.from_pretrained(pretrained_path, verbose=False, precision="highest")
    error = _golden_error(net.intermediates(*railroad), golden)
    assert error <= 1e-5, (BACKEND, error)


@pytest.mark.backend
@pytest.mark.network
def test_bfloat16_runs_in_bfloat16_and_keeps_the_answer(pretrained_path, railroad, golden):
    net = SoundNet.from_pretrained(pretrained_path, verbose=False, precision="mixed_bfloat16")
    error = _golden_error(net.intermediates(*railroad), golden)
    assert 1e-4 < error < 3e-2, (BACKEND, error)  # really bfloat16 (not float32), and still close
    assert net.predict(*railroad).top("scenes", k=1)[0][0] == "railroad_track"


@pytest.mark.backend
def test_precision_is_switchable_and_cached_per_choice():
    net = SoundNet("soundnet5")
    clip = np.random.default_rng(3).uniform(-0.5, 0.5, 60_000).astype(np.float32)
    exact = net.features(clip, layer="conv4").values
    net.precision = "mixed_bfloat16"
    rough = net.features(clip, layer="conv4").values
    net.precision = "default"
    again = net.features(clip, layer="conv4").values
    scale = np.abs(exact).max()
    assert 0 < np.abs(rough - exact).max() / scale < 3e-2
    assert np.abs(again - exact).max() / scale < 1e-5  # on CPUs "default" is full float32 as well
    assert rough.dtype == np.float32


@pytest.mark.parametrize("bad", ["float16", "fp32", "", "HIGHEST"])
def test_unknown_precision_names_the_choices(bad):
    with pytest.raises(ConfigError, match=r"unknown precision .*highest, default, mixed_bfloat16"):
        check_precision(bad)
    with pytest.raises(ConfigError, match="unknown precision"):
        SoundNet("soundnet5", precision=bad)
    net = SoundNet("soundnet5")
    with pytest.raises(ConfigError, match="unknown precision"):
        net.precision = bad
    assert net.precision == "highest"


def test_unknown_precision_fails_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="unknown precision"):
        SoundNet.from_pretrained("soundnet8", precision="float64")
    assert not (tmp_path / "cache").exists()


def test_compute_dtypes():
    assert [compute_dtype(p) for p in PRECISIONS] == ["float32", "float32", "bfloat16"]


def test_training_precisions_are_the_inference_names_plus_float16():
    from soundnet_keras.cli.train import build_parser
    from soundnet_keras.precision import TRAINING_PRECISIONS, check_training_precision, training_policy

    assert TRAINING_PRECISIONS[:3] == PRECISIONS and TRAINING_PRECISIONS[3] == "mixed_float16"
    policies = [training_policy(p) for p in TRAINING_PRECISIONS]
    assert policies == ["float32", "float32", "mixed_bfloat16", "mixed_float16"]
    assert check_training_precision("float32") == "default"  # the earlier name
    with pytest.raises(ConfigError, match="unknown training precision 'float64': expected one of highest, default"):
        check_training_precision("float64")
    args = build_parser().parse_args(["shards", "-o", "run"])
    assert args.precision == "default" and args.strategy == "default"
    assert build_parser().parse_args(["shards", "-o", "run", "--precision", "highest"]).precision == "highest"


def test_train_cli_strategies_are_the_library_strategies():
    from soundnet_keras.cli.train import build_parser
    from soundnet_keras.training.strategies import STRATEGIES

    action = next(a for a in build_parser()._actions if a.dest == "strategy")
    assert tuple(action.choices) == STRATEGIES


def _tf32_state() -> object:
    """The active backend's TensorFloat-32 switches, as it reports them."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.config.experimental.tensor_float_32_execution_enabled()
    if BACKEND == "jax":
        import jax

        return jax.config.jax_default_matmul_precision
    import torch

    return (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)


@pytest.mark.backend
def test_highest_turns_tf32_off_inside_and_restores_it_after():
    before = _tf32_state()
    with precision_scope("highest"):
        inside = _tf32_state()
    assert _tf32_state() == before
    expected = {"tensorflow": False, "jax": "highest", "torch": ("ieee", "ieee")}[BACKEND]
    assert inside == expected
    with precision_scope("default"):
        assert _tf32_state() == before
    with pytest.raises(RuntimeError), precision_scope("highest"):  # restored on errors too
        raise RuntimeError("boom")
    assert _tf32_state() == before


@pytest.mark.backend
def test_pickled_model_keeps_its_precision():
    import pickle

    net = SoundNet("soundnet5", precision="mixed_bfloat16")
    assert pickle.loads(pickle.dumps(net)).precision == "mixed_bfloat16"


# --------------------------------------------------------------------------------------- the chosen backend only
_NO_TENSORFLOW = """
import json, os, sys
import numpy as np
from soundnet_keras import SoundNet
net = SoundNet("soundnet5")
clip = np.random.default_rng(0).uniform(-0.5, 0.5, 30_000).astype(np.float32)
prediction = net.predict(clip)
features = net.features([clip, clip[:20_000]], layer="conv4", pad="repeat")
path = os.path.join(sys.argv[1], "weights.weights.h5")
net.save_weights(path)
again = SoundNet.from_pretrained(path, verbose=False).predict(clip)
import keras
print(json.dumps({
    "backend": keras.backend.backend(),
    "tensorflow": "tensorflow" in sys.modules,
    "same": bool(np.allclose(prediction.scenes, again.scenes, rtol=0, atol=1e-6)),
    "frames": [f.values.shape[0] for f in features],
}))
"""


def _backend_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_inference_on_jax_and_torch_never_imports_tensorflow(backend, tmp_path):
    if not _backend_available(backend):
        pytest.skip(f"{backend} is not installed (pip install -e '.[{backend}]')")
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _NO_TENSORFLOW, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    clip = np.random.default_rng(0).uniform(-0.5, 0.5, 30_000).astype(np.float32)
    here = SoundNet("soundnet5").features([clip, clip[:20_000]], layer="conv4", pad="repeat")
    assert report == {
        "backend": backend,
        "tensorflow": False,
        "same": True,
        "frames": [f.values.shape[0] for f in here],
    }, report


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_classify_cli_on_jax_and_torch_never_imports_tensorflow(backend, tmp_path):
    if not _backend_available(backend):
        pytest.skip(f"{backend} is not installed (pip install -e '.[{backend}]')")
    script = (
        "import sys, runpy\n"
        "sys.argv = ['soundnet-classify', *sys.argv[1:]]\n"
        "from soundnet_keras.cli.classify import main\n"
        "code = main()\n"
        "print('TENSORFLOW', 'tensorflow' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    weights = tmp_path / "random.weights.h5"
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from soundnet_keras import SoundNet; SoundNet('soundnet8').save_weights({str(weights)!r})",
        ],
        check=True,
        env=env,
        timeout=300,
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "--example", "--weights", str(weights), "--json", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "TENSORFLOW False"
    assert '"scenes"' in done.stdout


# --------------------------------------------------------------------------------------------------- exports
@pytest.mark.backend
def test_keras_export_loads_and_agrees_on_this_backend(tmp_path):
    import soundnet_keras.network  # noqa: F401  (registers the serving layers)

    net = SoundNet("soundnet5")
    path = net.export(tmp_path / "serving.keras")
    served = keras.saving.load_model(path, safe_mode=True)
    clip = np.random.default_rng(2).uniform(-0.5, 0.5, 70_000).astype(np.float32)
    logits = keras.ops.convert_to_numpy(served.predict_on_batch(clip[None])["scenes"])[0]
    expected = net.features(clip, layer="scenes", pad="repeat").values
    assert logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("other", ["jax", "torch"])
def test_saved_model_export_elsewhere_says_which_backend_can(tmp_path, monkeypatch, other):
    monkeypatch.setattr(keras.backend, "backend", lambda: other)
    with pytest.raises(ConfigError, match=rf"'tf_saved_model' needs the TensorFlow .*runs '{other}'.*'keras'"):
        SoundNet("soundnet5").export(tmp_path / "saved", format="tf_saved_model")
    assert not (tmp_path / "saved").exists()
