"""ESC-50/ESC-10 reading, the paper's protocol on esc10-dev, and the ``soundnet-bench esc`` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from soundnet_keras.errors import ConfigError
from soundnet_keras.transfer.esc import PROTOCOLS, parse_folds, parse_protocols, read_esc, run_benchmark

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def esc_root(shared_dir: Path) -> Path:
    root = shared_dir / "esc10-dev"
    if not (root / "meta" / "esc50.csv").is_file():
        pytest.skip(f"{root} lacks meta/esc50.csv")
    return root


@pytest.fixture(scope="session")
def paper_results(esc_root: Path, pretrained_net, feature_cache: Path):
    """Both paper variants on esc10-dev (2-fold CV); extracts pool5 of the 160 clips once into the session cache."""
    dataset = read_esc(esc_root, esc10=True, folds="1,2")
    return dataset, run_benchmark(dataset, pretrained_net, ("paper-exact", "paper-resampled"), cache_dir=feature_cache)


def test_read_esc_dev_subset(esc_root: Path) -> None:
    dataset = read_esc(esc_root, esc10=True)
    assert len(dataset.clips) == 160 and dataset.folds == (1, 2)
    assert dataset.missing_folds == [3, 4, 5] and dataset.missing_files == []
    assert len(dataset.classes) == 10 and dataset.classes[0] == "dog"  # ordered by ESC-50 target
    assert len(dataset.fold_clips(2)) == 80
    assert any("folds without clips" in line for line in dataset.report())
    only_one = read_esc(esc_root, folds=[2])
    assert only_one.folds == (2,) and len(only_one.clips) == 80


def test_read_esc_reports_missing_files(esc_root: Path, tmp_path: Path) -> None:
    (tmp_path / "audio").mkdir()
    (tmp_path / "meta").mkdir()
    lines = (esc_root / "meta" / "esc50.csv").read_text().splitlines()
    header, rows = lines[0], [r for r in lines[1:] if r.split(",")[1] == "1"][:3]
    for row in rows[:2]:
        name = row.split(",")[0]
        (tmp_path / "audio" / name).symlink_to(esc_root / "audio" / name)
    (tmp_path / "meta" / "esc50.csv").write_text("\n".join([header, *rows]) + "\n")
    dataset = read_esc(tmp_path)
    assert len(dataset.clips) == 2
    assert dataset.missing_files == [rows[2].split(",")[0]]
    assert dataset.missing_folds == [2, 3, 4, 5]
    assert any("1 clips listed in the metadata are missing" in line for line in dataset.report())
    with pytest.raises(ConfigError, match="at least 2 folds"):
        run_benchmark(dataset, object())


def test_read_esc_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a folder"):
        read_esc(tmp_path / "absent")
    with pytest.raises(ConfigError, match=r"meta/esc50\.csv' not found"):
        read_esc(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text("filename,fold\nx.wav,1\n")
    with pytest.raises(ConfigError, match="lacks columns"):
        read_esc(tmp_path)
    (tmp_path / "meta" / "esc50.csv").write_text("filename,fold,target,category,esc10\nx.wav,1,0,dog,True\n")
    with pytest.raises(ConfigError, match="no ESC-50 audio files"):
        read_esc(tmp_path)
    with pytest.raises(ConfigError, match="fold 7 does not exist"):
        parse_folds("1,7")
    with pytest.raises(ConfigError, match="comma-separated integers"):
        parse_folds("1,x")
    with pytest.raises(ConfigError, match="unknown variant 'best'"):
        parse_protocols("paper,best")
    assert parse_protocols("paper") == ("paper-exact", "paper-resampled")
    assert parse_protocols("all") == tuple(PROTOCOLS)


def test_paper_protocol_settings_and_window_counts(esc_root: Path, pretrained_net, feature_cache: Path) -> None:
    exact, resampled = PROTOCOLS["paper-exact"], PROTOCOLS["paper-resampled"]
    assert (exact.variant, resampled.variant) == ("exact", "resampled")
    for protocol in (exact, resampled):
        assert protocol.layers == ("pool5",) and protocol.head == "svm" and protocol.C == 0.01
        assert protocol.window == 1.0 and protocol.window_features == "flatten" and protocol.duration == 10.0
    dataset = read_esc(esc_root, esc10=True, folds="1,2")
    paths = [c.path for c in dataset.clips[:1]] + [c.path for c in dataset.clips if c.category != "dog"][:1]
    labels = ["dog", "other"]
    # exact: 441,000 samples of 44.1 kHz audio -> 54 pool5 frames -> windows of 6 frames -> 49 windows x 1536 dims
    # resampled: 220,500 samples at 22,050 Hz -> 27 frames -> windows of 3 -> 25 windows x 768 dims
    for protocol, width, count, dims in ((exact, 6, 49, 1536), (resampled, 3, 25, 768)):
        model = protocol.classifier(pretrained_net, cache_dir=feature_cache).fit(paths, labels)
        assert model.window_frames_ == width
        assert model.fit_info_.n_windows == 2 * count
        assert model.head_.weights.shape == (2, dims)
        windows = model.window_scores(paths[:1])[0]
        assert windows.shape == (count, 2)
        mean = windows.mean(axis=0)  # binary: one decision value, classes_[1]'s mean score minus classes_[0]'s
        np.testing.assert_allclose(model.decision_function(paths[:1])[0], mean[1] - mean[0], rtol=1e-12)


def test_paper_protocol_on_esc10_dev(paper_results) -> None:
    dataset, results = paper_results
    for result in results:
        assert set(result.fold_accuracy) == {1, 2}
        assert result.confusion.sum() == len(dataset.clips)
        assert result.fold_clips == {1: 80, 2: 80}
        np.testing.assert_allclose(result.mean_accuracy, np.trace(result.confusion) / 160)  # equal-size folds
        assert result.mean_accuracy >= 0.7, (result.protocol.name, result.mean_accuracy)  # chance is 0.1


def test_bench_cli_on_two_folds(
    esc_root: Path, pretrained_path: Path, feature_cache: Path, paper_results, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable,
        "-m",
        "soundnet_keras.cli.bench",
        "esc",
        "--root",
        str(esc_root),
        "--esc10",
        "--folds",
        "1,2",
        "--weights",
        str(pretrained_path),
        "--cache-dir",
        str(feature_cache),
        "--out",
        str(out),
        "--no-progress",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fold 1  fold 2    mean" in done.stdout
    assert "paper-exact" in done.stdout and "paper-resampled" in done.stdout
    summary = json.loads((out / "results.json").read_text())
    assert summary["folds"] == [1, 2] and summary["clips"] == 160
    _, results = paper_results
    for result, saved in zip(results, summary["results"], strict=True):  # same features, same numbers
        assert saved["variant"] == result.protocol.name
        assert saved["mean_accuracy"] == pytest.approx(result.mean_accuracy)
        assert f"{100 * result.mean_accuracy:6.2f}" in done.stdout
        assert (out / f"confusion_{result.protocol.name}.png").stat().st_size > 1000


def test_bench_cli_user_errors(tmp_path: Path, capsys) -> None:
    from soundnet_keras.cli.bench import main

    assert main(["esc", "--root", str(tmp_path / "absent"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ESC root") and err.count("\n") == 1
    assert main(["esc", "--root", str(tmp_path), "--variants", "nope"]) == 2
    assert "unknown variant 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["esc"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: the following arguments are required: --root")
