"""``soundnet-extract``: features of named SoundNet layers, one file per input, resumable.

Examples::

    soundnet-extract clips/ -o features/                       # pool5 of every audio file below clips/
    soundnet-extract "audio/**/*.flac" -o feats/ -l conv5 -l conv7 --format hdf5
    find /data -name '*.wav' | soundnet-extract - -o feats/    # a list of paths on stdin

Each input gets ``OUTPUT_DIR/<its path>.<format>`` (``clips/dog/1.wav`` → ``features/dog/1.wav.npz``; see
:mod:`soundnet_keras.extraction.jobs` for how paths are mirrored) holding each layer's values, frame times and
padded frames, and a provenance record (layer geometry, padding policy, weights sha256, package version...).
``OUTPUT_DIR/manifest.jsonl`` records each input's status; a rerun skips what is done (``--overwrite`` redoes it)
and retries what failed. Read the results with ``soundnet_keras.load_features(OUTPUT_DIR)``.

Clips shorter than the deepest requested layer needs are repeated circularly (``--no-pad`` rejects them). Failed
files are reported, recorded in the manifest and skipped; the exit status is then 1.

``--runner NAME`` runs the same extraction as an Apache Beam pipeline (``pip install "soundnet-keras[beam]"``;
:mod:`soundnet_keras.extraction.beam_pipeline`): ``direct`` locally (``--direct-num-workers 2
--direct-running-mode multi_processing``), or ``flink``, ``spark``, ``dataflow``... with Beam's standard pipeline
options after ``--`` (or as ``--name=value`` options)::

    soundnet-extract clips/ -o features/ --runner direct --direct-num-workers 2 --direct-running-mode multi_processing
    soundnet-extract /nfs/clips -o /nfs/features --runner flink -- --flink_master=host:8081 --environment_type=LOOPBACK
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..architecture import architectures, output_names
from ..audio import CHANNEL_MODES
from ..errors import ConfigError
from ..extraction.formats import FORMATS, SUFFIX_FORMATS, check_format
from ..extraction.jobs import plan_jobs
from ..l3.tables import ARCHITECTURES as L3_ARCHITECTURES
from .common import (
    EXIT_FILE_FAILED,
    EXIT_OK,
    add_precision_argument,
    add_version_argument,
    guard,
    load_model,
    positive_float,
    positive_int,
    print_error,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``soundnet-extract`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="soundnet-extract",
        description="Write SoundNet features of named layers, one file per input (npz, HDF5 or Parquet) with frame "
        "times and provenance, into an output folder; a rerun resumes where the last one stopped.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="PATH",
        help="audio files, folders (searched recursively), glob patterns (quote them: 'a/**/*.wav'), or - to read "
        "a list of paths from standard input, one per line",
    )
    parser.add_argument(
        "-l",
        "--layer",
        action="append",
        dest="layers",
        metavar="NAME",
        help=f"layer to extract, repeatable (default: the network's embedding layer, SoundNet pool5, L³-Net "
        f"audio_pool4); SoundNet-8: {', '.join(output_names('soundnet8'))}; L³-Net: {', '.join(output_names('l3'))}",
    )
    parser.add_argument(
        "-o", "--output-dir", "--output", dest="output_dir", type=Path, required=True, help="output folder"
    )
    parser.add_argument("--format", default="npz", choices=tuple(FORMATS), help="feature file format (default npz)")
    parser.add_argument("--overwrite", action="store_true", help="extract again what the manifest records as done")
    parser.add_argument(
        "--relative-to",
        metavar="DIR",
        help="mirror files named directly, by glob or on stdin relative to DIR (default: the current folder)",
    )
    parser.add_argument("--channels", choices=CHANNEL_MODES, default="mix", help="mix to mono (default) or first")
    parser.add_argument(
        "--no-pad", action="store_true", help="reject clips too short for the layer instead of repeating them"
    )
    parser.add_argument("--weights", default="soundnet8", help="pretrained preset or weights file (default soundnet8)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="clips per forward pass (default 8)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: CPUs, at most 8)")
    parser.add_argument("--chunk-seconds", type=positive_float, default=None, help="chunk length for long files")
    add_precision_argument(parser)
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "log", "off"),
        default="auto",
        help="auto: a bar on a terminal, one line per 5%% of the files elsewhere (default)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or model-loading messages")
    beam = parser.add_argument_group(
        'Apache Beam (pip install "soundnet-keras[beam]")',
        "run the extraction as a Beam pipeline; Beam's standard pipeline options (--project=..., --flink_master=...) "
        "go after -- or as --name=value",
    )
    beam.add_argument(
        "--runner",
        metavar="NAME",
        help="Beam runner: direct (local; Beam 2.77 tries Prism first and falls back to its Python runner), prism, "
        "flink, spark, dataflow... (default: no Beam, one process)",
    )
    beam.add_argument(
        "--direct-num-workers", type=positive_int, metavar="N", help="DirectRunner workers (Beam's default: 1)"
    )
    beam.add_argument(
        "--direct-running-mode",
        choices=("in_memory", "multi_threading", "multi_processing"),
        default=None,
        help="DirectRunner workers as threads or processes (Beam's default: in_memory)",
    )
    add_version_argument(parser)
    return parser


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``soundnet-extract``'s arguments; Beam's own options (after ``--``, or unknown ``--name=value``) land
    in ``args.pipeline_args``. Unknown options without ``--runner``, or without ``=value``, are usage errors."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, beam_args = argv[:at], argv[at + 1 :]
    args, unknown = parser.parse_known_args(argv)
    for item in unknown:
        if not item.startswith("--") or "=" not in item:
            parser.error(f"unrecognized argument {item!r} (Beam pipeline options go after -- or as --name=value)")
    args.pipeline_args = [*unknown, *beam_args]
    if args.pipeline_args and args.runner is None:
        parser.error(f"Beam pipeline options {' '.join(args.pipeline_args)} need --runner")
    direct = args.direct_num_workers is not None or args.direct_running_mode is not None
    if direct and args.runner is None:
        parser.error("--direct-num-workers and --direct-running-mode need --runner direct")
    return args


def _check_output_dir(path: Path, inputs: Sequence[Path]) -> None:
    if path.suffix.lower() in SUFFIX_FORMATS and not path.is_dir():
        raise ConfigError(
            f"--output-dir {str(path)!r} looks like a file name: soundnet-extract writes one feature file per input "
            f"into a folder (e.g. -o features/); read them all with soundnet_keras.load_features(folder)"
        )
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--output-dir {str(path)!r} is a file; give a folder (it is created when missing)")
    resolved = path.resolve()
    for item in inputs:
        if item.resolve() == resolved:
            raise ConfigError(f"--output-dir {str(path)!r} is one of the inputs")


def _say(line: str, quiet: bool) -> None:
    """Notes and per-file errors on stderr (with ``--quiet``, the errors alone)."""
    if not quiet or line.startswith("error: "):
        print(line, file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    from ..extraction.run import extract_to_folder  # the network's side: only when the command runs

    check_format(args.format)  # pyarrow present for parquet, before the network loads
    layers = tuple(dict.fromkeys(args.layers or ()))
    known = {name: None for arch in (*architectures(), *L3_ARCHITECTURES) for name in output_names(arch)}
    for layer in layers:
        if layer not in known:  # before the network loads; its own architecture checks again below
            raise ConfigError(f"unknown layer {layer!r}: expected one of {', '.join(known)}")
    options = _beam_options(args) if args.runner is not None else None  # Beam present, before the network loads
    jobs = plan_jobs(args.inputs, FORMATS[args.format], stdin=sys.stdin, relative_to=args.relative_to)
    _check_output_dir(args.output_dir, [job.input for job in jobs])
    net = load_model(args.weights, verbose=not args.quiet, precision=args.precision)
    layers = layers or (net.embedding_layer,)
    for layer in layers:
        net.geometry(layer)  # validates the names before any work
    if args.chunk_seconds is not None:
        net.chunk_seconds = args.chunk_seconds
    common = {
        "layers": layers,
        "fmt": args.format,
        "pad": None if args.no_pad else "repeat",
        "channels": args.channels,
        "overwrite": args.overwrite,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "say": lambda line: _say(line, args.quiet),
    }
    if options is None:
        progress = "off" if args.quiet else args.progress
        summary = extract_to_folder(net, jobs, args.output_dir, progress=progress, **common)
    else:
        from ..extraction.beam_pipeline import extract_with_beam

        summary = extract_with_beam(net, jobs, args.output_dir, options, weights=args.weights, **common)
    if not args.quiet:
        print(
            f"{len(summary.written)} written, {len(summary.skipped)} already done, {len(summary.failed)} failed "
            f"of {summary.total} input(s) in {summary.seconds:.1f} s; features in {args.output_dir}",
            file=sys.stderr,
        )
    if summary.failed:
        print_error(f"{len(summary.failed)} of {summary.total} files failed (recorded in the manifest; rerun to retry)")
        return EXIT_FILE_FAILED
    return EXIT_OK


def _beam_options(args: argparse.Namespace):
    """The Beam ``PipelineOptions`` of the command line (a :class:`ConfigError` naming the extra without Beam)."""
    from ..extraction.beam_pipeline import pipeline_options  # imports Apache Beam: only with --runner

    return pipeline_options(
        args.runner,
        args.pipeline_args,
        direct_num_workers=args.direct_num_workers,
        direct_running_mode=args.direct_running_mode,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``soundnet-extract``; returns the exit status (0: all files done, 1: some failed)."""
    args = parse_arguments(argv)
    return guard(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
