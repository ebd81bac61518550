"""Windows and pooling of feature frames: the paper's sliding windows, clip statistics, and the clip classifier's
window rows, their aggregation into clip scores and their times.

Window width in frames is ``ceil(window / clip_seconds * T)`` for a clip of ``T`` frames (``eval_esc50.lua``'s
``twindow_size``); every offset gives one window. ``"flatten"`` concatenates the window's frames channel-major (the
Lua ``view(-1)`` of a (channels, frames) slice); ``"mean"``, ``"max"`` and ``"meanmax"`` pool them over time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from ..results import FrameTimes, frame_times_from_spans
from .features import ClipFeatures

POOLINGS = ("mean", "max", "meanmax")
WINDOW_FEATURES = ("flatten", *POOLINGS)
AGGREGATES = ("mean", "max")


def pool_frames(frames: np.ndarray, how: str) -> np.ndarray:
    """Statistics over time of (..., frames, channels): ``mean``, ``max`` or both concatenated (``meanmax``)."""
    if how == "mean":
        return frames.mean(axis=-2)
    if how == "max":
        return frames.max(axis=-2)
    if how == "meanmax":
        return np.concatenate([frames.mean(axis=-2), frames.max(axis=-2)], axis=-1)
    raise ConfigError(f"pooling must be one of {', '.join(map(repr, POOLINGS))}, got {how!r}")


def window_frames(num_frames: int, window_seconds: float, clip_seconds: float) -> int:
    """Window width in frames, ``ceil(window / clip_seconds * T)`` -- ``eval_esc50.lua``'s ``twindow_size``.

    Computed in double precision as the Lua script does; at least one frame.
    """
    return max(1, math.ceil((window_seconds / clip_seconds) * num_frames))


def sliding_windows(frames: np.ndarray, width: int, how: str = "flatten") -> np.ndarray:
    """One row per window of ``width`` consecutive frames at every offset: (T - width + 1, dims).

    ``flatten`` concatenates the window channel-major (dims = channels x width, Lua's ``view(-1)`` of a (channels,
    frames) slice); ``mean``/``max``/``meanmax`` pool it over time. Clips shorter than ``width`` frames are repeated
    circularly to ``width`` frames first.
    """
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[0] == 0:
        raise ConfigError(f"frames must be a non-empty (frames, channels) array, got shape {frames.shape}")
    if frames.shape[0] < width:
        frames = np.concatenate([frames] * math.ceil(width / frames.shape[0]), axis=0)[:width]
    view = np.lib.stride_tricks.sliding_window_view(frames, width, axis=0)  # (n, channels, width)
    if how == "flatten":
        return view.reshape(view.shape[0], -1)
    return pool_frames(np.swapaxes(view, -1, -2), how)


def window_rows(clip: ClipFeatures, layers: Sequence[str], width: int | None, how: str) -> np.ndarray:
    """The rows a head scores for one clip: one per window of ``width`` frames of ``layers[0]``, or (``width``
    None) one row of every layer's frames pooled over the whole clip, concatenated."""
    if width is None:
        return np.concatenate([pool_frames(clip.layers[name], how) for name in layers])[None]
    return sliding_windows(clip.layers[layers[0]], width, how)


def stack_windows(
    clips: Sequence[ClipFeatures], layers: Sequence[str], width: int | None, how: str
) -> tuple[np.ndarray, np.ndarray]:
    """All clips' window rows stacked, and the number of rows of each clip."""
    rows = [window_rows(clip, layers, width, how) for clip in clips]
    dims = {r.shape[1] for r in rows}
    if len(dims) > 1:
        raise ConfigError(f"window features differ in size between clips: {sorted(dims)}")
    return np.concatenate(rows), np.array([len(r) for r in rows])


def aggregate(window_scores: np.ndarray, counts: np.ndarray, how: str) -> np.ndarray:
    """Clip scores (clips, classes): each clip's ``counts`` consecutive window rows reduced by ``how``."""
    bounds = np.concatenate([[0], np.cumsum(counts)])
    reduce = np.mean if how == "mean" else np.max
    return np.stack([reduce(window_scores[a:b], axis=0) for a, b in itertools.pairwise(bounds)])


def window_times(clip: ClipFeatures, arch: str, layer: str, width: int | None, windows: int) -> FrameTimes:
    """Start and end (seconds of the audio fed) of each window: its first frame's start, its last frame's end."""
    start, end = clip.frame_times(arch, layer)
    width = width or len(start)
    first = np.minimum(np.arange(windows), len(start) - 1)
    last = np.minimum(np.arange(windows) + width - 1, len(end) - 1)
    return frame_times_from_spans(start[first], end[last])
