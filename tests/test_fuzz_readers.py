"""Hostile and broken inputs: every file reader loads a file or raises the package's own error, within bounds.

The fuzz test mutates real and test-made files (seeded truncations and bit flips) and runs the readers on them in
a subprocess under ``RLIMIT_AS`` (:data:`MEMORY_LIMIT`), which also reports its peak RSS and that it never imported
TensorFlow. Half of the bit flips land on "structure" bytes (equal in two files of the same layout and different
values: headers, sizes, names), the others anywhere. Explicit cases declare sizes of gigabytes to terabytes in a few
bytes and must fail fast with :class:`~soundnet_keras.errors.ConversionError` or
:class:`~soundnet_keras.errors.WeightsError`; the unit tests below check the messages of each kind of damage.

Run as a script (``python tests/test_fuzz_readers.py SPEC OUT``) this file is the worker.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from t7_writer import Storage, Table, Tensor, TorchObject, dumps, random_params, soundnet_model

from soundnet_keras.errors import ConversionError, WeightsError

REPO_ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 2 << 30
"""Address-space limit of the worker: a reader that allocated what a hostile file declares would fail."""
CASE_SECONDS = 10.0
"""Longest accepted time for one fuzz case (the largest files are 25-57 MB)."""
EXPLICIT_SECONDS = 1.0
"""Longest accepted time for a small file declaring a huge size: it must fail before allocating."""

SOUND8_SHAPES = {  # (kernel, in, out) of sound8.npy's layers, as the TensorFlow port stores them
    "conv1": (64, 1, 16), "conv2": (32, 16, 32), "conv3": (16, 32, 64), "conv4": (8, 64, 128),
    "conv5": (4, 128, 256), "conv6": (4, 256, 512), "conv7": (4, 512, 1024), "conv8": (8, 1024, 1000),
    "conv8_2": (8, 1024, 401),
}  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# The worker (a subprocess with a memory limit)


def _read(reader: str, path: Path) -> None:
    if reader == "t7":
        from soundnet_keras.torch7 import load_t7

        load_t7(path)
    elif reader == "t7-soundnet":
        from soundnet_keras.torch7 import read_t7

        read_t7(path)
    elif reader == "npy":
        from soundnet_keras.sound8_npy import read_sound8_npy

        read_sound8_npy(path, expected_sha256=None)
    else:
        from soundnet_keras.weights import load_weights

        load_weights(path)


def _mutate(data: bytes, case: dict[str, Any]) -> bytes:
    if case["kind"] == "truncate":
        return data[: case["at"]]
    if case["kind"] == "flip":
        mutated = bytearray(data)
        for position, bit in case["flips"]:
            mutated[position] ^= 1 << bit
        return bytes(mutated)
    return data


def _peak_rss() -> int:
    """This process's peak resident set size in bytes: ``VmHWM``, which (unlike ``ru_maxrss``, kept across
    ``exec``) does not count the memory of the pytest process the worker was forked from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _worker(spec_path: str, out_path: str) -> None:
    """Run every case of the spec under an address-space limit; write outcomes, peak RSS and imported modules."""
    from soundnet_keras.errors import SoundNetError

    spec = json.loads(Path(spec_path).read_text())
    resource.setrlimit(resource.RLIMIT_AS, (spec["memory_limit"], spec["memory_limit"]))
    scratch = Path(spec["scratch"])
    sources: dict[str, bytes] = {}
    results = []
    for case in spec["cases"]:
        if case["kind"] != "as-is" and case["source"] not in sources:
            sources = {case["source"]: Path(case["source"]).read_bytes()}  # one source in memory at a time
        path = Path(case["source"])
        if case["kind"] != "as-is":
            path = scratch / f"case{path.suffix}"
            path.write_bytes(_mutate(sources[case["source"]], case))
        start = time.perf_counter()
        try:
            _read(case["reader"], path)
            outcome, message = "load", ""
        except SoundNetError as exc:
            outcome, message = "raise", f"{type(exc).__name__}: {exc}"
        except BaseException as exc:  # what the test must never see
            outcome, message = "crash", f"{type(exc).__name__}: {exc}"
        results.append({**case, "outcome": outcome, "message": message[:1000], "seconds": time.perf_counter() - start})
    Path(out_path).write_text(
        json.dumps(
            {
                "results": results,
                "peak_rss": _peak_rss(),
                "heavy_modules": sorted(m for m in ("tensorflow", "keras", "torch") if m in sys.modules),
            }
        )
    )


