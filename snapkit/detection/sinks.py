"""Where detected events go while listening: an event log (any event-file format), saved WAV clips, plain lines.

Every sink has ``handle(update, wall_time)`` and ``close()`` and never raises into its caller: a failure (disk full,
folder removed) is printed as a warning and counted in ``failures``, and listening goes on. ``wall_time`` is the
wall-clock time of stream second 0 (when listening began); an event's wall-clock onset is ``wall_time + onset_s``.

All sinks run on the live runner's sink thread (``snapkit.detection.live``), never on the audio or inference thread,
so a slow disk delays the log, not detection.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from snapkit.audio.io import write_wav
from snapkit.detection.events import UPDATE_FIELDS, EventUpdate, iso_time, wall_clock
from snapkit.detection.outputs import EventWriter, event_format, lock_event_file
from snapkit.errors import SnapkitError
from snapkit.files import check_writable

Warn = Callable[[str], None]

# A line of the live log: the update (kind, event_id), the event's record, and when the detector knew it.
LOG_FIELDS = UPDATE_FIELDS
# How long an event may last and still be saved whole: bounds the clip saver's ring buffer (seconds).
DEFAULT_MAX_CLIP_EVENT_S = 30.0
# The detector reports an end some time after the offset (lookahead, minimum gap, the model window): the ring buffer
# holds this much more so the pre-roll of a long event is still there when its end arrives (seconds).
_REPORT_LATENCY_SLACK_S = 10.0
# A file has no wall-clock time of its stream second 0; its clips are named by file and offset instead (file_time_name).
FILE_WALL_TIME = datetime.fromtimestamp(0, timezone.utc)
# A clip's name is taken: try NAME-2, NAME-3, ... up to this many before giving up (never overwrite).
_MAX_NAME_TRIES = 1000

# How a clip is named: (the finished event's update, wall-clock time of stream second 0) -> file stem, no extension.
ClipNamer = Callable[[EventUpdate, datetime], str]


def wall_time_name(update: EventUpdate, wall_time: datetime) -> str:
    """``<label>-<wall time of onset>-<event_id>``: the name of a live clip (``listen --save-clips``)."""
    stamp = wall_clock(wall_time, update.event.onset_s).strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return f"{update.event.label}-{stamp}-{update.event_id}"


def file_time_name(source: Path) -> ClipNamer:
    """Names for clips cut from the file ``source``: ``<file stem>-<onset, seconds into the file>s-<label>``,
    e.g. ``kitchen-0123.45s-doorbell``, so a clip says where it came from and sorts by time within its file."""

    def name(update: EventUpdate, wall_time: datetime) -> str:
        return f"{source.stem}-{update.event.onset_s:07.2f}s-{update.event.label}"

    return name


@functools.lru_cache(maxsize=1)
def _warning_console() -> Any:
    from rich.console import Console

    # Created on first use, not at import; stderr so warnings never mix into the plain event lines on stdout.
    return Console(stderr=True)


def print_warning(message: str) -> None:
    """The default way sinks and notifiers report a failure: one yellow line on stderr, and a warning of the
    ``snapkit`` logger (which ``listen --log`` writes to its file)."""
    logging.getLogger("snapkit").warning(message)
    _warning_console().print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True, markup=True)


class Sink:
    """Base of the event sinks: ``handle`` and ``close`` that never raise, with a ``failures`` count.

    Subclasses implement ``_handle`` and ``_close``; anything they raise becomes a warning, because one broken
    output must not end a listening session (and the other outputs) hours in.
    """

    name = "sink"

    def __init__(self, on_warning: Warn | None = None) -> None:
        self._warn = on_warning or print_warning
        self._failures = 0
        # failures is written on the sink thread and read by the status view on the main thread.
        self._count_lock = threading.Lock()

    @property
    def failures(self) -> int:
        """Updates (or closes) this sink failed to handle so far."""
        with self._count_lock:
            return self._failures

    def handle(self, update: EventUpdate, wall_time: datetime) -> None:
        """Record ``update``; ``wall_time`` is the wall-clock time of stream second 0."""
        try:
            self._handle(update, wall_time)
        except Exception as err:  # a sink never raises into the runner; see the class docstring
            self._fail(f"{self.name} could not record event {update.event_id} ({update.event.label}): {err}")

    def close(self) -> None:
        """Finish and release the output; safe to call twice."""
        try:
            self._close()
        except Exception as err:  # closing must not hide the session's summary
            self._fail(f"{self.name} could not be closed cleanly: {err}")

    def _fail(self, message: str) -> None:
        with self._count_lock:
            self._failures += 1
        self._warn(message)

    def _handle(self, update: EventUpdate, wall_time: datetime) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass


class EventLog(Sink):
    """Appends every update (start and end) to an event file of any format in ``EVENT_FORMATS``, chosen by its
    extension, as a row of ``LOG_FIELDS`` (``EventUpdate.to_dict``).

    An existing file is continued, never truncated (and must have the same columns). Each write is on disk before
    the next update is handled (lines flushed and fsynced; a .json list rewritten whole through a temporary file),
    so a crash or Ctrl-C loses nothing already reported and never leaves a broken file. A .tsv (the DCASE layout)
    holds finished events only; a live session has no audio file, so its rows name the session by the wall-clock
    time of its stream second 0, which keeps the stream-second onsets of sessions appended to one file apart.

    One writer per file: the log holds :func:`~snapkit.detection.outputs.lock_event_file` from opening to closing,
    so a second snapkit appending to the same file is refused (SnapkitError naming it) instead of mixing its lines in.
    """

    name = "event log"

    def __init__(self, path: str | Path, on_warning: Warn | None = None) -> None:
        super().__init__(on_warning)
        self.path = Path(path)
        self.format = event_format(self.path)
        self._lock = lock_event_file(self.path)
        try:
            self._file: EventWriter | None = self.format.open(self.path, LOG_FIELDS)
        except BaseException:
            self._lock.release()
            raise
        self.lines_written = 0

    def _handle(self, update: EventUpdate, wall_time: datetime) -> None:
        if update.kind == "start" and not self.format.holds_starts:
            return
        if self._file is None:
            raise RuntimeError("the log is closed")
        self._file.write([{"filename": iso_time(wall_time), **update.to_dict(wall_time)}])
        self.lines_written += 1

    def _close(self) -> None:
        try:
            if self._file is not None:
                writer, self._file = self._file, None
                writer.close()
        finally:
            self._lock.release()


@dataclass(frozen=True)
class SavedClip:
    """The outcome of saving an event's clip: ``path`` is None when it could not be written."""

    update: EventUpdate
    path: Path | None


