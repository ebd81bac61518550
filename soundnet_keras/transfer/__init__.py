"""Transfer learning on SoundNet features: the paper's protocol, and classifiers for your own sound classes.

SoundNet's hidden layers with a linear classifier trained on a little labelled data recognise natural sounds (ESC-50
74.2 %, ESC-10 92.2 % with SoundNet-8 pool5 features and a linear SVM in the paper). One module per job:

* :mod:`~soundnet_keras.transfer.inputs` -- what the estimators accept (clips ``X``, labels ``y``), checked as
  scikit-learn users expect;
* :mod:`~soundnet_keras.transfer.features` -- per-clip activations (:class:`FeatureExtractor`, :class:`ClipFeatures`)
  with a cache that follows the weights (:class:`FeatureCache`);
* :mod:`~soundnet_keras.transfer.transformer` -- the scikit-learn transformer :class:`SoundNetFeatures`;
* :mod:`~soundnet_keras.transfer.windows` -- pooling, sliding windows and their aggregation into clip scores;
* :mod:`~soundnet_keras.transfer.heads` -- linear heads (SVM, logistic regression, Keras perceptron) as one
  :class:`LinearHead` type;
* :mod:`~soundnet_keras.transfer.clip_classifier` -- :class:`ClipClassifier`: a head on sliding windows of feature
  frames; :mod:`~soundnet_keras.transfer.head_files` saves it as a ``.keras`` file;
* :mod:`~soundnet_keras.transfer.evaluate` -- :func:`cross_val_accuracy`;
* :mod:`~soundnet_keras.transfer.loading` -- :func:`load_classifier` and :func:`classify_files` for any trained
  classifier file (a head or a fine-tuned network);
* :mod:`~soundnet_keras.transfer.esc` -- ESC-50/ESC-10 reading and the benchmark protocols.
"""

from .clip_classifier import ClipClassifier
from .evaluate import cross_val_accuracy
from .features import (
    EXACT_GAIN,
    VARIANTS,
    ClipFeatures,
    FeatureCache,
    FeatureExtractor,
    check_layers,
    model_identity,
    resolve_net,
)
from .head_files import FINETUNED_FORMAT, FORMAT
from .heads import DEFAULT_C, DEFAULT_TOL, HEADS, FitInfo, LinearHead, fit_head
from .inputs import NoProbabilitiesError, NotFittedError, as_items
from .loading import classify_files, load_classifier, read_format
from .transformer import SoundNetFeatures
from .windows import AGGREGATES, POOLINGS, WINDOW_FEATURES, pool_frames, sliding_windows, window_frames

__all__ = [
    "AGGREGATES",
    "DEFAULT_C",
    "DEFAULT_TOL",
    "EXACT_GAIN",
    "FINETUNED_FORMAT",
    "FORMAT",
    "HEADS",
    "POOLINGS",
    "VARIANTS",
    "WINDOW_FEATURES",
    "ClipClassifier",
    "ClipFeatures",
    "FeatureCache",
    "FeatureExtractor",
    "FitInfo",
    "LinearHead",
    "NoProbabilitiesError",
    "NotFittedError",
    "SoundNetFeatures",
    "as_items",
    "check_layers",
    "classify_files",
    "cross_val_accuracy",
    "fit_head",
    "load_classifier",
    "model_identity",
    "pool_frames",
    "read_format",
    "resolve_net",
    "sliding_windows",
    "window_frames",
]
