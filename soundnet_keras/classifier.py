"""The classifier API under its first name: everything here lives in :mod:`soundnet_keras.transfer` (one module per
job: features, heads, clip classifier, evaluation, loading). Kept so that ``from soundnet_keras.classifier import
ClipClassifier, SoundNetFeatures, load_classifier`` keeps working."""

from .transfer import *  # noqa: F403
from .transfer import __all__  # noqa: F401
