"""Feature extraction as an Apache Beam pipeline: ``soundnet-extract --runner NAME`` (extra ``[beam]``).

The same files as the single-process path (:func:`~.run.extract_to_folder`), computed by Beam workers::

    jobs not yet done ─ Create ─ BatchElements ─ ParDo(ExtractFeatures) ─ one shard ─ ParDo(RecordOutcomes)
    (the driver skips                            setup(): the model, once   GroupByKey   appends the manifest
     done inputs first)                          per worker; each batch:                lines, in input order
                                                 decode, run, write files

:class:`ExtractFeatures` loads the network once per worker (:meth:`~ExtractFeatures.setup`, from the weights and
precision the driver used, checked against the driver's weights digest) and writes each input's feature file with
:class:`~.run.FeatureWriter`, the class the single-process loop uses, so the files and their provenance are the
same. The manifest keeps a single writer: the outcomes go through one shard to :class:`RecordOutcomes`, which
appends them. A killed pipeline leaves complete feature files or none (every write is atomic) and no manifest
line for its inputs, so a rerun, with Beam or without, redoes exactly those.

Any Beam runner runs it: the DirectRunner locally (``direct_num_workers`` / ``direct_running_mode``), or Flink,
Spark, Dataflow with their standard pipeline options; the workers need this package installed and the inputs
and the output folder on a file system they share with the driver (feature files are written with POSIX paths).
Apache Beam is imported by this module only: the rest of the package never needs it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
    from apache_beam.runners.runner import PipelineState
except ImportError as exc:  # the optional extra
    from ..errors import ConfigError

    raise ConfigError(
        f'the Beam runners need Apache Beam, which is not installed ({exc}): pip install "soundnet-keras[beam]"'
    ) from None

from ..audio import decode_files
from ..errors import ConfigError, PipelineError
from .jobs import Job
from .manifest import Manifest, input_stamp
from .run import ExtractionSummary, Outcome, PreparedRun, Say, prepare_run, record_outcome

LOG = logging.getLogger(__name__)
RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")
"""``direct_running_mode`` values of Beam's DirectRunner."""
DEFAULT_LOG_LEVEL = "ERROR"
"""Beam's log level on the workers and the driver unless ``--default_sdk_harness_log_level`` says otherwise (Beam's
own default, INFO, prints a dozen lines per worker and bundle)."""


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to compute the driver's features: the network (weights as the driver named them,
    precision, chunk length, and the digest its parameters must have), layers, format, padding, channels, the
    output folder, and the decoding threads per batch."""

    weights: str
    precision: str
    chunk_seconds: float
    weights_sha256: str
    layers: tuple[str, ...]
    fmt: str
    pad: str | None
    channels: str
    folder: str
    decode_workers: int | None


class ExtractFeatures(beam.DoFn):
    """Beam ``DoFn``: batches of job elements (dicts ``index``, ``input``, ``output``, ``size``, ``mtime_ns``) in,
    one outcome element per input out, after writing its feature file. The network is loaded once per worker."""

    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__()
        self.settings = settings
        self._writer = None

    def setup(self) -> None:
        """Load the network (once per worker) and check that it is the driver's."""
        from ..cli.common import quiet_native_stderr

        s = self.settings
        with quiet_native_stderr():  # TensorFlow's import-time lines, once per worker
            from ..loading import load_network  # imports Keras and its backend
            from .run import FeatureWriter

            net = load_network(s.weights, verbose=False, precision=s.precision)
            net.chunk_seconds = s.chunk_seconds
            writer = FeatureWriter(net, s.folder, layers=s.layers, fmt=s.fmt, pad=s.pad)
        if writer.weights_sha256 != s.weights_sha256:
            raise ConfigError(
                f"the weights {s.weights!r} on this worker have parameter digest {writer.weights_sha256}, expected "
                f"the driver's {s.weights_sha256}: give every worker the same weights file"
            )
        self._writer = writer

    def process(self, batch: Sequence[dict]) -> Iterator[dict]:
        jobs = [Job(Path(element["input"]), Path(element["output"])) for element in batch]
        decoded = decode_files(
            [job.input for job in jobs],
            target_rate=self._writer.sample_rate,
            channels=self.settings.channels,
            workers=self.settings.decode_workers,
            prefetch=len(jobs),
        )
        outcomes = self._writer.write_batch(list(zip(jobs, decoded, strict=True)))
        for element, outcome in zip(batch, outcomes, strict=True):
            yield {**element, "outcome": outcome}


