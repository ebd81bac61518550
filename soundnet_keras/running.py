"""Running the network on clips as the padding policy says: plan, pad, batch, chunk, trim.

The one place between :class:`~soundnet_keras.model.SoundNet`'s public methods and its compiled forward pass:
:func:`run_clip` feeds one clip (or an explicit batch) and :func:`run_clips` several clips of any lengths, each
through :func:`~soundnet_keras.architecture.plan_input`. Clips the policy feeds with equal lengths share a batch;
inputs longer than the chunk length run in chunks (:mod:`~soundnet_keras.chunking`) with the policy's appended
tail read without copying the clip; every output is trimmed to the frames the plan reports and returned as
:class:`~soundnet_keras.results.Features` with times and padding flags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .architecture import SAMPLE_RATE, InputPlan, PadMode, frame_times, plan_input
from .chunking import min_chunk_samples, run_chunked
from .errors import InputTooShortError
from .results import Features
from .validation import check_positive

Forward = Callable[[np.ndarray, tuple[str, ...]], Mapping[str, np.ndarray]]
"""(batch, samples) float32 at 22,050 Hz, output names -> {name: (batch, frames, channels)}."""


def chunk_samples(arch: str, names: tuple[str, ...], chunk_seconds: float | None) -> int | None:
    """Input length above which inputs run in chunks (None: never)."""
    if chunk_seconds is None:
        return None
    return max(round(chunk_seconds * SAMPLE_RATE), min_chunk_samples(arch, names))


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
    """Plan (padding policy), run and trim one clip (samples,) or batch (clips, samples) at 22,050 Hz."""
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
        )
    return result
