"""Torch7 files: the test writer against files made by Torch7 itself, and read_t7 on SoundNet models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torchfile
from t7_writer import (
    Table,
    Tensor,
    TorchObject,
    conv_module,
    dumps,
    module_class,
    random_params,
    soundnet_model,
    write_t7,
)

from soundnet_keras.errors import ConfigError, ConversionError
from soundnet_keras.torch7 import load_t7, read_t7

# Files of python-torchfile's test suite, written by Torch7 on Linux x86_64. tds.* use custom write methods that the
# writer does not implement.
REAL_FILES = [
    "custom_class.t7",
    "doubletensor.t7",
    "floattensor.t7",
    "function.t7",
    "function_upvals.t7",
    "gmodule_with_linear_identity.t7",
    "hello=123.t7",
    "list_table.t7",
    "map_table1.t7",
    "map_table2.t7",
    "nngraph_node.t7",
    "recursive_class.t7",
    "recursive_kv_table.t7",
]

HEAD_PATHS = {"soundnet8": ("25.1", "25.2"), "soundnet5": ("16.1", "16.2")}


@pytest.fixture(scope="session")
def torch7_dir(shared_dir: Path) -> Path:
    path = shared_dir / "fixtures" / "torch7"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="module")
def params() -> dict[str, dict]:
    return {"soundnet8": random_params("soundnet8", seed=8), "soundnet5": random_params("soundnet5", seed=5)}


def _write(tmp_path: Path, model: object, name: str = "model.t7") -> Path:
    path = tmp_path / name
    write_t7(path, model)
    return path


# --------------------------------------------------------------------------------------------------------------------
# The writer against real Torch7 files


@pytest.mark.parametrize("name", REAL_FILES)
def test_writer_reencodes_real_torch7_files_byte_for_byte(torch7_dir: Path, name: str) -> None:
    real = (torch7_dir / name).read_bytes()
    assert dumps(torchfile.load(str(torch7_dir / name))) == real


def test_writer_builds_real_values_byte_for_byte(torch7_dir: Path) -> None:
    def real(name: str) -> bytes:
        return (torch7_dir / name).read_bytes()

    doubles = Tensor.from_array(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.9]]), "torch.DoubleTensor")
    assert dumps(doubles) == real("doubletensor.t7")
    floats = np.asarray(torchfile.load(str(torch7_dir / "floattensor.t7")))
    assert floats.shape == (2, 3, 4)
    assert dumps(Tensor.from_array(floats, "torch.FloatTensor")) == real("floattensor.t7")
    assert dumps(["hello", "world", "third item", 123]) == real("list_table.t7")
    assert dumps({"hello": 123}) == real("hello=123.t7")
    assert dumps(TorchObject("Blah", {})) == real("custom_class.t7")
    recursive = TorchObject("A")
    recursive.fields["a"] = recursive
    assert dumps(recursive) == real("recursive_class.t7")
    table = Table()
    table.items.append((table, table))
    assert dumps(table) == real("recursive_kv_table.t7")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("map_table1.t7", {0: "zero", 1: "hello", 2: "world", 3: "third item", 4: 123}),
        ("map_table2.t7", {"a": "non number key", 1: "hello", 2: "world", 3: "third item", 4: 123}),
    ],
)
def test_writer_map_tables_decode_like_real_files(torch7_dir: Path, tmp_path: Path, name: str, value: dict) -> None:
    # Lua's pairs() order of a hash table is unspecified: compare decoded values, not bytes.
    path = _write(tmp_path, value)
    expected = dict(torchfile.load(str(torch7_dir / name)))
    assert dict(torchfile.load(str(path))) == expected


def test_load_t7_decodes_real_files_like_torchfile(torch7_dir: Path) -> None:
    for name in ("floattensor.t7", "doubletensor.t7"):
        ours, theirs = load_t7(torch7_dir / name), torchfile.load(str(torch7_dir / name))
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)
    assert load_t7(torch7_dir / "list_table.t7") == [b"hello", b"world", b"third item", 123]
    gmodule = load_t7(torch7_dir / "gmodule_with_linear_identity.t7")
    assert gmodule.torch_typename() == b"nn.gModule"


def test_writer_shares_storages_by_reference(tmp_path: Path) -> None:
    tensor = Tensor.from_array(np.arange(6.0).reshape(2, 3), "torch.DoubleTensor")
    part = Tensor("torch.DoubleTensor", tensor.storage, (2,), (3,), 1)  # column 1: elements 1 and 4
    value = torchfile.load(str(_write(tmp_path, {"all": tensor, "column": part})))
    np.testing.assert_array_equal(value[b"all"], np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(value[b"column"], [1.0, 4.0])
    np.testing.assert_array_equal(load_t7(tmp_path / "model.t7")[b"column"], [1.0, 4.0])


# --------------------------------------------------------------------------------------------------------------------
# read_t7 on SoundNet models


# SoundNet-8 files are 50-110 MB: every flavour on SoundNet-5, the two likeliest originals on SoundNet-8.
FLAVOURS = [
    ("soundnet5", "nn", "torch.FloatTensor", True),
    ("soundnet5", "cudnn", "torch.CudaTensor", True),
    ("soundnet5", "nn", "torch.DoubleTensor", False),
    ("soundnet5", "cudnn", "torch.DoubleTensor", True),
    ("soundnet8", "cudnn", "torch.CudaTensor", True),
    ("soundnet8", "nn", "torch.FloatTensor", False),
]


@pytest.mark.parametrize(("arch", "flavour", "tensor_type", "flat"), FLAVOURS)
def test_read_t7_reads_every_flavour(
    tmp_path: Path, params: dict, arch: str, flavour: str, tensor_type: str, flat: bool
) -> None:
    original = params[arch]
    model = soundnet_model(arch, original, flavour=flavour, tensor_type=tensor_type, flat_parameters=flat)
    found, torch_params, info = read_t7(_write(tmp_path, model))
    assert found == arch
    assert set(torch_params) == set(original)
    exact = "Double" in tensor_type
    for layer, variables in original.items():
        assert set(torch_params[layer]) == set(variables), layer
        for var, value in variables.items():
            got = torch_params[layer][var]
            assert got.dtype == np.float64 and got.shape == value.shape, (layer, var)
            if exact:
                np.testing.assert_array_equal(got, value, err_msg=f"{layer}/{var}")
            else:
                np.testing.assert_array_equal(got, value.astype(np.float32), err_msg=f"{layer}/{var}")
    assert list(info["tensor_types"]) == [tensor_type]
    assert info["classes"][f"{flavour}.SpatialConvolution"] == len(original)
    assert info["classes"][f"{flavour}.SpatialBatchNormalization"] == len(original) - 2
    assert set(info["bn_eps"].values()) == {1e-5}
    assert info["running_std_converted"] is False
    assert (info["layers"]["objects"], info["layers"]["scenes"]) == HEAD_PATHS[arch]
    assert info["module_count"] == sum(info["classes"].values())
    assert any("LogSoftMax" in ignored for ignored in info["ignored"])
    assert read_t7(tmp_path / "model.t7", arch)[0] == arch


@pytest.mark.parametrize("tensor_type", ["torch.CudaTensor", "torch.DoubleTensor"])
def test_read_t7_converts_running_std_to_running_var(tmp_path: Path, params: dict, tensor_type: str) -> None:
    original = params["soundnet5"]
    model = soundnet_model("soundnet5", original, flavour="cudnn", tensor_type=tensor_type, running_std=True)
    _, torch_params, info = read_t7(_write(tmp_path, model))
    assert info["running_std_converted"] is True
    assert info["running_std_layers"] == ["conv1", "conv2", "conv3", "conv4"]
    rtol = 1e-12 if tensor_type == "torch.DoubleTensor" else 1e-6
    for layer in info["running_std_layers"]:
        assert "running_std" not in torch_params[layer]
        np.testing.assert_allclose(torch_params[layer]["running_var"], original[layer]["running_var"], rtol=rtol)


# --------------------------------------------------------------------------------------------------------------------
# Failures: each with its clear error


def _fails(path: Path, match: str, arch: str | None = None) -> ConversionError:
    with pytest.raises(ConversionError, match=match) as caught:
        read_t7(path, arch)
    return caught.value


def test_wrong_kernel_names_the_module(tmp_path: Path, params: dict) -> None:
    model = soundnet_model("soundnet8", params["soundnet8"])
    model.get(5).fields["kH"] = 64
    _fails(
        _write(tmp_path, model),
        r"module 5 \(nn\.SpatialConvolution\): kernel 64 but the soundnet8 table says 32 for conv2",
    )


@pytest.mark.parametrize(
    ("path", "field", "value", "message"),
    [
        ("5", "dH", 3, r"module 5 \(cudnn\.SpatialConvolution\): stride 3 but the soundnet5 table says 2 for conv2"),
        ("9", "padH", 4, r"module 9 \(cudnn\.SpatialConvolution\): padding 4 but the soundnet5 table says 8 for conv3"),
        ("1", "kW", 64, r"module 1 \(cudnn\.SpatialConvolution\): kernel width \(kW\) 64 but .* says 1 for conv1"),
        ("13", "nOutputPlane", 128, r"module 13 .*: output planes 128 but the soundnet5 table says 256 for conv4"),
        ("4", "kH", 4, r"module 4 \(cudnn\.SpatialMaxPooling\): pooling size 4 but .* says 8 for pool1"),
        ("12", "dH", 4, r"module 12 \(cudnn\.SpatialMaxPooling\): pooling stride 4 but .* says 8 for pool3"),
        ("8", "ceil_mode", True, r"module 8 \(cudnn\.SpatialMaxPooling\): pooling in ceil mode"),
        ("16.2", "kH", 8, r"module 16\.2 \(cudnn\.SpatialConvolution\): kernel 8 but .* says 16 for scenes"),
        ("16.1", "dH", 2, r"module 16\.1 \(cudnn\.SpatialConvolution\): stride 2 but .* says 12 for objects"),
    ],
)
def test_hyperparameter_mismatch_names_the_module(
    tmp_path: Path, params: dict, path: str, field: str, value: object, message: str
) -> None:
    model = soundnet_model("soundnet5", params["soundnet5"], flavour="cudnn", tensor_type="torch.CudaTensor")
    module = model
    for index in path.split("."):
        module = module.get(int(index))
    module.fields[field] = value
    _fails(_write(tmp_path, model), message)


def test_extra_conv_is_an_unused_parameter(tmp_path: Path, params: dict) -> None:
    model = soundnet_model("soundnet5", params["soundnet5"])
    model.fields["modules"].insert(15, conv_module(256, 256, 8, 2, 4))  # after conv4's ReLU (module 15)
    path = _write(tmp_path, model)
    _fails(
        path,
        r"module 16 \(nn\.SpatialConvolution\): an extra convolution: the soundnet5 table's trunk ends at conv4; "
        r"its parameters would be unused \(weight \(256, 256, 8, 1\), bias \(256,\)\)",
        arch="soundnet5",
    )
    _fails(path, r"cannot tell the architecture .* 5 trunk convolutions and 2 head convolutions, but soundnet8 has 7")


def test_conv_after_the_heads_is_an_unused_parameter(tmp_path: Path, params: dict) -> None:
    model = soundnet_model("soundnet5", params["soundnet5"])
    model.get(19).fields["modules"].append(conv_module(256, 10, 1, 1, 0))
    _fails(_write(tmp_path, model), r"module 19\.3 \(nn\.SpatialConvolution\): .* after the heads.* would be unused")


def test_missing_head(tmp_path: Path, params: dict) -> None:
    model = soundnet_model("soundnet5", params["soundnet5"])
    del model.get(16).fields["modules"][1]
    _fails(
        _write(tmp_path, model),
        r"the soundnet5 table's layers scenes have no module in the file \(found 1 of 2 head convolutions",
    )


def test_extra_head(tmp_path: Path, params: dict) -> None:
    model = soundnet_model("soundnet5", params["soundnet5"])
    model.get(16).fields["modules"].append(conv_module(256, 10, 16, 12, 4))
    _fails(_write(tmp_path, model), r"module 16\.3 \(nn\.SpatialConvolution\): an extra head.* would be unused")


def test_missing_trunk_layers_before_the_heads(tmp_path: Path, params: dict) -> None:
    model = soundnet_model("soundnet8", params["soundnet8"])
    del model.fields["modules"][21:24]  # conv7, its BN and ReLU
    _fails(
        _write(tmp_path, model),
        r"module 22 \(nn\.ConcatTable\): the heads start here, but the soundnet8 table's layers conv7 .*have no module",
        arch="soundnet8",
    )


@pytest.mark.parametrize("class_name", ["nn.LeakyReLU", "cudnn.Tanh", "nnx.SpatialReSampling"])
def test_unknown_module_class(tmp_path: Path, params: dict, class_name: str) -> None:
    model = soundnet_model("soundnet5", params["soundnet5"])
    model.fields["modules"][2] = TorchObject(class_name, {"output": Tensor.empty()})
    _fails(_write(tmp_path, model), rf"module 3 \({class_name}\): unknown module class '{class_name}'")


def test_wrong_batchnorm_eps(tmp_path: Path, params: dict) -> None:
    model = soundnet_model("soundnet5", params["soundnet5"], eps=1e-3)
    _fails(_write(tmp_path, model), r"module 2 \(nn\.SpatialBatchNormalization\): BatchNorm eps 0\.001 for conv1")


def test_missing_batchnorm_and_relu(tmp_path: Path, params: dict) -> None:
    model = soundnet_model("soundnet5", params["soundnet5"])
    del model.fields["modules"][5]  # conv2's BatchNorm
    _fails(
        _write(tmp_path, model, "no_bn.t7"), r"module 6 \(nn\.ReLU\): expected a SpatialBatchNormalization after conv2"
    )
    model = soundnet_model("soundnet5", params["soundnet5"])
    del model.fields["modules"][2]  # conv1's ReLU
    _fails(_write(tmp_path, model, "no_relu.t7"), r"module 3 \(nn\.SpatialMaxPooling\): expected a ReLU after conv1")


def test_architecture_mismatch(tmp_path: Path, params: dict) -> None:
    path = _write(tmp_path, soundnet_model("soundnet5", params["soundnet5"]))
    _fails(path, r"module 1 \(nn\.SpatialConvolution\): output planes 32 but the soundnet8 table says 16", "soundnet8")
    with pytest.raises(ConfigError, match="unknown architecture 'soundnet9'"):
        read_t7(path, "soundnet9")


def test_wrong_parameter_shapes(tmp_path: Path, params: dict) -> None:
    model = soundnet_model("soundnet5", params["soundnet5"], flat_parameters=False)
    model.get(5).fields["weight"] = Tensor.from_array(np.zeros((64, 32, 31, 1)))
    _fails(_write(tmp_path, model), r"module 5 .*'weight' has shape \(64, 32, 31, 1\), expected \(64, 32, 32, 1\) for")
    model = soundnet_model("soundnet5", params["soundnet5"], flat_parameters=False)
    model.get(16).get(2).fields["bias"] = None
    _fails(_write(tmp_path, model), r"module 16\.2 \(nn\.SpatialConvolution\): has no 'bias' tensor")
    model = soundnet_model("soundnet5", params["soundnet5"], flat_parameters=False)
    model.get(10).fields["running_std"] = model.get(10).fields["running_var"]
    _fails(_write(tmp_path, model), r"module 10 .*: has both 'running_var' and 'running_std' for conv3")


def test_unreadable_files(tmp_path: Path, params: dict) -> None:
    _fails(tmp_path / "absent.t7", r"Torch7 file '.*absent\.t7' does not exist")
    _fails(tmp_path, r"is not a file")
    text = tmp_path / "notes.t7"
    text.write_text("this is not a Torch7 file\n")
    _fails(text, r"cannot read '.*notes\.t7' as a Torch7 binary file")
    text.write_bytes(b"4\n1\n3\nV 1\n13\nnn.Sequential\n")
    _fails(text, r"looks like a Torch7 ascii file; only the binary format is supported")
    data = dumps(soundnet_model("soundnet5", params["soundnet5"]))
    truncated = tmp_path / "truncated.t7"
    truncated.write_bytes(data[: len(data) // 2])
    _fails(truncated, r"cannot read '.*truncated\.t7' as a Torch7 binary file: .* does not fit .*truncated")
    truncated.write_bytes(data[:-3])
    _fails(truncated, r"cannot read '.*truncated\.t7' as a Torch7 binary file: file ends at byte")
    outside = Tensor("torch.FloatTensor", Tensor.from_array(np.zeros(4)).storage, (3, 3), (3, 1), 0)
    _fails(_write(tmp_path, {"weight": outside}, "outside.t7"), r"reaches element 9 of a storage of 4 elements")
    _fails(_write(tmp_path, {"model": 1}, "table.t7"), r"holds a Lua table, expected the SoundNet model")
    _fails(_write(tmp_path, module_class("Sequential"), "empty.t7"), r"cannot tell the architecture .* 0 trunk")
