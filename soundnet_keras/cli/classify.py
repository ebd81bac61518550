"""``soundnet-classify``: what SoundNet hears in audio files — top objects and scenes, per clip and over time.

Examples::

    soundnet-classify --example --frames
    soundnet-classify clip.wav
    soundnet-classify recordings/ more.flac --top-k 3 --frames
    soundnet-classify recordings/ --json --output results.json
    soundnet-classify long_walk.mp3 --frames --csv --plot timeline.png
    soundnet-classify recording.wav --head my.head.keras --events events.tsv --median-frames 5 --plot timeline.png

Files are decoded in parallel threads, resampled to 22,050 Hz and mixed to mono (``--channels first`` takes the
first channel, as the original scripts did). The network hears what it was trained on (20-s crops): clips shorter
than 10.98 s are repeated circularly to 20 s, a longer one whose last frame would hear padding gets up to 1.49 s of
its start appended, and the output says so (``--no-pad`` appends nothing, refuses clips under
10.98 s; see :func:`soundnet_keras.architecture.plan_input`). Clips fed with equal lengths are batched; long
files run in chunks with bounded memory. A file that cannot be used is reported on one ``error:`` line and
skipped; the exit status is 1 if any file failed.

The CLI only parses and formats: :class:`Classifier` hands decoded clips to :meth:`SoundNet.predict` and
:class:`HeadClassifier` to a trained classifier's ``predict_files``; both give the package's one result type,
:class:`~soundnet_keras.results.ClipResult`, and every output format (text, JSON, CSV, plot, event list) reads only
that: the picture is :func:`soundnet_keras.timeline.plot_timeline`, the events
:func:`soundnet_keras.events.detect_events`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..architecture import HEAD_NAMES, SAMPLE_RATE, PadMode, plan_input, reliable_min_samples
from ..audio import CHANNEL_MODES, Decoded, decode_files, example_clip
from ..errors import ConfigError, InputTooShortError, SoundNetError, TruncatedAudioWarning
from ..files import write_text_atomic
from ..precision import DEFAULT_PRECISION, precision_scope
from ..progress import Progress
from ..results import ClipResult
from ..timeline import ordered_heads, plot_timeline
from .common import (
    EXIT_FILE_FAILED,
    EXIT_OK,
    ArgumentParser,
    add_precision_argument,
    add_version_argument,
    check_output,
    input_files,
    load_model,
    positive_float,
    positive_int,
    print_error,
    run_cli,
    start_backend,
)
from .event_options import EventCollector, add_event_arguments, check_event_arguments

if TYPE_CHECKING:
    from ..model import Prediction  # heavy (TensorFlow): load_model imports it with its C++ lines hidden


class Classifier:
    """SoundNet's own heads (ImageNet objects, Places2 scenes): batches decoded clips, returns :class:`ClipResult`.

    ``pad=True`` applies the library's padding policy (:func:`~soundnet_keras.architecture.plan_input`): clips
    shorter than 10.98 s are repeated circularly to the 20-s training crop; where a longer clip's last frame would
    hear the end padding, up to 1.49 s of its start is appended. ``pad=False`` appends nothing and rejects clips
    too short for one reliable frame with :class:`~soundnet_keras.errors.InputTooShortError`.
    """

    def __init__(self, net, *, pad: bool = True, batch_size: int = 16) -> None:
        if not hasattr(net, "categories"):
            raise ConfigError(
                f"{net.arch!r} weights have no object/scene heads, so soundnet-classify needs a head trained on their "
                "embeddings: --head my.head.keras (soundnet-train-head --weights ... writes one)"
            )
        self.net = net
        self.pad: PadMode | None = "repeat" if pad else None
        self.batch_size = batch_size

    def heads(self) -> dict[str, tuple[list[str], str]]:
        """Each head's class labels and score kind."""
        return {name: (list(self.net.categories[name]), "probability") for name in HEAD_NAMES}

    def _check(self, item: Decoded) -> None:
        try:
            plan_input(self.net.arch, HEAD_NAMES, item.waveform.size, self.pad)
        except InputTooShortError as exc:
            raise exc.with_context(repr(str(item.path)), " (remove --no-pad to repeat it circularly)") from None

    def classify(self, items: Sequence[Decoded]) -> list[ClipResult | SoundNetError]:
        """Classify decoded clips (all at 22,050 Hz); clips fed with equal lengths run as one batch. Order is kept."""
        results: list[ClipResult | SoundNetError | None] = [None] * len(items)
        usable = []
        for index, item in enumerate(items):
            try:
                self._check(item)
            except SoundNetError as exc:
                results[index] = exc
                continue
            usable.append(index)
        if usable:
            clips = [items[i].waveform for i in usable]
            predictions = self.net.predict(clips, pad=self.pad, batch_size=self.batch_size)
            for index, prediction in zip(usable, predictions, strict=True):
                results[index] = self._result(items[index], prediction)
        return results  # type: ignore[return-value]

    def _result(self, item: Decoded, prediction: Prediction) -> ClipResult:
        duration = item.duration
        prediction.source = str(item.path)
        notes = prediction.notes
        padded_to = prediction.padded_to_s
        reliable_s = reliable_min_samples(self.net.arch) / SAMPLE_RATE
        if padded_to is not None and duration < reliable_s:
            notes.append(
                f"clip is {duration:.2f} s, shorter than the {reliable_s:.2f} s one reliable frame needs: repeated "
                f"circularly to {padded_to:.2f} s, the length the network was trained on (--no-pad refuses it); "
                "frame times are on that loop"
            )
        elif padded_to is not None:
            notes.append(
                f"the clip's first {padded_to - duration:.2f} s were appended at its end, so that its last frame "
                "hears audio instead of the zero padding the network was not trained on (--no-pad: drop that "
                "frame instead)"
            )
        return prediction


