"""`snapkit listen` machinery: sinks, notifiers and the threaded runner, with a fake detector and fake sources.

No model, no torch, no sound card: the detector here is a few lines of level thresholding, so every event's onset
and offset are known exactly, and the webhook is a local ``http.server`` on 127.0.0.1.
"""

from __future__ import annotations

import csv
import http.server
import json
import shlex
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snapkit.audio.sources import ArraySource
from snapkit.detection.events import Event, EventUpdate
from snapkit.detection.live import LiveStatus, run_live
from snapkit.detection.notify import ExecNotifier, Notification, Notifier, WebhookNotifier
from snapkit.detection.sinks import LOG_FIELDS, ClipSaver, EventLog, EventPrinter
from snapkit.errors import DeviceError, SnapkitError

RATE = 8_000
BLOCK_S = 0.05
WALL = datetime(2025, 5, 1, 14, 3, 7, tzinfo=timezone.utc)


# ---------------------------------------------------------------------------------------------- fakes and helpers


def _fake_bundle() -> types.SimpleNamespace:
    """What the listen command reads of a bundle before the (fake) detector takes over: labels and calibration."""
    from snapkit.models.calibration import ClassCalibration

    calibration = {label: ClassCalibration(*on_off) for label, on_off in FakeDetector.thresholds.items()}
    return types.SimpleNamespace(config=types.SimpleNamespace(labels=FakeDetector.labels), calibration=calibration)


class FakeDetector:
    """Stands in for ``Detector``: a block whose mean is above +0.25 is "knock", below -0.25 is "clap".

    An event starts at the first such block's first sample and ends at the first sample of the next block that is
    not; times are exact, whatever the block size.
    """

    labels = ("knock", "clap")
    thresholds = {"knock": (0.6, 0.4), "clap": (0.5, 0.35)}  # noqa: RUF012 (what Detector.thresholds holds)

    def __init__(self, sample_rate_hz: int = RATE, push_delay_s: float = 0.0) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.push_delay_s = push_delay_s
        self.samples = 0
        self.flushed_at: float | None = None
        self.pushes = 0
        self._open: tuple[int, str, float] | None = None
        self._next_id = 1
        self._latest = dict.fromkeys(self.labels, 0.0)

    def describe(self) -> str:
        return "fake: block means"

    @property
    def position_s(self) -> float:
        return self.samples / self.sample_rate_hz

    @property
    def latest_probabilities(self) -> dict[str, float]:
        return dict(self._latest)

    def push(self, chunk: np.ndarray) -> list[EventUpdate]:
        if self.push_delay_s:
            time.sleep(self.push_delay_s)
        self.pushes += 1
        start_s = self.position_s
        self.samples += len(chunk)
        mean = float(np.mean(chunk)) if len(chunk) else 0.0
        label = "knock" if mean > 0.25 else "clap" if mean < -0.25 else None
        self._latest = {name: float(name == label) for name in self.labels}
        updates: list[EventUpdate] = []
        if self._open is not None and self._open[1] != label:
            updates.append(self._end(start_s))
        if label is not None and self._open is None:
            self._open = (self._next_id, label, start_s)
            self._next_id += 1
            updates.append(EventUpdate("start", self._open[0], Event(label, start_s, None, 0.9, 0.8), self.position_s))
        return updates

    def flush(self) -> list[EventUpdate]:
        self.flushed_at = time.monotonic()
        return [self._end(self.position_s)] if self._open is not None else []

    def skip(self, samples: int) -> list[EventUpdate]:
        """As ``Detector.skip``: what is open ends at the last sample heard, and the clock moves on."""
        updates = [self._end(self.position_s)] if self._open is not None else []
        self.samples += samples
        return updates

    def _end(self, offset_s: float) -> EventUpdate:
        assert self._open is not None
        event_id, label, onset_s = self._open
        self._open = None
        return EventUpdate("end", event_id, Event(label, onset_s, offset_s, 0.95, 0.85), self.position_s)

    def reset(self) -> None:
        self.__init__(self.sample_rate_hz, self.push_delay_s)  # type: ignore[misc]


def planted(segments: list[tuple[float, float]], rate: int = RATE) -> np.ndarray:
    """Concatenated constant segments ``(seconds, value)`` -> ``[samples]``: +0.5 plants a knock, -0.5 a clap."""
    return np.concatenate([np.full(round(seconds * rate), value, np.float32) for seconds, value in segments])


