"""Numerical precision as an explicit choice, the same three names on every Keras backend.

- ``"highest"``: float32 everywhere, TensorFloat-32 off for the duration of the work (TensorFlow, JAX and PyTorch
  all run float32 convolutions, and TensorFlow and JAX float32 matrix products, in TF32 on Ampere and later GPUs by
  default). Meets the 1e-5 fidelity bar of the Torch7 original on any device.
- ``"default"``: float32 with the backend's own settings: on such GPUs the heads then differ from the float64
  reference by about 4e-4 relative (see README, "Precision"); on CPUs it is the same as ``"highest"``.
- ``"mixed_bfloat16"``: inputs and (BatchNorm-folded) weights cast to bfloat16 for the convolutions, outputs returned
  as float32; about twice the throughput on GPUs with bfloat16 units, errors of about 1e-2 relative.

:func:`precision_scope` applies a choice around a block of work and restores the backend's previous settings after
it; it touches only the active backend (it never imports TensorFlow under JAX or PyTorch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .errors import ConfigError

PRECISIONS = ("highest", "default", "mixed_bfloat16")
"""The precision choices of inference (:class:`~soundnet_keras.SoundNet`, the CLIs) and training."""

DEFAULT_PRECISION = "highest"
"""What the library runs unless told otherwise: the Torch7-exact results it promises, on CPUs and GPUs alike."""


TRAINING_PRECISIONS = ("highest", "default", "mixed_bfloat16", "mixed_float16")
"""The precision choices of training (``soundnet-train``, :func:`~soundnet_keras.training.train.train`): the three of
inference, as Keras dtype policies (float32 for ``highest`` and ``default``, whose difference is TF32), plus
``mixed_float16`` (float16 compute with dynamic loss scaling, for GPUs without bfloat16 units)."""

DEFAULT_TRAINING_PRECISION = "default"
"""Training runs with the backend's own float32 settings (TF32 on recent GPUs, as a plain PyTorch training loop gets
for its convolutions): the student–teacher KL needs no Torch7-exact arithmetic, and TF32 is faster."""

_TRAINING_ALIASES = {"float32": "default"}
"""Earlier names still accepted: ``float32`` was the training precision before the names were unified."""


def check_training_precision(precision: str) -> str:
    """The :data:`TRAINING_PRECISIONS` name ``precision`` means (``float32`` is read as ``default``), else a
    :class:`ConfigError` listing them."""
    name = _TRAINING_ALIASES.get(precision, precision)
    if name not in TRAINING_PRECISIONS:
        raise ConfigError(f"unknown training precision {precision!r}: expected one of {', '.join(TRAINING_PRECISIONS)}")
    return name


def training_policy(precision: str) -> str:
    """The Keras dtype policy training runs under ``precision``: ``float32``, ``mixed_bfloat16`` or
    ``mixed_float16``."""
    name = check_training_precision(precision)
    return "float32" if name in ("highest", "default") else name


def check_precision(precision: str) -> str:
    """``precision`` if it names one of :data:`PRECISIONS`, else a :class:`ConfigError` listing them."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


def compute_dtype(precision: str) -> str:
    """The dtype the convolutions run in under ``precision``: ``"bfloat16"`` or ``"float32"``."""
    return "bfloat16" if check_precision(precision) == "mixed_bfloat16" else "float32"


@contextlib.contextmanager
def _tensorflow_tf32(enabled: bool) -> Iterator[None]:
    import tensorflow as tf  # the active backend: already imported by Keras

    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(enabled)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)


@contextlib.contextmanager
def _jax_tf32(enabled: bool) -> Iterator[None]:
    import jax  # the active backend: already imported by Keras

    # Part of JAX's tracing context: a jitted function traced under "highest" is cached apart from one traced without.
    with jax.default_matmul_precision("default" if enabled else "highest"):
        yield


@contextlib.contextmanager
def _torch_tf32(enabled: bool) -> Iterator[None]:
    import torch  # the active backend: already imported by Keras

    settings = [torch.backends.cuda.matmul, torch.backends.cudnn.conv]
    if all(hasattr(s, "fp32_precision") for s in settings):  # PyTorch >= 2.9
        before = [s.fp32_precision for s in settings]
        wanted = "tf32" if enabled else "ieee"
        try:
            for setting in settings:
                setting.fp32_precision = wanted
            yield
        finally:
            for setting, value in zip(settings, before, strict=True):
                setting.fp32_precision = value
        return
    flags = [torch.backends.cuda.matmul, torch.backends.cudnn]
    before = [f.allow_tf32 for f in flags]
    try:
        for flag in flags:
            flag.allow_tf32 = enabled
        yield
    finally:
        for flag, value in zip(flags, before, strict=True):
            flag.allow_tf32 = value


_TF32_SWITCHES = {"tensorflow": _tensorflow_tf32, "jax": _jax_tf32, "torch": _torch_tf32}


@contextlib.contextmanager
def precision_scope(precision: str) -> Iterator[None]:
    """Run the block under ``precision``: TF32 off for ``"highest"``, the backend's settings untouched otherwise.

    (The bfloat16 casts of ``"mixed_bfloat16"`` are the caller's: see :func:`compute_dtype`.)
    """
    if check_precision(precision) != "highest":
        yield
        return
    import keras  # the CLIs import this module for its names before any Keras is needed

    switch = _TF32_SWITCHES.get(keras.backend.backend())
    if switch is None:  # numpy/openvino backends: no TF32 to turn off
        yield
        return
    with switch(False):
        yield