class HeadClassifier:
    """A trained classifier from ``--head``: a head of ``soundnet-train-head`` or a ``soundnet-finetune`` network.

    Each file is classified by the classifier's own input pipeline (its layer, window, padding and input variant);
    a head reports one frame per time window, with the clip score aggregated as the head was trained to.
    """

    def __init__(self, classifier, precision: str = DEFAULT_PRECISION) -> None:
        self.classifier = classifier
        self.score_kind = "probability"
        self.precision = precision
        net = getattr(classifier, "net", None)  # a head's network; a fine-tuned network computes in float32
        if net is not None:
            net.precision = precision

    def heads(self) -> dict[str, tuple[list[str], str]]:
        """The one head ``classes``: the classifier's labels, and decision values for an SVM head."""
        kind = "decision" if getattr(self.classifier, "head", None) == "svm" else "probability"
        return {"classes": ([str(c) for c in self.classifier.classes], kind)}

    def classify(self, items: Sequence[Decoded]) -> list[ClipResult | SoundNetError]:
        from ..transfer import classify_files  # heavy (scikit-learn): only with --head

        results: list[ClipResult | SoundNetError] = []
        for item in items:
            try:
                with warnings.catch_warnings():  # a truncation is already among the decoded file's notes
                    warnings.simplefilter("ignore", TruncatedAudioWarning)
                    with precision_scope(self.precision):
                        result = classify_files(self.classifier, [item.path])[0]
            except SoundNetError as exc:
                results.append(exc)
                continue
            self.score_kind = result.head("classes").kind
            results.append(result)
        return results


def make_classifier(args: argparse.Namespace) -> Classifier | HeadClassifier:
    """Build the classifier for the command line's options: SoundNet's own heads, or a trained ``--head``."""
    if args.head is not None:
        from ..transfer import FORMAT, load_classifier, read_format  # heavy (scikit-learn): only with --head

        if not args.head.is_file():
            raise SoundNetError(f"--head: classifier file {str(args.head)!r} does not exist")
        start_backend()
        options = {}
        if args.weights is not None and read_format(args.head) == FORMAT:
            options["weights"] = args.weights  # else the network named in the head file
        return HeadClassifier(load_classifier(args.head, **options), args.precision)
    net = load_model(args.weights or "soundnet8", verbose=not args.quiet, precision=args.precision)
    if args.chunk_seconds is not None:
        net.chunk_seconds = args.chunk_seconds
    return Classifier(net, pad=not args.no_pad, batch_size=args.batch_size)


