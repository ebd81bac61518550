"""A plain NumPy float64 forward pass of SoundNet with Torch7 semantics, straight from Torch-layout parameters.

This is the yardstick the converters validate the Keras model against; it shares nothing with the Keras code but
the layer table. Semantics, per table row (see :mod:`soundnet_keras.architecture`):

* the waveform in [-1, 1] is multiplied by :data:`~soundnet_keras.architecture.WAVEFORM_SCALE`;
* convolution: symmetric zero padding ``p``, cross-correlation with ``weight`` (out, in, kernel), stride ``s``,
  floor mode (``out = floor((n + 2p - k) / s) + 1``), plus ``bias``;
* BatchNorm in evaluation mode with eps :data:`~soundnet_keras.architecture.BATCHNORM_EPSILON`, then ReLU;
* max pooling in floor mode without padding;
* both heads read the trunk's last output and give logits.

Every layer is vectorised over time: a convolution is an im2col matrix product over blocks of frames (at most
16 MiB of windows at a time), a pooling a running maximum over its window taps, so memory stays proportional to the
layer outputs (a 20 s clip adds about 60 MB, and takes under a second).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .architecture import (
    BATCHNORM_EPSILON,
    WAVEFORM_SCALE,
    Conv,
    Pool,
    check_length,
    conv_output_length,
    heads,
    output_names,
    trunk,
)
from .errors import AudioError, ConfigError
from .weights import torch_to_keras

_CHUNK_ELEMENTS = 1 << 21
"""Largest im2col block (elements, 16 MiB in float64) a convolution materialises at once."""


def _taps(x: np.ndarray, start: int, stride: int, count: int) -> np.ndarray:
    """Rows ``start, start + stride, ...`` (``count`` of them) of ``x`` as a view."""
    return x[start : start + stride * (count - 1) + 1 : stride]


def conv1d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Torch7 1-D convolution of ``x`` (time, in) with ``weight`` (out, in, kernel): returns (frames, out).

    Symmetric zero padding, cross-correlation, floor mode. Computed as im2col matrix products over blocks of
    frames, so that at most :data:`_CHUNK_ELEMENTS` window elements exist at a time.
    """
    out_channels, in_channels, kernel = weight.shape
    frames = conv_output_length(x.shape[0], kernel, stride, pad)
    padded = np.pad(x, ((pad, pad), (0, 0))) if pad else x
    out = np.empty((frames, out_channels), dtype=np.float64)
    if frames == 0:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel, axis=0)[::stride][:frames]  # (frames, in, k)
    matrix = weight.reshape(out_channels, in_channels * kernel).T
    block = max(1, _CHUNK_ELEMENTS // (in_channels * kernel))
    for start in range(0, frames, block):
        stop = min(start + block, frames)
        np.matmul(windows[start:stop].reshape(stop - start, in_channels * kernel), matrix, out=out[start:stop])
    out += bias
    return out


def maxpool1d(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Torch7 floor-mode max pooling of ``x`` (time, channels) along time: returns (frames, channels)."""
    frames = conv_output_length(x.shape[0], size, stride, 0)
    out = _taps(x, 0, stride, frames).copy()
    for tap in range(1, size):
        np.maximum(out, _taps(x, tap, stride, frames), out=out)
    return out


def batchnorm(x: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
    """BatchNorm in evaluation mode (Torch7 eps) applied to ``x`` (time, channels)."""
    scale = np.asarray(params["gamma"], np.float64) / np.sqrt(
        np.asarray(params["running_var"], np.float64) + BATCHNORM_EPSILON
    )
    return (x - np.asarray(params["running_mean"], np.float64)) * scale + np.asarray(params["beta"], np.float64)


def _conv_layer(x: np.ndarray, layer: Conv, params: Mapping[str, np.ndarray]) -> np.ndarray:
    weight = np.asarray(params["weight"], np.float64)
    bias = np.asarray(params["bias"], np.float64)
    y = conv1d(x, weight, bias, layer.stride, layer.pad)
    if layer.batchnorm:
        y = batchnorm(y, params)
    if layer.relu:
        np.maximum(y, 0.0, out=y)
    return y


def reference_forward(
    arch: str,
    torch_params: Mapping[str, Mapping[str, np.ndarray]],
    waveform: np.ndarray,
    outputs: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``arch`` in float64 NumPy on one waveform and return the named outputs, each (frames, channels).

    ``waveform``: 1-D array of samples in [-1, 1] at 22,050 Hz (scaled by ``WAVEFORM_SCALE`` here).
    ``torch_params``: Torch layout (see :mod:`soundnet_keras.weights`), checked strictly.
    ``outputs``: names among :func:`~soundnet_keras.architecture.output_names` (``conv1`` ... ``objects``,
    ``scenes``); all of them when ``None``. Only the layers needed for them are computed. The result is ordered
    as the network.

    Raises :class:`~soundnet_keras.errors.AudioError` for a waveform that is not 1-D or not finite,
    :class:`~soundnet_keras.errors.InputTooShortError` when it is too short for a requested output,
    :class:`~soundnet_keras.errors.ConfigError` for an unknown output name and
    :class:`~soundnet_keras.errors.WeightsError` for missing, unused or mis-shaped parameters.
    """
    names = output_names(arch)
    wanted = list(names) if outputs is None else list(dict.fromkeys(outputs))
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise ConfigError(f"unknown outputs {unknown} for architecture {arch!r}: expected some of {', '.join(names)}")
    torch_to_keras(arch, torch_params)  # strict check of names and shapes (result unused)
    samples = np.asarray(waveform)
    if samples.ndim != 1:
        raise AudioError(f"waveform must be 1-D (samples,), got shape {samples.shape}")
    if not np.issubdtype(samples.dtype, np.number) or not np.all(np.isfinite(samples)):
        raise AudioError("waveform must hold finite numbers (found NaN, Inf or a non-numeric type)")
    for name in wanted:
        check_length(arch, name, samples.shape[0])

    head_layers = [head for head in heads(arch) if head.name in wanted]
    trunk_layers = list(trunk(arch))
    if head_layers:
        last = len(trunk_layers)
    else:
        last = max((i + 1 for i, layer in enumerate(trunk_layers) if layer.name in wanted), default=0)

    results: dict[str, np.ndarray] = {}
    x = (samples.astype(np.float64) * WAVEFORM_SCALE)[:, None]
    for layer in trunk_layers[:last]:
        if isinstance(layer, Pool):
            x = maxpool1d(x, layer.size, layer.stride)
        else:
            x = _conv_layer(x, layer, torch_params[layer.name])
        if layer.name in wanted:
            results[layer.name] = x
    for head in head_layers:
        results[head.name] = _conv_layer(x, head, torch_params[head.name])
    return {name: results[name] for name in names if name in results}
