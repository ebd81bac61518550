"""Run SoundNet over inputs of any length (hours) in chunks, with bounded memory and the result of one pass.

Every number comes from the layer table (:mod:`soundnet_keras.architecture`). Two facts make chunking exact:

* **Alignment.** A chunk starting at input sample ``a`` where ``a`` is a multiple of the product of all strides on
  the way to the requested outputs (their *hop*) computes, at every layer, the whole-input feature map shifted by an
  integer number of positions: frame ``i`` of the chunk is frame ``i + a / hop`` of the whole input.
* **Validity.** Near a chunk's edges each layer's zero padding (and the missing input beyond the chunk) makes some
  positions differ from the whole-input pass. :func:`valid_frames` propagates, layer by layer, the interval of
  positions whose every input is either a real sample of the chunk or padding that the whole-input pass pads too
  (at the true start and end of the input). Only those frames are kept.

:func:`plan_chunks` walks the input with chunks of about ``chunk_samples`` samples, starting each chunk at the
aligned position just before the receptive field of the first frame still missing, so the kept frames of
consecutive chunks tile every output exactly once; :func:`run_chunked` runs a model over that plan and fills
preallocated outputs. Memory is the input, the outputs and one chunk's activations, whatever the length; the values
equal one pass to float32 round-off (different convolution sizes may sum in a different order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .architecture import conv_output_length, geometry, output_length, path_to
from .errors import ConfigError
from .validation import check_positive

_INF = math.inf


@dataclass(frozen=True)
class Chunk:
    """One chunk of the plan: input samples ``[start, stop)`` and, per output, the chunk-local frames to keep.

    ``keep[name] = (first, last, frame)``: keep chunk frames ``[first, last)`` as whole-input frames
    ``[frame, frame + last - first)``.
    """

    start: int
    stop: int
    keep: Mapping[str, tuple[int, int, int]]

    @property
    def length(self) -> int:
        return self.stop - self.start


def valid_frames(arch: str, name: str, start: int, stop: int, total: int) -> tuple[int, int]:
    """Chunk-local frames ``[first, last)`` of output ``name`` that equal the whole-input pass exactly.

    The chunk is input samples ``[start, stop)`` of an input of ``total`` samples; ``start`` must be a multiple of
    the output's hop (see the module docstring). An edge of the chunk that is also an edge of the input behaves
    like the whole pass there (the same zero padding), any other edge invalidates the frames it reaches.
    """
    if not 0 <= start < stop <= total:
        raise ConfigError(f"chunk [{start}, {stop}) is not inside an input of {total} samples")
    if start % geometry(arch, name).hop:
        raise ConfigError(f"chunk start {start} is not a multiple of {name!r}'s hop {geometry(arch, name).hop}")
    lo: float = -_INF if start == 0 else 0
    hi: float = _INF if stop == total else stop - start
    length = stop - start
    for layer in path_to(arch, name):
        k, s, p = layer.kernel, layer.stride, layer.pad
        length = conv_output_length(length, k, s, p)
        # output i reads inputs [i*s - p, i*s - p + k): all must lie in [lo, hi)
        lo = -_INF if lo == -_INF else max(0, math.ceil((lo + p) / s))
        hi = _INF if hi == _INF else max(0, (hi + p - k) // s + 1)
    first = 0 if lo == -_INF else int(min(lo, length))
    last = length if hi == _INF else int(min(hi, length))
    return first, max(first, last)


def min_chunk_samples(arch: str, names: Iterable[str]) -> int:
    """Smallest chunk length :func:`plan_chunks` accepts: two receptive fields of the deepest output plus two hops."""
    geos = [geometry(arch, n) for n in names]
    hop = math.lcm(*(g.hop for g in geos))
    need = 2 * max(g.receptive_field for g in geos) + 2 * hop
    return -(-need // hop) * hop


def plan_chunks(arch: str, names: Iterable[str], total: int, chunk_samples: int) -> list[Chunk]:
    """Plan chunks of about ``chunk_samples`` input samples covering every frame of ``names`` exactly once.

    ``chunk_samples`` is rounded up to a multiple of the outputs' common hop and to at least
    :func:`min_chunk_samples`. An input no longer than that is one chunk (a plain pass).
    """
    names = tuple(dict.fromkeys(names))
    if not names:
        raise ConfigError("plan_chunks needs at least one output name")
    chunk_samples = check_positive(chunk_samples, "chunk_samples", integer=True)
    geos = {n: geometry(arch, n) for n in names}
    hop = math.lcm(*(g.hop for g in geos.values()))
    size = max(-(-int(chunk_samples) // hop) * hop, min_chunk_samples(arch, names))
    frames = {n: output_length(arch, n, total) for n in names}
    if total <= size:
        return [Chunk(0, total, {n: (0, frames[n], 0) for n in names})]
    plan: list[Chunk] = []
    done = dict.fromkeys(names, 0)
    start = 0
    while True:
        stop = min(total, start + size)
        keep = {}
        for name in names:
            shift = start // geos[name].hop
            first, last = valid_frames(arch, name, start, stop, total)
            wanted = done[name] - shift
            if wanted < first:  # cannot happen with the start rule below; guards the invariant
                raise ConfigError(f"chunk plan left a gap in {name!r} at frame {done[name]}")
            last = min(last, frames[name] - shift)
            keep[name] = (wanted, max(wanted, last), done[name])
            done[name] = max(done[name], last + shift)
        plan.append(Chunk(start, stop, keep))
        if stop == total:
            break
        missing = [geos[n].offset + done[n] * geos[n].hop for n in names if done[n] < frames[n]]
        if not missing:
            break
        next_start = max(0, min(missing) // hop * hop)
        if next_start <= start:
            raise ConfigError(f"chunks of {size} samples are too short to make progress for {names}")
        start = next_start
    for name in names:
        if done[name] != frames[name]:
            raise ConfigError(f"chunk plan covers {done[name]} of {frames[name]} frames of {name!r}")
    return plan


def run_chunked(
    forward: Callable[[np.ndarray, tuple[str, ...]], Mapping[str, np.ndarray]],
    arch: str,
    waveform: np.ndarray,
    names: Iterable[str],
    chunk_samples: int,
    tail: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Outputs ``names`` of a (samples,) or (batch, samples) waveform at 22,050 Hz, computed chunk by chunk.

    ``forward(batch, names)`` runs the network on a (batch, samples) float32 array (e.g. :meth:`SoundNet.forward`).
    ``tail`` (same leading shape) is appended after ``waveform`` without copying it (the padding policy's end
    extension, :meth:`~soundnet_keras.architecture.InputPlan.appended`). Returns arrays shaped like one pass:
    (frames, channels), or (batch, frames, channels) for a batch.
    """
    names = tuple(dict.fromkeys(names))
    batch = waveform if waveform.ndim == 2 else waveform[None]
    extra = np.zeros((batch.shape[0], 0), batch.dtype) if tail is None else tail.reshape(batch.shape[0], -1)
    length = batch.shape[-1]
    total = length + extra.shape[-1]
    plan = plan_chunks(arch, names, total, chunk_samples)
    outputs: dict[str, np.ndarray] = {}
    for chunk in plan:
        piece = batch[:, chunk.start : min(chunk.stop, length)]
        if chunk.stop > length:
            piece = np.concatenate([piece, extra[:, max(0, chunk.start - length) : chunk.stop - length]], axis=-1)
        values = forward(np.ascontiguousarray(piece, dtype=np.float32), names)
        for name in names:
            first, last, frame = chunk.keep[name]
            if name not in outputs:
                frames = output_length(arch, name, total)
                outputs[name] = np.empty((batch.shape[0], frames, values[name].shape[-1]), np.float32)
            outputs[name][:, frame : frame + last - first] = values[name][:, first:last]
    return outputs if waveform.ndim == 2 else {name: array[0] for name, array in outputs.items()}
