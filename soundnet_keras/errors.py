"""The package's exception hierarchy.

Every error a user can cause derives from :class:`SoundNetError`, so callers (and the CLIs) can catch one type and
print a one-line message instead of a traceback.
"""

from __future__ import annotations


class SoundNetError(Exception):
    """Base class of every error raised by soundnet_keras for a user-facing problem."""


class ConfigError(SoundNetError, ValueError):
    """An argument or configuration value is invalid (unknown architecture, layer, option...)."""


class InputTooShortError(SoundNetError, ValueError):
    """A waveform is shorter than the minimum the requested layer needs for one output frame."""

    def __init__(self, message: str, *, layer: str, min_samples: int, received_samples: int) -> None:
        super().__init__(message)
        self.layer = layer
        self.min_samples = min_samples
        self.received_samples = received_samples

    def with_context(self, prefix: str, suffix: str = "") -> InputTooShortError:
        """The same error with ``prefix`` (the file or clip it is about) before its message and ``suffix`` after."""
        return InputTooShortError(
            f"{prefix}: {self}{suffix}",
            layer=self.layer,
            min_samples=self.min_samples,
            received_samples=self.received_samples,
        )


class AudioError(SoundNetError, ValueError):
    """A waveform or an audio file cannot be used (unreadable, empty, NaN/Inf samples, wrong shape...)."""


class AudioTypeError(AudioError, TypeError):
    """A waveform holds things that are not numbers (strings, objects): also a ``TypeError``, as NumPy raises."""


class EventListError(SoundNetError, ValueError):
    """An event list file cannot be read: a line without the four tab-separated fields, a time that is not a
    number, an offset before its onset."""


class WeightsError(SoundNetError):
    """Weights cannot be loaded: missing or unused parameters, wrong shapes, bad or corrupt file."""


class ConversionError(WeightsError):
    """A source weight file (Torch7 ``.t7`` or ``sound8.npy``) does not have the structure we expect."""


class PretrainedUnavailableError(WeightsError):
    """Pretrained weights are neither cached nor obtainable (offline, unknown preset...)."""


class IntegrityError(WeightsError):
    """A downloaded or cached file does not have the expected sha256."""


class FeatureFileError(SoundNetError):
    """A feature file cannot be read: damaged, truncated, or not written by soundnet-keras."""


class PipelineError(SoundNetError):
    """A distributed (Apache Beam) extraction pipeline stopped: its runner's error, in one line."""


class TruncatedAudioWarning(UserWarning):
    """An audio file holds less than its header announces (a write cut off): what is there was decoded."""
