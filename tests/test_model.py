"""The Keras model against an independent float64 NumPy SoundNet, the length guard, the public API on waveforms."""

from __future__ import annotations

import numpy as np
import pytest
from authors_tables import TORCH_MODELS, random_torch_params
from scipy.special import softmax

from soundnet_keras import (
    AudioError,
    ConfigError,
    InputTooShortError,
    SoundNet,
    WeightsError,
    architecture,
)
from soundnet_keras.reference import reference_forward
from soundnet_keras.weights import WeightsFile, load_weights, torch_to_keras

ARCHS = ("soundnet8", "soundnet5")


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(expected))), 1e-12)
    return float(np.max(np.abs(np.asarray(actual, np.float64) - expected))) / scale


@pytest.fixture(scope="module", params=ARCHS)
def random_net(request):
    arch = request.param
    torch_params = random_torch_params(arch, np.random.default_rng(7))
    net = SoundNet(arch, weights=WeightsFile(arch, torch_to_keras(arch, torch_params)))
    return arch, torch_params, net


def test_tables_match_the_authors_scripts():
    for arch, modules in TORCH_MODELS.items():
        table = architecture.layer_table(arch)
        assert [layer.name for layer in table] == [name for _, name, _ in modules]
        for layer, (kind, _name, args) in zip(table, modules, strict=True):
            if kind == "pool":
                assert (layer.size, layer.stride) == args
            else:
                assert (layer.filters, layer.kernel, layer.stride, layer.pad) == args
                assert layer.head == (kind == "head")


@pytest.mark.parametrize(
    ("arch", "layer", "min_samples", "hop"),
    [
        ("soundnet8", "objects", 209_374, 65_536),
        ("soundnet8", "scenes", 209_374, 65_536),
        ("soundnet8", "pool5", 4_574, 8_192),
        ("soundnet8", "conv7", 4_574, 32_768),
        ("soundnet8", "conv5", 222, 2_048),
        ("soundnet8", "conv1", 1, 2),
        ("soundnet5", "objects", 56_798, 98_304),
    ],
)
def test_derived_geometry(arch, layer, min_samples, hop):
    geo = architecture.geometry(arch, layer)
    assert (geo.min_samples, geo.hop) == (min_samples, hop)
    assert architecture.output_length(arch, layer, min_samples) == 1
    assert architecture.output_length(arch, layer, min_samples - 1) == 0


def test_geometry_agrees_with_shapes_for_many_lengths():
    for arch in ARCHS:
        for name in architecture.output_names(arch):
            geo = architecture.geometry(arch, name)
            for n in (geo.min_samples, geo.min_samples + 1, geo.min_samples + geo.hop - 1, 3 * geo.min_samples + 17):
                frames = architecture.output_length(arch, name, n)
                # the last frame's receptive field ends inside the padded input
                last_end = geo.offset + (frames - 1) * geo.hop + geo.receptive_field
                assert last_end <= n - geo.offset


@pytest.mark.backend
@pytest.mark.slow
def test_every_layer_matches_the_float64_reference(random_net):
    arch, torch_params, net = random_net
    rng = np.random.default_rng(11)
    minimum = architecture.geometry(arch, "objects").min_samples
    for length in (minimum, minimum + 1, minimum + 54_321):
        waveform = rng.uniform(-1, 1, length).astype(np.float32) * np.hanning(length).astype(np.float32)
        expected = reference_forward(arch, torch_params, waveform.astype(np.float64))
        got = net.forward(waveform[None], net.layers)  # the bare network: no padding policy, every frame
        assert set(got) == set(expected)
        for name, values in got.items():
            assert values[0].shape == expected[name].shape, name
            assert relative_error(values[0], expected[name]) <= 1e-5, (arch, length, name)
        hidden = net.intermediates(waveform, layers=[n for n in net.layers if n not in ("objects", "scenes")])
        for name, feats in hidden.items():
            np.testing.assert_array_equal(feats.values, got[name][0])


def test_too_short_inputs_raise_the_guard(random_net):
    arch, _, net = random_net
    reliable = architecture.reliable_min_samples(arch)
    with pytest.raises(InputTooShortError) as info:
        net.predict(np.zeros(reliable - 1, np.float32), pad=None)
    message = str(info.value)
    assert f"{reliable} samples" in message and f"{reliable - 1} samples" in message
    assert f"{reliable / 22050:.3f} s" in message and "pad=" in message and "20-s crops" in message
    assert info.value.min_samples == reliable and info.value.received_samples == reliable - 1
    minimum = architecture.geometry(arch, "objects").min_samples  # computable, but padding-dominated: refused
    with pytest.raises(InputTooShortError, match=f"needs at least {reliable} samples"):
        net.features(np.zeros(minimum, np.float32), layer="objects")
    for name in ("pool1", "pool5") if arch == "soundnet8" else ("pool3",):
        short = architecture.geometry(arch, name).min_samples - 1
        with pytest.raises(InputTooShortError, match=name):
            net.features(np.zeros(short, np.float32), layer=name)


