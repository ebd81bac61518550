"""soundnet_keras: SoundNet (Aytar, Vondrick & Torralba, NIPS 2016) in Keras 3, faithful to the Torch7 original.

>>> from soundnet_keras import SoundNet
>>> net = SoundNet.from_pretrained()          # doctest: +SKIP
"""

import importlib

from .architecture import SAMPLE_RATE, WAVEFORM_SCALE, FrameTimes, Geometry, architectures, geometry
from .errors import (
    AudioError,
    ConfigError,
    ConversionError,
    FeatureFileError,
    InputTooShortError,
    IntegrityError,
    PretrainedUnavailableError,
    SoundNetError,
    WeightsError,
)

__version__ = "0.1.0"

_LAZY = {
    "SoundNet": "model",
    "Features": "results",
    "Prediction": "model",
    "load_features": "extraction",
    "L3Net": "l3.model",
    "load_network": "loading",
}


def __getattr__(name: str):
    """Import the Keras/TensorFlow parts on first use, so that CLIs and error paths start fast."""
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SAMPLE_RATE",
    "WAVEFORM_SCALE",
    "AudioError",
    "ConfigError",
    "ConversionError",
    "FeatureFileError",
    "Features",
    "FrameTimes",
    "Geometry",
    "InputTooShortError",
    "IntegrityError",
    "L3Net",
    "Prediction",
    "PretrainedUnavailableError",
    "SoundNet",
    "SoundNetError",
    "WeightsError",
    "__version__",
    "architectures",
    "geometry",
    "load_features",
    "load_network",
]