class TrackingSource(ArraySource):
    """An ``ArraySource`` that remembers being closed and reports fixed overflow/dropped counts."""

    def __init__(self, audio: np.ndarray, rate: int = RATE, overflows: int = 0, dropped: int = 0) -> None:
        super().__init__(audio, rate, BLOCK_S)
        self.closed = False
        self.overflows = overflows
        self.dropped = dropped

    def close(self) -> None:
        self.closed = True


class EndlessSource:
    """Like a microphone: a loud block (a knock that never ends) every few milliseconds, until stopped."""

    def __init__(self, rate: int = RATE, fail_after: int | None = None) -> None:
        self.sample_rate_hz = rate
        self.closed = False
        self.overflows = 3
        self.dropped = 1
        self.fail_after = fail_after

    def blocks(self) -> Iterator[np.ndarray]:
        count = 0
        while True:
            if self.fail_after is not None and count >= self.fail_after:
                raise DeviceError("Input device 0 (fake) stopped delivering audio; check that it is still connected.")
            time.sleep(0.002)  # paced like a sound card, so the runner's stop check is what ends it
            count += 1
            yield np.full(round(BLOCK_S * self.sample_rate_hz), 0.5, np.float32)

    def close(self) -> None:
        self.closed = True


class Recorder(Notifier):
    """A notifier that keeps what it delivers; ``gate`` (when given) holds each delivery until it is set."""

    name = "recorder"

    def __init__(self, gate: threading.Event | None = None, **kwargs: object) -> None:
        kwargs.setdefault("cooldown_s", 0.0)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.delivered: list[Notification] = []
        self.started = threading.Event()
        self.gate = gate

    def _deliver(self, notification: Notification) -> None:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        self.delivered.append(notification)


def update(kind: str, event_id: int, label: str, onset_s: float, offset_s: float | None = None) -> EventUpdate:
    reported = offset_s if offset_s is not None else onset_s
    return EventUpdate(kind, event_id, Event(label, onset_s, offset_s, 0.91, 0.72), reported + 0.3)  # type: ignore


def note(label: str, onset_s: float) -> Notification:
    return Notification.from_update(update("end", 1, label, onset_s, onset_s + 0.5), WALL)


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def snapkit_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("snapkit-")]


@pytest.fixture
def warnings() -> list[str]:
    return []


# ---------------------------------------------------------------------------------------------- webhook server


@dataclass
class Hook:
    """A local webhook: answers with ``statuses`` in turn (then 200), optionally hanging first."""

    statuses: list[int] = field(default_factory=list)
    hang: bool = False
    received: list[dict] = field(default_factory=list)
    attempts: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def webhook_server(hook: Hook, port: int = 0) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with hook.lock:
                hook.attempts += 1
                status = hook.statuses.pop(0) if hook.statuses else 200
            if hook.hang:
                hook.release.wait(10)  # longer than any notifier timeout here; released at teardown
                return  # the client gave up long ago: answer nothing
            if status == 200:
                with hook.lock:
                    hook.received.append(json.loads(body))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        hook.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _no_proxy_for_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment must not intercept the local test webhook.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# ---------------------------------------------------------------------------------------------- EventLog


