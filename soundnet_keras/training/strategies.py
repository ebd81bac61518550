"""Where training runs: one device, all devices of a machine, or many machines, on each Keras backend.

=================  ==========================================  ==================================  ===============
strategy           TensorFlow                                  JAX                                 PyTorch
=================  ==========================================  ==================================  ===============
``default``        one device                                  one device                          one device
``data_parallel``  ``tf.distribute.MirroredStrategy``          ``keras.distribution.DataParallel``  refused
``mirrored``       ``tf.distribute.MirroredStrategy``          refused (use ``data_parallel``)     refused
``multiworker``    ``MultiWorkerMirroredStrategy``, TF_CONFIG  refused                             refused
=================  ==========================================  ==================================  ===============

``data_parallel`` is the backend-neutral name: the variables are replicated on every device, each global batch is
split along its first axis, and gradients are combined, so one step on N devices equals one step on one device with
the same global batch. Under JAX the devices share one jitted program (GSPMD): BatchNorm's batch statistics are those
of the global batch, as TensorFlow's synchronized BatchNorm gives under ``MirroredStrategy``. Keras has no
distribution API for the PyTorch backend, so PyTorch trains on one device.

``multiworker`` is :class:`~soundnet_keras.training.multiworker.MultiWorkerMirrored`, TensorFlow's
``MultiWorkerMirroredStrategy`` with a ``reduce`` that Keras 3's ``fit`` can use: one process per machine, each
with its ``TF_CONFIG`` (without one, a single worker). Tested with two workers on one machine (CPU): they end with
identical weights, those of one process on 2 mirrored devices with the same global batch.

:func:`make_strategy` returns an object with what :func:`~soundnet_keras.training.train.train` asks of a strategy:
``scope()`` (models and optimizers are created in it) and ``num_replicas_in_sync``. For Keras distributions the
training loop itself must also run in the scope: see :func:`fit_scope`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence

import keras

from ..errors import ConfigError

STRATEGIES = ("default", "data_parallel", "mirrored", "multiworker")
TF_STRATEGIES = ("mirrored", "multiworker")
"""Strategies that are ``tf.distribute`` and so need ``KERAS_BACKEND=tensorflow``."""


def _cluster_and_task(strategy=None) -> tuple[dict, str, int]:
    """(cluster: task type -> addresses, this task's type, its index): from the cluster resolver of ``strategy``
    when it has one that knows this task (``SlurmClusterResolver``, or ``TFConfigClusterResolver`` with
    ``TF_CONFIG``), else from ``TF_CONFIG`` (``({}, "worker", 0)`` without it)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type is not None:
        return dict(resolver.cluster_spec().as_dict()), str(resolver.task_type), int(resolver.task_id or 0)
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}, "worker", 0
    try:
        config = json.loads(raw)
        task = config.get("task", {})
        return dict(config.get("cluster", {})), str(task.get("type", "worker")), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON with a 'task' entry: {exc}") from None


def worker_info(strategy=None) -> tuple[str, int, bool]:
    """(task type, task index, is chief) of this process in the cluster of ``strategy`` (see
    :func:`_cluster_and_task`; ``("worker", 0, True)`` outside a cluster). The chief is task ``chief``, or worker 0
    of a cluster without one."""
    cluster, kind, index = _cluster_and_task(strategy)
    return kind, index, kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)


def cluster_size(strategy=None) -> int:
    """Number of worker processes (chief included) in the cluster of ``strategy`` (1 outside a cluster)."""
    cluster, _, _ = _cluster_and_task(strategy)
    return max(1, sum(len(cluster.get(kind, ())) for kind in ("chief", "worker")))


def _device_key(name: str) -> tuple[str, int] | None:
    """``(TYPE, index)`` of a device name (``/cpu:0``, ``GPU:1``, ``/job:localhost/device:GPU:0``, ``cuda:0``);
    None when it cannot be parsed."""
    text = str(name).strip().lower().rsplit("device:", 1)[-1].lstrip("/")
    kind, sep, index = text.rpartition(":")
    if not sep or not kind or not index.isdigit() or "/" in kind:
        return None
    return {"cuda": "GPU"}.get(kind, kind.upper()), int(index)


