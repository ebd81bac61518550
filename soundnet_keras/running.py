"""Running the network on clips as the padding policy says: plan, pad, batch, chunk, trim.

The one place between :class:`~soundnet_keras.model.SoundNet`'s public methods and its compiled forward pass:
:func:`run_clip` feeds one clip (or an explicit batch) and :func:`run_clips` several clips of any lengths, each
through :func:`~soundnet_keras.architecture.plan_input`. Clips the policy feeds with equal lengths share a batch;
inputs longer than the chunk length run in chunks (:mod:`~soundnet_keras.chunking`) with the policy's appended
tail read without copying the clip; every output is trimmed to the frames the plan reports and returned as
:class:`~soundnet_keras.results.Features` with times and padding flags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from .architecture import InputPlan, PadMode, check_pad, frame_times, geometry, plan_input
from .architecture import sample_rate as network_rate
from .audio import read_inputs
from .chunking import min_chunk_samples, run_chunked
from .errors import ConfigError, InputTooShortError
from .results import Features
from .validation import check_positive

Forward = Callable[[np.ndarray, tuple[str, ...]], Mapping[str, np.ndarray]]
"""(batch, samples) float32 at the architecture's rate, output names -> {name: (batch, frames, channels)}."""


def chunk_samples(arch: str, names: tuple[str, ...], chunk_seconds: float | None) -> int | None:
    """Input length above which inputs run in chunks (None: never)."""
    if chunk_seconds is None:
        return None
    return max(round(chunk_seconds * network_rate(arch)), min_chunk_samples(arch, names))


