"""What the L³ tests share: 36 synthetic audio-visual videos of 6 s (and one broken file) and their AVC shards."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

NUM_VIDEOS, SECONDS, RATE = 36, 6, 48_000

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe not installed (CI installs them: apt-get install ffmpeg)",
)


def render_synthetic_avc(root: Path, num_videos: int = NUM_VIDEOS, seconds: int = SECONDS) -> dict:
    """Render ``num_videos`` synthetic videos of ``seconds`` (seed 3) and a broken file into ``root`` and write their
    AVC shards (10 videos a shard; about 35 s for the default 36 videos of 6 s on a shared 2-core machine):
    ``{"root", "videos", "broken", "shards", "report", "truth_by_id"}`` (``truth_by_id``: each video's class per
    second, keyed by its dataset id)."""
    from soundnet_keras.l3.avc_data import video_ids, write_avc_shards
    from soundnet_keras.l3.synthetic import render_videos

    videos = render_videos(root / "videos", num_videos, seconds=seconds, seed=3)
    broken = root / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 50)
    shards = root / "shards"
    report = write_avc_shards([v.path for v in videos] + [broken], shards, videos_per_shard=10, workers=2)
    truth = {str(v.path): v.classes for v in videos}
    ids = video_ids(truth)
    return {
        "root": root,
        "videos": videos,
        "broken": broken,
        "shards": shards,
        "report": report,
        "truth_by_id": {ids[name]: classes for name, classes in truth.items()},
    }
