"""One event record and one registry of event-file formats, shared by `snapkit detect` and `snapkit listen`.

Both commands run here on the same generated recording through the same fake engine: `detect` reads the WAV, and
`listen` hears it through a fake microphone that plays that very file. The engine is a few lines of block-mean
thresholding whose onsets fall 0.7 ms into a block (as the real detector places an onset inside a frame) and whose
scores are the planted amplitudes, so rounding shows in every field. No torch, no model, no sound card.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner, Result

from snapkit.audio.sources import FileSource
from snapkit.cli import detect as detect_cli
from snapkit.cli import listen as listen_cli
from snapkit.cli.app import main
from snapkit.detection import outputs
from snapkit.detection.events import RECORD_FIELDS, UPDATE_FIELDS, Event, EventUpdate, field_text, iso_time
from snapkit.detection.notify import ExecNotifier, Notification
from snapkit.detection.outputs import EVENT_FORMATS, LIST_FIELDS, read_events, write_events
from snapkit.detection.sinks import LOG_FIELDS, EventLog
from snapkit.errors import SnapkitError

RATE = 8_000
BLOCK_S = 0.05
EDGE_S = 0.0007  # where in its first block an event starts or ends
# The microphone's first sample: fixed, so the wall-clock fields are known exactly.
WALL = datetime(2025, 5, 1, 14, 3, 7, tzinfo=timezone.utc)
# (seconds, value) segments of the recording: a knock at two levels, a clap, and a knock cut off by the end.
SEGMENTS = [(0.5, 0.0), (0.3, 0.61234567), (0.2, 0.7), (0.6, 0.0), (0.25, -0.4321987), (0.4, 0.0), (0.15, 0.9)]
# What both commands must report: (label, onset_s, offset_s, peak_score, mean_score), as written (rounded).
EXPECTED = [
    ("knock", 0.501, 1.001, 0.7, 0.6474),
    ("clap", 1.601, 1.851, 0.4322, 0.4322),
    ("knock", 2.251, 2.4, 0.9, 0.9),  # closed when the stream ends
]
FORMATS = list(EVENT_FORMATS)


# ---------------------------------------------------------------------------------------------- the fake engine


@dataclass(frozen=True)
class FakeSettings:
    hop_s: float = 0.25
    mode: str = "auto"
    on_thresholds: dict[str, float] = field(default_factory=dict)
    off_thresholds: dict[str, float] = field(default_factory=dict)


class BlockDetector:
    """The real Detector's interface over block means: above +0.25 is a knock, below -0.25 a clap. An event starts
    ``EDGE_S`` into its first block and ends ``EDGE_S`` into the first block without it (or where the stream ends);
    its scores are the peak and mean of its blocks' absolute means."""

    labels = ("knock", "clap")
    thresholds = {"knock": (0.5, 0.35), "clap": (0.5, 0.35)}  # noqa: RUF012 (what Detector.thresholds holds)
    instances: list[BlockDetector] = []  # noqa: RUF012 (reset by the fixture for every test)

    def __init__(
        self,
        bundle: object = None,
        settings: FakeSettings | None = None,
        *,
        sample_rate_hz: int = RATE,
        keep_timeline: bool = False,
    ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.resets = 0
        self.instances.append(self)
        self._clear()

    def _clear(self) -> None:
        self.samples = 0
        self._open: tuple[int, str, float, list[float]] | None = None
        self._next_id = 1
        self._latest = dict.fromkeys(self.labels, 0.0)

    def describe(self) -> str:
        return "fake: block means"

    def reset(self) -> None:
        self.resets += 1
        self._clear()

    @property
    def latest_probabilities(self) -> dict[str, float]:
        return dict(self._latest)

    def push(self, chunk: np.ndarray) -> list[EventUpdate]:
        start_s = self.samples / self.sample_rate_hz
        self.samples += len(chunk)
        mean = float(np.mean(chunk)) if len(chunk) else 0.0
        label = "knock" if mean > 0.25 else "clap" if mean < -0.25 else None
        self._latest = {name: float(name == label) for name in self.labels}
        updates: list[EventUpdate] = []
        if self._open is not None and self._open[1] != label:
            updates.append(self._end(start_s + EDGE_S))
        if label is not None and self._open is None:
            self._open = (self._next_id, label, start_s + EDGE_S, [])
            self._next_id += 1
            event = Event(label, start_s + EDGE_S, None, abs(mean), abs(mean))
            updates.append(EventUpdate("start", self._open[0], event, self.samples / self.sample_rate_hz))
        if self._open is not None:
            self._open[3].append(abs(mean))
        return updates

    def flush(self) -> list[EventUpdate]:
        return [self._end(self.samples / self.sample_rate_hz)] if self._open is not None else []

    def _end(self, offset_s: float) -> EventUpdate:
        assert self._open is not None
        event_id, label, onset_s, scores = self._open
        self._open = None
        event = Event(label, onset_s, offset_s, max(scores), float(np.mean(scores)))
        return EventUpdate("end", event_id, event, self.samples / self.sample_rate_hz)


class FakeMic:
    """Replaces ``MicrophoneSource``: plays ``wav`` block by block; with ``interrupt``, its last block then goes on
    and Ctrl-C is pressed (SIGINT to this process, which lands in the main thread as a real one does)."""

    wav = Path()  # set by the engine fixture
    interrupt = False

    def __init__(
        self, device: str | int | None = None, sample_rate_hz: int | None = None, block_s: float = BLOCK_S
    ) -> None:
        self.device = types.SimpleNamespace(index=3, name="Fake Mic")
        self.sample_rate_hz = sample_rate_hz or sf.info(str(self.wav)).samplerate  # the device's own rate
        self.overflows = self.dropped = self.lost_n = 0

    def start(self) -> FakeMic:
        return self

    def __enter__(self) -> FakeMic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blocks(self) -> Iterator[np.ndarray]:
        block = np.zeros(0, np.float32)
        for block in FileSource(self.wav, self.sample_rate_hz, BLOCK_S).blocks():
            yield block
        if self.interrupt:
            for count in range(2000):  # the last sound goes on (20 s): the runner stops asking long before
                if count == 20:
                    # By now (0.2 s in) the main thread waits inside run_live, where a real Ctrl-C lands.
                    os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)
                yield block

    def first_sample_wall_time_s(self, timeout_s: float = 15.0) -> float:
        return WALL.timestamp()

    def close(self) -> None:
        pass


