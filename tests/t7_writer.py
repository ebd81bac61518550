"""Test helper: write Torch7 binary files (``torch.save`` format), including SoundNet models like the authors'.

The format (torch7 ``File.lua`` ``writeObject`` and the C ``write`` methods of tensors and storages), as saved on
Linux x86_64: little-endian, 4-byte ints, 8-byte longs, 8-byte doubles. Every value starts with an int type tag:

* ``0`` nil; ``1`` number (double); ``5`` boolean (int 0/1); ``2`` string (int length, bytes);
* ``3`` table, ``4`` torch object, ``8`` function: an int reference index, and the content only the first time
  an object is written (later occurrences are just the index, which is how shared and recursive objects work);
  a table's content is an int count and that many key/value pairs (``pairs`` order: 1..n first for lists);
* a torch object's content is its version string ``"V 1"``, its class name, then its ``write`` method's output or,
  for classes without one (nn modules), its fields as a table (a new object with the next index);
* a tensor writes int ndim, ndim longs of sizes, ndim longs of strides, a long storage offset (1-based) and its
  storage object (nil for an empty tensor); a storage writes a long element count and the raw elements.

Values: ``None``, ``bool``, ``int``/``float``, ``str``/``bytes``, ``list``/``tuple`` (a Lua list), ``dict`` (a Lua
table, insertion order), :class:`Table` (explicit key/value pairs), :class:`TorchObject` (a class instance),
:class:`Tensor`, :class:`Storage`, a NumPy array (a contiguous tensor of the matching type) and
``torchfile.TorchObject`` / ``torchfile.LuaFunction`` (as read by torchfile, so that decoded files can be written back).

:func:`soundnet_model` builds the authors' ``nn.Sequential`` (``main_train.lua`` / ``main_train_small.lua``) from
Torch-layout parameters, in ``nn`` or ``cudnn`` flavour, with CUDA, float or double tensors. Its layer list is
written out here from the Lua scripts, independently of ``soundnet_keras.architecture``.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

TYPE_NIL = 0
TYPE_NUMBER = 1
TYPE_STRING = 2
TYPE_TABLE = 3
TYPE_TORCH = 4
TYPE_BOOLEAN = 5
TYPE_FUNCTION = 6
TYPE_RECUR_FUNCTION = 8

TENSOR_DTYPES = {
    "torch.FloatTensor": np.dtype("<f4"),
    "torch.DoubleTensor": np.dtype("<f8"),
    "torch.CudaTensor": np.dtype("<f4"),
    "torch.CudaDoubleTensor": np.dtype("<f8"),
    "torch.LongTensor": np.dtype("<i8"),
    "torch.IntTensor": np.dtype("<i4"),
    "torch.ByteTensor": np.dtype("u1"),
}


def storage_type(tensor_type: str) -> str:
    """``torch.CudaTensor`` -> ``torch.CudaStorage`` and so on."""
    return tensor_type.removesuffix("Tensor") + "Storage"


@dataclass(eq=False)
class Storage:
    """A Torch storage: a flat array of one element type. Shared by identity between tensors."""

    data: np.ndarray
    class_name: str = "torch.FloatStorage"


@dataclass(eq=False)
class Tensor:
    """A Torch tensor: a strided view (sizes, strides in elements, 0-based offset) into a :class:`Storage`."""

    class_name: str
    storage: Storage | None
    sizes: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    offset: int = 0

    @classmethod
    def from_array(cls, array: np.ndarray, class_name: str = "torch.FloatTensor") -> Tensor:
        """A contiguous tensor owning a new storage with the values of ``array``."""
        data = np.ascontiguousarray(array, dtype=TENSOR_DTYPES[class_name]).reshape(-1)
        return cls.view(Storage(data, storage_type(class_name)), np.shape(array), 0, class_name)

    @classmethod
    def view(cls, storage: Storage, sizes: Iterable[int], offset: int, class_name: str) -> Tensor:
        """A contiguous tensor of ``sizes`` starting at element ``offset`` (0-based) of ``storage``."""
        sizes = tuple(int(s) for s in sizes)
        strides = tuple(int(np.prod(sizes[i + 1 :])) for i in range(len(sizes)))
        return cls(class_name, storage, sizes, strides, offset)

    @classmethod
    def empty(cls, class_name: str = "torch.FloatTensor") -> Tensor:
        """An empty tensor (no dimensions, no storage), as ``torch.FloatTensor()``."""
        return cls(class_name, None)


@dataclass(eq=False)
class Table:
    """A Lua table given as explicit key/value pairs, written in this order (keys may be any value)."""

    items: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(eq=False)
class TorchObject:
    """An instance of a Torch class without a custom ``write`` (e.g. an nn module): class name and fields."""

    class_name: str
    fields: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    def get(self, index: int) -> TorchObject:
        """The container's ``index``-th child module (1-based, as ``module:get(index)`` in Lua)."""
        return self.fields["modules"][index - 1]


