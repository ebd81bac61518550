"""Read the authors' original Torch7 models (``soundnet8_final.t7``, ``soundnet5_final.t7``) into Torch layout.

The files are binary Torch7 serialisations (saved on Linux x86_64: little-endian, 4-byte ints, 8-byte longs) of an
``nn.Sequential`` built by the authors' ``main_train.lua`` / ``main_train_small.lua``::

    SpatialConvolution(in, out, 1,k, 1,s, 0,p)   -- kW=1, kH=k: time runs along the height axis
    SpatialBatchNormalization(out)
    ReLU(true)
    SpatialMaxPooling(1,8, 1,8)                  -- where the table has a pool
    ...
    ConcatTable(SpatialConvolution -> 1000 objects, SpatialConvolution -> 401 scenes)
    ParallelTable(SplitTable, SplitTable), FlattenTable,
    ParallelTable(Sequential(Contiguous, LogSoftMax, Squeeze), ...)   -- per-frame log-probabilities

Modules may carry ``nn.`` or ``cudnn.`` class names and tensors may be ``torch.CudaTensor``, ``FloatTensor`` or
``DoubleTensor`` (the models were trained on GPUs). :func:`read_t7` walks the modules in order and matches them to
the layer table of :mod:`soundnet_keras.architecture`: every kernel, stride, padding and channel count is read from
the file and checked against the table, every table layer must be filled and every parameter used. Any
disagreement is a :class:`~soundnet_keras.errors.ConversionError` naming the module (``module 5`` is ``net:get(5)``
in Lua; ``module 25.2`` is ``net:get(25):get(2)``).

Decoding the binary file itself (Lua values, tensors, bounds checks) is :mod:`soundnet_keras.torch7_file`; every
size in the file is bounded there before anything is allocated, and the module walk here is bounded too (no
container may hold itself; at most :data:`MAX_MODULE_DEPTH` levels and :data:`MAX_MODULES` modules). A Torch7 file
has no checksum: a corrupt file is an error only where the damage breaks its structure or the table's checks, and
altered weight values read as they are (compare the file's sha256 with a known good copy's to be sure).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torchfile

from .architecture import BATCHNORM_EPSILON, Conv, Layer, Pool, architectures, heads, layer_table, trunk
from .errors import ConversionError
from .torch7_file import load_t7, load_with_reader  # noqa: F401  (load_t7 is public here too)

TorchParams = dict[str, dict[str, np.ndarray]]

NAMESPACES = ("nn", "cudnn")
"""Module class namespaces accepted (the models were trained with cudnn and may be saved either way)."""

CONVOLUTIONS = frozenset({"SpatialConvolution", "SpatialConvolutionMM"})
BATCHNORMS = frozenset({"SpatialBatchNormalization"})
POOLINGS = frozenset({"SpatialMaxPooling"})
CONTAINERS = frozenset({"Sequential", "ConcatTable"})
IGNORED = frozenset(
    {"ReLU", "Contiguous", "LogSoftMax", "Squeeze", "SplitTable", "FlattenTable", "ParallelTable", "Dropout"}
)
"""Module classes knowingly skipped: no parameters, and no effect on the logits in evaluation mode (``ReLU`` is
checked against the table's activation flags; ``ParallelTable`` and nested ``Sequential`` are searched for
parameters, which would be an error)."""

BN_EPS_TOLERANCE = 1e-9

MAX_MODULE_DEPTH = 16
"""Most levels of containers walked (a SoundNet has 3: Sequential, ParallelTable, Sequential)."""

MAX_MODULES = 10_000
"""Most modules walked (a SoundNet-8 has 41; a file sharing children between containers could list many more)."""


# --------------------------------------------------------------------------------------------------------------------
# Module walk


@dataclass
class _Module:
    """One module of the file in walk order: its Lua path, class name and fields."""

    path: str
    class_name: str
    kind: str
    context: str  # "trunk", "head" (inside the ConcatTable), "tail" (after it)
    fields: dict[str, Any]
    branch: int = 0  # 1-based ConcatTable branch, for head modules

    @property
    def where(self) -> str:
        return f"module {self.path} ({self.class_name})"


def _fields(obj: torchfile.TorchObject) -> dict[str, Any]:
    table = obj._obj
    if isinstance(table, list) and not table:
        return {}
    if not isinstance(table, dict):
        raise ConversionError(f"{obj.torch_typename()!r} holds a {type(table).__name__}, expected a table of fields")
    return {key.decode("utf8", "replace"): value for key, value in table.items() if isinstance(key, bytes)}


def _class_name(obj: Any) -> str:
    if isinstance(obj, torchfile.TorchObject):
        return obj.torch_typename().decode("utf8", "replace")
    if isinstance(obj, np.ndarray):
        return "tensor"
    if isinstance(obj, dict):
        return "Lua table"
    if isinstance(obj, list):
        return "Lua list"
    return "nil" if obj is None else type(obj).__name__


def _kind(class_name: str, where: str) -> str:
    namespace, _, short = class_name.rpartition(".")
    if namespace not in NAMESPACES:
        raise ConversionError(
            f"{where}: unknown module class {class_name!r} (expected nn.* or cudnn.* modules of a SoundNet)"
        )
    for kind, names in (
        ("conv", CONVOLUTIONS),
        ("bn", BATCHNORMS),
        ("pool", POOLINGS),
        ("container", CONTAINERS),
        ("ignored", IGNORED),
    ):
        if short in names:
            return short if kind == "container" else kind
    known = sorted(CONVOLUTIONS | BATCHNORMS | POOLINGS | CONTAINERS | IGNORED)
    raise ConversionError(
        f"{where}: unknown module class {class_name!r}; a SoundNet holds only {', '.join(known)} (nn.* or cudnn.*)"
    )


def _children(fields: dict[str, Any], where: str) -> list[Any]:
    modules = fields.get("modules")
    if modules is None:
        return []
    if isinstance(modules, dict) and not modules:
        return []
    if not isinstance(modules, list):
        raise ConversionError(f"{where}: its 'modules' field is a {type(modules).__name__}, expected a list")
    return modules


def _flatten(
    obj: Any, path: str, context: list[str], out: list[_Module], branch: int = 0, parents: tuple[int, ...] = ()
) -> None:
    """Append ``obj`` and its descendants in forward order; containers are listed before their children.

    ``context`` is a one-element list shared by the whole walk: ``"trunk"`` until the ConcatTable of the heads has
    been walked, ``"tail"`` after it; the ConcatTable's descendants are tagged ``"head"``. ``parents`` holds the
    ids of the containers above ``obj``: a container holding itself (a file can refer back to an object) is an
    error, as are more than :data:`MAX_MODULE_DEPTH` levels or :data:`MAX_MODULES` modules.
    """
    where = f"module {path} ({_class_name(obj)})"
    if not isinstance(obj, torchfile.TorchObject):
        raise ConversionError(f"{where}: expected a Torch module object, found a {_class_name(obj)}")
    if id(obj) in parents:
        raise ConversionError(f"{where}: a container holding itself; a SoundNet's modules form a tree")
    if len(parents) >= MAX_MODULE_DEPTH or len(out) >= MAX_MODULES:
        raise ConversionError(
            f"{where}: more than {MAX_MODULE_DEPTH} levels of containers or {MAX_MODULES} modules; a SoundNet has "
            f"3 levels and 41 modules"
        )
    class_name = _class_name(obj)
    kind = _kind(class_name, where)
    fields = _fields(obj)
    tag = "head" if branch else context[0]
    out.append(_Module(path, class_name, kind, tag, fields, branch))
    children = _children(fields, where) if kind in ("Sequential", "ConcatTable", "ignored") else []
    inside = (*parents, id(obj))
    if kind == "ConcatTable" and not branch:
        if context[0] != "trunk":
            raise ConversionError(f"{where}: a second ConcatTable; a SoundNet has one, holding the two heads")
        for i, child in enumerate(children, 1):
            _flatten(child, f"{path}.{i}", context, out, i, inside)
        context[0] = "tail"
    else:
        for i, child in enumerate(children, 1):
            _flatten(child, f"{path}.{i}", context, out, branch, inside)


def _walk(model: Any) -> list[_Module]:
    """Flatten the model's module tree in forward order (the top-level nn.Sequential itself excluded)."""
    if not isinstance(model, torchfile.TorchObject) or _class_name(model).rpartition(".")[2] != "Sequential":
        raise ConversionError(
            f"the file holds a {_class_name(model)}, expected the SoundNet model itself (an nn.Sequential)"
        )
    modules: list[_Module] = []
    context = ["trunk"]
    for i, child in enumerate(_children(_fields(model), "the top-level nn.Sequential"), 1):
        _flatten(child, str(i), context, modules, 0, (id(model),))
    return modules


