"""Per-file, resumable extraction (``soundnet-extract``, :mod:`soundnet_keras.extraction`): inputs and mirrored
outputs, the manifest, kills at every stage resumed to the same outputs, formats read back, and bad arguments."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from soundnet_keras.errors import ConfigError, FeatureFileError
from soundnet_keras.extraction import FeatureFolder, load_features
from soundnet_keras.extraction.jobs import plan_jobs
from soundnet_keras.extraction.manifest import MANIFEST_NAME, Manifest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("pool5", "conv7")


# --------------------------------------------------------------------------------------------- inputs → jobs
def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_jobs_mirror_folders_globs_and_lists(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    for name in ("dog/1.wav", "dog/1.flac", "rain/2.WAV", "notes.txt"):
        _touch(audio / name)
    extra = _touch(tmp_path / "elsewhere" / "x.ogg")
    jobs = plan_jobs([str(audio)], ".npz")
    assert [(j.input.relative_to(audio).as_posix(), j.output.as_posix()) for j in jobs] == [
        ("dog/1.flac", "dog/1.flac.npz"),
        ("dog/1.wav", "dog/1.wav.npz"),  # the extension is kept: 1.wav and 1.flac do not collide
        ("rain/2.WAV", "rain/2.WAV.npz"),
    ]
    # a glob and a stdin list: relative to relative_to; the same file twice is one job
    listed = io.StringIO(f"# my list\n{audio / 'dog' / '1.wav'}\n\n  {extra}  \n")
    jobs = plan_jobs([str(audio / "**" / "*.wav"), "-"], ".h5", stdin=listed, relative_to=tmp_path)
    assert [j.output.as_posix() for j in jobs] == ["audio/dog/1.wav.h5", "elsewhere/x.ogg.h5"]
    # outside relative_to: the absolute path, without its root
    (job,) = plan_jobs([str(extra)], ".npz", relative_to=audio)
    assert job.output == Path(*extra.parts[1:]).with_name("x.ogg.npz")


def test_jobs_refuse_what_cannot_be_right(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"folder '.*empty' holds no audio files: expected files ending in \.wav"):
        plan_jobs([str(tmp_path / "empty")], ".npz")
    with pytest.raises(ConfigError, match=r"pattern '.*nothing-\*\.wav' matches no files"):
        plan_jobs([str(tmp_path / "nothing-*.wav")], ".npz")
    a, b = _touch(tmp_path / "a" / "clip.wav"), _touch(tmp_path / "b" / "clip.wav")
    with pytest.raises(ConfigError, match=r"inputs '.*a/clip.wav' and '.*b/clip.wav' would both write 'clip.wav.npz'"):
        plan_jobs([str(tmp_path / "a"), str(tmp_path / "b")], ".npz")
    assert len(plan_jobs([str(a), str(b)], ".npz", relative_to=tmp_path)) == 2  # named through their folders: fine
    with pytest.raises(ConfigError, match="no input files"):
        plan_jobs(["-"], ".npz", stdin=io.StringIO("\n# nothing\n"))
    missing = plan_jobs([str(tmp_path / "missing.wav")], ".npz")  # kept: extraction reports it as failed
    assert missing[0].input == tmp_path / "missing.wav"


# ----------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def corpus(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """36 real ESC-10 clips (5 s, 44.1 kHz) listed from ../shared, and a broken file."""
    clips = sorted((shared_dir / "esc10-dev" / "audio").glob("*.wav"))[:36]
    if len(clips) < 36:
        pytest.skip("fewer than 36 ESC-10 clips in the shared folder")
    folder = tmp_path_factory.mktemp("corpus")
    broken = folder / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    listing = folder / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in [*clips[:20], broken, *clips[20:]]))
    return {"clips": clips, "broken": broken, "list": listing, "root": shared_dir}


ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
EXTRACT = [sys.executable, "-m", "soundnet_keras.cli.extract"]


def _arguments(corpus: dict, output: Path, weights: Path, *extra: str) -> list[str]:
    """``soundnet-extract``'s arguments for the corpus list on stdin, batches of 4, the test's layers."""
    layers = [arg for layer in LAYERS for arg in ("-l", layer)]
    root = str(corpus["root"])
    return [
        "-",
        "-o",
        str(output),
        "--weights",
        str(weights),
        *layers,
        "--relative-to",
        root,
        "--batch-size",
        "4",
        *extra,
    ]


def _extract(
    corpus: dict, output: Path, weights: Path, *extra: str, timeout: int = 300, listing: Path | None = None
) -> subprocess.CompletedProcess:
    """``soundnet-extract - -o output`` on the corpus list (or ``listing``), in a fresh process (as a user runs it)."""
    with open(listing or corpus["list"], encoding="utf-8") as stream:
        return subprocess.run(
            [*EXTRACT, *_arguments(corpus, output, weights, *extra)],
            stdin=stream,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=ENV,
            check=False,
        )


@pytest.fixture(scope="module")
def reference(corpus: dict, pretrained_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run: the outputs every interrupted run must end with."""
    output = tmp_path_factory.mktemp("reference") / "features"
    done = _extract(corpus, output, pretrained_path)
    assert done.returncode == 1, done.stderr[-3000:]  # the broken file
    return output


