"""Files snapkit writes for itself: the one atomic-write helper and the one per-user cache folder.

Every file a command writes whole (a model, an event list, a plot, a cached embedding, a sidecar) goes through
:func:`replace_atomically`, so a reader, a crash or Ctrl-C only ever sees the old file or the new one, never half
of one. Recordings are the exception: :func:`snapkit.audio.io.write_wav` never replaces an existing file at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; FileLock then guards nothing (see its docstring)
    fcntl = None  # type: ignore[assignment]

import numpy as np

from snapkit.errors import SnapkitError

# Overrides the per-user cache folder (downloaded weights, their verification records, cached embeddings).
CACHE_DIR_ENV = "SNAPKIT_CACHE_DIR"
# `snapkit train` builds a run in a hidden folder holding this marker file and renames it into place only when it is
# complete (snapkit.training.train.run_training): a model with the marker beside it is not a finished run's, and
# load_model and the workbench pass it by.
INCOMPLETE_MARKER = "INCOMPLETE"


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


def disk_advice(err: OSError) -> str:
    """What a user can do about ``err`` from writing a file, as the end of a sentence."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space"
    if err.errno == errno.EROFS:
        return "remount that disk writable"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "check its permissions"
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return "move away the file that stands where a folder is needed"
    return "check that it exists and is writable"


def check_writable(folder: Path | str, *, what: str, instead: str, size_bytes: int = 0) -> Path:
    """Make sure files can be written into ``folder`` before any work whose result would otherwise be lost: the
    folder is created if needed, then a hidden probe of ``size_bytes`` is really written, flushed to disk and
    removed (permissions alone say nothing for root, a read-only mount or a full disk). Returns ``folder``.

    Raises SnapkitError, one sentence naming ``what`` (e.g. "the data folder") and ``folder``, what is wrong, and
    ``instead`` (e.g. "choose another --data folder").
    """
    folder = Path(folder)
    probe = folder / f".snapkit-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "xb") as handle:
            # Zeros in pieces: a probe the size of a recording must not cost that much memory twice.
            left = size_bytes
            while left > 0:
                left -= handle.write(bytes(min(left, 1 << 20)))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        raise SnapkitError(
            f"Cannot write to {what} {folder} ({err.strerror or err}): {disk_advice(err)}, or {instead}."
        ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
    return folder


class FileLock:
    """An advisory lock saying "this snapkit process writes ``path``", so that a second writer is refused instead
    of interleaving its lines with the first one's.

    The lock is ``fcntl.flock`` on a hidden sidecar ``.NAME.lock`` beside ``path``, not on ``path`` itself: a .json
    event list and ``snapkit detect``'s event file are replaced whole (``os.replace``), and a lock on a replaced
    file guards a file no one opens any more. The sidecar holds the holder's process id and is removed on release.
    A flock belongs to an open file description, so two ``FileLock`` objects of one process exclude each other too.
    The lock is released when the process ends, however it ends. Where ``fcntl`` does not exist (Windows) nothing is
    locked.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, busy: Callable[[str], str], unwritable: Callable[[OSError], str]) -> None:
        """Take the lock or raise SnapkitError with the sentence ``busy(holder's process id or "unknown")`` when
        another holder has it, or ``unwritable(error)`` when the sidecar cannot be created beside ``path``."""
        if fcntl is None or self._fd is not None:
            return
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise SnapkitError(unwritable(err)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _read_pid(fd)
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise SnapkitError(busy(holder or "unknown")) from None
                raise SnapkitError(unwritable(err)) from None
            # The previous holder removes the sidecar when it lets go: if it did so after we opened it, we hold a
            # lock on a file no one else will open, so take it again on the sidecar that is there now.
            try:
                there = os.stat(self.lock_path)
                mine = os.fstat(fd)
                current = (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        with contextlib.suppress(OSError):  # the process id only helps the message of a refused second writer
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (safe to call twice). The sidecar is removed first, while still held."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            self.lock_path.unlink()
        os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


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