# --------------------------------------------------------------------------------------------------------------------
# Field checks


def _number(module: _Module, name: str, default: Any = None) -> int:
    value = module.fields.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise ConversionError(f"{module.where}: field {name!r} is {value!r}, expected an integer")
    return int(value)


def _tensor(module: _Module, name: str, shape: tuple[int, ...], layer: str) -> np.ndarray:
    value = module.fields.get(name)
    if value is None or (isinstance(value, np.ndarray) and value.size == 0 and math.prod(shape) > 0):
        raise ConversionError(f"{module.where}: has no {name!r} tensor, expected shape {shape} for {layer}")
    if not isinstance(value, np.ndarray):
        raise ConversionError(f"{module.where}: field {name!r} is a {_class_name(value)}, expected a tensor")
    if value.dtype.kind != "f":
        raise ConversionError(f"{module.where}: {name!r} is a {value.dtype} tensor, expected floating point")
    if value.shape != shape:
        raise ConversionError(f"{module.where}: {name!r} has shape {value.shape}, expected {shape} for {layer}")
    array = value.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ConversionError(f"{module.where}: {name!r} of {layer} has NaN or Inf values")
    return array


def _expect(module: _Module, what: str, got: Any, want: Any, arch: str, layer: str) -> None:
    if got != want:
        raise ConversionError(f"{module.where}: {what} {got} but the {arch} table says {want} for {layer}")


