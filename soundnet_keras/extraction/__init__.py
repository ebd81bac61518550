"""Feature extraction at scale: one file per input with provenance, a manifest to resume by, and a reader.

- :func:`~.jobs.plan_jobs`: inputs (files, folders, globs, a list on stdin) → jobs with mirrored output paths;
- :func:`~.run.extract_to_folder`: runs them, resumable (what ``soundnet-extract`` does);
- :func:`~.beam_pipeline.extract_with_beam`: the same as an Apache Beam pipeline (``soundnet-extract --runner``;
  the ``[beam]`` extra), sharing :class:`~.run.FeatureWriter` with the single-process loop;
- :func:`load_features`: reads one feature file, or a whole output folder, back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..errors import ConfigError
from .formats import SUFFIX_FORMATS, FeatureFile, FeatureFileError, read_feature_file
from .manifest import MANIFEST_NAME, Manifest


class FeatureFolder(Mapping[str, FeatureFile]):
    """The feature files of an output folder, by input path, each read when it is looked up (a folder of a
    million files costs no memory until used).

    With a manifest, its ``done`` inputs, in the order they were finished; without one, every feature file
    below the folder (keyed by the input path their provenance names).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST_NAME
        self._outputs: dict[str, Path] = {}
        if manifest_path.is_file():
            manifest = Manifest(self.folder)
            for entry in manifest.entries.values():
                if entry.status == "done" and (self.folder / entry.output).is_file():
                    self._outputs[entry.input] = self.folder / entry.output
        else:
            for path in sorted(self.folder.rglob("*")):
                if path.is_file() and path.suffix.lower() in SUFFIX_FORMATS and not path.name.startswith("."):
                    self._outputs[read_feature_file(path).input or str(path)] = path

    def __getitem__(self, input_path: str) -> FeatureFile:
        key = input_path if input_path in self._outputs else os.path.abspath(input_path)
        if key not in self._outputs:
            raise KeyError(input_path)
        return read_feature_file(self._outputs[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)

    def path(self, input_path: str) -> Path:
        """The feature file of ``input_path``."""
        return self._outputs[input_path if input_path in self._outputs else os.path.abspath(input_path)]

    def __repr__(self) -> str:
        return f"FeatureFolder({str(self.folder)!r}, {len(self)} files)"


def load_features(path: str | os.PathLike) -> FeatureFile | FeatureFolder:
    """Read features written by ``soundnet-extract``: a feature file gives a :class:`FeatureFile` (``.layers``:
    name → :class:`~soundnet_keras.Features`, ``.provenance``), an output folder a :class:`FeatureFolder`
    (input path → :class:`FeatureFile`, read on access)."""
    path = Path(path)
    if path.is_dir():
        return FeatureFolder(path)
    if not path.exists():
        raise ConfigError(f"{str(path)!r} does not exist: expected a feature file or a soundnet-extract output folder")
    return read_feature_file(path)


__all__ = ["FeatureFile", "FeatureFileError", "FeatureFolder", "load_features"]