def test_event_log_csv_writes_start_and_end_flushed_and_appends_without_second_header(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "events.csv"
    log = EventLog(path)
    log.handle(update("start", 1, "knock", 1.25), WALL)
    # Read while the log is still open: each line is on disk as soon as it is handled.
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert len(rows) == 1 and rows[0]["kind"] == "start" and rows[0]["offset_s"] == "" and rows[0]["offset_time"] == ""
    log.handle(update("end", 1, "knock", 1.25, 1.9), WALL)
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [row["kind"] for row in rows] == ["start", "end"]
    end = rows[1]
    assert (end["label"], end["event_id"], float(end["onset_s"]), float(end["offset_s"])) == ("knock", "1", 1.25, 1.9)
    assert end["onset_time"] == "2025-05-01T14:03:08.250+00:00"
    assert end["offset_time"] == "2025-05-01T14:03:08.900+00:00"
    assert end["reported_at"] == "2025-05-01T14:03:09.200+00:00"
    assert float(end["peak_score"]) == 0.91 and float(end["mean_score"]) == 0.72
    log.close()
    log.close()  # twice is fine

    again = EventLog(path)
    again.handle(update("start", 1, "clap", 3.0), WALL)
    again.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(LOG_FIELDS)
    assert sum(line.startswith("kind,") for line in lines) == 1
    assert len(lines) == 4


def test_event_log_header_on_an_existing_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.touch()
    log = EventLog(path)
    log.handle(update("start", 1, "knock", 0.5), WALL)
    log.close()
    assert path.read_text().splitlines()[0] == ",".join(LOG_FIELDS)


def test_event_log_jsonl_one_object_per_update(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.handle(update("start", 4, "clap", 2.0), WALL)
    log.handle(update("end", 4, "clap", 2.0, 2.5), WALL)
    records = [json.loads(line) for line in path.read_text().splitlines()]  # still open
    log.close()
    assert [r["kind"] for r in records] == ["start", "end"]
    assert records[0]["offset_s"] is None and records[0]["offset_time"] is None
    assert records[1]["offset_s"] == 2.5 and records[1]["onset_time"] == "2025-05-01T14:03:09.000+00:00"
    assert tuple(records[1]) == LOG_FIELDS


def test_event_log_refuses_unknown_extension_and_foreign_csv(tmp_path: Path) -> None:
    # The same sentence as `snapkit detect` gives: both commands take every format of one registry.
    with pytest.raises(SnapkitError, match=r"\.txt.*use \.csv, \.tsv \(DCASE\), \.jsonl or \.json\.$"):
        EventLog(tmp_path / "events.txt")
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(SnapkitError, match="other columns"):
        EventLog(foreign)
    assert foreign.read_text() == "a,b\n1,2\n"  # never truncated


def test_a_failing_sink_warns_and_counts_instead_of_raising(tmp_path: Path, warnings: list[str]) -> None:
    log = EventLog(tmp_path / "events.csv", on_warning=warnings.append)
    log.close()
    log.handle(update("start", 1, "knock", 0.5), WALL)  # the file is gone: must not raise
    assert log.failures == 1 and "event 1 (knock)" in warnings[0]


# ---------------------------------------------------------------------------------------------- ClipSaver


def test_clip_saver_waits_for_post_roll_then_writes_pre_and_post_roll(tmp_path: Path) -> None:
    rate = 1000
    audio = (np.arange(10 * rate, dtype=np.float32) / (10 * rate) - 0.5) * 1.6  # a ramp: every sample is unique
    saver = ClipSaver(tmp_path / "clips", pre_roll_s=1.0, post_roll_s=1.0, sample_rate_hz=rate)
    blocks = iter(np.split(audio, 100))
    for _ in range(32):  # stream up to 3.2 s
        saver.feed(next(blocks))
    saver.handle(update("start", 7, "knock", 2.0), WALL)
    saver.handle(update("end", 7, "knock", 2.0, 3.0), WALL)
    assert saver.pending == 1 and not list((tmp_path / "clips").iterdir())  # post-roll (to 4.0 s) not heard yet
    for _ in range(7):  # to 3.9 s
        saver.feed(next(blocks))
    assert saver.pending == 1 and saver.pop_completed() == []
    saver.feed(next(blocks))  # 4.0 s: complete
    done = saver.pop_completed()
    assert len(done) == 1 and done[0].update.event_id == 7 and done[0].path is not None
    path = done[0].path
    assert path.name == "knock-20250501-140309-000-7.wav" and list(saver.saved) == [path]
    clip, clip_rate = sf.read(path, dtype="float32")
    assert clip_rate == rate and len(clip) == 3 * rate  # 1 s pre-roll + 1 s event + 1 s post-roll
    np.testing.assert_allclose(clip, audio[1 * rate : 4 * rate], atol=1.5 / 32768)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind
    saver.close()


def test_clip_saver_clamps_pre_roll_at_stream_start_and_finish_saves_short_post_roll(tmp_path: Path) -> None:
    rate = 1000
    saver = ClipSaver(tmp_path, pre_roll_s=1.0, post_roll_s=2.0, sample_rate_hz=rate)
    saver.feed(np.full(1500, 0.25, np.float32))
    saver.handle(update("end", 1, "clap", 0.3, 1.0), WALL)
    assert saver.pending == 1  # needs audio to 3.0 s
    saver.close()  # the stream ended: save what there is
    (saved,) = saver.pop_completed()
    assert saved.path is not None and len(sf.read(saved.path)[0]) == 1500  # from 0 (not -0.7 s) to the end, 1.5 s


def test_clip_saver_never_overwrites_a_taken_name(tmp_path: Path, warnings: list[str]) -> None:
    saver = ClipSaver(tmp_path, pre_roll_s=0.0, post_roll_s=0.0, sample_rate_hz=1000, on_warning=warnings.append)
    saver.feed(np.zeros(2000, np.float32))
    blocker = tmp_path / "knock-20250501-140307-500-1.wav"
    blocker.write_bytes(b"taken")
    saver.handle(update("end", 1, "knock", 0.5, 1.0), WALL)
    (saved,) = saver.pop_completed()
    assert saved.path == tmp_path / "knock-20250501-140307-500-1-2.wav" and saver.failures == 0
    assert blocker.read_bytes() == b"taken" and not warnings


def test_clip_saver_reports_a_failed_write_without_raising(
    tmp_path: Path, warnings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import snapkit.detection.sinks

    def disk_full(path: Path, audio: np.ndarray, rate_hz: int) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapkit.detection.sinks, "write_wav", disk_full)
    saver = ClipSaver(tmp_path, pre_roll_s=0.0, post_roll_s=0.0, sample_rate_hz=1000, on_warning=warnings.append)
    saver.feed(np.zeros(2000, np.float32))
    saver.handle(update("end", 1, "knock", 0.5, 1.0), WALL)
    (saved,) = saver.pop_completed()
    assert saved.path is None and saver.failures == 1 and "could not save" in warnings[0]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- notifiers


def test_webhook_retries_after_two_server_errors_and_delivers_once(warnings: list[str]) -> None:
    hook = Hook(statuses=[500, 500])
    with webhook_server(hook) as url:
        notifier = WebhookNotifier(url, cooldown_s=0, backoff_s=0.02, timeout_s=2.0, on_warning=warnings.append)
        with notifier:
            assert notifier.submit(Notification.from_update(update("end", 3, "knock", 1.0, 1.5), WALL, "/c/k.wav"))
            assert wait_until(lambda: notifier.stats().sent == 1)
        stats = notifier.stats()
    assert hook.attempts == 3 and len(hook.received) == 1
    assert hook.received[0] == {
        "label": "knock",
        "onset_s": 1.0,
        "offset_s": 1.5,
        "peak_score": 0.91,
        "mean_score": 0.72,
        "onset_time": "2025-05-01T14:03:08.000+00:00",
        "offset_time": "2025-05-01T14:03:08.500+00:00",
        "clip_path": "/c/k.wav",
    }
    assert (stats.sent, stats.failed, stats.pending) == (1, 0, 0) and warnings == []


def test_webhook_client_error_is_not_retried(warnings: list[str]) -> None:
    hook = Hook(statuses=[404])
    with webhook_server(hook) as url:
        notifier = WebhookNotifier(url, cooldown_s=0, backoff_s=0.02, on_warning=warnings.append)
        with notifier:
            notifier.submit(note("knock", 1.0))
            assert wait_until(lambda: notifier.stats().failed == 1)
    assert hook.attempts == 1 and "HTTP 404" in warnings[0]


def test_hanging_webhook_fails_by_timeout_and_never_stalls_detection(tmp_path: Path, warnings: list[str]) -> None:
    # Six knocks over 12 s of audio; every POST hangs past the 0.5 s timeout. Delivered in line, each would cost
    # >= 1 s (two attempts), so detection would take >= 6 s; the runner must consume all the audio at full speed.
    audio = planted([(0.5, 0.0), *[(0.5, 0.5), (1.5, 0.0)] * 6])
    hook = Hook(hang=True)
    with webhook_server(hook) as url:
        notifier = WebhookNotifier(
            url,
            cooldown_s=0,
            retries=1,
            backoff_s=0.05,
            timeout_s=0.5,
            drain_timeout_s=0.5,
            max_queue=4,
            on_warning=warnings.append,
        )
        detector = FakeDetector()
        log = EventLog(tmp_path / "events.csv")
        started = time.monotonic()
        summary = run_live(detector, TrackingSource(audio), [log], [notifier])
        finished = time.monotonic()
    assert detector.flushed_at is not None and detector.flushed_at - started < 1.5
    assert summary.events == 6 and summary.seconds == pytest.approx(len(audio) / RATE)
    assert len(list(csv.DictReader((tmp_path / "events.csv").open()))) == 12  # the log did not wait either
    stats = summary.notifiers[0]
    assert stats.failed >= 1 and stats.sent == 0 and hook.received == []
    assert any("could not deliver" in message and "timed out" in message.lower() for message in warnings)
    assert finished - started < 5.0  # close() gave up on the rest after its drain timeout
    assert snapkit_threads() == []


def test_webhook_recovers_when_the_server_comes_back(warnings: list[str]) -> None:
    with socket.socket() as probe:  # a free port, closed again: "the server is down"
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    hook = Hook()
    notifier = WebhookNotifier(url, cooldown_s=0, retries=6, backoff_s=0.1, timeout_s=1.0, on_warning=warnings.append)
    with notifier:
        notifier.submit(note("knock", 1.0))
        assert wait_until(lambda: hook.attempts == 0 and notifier.stats().pending == 1, 1.0)
        time.sleep(0.25)  # at least one attempt has been refused by now
        with webhook_server(hook, port=port):
            assert wait_until(lambda: notifier.stats().sent == 1)
            notifier.submit(note("clap", 2.0))  # and it keeps working afterwards
            assert wait_until(lambda: notifier.stats().sent == 2)
    assert [r["label"] for r in hook.received] == ["knock", "clap"]
    assert notifier.stats().failed == 0 and warnings == []


def test_cooldown_suppresses_the_same_label_but_not_another() -> None:
    with Recorder(cooldown_s=30.0) as notifier:
        assert notifier.submit(note("knock", 0.0))
        assert not notifier.submit(note("knock", 10.0))  # 10 s after the last notified knock
        assert notifier.submit(note("clap", 12.0))  # another label is not affected
        assert notifier.submit(note("knock", 30.0))  # 30 s after the last notified one: allowed again
        assert not notifier.submit(note("knock", 45.0))  # measured from the knock at 30 s, not the one at 0 s
        assert wait_until(lambda: notifier.stats().sent == 3)
    assert [(n.label, n.onset_s) for n in notifier.delivered] == [("knock", 0.0), ("clap", 12.0), ("knock", 30.0)]
    assert notifier.stats().suppressed == 2


def test_full_queue_drops_the_oldest_and_counts() -> None:
    gate = threading.Event()
    notifier = Recorder(gate=gate, max_queue=3)
    with notifier:
        notifier.submit(note("n0", 0.0))
        assert notifier.started.wait(5)  # n0 is being delivered (held at the gate); the queue is empty
        for index in range(1, 10):
            assert notifier.submit(note(f"n{index}", float(index)))  # never blocks
        stats = notifier.stats()
        assert stats.dropped == 6 and stats.pending == 4
        gate.set()
    assert [n.label for n in notifier.delivered] == ["n0", "n7", "n8", "n9"]
    assert notifier.stats().sent == 4


def test_exec_notifier_runs_the_command_with_event_variables(tmp_path: Path, warnings: list[str]) -> None:
    out = tmp_path / "env.json"
    code = (
        "import json, os, sys; "
        "json.dump({k: v for k, v in os.environ.items() if k.startswith('SNAPKIT_')}, open(sys.argv[1], 'w'))"
    )
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {shlex.quote(str(out))}"
    with ExecNotifier(command, cooldown_s=0, on_warning=warnings.append) as notifier:
        notifier.submit(Notification.from_update(update("end", 2, "door bell", 61.5, 62.25), WALL, "/clips/d.wav"))
        assert wait_until(lambda: notifier.stats().sent == 1)
    env = json.loads(out.read_text())
    assert env["SNAPKIT_LABEL"] == "door bell"
    assert env["SNAPKIT_ONSET_S"] == "61.500" and env["SNAPKIT_OFFSET_S"] == "62.250"
    assert env["SNAPKIT_SCORE"] == "0.9100"
    assert env["SNAPKIT_ONSET_TIME"] == "2025-05-01T14:04:08.500+00:00"
    assert env["SNAPKIT_CLIP"] == "/clips/d.wav"
    assert warnings == []


def test_exec_notifier_failures_are_reported_and_bad_commands_refused(warnings: list[str]) -> None:
    command = f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(3)'"
    with ExecNotifier(command, cooldown_s=0, retries=1, backoff_s=0.01, on_warning=warnings.append) as notifier:
        notifier.submit(note("knock", 1.0))
        assert wait_until(lambda: notifier.stats().failed == 1)
    assert "exited with status 3" in warnings[0] and "2 attempt(s)" in warnings[0]
    with pytest.raises(SnapkitError, match="not found"):
        ExecNotifier("no-such-program-snapkit --flag")
    with pytest.raises(SnapkitError, match="http"):
        WebhookNotifier("ftp://example.com/hook")


# ---------------------------------------------------------------------------------------------- run_live


def test_run_live_duration_stops_flushes_open_event_joins_threads_and_closes(tmp_path: Path) -> None:
    # A knock from 1.0 s that is still going on when the 2.0 s duration ends.
    audio = planted([(0.3, 0.0), (0.2, -0.5), (0.5, 0.0), (5.0, 0.5)])
    source = TrackingSource(audio, overflows=2, dropped=1)
    log = EventLog(tmp_path / "events.csv")
    statuses: list[LiveStatus] = []
    summary = run_live(FakeDetector(), source, [log], [], duration_s=2.0, on_status=statuses.append, wall_time=WALL)
    rows = list(csv.DictReader((tmp_path / "events.csv").open()))
    assert [(r["kind"], r["label"]) for r in rows] == [
        ("start", "clap"),
        ("end", "clap"),
        ("start", "knock"),
        ("end", "knock"),
    ]
    assert float(rows[3]["onset_s"]) == 1.0 and float(rows[3]["offset_s"]) == 2.0  # closed by the flush
    assert rows[3]["offset_time"] == "2025-05-01T14:03:09.000+00:00"
    assert summary.seconds == 2.0 and summary.events == 2 and not summary.interrupted
    assert (summary.overflows, summary.dropped) == (2, 1)
    assert source.closed and snapkit_threads() == []
    final = statuses[-1]
    assert not final.running and final.overflows == 2 and final.events == 2
    assert [(e.label, e.offset_s) for e in final.recent_events] == [("clap", 0.5), ("knock", 2.0)]
    assert final.recent_events[1].onset_time == WALL + timedelta(seconds=1.0)


def test_run_live_stop_event_acts_like_ctrl_c(tmp_path: Path) -> None:
    source = EndlessSource()
    log = EventLog(tmp_path / "events.jsonl")
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    summary = run_live(FakeDetector(), source, [log], [], stop_event=stop)
    assert time.monotonic() - started < 3.0
    records = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["start", "end"]  # the knock in progress was closed and written
    assert records[1]["offset_s"] == pytest.approx(summary.seconds, abs=1e-3)
    assert summary.interrupted and summary.seconds > 0 and summary.overflows == 3 and summary.dropped == 1
    assert source.closed and snapkit_threads() == []


def test_run_live_keyboard_interrupt_in_the_main_thread_stops_cleanly(tmp_path: Path) -> None:
    calls = 0

    def on_status(status: LiveStatus) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # what Ctrl-C does: it lands in the main thread, here the view's callback

    source = EndlessSource()
    log = EventLog(tmp_path / "events.csv")
    summary = run_live(FakeDetector(), source, [log], [], on_status=on_status, status_interval_s=0.02)
    rows = list(csv.DictReader((tmp_path / "events.csv").open()))
    assert [r["kind"] for r in rows] == ["start", "end"]
    assert summary.interrupted and source.closed and snapkit_threads() == []


def test_run_live_device_error_is_raised_after_the_open_event_is_written(tmp_path: Path) -> None:
    source = EndlessSource(fail_after=10)
    log = EventLog(tmp_path / "events.csv")
    with pytest.raises(DeviceError, match="stopped delivering audio"):
        run_live(FakeDetector(), source, [log], [])
    rows = list(csv.DictReader((tmp_path / "events.csv").open()))
    assert [r["kind"] for r in rows] == ["start", "end"] and float(rows[1]["offset_s"]) == 0.5
    assert source.closed and snapkit_threads() == []


def test_run_live_notifies_finished_events_with_their_clip_and_a_slow_detector_is_fine(tmp_path: Path) -> None:
    audio = planted([(1.0, 0.0), (0.5, 0.5), (1.5, 0.0), (0.25, -0.5), (0.1, 0.0)])
    saver = ClipSaver(tmp_path / "clips", pre_roll_s=0.5, post_roll_s=1.0, sample_rate_hz=RATE)
    recorder = Recorder()
    lines: list[str] = []
    summary = run_live(
        FakeDetector(push_delay_s=0.001),
        TrackingSource(audio),
        [EventPrinter(write=lines.append)],
        [recorder],
        clip_saver=saver,
        wall_time=WALL,
    )
    assert summary.events == 2 and summary.clips_saved == 2
    by_label = {n.label: n for n in recorder.delivered}
    assert set(by_label) == {"knock", "clap"}  # one notification per event, on its end
    knock = by_label["knock"]
    assert knock.offset_s == 1.5 and knock.clip_path is not None
    clip, _ = sf.read(knock.clip_path)
    assert len(clip) == round((0.5 + 0.5 + 1.0) * RATE)  # pre-roll + event + post-roll
    # The clap ends 0.1 s before the stream does: its clip has only that much post-roll, and is still notified.
    clap_clip, _ = sf.read(by_label["clap"].clip_path)
    assert len(clap_clip) == round((0.5 + 0.25 + 0.1) * RATE)
    assert len(lines) == 2 and lines[0].startswith("2025-05-01T14:03:08.000+00:00  knock  onset 1.000 s")


def test_run_live_refuses_a_rate_mismatch() -> None:
    with pytest.raises(ValueError, match="16000 Hz"):
        run_live(FakeDetector(sample_rate_hz=16_000), TrackingSource(np.zeros(100, np.float32)), [], [])


# ---------------------------------------------------------------------------------------------- the CLI command


class FakeMic:
    """Replaces ``MicrophoneSource`` in the CLI: plays a planted signal, like a device at ``RATE``."""

    audio = planted([(0.5, 0.0), (0.5, 0.5), (1.0, 0.0)])

    def __init__(
        self, device: str | int | None = None, sample_rate_hz: int | None = None, block_s: float = BLOCK_S
    ) -> None:
        self.device = types.SimpleNamespace(index=3, name="Fake Mic")
        self.sample_rate_hz = sample_rate_hz or RATE
        self.overflows = 0
        self.dropped = 0
        self.lost_n = 0
        self.started = False

    def start(self) -> FakeMic:
        self.started = True
        return self

    def __enter__(self) -> FakeMic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blocks(self) -> Iterator[np.ndarray]:
        assert self.started
        yield from ArraySource(self.audio, self.sample_rate_hz, BLOCK_S).blocks()

    def first_sample_wall_time_s(self, timeout_s: float = 15.0) -> float:
        assert self.started
        return time.time()

    def close(self) -> None:
        pass


def test_listen_command_prints_settings_one_line_per_event_and_a_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from snapkit.cli import listen as listen_cli

    detector_module = types.ModuleType("snapkit.detection.detector")
    # listen passes --hop-s only when given; otherwise the detector's default applies.
    detector_module.DetectorSettings = lambda mode, hop_s=0.25, on_thresholds=None, off_thresholds=None: (  # type: ignore[attr-defined]
        types.SimpleNamespace(hop_s=hop_s, mode=mode, on_thresholds=on_thresholds, off_thresholds=off_thresholds)
    )
    detector_module.Detector = lambda bundle, settings, sample_rate_hz: FakeDetector(sample_rate_hz)  # type: ignore
    bundle_module = types.ModuleType("snapkit.models.bundle")
    bundle_module.load_model = lambda path: _fake_bundle()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapkit.detection.detector", detector_module)
    monkeypatch.setitem(sys.modules, "snapkit.models.bundle", bundle_module)
    monkeypatch.setattr(listen_cli, "MicrophoneSource", FakeMic)
    threads: list[int] = []
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(set_num_threads=threads.append))

    app = typer.Typer()
    app.callback()(lambda: None)
    listen_cli.register(app)
    events = tmp_path / "log.csv"
    result = CliRunner().invoke(
        app,
        [
            "listen",
            str(tmp_path / "model.snapkit"),
            "--events",
            str(events),
            "--save-clips",
            str(tmp_path / "clips"),
            "--cooldown-s",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "knock (on 0.60 / off 0.40)" in out and "Device 3 (Fake Mic) at 8000 Hz" in out and threads == [1]
    event_lines = [line for line in out.splitlines() if "  knock  onset" in line]
    assert len(event_lines) == 1 and "onset 0.500 s  offset 1.000 s" in event_lines[0]
    assert "Done after 2.0 s: 1 event(s), 1 clip(s)" in out and "Input overflows: 0, dropped blocks: 0." in out
    assert len(list(csv.DictReader(events.open()))) == 2
    assert len(list((tmp_path / "clips").glob("knock-*-1.wav"))) == 1


def test_listen_command_refuses_a_bad_log_name_before_opening_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from snapkit.cli import listen as listen_cli

    bundle_module = types.ModuleType("snapkit.models.bundle")
    bundle_module.load_model = lambda path: _fake_bundle()  # type: ignore[attr-defined]
    detector_module = types.ModuleType("snapkit.detection.detector")
    detector_module.DetectorSettings = lambda mode, hop_s=0.25, **thresholds: None  # type: ignore[attr-defined]
    detector_module.Detector = None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapkit.detection.detector", detector_module)
    monkeypatch.setitem(sys.modules, "snapkit.models.bundle", bundle_module)

    def no_device(*args: object, **kwargs: object) -> None:
        raise AssertionError("the device must not be opened")

    monkeypatch.setattr(listen_cli, "MicrophoneSource", no_device)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(set_num_threads=lambda n: None))
    app = typer.Typer()
    app.callback()(lambda: None)
    listen_cli.register(app)
    result = CliRunner().invoke(app, ["listen", "m.snapkit", "--events", str(tmp_path / "log.txt")])
    assert isinstance(result.exception, SnapkitError) and ".txt" in str(result.exception)


def test_each_notifier_says_where_it_sends() -> None:
    assert WebhookNotifier("http://127.0.0.1:9/hook").target == "http://127.0.0.1:9/hook"
    assert ExecNotifier("true --now").target == "true --now"


def test_ctrl_c_while_the_threads_start_still_shuts_down_cleanly() -> None:
    from snapkit.detection.live import _LiveRun

    source = TrackingSource(planted([(1.0, 0.5)]))
    run = _LiveRun(
        FakeDetector(),
        source,
        [],
        [],
        clip_saver=None,
        duration_s=None,
        stop_event=None,
        on_status=None,
        status_interval_s=0.05,
        wall_time=WALL,
        recent_events=8,
    )

    def interrupted() -> None:
        raise KeyboardInterrupt

    run._dispatcher.start = interrupted  # type: ignore[method-assign]  # Ctrl-C between the two starts
    summary = run.run()
    assert summary.interrupted and source.closed and snapkit_threads() == []


# ---------------------------------------------------------------------------------------------- the --log file


def test_the_listen_log_rotates_by_size_and_keeps_three(tmp_path: Path) -> None:
    from snapkit.detection.textlog import close_log_file, logger, open_log_file

    path = tmp_path / "listen.log"
    handler = open_log_file(path, max_mb=0.001, backups=3)  # 1000 bytes
    try:
        for i in range(200):
            logger().info(f"line {i:04d} " + "x" * 40)
    finally:
        close_log_file(handler)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["listen.log", "listen.log.1", "listen.log.2", "listen.log.3"]
    assert all(p.stat().st_size <= 1100 for p in tmp_path.iterdir())
    assert "line 0199" in path.read_text() and "INFO" in path.read_text()
    assert handler not in logger().handlers


def test_a_log_in_a_missing_folder_is_one_sentence(tmp_path: Path) -> None:
    from snapkit.detection.textlog import open_log_file

    with pytest.raises(SnapkitError, match=r"^--log .*: the folder .* does not exist; create it"):
        open_log_file(tmp_path / "nowhere" / "listen.log")


def test_warnings_reach_the_log_file_once_and_stderr_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from snapkit.detection.sinks import print_warning
    from snapkit.detection.textlog import close_log_file, open_log_file

    handler = open_log_file(tmp_path / "l.log")
    try:
        print_warning("the disk is full")
    finally:
        close_log_file(handler)
    assert (tmp_path / "l.log").read_text().count("WARNING the disk is full") == 1
    assert capsys.readouterr().err.count("the disk is full") == 1


def test_a_clip_saver_left_running_keeps_a_bounded_list_of_paths_and_a_whole_count(tmp_path: Path) -> None:
    saver = ClipSaver(tmp_path / "clips", pre_roll_s=0.0, post_roll_s=0.0, sample_rate_hz=RATE, keep_paths=3)
    for k in range(5):
        saver.take(np.full(RATE // 10, 0.5, np.float32), [update("end", k + 1, "knock", k * 0.1, k * 0.1 + 0.05)], WALL)
    saver.finish()
    assert saver.saved_count == 5 and len(saver.saved) == 3
    assert [p.name for p in saver.saved] == sorted(p.name for p in (tmp_path / "clips").iterdir())[-3:]