def _outputs(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in folder.rglob("*.npz")}


def _assert_same_outputs(folder: Path, reference: Path) -> None:
    ours, theirs = _outputs(folder), _outputs(reference)
    assert sorted(ours) == sorted(theirs) and len(ours) == 36
    for name, path in ours.items():
        a, b = load_features(path), load_features(theirs[name])
        assert a.provenance == b.provenance, name
        for layer in LAYERS:
            # batches differ after a resume; equal-length clips give the same numbers batched or alone, to float
            # rounding at most
            np.testing.assert_allclose(
                a[layer].values, b[layer].values, rtol=1e-5, atol=1e-5 * np.abs(b[layer].values).max()
            )
            np.testing.assert_array_equal(a[layer].times.center, b[layer].times.center)
    hidden = [p for p in folder.rglob(".*") if p.is_file()]
    assert not hidden, hidden  # no half-written temporaries left
    manifest = Manifest(folder)
    assert manifest.counts() == {"done": 36, "failed": 1}
    assert "broken.wav" in (manifest.previous_error(_broken(folder)) or "")


def _broken(folder: Path) -> Path:
    entry = next(e for e in Manifest(folder).entries.values() if e.status == "failed")
    return Path(entry.input)


def test_reference_run_writes_one_file_per_input_with_provenance(reference: Path, corpus: dict, pretrained_net) -> None:
    features = load_features(reference)
    assert isinstance(features, FeatureFolder) and len(features) == 36
    first = corpus["clips"][0]
    record = features[str(first)]
    assert record.path == reference / first.relative_to(corpus["root"]).with_name(first.name + ".npz")
    prov = record.provenance
    assert prov["input"]["path"] == str(first) and prov["input"]["sample_rate"] == 44100
    assert prov["input"]["duration_s"] == pytest.approx(5.0) and len(prov["input"]["sha256"]) == 64
    assert prov["layers"]["pool5"]["hop_samples"] == 8192 and prov["layers"]["conv7"]["hop_samples"] == 32768
    assert prov["padding"] == {"policy": "repeat", "padded": False} and prov["architecture"] == "soundnet8"
    from soundnet_keras import __version__
    from soundnet_keras.transfer.features import model_identity

    assert prov["weights_sha256"] == model_identity(pretrained_net) and prov["version"] == __version__
    # the same numbers as the Python API on the same file
    direct = pretrained_net.intermediates(str(first), layers=LAYERS, pad="repeat")
    for layer in LAYERS:
        np.testing.assert_allclose(record[layer].values, direct[layer].values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(record[layer].times.end, direct[layer].times.end)
    with pytest.raises(ConfigError, match="has no layer 'conv5'; it holds"):
        record["conv5"]
    assert oct(record.path.stat().st_mode & 0o777) != oct(0o600)  # readable like any output, not mkstemp's 0600


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from soundnet_keras.extraction import formats, manifest

    mode, at = sys.argv[1], int(sys.argv[2])
    calls = []

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if mode == "mid-write":  # a feature file half written when the process dies
        write = formats._write_npz
        def half_then_die(tmp, features, text):
            write(tmp, features, text)
            calls.append(tmp)
            if len(calls) == at:
                os.truncate(tmp, os.path.getsize(tmp) // 2)
                die()
        formats._write_npz = half_then_die
    else:  # "before-record": renamed into place, not yet in the manifest; "mid-record": half a manifest line
        record = manifest.Manifest.record
        def record_then_die(self, *args, **kwargs):
            calls.append(args)
            if len(calls) == at:
                if mode == "mid-record":
                    with open(self.path, "a") as handle:
                        handle.write('{"input": "/cut/off/he')
                die()
            return record(self, *args, **kwargs)
        manifest.Manifest.record = record_then_die
    sys.argv = ["soundnet-extract", *sys.argv[3:]]
    from soundnet_keras.cli.extract import main
    sys.exit(main())
""")


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "at"), [("mid-write", 6), ("before-record", 13), ("mid-record", 30)])
def test_killed_at_any_stage_resumes_to_the_same_outputs(
    mode: str, at: int, corpus: dict, reference: Path, pretrained_path: Path, tmp_path: Path
) -> None:
    output = tmp_path / "features"
    with open(corpus["list"], encoding="utf-8") as listing:
        killed = subprocess.run(
            [sys.executable, "-c", KILL_SCRIPT, mode, str(at), *_arguments(corpus, output, pretrained_path, "-q")],
            stdin=listing,
            capture_output=True,
            text=True,
            timeout=300,
            env=ENV,
            check=False,
        )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = Manifest(output)
    assert 0 < len(before.entries) < 37
    resumed = _extract(corpus, output, pretrained_path)
    assert resumed.returncode == 1, resumed.stderr[-3000:]  # the broken file, still
    if mode == "mid-write":
        assert "removed 1 half-written file(s)" in resumed.stderr
    if mode == "mid-record":
        assert "skipped 1 unreadable line(s)" in resumed.stderr
    done_before = sum(e.status == "done" for e in before.entries.values())
    assert f"{done_before} of 37 input(s) already done" in resumed.stderr, resumed.stderr
    _assert_same_outputs(output, reference)


@pytest.mark.slow
def test_killed_from_outside_resumes_to_the_same_outputs(
    corpus: dict, reference: Path, pretrained_path: Path, tmp_path: Path
) -> None:
    """SIGKILL from another process, at whatever the run is doing once 10 inputs are recorded."""
    output = tmp_path / "features"
    with open(corpus["list"], encoding="utf-8") as listing:
        proc = subprocess.Popen(
            [*EXTRACT, *_arguments(corpus, output, pretrained_path, "-q")],
            stdin=listing,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
    try:
        deadline = time.monotonic() + 240
        manifest = output / MANIFEST_NAME
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.is_file() and manifest.read_text().count("\n") >= 10:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert _extract(corpus, output, pretrained_path).returncode == 1
    _assert_same_outputs(output, reference)


@pytest.mark.slow
def test_rerun_skips_done_redoes_changed_and_retries_failed(
    corpus: dict, reference: Path, pretrained_path: Path, tmp_path: Path
) -> None:
    import shutil

    output = tmp_path / "features"
    shutil.copytree(reference, output)
    stamps = {name: p.stat().st_mtime_ns for name, p in _outputs(output).items()}
    # the broken input is now a real clip: retried; everything else is done and untouched
    broken = corpus["broken"]
    original = broken.read_bytes()
    try:
        shutil.copyfile(corpus["clips"][0], broken)
        again = _extract(corpus, output, pretrained_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "36 of 37 input(s) already done" in again.stderr
        assert "1 written, 36 already done, 0 failed of 37 input(s)" in again.stderr
        after = _outputs(output)
        assert all(after[name].stat().st_mtime_ns == stamp for name, stamp in stamps.items())
        assert Manifest(output).counts() == {"done": 37, "failed": 0}
    finally:
        broken.write_bytes(original)
    # the input changed again (broken once more): redone, recorded as failed, its stale features removed
    assert _extract(corpus, output, pretrained_path).returncode == 1
    assert Manifest(output).counts() == {"done": 36, "failed": 1}
    assert sorted(_outputs(output)) == sorted(stamps)
    # other settings (the first channel instead of the mix) redo everything
    other = _extract(corpus, output, pretrained_path, "--channels", "first")
    assert "36 written, 0 already done, 1 failed" in other.stderr, other.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------- formats
@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_every_format_reads_back_as_the_npz(
    fmt: str, corpus: dict, reference: Path, pretrained_path: Path, tmp_path: Path
) -> None:
    from soundnet_keras.cli.extract import main

    clip = corpus["clips"][3]
    output = tmp_path / fmt
    status = main(
        [str(clip), "-o", str(output), "--format", fmt, "--weights", str(pretrained_path), "-q"]
        + [a for layer in LAYERS for a in ("-l", layer)]
        + ["--relative-to", str(corpus["root"])]
    )
    assert status == 0
    ours = load_features(output)[str(clip)]
    theirs = load_features(reference)[str(clip)]
    assert ours.path.suffix == {"hdf5": ".h5", "parquet": ".parquet"}[fmt]
    assert ours.provenance == theirs.provenance
    for layer in LAYERS:
        np.testing.assert_array_equal(ours[layer].values, theirs[layer].values)
        np.testing.assert_array_equal(ours[layer].times.start, theirs[layer].times.start)
        np.testing.assert_array_equal(ours[layer].padded_frames, theirs[layer].padded_frames)


def test_damaged_feature_files_are_named(reference: Path, tmp_path: Path) -> None:
    source = next(iter(_outputs(reference).values()))
    damaged = tmp_path / "cut.wav.npz"
    damaged.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(FeatureFileError, match=r"feature file '.*cut.wav.npz' cannot be read .*extract it again"):
        load_features(damaged)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(FeatureFileError, match=r"foreign\.npz"):
        load_features(foreign)
    with pytest.raises(ConfigError, match="does not exist: expected a feature file or a soundnet-extract output"):
        load_features(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"is not a feature file: expected a name ending in \.npz, \.h5 or \.parquet"):
        load_features(_text_file(tmp_path))


def _text_file(folder: Path) -> Path:
    path = folder / "notes.txt"
    path.write_text("not features")
    return path


# ---------------------------------------------------------------------------------------------- bad arguments
def test_extract_cli_refuses_bad_arguments_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], corpus: dict
) -> None:
    from soundnet_keras.cli.extract import main

    clip = str(corpus["clips"][0])

    def error_of(*args: str) -> str:
        assert main([*args]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "Traceback" not in err, err
        return err.strip()

    assert "writes one feature file per input into a folder" in error_of(clip, "-o", str(tmp_path / "feats.npz"))
    (tmp_path / "file").write_text("x")
    assert "is a file; give a folder" in error_of(clip, "-o", str(tmp_path / "file"))
    assert "matches no files" in error_of(str(tmp_path / "*.flac"), "-o", str(tmp_path / "out"))
    assert "unknown layer 'pool9'" in error_of(clip, "-o", str(tmp_path / "out"), "-l", "pool9")
    with pytest.raises(SystemExit) as info:
        main([clip, "-o", str(tmp_path / "out"), "--format", "csv"])
    assert info.value.code == 2 and "invalid choice: 'csv'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written for a refused command


def test_every_cli_has_a_version(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    from soundnet_keras import __version__
    from soundnet_keras.__main__ import COMMANDS

    for name, (module, _) in COMMANDS.items():
        parser = importlib.import_module(module).build_parser()
        with pytest.raises(SystemExit) as info:
            parser.parse_args(["--version"])
        assert info.value.code == 0
        assert capsys.readouterr().out.strip() == f"{parser.prog} (soundnet-keras) {__version__}", name


# ------------------------------------------------------------------------------------------------ Apache Beam
BEAM_LOCAL = ["--runner", "direct", "--direct-num-workers", "2", "--direct-running-mode", "multi_processing"]


@pytest.mark.slow
def test_beam_direct_runner_writes_what_one_process_writes(
    corpus: dict, reference: Path, pretrained_path: Path, tmp_path: Path
) -> None:
    """The Beam pipeline (DirectRunner, 2 worker processes) on the real clips and the broken file: the same files,
    provenance and manifest as the single-process run; a rerun through Beam skips everything without a pipeline."""
    pytest.importorskip("apache_beam")
    output = tmp_path / "features"
    done = _extract(corpus, output, pretrained_path, *BEAM_LOCAL)
    assert done.returncode == 1, done.stderr[-3000:]  # the broken file, recorded as failed
    assert "extracting 37 input(s) with Apache Beam's direct" in done.stderr
    assert "36 written, 0 already done, 1 failed of 37 input(s)" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    _assert_same_outputs(output, reference)  # values, times, provenance, no temporaries, manifest counts
    assert [e.input for e in Manifest(output).entries.values()] == [
        e.input for e in Manifest(reference).entries.values()
    ]  # appended by one shard, in input order
    good = tmp_path / "good.txt"
    good.write_text("".join(f"{p}\n" for p in corpus["clips"]))
    again = _extract(corpus, output, pretrained_path, *BEAM_LOCAL, listing=good)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "36 of 36 input(s) already done" in again.stderr and "0 written, 36 already done, 0 failed" in again.stderr
    assert "Apache Beam's" not in again.stderr  # nothing pending: no pipeline is built


def test_beam_options_are_checked_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from soundnet_keras.cli.extract import main, parse_arguments

    args = parse_arguments(
        ["a.wav", "-o", "out", "--runner", "flink", "--parallelism=4", "--", "--flink_master", "h:1"]
    )
    assert args.runner == "flink" and args.pipeline_args == ["--parallelism=4", "--flink_master", "h:1"]
    for argv, expected in [
        (["a.wav", "-o", "out", "--parallelism=4"], "Beam pipeline options --parallelism=4 need --runner"),
        (["a.wav", "-o", "out", "--direct-num-workers", "2"], "need --runner direct"),
        (["a.wav", "-o", "out", "--runner", "direct", "--parallelism", "4"], "unrecognized argument '--parallelism'"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2 and expected in capsys.readouterr().err, argv
    assert not (tmp_path / "out").exists()
    pytest.importorskip("apache_beam")
    from apache_beam.options.pipeline_options import DirectOptions

    from soundnet_keras.extraction.beam_pipeline import pipeline_options

    options = pipeline_options(
        "direct", ["--parallelism=3"], direct_num_workers=2, direct_running_mode="multi_threading"
    )
    assert options.view_as(DirectOptions).direct_num_workers == 2
    assert options.get_all_options()["direct_running_mode"] == "multi_threading"
    assert options.get_all_options()["parallelism"] == 3
    # the DirectRunner's local engine, named: no Prism download attempted
    assert options.get_all_options()["runner"] == "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
    assert pipeline_options("prism").get_all_options()["runner"] == "prism"
    with pytest.raises(ConfigError, match="direct running mode 'threads' is not one of in_memory, multi_threading"):
        pipeline_options("direct", direct_running_mode="threads")
    with pytest.raises(ConfigError, match=r"--runner 'nosuch': Unexpected pipeline runner: nosuch\. Valid values are"):
        pipeline_options("nosuch")


@pytest.mark.slow
def test_beam_workers_refuse_other_weights_than_the_drivers(
    corpus: dict, pretrained_net, pretrained_path: Path, tmp_path: Path
) -> None:
    """A worker whose weights file holds other parameters than the driver's network stops the pipeline with one
    error naming both digests (in-process DirectRunner); nothing is recorded, so a rerun redoes the input."""
    pytest.importorskip("apache_beam")
    from soundnet_keras import SoundNet
    from soundnet_keras.errors import PipelineError
    from soundnet_keras.extraction.beam_pipeline import extract_with_beam, pipeline_options

    other = SoundNet.from_pretrained(pretrained_path, verbose=False)
    first = other.keras_model.weights[0]
    first.assign(first.numpy() * 1.01)
    other_path = other.save_weights(tmp_path / "other.weights.h5")
    jobs = plan_jobs([str(corpus["clips"][0])], ".npz", relative_to=corpus["root"])
    with pytest.raises(PipelineError, match=r"on direct stopped: .*parameter digest [0-9a-f]+, expected the driver's"):
        extract_with_beam(pretrained_net, jobs, tmp_path / "out", pipeline_options("direct"), weights=str(other_path))
    assert Manifest(tmp_path / "out").entries == {}


def test_beam_is_imported_only_with_a_runner(tmp_path: Path) -> None:
    """Without ``--runner`` the command never imports Beam; with it and no Beam installed, one line names the extra."""
    script = textwrap.dedent("""
        import sys
        from soundnet_keras.cli.extract import main, parse_arguments
        parse_arguments([sys.argv[1], "-o", sys.argv[2]])
        print("without --runner:", "beam" if "apache_beam" in sys.modules else "no beam")
        sys.modules["apache_beam"] = None  # as if it were not installed
        print("status", main([sys.argv[1], "-o", sys.argv[2], "--runner", "direct"]))
    """)
    clip = _touch(tmp_path / "a.wav")
    done = subprocess.run(
        [sys.executable, "-c", script, str(clip), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
        check=False,
    )
    assert "without --runner: no beam" in done.stdout and "status 2" in done.stdout, done.stderr[-2000:]
    assert done.stderr.count("error:") == 1 and 'pip install "soundnet-keras[beam]"' in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