def planted_wav(path: Path) -> Path:
    audio = np.concatenate([np.full(round(s * RATE), v, np.float32) for s, v in SEGMENTS])
    sf.write(path, audio, RATE, subtype="FLOAT")  # float: both commands get exactly these samples
    return path


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The fake engine, bundle, torch and microphone in place for both commands; returns the recording."""
    BlockDetector.instances = []
    detector_module = types.ModuleType("snapkit.detection.detector")
    detector_module.Detector = BlockDetector  # type: ignore[attr-defined]
    detector_module.DetectorSettings = FakeSettings  # type: ignore[attr-defined]
    from snapkit.models.calibration import default_calibration

    labels = tuple(BlockDetector.labels)
    bundle = types.SimpleNamespace(  # what detect/listen read before the (fake) detector takes over
        model=types.SimpleNamespace(sample_rate_hz=RATE),
        labels=labels,
        config=types.SimpleNamespace(labels=labels),
        calibration=default_calibration(labels),
    )
    bundle_module = types.ModuleType("snapkit.models.bundle")
    bundle_module.load_model = lambda path: bundle  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapkit.detection.detector", detector_module)
    monkeypatch.setitem(sys.modules, "snapkit.models.bundle", bundle_module)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(set_num_threads=lambda n: None))
    monkeypatch.setattr(listen_cli, "MicrophoneSource", FakeMic)
    monkeypatch.setattr(FakeMic, "interrupt", False)
    wav = planted_wav(tmp_path / "room.wav")
    monkeypatch.setattr(FakeMic, "wav", wav)
    return wav


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    detect_cli.register(app)
    listen_cli.register(app)
    return app


def detect(*args: str | Path) -> Result:
    return CliRunner().invoke(_app(), ["detect", "model.snapkit", *map(str, args), "--chunk-s", str(BLOCK_S)])


def listen(events: Path) -> Result:
    return CliRunner().invoke(_app(), ["listen", "model.snapkit", "--events", str(events)])


def raw_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an event file as they stand in it (text cells for CSV/TSV), read without snapkit's reader."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines()]
    return list(csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix == ".tsv" else ","))


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary files left in ``folder``."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------- the record


def test_one_record_for_the_file_list_the_log_the_webhook_and_the_command() -> None:
    event = Event("door bell", 61.50049, 62.2506, peak_score=0.912345, mean_score=0.7)
    update = EventUpdate("end", 2, event, 62.8)
    record = event.to_dict(WALL)
    assert record == {
        "label": "door bell",
        "onset_s": 61.5,
        "offset_s": 62.251,
        "peak_score": 0.9123,
        "mean_score": 0.7,
        "onset_time": "2025-05-01T14:04:08.500+00:00",
        "offset_time": "2025-05-01T14:04:09.251+00:00",
    }
    assert tuple(record) == RECORD_FIELDS
    # Without a wall-clock time (a file): the same fields, the wall-clock ones empty.
    assert event.to_dict() == {**record, "onset_time": None, "offset_time": None}
    # A live log line: the update around the very same record.
    line = update.to_dict(WALL)
    assert tuple(line) == UPDATE_FIELDS == LOG_FIELDS
    assert {name: line[name] for name in RECORD_FIELDS} == record
    assert line["reported_at"] == "2025-05-01T14:04:09.800+00:00"
    # The webhook's body: the record, then the clip.
    notification = Notification.from_update(update, WALL, "/clips/d.wav")
    assert [f.name for f in fields(Notification)] == [*RECORD_FIELDS, "clip_path"]
    assert notification.to_dict() == {**record, "clip_path": "/clips/d.wav"}
    # The --exec variables: the record's fields, as a CSV cell writes them.
    env = ExecNotifier.environment(notification)
    assert env["SNAPKIT_ONSET_S"] == field_text("onset_s", record["onset_s"]) == "61.500"
    assert env["SNAPKIT_OFFSET_S"] == "62.251"
    assert env["SNAPKIT_SCORE"] == field_text("peak_score", record["peak_score"]) == "0.9123"
    assert env["SNAPKIT_MEAN_SCORE"] == "0.7000"
    # A start: no offset yet, in every form.
    start = EventUpdate("start", 2, Event("door bell", 61.5, None, 0.8, 0.8), 61.7).to_dict(WALL)
    assert start["offset_s"] is None and start["offset_time"] is None
    assert field_text("offset_s", start["offset_s"]) == ""


def test_unknown_scores_are_none_not_nan() -> None:
    # An event read from a DCASE file has no scores; JSON has no NaN, so the record says None.
    record = Event("dog", 0.5, 1.0, float("nan"), float("nan")).to_dict()
    assert record["peak_score"] is None and record["mean_score"] is None
    json.dumps(record, allow_nan=False)


# ---------------------------------------------------------------------------------------------- the registry


def test_the_registry_holds_every_format() -> None:
    assert FORMATS == [".csv", ".tsv", ".jsonl", ".json"]
    assert outputs.FORMATS_TEXT == ".csv, .tsv (DCASE), .jsonl or .json"


@pytest.mark.parametrize("command", ["detect", "listen"])
def test_an_unknown_extension_is_one_sentence_naming_every_format(
    command: str, engine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "events.txt"
    args = [command, "model.snapkit", *([str(engine)] if command == "detect" else []), "--events", str(target)]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"error: {target} is not an event file name (extension '.txt'); use .csv, .tsv (DCASE), .jsonl or .json."
    )
    assert BlockDetector.instances == [] and not target.exists()  # refused before any work


# ---------------------------------------------------------------------------------------------- both commands


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_works_in_both_commands(suffix: str, engine: Path, tmp_path: Path) -> None:
    from_file, live = tmp_path / f"detect{suffix}", tmp_path / f"listen{suffix}"
    result = detect(engine, "--events", from_file)
    assert result.exit_code == 0, result.output
    result = listen(live)
    assert result.exit_code == 0, result.output
    assert "Done after 2.4 s: 3 event(s)" in result.output

    for path in (from_file, live):
        read = read_events(path)
        assert [(e.label, e.onset_s, e.offset_s) for _, e in read] == [row[:3] for row in EXPECTED], path
        if suffix == ".tsv":  # the DCASE layout has no scores
            assert all(np.isnan(e.peak_score) for _, e in read)
        else:
            assert [(e.peak_score, e.mean_score) for _, e in read] == [row[3:] for row in EXPECTED], path
    assert {name for name, _ in read_events(from_file)} == {str(engine)}
    session = iso_time(datetime.fromtimestamp(WALL.timestamp()).astimezone())
    assert {name for name, _ in read_events(live)} == ({session} if suffix == ".tsv" else {""})

    detect_rows, listen_rows = raw_rows(from_file), raw_rows(live)
    assert len(detect_rows) == 3
    if suffix == ".tsv":  # finished events only, in the DCASE columns
        assert list(detect_rows[0]) == list(listen_rows[0]) == list(outputs.DCASE_COLUMNS)
        assert len(listen_rows) == 3
    else:  # every start and end as it happened; the file's own list, with its own fields
        assert [r["kind"] for r in listen_rows] == ["start", "end"] * 3
        assert [list(r) for r in listen_rows] == [list(LOG_FIELDS)] * 6
        assert [list(r) for r in detect_rows] == [list(LIST_FIELDS)] * 3
    if suffix == ".json":
        assert from_file.read_text().startswith("[\n") and live.read_text().endswith("\n]\n")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", FORMATS)
def test_detect_and_listen_write_identical_records_for_the_same_event(
    suffix: str, engine: Path, tmp_path: Path
) -> None:
    from_file, live = tmp_path / f"detect{suffix}", tmp_path / f"listen{suffix}"
    assert detect(engine, "--events", from_file).exit_code == 0
    assert listen(live).exit_code == 0
    detect_rows = raw_rows(from_file)
    listen_ends = [row for row in raw_rows(live) if row.get("kind", "end") == "end"]
    # Every field both files have, but where the event was (the file; the session) and when (unknown for a file).
    context = {"filename", "onset_time", "offset_time"}
    shared = [name for name in detect_rows[0] if name in listen_ends[0] and name not in context]
    assert len(shared) >= (3 if suffix == ".tsv" else 5)
    assert [{name: row[name] for name in shared} for row in detect_rows] == [
        {name: row[name] for name in shared} for row in listen_ends
    ]
    if suffix != ".tsv":
        # The wall-clock fields are the record's too: empty where the time of stream second 0 is unknown (a file),
        # and that time plus the stream seconds when listening.
        assert all(not row["onset_time"] and not row["offset_time"] for row in detect_rows)
        for row in listen_ends:
            onset = datetime.fromisoformat(row["onset_time"])
            assert onset == WALL + timedelta(seconds=float(row["onset_s"]))
            assert datetime.fromisoformat(row["offset_time"]) == WALL + timedelta(seconds=float(row["offset_s"]))


@pytest.mark.parametrize("suffix", FORMATS)
def test_ctrl_c_leaves_a_whole_file_in_both_commands(
    suffix: str, engine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # detect: interrupted in the second file; the first file's events are written, whole.
    second = planted_wav(tmp_path / "second.wav")
    real_push = BlockDetector.push

    def push_until_second_file(self: BlockDetector, chunk: np.ndarray) -> list[EventUpdate]:
        if self.resets == 2:
            raise KeyboardInterrupt
        return real_push(self, chunk)

    monkeypatch.setattr(BlockDetector, "push", push_until_second_file)
    from_file = tmp_path / f"detect{suffix}"
    result = detect(engine, second, "--events", from_file)
    assert result.exit_code == 130
    assert f"Stopped (Ctrl-C) at 0.0 s of {second} (file 2 of 2)" in " ".join(result.output.split())
    assert [(name, e.label) for name, e in read_events(from_file)] == [(str(engine), row[0]) for row in EXPECTED]
    monkeypatch.setattr(BlockDetector, "push", real_push)

    # listen: Ctrl-C while the last knock is still going on; it is closed and written, and the file is whole.
    monkeypatch.setattr(FakeMic, "interrupt", True)
    live = tmp_path / f"listen{suffix}"
    result = listen(live)
    assert result.exit_code == 0, result.output
    assert "Stopped after" in result.output
    read = read_events(live)
    assert [(e.label, e.onset_s) for _, e in read] == [row[:2] for row in EXPECTED]
    assert read[-1][1].offset_s > 2.5  # the knock went on past the recording until Ctrl-C closed it
    raw_rows(live)  # parses as a whole: a .json list is complete
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------- the log, per format


def test_json_log_is_a_whole_list_after_every_update_and_continues_an_existing_one(tmp_path: Path) -> None:
    path = tmp_path / "log" / "events.json"
    log = EventLog(path)
    assert json.loads(path.read_text()) == []  # there from the start, like a CSV's header
    log.handle(EventUpdate("start", 1, Event("knock", 1.0, None, 0.9, 0.9), 1.2), WALL)
    assert [r["kind"] for r in json.loads(path.read_text())] == ["start"]  # still open: already a whole list
    log.handle(EventUpdate("end", 1, Event("knock", 1.0, 1.5, 0.9, 0.8), 1.7), WALL)
    log.close()
    again = EventLog(path)  # a second session appends, never truncates
    again.handle(EventUpdate("start", 1, Event("clap", 0.2, None, 0.7, 0.7), 0.4), WALL)
    again.close()
    records = json.loads(path.read_text())
    assert [(r["kind"], r["label"]) for r in records] == [("start", "knock"), ("end", "knock"), ("start", "clap")]
    assert all(tuple(r) == LOG_FIELDS for r in records)
    assert leftovers(path.parent) == []


def test_json_log_refuses_a_file_that_is_not_its_list(tmp_path: Path) -> None:
    for text in ('{"not": "a list"}', "[1, 2]", '[{"label": "knock"}]', "[broken"):
        path = tmp_path / "other.json"
        path.write_text(text)
        with pytest.raises(SnapkitError, match=r"other\.json .*not a list of these events|Cannot read .*other\.json"):
            EventLog(path)
        assert path.read_text() == text  # never touched


def test_an_interrupted_json_rewrite_leaves_the_previous_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.json"
    rows = [("a.wav", Event("knock", 1.0, 1.5, 0.9, 0.8))]
    write_events(path, rows)
    before = path.read_text()
    log = EventLog(path.with_name("live.json"))
    log.handle(EventUpdate("end", 1, Event("knock", 1.0, 1.5, 0.9, 0.8), 1.7), WALL)
    live_before = log.path.read_text()

    def ctrl_c(fd: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the new list was written to the temporary file, before the rename

    monkeypatch.setattr(outputs.os, "fsync", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_events(path, rows * 2)
    with pytest.raises(KeyboardInterrupt):  # a sink turns errors into warnings, but Ctrl-C is not an error
        log.handle(EventUpdate("start", 2, Event("clap", 2.0, None, 0.7, 0.7), 2.1), WALL)
    assert path.read_text() == before and log.path.read_text() == live_before
    log.close()  # while open, the log holds its lock file (.live.json.lock), which closing removes
    assert leftovers(tmp_path) == []


def test_tsv_log_holds_finished_events_named_by_session_and_refuses_other_columns(tmp_path: Path) -> None:
    path = tmp_path / "events.tsv"
    log = EventLog(path)
    log.handle(EventUpdate("start", 1, Event("knock", 1.25, None, 0.9, 0.9), 1.4), WALL)
    assert path.read_text() == "filename\tonset\toffset\tevent_label\n"  # a start has no place in the layout
    log.handle(EventUpdate("end", 1, Event("knock", 1.25, 1.9004, 0.9, 0.8), 2.1), WALL)
    log.close()
    assert path.read_text().splitlines()[1] == "2025-05-01T14:03:07.000+00:00\t1.250\t1.900\tknock"
    assert log.lines_written == 1
    foreign = tmp_path / "truth.tsv"
    foreign.write_text("file\tstart\tend\tlabel\n")
    with pytest.raises(SnapkitError, match="other columns"):
        EventLog(foreign)


def test_a_log_whose_last_line_was_cut_short_goes_on_on_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "start", "label": "kno')  # a crash in the middle of a line
    log = EventLog(path)
    log.handle(EventUpdate("end", 1, Event("knock", 1.0, 1.5, 0.9, 0.8), 1.7), WALL)
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["label"] == "knock"


# ---------------------------------------------------------------------------------------------- the real engine


@pytest.mark.slow
def test_the_real_detector_gives_identical_records_in_both_commands(
    detector_bundle_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conftest ConvNet on a generated stream: `detect` reads the file, `listen` hears it through the fake
    microphone in 50 ms blocks, both every 0.25 s; events do not depend on chunking, so the records are the same."""
    from snapkit.eval.synth import make_stream
    from tests.conftest import DETECTOR_CLASSES

    # Five sounds of all three classes (seed 5), loud enough to be found.
    audio, truth = make_stream(5, duration_s=24.0, classes=DETECTOR_CLASSES, events_per_minute=12, snr_db=(15, 20))
    wav = tmp_path / "stream.wav"
    sf.write(wav, audio, 16_000, subtype="FLOAT")
    monkeypatch.setattr(listen_cli, "MicrophoneSource", FakeMic)
    monkeypatch.setattr(FakeMic, "wav", wav)
    from_file, live = tmp_path / "detect.jsonl", tmp_path / "listen.jsonl"
    runner = CliRunner()
    args = ["--events", str(from_file), "--hop-s", "0.25", "--chunk-s", "1.0"]
    result = runner.invoke(_app(), ["detect", str(detector_bundle_path), str(wav), *args])
    assert result.exit_code == 0, result.output
    result = runner.invoke(_app(), ["listen", str(detector_bundle_path), "--events", str(live), "--hop-s", "0.25"])
    assert result.exit_code == 0, result.output

    detect_rows = raw_rows(from_file)
    listen_ends = sorted(
        (row for row in raw_rows(live) if row["kind"] == "end"), key=lambda row: (row["onset_s"], row["label"])
    )
    assert len(detect_rows) >= len(truth) - 1, (detect_rows, truth)
    shared = [name for name in RECORD_FIELDS if name not in ("onset_time", "offset_time")]
    assert [{n: r[n] for n in shared} for r in detect_rows] == [{n: r[n] for n in shared} for r in listen_ends]
