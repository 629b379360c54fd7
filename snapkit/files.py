"""Files snapkit writes for itself: the one atomic-write helper and the one per-user cache folder.

Every file a command writes whole (a model, an event list, a plot, a cached embedding, a sidecar) goes through
:func:`replace_atomically`, so a reader, a crash or Ctrl-C only ever sees the old file or the new one, never half
of one. Recordings are the exception: :func:`snapkit.audio.io.write_wav` never replaces an existing file at all.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from snapkit.errors import SnapkitError

# Overrides the per-user cache folder (downloaded weights, their verification records, cached embeddings).
CACHE_DIR_ENV = "SNAPKIT_CACHE_DIR"


def cache_root() -> Path:
    """snapkit's per-user cache folder: ``$SNAPKIT_CACHE_DIR`` or the platform's user cache dir."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("snapkit"))


def temporary_path_beside(path: Path) -> Path:
    """A fresh hidden name beside ``path`` to write to before renaming (same folder, so the rename is atomic).

    Not ``tempfile.mkstemp``: that creates the file with mode 0600, and what a user saves should get their usual
    permissions (umask) like any other file.
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


@contextlib.contextmanager
def replace_atomically(path: Path | str, *, what: str = "") -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; when the block succeeds it replaces ``path``, and on any
    error (or Ctrl-C) it is removed.

    The folder is created if needed. An OSError (folder not writable, disk full) becomes one SnapkitError sentence
    naming ``path`` (``what`` says what it is, e.g. ``"the model file"``).
    """
    path = Path(path)
    tmp = temporary_path_beside(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        name = f"{what} {path}" if what else str(path)
        raise SnapkitError(
            f"Could not write {name} ({err.strerror or err}); check that its folder is writable and has space."
        ) from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_atomically(path: Path | str, data: bytes | str, *, what: str = "") -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` whole or not at all (see :func:`replace_atomically`)."""
    path = Path(path)
    with replace_atomically(path, what=what) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def jsonable(value: object) -> object:
    """``value`` with what JSON cannot hold turned into what it can: tuples to lists, paths to text, numpy scalars
    to Python numbers, mapping keys to text (recursively)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value
