"""Timeline pictures of one file's :class:`~soundnet_keras.results.ClipResult` (matplotlib, Agg; no display needed).

One heatmap per head: a column per output frame, drawn over the stretch of time nearest its centre (seconds of the
audio fed on the x axis), a row per class chosen over the whole file (:func:`timeline_rows`: the classes that score
highest in any frame, and every frame's best class). Where the clip was repeated or padded, a strip above marks the
clip's own extent and the frames that heard repeated audio. With an event list, a panel below draws each event as a
bar, on the same time axis.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .event_lists import Event
from .events import frame_edges
from .results import ClipResult, HeadScores

HEAD_ORDER = ("scenes", "objects")
"""SoundNet's heads in the order reports and pictures show them; other heads (a trained head's ``classes``) follow."""

ANNOTATE_MAX_CELLS = 160
"""Heatmaps with at most this many cells (frames x rows) print each cell's score in it."""

LABEL_CHARS = 32


def ordered_heads(result: ClipResult) -> list[str]:
    """The result's head names in :data:`HEAD_ORDER`, then the others by name."""
    return sorted(result.heads, key=lambda h: (HEAD_ORDER.index(h) if h in HEAD_ORDER else len(HEAD_ORDER), h))


def timeline_rows(scores: HeadScores, k: int) -> list[int]:
    """Classes (columns of ``scores``) a heatmap shows: the ``k`` with the highest score in any frame, and every
    frame's best class, ordered by that highest score; at most ``2 k``. Rows chosen by frame, not by the clip's
    mean, so that a sound heard in a few frames of a long file still gets its row."""
    values = np.asarray(scores.values, np.float64)
    peak = values.max(axis=0)
    order = np.argsort(-peak, kind="stable")
    chosen = set(order[:k].tolist()) | set(values.argmax(axis=1).tolist())
    return [int(c) for c in order if c in chosen][: 2 * k]


def short_label(label: str) -> str:
    """A label short enough for a row name: the first of ImageNet's synonyms, at most :data:`LABEL_CHARS`."""
    text = str(label).split(",")[0].strip() or str(label)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _heatmap(fig, ax, result: ClipResult, head: str, edges: np.ndarray, k: int) -> None:
    from matplotlib.colors import TwoSlopeNorm  # heavy (matplotlib): only when a picture is drawn

    scores = result.heads[head]
    rows = timeline_rows(scores, k)
    values = np.asarray(scores.values, np.float64)[:, rows].T  # (rows, frames)
    if scores.kind == "probability":
        cmap, norm, what = "viridis", None, "probability"
        vmax = max(float(values.max()), 1e-6)
        mesh = ax.pcolormesh(edges, np.arange(len(rows) + 1), values, cmap=cmap, vmin=0.0, vmax=vmax)
    else:
        spread = max(float(np.abs(values).max()), 1e-6)
        norm, what = TwoSlopeNorm(0.0, -spread, spread), "decision value"
        mesh = ax.pcolormesh(edges, np.arange(len(rows) + 1), values, cmap="RdBu_r", norm=norm)
    ax.set_yticks(np.arange(len(rows)) + 0.5, [short_label(scores.labels[r]) for r in rows], fontsize="small")
    ax.set_ylim(len(rows), 0)  # the best class on top
    ax.set_ylabel(head)
    fig.colorbar(mesh, ax=ax, label=what, pad=0.01, fraction=0.03)
    if values.size <= ANNOTATE_MAX_CELLS:
        centres = (edges[:-1] + edges[1:]) / 2
        colours = mesh.cmap(mesh.norm(values))
        for (row, frame), value in np.ndenumerate(values):
            light = colours[row, frame, :3] @ np.array([0.299, 0.587, 0.114]) > 0.5
            text = f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
            ax.text(centres[frame], row + 0.5, text, ha="center", va="center", fontsize="x-small",
                    color="black" if light else "white")  # fmt: skip