# ------------------------------------------------------------------------------------------------------ outputs
def _fmt_top(pairs: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{name} ({prob:.3f})" for name, prob in pairs)


def format_text(result: ClipResult, top_k: int, frames: bool) -> str:
    """Human-readable report of one file."""
    plural = "s" if result.frames != 1 else ""
    lines = [f"{result.source}: {result.duration:.2f} s, {result.frames} frame{plural}"]
    lines += [f"  note: {note}" for note in result.notes]
    width = max(len(h) for h in result.heads) + 1
    for head in ordered_heads(result):
        lines.append(f"  {head + ':':<{width}} {_fmt_top(result.heads[head].top(top_k))}")
    if frames:
        for i in range(result.frames):
            marker = "  (hears repeated audio)" if result.frame_padded(i) else ""
            lines.append(f"  frame {i}  {result.times.start[i]:.2f}-{result.times.end[i]:.2f} s{marker}")
            for head in ordered_heads(result):
                lines.append(f"    {head + ':':<{width}} {_fmt_top(result.heads[head].top(top_k, i))}")
    return "\n".join(lines)


def _top_records(pairs: Iterable[tuple[str, float]], kind: str = "probability") -> list[dict[str, object]]:
    return [{"label": name, kind: round(prob, 6)} for name, prob in pairs]


def json_record(result: ClipResult, top_k: int, frames: bool) -> dict[str, object]:
    """One file's JSON record: clip-level top-k per head and, with ``frames``, one record per frame."""
    record: dict[str, object] = {
        "file": result.source,
        "duration_s": round(result.duration, 4),
        "padded": result.padded,
        "frames": result.frames,
    }
    if result.padded:
        record["padded_to_s"] = round(result.padded_to_s, 4)
    if result.notes:
        record["notes"] = list(result.notes)
    for head in ordered_heads(result):
        record[head] = _top_records(result.heads[head].top(top_k), result.heads[head].kind)
    if frames:
        record["frame_results"] = [
            {
                "frame": i,
                "start_s": round(float(result.times.start[i]), 4),
                "end_s": round(float(result.times.end[i]), 4),
                "padded": result.frame_padded(i),
                **{h: _top_records(result.heads[h].top(top_k, i), result.heads[h].kind) for h in ordered_heads(result)},
            }
            for i in range(result.frames)
        ]
    return record


CSV_COLUMNS = ("file", "frame", "start_s", "end_s", "head", "rank", "label", "probability", "padded")


def csv_columns(score_kind: str = "probability") -> tuple[str, ...]:
    """The CSV header; the score column is named after what it holds (``probability`` or ``decision``)."""
    return tuple(score_kind if column == "probability" else column for column in CSV_COLUMNS)


def csv_rows(result: ClipResult, top_k: int, frames: bool) -> list[list[object]]:
    """One row per file, frame (``all`` for the whole clip), head and rank; ``padded`` is 1 where the clip (or that
    frame) was fed audio the padding appended."""
    rows: list[list[object]] = []
    spans: list[tuple[object, float, float, int | None, bool]] = [("all", 0.0, result.duration, None, result.padded)]
    if frames:
        spans += [
            (i, float(result.times.start[i]), float(result.times.end[i]), i, result.frame_padded(i))
            for i in range(result.frames)
        ]
    for label, start, end, frame, padded in spans:
        for head in ordered_heads(result):
            for rank, (name, prob) in enumerate(result.heads[head].top(top_k, frame), 1):
                row = [result.source, label, f"{start:.4f}", f"{end:.4f}", head, rank, name, f"{prob:.6f}"]
                rows.append([*row, int(padded)])
    return rows


PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "webp", "tif", "tiff", "eps")
"""Image formats ``--plot`` writes (matplotlib's Agg backend), checked before any file is classified."""


