"""Long inputs in chunks: the plan tiles every output exactly once, and chunked equals one pass (1e-5 relative)."""

from __future__ import annotations

import numpy as np
import pytest

from soundnet_keras import SoundNet, architecture
from soundnet_keras.chunking import min_chunk_samples, plan_chunks, run_chunked, valid_frames
from soundnet_keras.errors import ConfigError


def assert_close_relative(got: np.ndarray, expected: np.ndarray, rtol: float = 1e-5) -> None:
    """Elementwise within ``rtol`` of the value, or of the layer's peak for values near zero (float32 round-off)."""
    assert got.shape == expected.shape
    scale = float(np.max(np.abs(expected))) or 1.0
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("arch", ["soundnet8", "soundnet5"])
def test_plan_tiles_every_output_exactly_once(arch):
    rng = np.random.default_rng(0)
    names = architecture.output_names(arch)
    for _ in range(40):
        total = int(rng.integers(1, 4_000_000))
        chunk = int(rng.integers(1, 1_500_000))
        subset = tuple(rng.choice(names, size=int(rng.integers(1, len(names) + 1)), replace=False))
        plan = plan_chunks(arch, subset, total, chunk)
        common_hop = max(architecture.geometry(arch, n).hop for n in subset)  # hops along the table divide
        longest = max(min_chunk_samples(arch, subset), -(-chunk // common_hop) * common_hop)
        assert plan[0].start == 0 and plan[-1].stop == total
        for piece in plan:
            assert 0 <= piece.start < piece.stop <= total and piece.length <= longest
        for name in subset:
            hop = architecture.geometry(arch, name).hop
            covered = []
            for piece in plan:
                assert piece.start % hop == 0
                first, last, frame = piece.keep[name]
                valid = valid_frames(arch, name, piece.start, piece.stop, total)
                assert (valid[0] <= first and last <= valid[1]) or first == last
                assert frame == first + piece.start // hop
                covered.extend(range(frame, frame + last - first))
            assert covered == list(range(architecture.output_length(arch, name, total))), (total, chunk, name)


def test_valid_frames_edges():
    geo = architecture.geometry("soundnet8", "objects")
    total = 10 * geo.min_samples
    # the whole input is valid everywhere
    assert valid_frames("soundnet8", "objects", 0, total, total) == (
        0,
        architecture.output_length("soundnet8", "objects", total),
    )
    # an interior chunk loses frames on both sides; one receptive field long, it keeps at most one frame
    start = 4 * geo.hop
    first, last = valid_frames("soundnet8", "objects", start, start + geo.receptive_field, total)
    assert last - first <= 1
    with pytest.raises(ConfigError, match="multiple"):
        valid_frames("soundnet8", "objects", 1000, total, total)
    with pytest.raises(ConfigError, match="inside"):
        valid_frames("soundnet8", "objects", 0, total + 1, total)
    with pytest.raises(ConfigError, match="chunk_samples"):
        plan_chunks("soundnet8", ["pool5"], total, 0)


@pytest.mark.backend
@pytest.mark.parametrize("arch", ["soundnet8", "soundnet5"])
def test_chunked_equals_one_pass_for_every_layer(arch):
    net = SoundNet(arch)
    rng = np.random.default_rng(7)
    total = 22050 * 150 + 4321  # 2.5 minutes
    t = np.arange(total) / 22050
    waveform = (0.3 * rng.standard_normal(total) * (1 + np.sin(2 * np.pi * t / 7))).astype(np.float32) / 2
    names = net.layers
    whole = net.forward(waveform[None], names)
    chunk = min_chunk_samples(arch, names)  # the smallest chunk: many chunks and boundaries
    plan = plan_chunks(arch, names, total, chunk)
    assert len(plan) >= 4
    chunked = run_chunked(net.forward, arch, waveform, names, chunk)
    for name in names:
        assert_close_relative(chunked[name], whole[name][0])


@pytest.mark.backend
def test_predict_and_features_use_chunks_with_the_same_result(pretrained_net):
    rng = np.random.default_rng(3)
    seconds = 75
    t = np.arange(22050 * seconds) / 22050
    waveform = 0.2 * np.sin(2 * np.pi * 180 * t) * (t % 3 < 1.5) + 0.05 * rng.standard_normal(t.size)
    waveform = waveform.astype(np.float32)
    previous = pretrained_net.chunk_seconds
    try:
        pretrained_net.chunk_seconds = None
        whole = pretrained_net.predict(waveform)
        whole_pool5 = pretrained_net.features(waveform, layer="pool5")
        pretrained_net.chunk_seconds = 20.0
        chunked = pretrained_net.predict(waveform)
        chunked_pool5 = pretrained_net.features(waveform, layer="pool5")
        listed = pretrained_net.predict([waveform[: 22050 * 5], waveform])[1]  # a long clip inside a list
    finally:
        pretrained_net.chunk_seconds = previous
    # 75 s: the last head frame lacks the training margin, so the policy appends the clip's start; chunking reads
    # that tail without copying the waveform and must give the same frames as one pass over the extended input
    assert whole.padded and chunked.padded and chunked.num_samples == whole.num_samples > waveform.size
    assert chunked.objects.shape == whole.objects.shape and whole.objects.shape[0] >= 20
    assert_close_relative(listed.scenes, whole.scenes)
    assert_close_relative(chunked.objects, whole.objects)
    assert_close_relative(chunked.scenes, whole.scenes)
    assert_close_relative(chunked_pool5.values, whole_pool5.values)
    np.testing.assert_array_equal(chunked.times.center, whole.times.center)


@pytest.mark.backend
def test_folded_inference_matches_keras_model_and_follows_weight_changes():
    net = SoundNet("soundnet8")
    rng = np.random.default_rng(1)
    batch = rng.uniform(-0.5, 0.5, (2, 60_000)).astype(np.float32)
    names = ("conv2", "pool5", "conv7")

    def keras_outputs():
        import keras

        from soundnet_keras.network import stage_layer

        model = net.keras_model
        outputs = {n: model.get_layer(stage_layer("soundnet8", n)).output for n in names}
        return {
            k: keras.ops.convert_to_numpy(v)
            for k, v in keras.Model(model.input, outputs)(batch, training=False).items()
        }

    before = net.forward(batch, names)
    for name, value in keras_outputs().items():
        assert_close_relative(before[name], value)
    # change the BatchNorm statistics and a kernel: the compiled function must see the new values
    bn = net.keras_model.get_layer("conv3_bn")
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([gamma * 1.7, beta + 0.3, mean - 0.2, var * 2.5])
    conv = net.keras_model.get_layer("conv5")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel * -1.3, bias + 0.1])
    after = net.forward(batch, names)
    expected = keras_outputs()
    assert not np.allclose(after["pool5"], before["pool5"])
    for name, value in expected.items():
        assert_close_relative(after[name], value)
