"""Feature files: one input's features of one or several layers, with frame times and provenance, in three formats.

=========  ==================================================================================================
``npz``    arrays ``{layer}/values`` (frames, channels) float32, ``{layer}/times`` (frames, 3) float64 start /
           centre / end seconds, ``{layer}/padded_frames`` (frames,) bool; ``provenance``: a JSON string
``hdf5``   a group per layer with datasets ``values``, ``times``, ``padded_frames``; root attribute ``provenance``
``parquet``  one row per frame and layer: ``layer``, ``frame``, ``start``, ``center``, ``end``, ``padded``,
           ``values`` (list of float32); the provenance JSON in the schema metadata (key ``soundnet_keras``);
           needs ``pyarrow`` (``pip install "soundnet-keras[parquet]"``)
=========  ==================================================================================================

The provenance (:func:`provenance`) says what produced the numbers: the input (path, sha256, duration, sample
rate), per layer the hop, receptive field, offset and the lengths the network saw, the padding policy, the
architecture, the weights (name and sha256 of the parameter values), the precision, and the package version. Every
writer goes through :func:`soundnet_keras.files.atomic_path`: a kill leaves the old file or none, never half.

:func:`read_feature_file` reads any of them back as :class:`FeatureFile` (``layers``: name → :class:`Features`,
the type ``SoundNet.features`` returns).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..architecture import SAMPLE_RATE, FrameTimes
from ..errors import ConfigError, FeatureFileError, SoundNetError
from ..files import atomic_path
from ..results import Features

FORMATS = {"npz": ".npz", "hdf5": ".h5", "parquet": ".parquet"}
"""Format name → the extension its files get."""
SUFFIX_FORMATS = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".parquet": "parquet"}
FORMAT_VERSION = 1
PARQUET_METADATA_KEY = b"soundnet_keras"


@dataclass
class FeatureFile:
    """One input's features read back: ``layers`` (name → :class:`Features`) and the ``provenance`` record."""

    path: Path
    layers: dict[str, Features]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def input(self) -> str:
        """The audio file the features were computed from."""
        return str(self.provenance.get("input", {}).get("path", ""))

    def __getitem__(self, layer: str) -> Features:
        try:
            return self.layers[layer]
        except KeyError:
            raise ConfigError(f"{str(self.path)!r} has no layer {layer!r}; it holds {', '.join(self.layers)}") from None


def check_format(name: str) -> str:
    """``name`` if it is one of :data:`FORMATS`, else a :class:`ConfigError` listing them."""
    if name not in FORMATS:
        raise ConfigError(f"unknown feature format {name!r}: expected one of {', '.join(FORMATS)}")
    if name == "parquet":
        _pyarrow()
    return name


def _pyarrow():
    try:
        import pyarrow  # optional: only for the parquet format
        import pyarrow.compute
        import pyarrow.parquet
    except ImportError:
        raise ConfigError(
            'the parquet format needs pyarrow, which is not installed: pip install "soundnet-keras[parquet]"'
        ) from None
    return pyarrow


# ------------------------------------------------------------------------------------------------- provenance
def provenance(
    *,
    input_path: str | os.PathLike,
    input_sha256: str,
    duration_s: float,
    input_sample_rate: int | None,
    features: Mapping[str, Features],
    geometries: Mapping[str, Any],
    pad: str | None,
    architecture: str,
    weights: str,
    weights_sha256: str,
    precision: str,
    version: str,
) -> dict[str, Any]:
    """The provenance record of one feature file (JSON-serialisable)."""
    layers = {}
    for name, feat in features.items():
        geo = geometries[name]
        layers[name] = {
            "frames": int(feat.values.shape[0]),
            "channels": int(feat.values.shape[-1]),
            "hop_samples": int(geo.hop),
            "hop_s": geo.hop / geo.sample_rate,
            "receptive_field_samples": int(geo.receptive_field),
            "receptive_field_s": geo.receptive_field / geo.sample_rate,
            "offset_samples": int(geo.offset),
            "input_samples": int(feat.input_samples),
            "network_samples": int(feat.num_samples),
            "padded": bool(feat.padded),
        }
    return {
        "format_version": FORMAT_VERSION,
        "input": {
            "path": os.fspath(input_path),
            "sha256": input_sha256,
            "duration_s": float(duration_s),
            "sample_rate": input_sample_rate,
        },
        "sample_rate": next((geo.sample_rate for geo in geometries.values()), SAMPLE_RATE),
        "layers": layers,
        "padding": {"policy": pad or "none", "padded": any(f.padded for f in features.values())},
        "architecture": architecture,
        "weights": weights,
        "weights_sha256": weights_sha256,
        "precision": precision,
        "package": "soundnet-keras",
        "version": version,
    }


