"""What the workbench's pages do, as plain methods over the library: no web framework here, so each action is tested
on its own and the routes in :mod:`snapkit.ui.app` stay thin.

Every move of a clip goes through :func:`snapkit.dataset.relabel.relabel_clips`, so it is logged and undoable like
``snapkit relabel``: moving a clip to another class, relabelling an event clip, renaming a class (all its clips, then
the empty folder) and deleting. A deleted clip is moved into ``DATA/.snapkit-trash/<class>/``, a dataset of its own
with its own relabel log (hidden, so ``scan_dataset`` never sees it), which ``undo_last`` moves back from.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from snapkit.audio.io import audio_info, is_audio_path, load_audio
from snapkit.audio.levels import peak_dbfs, rms_dbfs
from snapkit.dataset.importer import import_files, is_silent
from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL, validate_label
from snapkit.dataset.relabel import Batch, pending_batches, relabel_clips, undo_last
from snapkit.dataset.scan import DEFAULT_SILENCE_THRESHOLD_DBFS, find_problems, scan_dataset
from snapkit.dataset.store import drops_silent_clips, save_clip
from snapkit.errors import SnapkitError
from snapkit.files import INCOMPLETE_MARKER, jsonable
from snapkit.ui.security import PathRefused, inside

TRASH_DIR = ".snapkit-trash"
# The spectrogram shows this many dB below the clip's loudest bin; quieter is drawn black.
SPECTROGRAM_RANGE_DB = 70.0
# listen --save-clips: <label>-<YYYYmmdd-HHMMSS-mmm>-<event id>[-n]
_LIVE_NAME = re.compile(r"^(?P<label>.+)-(?P<stamp>\d{8}-\d{6}-\d{3})-\d+(?:-\d+)?$")
# detect --save-clips and mine: <file stem>-<onset>s-<label>[-n]
_FILE_NAME = re.compile(r"^(?P<stem>.+)-(?P<onset>\d+\.\d+)s-(?P<label>.+?)(?:-\d+)?$")


class SilentClip(SnapkitError):
    """A recording refused because it is silent, as ``snapkit record`` refuses it."""


class TrainingBusy(SnapkitError):
    """A training was asked for while one runs: one at a time."""


@dataclass
class Workbench:
    """The folders the workbench may touch, and the undo history of this session.

    Args:
        data_dir: the dataset (one folder per class); moves, recordings and uploads go here.
        runs_dir: training runs (``RUNS/<name>/model.snapkit``, ``metrics.json``).
        events_dirs: folders of saved event clips to review (``listen``/``detect --save-clips``, ``mine``).
    """

    data_dir: Path
    runs_dir: Path
    events_dirs: list[Path] = field(default_factory=list)
    background_label: str = DEFAULT_BACKGROUND_LABEL
    silence_threshold_dbfs: float = DEFAULT_SILENCE_THRESHOLD_DBFS
    # Which relabel log each action of this session wrote to (the dataset's or the trash's), newest last: undo
    # takes back the newest action whichever log holds it.
    _history: list[Path] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def trash_dir(self) -> Path:
        return self.data_dir / TRASH_DIR

    def roots(self) -> dict[str, Path]:
        """The folders a request may name a file in, by the name the page uses."""
        named = {"data": self.data_dir, "runs": self.runs_dir}
        named.update({f"events-{i}": folder for i, folder in enumerate(self.events_dirs)})
        return named

    def resolve(self, root: str, relative: str, *, must_exist: bool = True) -> Path:
        """The file ``relative`` under the folder named ``root``; ``PathRefused`` if it would leave it,
        ``FileNotFoundError`` if it must exist and does not."""
        folders = self.roots()
        if root not in folders:
            raise PathRefused(f"{root!r} is none of the workbench's folders ({', '.join(folders)}).")
        path = inside(folders[root], relative)
        if must_exist and not path.is_file():
            raise FileNotFoundError(f"{relative} is not a file in the {root} folder; reload the page.")
        return path

    # --- Dataset --------------------------------------------------------------------------------------------------

    def dataset(self) -> dict[str, Any]:
        """Classes (clips, seconds), the problems ``snapkit data`` lists, and every clip (paths relative to DATA)."""
        if not self.data_dir.exists():
            return {"data_dir": str(self.data_dir), "classes": [], "problems": [], "clips": []}
        scanned = scan_dataset(self.data_dir, background_label=self.background_label)
        summary = scanned.summary()
        classes = [
            {
                "label": row.label,
                "clips": int(row.clips),
                "seconds": float(row.seconds),
                "background": row.is_background,
            }
            for row in summary.itertuples()
        ]
        problems = [
            {"severity": p.severity, "message": p.message, "path": self._relative(p.path)}
            for p in find_problems(scanned, self.silence_threshold_dbfs)
        ]
        clips = [
            {
                "path": self._relative(c.path),
                "label": c.label,
                "duration_s": c.duration_s,
                "peak_dbfs": c.peak_dbfs,
                "rms_dbfs": c.rms_dbfs,
                "error": c.error,
            }
            for c in scanned.clips
        ]
        return finite({"data_dir": str(self.data_dir), "classes": classes, "problems": problems, "clips": clips})

    def move(self, paths: Sequence[str], label: str) -> dict[str, Any]:
        """Move dataset clips (paths relative to DATA) into class ``label``, undoably."""
        return self._relabel([self.resolve("data", p) for p in paths], self.data_dir, label)

    def delete(self, paths: Sequence[str]) -> dict[str, Any]:
        """Move dataset clips into the trash, each under its class, undoably."""
        clips = [self.resolve("data", p) for p in paths]
        labels = {clip.parent.name for clip in clips}
        if len(labels) != 1:
            raise SnapkitError("Delete the clips of one class at a time; nothing was deleted.")
        return self._relabel(clips, self.trash_dir, labels.pop())

    def rename_class(self, old: str, new: str) -> dict[str, Any]:
        """Rename class ``old`` to ``new``: all its clips move (one undoable batch), then its empty folder goes."""
        validate_label(old)
        validate_label(new)
        folder = inside(self.data_dir, old)
        if not folder.is_dir():
            raise FileNotFoundError(f"There is no class {old!r} in {self.data_dir}; reload the page.")
        if (self.data_dir / new).exists():
            raise SnapkitError(f"Class {new!r} exists already; move the clips into it instead of renaming.")
        clips = sorted(p for p in folder.iterdir() if p.is_file() and is_audio_path(p))
        if not clips:
            raise SnapkitError(f"Class {old!r} has no clips to rename; remove its empty folder instead.")
        result = self._relabel(clips, self.data_dir, new)
        if not any(folder.iterdir()):
            folder.rmdir()
        return result

    def undo(self) -> dict[str, Any]:
        """Take back this session's newest move, delete or rename (after a restart: the dataset log's newest)."""
        with self._lock:
            folder = self._history.pop() if self._history else self.data_dir
            try:
                batch = undo_last(folder)
            except SnapkitError:
                if folder != self.data_dir:
                    self._history.append(folder)
                raise
        return _batch_dict(batch, undone=True)

    def import_uploads(self, files: Sequence[Path], label: str, clip_s: float, hop_s: float) -> dict[str, Any]:
        """``snapkit import`` of uploaded ``files`` (already saved outside the dataset) into class ``label``.

        Every file is checked as audio before anything is written: one that is not refuses the whole upload.
        """
        validate_label(label)
        for path in files:
            audio_info(path)  # AudioFileError, one sentence, before anything is written
        report = import_files(
            list(files), self.data_dir, label, seconds=clip_s, hop_s=hop_s, background_label=self.background_label
        )
        return {
            "written": [self._relative(p) for p in report.written],
            "silent_skipped": report.silent_skipped,
            "room_tone_skipped": report.room_tone_skipped,
            "failed": {p.name: why for p, why in report.failed.items()},
        }

    def save_recording(self, label: str, audio: np.ndarray, sample_rate_hz: int) -> dict[str, Any]:
        """Save a clip recorded in the browser as ``snapkit record`` saves one; ``SilentClip`` if it is silent
        (background clips are kept: background is quiet by nature)."""
        validate_label(label)
        peak, rms = peak_dbfs(audio), rms_dbfs(audio)
        if drops_silent_clips(label, self.background_label) and is_silent(audio, self.silence_threshold_dbfs):
            raise SilentClip(
                f"The clip is silent (peak {peak:.1f} dBFS < {self.silence_threshold_dbfs:g}); check that the "
                "microphone is not muted and record it again."
            )
        path = save_clip(self.data_dir, label, audio, sample_rate_hz)
        return finite({"path": self._relative(path), "peak_dbfs": peak, "rms_dbfs": rms})

    # --- Review ---------------------------------------------------------------------------------------------------

    def event_clips(self) -> list[dict[str, Any]]:
        """Every saved event clip in the events folders, newest first: label the detector gave, score, time."""
        rows = []
        for index, folder in enumerate(self.events_dirs):
            if not folder.is_dir():
                continue
            scores = _listen_log_scores(folder)
            for path in sorted(p for p in folder.iterdir() if p.is_file() and is_audio_path(p)):
                label, when = _event_name(path)
                rows.append(
                    {
                        "root": f"events-{index}",
                        "path": path.name,
                        "folder": str(folder),
                        "label": label,
                        "score": scores.get(path.name),
                        "time": when,
                        "mtime": path.stat().st_mtime,
                    }
                )
        rows.sort(key=lambda row: row["mtime"], reverse=True)
        return rows

    def review(self, root: str, path: str, label: str) -> dict[str, Any]:
        """Move one event clip into the dataset as ``label`` (right: its own label; wrong: background)."""
        if not root.startswith("events-"):
            raise PathRefused("Only event clips are reviewed; use the dataset page for dataset clips.")
        return self._relabel([self.resolve(root, path)], self.data_dir, label)

    def changes_since_training(self) -> dict[str, Any]:
        """What changed in the dataset since the newest model in RUNS was written: clips relabelled in (or moved),
        clips deleted, clips added (recorded or imported)."""
        trained = _newest_model_time(self.runs_dir)
        since = trained or 0.0
        # The log keeps whole seconds: an action in the model's own second counts as after it (never missed).
        logged_since = math.floor(since) if trained is not None else -math.inf
        moved = [m for b in pending_batches(self.data_dir) if _seconds(b.time) >= logged_since for m in b.moves]
        deleted = [m for b in pending_batches(self.trash_dir) if _seconds(b.time) >= logged_since for m in b.moves]
        moved_in = {m.target for m in moved}
        added = 0
        if self.data_dir.is_dir():
            for class_dir in (p for p in self.data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                for clip in class_dir.iterdir():
                    if is_audio_path(clip) and clip.resolve() not in moved_in and clip.stat().st_mtime > since:
                        added += 1
        return {
            "trained_at": None if trained is None else datetime.fromtimestamp(trained).astimezone().isoformat(),
            "relabelled": len(moved),
            "deleted": len(deleted),
            "added": added,
            "total": len(moved) + len(deleted) + added,
        }

    def models(self) -> list[str]:
        """The runs in RUNS that hold a model, newest first."""
        if not self.runs_dir.is_dir():
            return []
        found = [p.parent for p in self.runs_dir.glob("*/model.snapkit") if is_finished_run(p.parent)]
        return [
            run.name for run in sorted(found, key=lambda run: (run / "model.snapkit").stat().st_mtime, reverse=True)
        ]

    # --- helpers --------------------------------------------------------------------------------------------------

    def _relabel(self, clips: list[Path], data_dir: Path, label: str) -> dict[str, Any]:
        with self._lock:
            batch = relabel_clips(clips, data_dir, label)
            self._history.append(data_dir)
        return _batch_dict(batch, undone=False)

    def _relative(self, path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return Path(path).resolve().relative_to(self.data_dir.resolve()).as_posix()
        except ValueError:
            return str(path)


def spectrogram_png(path: Path) -> bytes:
    """A PNG of ``path``'s log spectrogram (low frequencies at the bottom, ``SPECTROGRAM_RANGE_DB`` dB shown)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the server draws into memory
    from matplotlib import image

    from snapkit.detection.plot import log_spectrogram

    audio, rate = load_audio(path)
    db, _, _ = log_spectrogram(audio, rate)
    top = float(db.max())
    buffer = io.BytesIO()
    image.imsave(buffer, db, cmap="magma", origin="lower", vmin=top - SPECTROGRAM_RANGE_DB, vmax=top, format="png")
    return buffer.getvalue()


