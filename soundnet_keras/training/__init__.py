"""Training SoundNet (teacher shards from videos, the student–teacher KL loss) and L³-Net (AVC), distributed
training, fine-tuning.

Submodules import TensorFlow lazily where they can; import them directly::

    from soundnet_keras.training.losses import TeacherKLDivergence
    from soundnet_keras.training.data import make_dataset, write_synthetic_shards
    from soundnet_keras.training.train import TrainConfig, train
    from soundnet_keras.training.teacher import TeacherSpec, extract_shards
    from soundnet_keras.training.finetune import FinetuneConfig, finetune, load_finetuned
"""

from __future__ import annotations

OBJECTIVES = ("teacher", "avc")
"""Training objectives of ``soundnet-train`` (:mod:`.objectives`): SoundNet student–teacher KL, L³-Net AVC."""
DEFAULT_ARCH = {"teacher": "soundnet8", "avc": "l3"}
"""The architecture each objective trains when none is given."""
