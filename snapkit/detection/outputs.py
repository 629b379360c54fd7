"""Event lists as files: CSV for people and spreadsheets, JSON Lines for programs, TSV in the DCASE layout.

Every file is written whole or not at all (a hidden temporary file beside it, then ``os.replace``), so an
interrupted ``snapkit detect`` never leaves half an event list. An existing file of the same name is replaced: event
lists are derived data that a re-run reproduces, unlike recordings, which snapkit never overwrites.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from snapkit.detection.events import Event
from snapkit.errors import SnapkitError

EVENT_FORMATS = (".csv", ".tsv", ".jsonl")
CSV_COLUMNS = ("filename", "label", "onset_s", "offset_s", "peak_score", "mean_score")
# The header of DCASE task 4 metadata and baseline output files, which sed_eval and psds_eval read.
DCASE_COLUMNS = ("filename", "onset", "offset", "event_label")
# Detector times are on a 10 ms grid or coarser: a millisecond keeps them exact; scores need no more than 4 places.
TIME_DECIMALS = 3
SCORE_DECIMALS = 4


def check_events_path(path: Path) -> str:
    """The format (``".csv"``, ``".tsv"`` or ``".jsonl"``) of ``path`` by its extension, or SnapkitError."""
    suffix = path.suffix.lower()
    if suffix not in EVENT_FORMATS:
        raise SnapkitError(
            f"{path} is not an event-list file name (extension '{path.suffix}'); use .csv, .tsv (DCASE) or .jsonl."
        )
    return suffix


@contextlib.contextmanager
def replace_atomically(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; on success it replaces ``path``, on any error it is removed.

    The folder is created if needed. An OSError (folder not writable, disk full) becomes a SnapkitError naming
    ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise SnapkitError(
            f"Could not write {path} ({err.strerror or err}); check that its folder is writable and has space."
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _times(event: Event) -> tuple[float, float]:
    if event.offset_s is None:
        raise ValueError(f"Event {event} has no offset; write only finished events ('end' updates).")
    return round(event.onset_s, TIME_DECIMALS), round(event.offset_s, TIME_DECIMALS)


def _time_text(seconds: float) -> str:
    return f"{seconds:.{TIME_DECIMALS}f}"


def _score_text(score: float) -> str:
    return f"{score:.{SCORE_DECIMALS}f}"


def _write_csv(handle: TextIO, rows: Sequence[tuple[str, Event]]) -> None:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for filename, event in rows:
        onset, offset = _times(event)
        writer.writerow(
            [
                filename,
                event.label,
                _time_text(onset),
                _time_text(offset),
                _score_text(event.peak_score),
                _score_text(event.mean_score),
            ]
        )


def _write_tsv(handle: TextIO, rows: Sequence[tuple[str, Event]]) -> None:
    # The csv module quotes a field only if it holds a tab, newline or quote, which DCASE readers (pandas) undo.
    writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
    writer.writerow(DCASE_COLUMNS)
    for filename, event in rows:
        onset, offset = _times(event)
        writer.writerow([filename, _time_text(onset), _time_text(offset), event.label])


def _write_jsonl(handle: TextIO, rows: Sequence[tuple[str, Event]]) -> None:
    for filename, event in rows:
        onset, offset = _times(event)
        record = {
            "filename": filename,
            "label": event.label,
            "onset_s": onset,
            "offset_s": offset,
            "peak_score": round(event.peak_score, SCORE_DECIMALS),
            "mean_score": round(event.mean_score, SCORE_DECIMALS),
        }
        handle.write(json.dumps(record) + "\n")


_WRITERS = {".csv": _write_csv, ".tsv": _write_tsv, ".jsonl": _write_jsonl}


def write_events(path: str | Path, rows: Sequence[tuple[str, Event]]) -> Path:
    """Write ``rows`` of ``(filename, finished event)`` to ``path``, in the format its extension names.

    ``.csv``: header ``filename,label,onset_s,offset_s,peak_score,mean_score``. ``.jsonl``: one object per event
    with those keys. ``.tsv``: the DCASE layout, header ``filename<TAB>onset<TAB>offset<TAB>event_label``. Times are
    seconds with millisecond precision. An existing file is replaced; a new one appears complete or not at all.

    Raises:
        SnapkitError: the extension is none of these, or the file cannot be written.
        ValueError: an event has no offset (it is still going on).
    """
    path = Path(path)
    writer = _WRITERS[check_events_path(path)]
    rows = list(rows)
    for _, event in rows:
        _times(event)  # refuse an unfinished event before anything is written
    with replace_atomically(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer(handle, rows)
    return path


def read_events(path: str | Path) -> list[tuple[str, Event]]:
    """Read an event list written by :func:`write_events`, or a DCASE ground-truth TSV, as ``(filename, event)``.

    Scores missing from the file (DCASE TSV) are NaN. DCASE rows without a label (a file with no events) are skipped.

    Raises:
        SnapkitError: unknown extension, unreadable file, or a row that is not an event.
    """
    path = Path(path)
    suffix = check_events_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SnapkitError(f"Could not read the event list {path} ({err.strerror or err}); check the path.") from None
    if suffix == ".jsonl":
        names = {"filename": "filename", "label": "label", "onset": "onset_s", "offset": "offset_s"}
        records = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    else:
        names = (
            {"filename": "filename", "label": "event_label", "onset": "onset", "offset": "offset"}
            if suffix == ".tsv"
            else {"filename": "filename", "label": "label", "onset": "onset_s", "offset": "offset_s"}
        )
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        records = list(enumerate(reader, start=2))  # line 1 is the header
    rows: list[tuple[str, Event]] = []
    for number, raw in records:
        try:
            record = json.loads(raw) if isinstance(raw, str) else raw
            if not record.get(names["label"]):
                continue
            event = Event(
                label=str(record[names["label"]]),
                onset_s=float(record[names["onset"]]),
                offset_s=float(record[names["offset"]]),
                peak_score=float(record.get("peak_score") or math.nan),
                mean_score=float(record.get("mean_score") or math.nan),
            )
            rows.append((str(record[names["filename"]]), event))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise SnapkitError(
                f"Line {number} of {path} is not an event (it needs {', '.join(names.values())}); fix or remove it."
            ) from None
    return rows