@dataclass(frozen=True)
class _PendingClip:
    update: EventUpdate
    wall_time: datetime
    start_sample: int
    end_sample: int


class _SampleRing:
    """The newest ``capacity`` samples of a stream, addressed by absolute sample index. One thread only."""

    def __init__(self, capacity: int) -> None:
        self._buffer = np.zeros(max(1, capacity), np.float32)
        self.total = 0  # samples ever written: the absolute index one past the newest sample

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.total - len(self._buffer))

    def write(self, block: np.ndarray) -> None:
        size = len(self._buffer)
        tail = block[-size:]  # a block longer than the ring: only its newest samples can be held
        start = (self.total + len(block) - len(tail)) % size
        first = min(len(tail), size - start)
        self._buffer[start : start + first] = tail[:first]
        self._buffer[: len(tail) - first] = tail[first:]
        self.total += len(block)

    def skip(self, samples: int) -> None:
        """The stream moved on ``samples`` with no audio (lost input): they read as silence."""
        size = len(self._buffer)
        if samples >= size:
            self._buffer[:] = 0.0
            self.total += samples
        elif samples > 0:
            self.write(np.zeros(samples, np.float32))

    def read(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` clamped to what is held -> ``[samples]`` (a copy)."""
        start, end = max(start, self.oldest), min(end, self.total)
        if end <= start:
            return np.zeros(0, np.float32)
        size = len(self._buffer)
        a, b = start % size, end % size
        if a < b:
            return self._buffer[a:b].copy()
        return np.concatenate([self._buffer[a:], self._buffer[:b]])


class ClipSaver(Sink):
    """Saves each finished event's audio, with ``pre_roll_s`` before the onset and ``post_roll_s`` after the
    offset, as ``DIRECTORY/<name>.wav`` (written atomically, never overwriting: a taken name gets ``-2``, ``-3``...).

    ``clip_name`` makes the file stem: by default :func:`wall_time_name` (``<label>-<wall time of onset>-<event_id>``,
    for the microphone); :func:`file_time_name` for a file (``<file stem>-<onset>s-<label>``). With ``window_s`` the
    clip is instead ``window_s`` seconds centred on the event (the whole event if it is longer; shifted to start at
    0 near the stream's start), the model's own input length, which is what ``snapkit mine`` saves as training data.

    Design: the saver keeps its own ring buffer of the stream at the source's rate, fed with every block by
    ``feed()`` on the same thread and in the same order as the updates. An "end" update arrives before its
    post-roll has been heard, so it becomes a pending save, completed by the ``feed()`` that brings the audio up to
    ``offset_s + post_roll_s`` (``finish()`` saves what there is when the stream stops). One thread owns all of this
    state, so it needs no lock and never reaches into the detector from another thread; it also keeps the
    microphone's own rate and does not depend on how much history the detector holds. The cost is a second copy of
    about ``pre_roll_s + max_event_s + post_roll_s + 10`` seconds of audio. An event longer than ``max_event_s`` is
    saved without its beginning (with a warning).

    Completed saves are collected for ``pop_completed()`` so the caller can notify with the clip's path.
    """

    name = "clip saver"

    def __init__(
        self,
        directory: str | Path,
        pre_roll_s: float = 1.0,
        post_roll_s: float = 1.0,
        *,
        sample_rate_hz: int,
        max_event_s: float = DEFAULT_MAX_CLIP_EVENT_S,
        clip_name: ClipNamer = wall_time_name,
        window_s: float | None = None,
        on_warning: Warn | None = None,
        keep_paths: int | None = None,
    ) -> None:
        super().__init__(on_warning)
        if pre_roll_s < 0 or post_roll_s < 0:
            raise SnapkitError("--pre-roll-s and --post-roll-s must be zero or more seconds.")
        if window_s is not None and window_s <= 0:
            raise SnapkitError(f"The clip window must be a positive number of seconds, not {window_s}.")
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise SnapkitError(f"{self.directory} is a file, not a folder; give a folder to save clips in.")
        # Really written once now (a read-only or full disk), so a bad folder is refused before any audio is heard.
        check_writable(self.directory, what="the clip folder", instead="choose another folder")
        self.pre_roll_s = float(pre_roll_s)
        self.post_roll_s = float(post_roll_s)
        self.sample_rate_hz = int(sample_rate_hz)
        self.window_s = window_s
        self._clip_name = clip_name
        capacity_s = pre_roll_s + max_event_s + post_roll_s + (window_s or 0.0) + _REPORT_LATENCY_SLACK_S
        self._ring = _SampleRing(round(capacity_s * self.sample_rate_hz))
        self._pending: list[_PendingClip] = []
        self._completed: list[SavedClip] = []
        # The clips' paths, the newest ``keep_paths`` of them when given: a listener left running for months must
        # not keep every path it ever wrote (about 1 MB a day at 2000 clips, measured by day_on_one_core.py).
        self.saved: collections.deque[Path] = collections.deque(maxlen=keep_paths)
        self._saved_total = 0

    @property
    def saved_count(self) -> int:
        """Clips written so far (safe to read from another thread, e.g. the status view)."""
        with self._count_lock:
            return self._saved_total

    @property
    def pending(self) -> int:
        """Saves waiting for their post-roll."""
        return len(self._pending)

    @property
    def position_s(self) -> float:
        """Stream seconds fed so far."""
        return self._ring.total / self.sample_rate_hz

    def take(self, block: np.ndarray, updates: list[EventUpdate], wall_time: datetime = FILE_WALL_TIME) -> None:
        """``feed(block)``, then ``handle`` each of the ``updates`` the detector returned for it: the order the live
        runner keeps, for callers that push a file through the detector themselves (``detect``, ``mine``)."""
        self.feed(block)
        for update in updates:
            self.handle(update, wall_time)

    def feed(self, block: np.ndarray) -> None:
        """Append the next stream block ``[samples]`` and complete the saves whose post-roll it brings."""
        try:
            self._ring.write(np.asarray(block, dtype=np.float32).reshape(-1))
            self._complete(final=False)
        except Exception as err:  # a sink never raises into the runner
            self._fail(f"clip saver could not take audio: {err}")

    def skip(self, samples: int) -> None:
        """The stream moved on ``samples`` with no audio (the input lost them); saves they complete are made."""
        try:
            self._ring.skip(samples)
            self._complete(final=False)
        except Exception as err:  # a sink never raises into the runner
            self._fail(f"clip saver could not take audio: {err}")

    def _handle(self, update: EventUpdate, wall_time: datetime) -> None:
        if update.kind != "end" or update.event.offset_s is None:
            return
        start, end = self._span(update.event.onset_s, update.event.offset_s)
        self._pending.append(_PendingClip(update, wall_time, start, end))
        self._complete(final=False)

    def _span(self, onset_s: float, offset_s: float) -> tuple[int, int]:
        """Absolute samples ``[start, end)`` of the clip of an event from ``onset_s`` to ``offset_s``."""
        rate = self.sample_rate_hz
        if self.window_s is None:
            return max(0, round((onset_s - self.pre_roll_s) * rate)), round((offset_s + self.post_roll_s) * rate)
        length = round(max(self.window_s, offset_s - onset_s) * rate)
        start = max(0, round((onset_s + offset_s) / 2 * rate) - length // 2)
        return start, start + length

    def finish(self) -> None:
        """The stream has ended: save every pending clip with the post-roll there is."""
        self._complete(final=True)

    def pop_completed(self) -> list[SavedClip]:
        """Saves finished (or failed) since the last call, oldest first."""
        done, self._completed = self._completed, []
        return done

    def _complete(self, *, final: bool) -> None:
        waiting: list[_PendingClip] = []
        for pending in self._pending:
            if final or pending.end_sample <= self._ring.total:
                self._completed.append(SavedClip(pending.update, self._save(pending)))
            else:
                waiting.append(pending)
        self._pending = waiting

    def _save(self, pending: _PendingClip) -> Path | None:
        event = pending.update.event
        if pending.start_sample < self._ring.oldest:
            self._warn(
                f"the clip of event {pending.update.event_id} ({event.label}) lost its first "
                f"{(self._ring.oldest - pending.start_sample) / self.sample_rate_hz:.1f} s (longer than the buffer)."
            )
        audio = self._ring.read(pending.start_sample, pending.end_sample)
        if len(audio) == 0:
            self._fail(f"no audio was left to save for event {pending.update.event_id} ({event.label}).")
            return None
        stem = self._clip_name(pending.update, pending.wall_time)
        for attempt in range(1, _MAX_NAME_TRIES + 1):
            path = self.directory / (f"{stem}.wav" if attempt == 1 else f"{stem}-{attempt}.wav")
            try:
                write_wav(path, audio, self.sample_rate_hz)
            except FileExistsError:
                continue  # an earlier run's clip (detect the same file twice): keep it, take the next name
            except (OSError, ValueError, RuntimeError) as err:
                self._fail(f"could not save the clip {path}: {err}")
                return None
            with self._count_lock:
                self.saved.append(path)
                self._saved_total += 1
            return path
        self._fail(f"could not save the clip of event {pending.update.event_id}: {_MAX_NAME_TRIES} names are taken.")
        return None

    def _close(self) -> None:
        self.finish()


class EventPrinter(Sink):
    """Prints one plain line per finished event, for a pipe, a log file, or above the live view. For example::

    2025-05-01T14:03:07.250+02:00  doorbell  onset 12.250 s  offset 13.100 s  peak 0.97  mean 0.81
    """

    name = "event printer"

    def __init__(self, write: Callable[[str], None] | None = None, on_warning: Warn | None = None) -> None:
        super().__init__(on_warning)
        self._write = write or _print_flushed

    def _handle(self, update: EventUpdate, wall_time: datetime) -> None:
        if update.kind == "end":
            self._write(format_event_line(update, wall_time))


def format_event_line(update: EventUpdate, wall_time: datetime) -> str:
    """The one-line text form of a finished event (see ``EventPrinter``)."""
    event = update.event
    offset = "-" if event.offset_s is None else f"{event.offset_s:.3f} s"
    return (
        f"{iso_time(wall_clock(wall_time, event.onset_s))}  {event.label}  onset {event.onset_s:.3f} s  "
        f"offset {offset}  peak {event.peak_score:.2f}  mean {event.mean_score:.2f}"
    )


def _print_flushed(line: str) -> None:
    # flush: a reader on the other end of a pipe should see each event as it happens, not when a buffer fills.
    print(line, flush=True)