class RecordOutcomes(beam.DoFn):
    """Beam ``DoFn`` of the single shard: appends every outcome to the output folder's manifest, in input order."""

    def __init__(self, folder: str, settings: str) -> None:
        super().__init__()
        self.folder = folder
        self.settings = settings

    def process(self, keyed: tuple[int, Iterable[dict]]) -> Iterator[int]:
        _, elements = keyed
        manifest = Manifest(Path(self.folder))
        try:
            for element in sorted(elements, key=lambda e: e["index"]):
                outcome: Outcome = element["outcome"]
                record_outcome(manifest, outcome, self.settings, (element["size"], element["mtime_ns"]))
                for note in outcome.notes:
                    LOG.warning("note: %r: %s", str(outcome.input), note)
                yield element["index"]
        finally:
            manifest.close()


LOCAL_ENGINES = {
    "direct": "apache_beam.runners.portability.fn_api_runner.FnApiRunner",
    "directrunner": "apache_beam.runners.portability.fn_api_runner.FnApiRunner",
}
"""``--runner direct`` runs Beam's Python FnApiRunner, the local engine Beam's DirectRunner uses (and honours
``direct_num_workers`` / ``direct_running_mode``). Beam 2.77's DirectRunner would first try Prism, a binary it
downloads from GitHub: with no network that fails and it falls back to this engine, with network it runs another
one. Naming the engine gives the same, tested run everywhere and never reaches out. ``--runner prism`` still
asks for Prism."""


def pipeline_options(
    runner: str,
    pipeline_args: Sequence[str] = (),
    *,
    direct_num_workers: int | None = None,
    direct_running_mode: str | None = None,
) -> PipelineOptions:
    """Beam ``PipelineOptions`` of ``runner`` and the standard Beam options in ``pipeline_args``
    (``["--project=p", "--region=r", ...]``); ``direct_*`` set the DirectRunner's ``direct_num_workers`` and
    ``direct_running_mode`` (one of :data:`RUNNING_MODES`). Beam logs at :data:`DEFAULT_LOG_LEVEL` unless
    ``--default_sdk_harness_log_level=LEVEL`` is among ``pipeline_args``."""
    if direct_running_mode is not None and direct_running_mode not in RUNNING_MODES:
        raise ConfigError(f"direct running mode {direct_running_mode!r} is not one of {', '.join(RUNNING_MODES)}")
    if direct_num_workers is not None and direct_num_workers < 1:
        raise ConfigError(f"direct_num_workers must be at least 1, got {direct_num_workers}")
    from apache_beam.runners.runner import create_runner  # Beam's own name lookup (direct, flink, a class path...)

    runner = LOCAL_ENGINES.get(runner.lower(), runner)
    try:
        create_runner(runner)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"--runner {runner!r}: {exc}") from None
    args = list(pipeline_args)
    if not any(a.split("=")[0] == "--default_sdk_harness_log_level" for a in args):
        args.append(f"--default_sdk_harness_log_level={DEFAULT_LOG_LEVEL}")
    options = PipelineOptions(args)
    options.view_as(StandardOptions).runner = runner
    level = options.get_all_options()["default_sdk_harness_log_level"] or DEFAULT_LOG_LEVEL
    logging.getLogger("apache_beam").setLevel(level)  # the driver's Beam lines at the workers' level
    direct = options.view_as(DirectOptions)
    if direct_num_workers is not None:
        direct.direct_num_workers = direct_num_workers
    if direct_running_mode is not None:
        direct.direct_running_mode = direct_running_mode
    return options


