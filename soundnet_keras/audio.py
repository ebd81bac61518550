"""Waveforms: validation, scaling to [-1, 1] and resampling to 22,050 Hz.

Every entry point of the package (API, CLI, classifier) passes waveforms through :func:`as_waveform` and
:func:`resample`, so the same rules hold everywhere.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np

from .architecture import SAMPLE_RATE
from .errors import AudioError

FLOAT_RANGE_LIMIT = 4.0
"""A float waveform whose peak exceeds this is rejected as not being in [-1, 1] (integer samples passed as float)."""


def check_sample_rate(sample_rate: object, what: str = "sample_rate") -> int:
    """Validate a sample rate: a positive integer number of Hz."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise AudioError(f"{what} must be a positive number of Hz, got {sample_rate!r}")
    if sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise AudioError(f"{what} must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sample_rate)


def as_waveform(waveform: object, *, name: str = "waveform", allow_batch: bool = True) -> np.ndarray:
    """Return ``waveform`` as float32 in [-1, 1], shape (samples,) or (batch, samples).

    Integer arrays are scaled by their type's full range (int16 / 32768, int32 / 2^31, uint8 centred); float arrays
    must already be in [-1, 1] (a peak above :data:`FLOAT_RANGE_LIMIT` is an error, not silently clipped). Empty,
    NaN or Inf input is an error; silence is valid.
    """
    try:
        array = np.asarray(waveform)
    except (TypeError, ValueError) as exc:
        raise AudioError(f"{name} must be an array of samples: {exc}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise AudioError(f"{name} must be a numeric array of samples, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating) or array.dtype == bool:
        raise AudioError(f"{name} must hold real samples, got dtype {array.dtype}")
    max_ndim = 2 if allow_batch else 1
    if array.ndim == 0 or array.ndim > max_ndim:
        shape = "(samples,) or (batch, samples)" if allow_batch else "(samples,)"
        raise AudioError(f"{name} must have shape {shape} (mono; mix channels first), got shape {array.shape}")
    if array.shape[-1] == 0 or array.size == 0:
        raise AudioError(f"{name} is empty: it has shape {array.shape}, at least one sample is needed")
    if np.issubdtype(array.dtype, np.unsignedinteger):
        half = float(np.iinfo(array.dtype).max + 1) / 2
        return ((array.astype(np.float64) - half) / half).astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return (array.astype(np.float64) / -float(np.iinfo(array.dtype).min)).astype(np.float32)
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise AudioError(f"{name} has {bad} NaN or Inf samples")
    peak = float(np.max(np.abs(array)))
    if peak > FLOAT_RANGE_LIMIT:
        raise AudioError(
            f"{name} must be float samples in [-1, 1], but its peak is {peak:.4g}; scale integer samples by their "
            "full range first (e.g. int16 / 32768) or pass the integer array itself"
        )
    return array.astype(np.float32, copy=False)


def resample(waveform: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample (samples,) or (batch, samples) float audio from ``sample_rate`` to ``target_rate`` with soxr (HQ)."""
    sample_rate = check_sample_rate(sample_rate)
    if sample_rate == target_rate:
        return waveform
    import soxr

    if waveform.ndim == 1:
        return soxr.resample(waveform, sample_rate, target_rate, quality="HQ").astype(np.float32, copy=False)
    resampled = soxr.resample(np.ascontiguousarray(waveform.T), sample_rate, target_rate, quality="HQ")
    return np.ascontiguousarray(resampled.T, dtype=np.float32)


def load_audio(
    path: str | os.PathLike, *, target_rate: int | None = SAMPLE_RATE, channels: str = "mix"
) -> tuple[np.ndarray, int]:
    """Decode an audio file to mono float32 in [-1, 1] and resample it to ``target_rate`` (None keeps the file's).

    ``channels="mix"`` averages all channels (default); ``"first"`` takes the first channel, as the original
    scripts did. Returns ``(waveform, sample_rate)``.
    """
    import soundfile

    path = Path(path)
    if channels not in ("mix", "first"):
        raise AudioError(f"channels must be 'mix' or 'first', got {channels!r}")
    if not path.exists():
        raise AudioError(f"{str(path)!r}: no such file")
    if not path.is_file():
        raise AudioError(f"{str(path)!r}: not a file")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{str(path)!r}: cannot decode as audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{str(path)!r}: the file has no samples")
    mono = data.mean(axis=1) if channels == "mix" else data[:, 0]
    waveform = as_waveform(mono, name=repr(str(path)), allow_batch=False)
    if target_rate is not None:
        waveform, rate = resample(waveform, rate, target_rate), target_rate
    return waveform, int(rate)
