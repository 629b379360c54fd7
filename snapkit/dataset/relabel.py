"""Moving saved event clips into the dataset under the label they really have, with a log that can undo a move.

Clips come from ``listen --save-clips``, ``detect --save-clips`` and ``mine``. :func:`relabel_clips` moves a batch
into ``DATA/<label>/``; :func:`undo_last` moves the newest batch not yet undone back to where it came from. The
CLI (``snapkit relabel``) and a future web UI call these two and nothing else.

Every move is all-or-nothing: all clips are checked before the first is moved, a file is never replaced (a taken
name gets ``-2``, ``-3``...), each file is linked under its new name before its old name goes (so a crash leaves it
in both places at worst, never in neither), and if one move fails the ones before it are moved back.

The log, ``DATA/.snapkit-relabel.jsonl``, is append-only: one line per batch
``{"kind": "relabel", "batch": ID, "time": ISO, "label": L, "moves": [{"from": PATH, "to": PATH}, ...]}`` and one
per undo ``{"kind": "undo", "batch": ID, "time": ISO, "moves": [...]}``. Paths are absolute.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from snapkit.audio.io import is_audio_path
from snapkit.dataset.labels import validate_label
from snapkit.errors import SnapkitError
from snapkit.files import temporary_path_beside

RELABEL_LOG = ".snapkit-relabel.jsonl"
# A name is taken: try NAME-2, NAME-3, ... up to this many.
_MAX_NAME_TRIES = 1000


@dataclass(frozen=True)
class Move:
    """One clip moved from ``source`` to ``target`` (absolute paths)."""

    source: Path
    target: Path

    def to_dict(self) -> dict[str, str]:
        return {"from": str(self.source), "to": str(self.target)}


@dataclass(frozen=True)
class Batch:
    """One ``relabel`` call as the log holds it."""

    batch: str
    time: str
    label: str
    moves: tuple[Move, ...]


def log_path(data_dir: Path) -> Path:
    """Where the relabel log of ``data_dir`` is."""
    return Path(data_dir) / RELABEL_LOG


def relabel_clips(clips: Sequence[Path], data_dir: Path, label: str) -> Batch:
    """Move ``clips`` into ``DATA/<label>/`` (created if needed) and log the batch; returns it.

    Refused with one sentence, before anything moves: an invalid label, no clips, a clip that is missing, a folder,
    not audio, named twice, or already in ``DATA/<label>/``.
    """
    label = validate_label(label)
    data_dir = _data_folder(data_dir)
    if not clips:
        raise SnapkitError(
            "No clips given; name the saved clips to move, e.g. `snapkit relabel clips/*.wav --label doorbell`."
        )
    folder = data_dir.resolve() / label
    if folder.exists() and not folder.is_dir():
        raise SnapkitError(f"{folder} is a file, not a class folder; move it away first.")
    sources = [_checked_clip(Path(clip), folder) for clip in clips]
    seen: set[Path] = set()
    for source in sources:
        if source in seen:
            raise SnapkitError(f"{source} is named twice; give each clip once.")
        seen.add(source)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SnapkitError(f"Cannot create the class folder {folder} ({err.strerror or err}); check --data.") from None
    moves = _move_all([(source, folder / source.name) for source in sources])
    batch = Batch(uuid.uuid4().hex[:12], _now(), label, tuple(moves))
    record = {"kind": "relabel", "batch": batch.batch, "time": batch.time, "label": label}
    try:
        _append_log(data_dir, {**record, "moves": [m.to_dict() for m in moves]})
    except SnapkitError:
        _move_back(moves)  # a move that cannot be undone is not made
        raise
    return batch


def undo_last(data_dir: Path) -> Batch:
    """Move the clips of the newest batch not yet undone back where they came from, and log the undo.

    A place taken since gets a fresh name beside it (``-2``...); the returned batch's moves say where each went.
    Refused with one sentence, before anything moves: no log or nothing left to undo, a clip no longer where the
    batch put it, or a log entry pointing outside ``data_dir``.
    """
    data_dir = _data_folder(data_dir)
    batch = last_batch(data_dir)
    if batch is None:
        raise SnapkitError(f"Nothing to undo: {log_path(data_dir)} records no relabelling not already undone.")
    root = data_dir.resolve()
    for move in batch.moves:
        if not move.target.is_relative_to(root):
            raise SnapkitError(
                f"{log_path(data_dir)} names {move.target}, outside {data_dir}; the log was edited, nothing was moved."
            )
        if not move.target.is_file():
            raise SnapkitError(
                f"{move.target} is no longer where relabel put it (moved or deleted since); nothing was moved. "
                "Move the other clips of that batch by hand."
            )
    moves = _move_all([(m.target, m.source) for m in batch.moves])
    undo = Batch(batch.batch, _now(), batch.label, tuple(moves))
    try:
        _append_log(
            data_dir, {"kind": "undo", "batch": batch.batch, "time": undo.time, "moves": [m.to_dict() for m in moves]}
        )
    except SnapkitError:
        _move_back(moves)
        raise
    return undo


def last_batch(data_dir: Path) -> Batch | None:
    """The newest relabel batch of ``data_dir`` not yet undone, or None."""
    pending = pending_batches(data_dir)
    return pending[-1] if pending else None


def pending_batches(data_dir: Path) -> list[Batch]:
    """Every relabel batch of ``data_dir`` not undone, oldest first (empty without a log)."""
    path = log_path(data_dir)
    if not path.exists():
        return []
    batches: list[Batch] = []
    undone: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record["kind"] == "undo":
                undone.add(record["batch"])
            elif record["kind"] == "relabel":
                moves = tuple(Move(Path(m["from"]), Path(m["to"])) for m in record["moves"])
                batches.append(Batch(record["batch"], record["time"], record["label"], moves))
        except (ValueError, KeyError, TypeError):
            # A line cut short by a crash is the only way the log can be damaged; an undo must not guess past it.
            raise SnapkitError(f"Line {number} of {path} is not a relabel record; fix or remove that line.") from None
    return [b for b in batches if b.batch not in undone]


def _data_folder(data_dir: Path) -> Path:
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise SnapkitError(f"--data {data_dir} is a file; give the dataset folder (one folder per class).")
    return data_dir


def _checked_clip(clip: Path, folder: Path) -> Path:
    """``clip`` as an absolute path, or one sentence on why it cannot be moved into ``folder``."""
    if not clip.exists():
        raise SnapkitError(f"{clip}: no such file; check the path (nothing was moved).")
    if clip.is_dir():
        raise SnapkitError(f"{clip} is a folder; give the clips inside it (nothing was moved).")
    if not is_audio_path(clip):
        raise SnapkitError(f"{clip} is not an audio clip (.wav, .flac, ...); nothing was moved.")
    source = clip.parent.resolve() / clip.name  # a link is moved as a link, not the file it points to
    if source.parent == folder:
        raise SnapkitError(f"{clip} is already in {folder}; nothing was moved.")
    return source


def _move_all(pairs: list[tuple[Path, Path]]) -> list[Move]:
    """Move each (source, wanted target) without replacing anything; on a failure undo those done and raise."""
    done: list[Move] = []
    for source, wanted in pairs:
        try:
            done.append(Move(source, _move_file(source, wanted)))
        except OSError as err:
            _move_back(done)
            raise SnapkitError(
                f"Could not move {source} to {wanted.parent} ({err.strerror or err}); check that the folder is "
                "writable and has space. Nothing was moved."
            ) from None
    return done


def _move_back(moves: list[Move]) -> None:
    for move in reversed(moves):
        with contextlib.suppress(OSError):  # best effort: the error being reported is the one that matters
            _move_file(move.target, move.source)


def _move_file(source: Path, wanted: Path) -> Path:
    """Move ``source`` to ``wanted``, or ``wanted`` with ``-2``, ``-3``... if taken; returns where it went.

    ``os.link`` refuses an existing name, so nothing is ever replaced even with another writer in the folder. Across
    file systems the file is first copied whole beside the target under a hidden name, then linked.
    """
    wanted.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, _MAX_NAME_TRIES + 1):
        target = wanted if attempt == 1 else wanted.with_name(f"{wanted.stem}-{attempt}{wanted.suffix}")
        try:
            _link(source, target)
        except FileExistsError:
            continue
        try:
            source.unlink()
        except OSError:
            target.unlink(missing_ok=True)  # a clip is in one place, never two
            raise
        return target
    raise FileExistsError(f"{_MAX_NAME_TRIES} names like {wanted.name} are taken")


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
        return
    except FileExistsError:
        raise
    except OSError:
        pass  # another file system, or one without hard links: copy whole, then link the copy
    tmp = temporary_path_beside(target)
    try:
        shutil.copy2(source, tmp)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise
        except OSError:
            if target.exists():
                raise FileExistsError(target) from None
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _append_log(data_dir: Path, record: dict[str, object]) -> None:
    path = log_path(data_dir)
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        raise SnapkitError(
            f"Could not write the relabel log {path} ({err.strerror or err}); check that {data_dir} is writable. "
            "Nothing was moved."
        ) from None


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")