@pytest.mark.backend
def test_padding_options(random_net):
    arch, _, net = random_net
    crop = architecture.repeated_length(arch)
    clip = np.random.default_rng(3).uniform(-0.5, 0.5, 30_000).astype(np.float32)
    repeated = net.predict(clip, pad="repeat")
    manual = net.forward(np.tile(clip, crop // clip.size + 1)[None, :crop], ("scenes",))["scenes"][0]
    assert repeated.padded and repeated.num_samples == crop and repeated.input_samples == clip.size
    np.testing.assert_allclose(repeated.scenes, softmax(manual.astype(np.float64), axis=-1), rtol=1e-6, atol=1e-9)
    zeros = net.predict(clip, pad="zeros")
    manual = net.forward(np.concatenate([clip, np.zeros(crop - clip.size, np.float32)])[None], ("objects",))
    np.testing.assert_allclose(
        zeros.objects, softmax(manual["objects"][0].astype(np.float64), axis=-1), rtol=1e-6, atol=1e-9
    )
    hidden = net.features(clip[:100], layer="pool2", pad="repeat")  # hidden layers: only up to their minimum
    assert hidden.num_samples == architecture.geometry(arch, "pool2").min_samples and hidden.padded
    with pytest.raises(ConfigError, match="pad mode"):
        net.predict(clip, pad="mirror")


def test_padding_plan_for_the_heads():
    reliable = architecture.reliable_min_samples("soundnet8")
    assert reliable == 209_374 + 32_768 and architecture.head_margin("soundnet8") == 32_768
    short = architecture.plan_input("soundnet8", ("objects",), 110_250, "repeat")
    assert (short.network_samples, short.frames("objects"), short.padded) == (441_000, 4, True)
    assert short.padded_frames("objects", 4).all() and short.timeline_samples == 441_000
    long = architecture.plan_input("soundnet8", ("objects", "pool5"), 418_750, "repeat")
    assert long.frames("objects") == architecture.output_length("soundnet8", "objects", 418_750) == 4
    last_needs = 209_374 + 3 * 65_536 + 32_768  # the 4th frame's minimum plus the margin
    assert long.network_samples == last_needs and long.timeline_samples == 418_750
    assert long.frames("pool5") == architecture.output_length("soundnet8", "pool5", 418_750)
    assert long.padded_frames("objects", 4).tolist() == [False, False, False, True]
    appended = last_needs - 418_750
    assert long.apply(np.arange(418_750, dtype=np.float32))[-appended:].tolist() == list(range(appended))
    fine = architecture.plan_input("soundnet8", ("objects",), 439_530, "repeat")  # railroad: every frame has it
    assert not fine.padded and fine.frames("objects") == 4
    unpadded = architecture.plan_input("soundnet8", ("objects",), 297_675, None)  # 13.5 s: 2 frames, 1 reliable
    assert unpadded.frames("objects") == 1 and not unpadded.padded
    hidden = architecture.plan_input("soundnet8", ("pool5",), 1_000, "zeros")
    assert hidden.network_samples == 4_574 and hidden.apply(np.ones(1_000, np.float32))[1_000:].max() == 0
    with pytest.raises(ConfigError, match="num_samples must be a positive"):
        architecture.plan_input("soundnet8", ("objects",), 0, "repeat")


@pytest.mark.backend
def test_batches_and_lists_match_single_clips(random_net):
    arch, _, net = random_net
    rng = np.random.default_rng(5)
    minimum = architecture.geometry(arch, "pool5" if arch == "soundnet8" else "conv4").min_samples
    layer = "pool5" if arch == "soundnet8" else "conv4"
    batch = rng.uniform(-1, 1, (3, minimum + 5_000)).astype(np.float32)
    batched = net.features(batch, layer=layer, batch=True)
    assert batched.values.shape[0] == 3
    for i in range(3):  # equal to float precision: batched and single convolutions may sum in other orders
        single = net.features(batch[i], layer=layer).values
        np.testing.assert_allclose(batched.values[i], single, rtol=1e-5, atol=1e-6 * np.abs(single).max())
    clips = [batch[0], batch[1, : minimum + 100]]
    listed = net.features(clips, layer=layer)
    assert [f.values.shape[0] for f in listed] == [architecture.output_length(arch, layer, c.size) for c in clips]


def test_resampling_and_integer_input():
    net = SoundNet("soundnet5")
    rng = np.random.default_rng(9)
    clip_44k = (rng.uniform(-0.5, 0.5, 44_100 * 3)).astype(np.float32)
    import soxr

    expected = net.features(soxr.resample(clip_44k, 44_100, 22_050, quality="HQ"), layer="conv4").values
    got = net.features(clip_44k, sample_rate=44_100, layer="conv4").values
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    as_int16 = (clip_44k * 32768).astype(np.int16)
    from_int = net.features(as_int16, sample_rate=44_100, layer="conv4").values
    np.testing.assert_allclose(from_int, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("waveform", "sample_rate", "error", "match"),
    [
        (np.zeros(0, np.float32), 22050, AudioError, "empty"),
        (np.full(5000, np.nan, np.float32), 22050, AudioError, "NaN or Inf"),
        (np.zeros((1, 2, 5000), np.float32), 22050, AudioError, "shape"),
        (np.full(5000, 1000.0, np.float32), 22050, AudioError, r"\[-1, 1\]"),
        (np.array(["a", "b"]), 22050, AudioError, "numeric"),
        (np.zeros(5000, np.float32), 0, AudioError, "sample_rate"),
        (np.zeros(5000, np.float32), 22050.5, AudioError, "whole number"),
        (np.zeros(5000, np.float32), "22050", AudioError, "sample_rate"),
    ],
)
def test_bad_waveforms_get_clear_errors(waveform, sample_rate, error, match):
    net = SoundNet("soundnet5")
    with pytest.raises(error, match=match):
        net.features(waveform, sample_rate, layer="conv1")


def test_silence_is_valid():
    net = SoundNet("soundnet5")
    feats = net.features(np.zeros(5000, np.float32), layer="pool2")
    assert np.all(np.isfinite(feats.values))


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="unknown architecture 'soundnet9'"):
        SoundNet("soundnet9")
    net = SoundNet("soundnet5")
    with pytest.raises(ConfigError, match=r"unknown layer 'pool5'.*conv1, pool1"):
        net.features(np.zeros(100_000, np.float32), layer="pool5")


def test_torch7_numerics_in_the_keras_model():
    net = SoundNet("soundnet8")
    model = net.keras_model
    bns = [layer for layer in model.layers if layer.__class__.__name__ == "BatchNormalization"]
    assert len(bns) == 7 and all(layer.epsilon == 1e-5 for layer in bns)
    pads = {layer.name: layer.padding for layer in model.layers if layer.name.endswith("_pad")}
    assert pads["conv1_pad"] == (32, 32) and pads["conv6_pad"] == (2, 2)
    assert model.get_layer("pool5").padding == "valid"


@pytest.mark.backend
def test_save_load_round_trip_and_strict_loading(tmp_path):
    arch = "soundnet5"
    params = torch_to_keras(arch, random_torch_params(arch, np.random.default_rng(2)))
    net = SoundNet(arch, weights=WeightsFile(arch, params))
    path = net.save_weights(tmp_path / "net.weights.h5")
    again = SoundNet.from_pretrained(path, verbose=False)
    clip = np.random.default_rng(1).uniform(-1, 1, 60_000).astype(np.float32)
    np.testing.assert_array_equal(net.predict(clip).scenes, again.predict(clip).scenes)
    assert load_weights(path).architecture == arch

    missing = {k: v for k, v in params.items() if k != "conv3_bn"}
    with pytest.raises(WeightsError, match="missing layer 'conv3_bn'"):
        SoundNet(arch, weights=WeightsFile(arch, missing))
    extra = dict(params, conv9={"kernel": np.zeros((1, 1, 1)), "bias": np.zeros(1)})
    with pytest.raises(WeightsError, match="unused layer 'conv9'"):
        SoundNet(arch, weights=WeightsFile(arch, extra))
    wrong = dict(params, conv2=dict(params["conv2"], kernel=np.zeros((31, 32, 64), np.float32)))
    with pytest.raises(WeightsError, match=r"conv2/kernel has shape \(31, 32, 64\), expected \(32, 32, 64\)"):
        SoundNet(arch, weights=WeightsFile(arch, wrong))
    torch_missing = random_torch_params(arch, np.random.default_rng(2))
    del torch_missing["conv2"]["running_var"]
    with pytest.raises(WeightsError, match=r"conv2.*missing parameters \['running_var'\]"):
        torch_to_keras(arch, torch_missing)


def test_prediction_top_and_times(random_net):
    arch, _, net = random_net
    minimum = architecture.geometry(arch, "objects").min_samples
    pred = net.predict(np.random.default_rng(4).uniform(-1, 1, 2 * minimum).astype(np.float32))
    frames = architecture.output_length(arch, "objects", 2 * minimum)
    assert pred.scenes.shape == (frames, 401) and pred.objects.shape == (frames, 1000)
    np.testing.assert_allclose(pred.scenes.sum(axis=1), 1.0, rtol=1e-9)
    top = pred.top("scenes", k=3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    assert top[0][0] == pred.scene_names[int(np.argmax(pred.scenes.mean(axis=0)))]
    assert np.all(np.diff(pred.times.center) > 0) and pred.times.start[0] == 0.0
    assert pred.times.end[-1] <= 2 * minimum / 22050 + 1e-9  # the clip's own timeline, not the extended input's
    assert pred.input_samples == 2 * minimum and pred.padded_frames.shape == (frames,)
    assert pred.padded == (arch == "soundnet8")  # its last frame lacks the training margin at 2 x the minimum
    with pytest.raises(ConfigError, match="head must be"):
        pred.top("things")
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        pred.top("scenes", k=0)


def test_heads_of_other_sizes_round_trip_and_stay_strict(tmp_path) -> None:
    import json

    import h5py

    from soundnet_keras.errors import ConfigError, ConversionError, WeightsError

    net = SoundNet("soundnet5", head_classes={"scenes": 365})
    assert net.head_classes == {"objects": 1000, "scenes": 365} and net.categories["scenes"][-1] == "scenes_0364"
    path = net.save_weights(tmp_path / "s365.weights.h5")
    weights = load_weights(path)
    assert weights.head_classes == {"objects": 1000, "scenes": 365}
    assert weights.params["scenes"]["kernel"].shape == (16, 256, 365)
    # the original's sizes: no attribute written, None read, exactly as before
    standard = SoundNet("soundnet5", head_classes={"objects": 1000, "scenes": 401})
    assert standard.head_classes is None
    with h5py.File(standard.save_weights(tmp_path / "std.weights.h5"), "r") as f:
        assert "head_classes" not in f.attrs
    assert load_weights(tmp_path / "std.weights.h5").head_classes is None

    def with_attr(value: str | None) -> None:
        with h5py.File(path, "a") as f:
            if value is None:
                del f.attrs["head_classes"]
            else:
                f.attrs["head_classes"] = value

    with_attr(json.dumps({"objects": 1000, "scenes": 366}))
    with pytest.raises(WeightsError, match=r"365 category names for 'scenes', but .* head 'scenes' has 366 classes"):
        load_weights(path)
    with h5py.File(path, "a") as f:
        del f.attrs["categories_scenes"]
    with pytest.raises(WeightsError, match=r"scenes/kernel has shape \(16, 256, 365\), expected \(16, 256, 366\)"):
        load_weights(path)
    for bad in ("[1, 2]", '{"scenes": 365}', '{"objects": 1000, "scenes": 0}', '{"objects": 1, "scenes": 1e9}', "x"):
        with_attr(bad)
        with pytest.raises(WeightsError, match=r"s365\.weights\.h5' is damaged: attribute 'head_classes'"):
            load_weights(path)
    with_attr(None)  # without the attribute the file is held to the table's 401 scenes, as every file before it
    with pytest.raises(WeightsError, match=r"do not fit soundnet5: .*scenes/kernel has shape \(16, 256, 365\)"):
        load_weights(path)
    with pytest.raises(ConversionError, match=r"3 category names for 'scenes', but the soundnet5 \(objects 1000, "):
        SoundNet("soundnet5", head_classes={"scenes": 365}, categories={"scenes": ["a", "b", "c"]})
    with pytest.raises(ConfigError, match="head 'scenes' class count must be from 1 to 32768, got 0"):
        SoundNet("soundnet5", head_classes={"scenes": 0})
    with pytest.raises(ConfigError, match="class count for unknown head 'places'"):
        SoundNet("soundnet5", head_classes={"places": 365})
    with pytest.raises(ConfigError, match="do not fit the weights"):
        SoundNet("soundnet5", weights=weights, head_classes={"scenes": 401})