def _read_conv(module: _Module, layer: Conv, in_channels: int, arch: str) -> dict[str, np.ndarray]:
    """Check a (cudnn|nn).SpatialConvolution against its table row and return Torch-layout weight and bias."""
    pad_h = module.fields.get("padH", module.fields.get("padding", 0))
    pad_w = module.fields.get("padW", module.fields.get("padding", 0))
    _expect(module, "input planes", _number(module, "nInputPlane"), in_channels, arch, layer.name)
    _expect(module, "output planes", _number(module, "nOutputPlane"), layer.filters, arch, layer.name)
    _expect(module, "kernel", _number(module, "kH"), layer.kernel, arch, layer.name)
    _expect(module, "stride", _number(module, "dH"), layer.stride, arch, layer.name)
    _expect(module, "padding", _number(module, "padH", pad_h), layer.pad, arch, layer.name)
    # Time runs along the height axis; the width axis must be a no-op.
    _expect(module, "kernel width (kW)", _number(module, "kW"), 1, arch, layer.name)
    _expect(module, "stride width (dW)", _number(module, "dW"), 1, arch, layer.name)
    _expect(module, "padding width (padW)", _number(module, "padW", pad_w), 0, arch, layer.name)
    if "groups" in module.fields:
        _expect(module, "groups", _number(module, "groups"), 1, arch, layer.name)
    weight = module.fields.get("weight")
    full = (layer.filters, in_channels, layer.kernel, 1)
    if isinstance(weight, np.ndarray) and weight.shape == (layer.filters, in_channels * layer.kernel):
        module.fields = {**module.fields, "weight": weight.reshape(full)}  # SpatialConvolutionMM's 2-D weight
    weight = _tensor(module, "weight", full, layer.name)[:, :, :, 0]
    bias = _tensor(module, "bias", (layer.filters,), layer.name)
    return {"weight": weight, "bias": bias}


