"""soundnet-teacher on tiny videos made with ffmpeg, with tiny random-weight Keras image teachers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from soundnet_keras.errors import ConfigError
from soundnet_keras.training.data import make_dataset, read_manifest

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe not installed (CI installs them: apt-get install ffmpeg)",
)


def _make_video(path: Path, seconds: float, *, audio: bool = True, freq: int = 440) -> Path:
    command = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size=64x48:rate=5:duration={seconds}",
    ]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate=44100:duration={seconds}", "-c:a", "aac"]
    command += ["-c:v", "mpeg4", "-shortest", str(path)]
    subprocess.run(command, check=True, capture_output=True)
    return path


def _tiny_teacher(path: Path, classes: int, seed: int) -> Path:
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    model.save(path)
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("teacher")
    videos = root / "videos"
    videos.mkdir()
    _make_video(videos / "a.mp4", 3.2, freq=300)
    _make_video(videos / "b.mkv", 4.2, freq=900)
    _make_video(videos / "silent.mp4", 3.0, audio=False)
    (videos / "broken.mp4").write_bytes(b"not a video at all" * 50)
    return {
        "videos": videos,
        "objects": _tiny_teacher(root / "objects.keras", 1000, 1),
        "scenes": _tiny_teacher(root / "scenes.keras", 401, 2),
        "out": root / "shards",
    }


def test_teacher_cli_writes_shards_skips_broken_and_resumes(
    workspace: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from soundnet_keras.cli.teacher import main

    argv = [
        str(workspace["videos"]),
        "-o",
        str(workspace["out"]),
        "--objects",
        str(workspace["objects"]),
        "--scenes",
        str(workspace["scenes"]),
        "--step-seconds",
        "1",
        "--videos-per-shard",
        "1",
        "-q",
    ]
    assert main(argv) == 1  # some videos failed: exit 1, as for every batch command
    out, err = capsys.readouterr()
    assert out.startswith("2 video(s) written, 0 skipped") and "2 failed" in out
    assert "silent.mp4" in err and "no audio track" in err and "broken.mp4" in err
    manifest = read_manifest(workspace["out"])
    done = {Path(k).name: v for k, v in manifest["videos"].items()}
    assert done["a.mp4"]["status"] == "done" and done["a.mp4"]["steps"] == 3
    assert done["b.mkv"]["steps"] == 4 and done["silent.mp4"]["status"] == "failed"
    assert manifest["heads"]["objects"]["classes"] == 1000 and manifest["heads"]["scenes"]["classes"] == 401
    assert len(manifest["shards"]) == 2

    # rerun: everything skipped, nothing rewritten
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("0 video(s) written, 4 skipped")
    assert json.loads((workspace["out"] / "manifest.json").read_text()) == manifest


def test_shard_content_matches_the_teacher_on_the_frames(workspace: dict[str, Path]) -> None:
    import tensorflow as tf

    from soundnet_keras.training.teacher import (
        extract_audio,
        extract_frames,
        find_ffmpeg,
        load_teacher,
        parse_teacher_spec,
    )

    ffmpeg, ffprobe = find_ffmpeg()
    video = (workspace["videos"] / "b.mkv").resolve()
    teacher = load_teacher(parse_teacher_spec("objects", str(workspace["objects"])))
    frames = extract_frames(video, ffmpeg, 1.0, 4, teacher.size)
    assert frames.shape == (4, 32, 32, 3)
    expected = teacher.probabilities(frames)
    audio = extract_audio(video, ffmpeg, ffprobe)
    manifest = read_manifest(workspace["out"])
    shard = workspace["out"] / manifest["videos"][str(video)]["shard"]
    record = next(iter(tf.data.TFRecordDataset(str(shard))))
    example = tf.train.Example.FromString(record.numpy())
    stored = np.frombuffer(example.features.feature["objects"].bytes_list.value[0], "<f4").reshape(4, 1000)
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-7)
    pcm = np.frombuffer(example.features.feature["audio"].bytes_list.value[0], "<i2")
    assert len(pcm) == 4 * 22050
    np.testing.assert_allclose(pcm / 32768, audio[: len(pcm)], atol=1 / 32768 + 1e-6)
    # a 900 Hz tone went in: its spectrum peaks there
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 22050 / len(pcm) - 900) < 5

    ds, info = make_dataset(workspace["out"], arch="soundnet5", batch_size=2, crop_steps=3)
    audio_batch, targets = next(iter(ds))
    assert audio_batch.shape == (2, 66150) and targets["scenes"].shape == (2, 1, 401)
    assert info.usable_examples == 2


def test_teacher_errors_are_clear(
    workspace: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from soundnet_keras.cli.teacher import main

    assert main([str(workspace["videos"]), "-o", str(workspace["out"])]) == 2
    assert capsys.readouterr().err.strip() == "error: give at least one teacher: --objects SPEC and/or --scenes SPEC"
    assert main([str(workspace["videos"]), "-o", "x", "--objects", "nosuchnet"]) == 2
    assert "neither a model file nor a keras.applications model" in capsys.readouterr().err
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main([str(workspace["videos"]), "-o", "x", "--objects", str(workspace["objects"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ffmpeg and ffprobe not found on PATH") and err.count("\n") == 1


def test_an_application_teacher_without_network_is_one_clear_error(
    workspace: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import urllib.error

    import keras.src.utils.file_utils as file_utils

    from soundnet_keras.cli.teacher import main

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    monkeypatch.setenv("KERAS_HOME", str(workspace["out"].parent / "keras-home"))
    assert main([str(workspace["videos"]), "-o", str(workspace["out"].parent / "x"), "--objects", "mobilenet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: objects teacher 'mobilenet': its imagenet weights cannot be downloaded"), err
    assert err.count("\n") == 1 and "save the model once" in err and "Traceback" not in err


def test_parallel_decoding_writes_the_same_shards(workspace: dict[str, Path], tmp_path: Path) -> None:
    """Videos decoded ahead by threads and labelled in batches across videos: the same records, in input order,
    as decoding one at a time."""
    from soundnet_keras.training.teacher import collect_videos, extract_shards, load_teacher, parse_teacher_spec

    teachers = {h: load_teacher(parse_teacher_spec(h, str(workspace[h]))) for h in ("objects", "scenes")}
    videos = collect_videos([workspace["videos"]])
    reports = {}
    for workers in (0, 3):
        out = tmp_path / f"workers{workers}"
        reports[workers] = extract_shards(videos, out, teachers, step_seconds=1.0, videos_per_shard=1, workers=workers)
    assert reports[0].done == reports[3].done and len(reports[0].failed) == len(reports[3].failed) == 2
    for shard in sorted((tmp_path / "workers0").glob("*.tfrecord")):
        other = tmp_path / "workers3" / shard.name
        records = [tf_records(p) for p in (shard, other)]
        assert len(records[0]) == len(records[1]) == 1
        for a, b in zip(*records, strict=True):
            for name in ("objects", "scenes", "audio"):
                x = np.frombuffer(a.features.feature[name].bytes_list.value[0], np.uint8)
                y = np.frombuffer(b.features.feature[name].bytes_list.value[0], np.uint8)
                if name == "audio":
                    np.testing.assert_array_equal(x, y)
                else:  # batched with other videos' frames: the same to float32 rounding
                    np.testing.assert_allclose(x.view("<f4"), y.view("<f4"), rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="workers must be a whole number >= 0"):
        extract_shards(videos, tmp_path / "bad", teachers, workers=-1)


def tf_records(path: Path) -> list:
    import tensorflow as tf

    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]


def test_places365_teacher_names_flow_into_the_trained_weights(
    workspace: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from soundnet_keras import SoundNet
    from soundnet_keras.cli.teacher import main
    from soundnet_keras.training.train import TrainConfig, train

    places = _tiny_teacher(tmp_path / "places365.keras", 365, 3)
    names = [f"/{chr(97 + i % 26)}/place_{i}" for i in range(365)]
    labels = tmp_path / "categories_places365.txt"  # the official file's layout: "/a/airfield 0"
    labels.write_text("".join(f"{name} {i}\n" for i, name in enumerate(names)))
    shards = tmp_path / "shards"
    argv = [str(workspace["videos"]), "-o", str(shards), "--objects", str(workspace["objects"]), "--step-seconds", "1"]
    assert (
        main([*argv, "--scenes", f"{places},preprocess=none,labels={labels}", "-q"]) == 1
    )  # the workspace holds 2 broken videos
    capsys.readouterr()
    heads = read_manifest(shards)["heads"]
    assert heads["scenes"]["classes"] == 365 and heads["scenes"]["categories"] == names
    assert "categories" not in heads["objects"]  # a model file without labels=: no names

    config = TrainConfig(shards, tmp_path / "run", arch="soundnet5", steps=1, batch_size=2, crop_seconds=3)
    config.checkpoint_every, config.verbose, config.tensorboard = 1, 0, False
    messages: list[str] = []
    result = train(config, log=messages.append)
    assert [m for m in messages if m.startswith("note:")] == [
        "note: the objects teacher's category names are unknown (shards made without them; give a model file teacher "
        "labels=FILE): the weights name its 1000 classes objects_0000 ... objects_0999"
    ]
    net = SoundNet.from_pretrained(result.weights_path, verbose=False)
    assert net.head_classes == {"objects": 1000, "scenes": 365}
    assert net.categories["scenes"] == names and net.categories["objects"][999] == "objects_0999"
    top = net.predict(np.zeros(22050, np.float32) + 0.1, 22050).top("scenes", k=2)
    assert all(name in names for name, _ in top)


def test_teacher_labels_files_are_checked(workspace: dict[str, Path], tmp_path: Path) -> None:
    from soundnet_keras.errors import ConfigError
    from soundnet_keras.training.teacher import load_teacher, parse_teacher_spec, read_labels

    labels = tmp_path / "labels.txt"
    labels.write_text("tench\ngoldfish\n\n")
    assert read_labels(labels, 2, "objects") == ["tench", "goldfish"]
    labels.write_text("class 7\nother 1\n")  # numbers that are not the line's index belong to the names
    assert read_labels(labels, 2, "objects") == ["class 7", "other 1"]
    spec = parse_teacher_spec("scenes", f"{workspace['scenes']},labels={labels}")
    assert spec.labels == str(labels)
    with pytest.raises(ConfigError, match=r"labels file .*labels\.txt' has 2 names, but the teacher gives 401 classes"):
        load_teacher(spec)
    labels.write_text("a\n\nb\n")
    with pytest.raises(ConfigError, match="line 2 is empty"):
        read_labels(labels, 3, "scenes")
    with pytest.raises(ConfigError, match="cannot be read"):
        read_labels(tmp_path / "missing.txt", 3, "scenes")
    with pytest.raises(ConfigError, match="labels= needs a file"):
        parse_teacher_spec("scenes", "vgg16,labels=")
