"""ESC-50 / ESC-10 (Piczak 2015): dataset reading, the paper's transfer protocol, and variants beyond it.

The SoundNet paper reports ESC-50 74.2 % and ESC-10 92.2 % with SoundNet-8 pool5 features and a linear SVM. Its
``eval_esc50.lua`` (cvondrick/soundnet) does, per test fold:

* read each clip with Torch ``audio.load`` (int32-range samples at the file's 44.1 kHz) and multiply by 2^-22;
* repeat it circularly (``repeatTensor``) and cut it to ``10 * sr`` samples -- 441,000 samples of 44.1 kHz audio,
  fed to the network *unresampled* although it was trained at 22,050 Hz;
* take layer 18 of the Torch model (pool5, (256, T) after ``squeeze``), cut it into windows of
  ``ceil((1 / 10) * T)`` frames at every offset, each window (concatenated frames) one training sample;
* train ``liblinear -s 1 -c 0.01 -B 1`` (L2-regularised squared-hinge linear SVM, bias as a regularised constant
  feature) and score a test clip by the mean decision value over its windows.

:data:`PROTOCOLS` holds that protocol in two input variants -- ``paper-exact`` (as above) and ``paper-resampled``
(audio resampled to 22,050 Hz, scaled as the network was trained: 2^-23) -- and variants beyond the paper (pooled
statistics, standardisation, several layers, logistic and perceptron heads). Hyper-parameters of the latter are
chosen by cross-validation inside the training folds only. :func:`run_benchmark` runs any of them over the folds of
an :class:`EscDataset`, training on the other selected folds and testing on each in turn.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .clip_classifier import ClipClassifier
from .features import ClipFeatures, FeatureExtractor, resolve_net

META_COLUMNS = ("filename", "fold", "target", "category", "esc10")
ESC_FOLDS = (1, 2, 3, 4, 5)
PAPER_ACCURACY = {"esc50": 0.742, "esc10": 0.922}
"""SoundNet-8 pool5 + linear SVM in the paper (Table 5 of Aytar, Vondrick & Torralba 2016)."""

Log = Callable[[str], None]

DEFAULT_LAYER = "pool5"
"""The paper's layer; on another network its embedding layer (:meth:`Protocol.on`)."""


# ----------------------------------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class EscClip:
    """One row of ``meta/esc50.csv`` whose audio file exists."""

    filename: str
    path: Path
    fold: int
    target: int
    category: str
    esc10: bool


@dataclass
class EscDataset:
    """The clips of an ESC-50 folder (official layout) selected by subset and folds, with what was not found."""

    root: Path
    clips: list[EscClip]
    esc10: bool
    folds: tuple[int, ...]
    """Selected folds that have at least one clip."""
    missing_files: list[str] = field(default_factory=list)
    """Selected rows of the metadata whose audio file is absent."""
    missing_folds: list[int] = field(default_factory=list)
    """Requested folds without any clip present."""

    @property
    def name(self) -> str:
        return "ESC-10" if self.esc10 else "ESC-50"

    @property
    def classes(self) -> list[str]:
        """Category names present, ordered by their ESC-50 target number."""
        return [name for _, name in sorted({(c.target, c.category) for c in self.clips})]

    def fold_clips(self, fold: int) -> list[EscClip]:
        return [clip for clip in self.clips if clip.fold == fold]

    def report(self) -> list[str]:
        """Human-readable lines about what was selected and what is missing."""
        lines = [
            f"{self.name} at {self.root}: {len(self.clips)} clips, {len(self.classes)} classes, folds "
            f"{', '.join(map(str, self.folds))}"
        ]
        for fold in self.folds:
            lines.append(f"  fold {fold}: {len(self.fold_clips(fold))} clips")
        if self.missing_folds:
            lines.append(f"  folds without clips (skipped): {', '.join(map(str, self.missing_folds))}")
        if self.missing_files:
            shown = ", ".join(self.missing_files[:5]) + (" ..." if len(self.missing_files) > 5 else "")
            lines.append(f"  {len(self.missing_files)} clips listed in the metadata are missing (skipped): {shown}")
        return lines


