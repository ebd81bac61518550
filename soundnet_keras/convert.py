"""Convert original SoundNet weights into a validated ``.weights.h5`` file.

:func:`convert` reads an authors' Torch7 model (:func:`soundnet_keras.torch7.read_t7`);
:func:`convert_torch_params` takes Torch-layout parameters from any reader (also ``sound8.npy``). Both map them to
Keras layout, write the file with its metadata, load it back into the Keras model and compare the model's output
at every named layer with the float64 NumPy reference (:func:`soundnet_keras.reference.reference_forward`) on a
deterministic synthetic waveform. The output path only ever holds a complete, validated file: the file is written
and checked under a temporary name beside it and renamed into place last, so a failed conversion leaves no file
behind (and an older file at that path untouched).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .architecture import SAMPLE_RATE, geometry, heads, layer_table, output_names
from .errors import ConfigError, ConversionError
from .files import atomic_path, sha256_file
from .reference import reference_forward
from .torch7 import read_t7
from .weights import WeightsFile, check_categories, load_weights, save_weights, torch_to_keras

Log = Callable[[str], None]

MAX_RELATIVE_ERROR = 1e-4
"""Largest accepted ``max|keras - reference| / max|reference|`` at any named output."""

_TINY = 1e-30


@dataclass(frozen=True)
class LayerDiff:
    """Difference between the Keras model and the float64 reference at one named output."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    """Largest absolute difference."""
    max_ref: float
    """Largest absolute value of the reference output."""
    rel: float
    """``max_abs / max(max_ref, tiny)``."""


@dataclass
class ConversionReport:
    """What a conversion did: the file written, where it came from and how well it matched the reference."""

    architecture: str
    output_path: Path
    source: str
    source_sha256: str
    validate_samples: int
    diffs: list[LayerDiff]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def max_rel(self) -> float:
        """Largest relative difference over all named outputs."""
        return max((diff.rel for diff in self.diffs), default=0.0)


def read_category_file(path: str | os.PathLike) -> list[str]:
    """Read category names from a text file, one per line (surrounding whitespace and blank lines dropped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"category file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read category file {str(path)!r}: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def default_validate_samples(arch: str) -> int:
    """Length of the validation waveform: one frame of the heads plus a quarter second."""
    return geometry(arch, heads(arch)[0].name).min_samples + SAMPLE_RATE // 4


def synthetic_waveform(num_samples: int) -> np.ndarray:
    """Deterministic synthetic waveform in [-1, 1]: three tones, a chirp and seeded noise (float32)."""
    t = np.arange(num_samples, dtype=np.float64) / SAMPLE_RATE
    wave = 0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.2 * np.sin(2 * np.pi * 1375.0 * t + 0.5)
    wave += 0.1 * np.sin(2 * np.pi * (100.0 + 400.0 * t) * t)
    wave += 0.2 * np.random.default_rng(20161027).uniform(-1.0, 1.0, num_samples)
    wave *= 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 0.7 * t))  # slow amplitude changes
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def _keras_outputs(arch: str, weights: WeightsFile, waveform: np.ndarray) -> dict[str, np.ndarray]:
    """Run the Keras model with ``weights`` and return every named output, each (frames, channels)."""
    import keras  # heavy (Keras/TensorFlow): only to validate a conversion; pretrained imports this module

    from .network import build_network, set_params, stage_layer

    model = build_network(arch)
    set_params(model, arch, weights.params)
    names = output_names(arch)
    probe = keras.Model(model.input, [model.get_layer(stage_layer(arch, name)).output for name in names])
    values = probe.predict_on_batch(waveform[None, :].astype(np.float32))
    return {name: keras.ops.convert_to_numpy(value)[0] for name, value in zip(names, values, strict=True)}


