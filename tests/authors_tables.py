"""The authors' architectures typed in again from ``main_train.lua`` / ``main_train_small.lua``, for the tests.

Deliberately shares nothing with the package, so that ``test_tables_match_the_authors_scripts`` checks the package's
layer tables against an independent copy. Also random Torch-layout parameters (weight (out, in, kernel), bias, and
for BatchNorm gamma, beta, running_mean, running_var) and the Keras-to-Torch mapping the golden test needs. The
package's float64 reference (:mod:`soundnet_keras.reference`) is the one NumPy forward pass; it is checked against
the stored golden outputs of ``../shared/golden``.
"""

from __future__ import annotations

import numpy as np

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


def keras_to_torch(arch: str, keras_params: dict) -> dict[str, dict[str, np.ndarray]]:
    """Keras-layout parameters (a weights file's) back in Torch layout, float64: the inverse of torch_to_keras."""
    torch: dict[str, dict[str, np.ndarray]] = {}
    for kind, name, _ in TORCH_MODELS[arch]:
        if kind == "pool":
            continue
        conv = keras_params[name]
        layer = {
            "weight": np.asarray(conv["kernel"], np.float64).transpose(2, 1, 0),
            "bias": np.asarray(conv["bias"], np.float64),
        }
        if kind == "conv":
            bn = keras_params[f"{name}_bn"]
            layer |= {
                "gamma": bn["gamma"],
                "beta": bn["beta"],
                "running_mean": bn["moving_mean"],
                "running_var": bn["moving_variance"],
            }
            layer = {key: np.asarray(value, np.float64) for key, value in layer.items()}
        torch[name] = layer
    return torch