def extract_with_beam(
    net,
    jobs: Sequence[Job],
    output_dir: str | os.PathLike,
    options: PipelineOptions,
    *,
    weights: str,
    batch_size: int = 8,
    workers: int | None = None,
    say: Say | None = None,
    **settings: Any,
) -> ExtractionSummary:
    """:func:`~.run.extract_to_folder` on a Beam runner (``options``: see :func:`pipeline_options`); ``settings``
    are its ``layers``, ``fmt``, ``pad``, ``channels`` and ``overwrite``.

    ``net`` is the driver's network, loaded from ``weights`` (a preset name or a weights file every worker can
    read): the driver uses it to check the layers and to compute the settings digest that decides what is done;
    each worker loads its own copy. Done inputs are skipped before the pipeline is built (none pending: no
    pipeline); the summary is read back from the manifest the pipeline appended to. ``workers``: decoding
    threads per batch on each worker.
    """
    say = say or (lambda message: None)
    run = prepare_run(net, jobs, output_dir, say=say, **settings)
    run.manifest.close()  # the pipeline's shard appends to it
    if not run.pending:
        return run.finish()
    writer = run.writer
    worker = WorkerSettings(
        weights=str(weights),
        precision=net.precision,
        chunk_seconds=float(net.chunk_seconds),
        weights_sha256=writer.weights_sha256,
        layers=writer.layers,
        fmt=writer.fmt,
        pad=writer.pad,
        channels=run.channels,
        folder=os.path.abspath(writer.folder),
        decode_workers=workers,
    )
    elements = []
    for index, job in enumerate(run.pending):
        size, mtime_ns = input_stamp(job.input)  # before extraction: a later change redoes the input
        element = {"index": index, "input": os.path.abspath(job.input), "output": str(job.output)}
        elements.append({**element, "size": size, "mtime_ns": mtime_ns})
    runner = options.view_as(StandardOptions).runner
    runner = "direct" if runner in LOCAL_ENGINES.values() else runner  # as the user named it
    say(f"extracting {len(elements)} input(s) with Apache Beam's {runner}")
    since = run.manifest.end()
    pipeline = beam.Pipeline(options=options)
    _ = (
        pipeline
        | "Jobs" >> beam.Create(elements)
        | "Batch" >> beam.BatchElements(min_batch_size=batch_size, max_batch_size=batch_size)
        | "Extract" >> beam.ParDo(ExtractFeatures(worker))
        | "OneShard" >> beam.WithKeys(0)
        | "Gather" >> beam.GroupByKey()
        | "Record" >> beam.ParDo(RecordOutcomes(worker.folder, run.settings))
    )
    rerun = f"a rerun redoes every input whose result it did not record in {run.manifest.path}"
    try:
        state = pipeline.run().wait_until_finish()
    except Exception as exc:  # whatever the runner raises (its workers' errors arrive wrapped)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(exc).__name__
        raise PipelineError(f"the Beam pipeline on {runner} stopped: {reason}; {rerun}") from exc
    if state is not None and state != PipelineState.DONE:
        raise PipelineError(f"the Beam pipeline on {runner} ended in state {state}, expected DONE; {rerun}")
    return _summary_from_manifest(run, since, say)


def _summary_from_manifest(run: PreparedRun, since: int, say: Say) -> ExtractionSummary:
    """Count what the pipeline appended to the manifest for the pending inputs (lines from byte ``since`` on); an
    input without a line is reported failed."""
    appended = Manifest(run.folder, since=since).entries
    for job in run.pending:
        entry = appended.get(os.path.abspath(job.input))
        if entry is None:
            error = f"{str(job.input)!r}: the pipeline recorded no result for it"
            outcome = Outcome(job.input, job.output, "failed", error=error)
        else:
            outcome = Outcome(job.input, job.output, entry.status, error=entry.error)
        run.tally(outcome, say)
    return run.finish()


__all__ = [
    "RUNNING_MODES",
    "ExtractFeatures",
    "RecordOutcomes",
    "WorkerSettings",
    "extract_with_beam",
    "pipeline_options",
]