def _available_devices() -> list[str]:
    """The devices of this machine as the active backend names them (TensorFlow's logical devices, JAX's devices)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # the active backend: already imported by Keras

        return [d.name for d in tf.config.list_logical_devices()]
    return list(keras.distribution.list_devices())


def check_devices(devices: Sequence[str]) -> list[str]:
    """``devices`` if each one exists on this machine (the active backend's devices) and none is named twice; else
    a one-line :class:`ConfigError` naming the missing devices and listing the available ones.

    Called before a strategy is built: given a device that does not exist, ``MirroredStrategy`` waits forever.
    """
    available = _available_devices()
    known = {_device_key(name): name for name in available}
    keys = [_device_key(str(d)) for d in devices]
    missing = [str(d) for d, key in zip(devices, keys, strict=True) if key is None or key not in known]
    if missing:
        listed = ", ".join(f"/{t.lower()}:{i}" for t, i in sorted(k for k in known if k is not None))
        raise ConfigError(f"device(s) {', '.join(missing)} not found on this machine; available: {listed or 'none'}")
    repeated = sorted({str(d) for d, key in zip(devices, keys, strict=True) if keys.count(key) > 1})
    if repeated:
        raise ConfigError(f"devices must be distinct, but {', '.join(repeated)} name(s) the same device twice")
    if keras.backend.backend() == "tensorflow":
        return [str(d) for d in devices]
    return [known[key] for key in keys]  # JAX's own names ("cpu:0", "gpu:1")


class DataParallel:
    """``keras.distribution.DataParallel`` over ``devices`` (JAX), seen as a strategy by the training loop."""

    def __init__(self, devices: Sequence[str]) -> None:
        self.devices = list(devices)
        self.distribution = keras.distribution.DataParallel(devices=self.devices)

    @property
    def num_replicas_in_sync(self) -> int:
        """Devices the global batch is split over."""
        return len(self.devices)

    def scope(self) -> contextlib.AbstractContextManager:
        """Variables created in it are replicated on every device; ``fit`` run in it splits each batch."""
        return self.distribution.scope()

    def __repr__(self) -> str:
        return f"DataParallel(devices={self.devices})"


def _refuse_tf_strategy(kind: str, backend: str) -> ConfigError:
    hint = (
        "--strategy data_parallel (keras.distribution.DataParallel) splits batches over this machine's devices"
        if backend == "jax"
        else "Keras has no distribution API for the torch backend: train on one device (--strategy default), or "
        "under KERAS_BACKEND=tensorflow or jax"
    )
    return ConfigError(
        f"the {kind} strategy is tf.distribute and needs KERAS_BACKEND=tensorflow (now {backend}); {hint}"
    )


def make_strategy(kind: str = "default", devices: Sequence[str] | None = None):
    """The strategy ``kind`` (see the module's table) on the active backend.

    ``devices`` (for ``data_parallel`` and ``mirrored``; default: every GPU, else every device of JAX, else the
    CPU) are checked first (:func:`check_devices`): a missing one is a :class:`ConfigError`, not a hang.
    """
    if kind not in STRATEGIES:
        raise ConfigError(f"unknown strategy {kind!r}: expected one of {', '.join(STRATEGIES)}")
    backend = keras.backend.backend()
    if kind == "default":
        if devices:
            raise ConfigError(
                f"devices {list(devices)} need the data_parallel (or mirrored) strategy; the default strategy uses one"
            )
        if backend == "tensorflow":
            import tensorflow as tf  # the active backend: already imported by Keras

            return tf.distribute.get_strategy()
        return OneDevice()
    if kind == "multiworker" and devices:
        raise ConfigError("devices cannot be chosen for the multiworker strategy; TF_CONFIG describes the cluster")
    if backend == "tensorflow":
        import tensorflow as tf  # the active backend: already imported by Keras

        if kind == "multiworker":
            from .multiworker import MultiWorkerMirrored  # MultiWorkerMirroredStrategy, with a reduce fit can use

            return MultiWorkerMirrored()
        return tf.distribute.MirroredStrategy(devices=check_devices(devices) if devices else None)
    if kind in TF_STRATEGIES:
        raise _refuse_tf_strategy(kind, backend)
    if backend != "jax":
        raise ConfigError(
            f"the data_parallel strategy needs KERAS_BACKEND=tensorflow or jax (now {backend}): Keras has no "
            f"distribution API for the {backend} backend; train on one device (--strategy default)"
        )
    return DataParallel(check_devices(devices) if devices else _default_jax_devices())


def _default_jax_devices() -> list[str]:
    """Every GPU JAX sees, else all its devices (the CPU, or the host devices ``XLA_FLAGS`` asks for)."""
    found = list(keras.distribution.list_devices())
    gpus = [d for d in found if d.lower().startswith(("gpu", "cuda"))]
    return gpus or found


class OneDevice:
    """The one-device strategy of JAX and PyTorch: nothing to distribute."""

    num_replicas_in_sync = 1

    def scope(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        return "OneDevice()"


@contextlib.contextmanager
def fit_scope(strategy) -> Iterator[None]:
    """The scope the training loop (``fit``, evaluation) runs in: a Keras distribution's own, since its trainer
    splits each batch only while the distribution is active; nothing for ``tf.distribute`` strategies, which the
    compiled model remembers."""
    with strategy.scope() if isinstance(strategy, DataParallel) else contextlib.nullcontext():
        yield
