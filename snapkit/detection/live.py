"""Listening live: microphone blocks in, events out to logs, clips and notifiers, a status for the view.

Three kinds of threads, each with one job, so nothing slow ever sits in front of the audio:

* the **audio callback** (PortAudio's thread, inside ``MicrophoneSource``) only copies each block onto a bounded
  queue;
* the **inference thread** pulls blocks from the source, pushes them into the ``Detector`` (the only thread that
  touches it), updates the status board, and hands each block with the updates it produced to the sink thread
  through an unbounded queue (its items are small and few; blocking or dropping there would stall detection or lose
  log lines);
* the **sink thread** feeds the clip saver (an explicit audio tap, ``run_live(clip_saver=...)``), writes the
  event log, and submits notifications. Notifiers deliver on their own threads from bounded queues, so a hanging
  webhook delays neither the log nor detection;
* the **main thread** (the caller of ``run_live``) only renders the status every ``status_interval_s`` and turns
  Ctrl-C into a clean stop.

Audio the input lost (a PortAudio overrun, a full queue, a device that went away: ``Block.lost_before_n``) still
moves the stream's clock, so onsets after it are not early by the lost time: a short loss (up to
``FILL_LOST_MAX_S``) is filled with silence and pushed like audio, which keeps the model's context and an event
going on across it; a longer one closes open events and restarts the detector after the gap (``Detector.skip``),
rather than running the model over silence. The clip saver's stream moves on by the same amount.

On Ctrl-C, ``stop_event``, the end of ``duration_s`` or of the source, the detector is flushed (an open event is
closed and its "end" written), the threads are joined, the source is closed, then the sinks and notifiers.
Every wait is a blocking queue get or event wait with a timeout; nothing spins.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from snapkit.audio.levels import FLOOR_DBFS, peak_dbfs
from snapkit.audio.sources import Block, timed_blocks
from snapkit.detection.events import EventUpdate, wall_clock
from snapkit.detection.notify import Notifier, NotifierStats
from snapkit.detection.sinks import ClipSaver, Sink, print_warning

DEFAULT_STATUS_INTERVAL_S = 0.1
DEFAULT_RECENT_EVENTS = 8
# How often the sink thread wakes to check that the inference thread is still alive (seconds).
_SINK_POLL_S = 0.5
# Lost input up to this long is filled with silence and pushed; a longer loss restarts the detector after it (s).
FILL_LOST_MAX_S = 2.0


class DetectorLike(Protocol):
    """What the runner needs of ``snapkit.detection.detector.Detector``."""

    sample_rate_hz: int
    labels: tuple[str, ...]

    def push(self, chunk: np.ndarray) -> list[EventUpdate]: ...

    def flush(self) -> list[EventUpdate]: ...

    def skip(self, samples: int) -> list[EventUpdate]: ...

    @property
    def latest_probabilities(self) -> dict[str, float]: ...


class SourceLike(Protocol):
    """A started audio source: ``MicrophoneSource``/``ReconnectingMicrophone``, or ``ArraySource``/``FileSource`` in
    tests. ``timed_blocks()`` is used when present (see ``snapkit.audio.sources.timed_blocks``); ``overflows``,
    ``dropped``, ``lost_s`` and ``reconnects`` are read and ``interrupt()`` is called on shutdown when present."""

    sample_rate_hz: int

    def blocks(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RecentEvent:
    """An event for the live view. ``offset_*`` is None while it is still going on."""

    event_id: int
    label: str
    onset_s: float
    offset_s: float | None
    peak_score: float
    onset_time: datetime
    offset_time: datetime | None


@dataclass(frozen=True)
class LiveStatus:
    """A snapshot for the view, taken on the main thread.

    ``level_dbfs`` is the peak level of the newest block; ``probabilities`` the newest per-class probability;
    ``recent_events`` the last few events, oldest first; ``overflows``/``dropped`` the source's counts (blocks the
    sound card overran / the queue threw away); ``notifiers`` each notifier's counts.
    """

    position_s: float
    level_dbfs: float
    probabilities: dict[str, float]
    recent_events: tuple[RecentEvent, ...]
    events: int
    overflows: int
    dropped: int
    notifiers: tuple[NotifierStats, ...]
    sink_failures: int
    clips_saved: int
    running: bool
    lost_s: float = 0.0
    reconnects: int = 0


@dataclass(frozen=True)
class LiveSummary:
    """How a listening session went. ``seconds`` is stream audio consumed; ``events`` counts finished events;
    ``interrupted`` is True when Ctrl-C or ``stop_event`` ended it (not the duration or the end of the source);
    ``lost_s`` the stream time the input lost (counted in ``seconds``), ``reconnects`` how often the device came back.
    """

    events: int
    seconds: float
    overflows: int
    dropped: int
    interrupted: bool
    clips_saved: int = 0
    sink_failures: int = 0
    notifiers: tuple[NotifierStats, ...] = field(default_factory=tuple)
    lost_s: float = 0.0
    reconnects: int = 0

    @property
    def notification_failures(self) -> int:
        return sum(stats.failed for stats in self.notifiers)


@dataclass(frozen=True)
class _Tick:
    """What the inference thread hands the sink thread: a block (None after the flush) and its updates;
    ``skipped_n`` stream samples lost before them that the detector skipped (not filled with silence)."""

    block: np.ndarray | None
    updates: tuple[EventUpdate, ...]
    skipped_n: int = 0


_STOP = object()


class _StatusBoard:
    """What the inference thread knows, for the main thread to read. Guarded by one lock."""

    def __init__(self, labels: Sequence[str], wall_time: datetime, recent: int) -> None:
        self._lock = threading.Lock()
        self._wall_time = wall_time
        self.position_s = 0.0
        self.level_dbfs = FLOOR_DBFS
        self.probabilities: dict[str, float] = dict.fromkeys(labels, 0.0)
        self.events = 0
        self._recent: collections.OrderedDict[int, RecentEvent] = collections.OrderedDict()
        self._recent_max = recent

    def on_block(self, position_s: float, level_dbfs: float, probabilities: dict[str, float]) -> None:
        with self._lock:
            self.position_s = position_s
            self.level_dbfs = level_dbfs
            self.probabilities = dict(probabilities)

    def on_updates(self, updates: Sequence[EventUpdate]) -> None:
        if not updates:
            return
        with self._lock:
            for update in updates:
                event = update.event
                self._recent[update.event_id] = RecentEvent(
                    update.event_id,
                    event.label,
                    event.onset_s,
                    event.offset_s,
                    event.peak_score,
                    wall_clock(self._wall_time, event.onset_s),
                    None if event.offset_s is None else wall_clock(self._wall_time, event.offset_s),
                )
                if update.kind == "end":
                    self.events += 1
                while len(self._recent) > self._recent_max:
                    self._recent.popitem(last=False)

    def read(self) -> tuple[float, float, dict[str, float], tuple[RecentEvent, ...], int]:
        with self._lock:
            return self.position_s, self.level_dbfs, dict(self.probabilities), tuple(self._recent.values()), self.events


class _LiveRun:
    """One listening session; see the module docstring. Use ``run_live``."""

    def __init__(
        self,
        detector: DetectorLike,
        source: SourceLike,
        sinks: Sequence[Sink],
        notifiers: Sequence[Notifier],
        *,
        clip_saver: ClipSaver | None,
        duration_s: float | None,
        stop_event: threading.Event | None,
        on_status: Callable[[LiveStatus], None] | None,
        status_interval_s: float,
        wall_time: datetime,
        recent_events: int,
    ) -> None:
        if int(detector.sample_rate_hz) != int(source.sample_rate_hz):
            raise ValueError(
                f"the detector expects {detector.sample_rate_hz} Hz but the source gives {source.sample_rate_hz} Hz; "
                "build the Detector with sample_rate_hz=source.sample_rate_hz"
            )
        self.detector = detector
        self.source = source
        self.sinks = tuple(sinks)
        self.notifiers = tuple(notifiers)
        # The clip saver taps the audio as well as the updates, and holds back an event's notification until its
        # clip is written, so it is passed on its own rather than found among the sinks.
        self.saver = clip_saver
        self.rate_hz = int(source.sample_rate_hz)
        self.max_samples = None if duration_s is None else max(0, round(duration_s * self.rate_hz))
        self.external_stop = stop_event
        self.on_status = on_status
        self.status_interval_s = status_interval_s
        self.wall_time = wall_time
        self.board = _StatusBoard(detector.labels, wall_time, recent_events)
        self.stop = threading.Event()
        self.inference_done = threading.Event()
        self.sink_queue: queue.Queue[object] = queue.Queue()
        # Written by the inference thread before it signals inference_done; read by the main thread after joining.
        self.consumed_samples = 0
        self.lost_samples = 0
        self.stopped_on_request = False  # by stop_event or Ctrl-C, rather than the duration or the source's end
        self.error: BaseException | None = None
        self._dispatch_failures = 0
        self._dispatch_lock = threading.Lock()  # the count is written by the sink thread, read by the main thread
        self._inference = threading.Thread(target=self._infer, name="snapkit-inference", daemon=True)
        self._dispatcher = threading.Thread(target=self._dispatch, name="snapkit-sinks", daemon=True)

    # ------------------------------------------------------------------ main thread

    def run(self) -> LiveSummary:
        for notifier in self.notifiers:
            notifier.start()
        interrupted = False
        try:
            # Started inside the try: a Ctrl-C between the two starts still gets the clean shutdown below.
            self._inference.start()
            self._dispatcher.start()
            while not self.inference_done.wait(self.status_interval_s):
                if self.external_stop is not None and self.external_stop.is_set():
                    # Also seen here, not only between blocks: a source waiting for its device delivers none.
                    self.stopped_on_request = True
                    break
                if self.on_status is not None:
                    self.on_status(self.snapshot(running=True))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self._shutdown()
        if self.on_status is not None:
            self.on_status(self.snapshot(running=False))
        if self.error is not None:
            raise self.error
        _, _, _, _, events = self.board.read()
        return LiveSummary(
            events=events,
            seconds=self.consumed_samples / self.rate_hz,
            overflows=int(getattr(self.source, "overflows", 0)),
            dropped=int(getattr(self.source, "dropped", 0)),
            interrupted=interrupted or self.stopped_on_request,
            clips_saved=self._clips_saved(),
            sink_failures=self._sink_failures(),
            notifiers=tuple(notifier.stats() for notifier in self.notifiers),
            lost_s=self.lost_samples / self.rate_hz,
            reconnects=int(getattr(self.source, "reconnects", 0)),
        )

    def _shutdown(self) -> None:
        self.stop.set()
        interrupt = getattr(self.source, "interrupt", None)
        if callable(interrupt):  # a source waiting for its device to come back stops waiting
            interrupt()
        # The inference thread stops at the next block (a live source delivers one every few tens of ms, and gives
        # up after its own timeout when the device is gone), flushes the detector and tells the sink thread to end.
        if self._inference.ident is not None:  # not started if Ctrl-C came first
            self._inference.join()
        self.source.close()  # release the device as soon as no one reads it
        if self._dispatcher.ident is not None:
            self._dispatcher.join()
        for notifier in self.notifiers:
            notifier.close()

    def _sink_failures(self) -> int:
        with self._dispatch_lock:
            dispatch = self._dispatch_failures
        return sum(sink.failures for sink in self._update_sinks()) + dispatch

    def _clips_saved(self) -> int:
        return 0 if self.saver is None else self.saver.saved_count

    def _update_sinks(self) -> tuple[Sink, ...]:
        """Everything that takes the updates: the clip saver first (an "end" starts its clip), then the sinks."""
        return self.sinks if self.saver is None else (self.saver, *self.sinks)

    def snapshot(self, *, running: bool) -> LiveStatus:
        position_s, level, probabilities, recent, events = self.board.read()
        return LiveStatus(
            position_s=position_s,
            level_dbfs=level,
            probabilities=probabilities,
            recent_events=recent,
            events=events,
            overflows=int(getattr(self.source, "overflows", 0)),
            dropped=int(getattr(self.source, "dropped", 0)),
            notifiers=tuple(notifier.stats() for notifier in self.notifiers),
            sink_failures=self._sink_failures(),
            clips_saved=self._clips_saved(),
            running=running,
            lost_s=self.lost_samples / self.rate_hz,
            reconnects=int(getattr(self.source, "reconnects", 0)),
        )

    # ------------------------------------------------------------------ inference thread

    def _stop_requested(self) -> bool:
        return self.stop.is_set() or (self.external_stop is not None and self.external_stop.is_set())

    def _infer(self) -> None:
        blocks = timed_blocks(self.source)
        try:
            if self.max_samples != 0:
                for item in blocks:
                    if self._stop_requested():
                        self.stopped_on_request = True
                        break
                    self._take(item)
                    if self.max_samples is not None and self.consumed_samples >= self.max_samples:
                        break
        except Exception as err:  # handed to the main thread, which re-raises it after cleaning up
            self.error = err
        finally:
            close = getattr(blocks, "close", None)
            if callable(close):
                close()
            try:
                updates = self.detector.flush()
                self.board.on_updates(updates)
                self.sink_queue.put(_Tick(None, tuple(updates)))
            except Exception as err:  # as above; the first error is the one worth reporting
                self.error = self.error or err
            self.sink_queue.put(_STOP)
            self.inference_done.set()

    def _take(self, item: Block) -> None:
        """One block from the source, after the stream time lost before it."""
        lost = self._within_duration(int(item.lost_before_n))
        if lost:
            self.lost_samples += lost
            if lost <= FILL_LOST_MAX_S * self.rate_hz:
                self._push(np.zeros(lost, np.float32))
            else:
                updates = self.detector.skip(lost)
                self.consumed_samples += lost
                self.board.on_updates(updates)
                self.sink_queue.put(_Tick(None, tuple(updates), skipped_n=lost))
        block = np.asarray(item.samples, dtype=np.float32).reshape(-1)
        block = block[: self._within_duration(len(block))]
        if len(block):
            self._push(block)

    def _within_duration(self, samples: int) -> int:
        """How many of the next ``samples`` stream samples fit before ``duration_s`` (which counts stream time:
        the last block is cut so exactly that much is consumed)."""
        if self.max_samples is None:
            return samples
        return max(0, min(samples, self.max_samples - self.consumed_samples))

    def _push(self, block: np.ndarray) -> None:
        updates = self.detector.push(block)
        self.consumed_samples += len(block)
        self.board.on_block(self.consumed_samples / self.rate_hz, peak_dbfs(block), self.detector.latest_probabilities)
        self.board.on_updates(updates)
        self.sink_queue.put(_Tick(block, tuple(updates)))

    # ------------------------------------------------------------------ sink thread

    def _dispatch(self) -> None:
        # End updates whose notification waits for the clip, so the message can carry the clip's path.
        awaiting_clip: dict[int, EventUpdate] = {}
        while True:
            try:
                item = self.sink_queue.get(timeout=_SINK_POLL_S)
            except queue.Empty:
                if self._inference.is_alive() or not self.sink_queue.empty():
                    continue
                break  # cannot happen (the inference thread always sends _STOP); never hang on it anyway
            if item is _STOP:
                break
            assert isinstance(item, _Tick)
            self._guarded(self._handle_tick, item, awaiting_clip)
        self._guarded(self._finish, awaiting_clip)

    def _guarded(self, action: Callable[..., None], *args: object) -> None:
        try:
            action(*args)
        except Exception as err:  # the sink thread must outlive any one bad update
            with self._dispatch_lock:
                self._dispatch_failures += 1
            print_warning(f"an event could not be passed to the outputs: {type(err).__name__}: {err}")

    def _handle_tick(self, tick: _Tick, awaiting_clip: dict[int, EventUpdate]) -> None:
        if tick.skipped_n and self.saver is not None:
            self.saver.skip(tick.skipped_n)
        if tick.block is not None and self.saver is not None:
            self.saver.feed(tick.block)
        for update in tick.updates:
            for sink in self._update_sinks():
                sink.handle(update, self.wall_time)
            self._notify(update, awaiting_clip)
        self._notify_saved(awaiting_clip)

    def _notify(self, update: EventUpdate, awaiting_clip: dict[int, EventUpdate]) -> None:
        # An end waits for its clip (so the message can carry its path) only for the notifiers that want the path.
        holding = update.kind == "end" and self.saver is not None
        for notifier in self.notifiers:
            if not notifier.wants(update):
                continue
            if holding and notifier.waits_for_clip:
                awaiting_clip[update.event_id] = update
            else:
                notifier.notify(update, self.wall_time)

    def _notify_saved(self, awaiting_clip: dict[int, EventUpdate]) -> None:
        if self.saver is None:
            return
        for saved in self.saver.pop_completed():
            update = awaiting_clip.pop(saved.update.event_id, None)
            if update is not None:
                self._submit_end(update, saved.path)

    def _submit_end(self, update: EventUpdate, clip_path: Path | None) -> None:
        for notifier in self.notifiers:
            if notifier.wants(update) and notifier.waits_for_clip:
                notifier.notify(update, self.wall_time, clip_path)

    def _finish(self, awaiting_clip: dict[int, EventUpdate]) -> None:
        if self.saver is not None:
            self.saver.finish()
        self._notify_saved(awaiting_clip)
        for update in awaiting_clip.values():  # a clip that never completed: notify without it
            self._submit_end(update, None)
        awaiting_clip.clear()
        for sink in self._update_sinks():
            sink.close()


def run_live(
    detector: DetectorLike,
    source: SourceLike,
    sinks: Sequence[Sink] = (),
    notifiers: Sequence[Notifier] = (),
    *,
    clip_saver: ClipSaver | None = None,
    duration_s: float | None = None,
    stop_event: threading.Event | None = None,
    on_status: Callable[[LiveStatus], None] | None = None,
    status_interval_s: float = DEFAULT_STATUS_INTERVAL_S,
    wall_time: datetime | None = None,
    recent_events: int = DEFAULT_RECENT_EVENTS,
) -> LiveSummary:
    """Run ``detector`` over ``source`` until ``duration_s`` stream seconds, the source's end, ``stop_event`` or
    Ctrl-C, sending every update to ``sinks`` and notifications to ``notifiers``; returns the summary.
    ``clip_saver`` gets every block of audio and every update, and saves each finished event's clip; a notification
    of an event's end then waits for its clip and carries its path.

    ``source`` must already be started (``with MicrophoneSource(...) as mic``) and give blocks at the detector's
    ``sample_rate_hz``. ``on_status`` is called on the calling thread every ``status_interval_s`` seconds, and once
    more at the end. ``wall_time`` is the wall-clock time of stream second 0 (default: now). The source, sinks and
    notifiers are closed on return. An error in the source or detector (e.g. the device disappears) is raised
    after everything already detected has been written.
    """
    run = _LiveRun(
        detector,
        source,
        sinks,
        notifiers,
        clip_saver=clip_saver,
        duration_s=duration_s,
        stop_event=stop_event,
        on_status=on_status,
        status_interval_s=status_interval_s,
        wall_time=wall_time or datetime.now().astimezone(),
        recent_events=recent_events,
    )
    return run.run()