class T7Writer:
    """Serialise values to a binary stream in Torch7's binary format (see the module docstring)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.indices: dict[int, int] = {}
        self.keep_alive: list[Any] = []  # objects whose id() is in ``indices`` must not be freed meanwhile

    def _pack(self, fmt: str, *values: Any) -> None:
        self.stream.write(struct.pack("<" + fmt, *values))

    def write_int(self, value: int) -> None:
        self._pack("i", value)

    def write_long(self, value: int) -> None:
        self._pack("q", value)

    def write_string_raw(self, value: bytes) -> None:
        self.write_int(len(value))
        self.stream.write(value)

    def _reference(self, obj: Any) -> bool:
        """Write the reference index of ``obj``; True if it was written before (nothing more to write)."""
        index = self.indices.get(id(obj))
        if index is not None:
            self.write_int(index)
            return True
        index = len(self.indices) + 1
        self.indices[id(obj)] = index
        self.keep_alive.append(obj)
        self.write_int(index)
        return False

    def _class_header(self, version: int, class_name: str) -> None:
        self.write_string_raw(f"V {version}".encode())
        self.write_string_raw(class_name.encode())

    def write(self, obj: Any) -> None:
        """Write one value (and everything it references)."""
        import torchfile

        if obj is None:
            self.write_int(TYPE_NIL)
        elif isinstance(obj, bool | np.bool_):
            self.write_int(TYPE_BOOLEAN)
            self.write_int(1 if obj else 0)
        elif isinstance(obj, int | float | np.integer | np.floating):
            self.write_int(TYPE_NUMBER)
            self._pack("d", float(obj))
        elif isinstance(obj, str | bytes):
            self.write_int(TYPE_STRING)
            self.write_string_raw(obj.encode() if isinstance(obj, str) else obj)
        elif isinstance(obj, Storage):
            self.write_int(TYPE_TORCH)
            if not self._reference(obj):
                self._class_header(1, obj.class_name)
                self.write_long(obj.data.size)
                self.stream.write(np.ascontiguousarray(obj.data).astype(obj.data.dtype.newbyteorder("<")).tobytes())
        elif isinstance(obj, Tensor):
            self.write_int(TYPE_TORCH)
            if not self._reference(obj):
                self._class_header(1, obj.class_name)
                self.write_int(len(obj.sizes))
                for value in (*obj.sizes, *obj.strides):
                    self.write_long(value)
                self.write_long(obj.offset + 1)
                self.write(obj.storage)
        elif isinstance(obj, np.ndarray):
            types = {np.dtype(dtype): name for name, dtype in reversed(TENSOR_DTYPES.items())}
            class_name = types[obj.dtype.newbyteorder("<")]
            self.write(Tensor.from_array(obj, class_name) if obj.size else Tensor.empty(class_name))
        elif isinstance(obj, TorchObject | torchfile.TorchObject):
            self.write_int(TYPE_TORCH)
            if not self._reference(obj):
                if isinstance(obj, TorchObject):
                    self._class_header(obj.version, obj.class_name)
                    self.write(obj.fields)
                else:
                    self._class_header(obj._version_number, obj.torch_typename().decode())
                    self.write(obj._obj)
        elif isinstance(obj, torchfile.LuaFunction):
            self.write_int(TYPE_RECUR_FUNCTION)
            if not self._reference(obj):
                self.write_int(len(obj.dumped))
                self.stream.write(obj.dumped)
                self.write(obj.upvalues)
        elif isinstance(obj, list | tuple | dict | Table):
            self.write_int(TYPE_TABLE)
            if not self._reference(obj):
                if isinstance(obj, Table):
                    items = list(obj.items)
                elif isinstance(obj, dict):
                    items = list(obj.items())
                else:
                    items = [(i, value) for i, value in enumerate(obj, 1)]
                self.write_int(len(items))
                for key, value in items:
                    self.write(key)
                    self.write(value)
        else:
            raise TypeError(f"cannot write a {type(obj).__name__} to a Torch7 file")


def dumps(obj: Any) -> bytes:
    """The Torch7 binary serialisation of ``obj``."""
    stream = io.BytesIO()
    T7Writer(stream).write(obj)
    return stream.getvalue()


def write_t7(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` to ``path`` as ``torch.save(path, obj)`` would (binary format)."""
    with open(path, "wb") as handle:
        T7Writer(handle).write(obj)


