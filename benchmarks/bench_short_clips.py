"""Why short clips are repeated to 20 s and long clips extended by 1.49 s: the measurements behind the padding policy.

Run from the repository root, with ``../shared`` beside the checkout (about 1 minute on 2 cores)::

    python benchmarks/bench_short_clips.py [--shared ../shared] [--weights soundnet8]

On the 160 real 5-s ESC-10 clips of ``../shared/esc10-dev`` (and 10-s and longer clips made by joining clips of
one class) and the 19.93-s railroad recording it prints:

(a) heads' answer vs the length a 5-s clip is repeated to (raw network, every frame): share of clips with a
    plausible label in the top 5 objects + top 5 scenes (``tests/esc10_plausible.py``), distinct top scenes, share
    of clips whose top scene has p >= 0.99, and the median over clips of the lowest per-frame maximum scene logit
    (degenerate frames: about -130 to -25; normal: +1 to +5);
(b) the last head frame's maximum scene logit vs how far the input runs past that frame's minimum length (the
    margin), which locates the cause: a head frame that reads the last conv7 frame;
(c) the policies on 5-s and 10-s clips: the old one (repeat to the 9.5-s minimum), the new default (repeat to the
    20-s training crop), silence to 20 s, repeat to the 10.98-s reliable minimum;
(d) clips longer than 10.98 s (real joined clips cut to 11-19.5 s, the railroad recording cut every 0.25 s, and
    looped to 20-60 s): no end handling, dropping frames without the margin, and the default (what the last frame
    lacks of the margin, at most 1.49 s, appended from the clip's start; the unpadded clip's frames reported).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from scipy.special import softmax

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from esc10_plausible import is_plausible  # the tests' label map: one yardstick for both

from soundnet_keras import SoundNet, architecture
from soundnet_keras.audio import load_audio

ARCH = "soundnet8"
MIN = architecture.geometry(ARCH, "objects").min_samples
HOP = architecture.geometry(ARCH, "objects").hop
MARGIN = architecture.head_margin(ARCH)
SR = architecture.SAMPLE_RATE


def quality(net: SoundNet, logits: list[tuple[np.ndarray, np.ndarray]], categories: list[str]) -> str:
    """One line: plausible share, distinct top scenes, confident share, median worst-frame max logit."""
    objects_names, scene_names = net.categories["objects"], net.categories["scenes"]
    plausible, confident, tops, worst = 0, 0, [], []
    for (objects, scenes), category in zip(logits, categories, strict=True):
        if scenes.shape[0] == 0:
            tops.append("(no frame)")
            continue
        o = softmax(objects.astype(np.float64), axis=-1).mean(0)
        s = softmax(scenes.astype(np.float64), axis=-1).mean(0)
        labels = [objects_names[i] for i in np.argsort(-o)[:5]] + [scene_names[i] for i in np.argsort(-s)[:5]]
        plausible += is_plausible(category, labels, objects_names)
        confident += s.max() >= 0.99
        tops.append(scene_names[int(s.argmax())])
        worst.append(scenes.max(axis=-1).min())
    n = len(categories)
    common, count = Counter(tops).most_common(1)[0]
    return (
        f"plausible {100 * plausible / n:5.1f}% | distinct top scenes {len(set(tops)):3d} | p>=0.99 "
        f"{100 * confident / n:5.1f}% | median worst max logit {np.median(worst) if worst else float('nan'):7.2f} | "
        f"most common top scene {common} ({100 * count / n:.0f}%)"
    )


def run(net: SoundNet, waveforms: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Raw network (no policy), every frame, batched by length."""
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(waveforms)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(waveforms):
        by_length.setdefault(w.size, []).append(i)
    for members in by_length.values():
        for begin in range(0, len(members), 16):
            part = members[begin : begin + 16]
            values = net.forward(np.stack([waveforms[i] for i in part]), ("objects", "scenes"))
            for row, i in enumerate(part):
                out[i] = (values["objects"][row], values["scenes"][row])
    return out  # type: ignore[return-value]