def _padding_strip(ax, result: ClipResult, edges: np.ndarray, end: float) -> None:
    ax.broken_barh([(0.0, result.duration)], (1.05, 0.9), facecolors="tab:blue")
    ax.text(result.duration / 2, 1.5, f"clip ({result.duration:.2f} s)", ha="center", va="center", color="white",
            fontsize="small")  # fmt: skip
    if end > result.duration:
        ax.broken_barh([(result.duration, end - result.duration)], (1.05, 0.9), facecolors="0.85", hatch="//")
        ax.text((result.duration + end) / 2, 1.5, "the clip repeated", ha="center", va="center", fontsize="small",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})  # fmt: skip
    padded = np.zeros(len(edges) - 1, bool) if result.padded_frames is None else np.asarray(result.padded_frames)
    spans = [(float(a), float(b - a)) for a, b in itertools.pairwise(edges)]
    colours = ["tab:orange" if p else "0.75" for p in padded]
    ax.broken_barh(spans, (0.05, 0.9), facecolors=colours, edgecolors="white")
    ax.set_yticks([0.5, 1.5], ["frames", "audio"], fontsize="small")
    ax.set_ylim(0, 2)
    ax.set_title("orange frames heard repeated audio", fontsize="small", loc="right")


def _event_panel(ax, events: Sequence[Event], head: str | None) -> None:
    labels = list(dict.fromkeys(e.label for e in sorted(events, key=lambda e: (e.onset, e.label))))
    for row, label in enumerate(labels):
        spans = [(e.onset, e.duration) for e in events if e.label == label]
        ax.broken_barh(spans, (row + 0.15, 0.7), facecolors=f"C{row % 10}")
    ax.set_yticks(np.arange(len(labels)) + 0.5, [short_label(label) for label in labels], fontsize="small")
    ax.set_ylim(max(len(labels), 1), 0)
    ax.set_ylabel(f"events\n({head})" if head else "events")
    if not labels:
        ax.text(0.5, 0.5, "no events detected", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_yticks([])
    ax.grid(axis="x", alpha=0.3)


def timeline_figure(
    result: ClipResult,
    *,
    top_k: int = 5,
    events: Sequence[Event] | None = None,
    event_head: str | None = None,
):
    """The matplotlib ``Figure`` of :func:`plot_timeline` (Agg canvas): the padding strip (padded clips only), one
    heatmap per head, and the event panel when ``events`` is given, in that order in ``figure.axes``."""
    from matplotlib.figure import Figure  # heavy (matplotlib, ~0.3 s): only when a picture is drawn

    heads = ordered_heads(result)
    k = max(1, min(int(top_k), 10))
    end = max(float(result.duration), float(result.times.end.max(initial=0.0)))
    edges = frame_edges(result.times.center, 0.0, end)
    heights = [0.6 + 0.28 * len(timeline_rows(result.heads[h], k)) for h in heads]
    if result.padded:
        heights.insert(0, 0.55)
    if events is not None:
        heights.append(0.6 + 0.3 * max(1, len({e.label for e in events})))
    fig = Figure(figsize=(11, 1.1 + sum(heights)), layout="constrained")
    axes = list(fig.subplots(len(heights), 1, sharex=True, squeeze=False, height_ratios=heights)[:, 0])
    panels = list(axes)
    if result.padded:
        _padding_strip(axes.pop(0), result, edges, end)
    for ax, head in zip(axes, heads, strict=False):
        _heatmap(fig, ax, result, head, edges, k)
    if events is not None:
        _event_panel(axes[-1], events, event_head)
    if end > result.duration:
        for ax in panels:
            ax.axvline(result.duration, color="tab:red", linestyle="--", linewidth=1)
    axes[-1].set_xlim(0, end)
    looped = f"; the clip ends at the red line, then repeats ({end:.2f} s fed)" if end > result.duration else ""
    axes[-1].set_xlabel(f"time (s){looped}")
    plural = "s" if result.frames != 1 else ""
    fig.suptitle(f"{Path(result.source).name or 'clip'}: {result.duration:.2f} s, {result.frames} frame{plural}")
    return fig


def plot_timeline(
    result: ClipResult,
    path: str | os.PathLike,
    *,
    top_k: int = 5,
    events: Sequence[Event] | None = None,
    event_head: str | None = None,
) -> Path:
    """Draw ``result`` as heatmaps over time (see the module docstring) to an image file, and ``events`` (of
    ``event_head``) as bars below when given; ``top_k`` sets how many classes each heatmap shows (at least that
    many, at most twice). Returns the path."""
    path = Path(path)
    timeline_figure(result, top_k=top_k, events=events, event_head=event_head).savefig(path)
    return path
