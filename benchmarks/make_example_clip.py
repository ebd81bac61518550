"""Synthesize the example clip shipped with the package: ``soundnet_keras/data/example_train.ogg``.

Twelve seconds of a passing freight train made with NumPy only (no recording, no third-party audio): a low
rumble (brown noise through a resonant low-pass, swelling as the train passes), wheel "clickety-clack" transients
over rail joints (pairs of decaying noise bursts every 0.62 s, Doppler-free), a two-tone air horn (311 + 370 Hz
with harmonics) from 2.5 s to 5 s, and faint wind. Deterministic (fixed seed); written as mono 22,050 Hz
OGG/Vorbis with soundfile. Run ``python benchmarks/make_example_clip.py`` from the repository root to rebuild it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
from scipy import signal

RATE = 22050
SECONDS = 12.0
OUT = Path(__file__).resolve().parents[1] / "soundnet_keras" / "data" / "example_train.ogg"


def synthesize(seed: int = 2016) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(RATE * SECONDS)
    t = np.arange(n) / RATE
    # Passing envelope: approaches, passes around 6 s, recedes.
    envelope = 0.35 + 0.65 * np.exp(-(((t - 6.0) / 3.5) ** 2))
    # Rumble: brown noise, low-passed at 180 Hz.
    brown = np.cumsum(rng.standard_normal(n))
    brown -= np.convolve(brown, np.ones(2048) / 2048, mode="same")  # remove the random walk's drift
    rumble = signal.lfilter(*signal.butter(4, 180 / (RATE / 2)), brown)
    rumble /= np.max(np.abs(rumble))
    # Wheel clacks on rail joints: pairs of short band-passed bursts.
    clacks = np.zeros(n)
    burst_len = int(0.04 * RATE)
    decay = np.exp(-np.arange(burst_len) / (0.006 * RATE))
    for start in np.arange(0.2, SECONDS - 0.1, 0.62):
        for delta in (0.0, 0.11):
            i = int((start + delta) * RATE)
            if i + burst_len < n:
                clacks[i : i + burst_len] += rng.standard_normal(burst_len) * decay
    clacks = signal.lfilter(*signal.butter(2, [300 / (RATE / 2), 3000 / (RATE / 2)], "band"), clacks)
    clacks /= np.max(np.abs(clacks))
    # Air horn: two detuned notes with harmonics, 2.5 s to 5 s, soft attack and release.
    horn = np.zeros(n)
    for f0 in (311.0, 370.0):
        for h, amp in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.15)):
            horn += amp * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
    gate = np.clip((t - 2.5) / 0.08, 0, 1) * np.clip((5.0 - t) / 0.15, 0, 1)
    horn *= gate / np.max(np.abs(horn))
    wind = signal.lfilter(*signal.butter(2, 800 / (RATE / 2)), rng.standard_normal(n))
    wind /= np.max(np.abs(wind))
    mix = envelope * (0.55 * rumble + 0.45 * clacks) + 0.35 * horn + 0.04 * wind
    return (0.8 * mix / np.max(np.abs(mix))).astype(np.float32)


def main() -> None:
    audio = synthesize()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(OUT, audio, RATE, format="OGG", subtype="VORBIS")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB, {audio.size / RATE:.1f} s)")


if __name__ == "__main__":
    main()