# --------------------------------------------------------------------------------------------------------------------
# SoundNet models as the authors' scripts build them

# (kind, table name, arguments) in net:add order. conv: (in, out, kH=k, dH=s, padH=p); pool: (kH, dH).
SOUNDNET8_LUA: list[tuple[Any, ...]] = [
    ("conv", "conv1", 1, 16, 64, 2, 32), ("bn", "conv1"), ("relu",), ("pool", 8, 8),
    ("conv", "conv2", 16, 32, 32, 2, 16), ("bn", "conv2"), ("relu",), ("pool", 8, 8),
    ("conv", "conv3", 32, 64, 16, 2, 8), ("bn", "conv3"), ("relu",),
    ("conv", "conv4", 64, 128, 8, 2, 4), ("bn", "conv4"), ("relu",),
    ("conv", "conv5", 128, 256, 4, 2, 2), ("bn", "conv5"), ("relu",), ("pool", 4, 4),
    ("conv", "conv6", 256, 512, 4, 2, 2), ("bn", "conv6"), ("relu",),
    ("conv", "conv7", 512, 1024, 4, 2, 2), ("bn", "conv7"), ("relu",),
    ("heads", ("objects", 1024, 1000, 8, 2, 0), ("scenes", 1024, 401, 8, 2, 0)),
]  # fmt: skip
SOUNDNET5_LUA: list[tuple[Any, ...]] = [
    ("conv", "conv1", 1, 32, 64, 2, 32), ("bn", "conv1"), ("relu",), ("pool", 8, 8),
    ("conv", "conv2", 32, 64, 32, 2, 16), ("bn", "conv2"), ("relu",), ("pool", 8, 8),
    ("conv", "conv3", 64, 128, 16, 2, 8), ("bn", "conv3"), ("relu",), ("pool", 8, 8),
    ("conv", "conv4", 128, 256, 8, 2, 4), ("bn", "conv4"), ("relu",),
    ("heads", ("objects", 256, 1000, 16, 12, 4), ("scenes", 256, 401, 16, 12, 4)),
]  # fmt: skip
LUA_MODELS = {"soundnet8": SOUNDNET8_LUA, "soundnet5": SOUNDNET5_LUA}


