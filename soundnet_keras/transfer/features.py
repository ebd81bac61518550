"""SoundNet features per clip: extraction from files or waveforms, a cache that follows the weights, pooling and
windows, and a scikit-learn transformer.

* :class:`FeatureExtractor` -- activations of one or several layers per clip (:class:`ClipFeatures`), from files or
  waveforms, with a content-keyed on-disk cache (:class:`FeatureCache`, keyed by the weights in use at extraction);
* :class:`SoundNetFeatures` -- a scikit-learn transformer giving one pooled feature vector per clip, so that
  ``make_pipeline(SoundNetFeatures(), LinearSVC())`` works.

Input variants (``variant=``):

``"resampled"``
    audio resampled to 22,050 Hz, samples in [-1, 1] (the network's own x256, i.e. int32 x 2^-23 as in the original
    training scripts).
``"exact"``
    what the authors' ``eval_esc50.lua`` did: the file's samples fed *without resampling* (44.1 kHz ESC audio read as
    if it were 22,050 Hz) and scaled by 2^-22 instead of 2^-23, i.e. x2 here.

``duration=`` (seconds) repeats each clip circularly and cuts it to exactly that length of the audio fed (the file's
own rate in the exact variant), as ``eval_esc50.lua`` does with ``sound_length = 10``; ``None`` keeps clips as they
are (padded by :func:`~soundnet_keras.architecture.plan_input` where shorter than the deepest layer needs).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..architecture import SAMPLE_RATE, InputPlan, frame_times, geometry, pad_to_length, plan_input
from ..architecture import sample_rate as network_rate
from ..audio import as_clip, audio_duration, check_channels, check_sample_rate, load_audio, resample
from ..errors import AudioError, ConfigError
from ..files import atomic_path, sha256_file
from ..pretrained import cache_dir
from ..progress import Progress as ProgressReport
from ..validation import check_choice, check_positive
from .inputs import Item, as_items

VARIANTS = ("resampled", "exact")
EXACT_GAIN = 2.0
"""Extra gain of the ``"exact"`` variant: the original scaled int32 samples by 2^-22, the network assumes 2^-23."""


Progress = Callable[[Iterable[Any], int, str], Iterable[Any]]


def check_layers(layer: str | Sequence[str], arch: str = "soundnet8") -> tuple[str, ...]:
    """Validate a layer name or a sequence of distinct names of ``arch``; returns them as a tuple."""
    layers = (layer,) if isinstance(layer, str) else tuple(layer) if isinstance(layer, (list, tuple)) else None
    if not layers or not all(isinstance(name, str) for name in layers):
        raise ConfigError(f"layer must be a layer name or a non-empty list of names, got {layer!r}")
    if len(set(layers)) != len(layers):
        raise ConfigError(f"layer lists a name twice: {list(layers)}")
    for name in layers:
        geometry(arch, name)  # raises ConfigError naming the valid layers
    return layers


# ------------------------------------------------------------------------------------------------- model identity
_NETS: dict[str, Any] = {}


def model_identity(net: Any) -> str:
    """sha256 of a network's architecture and its parameter values *now*: the weights part of feature-cache keys
    (for an L³-Net every parameter, audio, vision and fusion).

    Computed from the live variables on every call (about 0.1 s for SoundNet-8), never remembered: after
    fine-tuning, ``load_weights`` or ``set_weights`` the key changes, so cached features of the old weights are
    not returned.
    """
    from ..l3.model import L3Net
    from ..network import get_params  # imports Keras: only when a network is in use
    from ..weights import params_digest

    params = net.get_params() if isinstance(net, L3Net) else get_params(net.keras_model)
    return params_digest(net.arch, params)


def resolve_net(net: Any = None, weights: str | os.PathLike = "soundnet8") -> Any:
    """``net`` itself when given, else the network of ``weights`` (preset or file; a SoundNet, or an L³-Net for an
    L³-Net weights file: :func:`~soundnet_keras.loading.load_network`), loaded once per process."""
    from ..loading import is_network, load_network  # imports Keras: only when a network is in use

    if net is not None:
        if not is_network(net):
            raise ConfigError(f"net must be a SoundNet or L3Net instance or None, got {type(net).__name__}")
        return net
    if not isinstance(weights, (str, os.PathLike)):
        raise ConfigError(f"weights must be a preset name or a weights file path, got {weights!r}")
    key = os.fspath(weights)
    if key not in _NETS:
        _NETS[key] = load_network(weights)
    return _NETS[key]


# ------------------------------------------------------------------------------------------------------- features
@dataclass
class ClipFeatures:
    """Activations of one clip at one or several layers, as the network computed them.

    ``layers`` maps a layer name to (frames, channels) float32; ``num_samples`` is the length fed to the network and
    ``input_rate`` the real sample rate of that audio (22,050 Hz, or the file's rate in the exact variant), so that
    frame times in seconds of the audio are the network's times scaled by ``22050 / input_rate``.
    """

    layers: dict[str, np.ndarray]
    num_samples: int
    input_rate: int
    source: str = ""

    @property
    def seconds(self) -> float:
        """Duration of the audio fed to the network, in seconds of that audio."""
        return self.num_samples / self.input_rate

    def frame_times(self, arch: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """Start and end (seconds of the audio fed) of each frame's receptive field at ``layer``."""
        times = frame_times(arch, layer, self.layers[layer].shape[0], self.num_samples)
        scale = network_rate(arch) / self.input_rate
        return times.start * scale, times.end * scale


class FeatureCache:
    """Per-clip features on disk, keyed by content sha256 + layer + input settings + network identity.

    Layout: ``root/<identity[:16]>/<settings>/<layer>/<sha[:2]>/<sha>.npz`` holding ``values``, ``num_samples`` and
    ``input_rate``; files are written atomically and read with ``allow_pickle=False``. An unreadable entry is
    treated as absent (and rewritten).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        if root is None:
            root = cache_dir() / "features"
        self.root = Path(root).expanduser()

    def path(self, identity: str, settings: str, layer: str, content: str) -> Path:
        """Where the entry of one clip/layer lives."""
        return self.root / identity[:16] / settings / layer / content[:2] / f"{content}.npz"

    def get(self, identity: str, settings: str, layer: str, content: str) -> tuple[np.ndarray, int, int] | None:
        """``(values, num_samples, input_rate)`` of a cached entry, or None."""
        path = self.path(identity, settings, layer, content)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return np.asarray(data["values"], np.float32), int(data["num_samples"]), int(data["input_rate"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None

    def clear(self) -> int:
        """Delete every entry of this cache (only files of its own layout) and the folders left empty; returns how
        many entries were deleted. Features are recomputed on next use."""
        removed = 0
        for entry in self.root.glob("*/*/*/*/*.npz"):
            entry.unlink(missing_ok=True)
            removed += 1
        for folder in sorted((p for p in self.root.glob("**/*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only empty folders go
        return removed

    def put(
        self, identity: str, settings: str, layer: str, content: str, values: np.ndarray, num_samples: int, rate: int
    ) -> None:
        """Write one entry atomically (a concurrent reader sees the old entry or the complete new one)."""
        path = self.path(identity, settings, layer, content)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, values=np.asarray(values, np.float32), num_samples=num_samples, input_rate=rate)


def progress_bar(iterable: Iterable[Any], total: int, desc: str, unit: str = "clip") -> Iterable[Any]:
    """``iterable`` with progress: a bar on a terminal or in a notebook, one line per 5 % in a log."""
    return ProgressReport(total, desc, unit).track(iterable)


class FeatureExtractor:
    """Extract the activations of ``layers`` for clips given as file paths or 1-D waveforms.

    Waveforms are at ``sample_rate`` and in [-1, 1] (see :func:`soundnet_keras.audio.as_waveform`); files are
    decoded with :func:`soundnet_keras.audio.load_audio` (``channels`` as there). ``variant`` and ``duration`` are
    described in the module docstring. ``cache`` enables the :class:`FeatureCache` under ``cache_dir`` (default:
    ``<soundnet-keras cache>/features``).
    """

    def __init__(
        self,
        net: Any,
        layers: str | Sequence[str] = "pool5",
        *,
        variant: str = "resampled",
        duration: float | None = None,
        channels: str = "mix",
        sample_rate: int = SAMPLE_RATE,
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.net = resolve_net(net)
        self.layers = check_layers(layers, self.net.arch)
        self.variant = check_choice(variant, VARIANTS, "variant")
        if self.variant == "exact" and network_rate(self.net.arch) != SAMPLE_RATE:
            raise ConfigError(
                f"variant 'exact' (the SoundNet paper's 44.1 kHz audio fed unresampled as if it were 22,050 Hz) does "
                f"not apply to {self.net.arch!r}, which hears {network_rate(self.net.arch):,} Hz audio: use "
                "variant='resampled' (in soundnet-bench: --variants paper-resampled)"
            )
        self.duration = check_positive(duration, "duration", allow_none=True)
        self.channels = check_channels(channels)
        self.sample_rate = check_sample_rate(sample_rate)
        self.cache = FeatureCache(cache_dir) if cache else None

    @property
    def settings_tag(self) -> str:
        """The input-settings part of cache keys."""
        duration = "asis" if self.duration is None else f"{self.duration:g}s"
        return f"{self.variant}-{duration}-{self.channels}"

    def prepare(self, waveform: np.ndarray, rate: int) -> tuple[np.ndarray, int, InputPlan]:
        """The 1-D float32 input the network sees for a [-1, 1] waveform at ``rate``, that audio's real rate, and
        the padding plan (:func:`~soundnet_keras.architecture.plan_input`, ``pad="repeat"``) that made it."""
        if self.variant == "resampled":
            input_rate = network_rate(self.net.arch)
            audio = resample(waveform, rate, input_rate)
        else:
            audio, input_rate = waveform * np.float32(EXACT_GAIN), rate
        if self.duration is not None:
            length = round(self.duration * input_rate)
            audio = pad_to_length(audio, length, "repeat")[:length]
        plan = plan_input(self.net.arch, self.layers, audio.shape[-1], "repeat")
        return np.ascontiguousarray(plan.apply(audio), dtype=np.float32), int(input_rate), plan

    def source_seconds(self, item: Item | ClipFeatures, index: int = 0) -> float | None:
        """The clip's own length in seconds before any repetition or padding (cut to ``duration`` when that is
        shorter): a file's from its header, a waveform's from its samples; None for :class:`ClipFeatures`."""
        if isinstance(item, ClipFeatures):
            return None
        if isinstance(item, (str, os.PathLike)):
            seconds = audio_duration(item)
        else:
            seconds = as_clip(item, name=f"clip {index}", channels=self.channels).shape[-1] / self.sample_rate
        return seconds if self.duration is None else min(seconds, self.duration)

    def _load(self, item: Item, index: int) -> tuple[np.ndarray, int, str]:
        if isinstance(item, (str, os.PathLike)):
            target = network_rate(self.net.arch) if self.variant == "resampled" else None
            waveform, rate = load_audio(item, target_rate=target, channels=self.channels)
            return waveform, rate, os.fspath(item)
        waveform = as_clip(item, name=f"clip {index}", channels=self.channels)
        return waveform, self.sample_rate, f"<waveform {index}>"

    def _content_key(self, item: Item, index: int) -> str:
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if not path.is_file():
                raise AudioError(f"{str(path)!r}: no such file" if not path.exists() else f"{str(path)!r}: not a file")
            return sha256_file(path)
        waveform = as_clip(item, name=f"clip {index}", channels=self.channels)
        digest = hashlib.sha256(f"waveform/{self.sample_rate}/".encode())
        digest.update(np.ascontiguousarray(waveform, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def extract_one(self, item: Item | ClipFeatures, index: int = 0, *, identity: str | None = None) -> ClipFeatures:
        """Features of one clip (path, waveform, or :class:`ClipFeatures` already holding the layers).

        ``identity`` is :func:`model_identity` of the network *now* (computed here when None); :meth:`extract`
        computes it once per call, so features never come from a cache entry of weights no longer in use.
        """
        if isinstance(item, ClipFeatures):
            missing = [name for name in self.layers if name not in item.layers]
            if missing:
                raise ConfigError(f"clip {index} ({item.source or 'features'}) lacks layers {missing}")
            return item
        if self.cache and identity is None:
            identity = model_identity(self.net)
        identity = identity or ""
        content = self._content_key(item, index) if self.cache else ""
        found: dict[str, np.ndarray] = {}
        meta: tuple[int, int] | None = None
        if self.cache:
            for name in self.layers:
                entry = self.cache.get(identity, self.settings_tag, name, content)
                if entry is not None:
                    found[name] = entry[0]
                    meta = (entry[1], entry[2])
        source = os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"<waveform {index}>"
        if len(found) == len(self.layers) and meta is not None:
            return ClipFeatures(found, meta[0], meta[1], source)
        waveform, rate, source = self._load(item, index)
        audio, input_rate, plan = self.prepare(waveform, rate)
        missing = tuple(name for name in self.layers if name not in found)
        values = self.net.forward(audio[None], missing)
        for name in missing:
            found[name] = np.asarray(values[name][0, : plan.frames(name)], np.float32)
            if self.cache:
                self.cache.put(identity, self.settings_tag, name, content, found[name], audio.shape[-1], input_rate)
        return ClipFeatures({name: found[name] for name in self.layers}, audio.shape[-1], input_rate, source)

    def extract(
        self,
        items: Sequence[Item | ClipFeatures],
        *,
        progress: bool | Progress = False,
        desc: str = "features",
        identity: str | None = None,
    ) -> list[ClipFeatures]:
        """Features of every clip in ``items``, in order (see :meth:`extract_one`).

        ``identity`` is :func:`model_identity` of the network when the caller has just computed it; otherwise it is
        computed here, once per call and only when a clip has to be looked up in the cache.
        """
        items = as_items(items)
        if identity is None and self.cache and not all(isinstance(item, ClipFeatures) for item in items):
            identity = model_identity(self.net)
        iterator: Iterable[tuple[int, Any]] = enumerate(items)
        if progress and not all(isinstance(item, ClipFeatures) for item in items):
            wrap = progress_bar if progress is True else progress
            iterator = wrap(iterator, len(items), desc)
        return [self.extract_one(item, index, identity=identity) for index, item in iterator]


def extractor_for(estimator: Any, net: Any, layers: str | Sequence[str]) -> FeatureExtractor:
    """The :class:`FeatureExtractor` of an estimator's input settings (``variant``, ``duration``, ``channels``,
    ``sample_rate``, ``cache``, ``cache_dir``: the parameters :class:`SoundNetFeatures` and
    :class:`~soundnet_keras.transfer.ClipClassifier` share) for ``net`` and ``layers``."""
    return FeatureExtractor(
        net,
        layers,
        variant=estimator.variant,
        duration=estimator.duration,
        channels=estimator.channels,
        sample_rate=estimator.sample_rate,
        cache=estimator.cache,
        cache_dir=estimator.cache_dir,
    )