# ----------------------------------------------------------------------------------------------------- writing
def _arrays(feat: Features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.asarray(feat.values, np.float32)
    times = np.stack([feat.times.start, feat.times.center, feat.times.end], axis=1).astype(np.float64)
    padded = np.zeros(values.shape[0], bool)
    if feat.padded_frames is not None:
        padded = np.asarray(feat.padded_frames, bool).reshape(values.shape[0])
    return values, times, padded


def write_feature_file(
    path: str | os.PathLike, fmt: str, features: Mapping[str, Features], record: Mapping[str, Any]
) -> Path:
    """Write ``features`` (layer → :class:`Features` of one clip) and the provenance ``record`` to ``path`` in
    format ``fmt``, atomically; the folder must exist."""
    path = Path(path)
    check_format(fmt)
    text = json.dumps(record, sort_keys=True)
    writer = {"npz": _write_npz, "hdf5": _write_hdf5, "parquet": _write_parquet}[fmt]
    with atomic_path(path, suffix=FORMATS[fmt]) as tmp:
        writer(tmp, features, text)
    return path


def _write_npz(tmp: Path, features: Mapping[str, Features], text: str) -> None:
    arrays: dict[str, np.ndarray] = {"provenance": np.array(text)}
    for name, feat in features.items():
        values, times, padded = _arrays(feat)
        arrays[f"{name}/values"], arrays[f"{name}/times"], arrays[f"{name}/padded_frames"] = values, times, padded
    np.savez(tmp, **arrays)


def _write_hdf5(tmp: Path, features: Mapping[str, Features], text: str) -> None:
    import h5py  # only for HDF5 output

    with h5py.File(tmp, "w") as handle:
        handle.attrs["provenance"] = text
        for name, feat in features.items():
            values, times, padded = _arrays(feat)
            group = handle.create_group(name)
            group.create_dataset("values", data=values, compression="gzip")
            group.create_dataset("times", data=times)
            group.create_dataset("padded_frames", data=padded)


def _write_parquet(tmp: Path, features: Mapping[str, Features], text: str) -> None:
    pa = _pyarrow()
    columns: dict[str, list] = {k: [] for k in ("layer", "frame", "start", "center", "end", "padded", "values")}
    for name, feat in features.items():
        values, times, padded = _arrays(feat)
        frames = values.shape[0]
        columns["layer"] += [name] * frames
        columns["frame"] += list(range(frames))
        for index, key in enumerate(("start", "center", "end")):
            columns[key] += times[:, index].tolist()
        columns["padded"] += padded.tolist()
        columns["values"] += list(values)
    schema = pa.schema(
        [
            ("layer", pa.string()),
            ("frame", pa.int32()),
            ("start", pa.float64()),
            ("center", pa.float64()),
            ("end", pa.float64()),
            ("padded", pa.bool_()),
            ("values", pa.list_(pa.float32())),
        ],
        metadata={PARQUET_METADATA_KEY: text.encode()},
    )
    table = pa.table(columns, schema=schema)
    pa.parquet.write_table(table, tmp)


# ----------------------------------------------------------------------------------------------------- reading
def read_feature_file(path: str | os.PathLike) -> FeatureFile:
    """Read a feature file written by :func:`write_feature_file` (its format from its extension); a damaged or
    foreign file raises :class:`FeatureFileError` naming it."""
    path = Path(path)
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{str(path)!r} is not a feature file: expected a name ending in .npz, .h5 or .parquet")
    if not path.is_file():
        raise ConfigError(f"feature file {str(path)!r} does not exist")
    reader = {"npz": _read_npz, "hdf5": _read_hdf5, "parquet": _read_parquet}[fmt]
    try:
        text, raw = reader(path)
        record = json.loads(text)
        layers = {name: _features(name, *arrays, record) for name, arrays in raw.items()}
    except SoundNetError:
        raise
    except Exception as exc:  # any reader's failure on a damaged file: one error naming the file
        raise FeatureFileError(
            f"feature file {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); it is damaged or was not "
            f"written by soundnet-keras: extract it again"
        ) from None
    return FeatureFile(path, layers, record)


def _features(name: str, values: np.ndarray, times: np.ndarray, padded: np.ndarray, record: Mapping) -> Features:
    layer = record.get("layers", {}).get(name, {})
    if values.ndim != 2 or times.shape != (values.shape[0], 3) or padded.shape != (values.shape[0],):
        raise ValueError(f"layer {name!r} has inconsistent shapes {values.shape}, {times.shape}, {padded.shape}")
    return Features(
        layer=name,
        values=values,
        times=FrameTimes(times[:, 0].copy(), times[:, 1].copy(), times[:, 2].copy()),
        num_samples=int(layer.get("network_samples", 0)),
        padded=bool(layer.get("padded", False)),
        input_samples=int(layer.get("input_samples", 0)),
        padded_frames=padded,
        sample_rate=int(record.get("sample_rate", SAMPLE_RATE)),
    )


def _read_npz(path: Path) -> tuple[str, dict[str, tuple[np.ndarray, ...]]]:
    with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:  # closed even when damaged
        names = sorted({key.rsplit("/", 1)[0] for key in data.files if key.endswith("/values")})
        arrays = {n: (data[f"{n}/values"], data[f"{n}/times"], data[f"{n}/padded_frames"]) for n in names}
        return str(data["provenance"]), arrays


def _read_hdf5(path: Path) -> tuple[str, dict[str, tuple[np.ndarray, ...]]]:
    import h5py  # only for HDF5 files

    with h5py.File(path, "r") as handle:
        text = handle.attrs["provenance"]
        arrays = {
            name: tuple(np.asarray(group[key][()]) for key in ("values", "times", "padded_frames"))
            for name, group in handle.items()
        }
        return text if isinstance(text, str) else text.decode(), arrays


def _read_parquet(path: Path) -> tuple[str, dict[str, tuple[np.ndarray, ...]]]:
    pa = _pyarrow()
    table = pa.parquet.read_table(path)
    text = (table.schema.metadata or {})[PARQUET_METADATA_KEY].decode()
    layers = table.column("layer").to_pylist()
    arrays = {}
    for name in dict.fromkeys(layers):
        rows = table.filter(pa.compute.equal(table.column("layer"), name))
        values = np.asarray(rows.column("values").to_pylist(), np.float32)
        times = np.stack([rows.column(k).to_numpy() for k in ("start", "center", "end")], axis=1)
        padded = np.asarray(rows.column("padded").to_pylist(), bool)
        arrays[name] = (values.reshape(len(rows), -1), times, padded)
    return text, arrays
