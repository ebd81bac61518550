"""Per-file, resumable feature extraction into an output folder (what ``soundnet-extract`` runs).

:func:`extract_to_folder` takes :class:`~.jobs.Job` s (input file → output path), skips those the manifest records
as done with the same settings (unless ``overwrite``), and for the others decodes the audio in threads, runs the
network on batches of clips (``batch_size`` clips at a time: memory is bounded by the batch and the decoding queue,
not by the number of files), writes one feature file per input atomically (:mod:`.formats`) and appends one
manifest line per input (:mod:`.manifest`). A file that fails (unreadable, too short with ``pad=None``) is recorded
as failed with its error and retried by the next run (features an earlier run wrote for it are removed: they
describe what the file no longer is); the others are unaffected.

The pieces are shared with the Apache Beam pipeline (:mod:`.beam_pipeline`): :func:`prepare_run` (everything
before the first input: temporaries, manifest, done inputs skipped), :class:`FeatureWriter` (a batch of decoded
inputs → written feature files and one :class:`Outcome` each) and :func:`record_outcome` (the manifest line).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import soundfile

from ..audio import Decoded, check_channels, decode_files
from ..errors import SoundNetError
from ..files import sha256_file
from ..progress import Progress
from ..running import run_clip, run_clips
from .formats import FORMATS, check_format, provenance, write_feature_file
from .jobs import Job
from .manifest import Manifest, input_stamp

Say = Callable[[str], None]


@dataclass
class ExtractionSummary:
    """What a run did: inputs written, skipped as already done, and failed (input path → error)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    removed_temporaries: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.written) + len(self.skipped) + len(self.failed)


