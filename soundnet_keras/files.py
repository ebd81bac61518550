"""Files on disk: atomic writes and content hashes, the one implementation every writer of the package uses.

Every file the package writes (weights, heads, fine-tuned models, feature-cache entries, CLI reports, features,
shard manifests) goes through :func:`atomic_path`: the data is written to a fresh temporary file beside the target,
created with an unpredictable name (``tempfile.mkstemp``: ``O_EXCL``, so a planted name or symlink is never
followed), and renamed over the target only once complete. A reader sees the old file or the new one, never half;
a failure or a kill leaves the target untouched. The file gets the permissions a plain ``open`` would give it
(``0o666`` less the process umask), not ``mkstemp``'s private ``0o600``, so features and weights written on a
shared machine are readable as any other output.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    """The process umask (read by setting it and putting it back; Python has no getter)."""
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it replaces ``path``, on any error it is removed.

    ``suffix`` ends the temporary name, for writers that insist on an extension (``np.savez`` appends ``.npz``
    otherwise). The folder must exist.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, read in blocks (``hashlib.file_digest``)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