def parse_folds(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"1,2,3"`` or a sequence of ints -> sorted unique folds (1..5); None stays None."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    folds = []
    for part in parts:
        try:
            value = int(part)
        except (TypeError, ValueError):
            raise ConfigError(f"folds must be comma-separated integers 1-5, got {text!r}") from None
        if value not in ESC_FOLDS:
            raise ConfigError(f"fold {value} does not exist: ESC folds are 1-5")
        folds.append(value)
    if not folds:
        raise ConfigError(f"no folds given in {text!r}")
    return tuple(sorted(set(folds)))


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def read_esc(root: str | os.PathLike, *, esc10: bool = False, folds: str | Sequence[int] | None = None) -> EscDataset:
    """Read an ESC-50 folder in the official layout (``audio/*.wav``, ``meta/esc50.csv``).

    ``esc10`` keeps the ESC-10 subset (``esc10`` column true); ``folds`` the given folds (default all five). Files
    listed but absent and folds without clips are recorded in the result, not fatal; no clip at all is an error.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"ESC root {str(root)!r} is not a folder (expected the ESC-50 layout: audio/, meta/)")
    meta = root / "meta" / "esc50.csv"
    if not meta.is_file():
        raise ConfigError(f"ESC metadata {str(meta)!r} not found (expected the official ESC-50 layout)")
    wanted = parse_folds(folds) or ESC_FOLDS
    with open(meta, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        lacking = [c for c in META_COLUMNS if c not in columns]
        if lacking:
            raise ConfigError(f"{str(meta)!r} lacks columns {lacking}: found {columns}")
        rows = list(reader)
    clips, missing = [], []
    for line, row in enumerate(rows, start=2):
        try:
            fold, target = int(row["fold"]), int(row["target"])
        except (TypeError, ValueError):
            raise ConfigError(
                f"{str(meta)!r} line {line}: fold and target must be integers, got {row['fold']!r}, {row['target']!r}"
            ) from None
        if fold not in wanted or (esc10 and not _truthy(row["esc10"])):
            continue
        path = root / "audio" / row["filename"]
        if not path.is_file():
            missing.append(row["filename"])
            continue
        clips.append(EscClip(row["filename"], path, fold, target, row["category"], _truthy(row["esc10"])))
    present = tuple(sorted({clip.fold for clip in clips}))
    subset = "ESC-10" if esc10 else "ESC-50"
    if not clips:
        raise ConfigError(
            f"no {subset} audio files of folds {', '.join(map(str, wanted))} found under "
            f"{str(root / 'audio')!r} ({len(missing)} listed in the metadata are missing)"
        )
    return EscDataset(root, clips, esc10, present, missing, [f for f in wanted if f not in present])


# --------------------------------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class Protocol:
    """One benchmark variant: input settings and :class:`~soundnet_keras.transfer.ClipClassifier` settings."""

    name: str
    description: str
    variant: str = "resampled"
    layers: tuple[str, ...] = (DEFAULT_LAYER,)
    head: str = "svm"
    window: float | None = 1.0
    window_features: str = "flatten"
    standardize: bool = False
    C: float | None = None
    C_grid: tuple[float, ...] | None = None
    duration: float = 10.0
    epochs: int = 100

    def on(self, net: Any) -> Protocol:
        """These settings for ``net``: the paper's layer (``pool5``, SoundNet's embedding) becomes the network's own
        embedding layer (L³-Net: ``audio_pool4``); other layers stay as named (and must exist in ``net``)."""
        if self.layers == (DEFAULT_LAYER,) and DEFAULT_LAYER not in net.layers:
            return replace(self, layers=(net.embedding_layer,))
        return self

    def classifier(self, net: Any, **kwargs: Any) -> ClipClassifier:
        """A fresh classifier for these settings on ``net``."""
        return ClipClassifier(
            self.head,
            self.layers if len(self.layers) > 1 else self.layers[0],
            window=self.window,
            window_features=self.window_features,
            standardize=self.standardize,
            C=self.C,
            C_grid=self.C_grid,
            variant=self.variant,
            duration=self.duration,
            epochs=self.epochs,
            net=net,
            **kwargs,
        )


C_GRID = (0.001, 0.01, 0.1, 1.0)
SMALL_C_GRID = (0.00001, 0.0001, 0.001, 0.01)
"""For the high-dimensional standardised features (windows of frames, several layers): larger C rarely converges."""
LOGISTIC_GRID = (0.01, 0.1, 1.0, 10.0)

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "paper-exact",
            "eval_esc50.lua exactly: 44.1 kHz fed unresampled x2^-22, 10 s, pool5, 1 s windows, SVM C=0.01",
            variant="exact",
            C=0.01,
        ),
        Protocol("paper-resampled", "the same on audio resampled to 22,050 Hz (x2^-23)", C=0.01),
        Protocol(
            "windows-std",
            "paper windows, features standardised, SVM C by inner CV",
            standardize=True,
            C_grid=SMALL_C_GRID,
        ),
        Protocol(
            "meanmax", "clip mean+max of pool5 over time, SVM C=0.01", window=None, window_features="meanmax", C=0.01
        ),
        Protocol(
            "meanmax-std",
            "clip mean+max of pool5, standardised, SVM C by inner CV",
            window=None,
            window_features="meanmax",
            standardize=True,
            C_grid=C_GRID,
        ),
        Protocol(
            "layers-std",
            "clip mean+max of pool5+conv6+conv7, standardised, SVM C by inner CV",
            layers=("pool5", "conv6", "conv7"),
            window=None,
            window_features="meanmax",
            standardize=True,
            C_grid=SMALL_C_GRID,
        ),
        Protocol(
            "logistic",
            "clip mean+max of pool5, standardised, logistic regression C by inner CV",
            head="logistic",
            window=None,
            window_features="meanmax",
            standardize=True,
            C_grid=LOGISTIC_GRID,
        ),
        Protocol(
            "perceptron",
            "clip mean+max of pool5, standardised, Keras softmax layer (C=1, 100 epochs)",
            head="perceptron",
            window=None,
            window_features="meanmax",
            standardize=True,
            C=1.0,
        ),
    )
}
PAPER_PROTOCOLS = ("paper-exact", "paper-resampled")


def parse_protocols(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"paper"``, ``"all"`` or comma-separated names of :data:`PROTOCOLS` -> names in order."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    out: list[str] = []
    for name in names:
        expanded = PAPER_PROTOCOLS if name == "paper" else tuple(PROTOCOLS) if name == "all" else (name,)
        for item in expanded:
            if item not in PROTOCOLS:
                raise ConfigError(f"unknown variant {item!r}: expected 'paper', 'all' or one of {', '.join(PROTOCOLS)}")
            if item not in out:
                out.append(item)
    if not out:
        raise ConfigError("no variant given")
    return tuple(out)


# ----------------------------------------------------------------------------------------------------- running
@dataclass
class VariantResult:
    """Accuracy of one protocol over the folds, with the confusion matrix summed over the test folds."""

    protocol: Protocol
    classes: list[str]
    fold_accuracy: dict[int, float]
    fold_clips: dict[int, int]
    confusion: np.ndarray
    """(true, predicted) counts over all test clips, classes in :attr:`classes` order."""
    chosen_C: dict[int, float] = field(default_factory=dict)

    @property
    def mean_accuracy(self) -> float:
        """Mean of the per-fold accuracies (the paper's figure)."""
        return float(np.mean(list(self.fold_accuracy.values())))

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.protocol.name,
            "description": self.protocol.description,
            "mean_accuracy": self.mean_accuracy,
            "fold_accuracy": {str(k): v for k, v in self.fold_accuracy.items()},
            "fold_clips": {str(k): v for k, v in self.fold_clips.items()},
            "chosen_C": {str(k): v for k, v in self.chosen_C.items()},
            "classes": self.classes,
            "confusion": self.confusion.tolist(),
        }