def settings_digest(
    *, layers: Sequence[str], fmt: str, pad: str | None, channels: str, weights_sha256: str, precision: str
) -> str:
    """The digest of everything that changes an output's content: a done entry with another digest is redone."""
    text = json.dumps(
        {
            "layers": list(layers),
            "format": fmt,
            "pad": pad,
            "channels": channels,
            "weights_sha256": weights_sha256,
            "precision": precision,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def remove_temporaries(folder: Path, jobs: Sequence[Job]) -> int:
    """Delete what a killed run left half-written: the hidden temporaries (``.NAME.<random>SUFFIX``) of the
    outputs of ``jobs`` in ``folder``. Returns how many were removed. One pass over each output sub-folder."""
    by_folder: dict[Path, set[str]] = {}
    for job in jobs:
        by_folder.setdefault((folder / job.output).parent, set()).add(job.output.name)
    removed = 0
    pattern = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}(?:\.[A-Za-z0-9]+)?$")
    for sub, names in by_folder.items():
        if not sub.is_dir():
            continue
        for entry in os.scandir(sub):
            match = pattern.match(entry.name)
            if match and match.group("name") in names and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


@dataclass(frozen=True)
class Outcome:
    """What happened to one input: ``done`` (its feature file written) or ``failed`` with the error; the seconds it
    took (its share of the batch's forward pass included) and notes for the user (e.g. a truncated file)."""

    input: Path
    output: Path
    status: str
    error: str | None = None
    seconds: float | None = None
    notes: tuple[str, ...] = ()


def record_outcome(manifest: Manifest, outcome: Outcome, settings: str, stamp: tuple[int | None, int | None]) -> None:
    """Append ``outcome`` to ``manifest`` (``stamp``: the input's size and mtime as read before extraction)."""
    manifest.record(
        outcome.input,
        outcome.output,
        outcome.status,
        settings,
        error=outcome.error,
        seconds=outcome.seconds,
        stamp=stamp,
    )


class FeatureWriter:
    """Computes and writes one feature file per input for batches of decoded inputs, and says what happened to each:
    the one implementation of "extract and write" that :func:`extract_to_folder` (one process) and the Apache Beam
    workers (:mod:`.beam_pipeline`) share.

    ``net`` is a loaded :class:`~soundnet_keras.SoundNet`; ``folder`` the output folder that the jobs' outputs are
    relative to; ``weights_sha256`` the digest of the network's parameters (computed when not given). Writing a
    file is atomic; the manifest is not touched (its single writer records the returned :class:`Outcome` s).
    """

    def __init__(
        self,
        net,
        folder: str | os.PathLike,
        *,
        layers: Sequence[str] = ("pool5",),
        fmt: str = "npz",
        pad: str | None = "repeat",
        weights_sha256: str | None = None,
    ) -> None:
        from ..architecture import check_pad
        from ..architecture import sample_rate as network_rate
        from ..transfer.features import model_identity  # imports Keras: only with a network

        self.net = net
        self.folder = Path(folder)
        self.layers = tuple(dict.fromkeys(layers))
        self.fmt = check_format(fmt)
        self.pad = check_pad(pad)
        self.geometries = {name: net.geometry(name) for name in self.layers}  # validates the names before any work
        self.sample_rate = network_rate(net.arch)
        """The rate inputs are decoded at: the network's."""
        self.weights_sha256 = weights_sha256 or model_identity(net)

    def settings(self, channels: str) -> str:
        """The manifest's settings digest of this writer's outputs from inputs decoded with ``channels``."""
        return settings_digest(
            layers=self.layers,
            fmt=self.fmt,
            pad=self.pad,
            channels=check_channels(channels),
            weights_sha256=self.weights_sha256,
            precision=self.net.precision,
        )

    def _features(self, batch: Sequence[tuple[Job, Decoded]]) -> dict[Path, dict]:
        """Features of the decodable clips of ``batch`` by input, in one pass per clip length; empty when one clip
        fails (each is then run alone, so its error names it)."""
        good = [(job, item) for job, item in batch if item.ok]
        if not good:
            return {}
        net = self.net
        try:
            outputs = run_clips(
                net.forward,
                net.arch,
                [i.waveform for _, i in good],
                self.layers,
                self.pad,
                len(good),
                net.chunk_seconds,
            )
        except SoundNetError:
            return {}
        return {job.input: out for (job, _), out in zip(good, outputs, strict=True)}

    def write_batch(self, batch: Sequence[tuple[Job, Decoded]]) -> list[Outcome]:
        """Write the feature file of every decoded input of ``batch``; one :class:`Outcome` per input, in order. A
        failed input's earlier output is removed (it describes what the input no longer is)."""
        started = time.monotonic()
        computed = self._features(batch)
        share = (time.monotonic() - started) / max(len(computed), 1)
        outcomes = []
        for job, item in batch:
            began = time.monotonic()
            try:
                if not item.ok:
                    raise item.error
                features = computed.get(job.input)
                if features is None:
                    net = self.net
                    features = run_clip(net.forward, net.arch, item.waveform, self.layers, self.pad, net.chunk_seconds)
                self._write(job, item, features)
            except (SoundNetError, OSError) as exc:
                message = str(exc) if str(job.input) in str(exc) else f"{str(job.input)!r}: {exc}"
                (self.folder / job.output).unlink(missing_ok=True)
                outcomes.append(Outcome(job.input, job.output, "failed", error=message))
            else:
                seconds = time.monotonic() - began + (share if job.input in computed else 0.0)
                outcomes.append(Outcome(job.input, job.output, "done", seconds=seconds, notes=tuple(item.notes)))
        return outcomes

    def _write(self, job: Job, item: Decoded, features: dict) -> None:
        from .. import __version__

        target = self.folder / job.output
        target.parent.mkdir(parents=True, exist_ok=True)
        record = provenance(
            input_path=os.path.abspath(job.input),
            input_sha256=sha256_file(job.input),
            duration_s=item.duration,
            input_sample_rate=_source_rate(job.input),
            features=features,
            geometries=self.geometries,
            pad=self.pad,
            architecture=self.net.arch,
            weights=str(self.net.weights_source),
            weights_sha256=self.weights_sha256,
            precision=self.net.precision,
            version=__version__,
        )
        write_feature_file(target, self.fmt, features, record)


@dataclass
class PreparedRun:
    """An output folder made ready for a run: its writer and settings digest, the manifest read, the temporaries of
    a killed run removed, and the jobs split into already done (in ``summary.skipped``) and ``pending``."""

    writer: FeatureWriter
    channels: str
    settings: str
    manifest: Manifest
    summary: ExtractionSummary
    pending: list[Job]
    started: float

    @property
    def folder(self) -> Path:
        return self.writer.folder

    def record(self, outcome: Outcome, stamp: tuple[int | None, int | None], say: Say) -> None:
        """Append ``outcome`` to the manifest, count it in the summary and tell ``say`` its error or notes."""
        record_outcome(self.manifest, outcome, self.settings, stamp)
        self.tally(outcome, say)

    def tally(self, outcome: Outcome, say: Say) -> None:
        """Count ``outcome`` (already in the manifest) in the summary and tell ``say`` its error or notes."""
        if outcome.status == "done":
            self.summary.written.append(outcome.output)
            for note in outcome.notes:
                say(f"note: {str(outcome.input)!r}: {note}")
        else:
            self.summary.failed[str(outcome.input)] = outcome.error or "failed"
            say(f"error: {outcome.error}")

    def finish(self) -> ExtractionSummary:
        """Close the manifest and return the summary with the run's duration."""
        self.manifest.close()
        self.summary.seconds = time.monotonic() - self.started
        return self.summary


def prepare_run(
    net,
    jobs: Sequence[Job],
    output_dir: str | os.PathLike,
    *,
    layers: Sequence[str] = ("pool5",),
    fmt: str = "npz",
    pad: str | None = "repeat",
    channels: str = "mix",
    overwrite: bool = False,
    say: Say | None = None,
) -> PreparedRun:
    """Everything a run does before the first input is extracted, whichever engine extracts (see
    :func:`extract_to_folder` for the arguments): skipping done inputs happens here, before any pipeline is built."""
    say = say or (lambda message: None)
    check_channels(channels)
    folder = Path(output_dir)
    writer = FeatureWriter(net, folder, layers=layers, fmt=fmt, pad=pad)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary = ExtractionSummary(removed_temporaries=remove_temporaries(folder, jobs))
    if summary.removed_temporaries:
        say(f"removed {summary.removed_temporaries} half-written file(s) that an interrupted run left in {folder}")
    manifest = Manifest(folder)
    if manifest.skipped_lines:
        say(f"skipped {manifest.skipped_lines} unreadable line(s) of {manifest.path} (an interrupted write)")
    settings = writer.settings(channels)
    pending = []
    for job in jobs:
        if not overwrite and manifest.is_done(job.input, job.output, settings, folder):
            summary.skipped.append(job.output)
        else:
            pending.append(job)
    if summary.skipped:
        say(f"{len(summary.skipped)} of {len(jobs)} input(s) already done in {folder} (--overwrite redoes them)")
    return PreparedRun(writer, channels, settings, manifest, summary, pending, started)


def extract_to_folder(
    net,
    jobs: Sequence[Job],
    output_dir: str | os.PathLike,
    *,
    layers: Sequence[str] = ("pool5",),
    fmt: str = "npz",
    pad: str | None = "repeat",
    channels: str = "mix",
    overwrite: bool = False,
    batch_size: int = 8,
    workers: int | None = None,
    progress: str = "auto",
    say: Say | None = None,
) -> ExtractionSummary:
    """Extract ``layers`` of every job's input into ``output_dir`` (see the module docstring).

    ``net`` is a :class:`~soundnet_keras.SoundNet`; ``pad`` its padding policy for short clips (``"repeat"``,
    ``"zeros"`` or None to refuse them); ``progress``: ``"auto"`` / ``"bar"`` / ``"log"`` / ``"off"`` (see
    :class:`~soundnet_keras.progress.Progress`); ``say`` receives one line per note and per failed file.
    """
    say = say or (lambda message: None)
    run = prepare_run(
        net, jobs, output_dir, layers=layers, fmt=fmt, pad=pad, channels=channels, overwrite=overwrite, say=say
    )
    pending = run.pending
    meter = Progress(len(pending), "extract", "file", mode=progress if pending else "off")

    def tell(line: str) -> None:
        meter.clear()
        say(line)

    def write(batch: list[tuple[Job, Decoded]]) -> None:
        for (job, _), outcome in zip(batch, run.writer.write_batch(batch), strict=True):
            run.record(outcome, stamps[job.input], tell)
            meter.update()

    try:
        stamps = {job.input: input_stamp(job.input) for job in pending}  # before decoding: a later change redoes
        decoded = decode_files(
            [j.input for j in pending],
            target_rate=run.writer.sample_rate,
            channels=channels,
            workers=workers,
            prefetch=batch_size,
        )
        batch: list[tuple[Job, Decoded]] = []
        for job, item in zip(pending, decoded, strict=True):
            batch.append((job, item))
            if len(batch) >= batch_size:
                write(batch)
                batch = []
        if batch:
            write(batch)
    finally:
        meter.close()
    return run.finish()


def _source_rate(path: Path) -> int | None:
    """The input file's own sample rate, from its header (None when it cannot be read)."""
    try:
        return int(soundfile.info(str(path)).samplerate)
    except (RuntimeError, OSError, ValueError, TypeError):
        return None


__all__ = [
    "FORMATS",
    "ExtractionSummary",
    "FeatureWriter",
    "Outcome",
    "PreparedRun",
    "extract_to_folder",
    "prepare_run",
    "record_outcome",
    "remove_temporaries",
    "settings_digest",
]