def policy(net: SoundNet, waveforms: list[np.ndarray], pad) -> list[tuple[np.ndarray, np.ndarray]]:
    """The library's policy (SoundNet.intermediates with the heads), logits per reported frame."""
    results = []
    for w in waveforms:
        heads = net.intermediates(w, layers=("objects", "scenes"), pad=pad)
        results.append((heads["objects"].values, heads["scenes"].values))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--weights", default="soundnet8")
    args = parser.parse_args(argv)
    net = SoundNet.from_pretrained(args.weights, verbose=False)
    root = args.shared / "esc10-dev"
    with open(root / "meta" / "esc50.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    clips = [load_audio(root / "audio" / r["filename"])[0] for r in rows]
    classes = [r["category"] for r in rows]
    by_class: dict[str, list[np.ndarray]] = {}
    for clip, category in zip(clips, classes, strict=True):
        by_class.setdefault(category, []).append(clip)
    pairs = [(np.concatenate([c[i], c[(i + 1) % len(c)]]), k) for k, c in by_class.items() for i in range(0, len(c), 2)]
    fours = [
        (np.concatenate([c[(i + j) % len(c)] for j in range(4)]), k) for k, c in by_class.items() for i in range(len(c))
    ]
    railroad = load_audio(args.shared / "audio" / "railroad_audio.wav")[0]
    print(f"data: {len(clips)} ESC-10 clips of 5 s ({root}); {len(pairs)} 10-s and {len(fours)} 20-s joined clips")

    print("\n(a) 5-s clips repeated circularly to L seconds, raw network, mean over every frame")
    for seconds in (9.5, 10, 10.5, 11, 12, 13, 14, 16, 20, 25, 30):
        n = max(MIN, round(seconds * SR))
        looped = [architecture.pad_to_length(c, n, "repeat") for c in clips]
        print(
            f"  L = {seconds:4.1f} s ({architecture.output_length(ARCH, 'objects', n)} frames): "
            f"{quality(net, run(net, looped), classes)}"
        )

    print("\n(b) last head frame's max scene logit vs margin past its minimum length (40 clips, looped)")
    subset = clips[::4]
    for frames in (1, 4):
        for margin in range(0, 2 * MARGIN, 4096):
            n = MIN + (frames - 1) * HOP + margin
            logits = run(net, [architecture.pad_to_length(c, n, "repeat") for c in subset])
            last = np.array([scenes[-1].max() for _, scenes in logits])
            print(
                f"  {frames} frame(s), margin {margin:6d} samples: median {np.median(last):8.2f}, min {last.min():8.2f}"
            )

    print("\n(c) policies on short clips")
    for name, data in (("5-s", list(zip(clips, classes, strict=True))), ("10-s", pairs)):
        waves, cats = [w for w, _ in data], [c for _, c in data]
        old = run(net, [architecture.pad_to_length(w, MIN, "repeat") for w in waves])
        print(f"  {name} old: repeat to the 9.5-s minimum       {quality(net, old, cats)}")
        print(f"  {name} new default: repeat to 20 s            {quality(net, policy(net, waves, 'repeat'), cats)}")
        print(f"  {name} pad='zeros': silence to 20 s           {quality(net, policy(net, waves, 'zeros'), cats)}")
        reliable = architecture.reliable_min_samples(ARCH)
        short = run(net, [architecture.pad_to_length(w, reliable, "repeat") for w in waves])
        print(f"  {name} repeat to the 10.98-s reliable minimum {quality(net, short, cats)}")

    print("\n(d) longer clips: no end handling / drop frames without the margin / default (append what it lacks)")
    for seconds in (11, 12, 13, 13.5, 14, 15, 16, 17, 18, 19, 19.5):
        n = round(seconds * SR)
        waves, cats = [w[:n] for w, _ in fours], [c for _, c in fours]
        raw = run(net, waves)
        kept = architecture.reliable_head_frames(ARCH, n)
        dropped = [(o[:kept], s[:kept]) for o, s in raw]
        print(f"  {seconds:4.1f} s none:    {quality(net, raw, cats)}")
        print(f"  {seconds:4.1f} s drop:    {quality(net, dropped, cats)}")
        print(f"  {seconds:4.1f} s default: {quality(net, policy(net, waves, 'repeat'), cats)}")
    looped = np.tile(railroad, 4)
    lengths = [round(s * SR) for s in np.arange(10.0, 19.93, 0.25)] + [round(s * SR) for s in np.linspace(20.5, 60, 32)]
    names = net.categories["scenes"]
    for label, fn in (
        ("none", lambda w: run(net, [w])[0]),
        ("drop", lambda w: tuple(x[: architecture.reliable_head_frames(ARCH, w.size)] for x in run(net, [w])[0])),
        ("default", lambda w: policy(net, [w], "repeat")[0]),
    ):
        tops = Counter()
        for n in lengths:
            scenes = fn(looped[:n])[1]
            tops[
                names[int(softmax(scenes.astype(np.float64), axis=-1).mean(0).argmax())] if len(scenes) else "(none)"
            ] += 1
        print(f"  railroad cut to {len(lengths)} lengths 10-60 s, {label:7s}: clip-level top scene {dict(tops)}")


if __name__ == "__main__":
    main()