def extract_dataset(
    dataset: EscDataset,
    net: Any,
    protocols: Sequence[Protocol],
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[tuple[str, float], list[ClipFeatures]]:
    """Features of every clip for each (input variant, duration) the protocols need, all their layers at once."""
    needs: dict[tuple[str, float], list[str]] = {}
    for protocol in protocols:
        layers = needs.setdefault((protocol.variant, protocol.duration), [])
        layers.extend(name for name in protocol.layers if name not in layers)
    paths = [clip.path for clip in dataset.clips]
    out = {}
    for (variant, duration), layers in needs.items():
        extractor = FeatureExtractor(net, layers, variant=variant, duration=duration, cache=cache, cache_dir=cache_dir)
        out[(variant, duration)] = extractor.extract(paths, progress=progress, desc=f"features ({variant})")
    return out


def run_benchmark(
    dataset: EscDataset,
    net: Any = None,
    protocols: Sequence[str] = PAPER_PROTOCOLS,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    log: Log | None = None,
) -> list[VariantResult]:
    """Leave-one-fold-out over ``dataset.folds``: for each fold, train on the other selected folds, test on it.

    With all five folds this is the paper's protocol; with a subset (e.g. folds 1,2) it is cross-validation over
    that subset. Needs at least two folds. Returns one :class:`VariantResult` per protocol, in order.
    """
    if len(dataset.folds) < 2:
        raise ConfigError(
            f"cross-validation needs clips from at least 2 folds, found only fold(s) "
            f"{', '.join(map(str, dataset.folds))}"
        )
    net = resolve_net(net)
    chosen = [PROTOCOLS[name].on(net) for name in parse_protocols(protocols)]
    features = extract_dataset(dataset, net, chosen, cache=cache, cache_dir=cache_dir, progress=progress)
    classes = dataset.classes
    index = {name: i for i, name in enumerate(classes)}
    folds = np.array([clip.fold for clip in dataset.clips])
    labels = [clip.category for clip in dataset.clips]
    results = []
    for protocol in chosen:
        clips = features[(protocol.variant, protocol.duration)]
        result = VariantResult(protocol, classes, {}, {}, np.zeros((len(classes), len(classes)), dtype=np.int64))
        for fold in dataset.folds:
            train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
            model = protocol.classifier(net, cache=cache, cache_dir=cache_dir)
            model.fit([clips[i] for i in train], [labels[i] for i in train])
            predicted = model.predict([clips[i] for i in test])
            truth = [labels[i] for i in test]
            for t, p in zip(truth, predicted, strict=True):
                result.confusion[index[t], index[p]] += 1
            result.fold_accuracy[fold] = float(np.mean([t == p for t, p in zip(truth, predicted, strict=True)]))
            result.fold_clips[fold] = len(test)
            result.chosen_C[fold] = model.fit_info_.C
            if log:
                log(
                    f"{protocol.name}: fold {fold} accuracy {result.fold_accuracy[fold]:.4f} "
                    f"({len(test)} test clips, C={model.fit_info_.C:g})"
                )
        results.append(result)
    return results


L3_PAPER_ESC50 = 0.793
"""L³-Net's audio features with a linear SVM on ESC-50 (Arandjelović & Zisserman 2017); no ESC-10 number."""


def format_results(results: Sequence[VariantResult], dataset: EscDataset, *, l3: bool = False) -> str:
    """A plain-text table: one row per variant, per-fold and mean accuracy (percent), and the paper's number for
    the dataset (``l3``: L³-Net's, next to SoundNet's)."""
    folds = dataset.folds
    name_width = max(len("variant"), *(len(r.protocol.name) for r in results))
    header = f"{'variant':<{name_width}}  " + "  ".join(f"fold {f}" for f in folds) + "    mean"
    lines = [header]
    for result in results:
        cells = "  ".join(f"{100 * result.fold_accuracy[f]:6.2f}" for f in folds)
        lines.append(f"{result.protocol.name:<{name_width}}  {cells}  {100 * result.mean_accuracy:6.2f}")
    key = "esc10" if dataset.esc10 else "esc50"
    soundnet = f"SoundNet-8 pool5 + linear SVM, all 5 folds of {dataset.name}: {100 * PAPER_ACCURACY[key]:.1f}"
    if l3:
        lines.append(f"(papers: L³-Net audio_pool4 + linear SVM, ESC-50: {100 * L3_PAPER_ESC50:.1f}; {soundnet})")
    else:
        lines.append(f"(paper, {soundnet})")
    return "\n".join(lines)


def plot_confusion(result: VariantResult, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write the confusion matrix (rows: true class, columns: predicted) of ``result`` as an image."""
    import matplotlib  # heavy (matplotlib, ~0.3 s): only when a plot is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(result.classes)
    size = max(5.0, 0.28 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        ax.imshow(result.confusion, cmap="Blues")
        ax.set_xticks(range(n), result.classes, rotation=90, fontsize=7 if n > 12 else 9)
        ax.set_yticks(range(n), result.classes, fontsize=7 if n > 12 else 9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if n <= 12:
            peak = result.confusion.max() or 1
            for i in range(n):
                for j in range(n):
                    value = result.confusion[i, j]
                    if value:
                        ax.text(
                            j,
                            i,
                            str(value),
                            ha="center",
                            va="center",
                            fontsize=8,
                            color="white" if value > peak / 2 else "black",
                        )
        ax.set_title(title or f"{result.protocol.name}: mean accuracy {100 * result.mean_accuracy:.1f}%")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path