def _read_bn(module: _Module, layer: Conv, info: dict[str, Any]) -> dict[str, np.ndarray]:
    """Check a (cudnn|nn).SpatialBatchNormalization and return gamma, beta, running mean and variance."""
    eps = module.fields.get("eps")
    if isinstance(eps, bool) or not isinstance(eps, int | float):
        raise ConversionError(f"{module.where}: has no numeric 'eps' field (got {eps!r}) for {layer.name}")
    if not abs(eps - BATCHNORM_EPSILON) <= BN_EPS_TOLERANCE:  # NaN fails too
        raise ConversionError(
            f"{module.where}: BatchNorm eps {eps!r} for {layer.name}, but SoundNet (and the Keras port) use "
            f"{BATCHNORM_EPSILON!r}"
        )
    shape = (layer.filters,)
    params = {
        "gamma": _tensor(module, "weight", shape, layer.name),
        "beta": _tensor(module, "bias", shape, layer.name),
        "running_mean": _tensor(module, "running_mean", shape, layer.name),
    }
    has_var = isinstance(module.fields.get("running_var"), np.ndarray)
    has_std = isinstance(module.fields.get("running_std"), np.ndarray)
    if has_var and has_std:
        raise ConversionError(
            f"{module.where}: has both 'running_var' and 'running_std' for {layer.name}; cannot tell which is current"
        )
    if has_std:
        # Older nn stored the inverse standard deviation 1 / sqrt(var + eps).
        inv_std = _tensor(module, "running_std", shape, layer.name)
        if np.any(inv_std <= 0):
            raise ConversionError(f"{module.where}: 'running_std' of {layer.name} has values <= 0")
        with np.errstate(over="ignore", divide="ignore"):
            params["running_var"] = 1.0 / np.square(inv_std) - float(eps)
        if not np.all(np.isfinite(params["running_var"])):
            raise ConversionError(f"{module.where}: 'running_std' of {layer.name} gives infinite variances")
        info["running_std_layers"].append(layer.name)
    else:
        params["running_var"] = _tensor(module, "running_var", shape, layer.name)
        if np.any(params["running_var"] < 0):
            raise ConversionError(f"{module.where}: 'running_var' of {layer.name} has negative values")
    info["bn_eps"][layer.name] = float(eps)
    return params


def _read_pool(module: _Module, layer: Pool, arch: str) -> None:
    """Check a (cudnn|nn).SpatialMaxPooling against its table row."""
    _expect(module, "pooling size", _number(module, "kH"), layer.size, arch, layer.name)
    _expect(module, "pooling stride", _number(module, "dH"), layer.stride, arch, layer.name)
    _expect(module, "padding", _number(module, "padH", 0), 0, arch, layer.name)
    _expect(module, "pooling width (kW)", _number(module, "kW"), 1, arch, layer.name)
    _expect(module, "pooling stride width (dW)", _number(module, "dW"), 1, arch, layer.name)
    _expect(module, "padding width (padW)", _number(module, "padW", 0), 0, arch, layer.name)
    if module.fields.get("ceil_mode"):
        raise ConversionError(
            f"{module.where}: pooling in ceil mode, but the {arch} table (and the Keras port) use floor mode "
            f"for {layer.name}"
        )


def _describe(layer: Layer) -> str:
    if isinstance(layer, Pool):
        return f"{layer.name} (max pooling {layer.size}/{layer.stride})"
    return f"{layer.name} (convolution {layer.filters} k{layer.kernel} s{layer.stride} p{layer.pad})"


def _unused(module: _Module, why: str) -> ConversionError:
    names = [name for name, value in module.fields.items() if isinstance(value, np.ndarray) and value.size]
    listed = ", ".join(f"{name} {module.fields[name].shape}" for name in names if not name.startswith("grad"))
    return ConversionError(f"{module.where}: {why}; its parameters would be unused ({listed or 'none'})")


def _detect(modules: list[_Module], path: Path) -> str:
    trunk_convs = sum(1 for m in modules if m.kind == "conv" and m.context == "trunk")
    head_convs = sum(1 for m in modules if m.kind == "conv" and m.context == "head")
    counts = {
        arch: (sum(isinstance(layer, Conv) for layer in trunk(arch)), len(heads(arch))) for arch in architectures()
    }
    matches = [arch for arch, (n_trunk, _) in counts.items() if n_trunk == trunk_convs]
    if len(matches) != 1:
        known = ", ".join(f"{arch} has {t} and {h}" for arch, (t, h) in counts.items())
        raise ConversionError(
            f"cannot tell the architecture of {str(path)!r}: it has {trunk_convs} trunk convolutions and "
            f"{head_convs} head convolutions, but {known}; pass arch= to check it against one table"
        )
    return matches[0]


