"""Event files: one registry of formats by extension, used by ``snapkit detect --events`` and ``snapkit listen
--events`` alike, so every extension works in both.

    .csv    a header of field names, then one row per record
    .tsv    the DCASE task 4 layout (``filename onset offset event_label``) that sed_eval and psds_eval read;
            finished events only
    .jsonl  one JSON object per record and line
    .json   one JSON list of records, rewritten whole at every write

A row is an event's record (``Event.to_dict``: the same fields, rounding and text in every format and command)
with the fields its context adds: ``snapkit detect`` writes ``LIST_FIELDS`` (the audio file, then the record),
``snapkit listen`` writes ``UPDATE_FIELDS`` (each start and end as it happens).

A writer (``EventFormat.open``) appends. The line formats add lines, flushed and fsynced at every write, so a crash
or Ctrl-C loses nothing already written; a .json list cannot grow in place, so it is rewritten through a hidden
temporary file and ``os.replace``, and the file on disk is always a whole list. An existing file is continued when
it has the same columns and refused otherwise. ``write_events`` (``snapkit detect``) instead replaces a file whole.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from snapkit.detection.events import RECORD_FIELDS, Event, field_text
from snapkit.errors import SnapkitError
from snapkit.files import FileLock, disk_advice, replace_atomically

# A row of `snapkit detect`'s event list: the audio file the event is in, then the event's record.
LIST_FIELDS = ("filename", *RECORD_FIELDS)
# The header of DCASE task 4 metadata and baseline output files, which sed_eval and psds_eval read.
DCASE_COLUMNS = ("filename", "onset", "offset", "event_label")
# Each DCASE column's record field.
_DCASE_FIELDS = {"filename": "filename", "onset": "onset_s", "offset": "offset_s", "event_label": "label"}

Row = Mapping[str, Any]
# Turns a row into the line(s) of text a line format appends.
Render = Callable[[Row], str]


class EventWriter:
    """An event file open for appending: ``write(rows)`` adds rows, ``close()`` releases it (safe twice)."""

    def write(self, rows: Sequence[Row]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _LineWriter(EventWriter):
    """Appends the lines ``render`` makes of each row, after a header line of the ``header`` names (joined by
    ``delimiter``) when the file is new or empty; an existing file must start with that header. Every ``write`` is
    flushed and fsynced."""

    def __init__(self, path: Path, render: Render, header: Sequence[str] | None = None, delimiter: str = ",") -> None:
        self.path = path
        self._render = render
        header_line = None if header is None else delimiter.join(header)
        new = not path.exists() or path.stat().st_size == 0
        torn = False  # the last line of an existing file was cut short (a crash mid-write): start on a new line
        if not new:
            try:
                with open(path, encoding="utf-8", newline="") as handle:
                    first = handle.readline()
                with open(path, "rb") as raw:
                    raw.seek(-1, os.SEEK_END)
                    torn = raw.read(1) != b"\n"
            except (OSError, UnicodeDecodeError) as err:
                raise _cannot_read(path, err) from None
            if header is not None and first.rstrip("\r\n") != header_line:
                raise SnapkitError(
                    f"{path} already exists with other columns than these events ({', '.join(header)}); "
                    "choose another --events file."
                )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # newline="" lets the csv module write its own line endings; utf-8 so any label survives.
            self._file: TextIO | None = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as err:
            raise SnapkitError(
                f"Cannot open the event file {path} for appending ({err.strerror or err}); check the path."
            ) from None
        if new and header_line is not None:
            self._append(header_line + "\n")
        elif torn:
            self._append("\n")

    def write(self, rows: Sequence[Row]) -> None:
        self._append("".join(self._render(row) for row in rows))

    def _append(self, text: str) -> None:
        if self._file is None:
            raise RuntimeError(f"the event file {self.path} is closed")
        self._file.write(text)
        self._file.flush()
        # fsync per write: events are rare (a few per minute), and a log that loses its last lines on a power cut is
        # exactly the log one needs after an incident.
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            handle, self._file = self._file, None
            handle.close()


class _JsonListWriter(EventWriter):
    """Keeps the file's list in memory and rewrites the whole file (temporary file, then ``os.replace``) at every
    ``write``: the file is a complete JSON list at every moment. A new file is written as ``[]`` straight away.
    With ``atomic`` False the file is written in place: for a temporary file the caller will rename into place itself
    (``write_events``), so that a failure names the caller's file, not a temporary of a temporary.

    Each write costs the whole list: for sessions of thousands of events, .jsonl appends instead."""

    def __init__(self, path: Path, columns: Sequence[str], *, atomic: bool = True) -> None:
        self.path = path
        self._atomic = atomic
        self._columns = tuple(columns)
        self._records: list[dict[str, Any]] = []
        if path.exists() and path.stat().st_size > 0:
            try:
                existing = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as err:
                raise _cannot_read(path, err) from None
            if not isinstance(existing, list) or any(
                not isinstance(item, dict) or set(item) != set(columns) for item in existing
            ):
                raise SnapkitError(
                    f"{path} already exists and is not a list of these events ({', '.join(columns)}); "
                    "choose another --events file."
                )
            self._records = existing
        else:
            self._rewrite()

    def write(self, rows: Sequence[Row]) -> None:
        # Kept even if this rewrite fails (disk full): the next one that succeeds writes them too.
        self._records += [{name: row[name] for name in self._columns} for row in rows]
        self._rewrite()

    def _rewrite(self) -> None:
        # One record per line: readable, and a diff of two runs shows the events that differ.
        lines = ",\n".join(json.dumps(record, ensure_ascii=False) for record in self._records)
        target = replace_atomically(self.path) if self._atomic else contextlib.nullcontext(self.path)
        with target as path, open(path, "w", encoding="utf-8") as handle:
            handle.write(f"[\n{lines}\n]\n" if lines else "[]\n")
            handle.flush()
            os.fsync(handle.fileno())


class EventFormat:
    """One kind of event file: how rows are written (``open``) and read back (``parse``).

    ``holds_starts`` is False when the format has room for finished events only (a start has no offset).
    ``describe`` names the format in help texts and errors.
    """

    suffix = ""
    describe = ""
    holds_starts = True
    # Field names a record needs to be read back as an event, in this format's own spelling (for error messages).
    needs: tuple[str, ...] = ("label", "onset_s", "offset_s")

    def open(self, path: Path, columns: Sequence[str], *, atomic: bool = True) -> EventWriter:
        """Open ``path`` for appending rows of ``columns`` (an existing file must have the same columns). Formats
        that rewrite the whole file do so through a temporary file unless ``atomic`` is False (``path`` is already
        a private temporary file)."""
        raise NotImplementedError

    def parse(self, text: str) -> list[tuple[str, Any]]:
        """The records in ``text`` as ``(where, record)``: ``where`` names its place ("Line 3"), ``record`` is a dict
        keyed by record field names, or anything else when the place holds no readable record."""
        raise NotImplementedError


class _CsvFormat(EventFormat):
    suffix = ".csv"
    describe = ".csv"

    def open(self, path: Path, columns: Sequence[str], *, atomic: bool = True) -> EventWriter:
        def render(row: Row) -> str:
            return _delimited([field_text(name, row[name]) for name in columns], ",")

        return _LineWriter(path, render, header=columns)

    def parse(self, text: str) -> list[tuple[str, Any]]:
        reader = csv.DictReader(text.splitlines())
        return [(f"Line {number}", record) for number, record in enumerate(reader, start=2)]  # 1 is the header


class _DcaseFormat(EventFormat):
    suffix = ".tsv"
    describe = ".tsv (DCASE)"
    holds_starts = False
    needs = DCASE_COLUMNS

    def open(self, path: Path, columns: Sequence[str], *, atomic: bool = True) -> EventWriter:
        # The layout is fixed whatever the columns; the row must name its audio ("filename") and be finished.
        def render(row: Row) -> str:
            if row["offset_s"] is None:
                raise ValueError(f"a DCASE row needs a finished event, got {row}")
            fields = [_DCASE_FIELDS[name] for name in DCASE_COLUMNS]
            return _delimited([field_text(field, row[field]) for field in fields], "\t")

        return _LineWriter(path, render, header=DCASE_COLUMNS, delimiter="\t")

    def parse(self, text: str) -> list[tuple[str, Any]]:
        reader = csv.DictReader(text.splitlines(), delimiter="\t")
        return [
            (f"Line {number}", {_DCASE_FIELDS.get(name, name): value for name, value in record.items()})
            for number, record in enumerate(reader, start=2)
        ]


class _JsonLinesFormat(EventFormat):
    suffix = ".jsonl"
    describe = ".jsonl"

    def open(self, path: Path, columns: Sequence[str], *, atomic: bool = True) -> EventWriter:
        def render(row: Row) -> str:
            return json.dumps({name: row[name] for name in columns}, ensure_ascii=False) + "\n"

        return _LineWriter(path, render)

    def parse(self, text: str) -> list[tuple[str, Any]]:
        return [
            (f"Line {number}", _json_or_none(line))
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]


class _JsonListFormat(EventFormat):
    suffix = ".json"
    describe = ".json"

    def open(self, path: Path, columns: Sequence[str], *, atomic: bool = True) -> EventWriter:
        return _JsonListWriter(path, columns, atomic=atomic)

    def parse(self, text: str) -> list[tuple[str, Any]]:
        records = _json_or_none(text)
        if not isinstance(records, list):
            return [("The whole file (not a JSON list)", None)]
        return [(f"Entry {number}", record) for number, record in enumerate(records, start=1)]


def _cannot_read(path: Path, err: Exception) -> SnapkitError:
    return SnapkitError(f"Cannot read the existing event file {path} ({err}); choose another file.")


def _delimited(cells: list[str], delimiter: str) -> str:
    # The csv module quotes a field only if it holds the delimiter, a newline or a quote, which readers undo.
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


# The registry: adding a format is one class and one line here.
EVENT_FORMATS: dict[str, EventFormat] = {
    fmt.suffix: fmt for fmt in (_CsvFormat(), _DcaseFormat(), _JsonLinesFormat(), _JsonListFormat())
}


def _formats_text() -> str:
    names = [fmt.describe for fmt in EVENT_FORMATS.values()]
    return ", ".join(names[:-1]) + f" or {names[-1]}"


# ".csv, .tsv (DCASE), .jsonl or .json": for help texts and the error about an unknown extension.
FORMATS_TEXT = _formats_text()


def event_format(path: Path) -> EventFormat:
    """The format of the event file ``path``, by its extension; SnapkitError for an unknown one or a folder."""
    path = Path(path)
    fmt = EVENT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SnapkitError(
            f"{path} is not an event file name (extension '{path.suffix or 'none'}'); use {FORMATS_TEXT}."
        )
    if path.is_dir():
        raise SnapkitError(f"{path} is a folder; give an event file name such as {path / ('events' + fmt.suffix)}.")
    return fmt


def lock_event_file(path: str | Path) -> FileLock:
    """Claim ``path`` as the event file this process writes, for as long as the returned lock is held.

    Two writers of one event file would interleave their lines (and a .json list or ``detect``'s event list would
    lose the other's events), so a second ``listen --events`` or ``detect --events`` on the same file is refused.
    Raises SnapkitError, one sentence naming the file, when another snapkit holds it or its folder cannot be
    written. Release with ``lock.release()``.
    """
    path = Path(path)
    lock = FileLock(path)
    lock.acquire(
        busy=lambda pid: (
            f"{path} is already being written by another snapkit (process {pid}); stop that one first, or choose "
            "another --events file."
        ),
        unwritable=lambda err: (
            f"Cannot write the event file {path} ({err.strerror or err}): {disk_advice(err)}, or choose another "
            "--events file."
        ),
    )
    return lock


def write_events(path: str | Path, rows: Sequence[tuple[str, Event]]) -> Path:
    """Write ``rows`` of ``(filename, finished event)`` to ``path`` in the format its extension names, as rows of
    ``LIST_FIELDS`` (the DCASE layout for .tsv).

    The file is written whole or not at all (a hidden temporary file beside it, then ``os.replace``), so an
    interrupted ``snapkit detect`` never leaves half an event list. An existing file is replaced: event lists are
    derived data that a re-run reproduces, unlike recordings, which snapkit never overwrites. It takes no lock: the
    caller holds :func:`lock_event_file` for as long as it owns the file (``snapkit detect`` does, start to end).

    Raises:
        SnapkitError: the extension is none of ``EVENT_FORMATS``, or the file cannot be written.
        ValueError: an event has no offset (it is still going on).
    """
    path = Path(path)
    fmt = event_format(path)
    records: list[Row] = []
    for filename, event in rows:  # refuse an unfinished event before anything is written
        if event.offset_s is None:
            raise ValueError(f"Event {event} has no offset; write only finished events ('end' updates).")
        records.append({"filename": filename, **event.to_dict()})
    with replace_atomically(path) as tmp:
        writer = fmt.open(tmp, LIST_FIELDS, atomic=False)
        try:
            writer.write(records)
        finally:
            writer.close()
    return path


def read_events(path: str | Path) -> list[tuple[str, Event]]:
    """Read an event file of any ``EVENT_FORMATS`` (``snapkit detect``'s or ``snapkit listen``'s, or a DCASE
    ground-truth TSV) as ``(filename, finished event)``.

    Start updates of a listen log are skipped (their end carries the event); the filename is "" where the file
    names none. Scores missing from the file (DCASE TSV) are NaN. DCASE rows without a label (a file with no events)
    are skipped.

    Raises:
        SnapkitError: unknown extension, unreadable file, or a record that is not an event.
    """
    path = Path(path)
    fmt = event_format(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SnapkitError(f"Could not read the event file {path} ({err}); check the path.") from None
    rows: list[tuple[str, Event]] = []
    for where, record in fmt.parse(text):
        try:
            if record.get("kind") == "start" or not record.get("label"):
                continue
            event = Event(
                label=str(record["label"]),
                onset_s=float(record["onset_s"]),
                offset_s=float(record["offset_s"]),
                peak_score=_score(record.get("peak_score")),
                mean_score=_score(record.get("mean_score")),
            )
            rows.append((str(record.get("filename") or ""), event))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise SnapkitError(
                f"{where} of {path} is not an event (it needs {', '.join(fmt.needs)}); fix or remove it."
            ) from None
    return rows


def _score(value: Any) -> float:
    return math.nan if value is None or value == "" else float(value)
