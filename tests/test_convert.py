"""The float64 NumPy reference forward pass, the .t7 converter and its command line."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from authors_tables import keras_to_torch
from t7_writer import random_params, soundnet_model, write_t7

from soundnet_keras import convert as convert_module
from soundnet_keras import reference
from soundnet_keras.architecture import geometry, output_length, output_names
from soundnet_keras.convert import MAX_RELATIVE_ERROR, convert, convert_torch_params
from soundnet_keras.errors import AudioError, ConfigError, ConversionError, InputTooShortError, WeightsError
from soundnet_keras.reference import conv1d, maxpool1d, reference_forward
from soundnet_keras.torch7 import read_t7
from soundnet_keras.weights import load_weights, torch_to_keras

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "convert" / "t7_to_h5.py"


@pytest.fixture(scope="module")
def params5() -> dict:
    return random_params("soundnet5", seed=55)


@pytest.fixture(scope="module")
def t7_soundnet5(tmp_path_factory: pytest.TempPathFactory, params5: dict) -> Path:
    path = tmp_path_factory.mktemp("t7") / "soundnet5_final.t7"
    write_t7(path, soundnet_model("soundnet5", params5))
    return path


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("t7_to_h5", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_script(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, str(SCRIPT), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False)


def _error_lines(stderr: str) -> list[str]:
    """The script's own lines on stderr (TensorFlow may print its start-up log there too)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------------------------------------------------
# Reference forward pass


def _naive_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> np.ndarray:
    padded = np.concatenate([np.zeros((pad, x.shape[1])), x, np.zeros((pad, x.shape[1]))])
    kernel = weight.shape[2]
    frames = (padded.shape[0] - kernel) // stride + 1
    out = np.zeros((max(frames, 0), weight.shape[0]))
    for t in range(max(frames, 0)):
        for o in range(weight.shape[0]):
            out[t, o] = bias[o] + np.sum(weight[o] * padded[t * stride : t * stride + kernel].T)
    return out


