"""``soundnet-train``: train SoundNet-8 / SoundNet-5 on teacher shards (student–teacher KL), or L³-Net on AVC shards
(``--objective avc``), on one or many devices."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..architecture import architectures as soundnet_architectures
from ..l3.tables import ARCHITECTURES as L3_ARCHITECTURES
from ..precision import DEFAULT_TRAINING_PRECISION, TRAINING_PRECISIONS
from ..training import DEFAULT_ARCH, OBJECTIVES
from .common import add_version_argument, guard


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundnet-train",
        description="Train SoundNet on soundnet-teacher shards with the original's KL(teacher || student) loss, or "
        "(--objective avc) L³-Net on AVC shards with audio-visual correspondence. Rerun the same command to resume "
        "a killed run from its last checkpoint interval.",
    )
    parser.add_argument(
        "shards", help="shard folder written by soundnet-teacher (or, --objective avc, by soundnet_keras.l3.avc_data)"
    )
    parser.add_argument("-o", "--output", required=True, help="run folder: checkpoints/, backup/, logs/, final weights")
    parser.add_argument(
        "--objective",
        default="teacher",
        choices=OBJECTIVES,
        help="teacher: SoundNet student-teacher KL (default); avc: L³-Net audio-visual correspondence",
    )
    parser.add_argument(
        "--arch",
        default=None,
        choices=(*soundnet_architectures(), *L3_ARCHITECTURES),
        help="default: soundnet8 (teacher), l3 (avc); l3-small is a CPU / test configuration",
    )
    parser.add_argument(
        "--init",
        metavar="WEIGHTS",
        help="start from weights: 'soundnet8' (pretrained) or a file (default: random initialisation, as the original)",
    )
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps (default 1000)")
    parser.add_argument("--batch-size", type=int, default=64, help="GLOBAL batch over all replicas (default 64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 0.001)")
    parser.add_argument("--beta1", type=float, default=0.9, help="Adam beta1 (default 0.9)")
    parser.add_argument("--scale-lr", action="store_true", help="linear scaling: lr x batch-size / 64")
    parser.add_argument("--lambda", dest="loss_lambda", type=float, default=250.0, help="loss multiplier (default 250)")
    parser.add_argument(
        "--crop-seconds", type=float, default=20.0, help="training crop, a whole number of teacher windows (default 20)"
    )
    parser.add_argument(
        "--heads", nargs="+", choices=("objects", "scenes"), help="heads to train (default: all in shards)"
    )
    parser.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    parser.add_argument(
        "--strategy",
        default="default",
        choices=("default", "data_parallel", "mirrored", "multiworker"),  # strategies.STRATEGIES, without Keras
        help="default: one device; data_parallel: all GPUs of this machine (TensorFlow MirroredStrategy, JAX "
        "keras.distribution.DataParallel); mirrored: the same, TensorFlow only; multiworker: TF_CONFIG cluster "
        "(TensorFlow only)",
    )
    parser.add_argument(
        "--devices", nargs="+", help="devices for --strategy data_parallel / mirrored (default: all GPUs)"
    )
    parser.add_argument(
        "--precision",
        default=DEFAULT_TRAINING_PRECISION,
        choices=(*TRAINING_PRECISIONS, "float32"),
        help="default: float32 with the backend's settings, TF32 on recent GPUs (the default); highest: TF32 off; "
        "mixed_bfloat16; mixed_float16 (GPUs, loss scaling); float32: the earlier name of default",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--deterministic", action="store_true", help="deterministic ops (exactly reproducible runs and resumes; slower)"
    )
    parser.add_argument("--shuffle-buffer", type=int, default=256, help="records in the shuffle buffer (default 256)")
    board = parser.add_mutually_exclusive_group()
    board.add_argument(
        "--tensorboard",
        dest="tensorboard",
        action="store_true",
        default=None,
        help="write TensorBoard logs (default: when the tensorboard package is installed)",
    )
    board.add_argument("--no-tensorboard", dest="tensorboard", action="store_false")
    parser.add_argument(
        "--adam-epsilon", type=float, default=1e-8, help="Adam epsilon (default 1e-8, Torch's; Keras' is 1e-7)"
    )
    val = parser.add_mutually_exclusive_group()
    val.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="hold out this fraction of the videos (chosen by --seed) and log their KL (avc: AVC loss, and "
        "val_accuracy) as val_loss each interval",
    )
    val.add_argument("--val-shards", metavar="DIR", help="validate on this shard folder instead (val_loss)")
    parser.add_argument(
        "--lr-schedule",
        default="constant",
        choices=("constant", "cosine"),
        help="constant, or cosine decay to 0 at the last step (default constant)",
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=0, help="linear learning-rate warmup over these steps (default 0)"
    )
    parser.add_argument(
        "--keep-checkpoints", type=int, default=0, metavar="N", help="keep the newest N numbered checkpoints (0: all)"
    )
    parser.add_argument(
        "--best-only", action="store_true", help="write a numbered checkpoint only when val_loss improves"
    )
    parser.add_argument(
        "--early-stopping",
        type=int,
        default=0,
        metavar="PATIENCE",
        help="stop after PATIENCE checkpoint intervals without a better val_loss (default 0: never)",
    )
    parser.add_argument(
        "--backup-every",
        type=int,
        metavar="STEPS",
        help="steps between crash-safe backups, a multiple of --checkpoint-every (default: every checkpoint)",
    )
    parser.add_argument(
        "--shuffled-pairs",
        action="store_true",
        help="avc only: the chance-level control, training labels shuffled within each batch",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_version_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``soundnet-train``."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        from ..training.train import TrainConfig, train  # heavy (Keras/TensorFlow): only when the command runs

        config = TrainConfig(
            shards=Path(args.shards),
            output_dir=Path(args.output),
            arch=args.arch or DEFAULT_ARCH[args.objective],
            objective=args.objective,
            init=args.init,
            steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            beta_1=args.beta1,
            scale_lr=args.scale_lr,
            loss_lambda=args.loss_lambda,
            crop_seconds=args.crop_seconds,
            heads=args.heads,
            checkpoint_every=args.checkpoint_every,
            strategy=args.strategy,
            devices=args.devices,
            precision=args.precision,
            seed=args.seed,
            deterministic=args.deterministic,
            shuffle_buffer=args.shuffle_buffer,
            tensorboard=args.tensorboard,
            verbose=0 if args.quiet else "auto",
            adam_epsilon=args.adam_epsilon,
            val_fraction=args.val_fraction,
            val_shards=Path(args.val_shards) if args.val_shards else None,
            lr_schedule=args.lr_schedule,
            warmup_steps=args.warmup_steps,
            keep_checkpoints=args.keep_checkpoints,
            best_only=args.best_only,
            early_stopping=args.early_stopping,
            backup_every=args.backup_every,
            shuffled_pairs=args.shuffled_pairs,
        )
        result = train(config, log=lambda message: print(message, file=sys.stderr, flush=True))
        losses, held = result.history.get("loss", []), result.history.get("val_loss", [])
        last = f", last interval's loss {losses[-1]:.4f}" if losses else ""
        last += f", val_loss {held[-1]:.4f}" if held else ""
        accuracy = result.history.get("val_accuracy", [])
        last += f", held-out AVC accuracy {accuracy[-1]:.3f}" if accuracy else ""
        weights = result.weights_path or "written by the chief worker"
        print(f"trained {result.steps_done} steps on {result.replicas} replica(s){last}; weights: {weights}")
        return 0

    return guard(body)


if __name__ == "__main__":
    sys.exit(main())