@dataclass
class _Builder:
    flavour: str
    tensor_type: str
    flat: Storage | None
    flat_used: int = 0

    def name(self, short: str) -> str:
        cudnn = {"SpatialConvolution", "SpatialBatchNormalization", "ReLU", "SpatialMaxPooling", "LogSoftMax"}
        return f"cudnn.{short}" if self.flavour == "cudnn" and short in cudnn else f"nn.{short}"

    def param(self, values: np.ndarray, shape: tuple[int, ...]) -> Tensor:
        """A parameter tensor: a view into the flat parameter storage (getParameters) or a tensor of its own."""
        values = np.asarray(values).reshape(shape)
        if self.flat is None:
            return Tensor.from_array(values, self.tensor_type)
        size = values.size
        self.flat.data[self.flat_used : self.flat_used + size] = values.reshape(-1)
        tensor = Tensor.view(self.flat, shape, self.flat_used, self.tensor_type)
        self.flat_used += size
        return tensor

    def buffer(self, values: np.ndarray) -> Tensor:
        return Tensor.from_array(values, self.tensor_type)

    def empty(self) -> Tensor:
        return Tensor.empty(self.tensor_type)

    def module(self, short: str, **fields: Any) -> TorchObject:
        base = {"output": self.empty(), "gradInput": self.empty(), "train": False, "_type": self.tensor_type}
        return TorchObject(self.name(short), {**base, **fields})

    def conv(self, params: Mapping[str, np.ndarray], n_in: int, n_out: int, k: int, s: int, p: int) -> TorchObject:
        fields: dict[str, Any] = {
            "nInputPlane": n_in, "nOutputPlane": n_out, "kW": 1, "kH": k, "dW": 1, "dH": s, "padW": 0, "padH": p,
            "weight": self.param(params["weight"], (n_out, n_in, k, 1)),
            "bias": self.param(params["bias"], (n_out,)),
            "gradWeight": self.empty(), "gradBias": self.empty(),
        }  # fmt: skip
        if self.flavour == "cudnn":
            fields["groups"] = 1
        return self.module("SpatialConvolution", **fields)

    def batchnorm(self, params: Mapping[str, np.ndarray], n: int, running_std: bool, eps: float) -> TorchObject:
        fields: dict[str, Any] = {
            "eps": eps, "momentum": 0.1, "affine": True, "nDim": 4,
            "weight": self.param(params["gamma"], (n,)),
            "bias": self.param(params["beta"], (n,)),
            "running_mean": self.buffer(params["running_mean"]),
            "gradWeight": self.empty(), "gradBias": self.empty(),
        }  # fmt: skip
        var = np.asarray(params["running_var"], np.float64)
        if running_std:
            fields["running_std"] = self.buffer(1.0 / np.sqrt(var + eps))
        else:
            fields["running_var"] = self.buffer(var)
        if self.flavour == "cudnn":
            fields.update(mode="CUDNN_BATCHNORM_SPATIAL", save_mean=self.empty(), save_std=self.empty())
        return self.module("SpatialBatchNormalization", **fields)

    def relu(self) -> TorchObject:
        if self.flavour == "cudnn":
            return self.module("ReLU", inplace=True, mode="CUDNN_ACTIVATION_RELU")
        return self.module("ReLU", inplace=True, threshold=0, val=0)

    def pool(self, k: int, s: int) -> TorchObject:
        fields: dict[str, Any] = {"kW": 1, "kH": k, "dW": 1, "dH": s, "padW": 0, "padH": 0, "ceil_mode": False}
        if self.flavour == "cudnn":
            fields["mode"] = "CUDNN_POOLING_MAX"
        else:
            fields["indices"] = self.empty()
        return self.module("SpatialMaxPooling", **fields)

    def container(self, short: str, modules: list[TorchObject]) -> TorchObject:
        output: Any = [] if short in ("ConcatTable", "ParallelTable") else self.empty()
        fields = {"modules": modules, "output": output, "gradInput": self.empty(), "train": False}
        return TorchObject(f"nn.{short}", fields)


def _count_params(spec: list[tuple[Any, ...]], params: Mapping[str, Mapping[str, np.ndarray]]) -> int:
    total = 0
    for entry in spec:
        if entry[0] == "conv":
            total += params[entry[1]]["weight"].size + params[entry[1]]["bias"].size
        elif entry[0] == "bn":
            total += params[entry[1]]["gamma"].size + params[entry[1]]["beta"].size
        elif entry[0] == "heads":
            total += sum(params[h[0]]["weight"].size + params[h[0]]["bias"].size for h in entry[1:])
    return total


