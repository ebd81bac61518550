"""``MultiWorkerMirroredStrategy`` as Keras 3's ``fit`` needs it (TensorFlow backend only; imports TensorFlow).

Keras 3's TensorFlow trainer (checked with Keras 3.15 and TensorFlow 2.21) calls ``strategy.reduce`` in two ways
that ``tf.distribute.MultiWorkerMirroredStrategy`` rejects once there are several workers, so ``fit`` fails before
its first step:

* to build the model, it reduces a whole data batch, a nest ``(audio, {head: teacher})``, in one call;
  ``MirroredStrategy.reduce`` maps over a nest, ``MultiWorkerMirroredStrategy.reduce`` tries to make one tensor of
  it (``ValueError: Attempt to convert a value (PerReplica...) with an unsupported type``);
* it averages each step's logs (scalars: the loss) with ``reduce("MEAN", value, axis=0)``, which fails on a
  scalar (``Invalid reduction dimension 0 for input with 0 dimensions``).

:class:`MultiWorkerMirrored` reduces each leaf of a nest by itself, and a scalar across the replicas (``axis``
None: one value per replica, which is what ``axis=0`` over the replicas' scalars means). Everything else is
``MultiWorkerMirroredStrategy``'s own.
"""

from __future__ import annotations

import tensorflow as tf


class MultiWorkerMirrored(tf.distribute.MultiWorkerMirroredStrategy):
    """``tf.distribute.MultiWorkerMirroredStrategy`` (configured by ``TF_CONFIG``) whose :meth:`reduce` takes the
    nests and scalars Keras' ``fit`` gives it (see the module docstring)."""

    def reduce(self, reduce_op, value, axis=None):
        """Each leaf of ``value`` reduced across the replicas of every worker (and along ``axis`` of its per-replica
        tensors, except for scalars, which have no axis to reduce)."""
        reduce_one = super().reduce

        def leaf(part):
            rank = self.experimental_local_results(part)[0].shape.rank
            return reduce_one(reduce_op, part, None if rank == 0 else axis)

        return tf.nest.map_structure(leaf, value)