def run_cases(cases: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    """Run ``cases`` in a worker subprocess with :data:`MEMORY_LIMIT`; its report (results, peak RSS...)."""
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    spec, out = tmp_path / "spec.json", tmp_path / "out.json"
    spec.write_text(json.dumps({"cases": cases, "memory_limit": MEMORY_LIMIT, "scratch": str(scratch)}))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run(
        [sys.executable, __file__, str(spec), str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"worker failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert report["heavy_modules"] == [], "reading must not import TensorFlow/Keras"
    assert report["peak_rss"] < MEMORY_LIMIT
    return report


# --------------------------------------------------------------------------------------------------------------------
# Files to mutate


def sound8_layout(seed: int) -> dict[str, dict[str, np.ndarray]]:
    """A dict shaped like sound8.npy (TensorFlow layout, float32), random values."""
    rng = np.random.default_rng(seed)
    layers = {}
    for key, (k, cin, cout) in SOUND8_SHAPES.items():
        layers[key] = {
            "weights": rng.normal(size=(k, 1, cin, cout)).astype(np.float32),
            "biases": rng.normal(size=cout).astype(np.float32),
        }
        if not key.startswith("conv8"):
            layers[key].update({bn: rng.uniform(0.5, 1.5, cout).astype(np.float32) for bn in ("gamma", "beta")})
            layers[key].update({"mean": np.zeros(cout, np.float32), "var": np.ones(cout, np.float32)})
    return layers


def pickled_npy(obj: object) -> bytes:
    """``obj`` saved the way sound8.npy was: a pickled 0-d object array in a ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, np.array(obj, dtype=object), allow_pickle=True)
    return buffer.getvalue()


def npy_with_payload(payload: bytes) -> bytes:
    """A version 1.0 ``.npy`` file of a pickled object holding ``payload`` as its pickle."""
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
    header += " " * (63 - len(header) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + payload


def _structure(zeros: bytes, filled: bytes) -> np.ndarray:
    """Byte positions that hold structure (headers, sizes, names), not values: equal in two files of the same layout,
    one with every value 0 (all bytes 0) and one with every value :data:`FILL` (no byte 0)."""
    assert len(zeros) == len(filled)
    return np.flatnonzero(np.frombuffer(zeros, np.uint8) == np.frombuffer(filled, np.uint8))


FILL = float(np.frombuffer(b"\xb6\xf3\x9d\x3f", np.float32)[0])
"""A float32 with no zero byte (1.234)."""


def _filled(params: dict[str, dict[str, np.ndarray]], value: float) -> dict[str, dict[str, np.ndarray]]:
    assert value == 0 or 0 not in np.array([value], np.float32).tobytes()  # the files hold float32
    return {
        layer: {var: np.full_like(array, value) for var, array in variables.items()}
        for layer, variables in params.items()
    }


def mutations(
    source: Path, reader: str, rng: np.random.Generator, truncations: int, flips: int, structure: np.ndarray | None
) -> list[dict[str, Any]]:
    """Seeded truncations and 1-3 bit flips of ``source`` (half of the flips on ``structure`` positions)."""
    size = source.stat().st_size
    cases = [
        {"source": str(source), "reader": reader, "kind": "truncate", "at": int(at)}
        for at in rng.integers(0, size, truncations)
    ]
    for i in range(flips):
        pool = structure if structure is not None and len(structure) and i % 2 == 0 else None
        positions = pool[rng.integers(0, len(pool), 3)] if pool is not None else rng.integers(0, size, 3)
        count = int(rng.integers(1, 4))
        chosen = [[int(p), int(bit)] for p, bit in zip(positions[:count], rng.integers(0, 8, count), strict=True)]
        cases.append({"source": str(source), "reader": reader, "kind": "flip", "flips": chosen})
    return cases


def _soundnet5_t7(tmp_path: Path, name: str, value: float | None = None) -> Path:
    """A SoundNet-5 ``.t7`` as the authors' files are laid out: random parameters, or all equal to ``value``."""
    params = random_params("soundnet5", seed=5)
    path = tmp_path / f"soundnet5-{name}.t7"
    path.write_bytes(dumps(soundnet_model("soundnet5", params if value is None else _filled(params, value))))
    return path


def _soundnet5_h5(tmp_path: Path, name: str, value: float | None = None) -> Path:
    """A SoundNet-5 ``.weights.h5`` of a random network, or with every parameter equal to ``value``."""
    from soundnet_keras import SoundNet
    from soundnet_keras.weights import WeightsFile, keras_shapes

    if value is None:
        net = SoundNet("soundnet5")
    else:
        shapes = keras_shapes("soundnet5")
        params = {
            layer: {var: np.full(shape, value, np.float32) for var, shape in v.items()} for layer, v in shapes.items()
        }
        net = SoundNet("soundnet5", weights=WeightsFile("soundnet5", params))
    return net.save_weights(tmp_path / f"{name}.weights.h5")


def _sound8_npy(tmp_path: Path, name: str, value: float | None = None) -> Path:
    """A sound8.npy-shaped pickle: random parameters, or all equal to ``value``."""
    layers = sound8_layout(1)
    path = tmp_path / f"sound8-{name}.npy"
    path.write_bytes(pickled_npy(layers if value is None else _filled(layers, value)))
    return path


def _summary(results: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = {}
    for result in results:
        counts = summary.setdefault(result["reader"], {"load": 0, "raise": 0, "crash": 0})
        counts[result["outcome"]] += 1
    return summary


@pytest.mark.slow
def test_fuzzed_files_load_or_raise_the_package_error_within_bounds(shared_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(20161027)
    cases: list[dict[str, Any]] = []
    fixtures = sorted((shared_dir / "fixtures" / "torch7").glob("*.t7"))
    assert fixtures, f"no Torch7 fixtures in {shared_dir / 'fixtures' / 'torch7'}"
    for fixture in fixtures:  # tiny files: every byte is structure
        cases += mutations(fixture, "t7", rng, 4, 8, None)

    for make, reader, truncations, flips in (
        (_soundnet5_t7, "t7-soundnet", 10, 40),
        (_sound8_npy, "npy", 10, 30),
        (_soundnet5_h5, "h5", 10, 40),
    ):
        source, zeros, filled = make(tmp_path, "random"), make(tmp_path, "zeros", 0.0), make(tmp_path, "filled", FILL)
        structure = _structure(zeros.read_bytes(), filled.read_bytes())
        zeros.unlink()
        filled.unlink()
        cases += mutations(source, reader, rng, truncations, flips, structure)

    start = time.perf_counter()
    report = run_cases(cases, tmp_path)
    elapsed = time.perf_counter() - start
    results = report["results"]
    crashes = [f"{r['source']} {r['kind']} {r.get('at', r.get('flips'))}: {r['message']}" for r in results]
    crashes = [line for line, r in zip(crashes, results, strict=True) if r["outcome"] == "crash"]
    assert not crashes, "\n".join(crashes)
    slow = [r for r in results if r["seconds"] > CASE_SECONDS]
    assert not slow, slow
    print(
        f"\n{len(results)} fuzz cases in {elapsed:.1f} s, worker peak RSS {report['peak_rss'] / 2**20:.0f} MiB: "
        f"{json.dumps(_summary(results))}"
    )
    summary = _summary(results)
    assert all(counts["raise"] > 0 for counts in summary.values()), summary  # the mutations do break files


# --------------------------------------------------------------------------------------------------------------------
# Small files declaring huge sizes (in the worker, under the memory limit)


def _t7_huge_tensor(total_bytes: int) -> bytes:
    """A FloatTensor of ``total_bytes / 4`` elements with stride 0 over a storage of one element."""
    storage = Storage(np.zeros(1, np.float32), "torch.FloatStorage")
    return dumps(Tensor("torch.FloatTensor", storage, (total_bytes // 4,), (0,), 0))


def _t7_huge_storage(elements: int) -> bytes:
    data = bytearray(dumps(Storage(np.zeros(1, np.float32), "torch.FloatStorage")))
    data[-12:-4] = struct.pack("<q", elements)  # the element count before the one float
    return bytes(data)


def _t7_deep(levels: int) -> bytes:
    """Tables nested ``levels`` deep: {1 = {1 = {...}}}."""
    out = b"".join(struct.pack("<iiiid", 3, i + 1, 1, 1, 1.0) for i in range(levels))
    return out + struct.pack("<i", 0)


def _npy_huge_array(shape: tuple[int, ...], dtype: str, data: object) -> bytes:
    class Fake:
        def __reduce__(self) -> tuple:
            from numpy._core.multiarray import _reconstruct

            return (_reconstruct, (np.ndarray, (0,), b"b"), (1, shape, np.dtype(dtype), False, data))

    return npy_with_payload(pickle.dumps(Fake(), protocol=4))


def _h5_huge_dataset(path: Path) -> None:
    import h5py

    from soundnet_keras.weights import LEGACY_FORMAT

    with h5py.File(path, "w") as f:
        f.attrs.update({"format": LEGACY_FORMAT, "architecture": "soundnet5"})
        f.create_dataset("weights/conv1/kernel", shape=(1 << 40,), dtype="f4", chunks=(1024,))  # nothing stored


GIB = 1 << 30
EXPLICIT: list[tuple[str, str, Any, str]] = [
    ("tensor-3GiB.t7", "t7", _t7_huge_tensor(3 * GIB), r"declares 805306368 elements; at most 67108864"),
    ("tensor-32GiB.t7", "t7", _t7_huge_tensor(32 * GIB), r"declares 8589934592 elements; at most"),
    ("tensor-4TiB.t7", "t7", _t7_huge_tensor(4096 * GIB), r"declares 1099511627776 elements; at most"),
    ("storage-3GiB.t7", "t7", _t7_huge_storage(3 * GIB // 4), r"FloatStorage of 805306368 elements .* does not fit"),
    ("storage-4TiB.t7", "t7", _t7_huge_storage(1 << 40), r"FloatStorage of 1099511627776 elements .* does not fit"),
    ("string-2GiB.t7", "t7", struct.pack("<ii", 2, 2**31 - 1) + b"abc", r"string at byte 4 declares 2147483647 b"),
    ("table-2G.t7", "t7", struct.pack("<iii", 3, 1, 2**31 - 1), r"table at byte 0 declares 2147483647 entries"),
    ("function-2GiB.t7", "t7", struct.pack("<iii", 6, 1, 2**31 - 1) + b"x", r"function bytecode .* 2147483647 b"),
    ("deep.t7", "t7", _t7_deep(5000), r"nested more than 100 levels deep"),
    ("bytes8-4TiB.npy", "npy", npy_with_payload(b"\x80\x04\x8e" + struct.pack("<Q", 4 << 40) + b"abc."), r"malfo"),
    ("memo-4G.npy", "npy", npy_with_payload(b"\x80\x02Nr" + struct.pack("<I", 2**32 - 1) + b"."), r"memo index"),
    ("frame-1TiB.npy", "npy", npy_with_payload(b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + b"N."), r"frame of"),
    ("array-4TiB.npy", "npy", _npy_huge_array((1 << 40,), "f4", b"\0" * 4), r"1099511627776 elements, more than"),
    ("objects-256MiB.npy", "npy", _npy_huge_array((1 << 25,), "O", [None]), r"holds 1 items, expected a list of 33"),
    ("header-4GiB.npy", "npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{", r"header of 4294967295"),
    ("dataset-4TiB.weights.h5", "h5", _h5_huge_dataset, r"conv1/kernel has shape \(1099511627776,\), expected"),
]


def test_small_files_declaring_huge_sizes_fail_fast(tmp_path: Path) -> None:
    cases = []
    for name, reader, content, _ in EXPLICIT:
        path = tmp_path / name
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)
        cases.append({"source": str(path), "reader": reader, "kind": "as-is"})
    report = run_cases(cases, tmp_path)
    for (name, reader, _, message), result in zip(EXPLICIT, report["results"], strict=True):
        expected = "WeightsError" if reader == "h5" else "ConversionError"
        assert result["outcome"] == "raise", (name, result["message"])
        assert result["message"].startswith(f"{expected}: "), (name, result["message"])
        assert name in result["message"], (name, result["message"])  # the error names the file
        assert __import__("re").search(message, result["message"]), (name, result["message"])
        assert result["seconds"] < EXPLICIT_SECONDS, (name, result["seconds"])
    assert os.path.getsize(tmp_path / "tensor-3GiB.t7") < 150


# --------------------------------------------------------------------------------------------------------------------
# The messages, one kind of damage at a time (in process: these fail before allocating anything large)


def _t7_fails(tmp_path: Path, data: bytes, match: str, *, soundnet: bool = False) -> str:
    from soundnet_keras.torch7 import load_t7, read_t7

    path = tmp_path / "damaged.t7"
    path.write_bytes(data)
    with pytest.raises(ConversionError, match=match) as caught:
        read_t7(path) if soundnet else load_t7(path)
    assert "damaged.t7" in str(caught.value)
    return str(caught.value)


def test_t7_messages(tmp_path: Path) -> None:
    message = _t7_fails(tmp_path, dumps([1, 2, 3])[:-3], r"file ends at byte \d+ in the middle of a value")
    assert "Torch7 files carry no checksum" in message
    _t7_fails(tmp_path, dumps(Table([([1, 2], "value")])), r"table key at byte 12 is a Lua list, which cannot be a key")
    _t7_fails(tmp_path, struct.pack("<i", 9), r"unknown type tag 9 at byte 0 \(expected 0 nil, 1 number")
    _t7_fails(tmp_path, struct.pack("<iii", 4, 1, 3) + b"V x", r"invalid class version b'V x' at byte 0")
    storage = Storage(np.zeros(6, np.float32), "torch.FloatStorage")
    _t7_fails(tmp_path, dumps(Tensor("torch.FloatTensor", storage, (2, 3), (3, -1), 0)), r"strides must be >= 0")
    _t7_fails(
        tmp_path,
        dumps(Tensor("torch.FloatTensor", storage, (2, 3), (3, 2), 1)),
        r"FloatTensor at byte 0 \(sizes \[2, 3\], strides \[3, 2\], offset 2\) reaches element 9 of a storage of 6",
    )
    _t7_fails(tmp_path, dumps(Tensor("torch.DoubleTensor", storage, (6,), (1,), 0)), r"storage of element type float32")
    many = {f"t{i}": Tensor("torch.FloatTensor", storage, (1 << 20,), (0,), 0) for i in range(20)}
    _t7_fails(tmp_path, dumps(many), r"would bring the file's tensors to \d+ bytes, more than the \d+ accepted")


def test_t7_module_walk_is_bounded(tmp_path: Path) -> None:
    model = TorchObject("nn.Sequential", {"modules": []})
    inner = TorchObject("nn.Sequential", {"modules": [model]})
    model.fields["modules"].append(inner)
    _t7_fails(tmp_path, dumps(model), r"module 1\.1 \(nn\.Sequential\): a container holding itself", soundnet=True)
    shared: Any = TorchObject("nn.ReLU", {})
    for _ in range(20):  # each level lists the one below twice: 2**20 modules in a file of a few KB
        shared = TorchObject("nn.Sequential", {"modules": [shared, shared]})
    _t7_fails(tmp_path, dumps(TorchObject("nn.Sequential", {"modules": [shared]})), r"or 10000 modules", soundnet=True)


def test_soundnet_t7_with_nan_eps_is_refused(tmp_path: Path) -> None:
    model = soundnet_model("soundnet5", random_params("soundnet5", seed=5), eps=float("nan"))
    _t7_fails(tmp_path, dumps(model), r"module 2 \(nn\.SpatialBatchNormalization\): BatchNorm eps nan", soundnet=True)


def _npy_fails(tmp_path: Path, data: bytes, match: str) -> str:
    from soundnet_keras.sound8_npy import read_sound8_npy

    path = tmp_path / "damaged.npy"
    path.write_bytes(data)
    with pytest.raises(ConversionError, match=match) as caught:
        read_sound8_npy(path, expected_sha256=None)
    assert "damaged.npy" in str(caught.value)
    return str(caught.value)


@pytest.fixture(scope="module")
def sound8() -> dict[str, dict[str, np.ndarray]]:
    return sound8_layout(3)


def test_npy_messages(tmp_path: Path, sound8: dict) -> None:
    good = pickled_npy(sound8)
    _npy_fails(tmp_path, b"PK\x03\x04", r"is not a \.npy file \(no NUMPY magic\)")
    _npy_fails(tmp_path, good[:5000], r"frame of 4877 bytes at byte 2 of a pickle of 4872 bytes: .*truncated")
    _npy_fails(tmp_path, good[:-5], r"malformed pickle \(ValueError: .*\); the file is truncated or corrupt")
    message = _npy_fails(tmp_path, good[:10] + b"{'descr': '|O' 'x'}" + good[29:], r"header .* is not a Python literal")
    assert "the published sound8.npy has sha256 7bef6917" in message
    _npy_fails(tmp_path, pickled_npy(np.zeros(3)), r"expected a dict of layers, found ndarray")
    _npy_fails(tmp_path, pickled_npy({**sound8, "conv9": {}}), r"unknown layers \['conv9'\], missing layers \[\]")
    _npy_fails(tmp_path, pickled_npy({**sound8, "conv2": [1, 2]}), r"conv2 is a list, expected a dict of arrays")
    broken = {**sound8, "conv3": {k: v for k, v in sound8["conv3"].items() if k != "var"}}
    _npy_fails(tmp_path, pickled_npy(broken), r"conv3 has unused parameters \[\], missing \['var'\]")
    wrong = {**sound8, "conv2": {**sound8["conv2"], "weights": np.zeros((31, 1, 16, 32), np.float32)}}
    _npy_fails(tmp_path, pickled_npy(wrong), r"conv2/weights has shape \(31, 1, 16, 32\), expected \(32, 1, 16, 32\)")
    ints = {**sound8, "conv1": {**sound8["conv1"], "biases": np.zeros(16, np.int64)}}
    _npy_fails(tmp_path, pickled_npy(ints), r"conv1/biases is a int64 array, expected floating point")
    nan = {**sound8, "conv1": {**sound8["conv1"], "gamma": np.full(16, np.nan, np.float32)}}
    _npy_fails(tmp_path, pickled_npy(nan), r"conv1/gamma has NaN or Inf values")
    nested: list = []
    for _ in range(100):
        nested = [nested]
    _npy_fails(tmp_path, pickled_npy({"conv1": nested}), r"containers nested more than 32 levels deep")


def test_npy_restricted_unpickler_refuses_direct_calls(tmp_path: Path) -> None:
    class Call:
        def __reduce__(self) -> tuple:
            return (np.ndarray, ((1 << 28,), "f8"))  # numpy.ndarray(shape) would allocate 2 GiB

    _npy_fails(tmp_path, npy_with_payload(pickle.dumps(Call(), protocol=4)), r"calls numpy\.ndarray directly")
    _npy_fails(tmp_path, npy_with_payload(b"\x80\x02cos\nsystem\nq\x00."), r"refusing to unpickle os\.system")


def test_python2_style_sound8_pickle_reads(tmp_path: Path, sound8: dict) -> None:
    """The published sound8.npy was written by Python 2: its bytes are ``str`` opcodes, read back as latin-1 text."""
    from soundnet_keras.sound8_npy import read_sound8_npy

    class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
        def save_bytes(self, obj: bytes) -> None:
            if len(obj) < 256:
                self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
            else:
                self.write(pickle.BINSTRING + struct.pack("<I", len(obj)) + obj)
            self.memoize(obj)

        dispatch: ClassVar[dict] = {**pickle._Pickler.dispatch, bytes: save_bytes}  # type: ignore[attr-defined]

    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(np.array(sound8, dtype=object))
    path = tmp_path / "sound8.npy"
    path.write_bytes(npy_with_payload(buffer.getvalue()))
    params = read_sound8_npy(path, expected_sha256=None)
    np.testing.assert_array_equal(params["conv2"]["weight"], sound8["conv2"]["weights"][:, 0].transpose(2, 1, 0))
    np.testing.assert_array_equal(params["scenes"]["bias"], sound8["conv8_2"]["biases"])


@pytest.fixture(scope="module")
def h5_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _soundnet5_h5(tmp_path_factory.mktemp("h5"), "good")


def _h5_fails(path: Path, match: str) -> None:
    from soundnet_keras.weights import load_weights

    with pytest.raises(WeightsError, match=match) as caught:
        load_weights(path)
    assert path.name in str(caught.value)


def test_h5_messages(tmp_path: Path, h5_file: Path) -> None:
    import shutil

    import h5py

    def damaged(edit: Any) -> Path:
        path = tmp_path / "damaged.weights.h5"
        shutil.copyfile(h5_file, path)
        with h5py.File(path, "a") as f:
            edit(f)
        return path

    _h5_fails(damaged(lambda f: f.attrs.__delitem__("architecture")), r"is damaged: it lacks the attribute 'arch")
    _h5_fails(damaged(lambda f: f.attrs.__setitem__("architecture", 8)), r"'architecture' is a int64, expected a str")
    _h5_fails(damaged(lambda f: f.attrs.__setitem__("architecture", "soundnet9")), r"architecture 'soundnet9', exp")
    _h5_fails(damaged(lambda f: f.attrs.__setitem__("format", 2)), r"'format' is a int64, expected a string")
    _h5_fails(damaged(lambda f: f.attrs.__setitem__("categories_scenes", "[oops")), r"'categories_scenes' is not JSON")
    _h5_fails(damaged(lambda f: f.attrs.__setitem__("categories_scenes", "[1]")), r"bad category names: categories for")
    _h5_fails(damaged(lambda f: f.__delitem__("layers")), r"is damaged: it lacks the group 'layers'")

    def retype(f: Any) -> None:
        name = next(key for key in f["layers"] if "vars" in f["layers"][key] and len(f["layers"][key]["vars"]))
        variables = f["layers"][name]["vars"]
        shape = variables["0"].shape
        del variables["0"]
        variables.create_dataset("0", data=np.zeros(shape, np.int32))

    _h5_fails(damaged(retype), r"vars/0 \(\w+/(kernel|gamma)\) is a int32 dataset, expected floating point")
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(h5_file.read_bytes()[:4096])
    _h5_fails(truncated, r"cannot read weights file '.*truncated\.weights\.h5'")


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
