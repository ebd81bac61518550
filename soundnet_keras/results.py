"""What was heard when: the one result type of the package (and :class:`Features`, a layer's activations).

:class:`ClipResult` holds, for one clip, the scores of one or more heads per output frame (:class:`HeadScores`) with
the frames' times, the clip's duration and source, and what the padding policy did. SoundNet's own heads
(:meth:`SoundNet.predict <soundnet_keras.model.SoundNet.predict>`: heads ``objects`` and ``scenes``), a trained
classifier head (:meth:`ClipClassifier.predict_files <soundnet_keras.transfer.ClipClassifier.predict_files>`: head
``classes``, one frame per window) and a fine-tuned network (head ``classes``, one frame for the clip) all return it,
and every CLI format (text, JSON, CSV, plot) reads only it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .architecture import SAMPLE_RATE, FrameTimes
from .errors import ConfigError

SCORE_KINDS = ("probability", "decision")


@dataclass
class Features:
    """Activations of one layer for one clip (or a batch of equal-length clips).

    ``values`` is (frames, channels), or (batch, frames, channels) for ``batch=True``; ``times`` gives each frame's
    receptive-field start, centre and end in seconds, clipped to the clip (to the 20-s loop for a clip repeated to
    it); ``input_samples`` is the clip's length and ``num_samples`` the length the network saw (at ``sample_rate``);
    ``padded`` says whether padding appended anything, and ``padded_frames`` which frames read appended audio (see
    :func:`~soundnet_keras.architecture.plan_input`).
    """

    layer: str
    values: np.ndarray
    times: FrameTimes
    num_samples: int
    padded: bool = False
    input_samples: int = 0
    padded_frames: np.ndarray | None = None
    sample_rate: int = SAMPLE_RATE
    """Rate (Hz) of ``num_samples`` and ``input_samples``: the network's (22,050 Hz SoundNet, 48 kHz L³-Net)."""

    @property
    def padded_to_s(self) -> float | None:
        """Seconds the clip was padded to, or None when nothing was appended."""
        return self.num_samples / self.sample_rate if self.padded else None


@dataclass
class HeadScores:
    """One head's scores: ``values`` (frames, classes), the class ``labels`` in column order, and their ``kind``
    (``"probability"``: softmax outputs; ``"decision"``: an SVM's decision values). ``clip`` holds the clip's own
    scores where the classifier aggregates frames its own way (e.g. a maximum over windows); otherwise the clip's
    score is the mean over frames."""

    values: np.ndarray
    labels: Sequence[str]
    kind: str = "probability"
    clip: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCORE_KINDS:
            raise ConfigError(f"score kind must be one of {SCORE_KINDS}, got {self.kind!r}")

    def scores(self, frame: int | None = None) -> np.ndarray:
        """Scores of one frame, or of the clip when ``frame`` is None."""
        if frame is None:
            return self.values.mean(axis=-2) if self.clip is None else self.clip
        frames = self.values.shape[-2]
        if not -frames <= frame < frames:
            raise ConfigError(f"frame {frame} out of range: this result has {frames} frames")
        return self.values[..., frame, :]

    def top(self, k: int = 5, frame: int | None = None) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring labels with their scores, for the clip or one frame."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        scores = self.scores(frame)
        if scores.ndim != 1:
            raise ConfigError("top() works on one clip; index a batched result's arrays directly")
        order = np.argsort(-scores, kind="stable")[:k]
        return [(str(self.labels[i]), float(scores[i])) for i in order]


@dataclass
class ClipResult:
    """Scores per head and frame for one clip, with frame times (seconds) and what padding did.

    ``times`` are each frame's receptive-field (or window) start, centre and end; ``duration`` the clip's length
    in seconds; ``source`` its file (or a description of the waveform); ``padded_to_s`` the length the network was
    fed when the padding policy appended audio (None otherwise) and ``padded_frames`` which frames heard that audio.
    """

    heads: dict[str, HeadScores]
    times: FrameTimes
    duration: float
    source: str = ""
    padded_to_s: float | None = None
    padded_frames: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.times.start)

    @property
    def padded(self) -> bool:
        return self.padded_to_s is not None

    def head(self, name: str) -> HeadScores:
        """The scores of head ``name``."""
        if name not in self.heads:
            raise ConfigError(f"head must be one of {', '.join(map(repr, self.heads))}, got {name!r}")
        return self.heads[name]

    def top(self, head: str, k: int = 5, frame: int | None = None) -> list[tuple[str, float]]:
        """The ``k`` best labels of ``head`` with their scores (clip, or one frame)."""
        return self.head(head).top(k, frame)

    def label(self, head: str | None = None) -> str:
        """The clip's best label (of ``head``; the only head when there is one)."""
        if head is None:
            if len(self.heads) != 1:
                raise ConfigError(f"this result has heads {list(self.heads)}: name one")
            head = next(iter(self.heads))
        return self.top(head, 1)[0][0]

    def frame_padded(self, frame: int) -> bool:
        """Whether frame ``frame`` read audio that the padding appended."""
        return bool(self.padded_frames is not None and self.padded_frames[frame])


def frame_times_from_spans(start: np.ndarray, end: np.ndarray) -> FrameTimes:
    """:class:`FrameTimes` of frames (or windows) given by their start and end in seconds."""
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    return FrameTimes(start, (start + end) / 2, end)
