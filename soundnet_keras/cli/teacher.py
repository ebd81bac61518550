"""``soundnet-teacher``: teacher shards (audio + image-teacher distributions) from videos, for ``soundnet-train``."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from .common import EXIT_FILE_FAILED, EXIT_OK, add_version_argument, guard


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundnet-teacher",
        description="Extract each video's audio (22,050 Hz mono) and one frame per window, run image teachers on the "
        "frames, and write TFRecord shards for soundnet-train. Needs ffmpeg. Resumable: a rerun skips finished videos.",
        epilog="Teacher SPEC: a keras.applications name (vgg16, resnet50, ...; ImageNet weights download on first use) "
        "or a .keras/.h5 model file, with options: ,preprocess=none|unit|tf|caffe|torch ,output=probabilities|logits "
        ",size=PIXELS ,weights=imagenet|none|PATH ,labels=FILE (category names, one per line; ImageNet models have "
        "theirs). Example: --objects vgg16 --scenes places365.keras,preprocess=caffe,labels=categories_places365.txt",
    )
    parser.add_argument("videos", nargs="+", help="video files, folders (searched recursively) or .txt lists")
    parser.add_argument("-o", "--output", required=True, help="shard folder (created; reused to resume)")
    parser.add_argument("--objects", metavar="SPEC", help="teacher for the objects head (an ImageNet classifier)")
    parser.add_argument("--scenes", metavar="SPEC", help="teacher for the scenes head (a Places classifier)")
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=5.0,
        help="seconds of video per teacher distribution (default 5, as the original)",
    )
    parser.add_argument("--videos-per-shard", type=int, default=64, help="videos per TFRecord file (default 64)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="threads decoding videos ahead of the teachers (default: CPUs, at most 4; 0: none)",
    )
    parser.add_argument("--retry-failed", action="store_true", help="try again the videos that failed before")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    add_version_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``soundnet-teacher``."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        # ~25 ms to import (training.data and its helpers): only when the command runs, so --help stays fast
        from ..training.teacher import collect_videos, extract_shards, find_ffmpeg, load_teacher, parse_teacher_spec

        specs = {h: parse_teacher_spec(h, s) for h, s in (("objects", args.objects), ("scenes", args.scenes)) if s}
        if not specs:
            raise ConfigError("give at least one teacher: --objects SPEC and/or --scenes SPEC")
        find_ffmpeg()
        videos = collect_videos(args.videos)
        teachers = {h: load_teacher(spec) for h, spec in specs.items()}
        log = None if args.quiet else (lambda message: print(message, file=sys.stderr))
        report = extract_shards(
            videos,
            args.output,
            teachers,
            step_seconds=args.step_seconds,
            videos_per_shard=args.videos_per_shard,
            retry_failed=args.retry_failed,
            log=log,
            workers=args.workers,
        )
        print(
            f"{len(report.done)} video(s) written, {len(report.skipped)} skipped (done or failed before), "
            f"{len(report.failed)} failed -> {args.output}"
        )
        for video, error in report.failed:
            print(f"failed: {video}: {error}", file=sys.stderr)
        return EXIT_FILE_FAILED if report.failed else EXIT_OK

    return guard(body)


if __name__ == "__main__":
    sys.exit(main())