class _Matcher:
    """State of :func:`_match` while it walks the modules in order and fills the layer table of ``arch``."""

    def __init__(self, arch: str, info: dict[str, Any]) -> None:
        self.arch = arch
        self.info = info
        self.table_trunk = list(trunk(arch))
        self.table_heads = list(heads(arch))
        self.params: TorchParams = {}
        self.position = 0  # next trunk table row
        self.channels = 1  # output channels of the trunk so far
        self.pending: Conv | None = None  # a trunk conv still waiting for its BatchNorm and/or ReLU
        self.need_bn = self.need_relu = False
        self.heads_done = 0
        self.branches: dict[int, str] = {}

    def close(self, module: _Module) -> None:
        """Raise when the pending trunk convolution still lacks its BatchNorm or ReLU at ``module``."""
        if self.pending is not None and (self.need_bn or self.need_relu):
            missing = "SpatialBatchNormalization" if self.need_bn else "ReLU"
            raise ConversionError(
                f"{module.where}: expected a {missing} after {self.pending.name} (the {self.arch} table has "
                f"{'batch normalisation' if self.need_bn else 'a ReLU'} there)"
            )

    def feed(self, module: _Module) -> None:
        """Match one module (containers, ignored modules, convolutions, BatchNorms and poolings)."""
        kind = module.kind
        if kind in ("Sequential", "ConcatTable"):
            if kind == "ConcatTable" and module.context == "trunk":
                self.heads_start(module)
            return
        if kind == "ignored":
            self.ignored(module)
            return
        if module.context == "tail":
            raise _unused(module, f"a {module.class_name} after the heads, where the {self.arch} table has no layer")
        if kind == "conv" and module.context == "trunk":
            self.trunk_conv(module)
        elif kind == "bn":
            self.batchnorm(module)
        elif kind == "pool":
            self.pool(module)
        elif kind == "conv":  # a head, inside the ConcatTable
            self.head_conv(module)

    def heads_start(self, module: _Module) -> None:
        """The ConcatTable of the heads: the trunk must be complete."""
        self.close(module)
        self.pending = None
        if self.position < len(self.table_trunk):
            left = ", ".join(_describe(layer) for layer in self.table_trunk[self.position :])
            raise ConversionError(
                f"{module.where}: the heads start here, but the {self.arch} table's layers {left} have no "
                f"module in the file"
            )

    def ignored(self, module: _Module) -> None:
        """A module without parameters: a ReLU is checked against the table, the others are listed."""
        if module.class_name.endswith(".ReLU") and module.context == "trunk":
            if self.pending is not None and self.need_bn:
                self.close(module)
            if self.pending is None or not self.need_relu:
                raise ConversionError(f"{module.where}: a ReLU where the {self.arch} table has no activation")
            self.need_relu = False
            self.info["layers"][f"{self.pending.name}_relu"] = module.path
        elif module.class_name.endswith(".ReLU") and module.context == "head":
            raise ConversionError(f"{module.where}: a ReLU on a head; the {self.arch} table's heads give logits")
        else:
            self.info["ignored"].append(f"{module.path} ({module.class_name})")

    def trunk_conv(self, module: _Module) -> None:
        """A trunk convolution: the next table row, which must be a convolution."""
        self.close(module)
        if self.position >= len(self.table_trunk):
            raise _unused(
                module, f"an extra convolution: the {self.arch} table's trunk ends at {self.table_trunk[-1].name}"
            )
        layer = self.table_trunk[self.position]
        if not isinstance(layer, Conv):
            raise ConversionError(f"{module.where}: a convolution where the {self.arch} table has {_describe(layer)}")
        self.params[layer.name] = _read_conv(module, layer, self.channels, self.arch)
        self.info["layers"][layer.name] = module.path
        self.position += 1
        self.channels = layer.filters
        self.pending, self.need_bn, self.need_relu = layer, layer.batchnorm, layer.relu

    def batchnorm(self, module: _Module) -> None:
        """A BatchNorm: only right after a trunk convolution whose table row has one."""
        if module.context != "trunk" or self.pending is None or not self.need_bn:
            raise _unused(module, f"a batch normalisation where the {self.arch} table has none")
        self.params[self.pending.name].update(_read_bn(module, self.pending, self.info))
        self.info["layers"][f"{self.pending.name}_bn"] = module.path
        self.need_bn = False

    def pool(self, module: _Module) -> None:
        """A max pooling: the next trunk table row, which must be a pooling."""
        if module.context != "trunk":
            raise ConversionError(f"{module.where}: a max pooling on a head; the {self.arch} table has none there")
        self.close(module)
        self.pending = None
        table = self.table_trunk
        if self.position >= len(table) or not isinstance(table[self.position], Pool):
            expected = _describe(table[self.position]) if self.position < len(table) else "no layer"
            raise ConversionError(f"{module.where}: a max pooling where the {self.arch} table has {expected}")
        layer = table[self.position]
        _read_pool(module, layer, self.arch)
        self.info["layers"][layer.name] = module.path
        self.position += 1

    def head_conv(self, module: _Module) -> None:
        """A head convolution: one per ConcatTable branch, in the table's head order."""
        if module.branch in self.branches:
            raise _unused(module, f"a second convolution in the branch of head {self.branches[module.branch]}")
        if self.heads_done >= len(self.table_heads):
            names = ", ".join(head.name for head in self.table_heads)
            raise _unused(module, f"an extra head: the {self.arch} table has {len(self.table_heads)} heads ({names})")
        layer = self.table_heads[self.heads_done]
        self.params[layer.name] = _read_conv(module, layer, self.channels, self.arch)
        self.info["layers"][layer.name] = module.path
        self.branches[module.branch] = layer.name
        self.heads_done += 1

    def finish(self) -> TorchParams:
        """Check that nothing is missing at the end of the file and return the parameters."""
        if self.pending is not None and (self.need_bn or self.need_relu):
            missing = "SpatialBatchNormalization" if self.need_bn else "ReLU"
            raise ConversionError(
                f"the file ends without the {missing} that the {self.arch} table has after {self.pending.name}"
            )
        unfilled = [layer.name for layer in layer_table(self.arch) if layer.name not in self.info["layers"]]
        if unfilled:
            raise ConversionError(
                f"the {self.arch} table's layers {', '.join(unfilled)} have no module in the file "
                f"(found {self.heads_done} of {len(self.table_heads)} head convolutions in the ConcatTable)"
            )
        return self.params