def compare_outputs(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> list[LayerDiff]:
    """Largest absolute and relative difference between ``got`` and the reference ``want``, per named output."""
    diffs = []
    for name, ref in want.items():
        value = np.asarray(got[name], np.float64)
        if value.shape != ref.shape:
            raise ConversionError(f"layer {name!r}: Keras output has shape {value.shape}, reference {ref.shape}")
        max_abs = float(np.max(np.abs(value - ref))) if ref.size else 0.0
        max_ref = float(np.max(np.abs(ref))) if ref.size else 0.0
        diffs.append(LayerDiff(name, ref.shape, max_abs, max_ref, max_abs / max(max_ref, _TINY)))
    return diffs


def format_diffs(diffs: Sequence[LayerDiff]) -> str:
    """The per-layer difference table as text."""
    lines = [f"{'layer':<9} {'shape':>14} {'max|keras-ref|':>15} {'max|ref|':>11} {'relative':>10}"]
    for diff in diffs:
        shape = "x".join(map(str, diff.shape))
        lines.append(f"{diff.name:<9} {shape:>14} {diff.max_abs:>15.3e} {diff.max_ref:>11.3e} {diff.rel:>10.2e}")
    return "\n".join(lines)


def validate(
    arch: str,
    torch_params: Mapping[str, Mapping[str, np.ndarray]],
    weights: WeightsFile,
    num_samples: int | None = None,
) -> tuple[int, list[LayerDiff]]:
    """Compare the Keras model holding ``weights`` with the float64 reference from ``torch_params``.

    Runs both on :func:`synthetic_waveform` of ``num_samples`` samples (default :func:`default_validate_samples`)
    and returns ``(num_samples, diffs)``; :func:`check_diffs` judges them.
    """
    minimum = geometry(arch, heads(arch)[0].name).min_samples
    num_samples = default_validate_samples(arch) if num_samples is None else int(num_samples)
    if num_samples < minimum:
        raise ConfigError(f"validate_samples={num_samples} is too short for {arch}: the heads need {minimum} samples")
    waveform = synthetic_waveform(num_samples)
    want = reference_forward(arch, torch_params, waveform.astype(np.float64))
    return num_samples, compare_outputs(_keras_outputs(arch, weights, waveform), want)


def check_diffs(arch: str, diffs: Sequence[LayerDiff], limit: float | None = None) -> None:
    """Raise :class:`~soundnet_keras.errors.ConversionError` naming every layer whose relative difference exceeds
    ``limit`` (default :data:`MAX_RELATIVE_ERROR`; NaN counts as exceeding)."""
    limit = MAX_RELATIVE_ERROR if limit is None else limit
    bad = [diff for diff in diffs if not diff.rel <= limit]
    if bad:
        listed = ", ".join(f"{diff.name} {diff.rel:.2e}" for diff in bad)
        raise ConversionError(
            f"the converted {arch} model does not match the float64 reference: relative difference above "
            f"{limit:g} at {listed}"
        )


def convert_torch_params(
    arch: str,
    torch_params: Mapping[str, Mapping[str, np.ndarray]],
    output_path: str | os.PathLike,
    source_path: str | os.PathLike | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    log: Log | None = print,
    *,
    source: str | None = None,
    validate_samples: int | None = None,
    info: Mapping[str, Any] | None = None,
) -> ConversionReport:
    """Write Torch-layout parameters of ``arch`` as a validated ``.weights.h5`` file at ``output_path``.

    ``source_path`` is the file the parameters came from (its name and sha256 go into the metadata; ``source``
    overrides the recorded name). ``categories`` maps ``"objects"``/``"scenes"`` to class names (optional).
    ``log`` receives progress lines and the per-layer difference table (``None`` for silence).
    ``validate_samples`` sets the length of the synthetic validation waveform (default: one frame of the heads
    plus a quarter second). Raises :class:`~soundnet_keras.errors.ConversionError` (or another
    :class:`~soundnet_keras.errors.SoundNetError`) when anything does not fit; the output path is then untouched.
    """
    say: Log = log or (lambda message: None)
    layer_table(arch)  # ConfigError for an unknown architecture
    output_path = Path(output_path)
    checked_categories = check_categories(arch, categories)
    keras_params = torch_to_keras(arch, torch_params)
    if source_path is not None:
        source_name = source if source is not None else Path(source_path).name
        try:
            source_sha256 = sha256_file(source_path)
        except OSError as exc:
            raise ConversionError(f"cannot read the source file {str(source_path)!r}: {exc}") from None
    else:
        source_name, source_sha256 = source or "", ""
    weights = WeightsFile(arch, keras_params, source_name, source_sha256, checked_categories)

    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConversionError(f"cannot write into {str(output_path.parent)!r}: {exc}") from None
    try:  # written beside the target, validated, then renamed into place; removed on any failure
        with atomic_path(output_path, suffix=".validating.h5") as tmp:
            save_weights(tmp, weights)
            written = load_weights(tmp)
            samples = default_validate_samples(arch) if validate_samples is None else validate_samples
            say(f"validating {arch} against the float64 NumPy reference on a synthetic waveform of {samples} samples")
            num_samples, diffs = validate(arch, torch_params, written, samples)
            say(format_diffs(diffs))
            check_diffs(arch, diffs)
    except OSError as exc:
        raise ConversionError(f"cannot write {str(output_path)!r}: {exc}") from None
    report = ConversionReport(arch, output_path, source_name, source_sha256, num_samples, diffs, dict(info or {}))
    say(f"wrote {output_path} ({arch}, largest relative difference {report.max_rel:.2e})")
    return report


def convert(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    arch: str | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    source: str | None = None,
    validate_samples: int | None = None,
    log: Log | None = print,
) -> ConversionReport:
    """Convert an authors' Torch7 model (``soundnet8_final.t7``, ``soundnet5_final.t7``) to ``output_path``.

    ``arch`` is detected from the file when ``None`` (and checked against it otherwise); ``source`` is the name
    recorded as the weights' origin (default: the input file's name). See :func:`convert_torch_params` for the
    other arguments, validation and errors.
    """
    say: Log = log or (lambda message: None)
    input_path = Path(input_path)
    found_arch, torch_params, info = read_t7(input_path, arch)
    tensor_types = ", ".join(info["tensor_types"]) or "none"
    converted = info["running_std_layers"]
    note = f", running_std converted to running_var for {len(converted)} layers" if converted else ""
    say(f"read {input_path.name}: {found_arch}, {info['module_count']} modules, tensors {tensor_types}{note}")
    return convert_torch_params(
        found_arch,
        torch_params,
        output_path,
        input_path,
        categories,
        log,
        source=source,
        validate_samples=validate_samples,
        info=info,
    )


__all__ = [
    "MAX_RELATIVE_ERROR",
    "ConversionReport",
    "LayerDiff",
    "check_categories",
    "check_diffs",
    "compare_outputs",
    "convert",
    "convert_torch_params",
    "default_validate_samples",
    "format_diffs",
    "read_category_file",
    "synthetic_waveform",
    "validate",
]