def plot_paths(base: Path, files: Sequence[Path]) -> list[Path]:
    """Plot file per input: ``base`` for one file; ``<base stem>_<file stem><suffix>`` (deduplicated) for several."""
    if len(files) == 1:
        return [base]
    used: set[str] = set()
    paths = []
    for i, file in enumerate(files):
        name = f"{base.stem}_{file.stem}{base.suffix or '.png'}"
        if name in used:
            name = f"{base.stem}_{file.stem}_{i}{base.suffix or '.png'}"
        used.add(name)
        paths.append(base.with_name(name))
    return paths


# ---------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The ``soundnet-classify`` argument parser."""
    parser = ArgumentParser(
        prog="soundnet-classify",
        description="Print the objects (ImageNet) and scenes (Places2) SoundNet hears in audio files, per clip "
        "and over time. Files: WAV, FLAC, OGG/Vorbis, MP3 (anything libsndfile reads), any rate and channel count.",
    )
    parser.add_argument("inputs", nargs="*", metavar="PATH", help="audio files or folders (searched recursively)")
    parser.add_argument(
        "--example", action="store_true", help="also classify the example clip shipped with the package (12 s)"
    )
    parser.add_argument("-k", "--top-k", type=positive_int, default=5, help="labels per head to show (default 5)")
    parser.add_argument("--frames", action="store_true", help="also report every output frame with its start/end time")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON: a list with one record per file (frames nested)")
    fmt.add_argument("--csv", action="store_true", help="CSV: one row per file/frame, head and rank")
    parser.add_argument("-o", "--output", type=Path, help="write the report to this file instead of stdout")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PNG",
        help="draw a timeline heatmap per head: frames over time (s) x the classes that score highest in any frame, "
        "the clip's own extent and the frames that heard repeated audio marked, and with --events the events as "
        "bars (one image per file; with several files, named <PNG stem>_<file stem>.png)",
    )
    add_event_arguments(parser)
    parser.add_argument(
        "--channels",
        choices=CHANNEL_MODES,
        default="mix",
        help="mix channels to mono (default) or take the first one, as the original scripts did",
    )
    parser.add_argument(
        "--no-pad",
        action="store_true",
        help="append nothing: reject clips shorter than 10.98 s (one reliable frame) instead of repeating them to the "
        "20-s training crop, and drop a last frame that would hear padding instead of extending the clip",
    )
    parser.add_argument("--weights", default=None, help="pretrained preset or weights file (default soundnet8)")
    parser.add_argument(
        "--head",
        type=Path,
        metavar="FILE",
        help="classify with a trained classifier (soundnet-train-head or soundnet-finetune output) instead of "
        "SoundNet's ImageNet/Places heads",
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="clips per network batch (default 16)")
    parser.add_argument(
        "--workers", type=int, default=None, help="decoding threads (default: number of CPUs, at most 8; 0: none)"
    )
    parser.add_argument(
        "--chunk-seconds",
        type=positive_float,
        default=None,
        help="run inputs longer than this in chunks of about this length (default 120; same results)",
    )
    add_precision_argument(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or model-loading messages")
    add_version_argument(parser)
    return parser


def _input_files(args: argparse.Namespace) -> list[Path]:
    """The files to classify, after checking that the output locations exist (before any work is done)."""
    if not args.inputs and not args.example:
        raise SoundNetError("no input: give audio files or folders, or --example for the clip shipped with the package")
    files = [example_clip()] if args.example else []
    files += input_files(args.inputs) if args.inputs else []
    if args.plot is not None:
        if args.plot.suffix and args.plot.suffix.lower().lstrip(".") not in PLOT_FORMATS:
            raise SoundNetError(
                f"--plot {str(args.plot)!r}: expected an image name ending in {', '.join(PLOT_FORMATS)}"
            )
        for plot in plot_paths(args.plot, files):
            check_output(plot, "--plot", files)
    if args.output is not None:
        check_output(args.output, "--output", files)
    if args.events is not None:
        check_output(args.events, "--events", files)
    return files


class _Report:
    """Each file's result (or error) in the chosen format; a text report to the terminal streams as it comes."""

    def __init__(
        self, args: argparse.Namespace, files: Sequence[Path], progress, events: EventCollector | None = None
    ) -> None:
        self.args = args
        self.progress = progress
        self.events = events
        self.plots = dict(zip(files, plot_paths(args.plot, files), strict=True)) if args.plot is not None else {}
        self.stream_text = not (args.json or args.csv) and args.output is None
        self.records: list[dict[str, object]] = []
        self.rows: list[list[object]] = []
        self.texts: list[str] = []
        self.failed = 0

    def add(self, item: Decoded, result: ClipResult | SoundNetError) -> None:
        args = self.args
        self.progress.update(1)
        if isinstance(result, SoundNetError):
            self.failed += 1
            self.progress.clear()
            print_error(result)
            if args.json:
                self.records.append({"file": str(item.path), "error": str(result)})
            return
        result.notes.extend(note for note in item.notes if note not in result.notes)
        events = self.events.add(result) if self.events is not None else None
        if item.path in self.plots:
            event_head = self.events.head if self.events is not None else None
            plot_timeline(result, self.plots[item.path], top_k=args.top_k, events=events, event_head=event_head)
        if args.json:
            self.records.append(json_record(result, args.top_k, args.frames))
        elif args.csv:
            self.rows.extend(csv_rows(result, args.top_k, args.frames))
        elif self.stream_text:
            self.progress.clear()
            print(format_text(result, args.top_k, args.frames), flush=True)
        else:
            self.texts.append(format_text(result, args.top_k, args.frames))

    def render(self, score_kind: str) -> str:
        """The whole report (JSON list, CSV, or the texts not yet streamed)."""
        if self.args.json:
            return json.dumps(self.records, indent=2) + "\n"
        if self.args.csv:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(csv_columns(score_kind))
            writer.writerows(self.rows)
            return buffer.getvalue()
        return "\n".join(self.texts) + ("\n" if self.texts else "")


def _classify_all(files: Sequence[Path], classifier: Classifier | HeadClassifier, report: _Report) -> None:
    """Decode in parallel and classify in groups of four batches, reporting every file in input order."""
    args = report.args
    group: list[Decoded] = []

    def flush() -> None:
        ok = [item for item in group if item.ok]
        outcome = iter(classifier.classify(ok))
        for item in group:
            report.add(item, next(outcome) if item.ok else item.error)
        group.clear()

    for decoded in decode_files(files, channels=args.channels, workers=args.workers, prefetch=4 * args.batch_size):
        group.append(decoded)
        if len(group) >= 4 * args.batch_size:
            flush()
    flush()


def _run(args: argparse.Namespace) -> int:
    files = _input_files(args)
    event_settings = check_event_arguments(args)
    classifier = make_classifier(args)
    events = EventCollector(args, event_settings, classifier.heads()) if event_settings is not None else None
    progress = Progress(len(files), "classify", "file", mode="off" if args.quiet else "auto")
    report = _Report(args, files, progress, events)
    try:
        _classify_all(files, classifier, report)
    finally:
        progress.close()
    text = report.render(getattr(classifier, "score_kind", "probability"))
    if args.output is not None:
        write_text_atomic(args.output, text)
    elif not report.stream_text:
        sys.stdout.write(text)
        sys.stdout.flush()
    note = events.write() if events is not None else None
    if note:
        print(f"note: {note}", file=sys.stderr, flush=True)
    if report.failed:
        print_error(f"{report.failed} of {len(files)} files failed")
        return EXIT_FILE_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``soundnet-classify``; returns the exit status (0: all files classified, 1: some failed)."""
    return run_cli(_run, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
