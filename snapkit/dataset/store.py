"""Saving clips into ``DATA/<label>/`` under names that never collide, and never losing a take on the way."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from snapkit.audio.io import write_wav
from snapkit.dataset.labels import validate_label
from snapkit.errors import SnapkitError
from snapkit.files import disk_advice

# Overrides where a take goes when the data folder refuses it (see rescue_folders).
RESCUE_DIR_ENV = "SNAPKIT_RESCUE_DIR"
# A fresh name is drawn again when a random one is taken (never in practice: 8 hex digits and a time stamp).
_MAX_NAME_TRIES = 5

# Asked when a take could not be written: (the error, the folder) -> whether to try that folder once more.
TryAgain = Callable[[OSError, Path], bool]


class TakeRescued(SnapkitError):
    """A take the data folder refused was written to a rescue folder instead (or, if every one refused it too,
    could not be kept); the message says where it is and what to do."""

    def __init__(self, message: str, path: Path | None) -> None:
        super().__init__(message)
        self.path = path


def new_clip_path(data_dir: Path, label: str, *, stem: str | None = None) -> Path:
    """A fresh path ``DATA/<label>/<label>-<YYYYmmdd-HHMMSS>-<uuid8>.wav`` (or ``<stem>-<uuid8>.wav``).

    The random part makes two recorders on one folder, or two clips in one second, safe.
    """
    label = validate_label(label)
    head = stem or f"{label}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return Path(data_dir) / label / f"{head}-{uuid.uuid4().hex[:8]}.wav"


def save_clip(data_dir: Path, label: str, audio: np.ndarray, sample_rate_hz: int, *, stem: str | None = None) -> Path:
    """Write ``audio`` ``[samples]`` as a new 16-bit WAV clip of class ``label``; returns its path."""
    return write_wav(new_clip_path(data_dir, label, stem=stem), audio, sample_rate_hz)


def drops_silent_clips(label: str, background_label: str, keep_silent: bool = False) -> bool:
    """Whether a silent recording of ``label`` is refused: yes unless asked to keep it, or it is background, which
    is quiet by nature (dropping quiet clips there would throw away exactly what is wanted)."""
    return not keep_silent and label != background_label


def rescue_folders() -> list[Path]:
    """Where a take goes when its data folder cannot take it, in order: ``$SNAPKIT_RESCUE_DIR``, or else the user's
    data folder (``~/.local/share/snapkit/unsaved`` on Linux), then the system's temporary folder, which is often on
    another disk (or in memory) when the home disk is full."""
    override = os.environ.get(RESCUE_DIR_ENV)
    if override:
        return [Path(override).expanduser()]
    import platformdirs

    user = os.environ.get("USER") or os.environ.get("USERNAME") or "user"
    return [Path(platformdirs.user_data_dir("snapkit")) / "unsaved", Path(tempfile.gettempdir()) / f"snapkit-{user}"]


def save_take(
    data_dir: Path, label: str, audio: np.ndarray, sample_rate_hz: int, *, try_again: TryAgain | None = None
) -> Path:
    """Write a take just recorded, ``audio`` ``[samples]``, as a new clip of ``label`` (see :func:`save_clip`);
    returns its path. The take exists nowhere else, so it is not given up when the write fails (disk full, folder
    read-only or gone): ``try_again(error, folder)`` is asked whether to try again (the user has freed space), and
    when it says no (or is None) the take is written under the same name into the first of :func:`rescue_folders`
    that takes it, and :class:`TakeRescued` is raised naming it. Nothing is ever overwritten.
    """
    path = new_clip_path(data_dir, label)
    names_tried = 0
    while True:
        try:
            return write_wav(path, audio, sample_rate_hz)
        except FileExistsError:
            names_tried += 1
            if names_tried >= _MAX_NAME_TRIES:
                raise
            path = new_clip_path(data_dir, label)
        except OSError as err:
            if try_again is not None and try_again(err, path.parent):
                continue
            raise rescue_take(err, path, label, audio, sample_rate_hz) from None


def rescue_take(error: OSError, path: Path, label: str, audio: np.ndarray, sample_rate_hz: int) -> TakeRescued:
    """Write a take that could not be saved as ``path`` into a rescue folder; the error to raise, which names it."""
    folder = path.parent
    reason = error.strerror or str(error)
    for rescue in rescue_folders():
        target = rescue / label / path.name
        try:
            write_wav(target, audio, sample_rate_hz)
        except OSError:
            continue
        return TakeRescued(
            f"Could not save the take in {folder} ({reason}), so it was kept as {target}: {disk_advice(error)}, "
            f"then move it into {folder} and record the rest.",
            target,
        )
    tried = ", ".join(str(r) for r in rescue_folders())
    return TakeRescued(
        f"Could not save the take in {folder} ({reason}) nor in a rescue folder ({tried}), so it is lost: "
        f"{disk_advice(error)} before recording again.",
        None,
    )
