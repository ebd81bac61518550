"""The student–teacher loss of SoundNet: KL(teacher ‖ student), as in the authors' ``main_train.lua``.

The original applies ``nn.DistKLDivCriterion`` (which averages over every element of its input) to the log-softmax
of each (head, time step) output against the teacher's probabilities, sums the 2 heads × T steps terms, divides by
their number and multiplies by ``lambda = 250``::

    loss = lambda / (H T) * sum_{h, t} 1 / (B C_h) * sum_{b, c} p log(p / q)

with ``p`` the teacher distribution, ``q`` the student's softmax, and ``0 log 0 = 0`` (Torch skips zero targets).
Per head that is ``lambda / H * mean_{b, t, c}(p log(p / q))``: :class:`TeacherKLDivergence` returns
``weight * mean_{t, c}`` per example and Keras' ``sum_over_batch_size`` reduction averages over the batch, so a
model compiled with one such loss per head, each with ``weight = lambda / H``, optimises exactly the original loss.
Under ``tf.distribute`` Keras divides each replica's loss by the number of replicas, so the gradient is that of the
mean over the global batch.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

LOSS_LAMBDA = 250.0
"""The original's loss multiplier (``opt.lambda`` in main_train.lua)."""


@keras.saving.register_keras_serializable(package="soundnet_keras")
class TeacherKLDivergence(keras.losses.Loss):
    """KL(teacher ‖ student) per example, averaged over time steps and classes, times ``weight``.

    ``y_true``: teacher probabilities (batch, steps, classes), rows summing to 1, zeros allowed (``0 log 0 = 0``).
    ``y_pred``: student logits of the same shape (the log-softmax is taken here, in float32 even under mixed
    precision).
    """

    def __init__(self, weight: float = 1.0, name: str = "teacher_kl", reduction: str = "sum_over_batch_size") -> None:
        super().__init__(name=name, reduction=reduction, dtype="float32")
        self.weight = float(weight)

    def call(self, y_true, y_pred):
        p = ops.cast(y_true, "float32")
        log_q = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        positive = ops.greater(p, 0.0)
        log_p = ops.log(ops.where(positive, p, ops.ones_like(p)))
        elementwise = ops.where(positive, p * (log_p - log_q), ops.zeros_like(p))
        axes = tuple(range(1, len(elementwise.shape)))
        return self.weight * ops.mean(elementwise, axis=axes)

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight}


def head_weight(num_heads: int, loss_lambda: float = LOSS_LAMBDA) -> float:
    """Weight of each head's :class:`TeacherKLDivergence` so that the compiled loss equals the original's."""
    if num_heads < 1:
        raise ValueError(f"num_heads must be at least 1, got {num_heads}")
    return loss_lambda / num_heads


def reference_loss(
    teacher: dict[str, np.ndarray], logits: dict[str, np.ndarray], loss_lambda: float = LOSS_LAMBDA
) -> float:
    """NumPy transcription of the original loss (float64), for tests and checks.

    ``teacher[head]`` is (batch, steps, classes) probabilities, ``logits[head]`` the student logits of the same
    shape. Each (head, step) term is ``DistKLDivCriterion`` (mean over batch × classes, zero targets skipped); the
    terms are summed, divided by their number and multiplied by ``loss_lambda``.
    """
    terms = []
    for head, p in teacher.items():
        p = np.asarray(p, np.float64)
        z = np.asarray(logits[head], np.float64)
        z = z - z.max(axis=-1, keepdims=True)
        log_q = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        for t in range(p.shape[1]):
            pt, lq = p[:, t], log_q[:, t]
            with np.errstate(divide="ignore", invalid="ignore"):
                elem = np.where(pt > 0, pt * (np.log(np.where(pt > 0, pt, 1.0)) - lq), 0.0)
            terms.append(elem.mean())
    return float(loss_lambda * np.sum(terms) / len(terms))