def forward_any_length(
    forward: Forward,
    arch: str,
    batch: np.ndarray,
    names: tuple[str, ...],
    chunk_seconds: float | None,
    tail: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """``forward`` of ``batch`` followed by ``tail`` (appended by the padding policy), in chunks when longer than
    ``chunk_seconds`` — then without copying ``batch``."""
    chunk = chunk_samples(arch, names, chunk_seconds)
    total = batch.shape[-1] + (0 if tail is None else tail.shape[-1])
    if chunk is None or total <= chunk:
        return dict(forward(batch if tail is None else np.concatenate([batch, tail], axis=-1), names))
    return run_chunked(forward, arch, batch, names, chunk, tail=tail)


def run_clip(
    forward: Forward,
    arch: str,
    audio: np.ndarray,
    names: tuple[str, ...],
    pad: PadMode | None,
    chunk_seconds: float | None,
) -> dict[str, Features]:
    """Plan (padding policy), run and trim one clip (samples,) or batch (clips, samples) at the architecture's rate."""
    plan = plan_input(arch, names, audio.shape[-1], pad)
    batch = audio if audio.ndim == 2 else audio[None]
    values = forward_any_length(forward, arch, batch, names, chunk_seconds, plan.appended(batch))
    return features(arch, plan, {name: v if audio.ndim == 2 else v[0] for name, v in values.items()})


def run_clips(
    forward: Forward,
    arch: str,
    clips: Sequence[np.ndarray],
    names: tuple[str, ...],
    pad: PadMode | None,
    batch_size: int,
    chunk_seconds: float | None,
) -> list[dict[str, Features]]:
    """:func:`run_clip` for 1-D clips of any lengths, batching those the policy feeds with the same length."""
    batch_size = check_positive(batch_size, "batch_size", integer=True)
    plans = []
    for index, clip in enumerate(clips):
        try:
            plans.append(plan_input(arch, names, clip.shape[-1], pad))
        except InputTooShortError as exc:
            raise exc.with_context(f"waveform[{index}]") from None
    groups: dict[int, list[int]] = {}
    for index, plan in enumerate(plans):
        groups.setdefault(plan.network_samples, []).append(index)
    results: list[dict[str, Features]] = [{} for _ in clips]
    chunk = chunk_samples(arch, names, chunk_seconds)
    for length, members in groups.items():
        if chunk is not None and length > chunk:  # long files: one at a time, chunked, never copied
            for index in members:
                results[index] = run_clip(forward, arch, clips[index], names, pad, chunk_seconds)
            continue
        for begin in range(0, len(members), batch_size):
            part = members[begin : begin + batch_size]
            batch = np.stack([plans[i].apply(clips[i]) for i in part])
            values = forward_any_length(forward, arch, batch, names, chunk_seconds)
            for row, index in enumerate(part):
                results[index] = features(arch, plans[index], {name: v[row] for name, v in values.items()})
    return results


def features(arch: str, plan: InputPlan, values: Mapping[str, np.ndarray]) -> dict[str, Features]:
    """Trim each output to the frames the plan reports and attach times and padding flags."""
    result = {}
    for name, array in values.items():
        frames = plan.frames(name)
        result[name] = Features(
            name,
            array[..., :frames, :],
            frame_times(arch, name, frames, plan.timeline_samples),
            plan.network_samples,
            plan.padded,
            plan.input_samples,
            plan.padded_frames(name, frames),
            network_rate(arch),
        )
    return result


class FeatureMethods:
    """``features`` and ``intermediates`` of a network facade (:class:`~soundnet_keras.model.SoundNet`,
    :class:`~soundnet_keras.l3.L3Net`), from its ``arch``, ``layers``, ``embedding_layer``, ``forward`` and
    ``chunk_seconds``: names and ``pad`` checked before any file is decoded, inputs read at the network's rate
    (22,050 Hz SoundNet, 48 kHz L³-Net), clips planned, run, chunked and trimmed by this module."""

    arch: str
    layers: tuple[str, ...]
    embedding_layer: str
    chunk_seconds: float | None
    forward: Forward

    def intermediates(
        self,
        waveform: object,
        sample_rate: int | None = None,
        layers: Iterable[str] | None = None,
        *,
        pad: PadMode | None = None,
        channels: str = "mix",
        batch: bool = False,
    ) -> dict[str, Features]:
        """Several named outputs of one clip (or a ``batch=True`` array) in a single pass (``forward_intermediates``).

        Inputs and ``pad`` as for :meth:`features`; with a SoundNet head among ``layers`` the heads' padding policy
        applies to the whole pass (see :func:`~soundnet_keras.architecture.plan_input`).
        """
        names = tuple(layers) if layers is not None else self.layers
        for name in names:
            geometry(self.arch, name)  # validates each name
        pad = check_pad(pad)  # before any file is decoded
        audio, is_list = read_inputs(waveform, sample_rate, channels, batch, network_rate(self.arch))
        if is_list:
            raise ConfigError("intermediates() takes one clip or a batch=True array; call it once per clip")
        return run_clip(self.forward, self.arch, audio, names, pad, self.chunk_seconds)

    def features(
        self,
        waveform: object,
        sample_rate: int | None = None,
        layer: str | None = None,
        *,
        pad: PadMode | None = None,
        channels: str = "mix",
        batch: bool = False,
        batch_size: int = 16,
    ) -> Features | list[Features]:
        """Activations of ``layer`` (default :attr:`embedding_layer`: SoundNet ``pool5``, L³-Net ``audio_pool4``;
        any of :attr:`layers`).

        ``waveform``: a 1-D array (one clip); a (samples, channels) array (one clip, channels mixed or the first
        taken, as ``channels`` says); a file path (decoded); a list of those (several clips, any lengths); or with
        ``batch=True`` a (clips, samples) array. Arrays are at ``sample_rate`` (the network's rate when None) and
        resampled. Returns :class:`Features` with ``values`` (frames, channels) and frame times, or a list of them
        for a list (clips fed with equal lengths run in batches of ``batch_size``).
        ``pad="repeat"`` / ``"zeros"`` pads clips too short for ``layer``; with ``pad=None`` they raise
        :class:`~soundnet_keras.errors.InputTooShortError`.
        """
        layer = self.embedding_layer if layer is None else layer
        geometry(self.arch, layer)
        pad = check_pad(pad)  # before any file is decoded
        audio, is_list = read_inputs(waveform, sample_rate, channels, batch, network_rate(self.arch))
        if is_list:
            runs = run_clips(self.forward, self.arch, audio, (layer,), pad, batch_size, self.chunk_seconds)
            return [out[layer] for out in runs]
        return run_clip(self.forward, self.arch, audio, (layer,), pad, self.chunk_seconds)[layer]