@pytest.mark.parametrize(
    ("length", "n_in", "n_out", "kernel", "stride", "pad"),
    [(50, 1, 3, 8, 2, 4), (37, 4, 5, 4, 2, 2), (20, 3, 2, 16, 12, 4), (9, 2, 2, 8, 2, 0), (5, 2, 3, 16, 12, 4)],
)
def test_conv1d_is_torch_cross_correlation(
    monkeypatch: pytest.MonkeyPatch, length: int, n_in: int, n_out: int, kernel: int, stride: int, pad: int
) -> None:
    rng = np.random.default_rng(length)
    x, weight, bias = rng.normal(size=(length, n_in)), rng.normal(size=(n_out, n_in, kernel)), rng.normal(size=n_out)
    expected = _naive_conv(x, weight, bias, stride, pad)
    np.testing.assert_allclose(conv1d(x, weight, bias, stride, pad), expected, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(reference, "_CHUNK_ELEMENTS", 7)  # many im2col blocks
    np.testing.assert_allclose(conv1d(x, weight, bias, stride, pad), expected, rtol=1e-12, atol=1e-12)


def test_maxpool1d_is_floor_mode() -> None:
    x = np.arange(2 * 19, dtype=np.float64).reshape(19, 2) * np.array([1.0, -1.0])
    pooled = maxpool1d(x, 8, 8)
    assert pooled.shape == (2, 2)  # floor(19 / 8): the last 3 rows are dropped, as in Torch7
    np.testing.assert_array_equal(pooled, [[14.0, -1.0], [30.0, -17.0]])


@pytest.mark.parametrize("arch", ["soundnet5", "soundnet8"])
def test_reference_forward_shapes_and_dtypes(arch: str) -> None:
    params = random_params(arch, seed=3)
    samples = geometry(arch, "objects").min_samples + 777
    waveform = np.random.default_rng(4).uniform(-1.0, 1.0, samples)
    ours = reference_forward(arch, params, waveform)
    assert list(ours) == list(output_names(arch))
    for name, value in ours.items():
        assert value.dtype == np.float64 and np.isfinite(value).all()
        assert value.shape == (output_length(arch, name, samples), geometry(arch, name).channels), name


@pytest.mark.slow
def test_reference_forward_matches_the_golden_outputs(pretrained_path, shared_dir) -> None:
    """The float64 reference on the real weights and the real clip equals the stored golden outputs (computed
    independently, in float64, from the Torch7 layer definitions: ``../shared/README.md``)."""
    import soundfile

    from soundnet_keras.weights import load_weights

    golden = np.load(shared_dir / "golden" / "railroad_soundnet8.npz")
    waveform, _ = soundfile.read(shared_dir / "audio" / "railroad_audio.wav", dtype="float32")
    params = keras_to_torch("soundnet8", load_weights(pretrained_path).params)
    names = ["pool2", "conv3", "conv5", "pool5", "conv7", "objects", "scenes"]
    ours = reference_forward("soundnet8", params, waveform.astype(np.float64), outputs=names)
    for name in names:
        expected = golden[name].astype(np.float64)
        scale = np.max(np.abs(expected))
        assert ours[name].shape == expected.shape, name
        assert np.max(np.abs(ours[name] - expected)) / scale <= 1e-5, name


def test_reference_forward_outputs_and_errors(params5: dict) -> None:
    waveform = np.random.default_rng(5).uniform(-1.0, 1.0, 4000)
    subset = reference_forward("soundnet5", params5, waveform, outputs=["pool2", "conv1"])
    assert list(subset) == ["conv1", "pool2"]
    full = reference_forward("soundnet5", params5, waveform, outputs=["conv1", "pool2", "conv3"])
    np.testing.assert_array_equal(subset["pool2"], full["pool2"])
    with pytest.raises(InputTooShortError, match="'objects' needs at least 56798 samples"):
        reference_forward("soundnet5", params5, waveform)
    with pytest.raises(AudioError, match=r"must be 1-D"):
        reference_forward("soundnet5", params5, waveform[None, :], outputs=["conv1"])
    with pytest.raises(AudioError, match="finite"):
        reference_forward("soundnet5", params5, np.full(100, np.nan), outputs=["conv1"])
    with pytest.raises(ConfigError, match=r"unknown outputs \['conv9'\]"):
        reference_forward("soundnet5", params5, waveform, outputs=["conv9"])
    broken = {name: dict(values) for name, values in params5.items()}
    del broken["conv2"]["running_var"]
    with pytest.raises(WeightsError, match="running_var"):
        reference_forward("soundnet5", broken, waveform, outputs=["conv1"])


# --------------------------------------------------------------------------------------------------------------------
# Converter


@pytest.mark.backend
def test_convert_writes_validated_weights_with_metadata(tmp_path: Path, t7_soundnet5: Path) -> None:
    categories = {"objects": [f"object {i}" for i in range(1000)], "scenes": [f"scene {i}" for i in range(401)]}
    lines: list[str] = []
    output = tmp_path / "out" / "soundnet5.weights.h5"
    report = convert(t7_soundnet5, output, categories=categories, log=lines.append)

    assert report.architecture == "soundnet5" and report.output_path == output
    assert [diff.name for diff in report.diffs] == list(output_names("soundnet5"))
    assert report.max_rel < MAX_RELATIVE_ERROR
    assert report.info["architecture"] == "soundnet5"
    table = "\n".join(lines)
    for name in output_names("soundnet5"):
        assert any(line.split()[:1] == [name] for line in table.splitlines()), name

    weights = load_weights(output)
    digest = hashlib.sha256(t7_soundnet5.read_bytes()).hexdigest()
    assert (weights.architecture, weights.source, weights.source_sha256) == ("soundnet5", t7_soundnet5.name, digest)
    assert report.source_sha256 == digest
    assert weights.categories == categories
    expected = torch_to_keras("soundnet5", read_t7(t7_soundnet5)[1])
    for layer, variables in expected.items():
        for var, value in variables.items():
            np.testing.assert_array_equal(weights.params[layer][var], value, err_msg=f"{layer}/{var}")
    assert sorted(p.name for p in output.parent.iterdir()) == [output.name]  # no temporary files left


def test_convert_torch_params_records_the_source(tmp_path: Path, params5: dict) -> None:
    source = tmp_path / "sound5.npy"
    source.write_bytes(b"stand-in for the source file")
    output = tmp_path / "from_params.weights.h5"
    report = convert_torch_params("soundnet5", params5, output, source, None, None)
    weights = load_weights(output)
    assert weights.source == "sound5.npy"
    assert weights.source_sha256 == hashlib.sha256(source.read_bytes()).hexdigest() == report.source_sha256
    assert weights.categories == {}


@pytest.mark.parametrize("failure", ["bad eps", "bad categories", "validation"])
def test_failed_conversion_leaves_no_partial_file(
    tmp_path: Path, params5: dict, t7_soundnet5: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    output = tmp_path / "model.weights.h5"
    output.write_bytes(b"previous good file")
    source, categories = t7_soundnet5, None
    if failure == "bad eps":
        source = tmp_path / "eps.t7"
        write_t7(source, soundnet_model("soundnet5", params5, eps=1e-3))
        match = "BatchNorm eps 0.001"
    elif failure == "bad categories":
        categories = {"scenes": ["only one"]}
        match = r"1 category names for 'scenes', but the soundnet5 head 'scenes' has 401 classes"
    else:
        monkeypatch.setattr(convert_module, "MAX_RELATIVE_ERROR", 0.0)  # fails after the file has been written
        match = r"does not match the float64 reference: relative difference above 0 at conv1"
    with pytest.raises(ConversionError, match=match):
        convert(source, output, categories=categories, log=None)
    assert output.read_bytes() == b"previous good file"
    expected = {output.name, source.name} if source.parent == tmp_path else {output.name}
    assert {p.name for p in tmp_path.iterdir()} == expected  # no temporary files left behind


# --------------------------------------------------------------------------------------------------------------------
# Command line


@pytest.mark.slow
def test_cli_converts_a_soundnet8_file_end_to_end(tmp_path: Path) -> None:
    # The likeliest form of the original: cudnn modules, CUDA tensors, flattened parameters, running_std.
    t7 = tmp_path / "soundnet8_final.t7"
    params = random_params("soundnet8", seed=88)
    write_t7(t7, soundnet_model("soundnet8", params, flavour="cudnn", tensor_type="torch.CudaTensor", running_std=True))
    del params
    output = tmp_path / "soundnet8.weights.h5"
    result = _run_script(t7, output)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    for name in output_names("soundnet8"):
        assert name in rows, f"no difference row for {name} in:\n{result.stdout}"
        assert float(rows[name][-1]) < MAX_RELATIVE_ERROR
    assert "running_std converted to running_var for 7 layers" in result.stdout
    weights = load_weights(output)
    assert (weights.architecture, weights.source) == ("soundnet8", "soundnet8_final.t7")


def test_cli_bad_input_path_exits_2_with_one_line(tmp_path: Path) -> None:
    output = tmp_path / "out.weights.h5"
    result = _run_script(tmp_path / "missing.t7", output)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert _error_lines(result.stderr) == [f"error: Torch7 file {str(tmp_path / 'missing.t7')!r} does not exist"]
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: ")
    assert not output.exists()


def test_cli_in_process_with_categories(
    tmp_path: Path, t7_soundnet5: Path, script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    objects, scenes = tmp_path / "objects.txt", tmp_path / "scenes.txt"
    objects.write_text("".join(f"n{i:08d} thing {i}\n" for i in range(1000)))
    scenes.write_text("\n".join(f"/s/scene_{i}" for i in range(401)) + "\n\n")
    output = tmp_path / "cli.weights.h5"
    args = [str(t7_soundnet5), str(output), "--arch", "soundnet5"]
    assert script.main([*args, "--categories-objects", str(objects), "--categories-scenes", str(scenes)]) == 0
    out = capsys.readouterr().out
    assert "relative" in out and "scenes" in out
    categories = load_weights(output).categories
    assert categories["objects"][7] == "n00000007 thing 7" and categories["scenes"][-1] == "/s/scene_400"
    assert len(categories["scenes"]) == 401

    output.unlink()
    scenes.write_text("just one scene\n")
    assert script.main([*args, "--categories-scenes", str(scenes)]) == 2
    err = capsys.readouterr().err
    assert _error_lines(err) == [
        "error: 1 category names for 'scenes', but the soundnet5 head 'scenes' has 401 classes"
    ]
    assert not output.exists()
    assert script.main([*args, "--categories-objects", str(tmp_path / "absent.txt")]) == 2
    assert "category file" in capsys.readouterr().err
    assert script.main([str(t7_soundnet5), str(output), "--arch", "soundnet8"]) == 2
    assert "output planes 32 but the soundnet8 table says 16 for conv1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        script.main([str(t7_soundnet5), str(output), "--arch", "soundnet9"])
    assert exited.value.code == 2
