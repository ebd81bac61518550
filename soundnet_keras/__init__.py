"""soundnet_keras: SoundNet (Aytar, Vondrick & Torralba, NIPS 2016) in Keras 3, faithful to the Torch7 original.

>>> from soundnet_keras import SoundNet
>>> net = SoundNet.from_pretrained()          # doctest: +SKIP
"""

from .architecture import SAMPLE_RATE, WAVEFORM_SCALE, FrameTimes, Geometry, architectures, geometry
from .errors import (
    AudioError,
    ConfigError,
    ConversionError,
    InputTooShortError,
    IntegrityError,
    PretrainedUnavailableError,
    SoundNetError,
    WeightsError,
)
from .model import Features, Prediction, SoundNet

__version__ = "0.1.0"

__all__ = [
    "SAMPLE_RATE",
    "WAVEFORM_SCALE",
    "AudioError",
    "ConfigError",
    "ConversionError",
    "Features",
    "FrameTimes",
    "Geometry",
    "InputTooShortError",
    "IntegrityError",
    "Prediction",
    "PretrainedUnavailableError",
    "SoundNet",
    "SoundNetError",
    "WeightsError",
    "__version__",
    "architectures",
    "geometry",
]