def _match(modules: list[_Module], arch: str, info: dict[str, Any]) -> TorchParams:
    """Match the walked modules to the layer table of ``arch``; see the module docstring."""
    matcher = _Matcher(arch, info)
    for module in modules:
        matcher.feed(module)
    return matcher.finish()


def read_t7(path: str | os.PathLike, arch: str | None = None) -> tuple[str, TorchParams, dict[str, Any]]:
    """Read an original SoundNet Torch7 model and return ``(arch, torch_params, info)``.

    ``arch`` (``"soundnet8"`` or ``"soundnet5"``) is detected from the number of convolutions when ``None``.
    ``torch_params`` maps table layer names to float64 arrays in Torch layout (``weight`` (out, in, kernel),
    ``bias``, and for BatchNorm layers ``gamma``, ``beta``, ``running_mean``, ``running_var``; a ``running_std``
    of older nn versions is converted to ``running_var = 1 / running_std**2 - eps``).

    ``info`` describes the file: ``path``, ``architecture``, ``module_count`` (containers included),
    ``top_level_modules``, ``classes`` (class name -> count), ``tensor_types`` and ``storage_types`` (name ->
    count), ``bn_eps`` (layer -> eps), ``running_std_converted`` (bool) with ``running_std_layers``, ``layers``
    (table layer -> module path), ``ignored`` (modules skipped knowingly) and ``trailing_bytes`` (bytes after the
    serialised model; 0 for a file written by ``torch.save``).

    Raises :class:`~soundnet_keras.errors.ConversionError` on an unreadable, truncated or corrupt file (naming the
    byte offset), any size beyond the decoder's bounds, or any disagreement with the table (naming the module), and
    :class:`~soundnet_keras.errors.ConfigError` for an unknown ``arch``. Weight values altered by corruption are
    not detected (the format has no checksum), except NaN and Inf.
    """
    path = Path(path)
    if arch is not None:
        layer_table(arch)  # ConfigError for an unknown name
    model, reader = load_with_reader(path)
    try:
        modules = _walk(model)
    except ConversionError as exc:
        raise ConversionError(f"{path.name}: {exc}") from None
    chosen = arch if arch is not None else _detect(modules, path)
    info: dict[str, Any] = {
        "path": str(path),
        "architecture": chosen,
        "module_count": len(modules) + 1,
        "top_level_modules": sum(1 for m in modules if "." not in m.path),
        "classes": dict(sorted(Counter([_class_name(model)] + [m.class_name for m in modules]).items())),
        "tensor_types": dict(sorted(reader.tensor_types.items())),
        "storage_types": dict(sorted(reader.storage_types.items())),
        "trailing_bytes": reader.trailing_bytes,
        "bn_eps": {},
        "running_std_layers": [],
        "layers": {},
        "ignored": [],
    }
    try:
        params = _match(modules, chosen, info)
    except ConversionError as exc:
        raise ConversionError(f"{path.name}: {exc}") from None
    info["running_std_converted"] = bool(info["running_std_layers"])
    return chosen, params, info