def _batch_dict(batch: Batch, *, undone: bool) -> dict[str, Any]:
    return {
        "batch": batch.batch,
        "label": batch.label,
        "undone": undone,
        "moves": [{"from": str(m.source), "to": str(m.target)} for m in batch.moves],
    }


def _event_name(path: Path) -> tuple[str | None, str | None]:
    """The label the detector gave an event clip, and when it happened, read from its name."""
    live = _LIVE_NAME.match(path.stem)
    if live:
        stamp = datetime.strptime(live["stamp"], "%Y%m%d-%H%M%S-%f")
        return live["label"], stamp.isoformat(timespec="milliseconds")
    cut = _FILE_NAME.match(path.stem)
    if cut:
        return cut["label"], f"{cut['stem']} at {float(cut['onset']):.2f} s"
    return None, None


def _listen_log_scores(folder: Path) -> dict[str, float]:
    """Peak scores of the clips a ``listen --log`` JSONL file in ``folder`` names (clip file name -> score)."""
    scores: dict[str, float] = {}
    for log in folder.glob("*.jsonl"):
        try:
            lines = log.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            try:
                record = json.loads(line)
                if record.get("clip_path") and record.get("peak_score") is not None:
                    scores[Path(record["clip_path"]).name] = float(record["peak_score"])
            except (ValueError, TypeError, AttributeError):
                continue  # not a listen log line: this is a review aid, not a parser of record
    return scores


def is_finished_run(run: Path) -> bool:
    """A run folder ``snapkit train`` completed: not one it is still building (hidden, with an INCOMPLETE marker)."""
    return not run.name.startswith(".") and not (run / INCOMPLETE_MARKER).exists()


def _newest_model_time(runs_dir: Path) -> float | None:
    runs = [p for p in runs_dir.glob("*/model.snapkit") if is_finished_run(p.parent)] if runs_dir.is_dir() else []
    times = [p.stat().st_mtime for p in runs]
    return max(times) if times else None


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def finite(value: Any) -> Any:
    """``value`` as JSON can hold it: NaN and infinities (an unreadable clip's levels) become None."""
    value = jsonable(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def ensure_folder(path: Path) -> None:
    """Create ``path`` (and parents) if missing; one sentence if it is a file."""
    if path.exists() and not path.is_dir():
        raise SnapkitError(f"{path} is a file; give a folder.")
    os.makedirs(path, exist_ok=True)
