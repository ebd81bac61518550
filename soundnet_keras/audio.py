"""Waveforms: validation, scaling to [-1, 1] and resampling to 22,050 Hz.

Every entry point of the package (API, CLI, classifier) passes waveforms through :func:`as_waveform` and
:func:`resample`, and files through :func:`load_audio`, so the same rules hold everywhere:

* formats: whatever libsndfile reads (WAV/WAVE_EXTENSIBLE, FLAC, OGG/Vorbis, OGG/Opus, MP3, AIFF, AU, ...), at any
  sample rate and bit depth; integer and float sources are scaled to the same [-1, 1] range;
* channels: mixed down to mono by averaging (``channels="mix"``, the default), or the first channel only
  (``channels="first"``, what the original Torch7 scripts did);
* sample rate: resampled to 22,050 Hz with soxr (high quality), decoding and resampling block by block so a file
  of any length needs memory for its 22,050 Hz mono float32 result only (≈ 318 MB per hour);
* errors: a missing, unreadable, empty or non-audio file, a file with no samples or with NaN/Inf samples raises
  :class:`~soundnet_keras.errors.AudioError` with a one-line message naming the file. Silence is valid.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import soxr

from .architecture import SAMPLE_RATE
from .errors import AudioError, AudioTypeError, ConfigError, SoundNetError, TruncatedAudioWarning

FLOAT_RANGE_LIMIT = 4.0
"""A float waveform whose peak exceeds this is rejected as not being in [-1, 1] (integer samples passed as float)."""


MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
"""Sample rates outside [1 kHz, 768 kHz] are refused, in arguments and in file headers: beyond them a header is
damaged or hostile (a 1-Hz header would make resampling to 22,050 Hz allocate 22,050 samples per stored one)."""

MAX_DURATION_S = 12 * 3600.0
"""Longest file decoded in one piece (12 h: 3.8 GB of float32 at 22,050 Hz); checked from the header, before any
sample is allocated. Split longer recordings."""


def check_sample_rate(sample_rate: object, what: str = "sample_rate") -> int:
    """Validate a sample rate: a whole number of Hz in [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`]."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise AudioError(f"{what} must be a positive number of Hz, got {sample_rate!r}")
    if not math.isfinite(sample_rate) or sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise AudioError(f"{what} must be a positive whole number of Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{what} must lie between {MIN_SAMPLE_RATE:,} and {MAX_SAMPLE_RATE:,} Hz, got {int(sample_rate):,} Hz"
        )
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
    if array.dtype == object:  # e.g. a pandas object column: numbers are fine, anything else is named
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise AudioTypeError(f"{name} must hold numbers (samples), but an element is not one: {exc}") from None
    if np.issubdtype(array.dtype, np.complexfloating):
        raise AudioError(f"{name} has dtype {array.dtype}: Complex data not supported, pass real samples")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise AudioTypeError(f"{name} must be a numeric array of samples, got dtype {array.dtype}")
    max_ndim = 2 if allow_batch else 1
    if array.ndim == 0 or array.ndim > max_ndim:
        shape = "(samples,), (samples, channels) or, with batch=True, (clips, samples)" if allow_batch else "(samples,)"
        raise AudioError(f"{name} must have shape {shape}, got shape {array.shape}")
    if array.shape[-1] == 0 or array.size == 0:
        raise AudioError(f"{name} is empty: it has shape {array.shape}, at least one sample is needed")
    if np.issubdtype(array.dtype, np.unsignedinteger):
        half = float(np.iinfo(array.dtype).max + 1) / 2
        return ((array.astype(np.float64) - half) / half).astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return (array.astype(np.float64) / -float(np.iinfo(array.dtype).min)).astype(np.float32)
    # min/max instead of elementwise temporaries: an hour of audio is checked without extra copies
    low, high = float(np.min(array)), float(np.max(array))
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise AudioError(f"{name} has {bad} NaN or Inf samples")
    peak = max(abs(low), abs(high))
    if peak > FLOAT_RANGE_LIMIT:
        raise AudioError(
            f"{name} must be float samples in [-1, 1], but its peak is {peak:.4g}; scale integer samples by their "
            "full range first (e.g. int16 / 32768) or pass the integer array itself"
        )
    return array.astype(np.float32, copy=False)


MAX_CHANNELS = 8
"""A 2-D array with at most this many columns (and more rows) is one clip in (samples, channels) layout."""

CHANNEL_MODES = ("mix", "first")


def check_channels(channels: object) -> str:
    """Validate a ``channels`` argument: ``"mix"`` (mean of the channels) or ``"first"`` (the first channel)."""
    if channels not in CHANNEL_MODES:
        raise AudioError(f"channels must be 'mix' or 'first', got {channels!r}")
    return channels  # type: ignore[return-value]


def mix_channels(samples: np.ndarray, channels: str = "mix") -> np.ndarray:
    """(samples, channels) float32 -> (samples,): the mean of the channels (``"mix"``) or the first (``"first"``)."""
    if check_channels(channels) == "first" or samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0])
    return samples.mean(axis=1, dtype=np.float32)


def as_clip(waveform: object, *, name: str = "waveform", channels: str = "mix") -> np.ndarray:
    """One clip as 1-D float32 in [-1, 1], from a 1-D array or a (samples, channels) array.

    The layout rule, the same for every entry point: a 1-D array is one mono clip; a 2-D array with at most
    :data:`MAX_CHANNELS` columns and more rows than columns is one clip in (samples, channels) layout — what
    soundfile, scipy.io.wavfile and ``librosa.load(mono=False).T`` return — and its channels are mixed
    (``channels="mix"``) or the first is taken (``"first"``). Any other 2-D array is ambiguous (channels first, or
    several clips?) and raises :class:`AudioError` saying what to pass instead. Integer arrays are scaled by their
    type's full range, like integer files.
    """
    check_channels(channels)
    array = as_waveform(waveform, name=name, allow_batch=True)
    if array.ndim == 1:
        return array
    rows, cols = array.shape
    if cols <= MAX_CHANNELS < rows or (cols == 1 and rows >= 1):
        return mix_channels(array, channels)
    if rows <= MAX_CHANNELS < cols:
        raise AudioError(
            f"{name} has shape {array.shape}, which is ambiguous: {rows} channels of {cols} samples, or {rows} "
            f"clips? For channels-first audio (torchaudio, librosa with mono=False) pass {name}.T (samples, "
            f"channels); for several clips pass a list of 1-D arrays, or batch=True"
        )
    raise AudioError(
        f"{name} has shape {array.shape}: a 2-D array is read as one clip in (samples, channels) layout with at most "
        f"{MAX_CHANNELS} channels; for several clips of equal length pass batch=True (rows are clips), for clips of "
        "different lengths a list of 1-D arrays"
    )


def as_batch(waveform: object, *, name: str = "waveform") -> np.ndarray:
    """An explicit batch: (clips, samples) float32 in [-1, 1], each row one mono clip (``batch=True``)."""
    array = as_waveform(waveform, name=name, allow_batch=True)
    if array.ndim != 2:
        raise AudioError(
            f"batch=True needs a 2-D array of shape (clips, samples), each row one mono clip; {name} has shape "
            f"{array.shape} (pass a single clip with batch=False)"
        )
    return array


def read_inputs(
    waveform: object,
    sample_rate: object = None,
    channels: str = "mix",
    batch: bool = False,
    target_rate: int = SAMPLE_RATE,
) -> tuple[list[np.ndarray] | np.ndarray, bool]:
    """What the API was handed, at ``target_rate`` (the network's: 22,050 Hz for SoundNet): one 1-D clip, a (clips,
    samples) array (``batch=True``) or a list of 1-D clips (the flag says which of the last two).

    Paths (``str`` / ``os.PathLike``) are decoded with :func:`load_audio`; arrays follow the layout rule of
    :func:`as_clip` and are resampled from ``sample_rate`` (``target_rate`` when None).
    """
    check_channels(channels)
    if isinstance(waveform, (list, tuple)) and waveform and not np.isscalar(waveform[0]):
        if batch:
            raise ConfigError("batch=True takes one 2-D array (clips, samples); a list is already several clips")
        clips = [_read_clip(w, sample_rate, channels, f"waveform[{i}]", target_rate) for i, w in enumerate(waveform)]
        return clips, True
    if batch:
        if isinstance(waveform, (str, os.PathLike)):
            raise ConfigError("batch=True takes a 2-D array (clips, samples), not a file path")
        return resample(as_batch(waveform), _rate(sample_rate, target_rate), target_rate), False
    return _read_clip(waveform, sample_rate, channels, "waveform", target_rate), False


def _rate(sample_rate: object, target_rate: int) -> int:
    return target_rate if sample_rate is None else check_sample_rate(sample_rate)


def _read_clip(waveform: object, sample_rate: object, channels: str, name: str, target_rate: int) -> np.ndarray:
    if isinstance(waveform, (str, os.PathLike)):
        if sample_rate is not None:
            raise ConfigError(
                f"{name} is a file path ({os.fspath(waveform)!r}), which carries its own sample rate: leave "
                f"sample_rate out (got {sample_rate!r}), or decode it yourself with soundnet_keras.audio.load_audio"
            )
        return load_audio(waveform, target_rate=target_rate, channels=channels)[0]
    if isinstance(waveform, bytes):
        raise ConfigError(f"{name} is bytes: pass a file path, or decode it with soundnet_keras.audio.load_audio")
    return resample(as_clip(waveform, name=name, channels=channels), _rate(sample_rate, target_rate), target_rate)


def resample(waveform: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample (samples,) or (batch, samples) float audio from ``sample_rate`` to ``target_rate`` with soxr (HQ)."""
    sample_rate = check_sample_rate(sample_rate)
    if sample_rate == target_rate:
        return waveform
    if waveform.ndim == 1:
        return soxr.resample(waveform, sample_rate, target_rate, quality="HQ").astype(np.float32, copy=False)
    resampled = soxr.resample(np.ascontiguousarray(waveform.T), sample_rate, target_rate, quality="HQ")
    return np.ascontiguousarray(resampled.T, dtype=np.float32)


AUDIO_EXTENSIONS = (
    ".wav", ".wave", ".w64", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf"
)  # fmt: skip
"""File name extensions treated as audio when a folder is expanded (decoding itself goes by content, not name)."""

BLOCK_FRAMES = 1 << 18
"""Frames decoded (and resampled) per block by :func:`load_audio`; bounds the memory beyond the result itself."""


def _describe(path: Path) -> str:
    return repr(str(path))


def _check_file(path: Path) -> None:
    """Raise a specific :class:`AudioError` when ``path`` is not a readable, non-empty regular file."""
    name = _describe(path)
    if not path.exists():
        raise AudioError(f"{name}: no such file")
    if path.is_dir():
        raise AudioError(f"{name}: is a folder, not an audio file")
    if not path.is_file():
        raise AudioError(f"{name}: not a regular file")
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise AudioError(f"{name}: cannot read the file ({exc.strerror or exc})") from None
    if size == 0:
        raise AudioError(f"{name}: the file is empty (0 bytes), expected audio")


def _open(path: Path):
    import soundfile  # native libsndfile (~10 ms): only when a file is read; every CLI imports this module for --help

    try:
        return soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = str(exc).split(":", 1)[-1].strip() if str(path) in str(exc) else str(exc)
        raise AudioError(
            f"{_describe(path)}: not a readable audio file: expected WAV, FLAC, OGG/Vorbis, MP3 or another format "
            f"libsndfile decodes ({detail or type(exc).__name__}); convert other formats first, e.g. with ffmpeg"
        ) from None


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, read from its header (no decoding); errors as :func:`load_audio`."""
    path = Path(path)
    _check_file(path)
    with _open(path) as handle:
        return handle.frames / handle.samplerate if handle.samplerate else 0.0


class _Samples:
    """A float32 buffer filled block by block, grown when a block does not fit."""

    def __init__(self, capacity: int) -> None:
        self.out = np.empty(capacity, dtype=np.float32)
        self.filled = 0

    def append(self, block: np.ndarray) -> None:
        """Copy ``block`` after the samples so far (growing the buffer when needed)."""
        if self.filled + block.size > self.out.size:
            self.out = np.concatenate([self.out[: self.filled], np.empty(block.size + 1024, np.float32)])
        self.out[self.filled : self.filled + block.size] = block
        self.filled += block.size

    def append_tail(self, tail: np.ndarray) -> None:
        """Add the resampler's last samples: the buffer becomes exactly the samples so far and ``tail``."""
        self.out = np.concatenate([self.out[: self.filled], tail])
        self.filled += tail.size

    def waveform(self) -> np.ndarray:
        """The samples so far; a copy when the buffer is much larger (so the spare capacity is freed)."""
        waveform = self.out[: self.filled]
        if waveform.base is not None and self.filled < 0.9 * self.out.size:
            waveform = waveform.copy()
        return waveform


def _header(handle, name: str) -> tuple[int, int]:
    """``(sample rate, frames)`` from an open file's header, which must announce some samples at a valid rate."""
    rate = int(handle.samplerate)
    frames = int(handle.frames)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{name}: the file header says {rate:,} Hz; expected {MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz "
            "(a damaged or hostile header)"
        )
    if frames <= 0:
        raise AudioError(f"{name}: zero length: the file has no audio samples")
    if frames / rate > MAX_DURATION_S:
        raise AudioError(
            f"{name}: the file header says {frames / rate / 3600:.1f} h of audio; at most {MAX_DURATION_S / 3600:g} h "
            "is decoded in one piece: split the recording"
        )
    return rate, frames


def _resampler(rate: int, out_rate: int):
    """A soxr stream (mono, float32, high quality) from ``rate`` to ``out_rate``, or None when they are equal."""
    if out_rate == rate:
        return None
    return soxr.ResampleStream(rate, out_rate, 1, dtype="float32", quality="HQ")


def _check_finite(mono: np.ndarray, name: str, block_start: float) -> None:
    """Raise :class:`AudioError` when the block starting at ``block_start`` seconds has NaN or Inf samples."""
    finite = np.isfinite(mono)
    if not finite.all():
        bad = int(mono.size - np.count_nonzero(finite))
        raise AudioError(
            f"{name}: has NaN or Inf samples ({bad} in the block at {block_start:.3f} s); expected finite audio"
        )


def _decode_blocks(
    handle, samples: _Samples, name: str, rate: int, frames: int, channels: str, stream
) -> tuple[int, float]:
    """Decode ``frames`` frames block by block, mixed to mono and resampled by ``stream`` (if any), into
    ``samples``; returns ``(frames decoded, peak before resampling)``."""
    decoded = 0
    peak = 0.0
    while decoded < frames:
        block = handle.read(min(BLOCK_FRAMES, frames - decoded), dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            break
        decoded += block.shape[0]
        mono = mix_channels(block, channels)
        _check_finite(mono, name, (decoded - block.shape[0]) / rate)
        peak = max(peak, float(np.max(np.abs(mono))))
        if stream is not None:
            mono = stream.resample_chunk(mono, last=decoded >= frames)
        samples.append(mono)
    if stream is not None and decoded < frames:  # header over-reported frames: flush the resampler
        samples.append_tail(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return decoded, peak


def load_audio(
    path: str | os.PathLike, *, target_rate: int | None = SAMPLE_RATE, channels: str = "mix"
) -> tuple[np.ndarray, int]:
    """Decode an audio file to mono float32 in [-1, 1] and resample it to ``target_rate`` (None keeps the file's).

    ``channels="mix"`` averages all channels (default); ``"first"`` takes the first channel, as the original
    scripts did. Decoding and resampling (soxr, high quality) run block by block, so memory beyond the result stays
    bounded for files of any length. Returns ``(waveform, sample_rate)``. Raises :class:`AudioError` naming the
    file when it is missing, unreadable, empty, not audio, has no samples or has NaN/Inf samples, or when its header
    gives a rate outside [1 kHz, 768 kHz] or more than 12 h. A WAV file whose data is shorter than its header says
    (cut off mid-write) decodes what is there, with a :class:`~soundnet_keras.errors.TruncatedAudioWarning`.
    """
    waveform, rate, notes = load_audio_noted(path, target_rate=target_rate, channels=channels)
    for note in notes:
        warnings.warn(note, TruncatedAudioWarning, stacklevel=2)
    return waveform, rate


def load_audio_noted(
    path: str | os.PathLike, *, target_rate: int | None = SAMPLE_RATE, channels: str = "mix"
) -> tuple[np.ndarray, int, list[str]]:
    """:func:`load_audio`, with what the caller should be told about the file (a truncation) returned as notes
    instead of warned (thread-safe: :func:`decode_files` attaches them to each file's result)."""
    import soundfile  # native libsndfile (~10 ms): only when a file is read; every CLI imports this module for --help

    path = Path(path)
    check_channels(channels)
    if target_rate is not None:
        target_rate = check_sample_rate(target_rate, "target_rate")
    _check_file(path)
    name = _describe(path)
    with _open(path) as handle:
        rate, frames = _header(handle, name)
        out_rate = rate if target_rate is None else target_rate
        stream = _resampler(rate, out_rate)
        # soxr's output length is round(frames * out / in); a little slack covers any rounding.
        samples = _Samples(int(np.ceil(frames * out_rate / rate)) + 16)
        try:
            decoded, peak = _decode_blocks(handle, samples, name, rate, frames, channels, stream)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{name}: cannot decode: the file is corrupt or truncated ({exc})") from None
    if decoded == 0 or samples.filled == 0:
        raise AudioError(f"{name}: zero length: no audio samples could be decoded")
    if peak > FLOAT_RANGE_LIMIT:
        raise AudioError(f"{name}: float samples must lie in [-1, 1], but the peak is {peak:.4g}; rescale the file")
    truncated = wav_truncation(path)
    notes = [f"{name}: {truncated}"] if truncated else []
    return samples.waveform(), int(out_rate), notes


def wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file whose ``data`` chunk declares more bytes than the file holds (a write cut off), what is
    missing; None for complete files, other formats, and streamed WAVs that declare no length."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, block_align, rate = 12, 0, 0
    while offset + 8 <= len(head):
        chunk, length = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8], "little")
        if chunk == b"fmt " and offset + 24 <= len(head):
            rate = int.from_bytes(head[offset + 12 : offset + 16], "little")
            block_align = int.from_bytes(head[offset + 20 : offset + 22], "little")
        if chunk == b"data":
            present = size - (offset + 8)
            if length in (0, 0xFFFFFFFF) or length <= present or not block_align or not rate:
                return None
            missing_s = (length - present) / block_align / rate
            kept_s = present / block_align / rate
            return (
                f"the WAV header announces {(length / block_align / rate):.2f} s but only {kept_s:.2f} s are in the "
                f"file ({missing_s:.2f} s missing: cut off mid-write?); decoded what is there"
            )
        offset += 8 + length + (length & 1)
    return None


@dataclass
class Decoded:
    """One file decoded by :func:`decode_files`: the waveform, or the error that stopped it."""

    path: Path
    waveform: np.ndarray | None
    sample_rate: int
    error: SoundNetError | None = None
    notes: list[str] = field(default_factory=list)
    """What the caller should be told about the file (e.g. a truncation), one sentence each."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def duration(self) -> float:
        """Seconds of audio (0 for a failed file)."""
        return 0.0 if self.waveform is None else self.waveform.size / self.sample_rate


def _decode_one(path: Path, target_rate: int | None, channels: str) -> Decoded:
    try:
        waveform, rate, notes = load_audio_noted(path, target_rate=target_rate, channels=channels)
    except SoundNetError as exc:
        return Decoded(path, None, target_rate or 0, exc)
    except MemoryError:
        return Decoded(path, None, target_rate or 0, AudioError(f"{_describe(path)}: too large to decode in memory"))
    return Decoded(path, waveform, rate, notes=notes)


def decode_files(
    paths: Iterable[str | os.PathLike],
    *,
    target_rate: int | None = SAMPLE_RATE,
    channels: str = "mix",
    workers: int | None = None,
    prefetch: int = 32,
) -> Iterator[Decoded]:
    """Decode many files in parallel threads (libsndfile and soxr release the GIL), yielding results in input order.

    A file that fails yields a :class:`Decoded` with ``error`` set instead of raising, so one corrupt file does
    not stop a batch. At most ``prefetch`` decoded files wait in memory ahead of the consumer. ``workers`` defaults
    to the number of CPUs (at most 8); ``workers=0`` decodes in the calling thread.
    """
    check_channels(channels)
    paths = [Path(p) for p in paths]
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if workers <= 0 or len(paths) <= 1:
        for path in paths:
            yield _decode_one(path, target_rate, channels)
        return
    prefetch = max(prefetch, workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="soundnet-decode") as pool:
        pending = []
        index = 0
        while index < len(paths) or pending:
            while index < len(paths) and len(pending) < prefetch:
                pending.append(pool.submit(_decode_one, paths[index], target_rate, channels))
                index += 1
            yield pending.pop(0).result()


def expand_paths(inputs: Iterable[str | os.PathLike], extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Expand folders (recursively, sorted) to the audio files they hold; files are kept as given, in order.

    Files named explicitly are kept whatever their extension (decoding decides); in folders only names ending in
    one of ``extensions`` (case-insensitive) are taken. Missing paths are kept so that decoding reports them.
    """
    suffixes = tuple(ext.lower() for ext in extensions)
    result: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            candidates = found
        else:
            candidates = [path]
        for candidate in candidates:
            if candidate not in seen:
                seen.add(candidate)
                result.append(candidate)
    return result


def example_clip() -> Path:
    """Path of the example clip shipped with the package (12 s of a synthetic passing train, OGG/Vorbis, 22,050 Hz).

    Made by ``benchmarks/make_example_clip.py`` (see ``soundnet_keras/data/README.md``); ``soundnet-classify
    --example`` classifies it, so the CLI can be tried right after installation.
    """
    resource = resources.files("soundnet_keras") / "data" / EXAMPLE_CLIP_NAME
    path = Path(str(resource))
    if not path.is_file():
        raise AudioError(f"the example clip {EXAMPLE_CLIP_NAME!r} is missing from the installed package at {path}")
    return path


EXAMPLE_CLIP_NAME = "example_train.ogg"