def soundnet_model(
    arch: str,
    params: Mapping[str, Mapping[str, np.ndarray]],
    *,
    flavour: str = "nn",
    tensor_type: str = "torch.FloatTensor",
    flat_parameters: bool = True,
    running_std: bool = False,
    eps: float = 1e-5,
    frames: int = 1,
) -> TorchObject:
    """The authors' SoundNet ``nn.Sequential`` holding Torch-layout ``params`` (keyed by table layer names).

    ``flavour``: ``"nn"`` or ``"cudnn"`` class names (as after ``cudnn.convert``); ``tensor_type``:
    ``torch.CudaTensor``, ``torch.FloatTensor`` or ``torch.DoubleTensor``; ``flat_parameters``: weights and biases
    share one storage as after ``net:getParameters()``; ``running_std``: BatchNorms store ``running_std =
    1/sqrt(var + eps)`` as older nn did; ``frames``: per-head outputs of the final ParallelTable.
    """
    spec = LUA_MODELS[arch]
    flat = None
    if flat_parameters:
        flat = Storage(np.zeros(_count_params(spec, params), TENSOR_DTYPES[tensor_type]), storage_type(tensor_type))
    b = _Builder(flavour, tensor_type, flat)
    modules: list[TorchObject] = []
    for entry in spec:
        kind = entry[0]
        if kind == "conv":
            modules.append(b.conv(params[entry[1]], *entry[2:]))
        elif kind == "bn":
            modules.append(b.batchnorm(params[entry[1]], params[entry[1]]["gamma"].size, running_std, eps))
        elif kind == "relu":
            modules.append(b.relu())
        elif kind == "pool":
            modules.append(b.pool(*entry[1:]))
        else:
            modules.append(b.container("ConcatTable", [b.conv(params[h[0]], *h[1:]) for h in entry[1:]]))
            split = b.module("SplitTable", dimension=3, output=[])
            modules.append(b.container("ParallelTable", [split, split]))
            modules.append(b.module("FlattenTable", output=[], input_map=[], gradInput=[]))
            per_frame = [
                b.container("Sequential", [b.module("Contiguous"), b.module("LogSoftMax"), b.module("Squeeze")])
                for _ in range(frames * (len(entry) - 1))
            ]
            modules.append(b.container("ParallelTable", per_frame))
    return b.container("Sequential", modules)


def conv_module(
    n_in: int,
    n_out: int,
    k: int,
    s: int,
    p: int,
    *,
    flavour: str = "nn",
    tensor_type: str = "torch.FloatTensor",
    seed: int = 0,
) -> TorchObject:
    """A stand-alone SpatialConvolution(n_in, n_out, 1,k, 1,s, 0,p) with small random weights (for failure tests)."""
    rng = np.random.default_rng(seed)
    params = {"weight": rng.normal(0, 0.01, (n_out, n_in, k)), "bias": rng.normal(0, 0.01, n_out)}
    return _Builder(flavour, tensor_type, None).conv(params, n_in, n_out, k, s, p)


def module_class(short: str, flavour: str = "nn", **fields: Any) -> TorchObject:
    """A parameterless module ``nn.<short>`` (or ``cudnn.<short>`` where cudnn has it) with ``fields``."""
    return _Builder(flavour, "torch.FloatTensor", None).module(short, **fields)


def random_params(arch: str, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Small random Torch-layout parameters for ``arch`` (float64) with realistic BatchNorm statistics.

    Weights are scaled by 1/sqrt(fan-in) so activations stay O(1..100) through the depth; running variances are
    positive.
    """
    rng = np.random.default_rng(seed)
    params: dict[str, dict[str, np.ndarray]] = {}
    for entry in LUA_MODELS[arch]:
        layers = [entry[1:]] if entry[0] == "conv" else list(entry[1:]) if entry[0] == "heads" else []
        for name, n_in, n_out, k, _s, _p in layers:
            params[name] = {
                "weight": rng.normal(0.0, 1.0 / np.sqrt(n_in * k), (n_out, n_in, k)),
                "bias": rng.normal(0.0, 0.1, n_out),
            }
        if entry[0] == "bn":
            n = params[entry[1]]["bias"].size
            params[entry[1]].update(
                gamma=rng.uniform(0.5, 1.5, n),
                beta=rng.normal(0.0, 0.2, n),
                running_mean=rng.normal(0.0, 0.5, n),
                running_var=rng.uniform(0.3, 3.0, n),
            )
    return params
