"""The fast inference pass over the layer table, in ``keras.ops``: one implementation for every Keras backend.

:func:`inference_function` computes the same values as the Keras model of :func:`~soundnet_keras.network
.build_network` (to float precision) with each BatchNorm and the input scaling folded into the convolution before it
(:func:`fold_batchnorm`), from the model's *live* variables on every call, so it never goes stale when the weights
change. :func:`compile_inference` wraps it the way each backend runs it best:

- TensorFlow: ``tf.function`` for (batch, samples) of any size (one trace), optional XLA (``jit_compile``);
- JAX: ``jax.jit`` with the variables passed as arguments (traced once per input shape), or op by op;
- PyTorch: op by op under ``torch.no_grad()`` (no autograd graph is kept).

Nothing here imports a backend other than the active one: under JAX or PyTorch, inference never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np

from .architecture import BATCHNORM_EPSILON, WAVEFORM_SCALE, Conv, Pool, heads, layer_table, output_names, trunk
from .precision import compute_dtype, precision_scope

MATMUL_MIN_CHANNELS = 256
"""Convolutions reading at least this many channels run as framed matrix products (see benchmarks/README.md)."""

Weights = dict[str, tuple]
"""Layer name -> (kernel, bias) or (kernel, bias, gamma, beta, moving_mean, moving_variance), backend tensors."""


def fold_batchnorm(kernel, bias, gamma, beta, moving_mean, moving_variance):
    """A convolution followed by eval-mode BatchNorm (Torch7's epsilon) as one convolution: (kernel', bias').

    Exact algebra, computed with ``keras.ops`` on whatever arrays it is given (backend tensors or NumPy arrays).
    """
    scale = gamma * keras.ops.rsqrt(moving_variance + BATCHNORM_EPSILON)
    return kernel * scale, (bias - moving_mean) * scale + beta


def _chain(arch: str, names: Sequence[str]) -> tuple[tuple, list[Conv]]:
    """The trunk layers to run for ``names`` (up to the deepest one asked for) and the heads asked for."""
    chain = trunk(arch)
    wanted_heads = [h for h in heads(arch) if h.name in names]
    if not wanted_heads:
        order = output_names(arch)
        last = max(order.index(n) for n in names)
        chain = tuple(layer for layer in chain if order.index(layer.name) <= last)
    return chain, wanted_heads


def read_weights(model: keras.Model, arch: str) -> Weights:
    """The current values of ``model``'s convolution (and BatchNorm) variables, as backend tensors."""
    layers = {layer.name: layer for layer in model.layers}
    weights = {}
    for spec in layer_table(arch):
        if isinstance(spec, Conv):
            conv = layers[spec.name]
            values = [conv.kernel, conv.bias]
            if spec.batchnorm:
                bn = layers[f"{spec.name}_bn"]
                values += [bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance]
            weights[spec.name] = tuple(keras.ops.convert_to_tensor(v) for v in values)
    return weights


def _framed_matmul(x, kernel, layer: Conv):
    """A strided valid convolution as one matrix product: the k shifted, strided views of ``x`` side by side
    (batch, positions, k·c_in) times the kernel as (k·c_in, c_out). Same sums and layout as the convolution; on CPUs
    several times faster for the deep layers (few positions, many channels) than a convolution kernel."""
    ops = keras.ops
    positions = (ops.shape(x)[1] - layer.kernel) // layer.stride + 1
    span = (positions - 1) * layer.stride + 1
    shifted = [x[:, j : j + span : layer.stride, :] for j in range(layer.kernel)]
    frames = ops.concatenate(shifted, axis=-1)
    return ops.matmul(frames, ops.reshape(kernel, (-1, ops.shape(kernel)[-1])))


def inference_function(arch: str, names: Sequence[str], dtype: str = "float32") -> Callable:
    """``run(weights, batch)``: outputs ``names`` of ``arch`` for ``batch`` (batch, samples) float32, as
    ``{name: (batch, frames, channels)}`` float32, from :func:`read_weights`'s ``weights``, in ``keras.ops``.

    BatchNorm and the input scaling are folded into the convolutions (:func:`fold_batchnorm`); convolutions reading
    at least :data:`MATMUL_MIN_CHANNELS` channels run as framed matrix products; ``dtype="bfloat16"`` runs the
    convolutions in bfloat16 (folding in float32 first).
    """
    names = tuple(names)
    chain, wanted_heads = _chain(arch, names)
    first_conv = next(layer.name for layer in layer_table(arch) if isinstance(layer, Conv))
    ops = keras.ops

    def conv(x, layer: Conv, weights: Weights):
        kernel, bias, *stats = weights[layer.name]
        if stats:
            kernel, bias = fold_batchnorm(kernel, bias, *stats)
        if layer.name == first_conv:
            kernel = kernel * WAVEFORM_SCALE  # the input scaling, exact: zero padding stays zero
        kernel, bias = ops.cast(kernel, dtype), ops.cast(bias, dtype)
        if layer.pad:
            x = ops.pad(x, [[0, 0], [layer.pad, layer.pad], [0, 0]])
        if ops.shape(kernel)[1] >= MATMUL_MIN_CHANNELS:
            x = _framed_matmul(x, kernel, layer)
        else:
            x = ops.conv(x, kernel, strides=layer.stride, padding="valid", data_format="channels_last")
        x = x + bias
        return ops.relu(x) if layer.relu else x

    def run(weights: Weights, batch) -> dict:
        x = ops.cast(ops.expand_dims(batch, -1), dtype)
        out = {}
        for layer in chain:
            if isinstance(layer, Pool):
                x = ops.max_pool(x, layer.size, strides=layer.stride, padding="valid", data_format="channels_last")
            else:
                x = conv(x, layer, weights)
            if layer.name in names:
                out[layer.name] = x
        for head in wanted_heads:
            out[head.name] = conv(x, head, weights)
        return {name: ops.cast(value, "float32") for name, value in out.items()}

    return run


Runner = Callable[[np.ndarray], Mapping[str, np.ndarray]]
"""(batch, samples) float32 NumPy -> {name: (batch, frames, channels) float32 NumPy}."""


def _tensorflow_runner(model, arch, run, jit_compile: bool) -> Runner:
    import tensorflow as tf  # the active backend: Keras has imported it already

    # Variables read inside the traced function: the compiled graph always sees their current values.
    compiled = tf.function(
        lambda batch: run(read_weights(model, arch), batch),
        input_signature=[tf.TensorSpec([None, None], tf.float32)],
        reduce_retracing=True,
        jit_compile=jit_compile,
        autograph=False,  # plain Python loops over the layer table: nothing for AutoGraph to convert
    )
    return lambda batch: {name: value.numpy() for name, value in compiled(batch).items()}


def _jax_runner(model, arch, run, jit_compile: bool) -> Runner:
    import jax  # the active backend: Keras has imported it already

    # The variables are arguments, not constants baked into the compiled code: new weights need no new trace.
    step = jax.jit(run) if jit_compile else run
    return lambda batch: {name: np.asarray(value) for name, value in step(read_weights(model, arch), batch).items()}


def _torch_runner(model, arch, run, jit_compile: bool) -> Runner:
    import torch  # the active backend: Keras has imported it already

    def runner(batch):
        with torch.no_grad():
            out = run(read_weights(model, arch), keras.ops.convert_to_tensor(batch))
            return {name: keras.ops.convert_to_numpy(value) for name, value in out.items()}

    return runner


def _any_runner(model, arch, run, jit_compile: bool) -> Runner:
    return lambda batch: {
        name: keras.ops.convert_to_numpy(value) for name, value in run(read_weights(model, arch), batch).items()
    }


_RUNNERS = {"tensorflow": _tensorflow_runner, "jax": _jax_runner, "torch": _torch_runner}

JIT_BY_DEFAULT = {"tensorflow": False, "jax": True, "torch": False}
"""Whether each backend compiles the whole pass by default (measured on a 2-core CPU; see benchmarks/README.md)."""


def compile_inference(
    model: keras.Model,
    arch: str,
    names: Sequence[str],
    *,
    jit_compile: bool | None = None,
    precision: str = "highest",
) -> Runner:
    """:func:`inference_function` of ``names`` reading ``model``'s live variables, compiled for the active Keras
    backend (see the module docstring), under ``precision`` (:mod:`~soundnet_keras.precision`): NumPy in, NumPy out.

    ``jit_compile``: TensorFlow's XLA, or ``jax.jit`` (None: the backend's default, :data:`JIT_BY_DEFAULT`);
    PyTorch always runs op by op.
    """
    backend = keras.backend.backend()
    if jit_compile is None:
        jit_compile = JIT_BY_DEFAULT.get(backend, False)
    run = inference_function(arch, names, compute_dtype(precision))
    runner = _RUNNERS.get(backend, _any_runner)(model, arch, run, jit_compile)

    def scoped(batch: np.ndarray) -> Mapping[str, np.ndarray]:
        with precision_scope(precision):
            return runner(np.ascontiguousarray(batch, dtype=np.float32))

    return scoped
