"""``soundnet-finetune``: a new classification head for N labelled classes on a pretrained SoundNet trunk."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from .common import add_version_argument, guard, keras_output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundnet-finetune",
        description="Fine-tune SoundNet on labelled clips (folder per class, or a CSV) and export one .keras file that "
        "soundnet-classify --head can use.",
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--folder", help="folder with one sub-folder of audio files per class")
    data.add_argument("--csv", help="CSV listing clips (e.g. ESC-50 meta/esc50.csv)")
    parser.add_argument("--audio-dir", help="folder of the CSV's relative paths (default: the CSV's folder)")
    parser.add_argument("--path-column", default="filename", help="CSV column with the audio path (default filename)")
    parser.add_argument("--label-column", default="category", help="CSV column with the class (default category)")
    parser.add_argument("--fold-column", default="fold", help="CSV column with the fold (default fold)")
    parser.add_argument("--val-fold", help="hold out the clips of this fold (CSV only)")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="stratified fraction held out when no --val-fold (default 0.2; 0 trains on all)",
    )
    parser.add_argument("-o", "--output", required=True, help="exported model (.keras)")
    parser.add_argument(
        "--init", default="soundnet8", help="pretrained weights: preset name or file (default soundnet8)"
    )
    parser.add_argument("--layer", default="pool5", help="trunk stage the head reads (default pool5)")
    parser.add_argument("--head-kernel", type=int, default=1, help="head convolution kernel in frames (default 1)")
    parser.add_argument("--head-stride", type=int, default=1, help="head convolution stride (default 1)")
    parser.add_argument("--aggregation", default="mean", choices=("mean", "max"), help="pooling of frame logits")
    parser.add_argument("--window-seconds", type=float, default=5.0, help="training crop length (default 5)")
    parser.add_argument(
        "--train-trunk",
        action="store_true",
        help="after the head's epochs, train the trunk too for --trunk-epochs at --trunk-lr, BatchNorm statistics "
        "frozen (default: the trunk stays frozen)",
    )
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the head alone (default 20)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate of the head (default 0.01)")
    parser.add_argument("--trunk-epochs", type=int, default=20, help="epochs with the trunk (default 20)")
    parser.add_argument("--trunk-lr", type=float, default=3e-5, help="learning rate with the trunk (default 3e-5)")
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random circular shifts and gains (0.5-1.5) of the training crops (default: on with --train-trunk)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_version_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``soundnet-finetune``."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        # heavy (scikit-learn; Keras/TensorFlow once training starts): only when the command runs
        from ..training.finetune import FinetuneConfig, clips_from_csv, clips_from_folder, finetune, split_clips

        output = keras_output(args.output, "my-model.keras")
        if args.val_fold is not None and args.folder:
            raise ConfigError("--val-fold needs --csv (a folder layout has no folds); use --val-fraction")
        if args.csv:
            clips = clips_from_csv(
                args.csv,
                audio_dir=args.audio_dir,
                path_column=args.path_column,
                label_column=args.label_column,
                fold_column=args.fold_column,
            )
        else:
            clips = clips_from_folder(args.folder)
        train_idx, val_idx = split_clips(clips, val_fold=args.val_fold, val_fraction=args.val_fraction, seed=args.seed)
        config = FinetuneConfig(
            init=args.init,
            layer=args.layer,
            head_kernel=args.head_kernel,
            head_stride=args.head_stride,
            aggregation=args.aggregation,
            window_seconds=args.window_seconds,
            freeze_trunk=not args.train_trunk,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            trunk_epochs=args.trunk_epochs,
            trunk_learning_rate=args.trunk_lr,
            augment=args.augment,
            seed=args.seed,
        )
        log = None if args.quiet else (lambda message: print(message, file=sys.stderr))
        result = finetune(clips, train_idx, val_idx, config, log=log, verbose=0 if args.quiet else "auto")
        path = result.classifier.save(output)
        held = (
            f"held-out accuracy {result.val_accuracy:.3f} on {len(val_idx)} clips"
            if result.val_accuracy is not None
            else "no held-out clips"
        )
        print(f"{len(clips.classes)} classes, {len(train_idx)} training clips, {held}; wrote {path}")
        return 0

    return guard(body)


if __name__ == "__main__":
    sys.exit(main())
