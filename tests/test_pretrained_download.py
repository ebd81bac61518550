"""First use of a preset through the authors'-zip route, served from loopback: conversion, cache, concurrency."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from authors_tables import random_torch_params
from t7_writer import soundnet_model, write_t7

from soundnet_keras import PretrainedUnavailableError, SoundNet, pretrained
from soundnet_keras.weights import load_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def authors_site(tmp_path_factory):
    """A loopback HTTP server with a ``soundnet_models_public.zip`` holding a SoundNet-5 written as the authors did."""
    root = tmp_path_factory.mktemp("site")
    t7 = root / "soundnet5_final.t7"
    write_t7(t7, soundnet_model("soundnet5", random_torch_params("soundnet5", np.random.default_rng(5)),
                                flavour="cudnn", tensor_type="torch.CudaTensor"))  # fmt: skip
    with zipfile.ZipFile(root / "soundnet_models_public.zip", "w") as zf:
        zf.write(t7, "models/soundnet5_final.t7")
    (root / "broken.zip").write_bytes(b"this is not a zip file")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_concurrent_first_use_converts_once(authors_site, tmp_path):
    cache = tmp_path / "cache"
    env = {
        "SOUNDNET_KERAS_CACHE": str(cache),
        "SOUNDNET_KERAS_AUTHORS_URL": f"{authors_site}/soundnet_models_public.zip",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": str(REPO),
    }
    code = "from soundnet_keras import SoundNet; net = SoundNet.from_pretrained('soundnet5'); print(net.arch)"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "soundnet5"
    logs = "".join(err for _, err in results)
    assert logs.count("downloading the authors' weights") == 1, logs  # the second process found it cached
    assert "largest relative difference" in logs
    files = sorted(p.name for p in cache.iterdir())
    assert files == ["soundnet5.lock", "soundnet5.weights.h5"], files  # no temporary left behind
    weights = load_weights(cache / "soundnet5.weights.h5")
    assert weights.architecture == "soundnet5" and weights.source == "soundnet5_final.t7"


def test_corrupt_cache_is_replaced(authors_site, tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path))
    monkeypatch.setenv("SOUNDNET_KERAS_AUTHORS_URL", f"{authors_site}/soundnet_models_public.zip")
    (tmp_path / "soundnet5.weights.h5").write_bytes(b"half a file")
    messages: list[str] = []
    path = pretrained.resolve("soundnet5", log=messages.append)
    assert load_weights(path).architecture == "soundnet5"
    assert any("unusable" in m for m in messages)


def test_unusable_sources_give_one_clear_error(authors_site, tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path))
    monkeypatch.setenv("SOUNDNET_KERAS_AUTHORS_URL", f"{authors_site}/broken.zip")
    with pytest.raises(PretrainedUnavailableError, match=r"authors' zip: .*not a valid zip.*convert/t7_to_h5\.py"):
        SoundNet.from_pretrained("soundnet5", verbose=False)
    monkeypatch.setenv("SOUNDNET_KERAS_AUTHORS_URL", f"{authors_site}/missing.zip")
    with pytest.raises(PretrainedUnavailableError, match="404"):
        SoundNet.from_pretrained("soundnet5", verbose=False)
    assert not (tmp_path / "soundnet5.weights.h5").exists()
