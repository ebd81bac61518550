"""An independent float64 NumPy SoundNet, written from the Torch7 module semantics for the tests.

Deliberately shares nothing with the package: the architectures are typed in again here as the Torch7 constructor
calls of the authors' ``main_train.lua`` / ``main_train_small.lua``, and each module is implemented as Torch7's
``updateOutput`` does it (SpatialConvolution with padH zeros on both sides of the time axis, cross-correlation;
SpatialBatchNormalization in evaluation mode, eps 1e-5; ReLU; SpatialMaxPooling in floor mode). Parameters are in
Torch layout: weight (out, in, kernel), bias, and for BatchNorm gamma, beta, running_mean, running_var.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# (kind, name, args): "conv" (out, kernel, stride, pad) incl. BN+ReLU; "pool" (size, stride); "head" (out, k, s, p)
TORCH_MODELS = {
    "soundnet8": [
        ("conv", "conv1", (16, 64, 2, 32)),
        ("pool", "pool1", (8, 8)),
        ("conv", "conv2", (32, 32, 2, 16)),
        ("pool", "pool2", (8, 8)),
        ("conv", "conv3", (64, 16, 2, 8)),
        ("conv", "conv4", (128, 8, 2, 4)),
        ("conv", "conv5", (256, 4, 2, 2)),
        ("pool", "pool5", (4, 4)),
        ("conv", "conv6", (512, 4, 2, 2)),
        ("conv", "conv7", (1024, 4, 2, 2)),
        ("head", "objects", (1000, 8, 2, 0)),
        ("head", "scenes", (401, 8, 2, 0)),
    ],
    "soundnet5": [
        ("conv", "conv1", (32, 64, 2, 32)),
        ("pool", "pool1", (8, 8)),
        ("conv", "conv2", (64, 32, 2, 16)),
        ("pool", "pool2", (8, 8)),
        ("conv", "conv3", (128, 16, 2, 8)),
        ("pool", "pool3", (8, 8)),
        ("conv", "conv4", (256, 8, 2, 4)),
        ("head", "objects", (1000, 16, 12, 4)),
        ("head", "scenes", (401, 16, 12, 4)),
    ],
}


def random_torch_params(arch: str, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """Random Torch-layout parameters with He-like scales, so activations stay O(1) through the depth."""
    params: dict[str, dict[str, np.ndarray]] = {}
    channels = 1
    for kind, name, args in TORCH_MODELS[arch]:
        if kind == "pool":
            continue
        out, kernel = args[0], args[1]
        fan_in = channels * kernel
        layer = {
            "weight": rng.normal(0.0, np.sqrt(2.0 / fan_in), (out, channels, kernel)),
            "bias": rng.normal(0.0, 0.1, out),
        }
        if kind == "conv":
            layer["gamma"] = rng.uniform(0.5, 1.5, out)
            layer["beta"] = rng.normal(0.0, 0.2, out)
            layer["running_mean"] = rng.normal(0.0, 0.5, out)
            layer["running_var"] = rng.uniform(0.5, 2.0, out)
            channels = out
        params[name] = layer
    return params


def _spatial_convolution(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> np.ndarray:
    # x: (channels, time); Torch pads the time (height) axis with `pad` zeros on both sides.
    padded = np.pad(x, ((0, 0), (pad, pad)))
    kernel = weight.shape[2]
    if padded.shape[1] < kernel:
        return np.zeros((weight.shape[0], 0))
    windows = sliding_window_view(padded, kernel, axis=1)[:, ::stride, :]  # (in, frames, kernel)
    return np.einsum("ifk,oik->of", windows, weight, optimize=True) + bias[:, None]


def _batch_norm(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    inv_std = 1.0 / np.sqrt(p["running_var"] + 1e-5)
    return (x - p["running_mean"][:, None]) * (p["gamma"] * inv_std)[:, None] + p["beta"][:, None]


def _max_pool(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    frames = (x.shape[1] - size) // stride + 1
    if frames <= 0:
        return np.zeros((x.shape[0], 0))
    return np.stack([x[:, i * stride : i * stride + size].max(axis=1) for i in range(frames)], axis=1)


def forward(arch: str, params: dict, waveform: np.ndarray) -> dict[str, np.ndarray]:
    """Every named output of the network for one [-1, 1] waveform, as (frames, channels) float64 arrays."""
    x = np.asarray(waveform, np.float64)[None, :] * 256.0  # audio.load int32 range times 2^-23
    outputs = {}
    trunk_out = x
    for kind, name, args in TORCH_MODELS[arch]:
        if kind == "pool":
            x = _max_pool(x, *args)
        elif kind == "conv":
            p = params[name]
            x = np.maximum(_batch_norm(_spatial_convolution(x, p["weight"], p["bias"], args[2], args[3]), p), 0.0)
        else:
            p = params[name]
            outputs[name] = _spatial_convolution(trunk_out, p["weight"], p["bias"], args[2], args[3]).T
            continue
        trunk_out = x
        outputs[name] = x.T
    return outputs
