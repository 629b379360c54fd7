"""Event files in every format, the detection plot, and ``snapkit detect`` driven through a fake detector.

The fake stands in for the real engine (and the model bundle) so these tests need no torch and run in seconds: it
reports an event of its first class wherever the 10 ms RMS of the audio is above 0.25, which is enough to check
that the command streams every file, resets between files, and writes what it found.
"""

from __future__ import annotations

import json
import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner, Result

from snapkit.cli.detect import plot_targets, register
from snapkit.detection.events import Event, EventUpdate
from snapkit.detection.outputs import read_events, write_events
from snapkit.detection.plot import MAX_COLUMNS, AudioOverview, log_spectrogram, plot_detection
from snapkit.errors import SnapkitError

RATE_HZ = 16_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ROWS = [
    ("a.wav", Event("knock", 1.0, 1.5, peak_score=0.91234, mean_score=0.7)),
    ("a.wav", Event("bell", 2.25, 3.0004, peak_score=0.6, mean_score=0.55556)),
    ("dir/b c.wav", Event("knock", 0.0, 0.02, peak_score=1.0, mean_score=1.0)),
]


# ------------------------------------------------------------------------------------------------------ outputs


def test_write_csv(tmp_path: Path) -> None:
    # The record's wall-clock columns are there, empty: a file has no wall-clock time of its stream second 0.
    path = write_events(tmp_path / "events.csv", ROWS)
    assert path.read_text() == (
        "filename,label,onset_s,offset_s,peak_score,mean_score,onset_time,offset_time\n"
        "a.wav,knock,1.000,1.500,0.9123,0.7000,,\n"
        "a.wav,bell,2.250,3.000,0.6000,0.5556,,\n"
        "dir/b c.wav,knock,0.000,0.020,1.0000,1.0000,,\n"
    )


def test_write_tsv_is_the_dcase_layout(tmp_path: Path) -> None:
    path = write_events(tmp_path / "events.tsv", ROWS)
    assert path.read_text() == (
        "filename\tonset\toffset\tevent_label\n"
        "a.wav\t1.000\t1.500\tknock\n"
        "a.wav\t2.250\t3.000\tbell\n"
        "dir/b c.wav\t0.000\t0.020\tknock\n"
    )


def test_write_jsonl(tmp_path: Path) -> None:
    path = write_events(tmp_path / "events.jsonl", ROWS)
    lines = path.read_text().splitlines()
    keys = ("filename", "label", "onset_s", "offset_s", "peak_score", "mean_score", "onset_time", "offset_time")
    assert [json.loads(line) for line in lines] == [
        dict(zip(keys, ["a.wav", "knock", 1.0, 1.5, 0.9123, 0.7, None, None], strict=True)),
        dict(zip(keys, ["a.wav", "bell", 2.25, 3.0, 0.6, 0.5556, None, None], strict=True)),
        dict(zip(keys, ["dir/b c.wav", "knock", 0.0, 0.02, 1.0, 1.0, None, None], strict=True)),
    ]


def test_write_json_is_one_list_of_the_same_records(tmp_path: Path) -> None:
    jsonl = [json.loads(line) for line in write_events(tmp_path / "events.jsonl", ROWS).read_text().splitlines()]
    assert json.loads(write_events(tmp_path / "events.json", ROWS).read_text()) == jsonl


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    back = read_events(write_events(tmp_path / f"events{suffix}", ROWS))
    assert [(name, e.label, e.onset_s, e.offset_s) for name, e in back] == [
        ("a.wav", "knock", 1.0, 1.5),
        ("a.wav", "bell", 2.25, 3.0),
        ("dir/b c.wav", "knock", 0.0, 0.02),
    ]
    if suffix == ".tsv":  # DCASE files carry no scores
        assert all(math.isnan(e.peak_score) for _, e in back)
    else:
        assert back[0][1].peak_score == 0.9123


def test_read_dcase_ground_truth_skips_files_without_events(tmp_path: Path) -> None:
    path = tmp_path / "truth.tsv"
    path.write_text("filename\tonset\toffset\tevent_label\nx.wav\t\t\t\ny.wav\t0.5\t1.25\tdog\n")
    assert [(name, e.label) for name, e in read_events(path)] == [("y.wav", "dog")]
    path.write_text("filename\tonset\toffset\tevent_label\ny.wav\tsoon\t1.25\tdog\n")
    with pytest.raises(SnapkitError, match="Line 2 of"):
        read_events(path)


def test_unknown_extension_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(SnapkitError, match=r"events\.txt .*use \.csv, \.tsv \(DCASE\), \.jsonl or \.json\.$"):
        write_events(tmp_path / "events.txt", ROWS)
    assert list(tmp_path.iterdir()) == []


def test_write_replaces_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.csv"
    write_events(path, ROWS)
    write_events(path, ROWS[:1])
    assert len(path.read_text().splitlines()) == 2
    # An unfinished event is refused before anything is touched: the old file stays as it was.
    with pytest.raises(ValueError, match="no offset"):
        write_events(path, [("a.wav", Event("knock", 1.0, None, 0.9, 0.9))])
    assert len(path.read_text().splitlines()) == 2
    assert [p.name for p in path.parent.iterdir()] == ["events.csv"]


# --------------------------------------------------------------------------------------------------------- plot


def _planted_audio(duration_s: float, bursts: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    """Seeded quiet noise with loud 800 Hz tone bursts at ``bursts`` [(onset_s, offset_s)]."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(duration_s * RATE_HZ)) / RATE_HZ
    audio = 0.01 * rng.standard_normal(len(t))
    for onset_s, offset_s in bursts:
        inside = (t >= onset_s) & (t < offset_s)
        audio[inside] += 0.5 * np.sin(2 * np.pi * 800 * t[inside])
    return audio.astype(np.float32)


def test_plot_writes_png(tmp_path: Path) -> None:
    audio = _planted_audio(4.0, [(1.0, 1.5)])
    times_s = np.arange(0, 4.0, 0.01)
    probs = np.stack([((times_s >= 1.0) & (times_s < 1.5)) * 0.9, np.full_like(times_s, 0.1)], axis=1)
    events = [Event("knock", 1.0, 1.5, 0.9, 0.9)]
    thresholds = {"knock": (0.5, 0.35), "bell": (0.6, 0.4)}
    path = plot_detection(tmp_path / "p.png", audio, RATE_HZ, times_s, probs, ("knock", "bell"), events, thresholds)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plot_of_a_long_file_uses_a_bounded_envelope(tmp_path: Path) -> None:
    # Two hours, fed as the CLI does; only the envelope is kept, and the curves are decimated for drawing.
    duration_s = 7200.0
    overview = AudioOverview(RATE_HZ, duration_s)
    block = np.zeros(RATE_HZ * 60, dtype=np.float32)
    for minute in range(int(duration_s // 60)):
        block[:] = 0.5 if minute % 30 == 0 else 0.01
        overview.push(block)
    assert overview.samples is None
    starts_s, _, high = overview.envelope()
    assert len(starts_s) <= MAX_COLUMNS and high.max() == 0.5
    times_s = np.arange(0, duration_s, 0.1)
    probs = np.zeros((len(times_s), 1))
    events = [Event("knock", 60.0 * m, 60.0 * m + 60, 0.9, 0.9) for m in range(0, 120, 30)]
    path = plot_detection(tmp_path / "long.png", overview, RATE_HZ, times_s, probs, ("knock",), events, None)
    assert path.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("block_s", [0.01, 0.37, 5.0])
def test_overview_does_not_depend_on_block_size(block_s: float) -> None:
    audio = _planted_audio(10.0, [(2.0, 3.0)], seed=1)
    whole = AudioOverview.from_array(audio, RATE_HZ)
    streamed = AudioOverview(RATE_HZ, len(audio) / RATE_HZ)
    step = round(block_s * RATE_HZ)
    for start in range(0, len(audio), step):
        streamed.push(audio[start : start + step])
    for a, b in zip(whole.envelope(), streamed.envelope(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole.samples, streamed.samples)


def test_spectrogram_is_pooled_to_the_figure_width() -> None:
    db, column_s, top_hz = log_spectrogram(_planted_audio(200.0, []), RATE_HZ)
    assert db.shape[1] <= MAX_COLUMNS and db.shape[1] * column_s >= 199.0 and top_hz == RATE_HZ / 2


# ------------------------------------------------------------------------------------- the command, with a fake


@dataclass(frozen=True)
class FakeSettings:
    hop_s: float = 0.25
    mode: str = "auto"
    on_thresholds: dict[str, float] | None = None
    off_thresholds: dict[str, float] | None = None


class FakeDetector:
    """Frame-energy hysteresis with the real Detector's interface; records how the command uses it."""

    FRAME_S = 0.01
    ON_PROBABILITY = 0.5
    instances: list[FakeDetector] = []  # noqa: RUF012 (reset by the fixture for every test)

    def __init__(
        self,
        bundle: object,
        settings: FakeSettings | None = None,
        *,
        sample_rate_hz: int | None = None,
        keep_timeline: bool = False,
    ) -> None:
        self.labels: tuple[str, ...] = bundle.labels  # type: ignore[attr-defined]
        self.thresholds = dict.fromkeys(self.labels, (0.5, 0.35))
        self.settings = settings or FakeSettings()
        self.sample_rate_hz = sample_rate_hz or RATE_HZ
        self.keep_timeline = keep_timeline
        self.frame_n = round(self.FRAME_S * self.sample_rate_hz)
        self.resets = 0
        self.pushed_lengths: list[int] = []
        self.instances.append(self)
        self._clear()

    def describe(self) -> str:
        return f"fake: frame energy every {self.FRAME_S} s"

    def _clear(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames = 0
        self._onset_s: float | None = None
        self._probs: list[float] = []
        self._ids = 0

    def reset(self) -> None:
        self.resets += 1
        self._clear()

    def _time_s(self) -> float:
        return round(self._frames * self.FRAME_S, 6)

    def _end(self) -> EventUpdate:
        assert self._onset_s is not None
        event = Event(self.labels[0], self._onset_s, self._time_s(), 0.9, 0.8)
        self._onset_s = None
        self._ids += 1
        return EventUpdate("end", self._ids, event, self._time_s())

    def push(self, chunk: np.ndarray) -> list[EventUpdate]:
        self.pushed_lengths.append(len(chunk))
        data = np.concatenate([self._pending, chunk])
        n = len(data) // self.frame_n
        updates = []
        for frame in data[: n * self.frame_n].reshape(n, self.frame_n):
            p = min(1.0, 2 * float(np.sqrt(np.mean(frame**2))))
            self._probs.append(p)
            if p >= self.ON_PROBABILITY and self._onset_s is None:
                self._onset_s = self._time_s()
                updates.append(EventUpdate("start", self._ids + 1, Event(self.labels[0], self._onset_s, None, p, p), 0))
            elif p < self.ON_PROBABILITY and self._onset_s is not None:
                updates.append(self._end())
            self._frames += 1
        self._pending = data[n * self.frame_n :]
        return updates

    def flush(self) -> list[EventUpdate]:
        return [self._end()] if self._onset_s is not None else []

    def timeline(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.keep_timeline, "timeline() needs keep_timeline=True"
        probs = np.zeros((len(self._probs), len(self.labels)))
        probs[:, 0] = self._probs
        return np.arange(len(self._probs)) * self.FRAME_S, probs


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> type[FakeDetector]:
    """``snapkit.detection.detector`` and ``snapkit.models.bundle`` replaced by fakes for the command's imports."""
    FakeDetector.instances = []
    detector_module = types.ModuleType("snapkit.detection.detector")
    detector_module.Detector = FakeDetector  # type: ignore[attr-defined]
    detector_module.DetectorSettings = FakeSettings  # type: ignore[attr-defined]
    from snapkit.models.calibration import default_calibration

    labels = ("knock", "bell")
    bundle = types.SimpleNamespace(
        model=types.SimpleNamespace(sample_rate_hz=RATE_HZ),
        labels=labels,
        config=types.SimpleNamespace(labels=labels),
        calibration=default_calibration(labels),
    )
    bundle_module = types.ModuleType("snapkit.models.bundle")
    bundle_module.load_model = lambda path: bundle  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapkit.detection.detector", detector_module)
    monkeypatch.setitem(sys.modules, "snapkit.models.bundle", bundle_module)
    return FakeDetector


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A test app holding only `detect`; the callback keeps `detect` a named subcommand."""

    register(app)
    return app


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(_app(), ["detect", "model.snapkit", *map(str, args)])


def _wav(path: Path, duration_s: float, bursts: list[tuple[float, float]]) -> Path:
    sf.write(path, _planted_audio(duration_s, bursts), RATE_HZ)
    return path


def test_detect_files_events_and_plots(tmp_path: Path, fake_engine: type[FakeDetector]) -> None:
    a = _wav(tmp_path / "a.wav", 3.0, [(1.0, 1.5)])
    b = _wav(tmp_path / "b.wav", 4.0, [(0.5, 0.8), (2.0, 2.6)])
    bad = tmp_path / "broken.wav"
    bad.write_text("not audio")
    events, plots = tmp_path / "events.tsv", tmp_path / "plots"
    result = _run(a, bad, b, "--events", events, "--plot", plots)

    assert result.exit_code == 0, result.output
    assert "skipped:" in result.output and "broken.wav" in result.output
    assert "real-time factor" in result.output
    # One detector for all files, reset before each one.
    (detector,) = fake_engine.instances
    assert detector.resets == 3 and detector.keep_timeline
    assert events.read_text() == (
        "filename\tonset\toffset\tevent_label\n"
        f"{a}\t1.000\t1.500\tknock\n"
        f"{b}\t0.500\t0.800\tknock\n"
        f"{b}\t2.000\t2.600\tknock\n"
    )
    assert sorted(p.name for p in plots.iterdir()) == ["a.png", "b.png"]
    assert (plots / "a.png").read_bytes().startswith(PNG_MAGIC)


def test_detect_result_does_not_depend_on_chunk_size(tmp_path: Path, fake_engine: type[FakeDetector]) -> None:
    a = _wav(tmp_path / "a.wav", 5.0, [(0.3, 0.9), (2.0, 2.55), (4.7, 5.0)])
    outputs = []
    for chunk_s in ("0.01", "0.37", "1.0"):
        out = tmp_path / f"events-{chunk_s}.csv"
        result = _run(a, "--chunk-s", chunk_s, "--events", out)
        assert result.exit_code == 0, result.output
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(outputs[0].splitlines()) == 4  # header + 3 events, the last one closed by flush()
    # --chunk-s sets the size of what is pushed (the last block of a file may be shorter).
    assert max(fake_engine.instances[0].pushed_lengths) == round(0.01 * RATE_HZ)


def test_detect_all_files_bad_exits_2(tmp_path: Path, fake_engine: type[FakeDetector]) -> None:
    result = _run(tmp_path / "missing.wav", tmp_path / "also-missing.flac")
    assert result.exit_code == 2
    assert result.output.count("skipped:") == 2


def test_ctrl_c_keeps_the_events_of_finished_files(
    tmp_path: Path, fake_engine: type[FakeDetector], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _wav(tmp_path / "a.wav", 2.0, [(1.0, 1.5)])
    b = _wav(tmp_path / "b.wav", 2.0, [(0.5, 1.0)])
    real_push = FakeDetector.push

    def push_until_second_file(self: FakeDetector, chunk: np.ndarray) -> list[EventUpdate]:
        if self.resets == 2:
            raise KeyboardInterrupt
        return real_push(self, chunk)

    monkeypatch.setattr(FakeDetector, "push", push_until_second_file)
    events = tmp_path / "events.jsonl"
    result = _run(a, b, "--events", events)
    assert result.exit_code == 130
    # Stopped at b's first block: nothing of b was read, and a's events are all kept.
    assert f"Stopped (Ctrl-C) at 0.0 s of {b} (file 2 of 2)" in " ".join(result.output.split())
    assert [json.loads(line)["filename"] for line in events.read_text().splitlines()] == [str(a)]


def test_detect_refuses_bad_output_names_before_any_work(tmp_path: Path, fake_engine: type[FakeDetector]) -> None:
    a = _wav(tmp_path / "a.wav", 1.0, [])
    result = _run(a, "--events", tmp_path / "events.txt")
    assert isinstance(result.exception, SnapkitError) and "events.txt" in str(result.exception)
    result = _run(a, "--plot", tmp_path / "plot.jpg")
    assert isinstance(result.exception, SnapkitError) and "plot.jpg" in str(result.exception)
    assert fake_engine.instances == []


def test_detect_plot_name_for_one_and_several_files(tmp_path: Path, fake_engine: type[FakeDetector]) -> None:
    a = _wav(tmp_path / "a.wav", 1.0, [(0.2, 0.4)])
    b = _wav(tmp_path / "b.wav", 1.0, [])
    assert _run(a, "--plot", tmp_path / "one.png").exit_code == 0
    assert (tmp_path / "one.png").read_bytes().startswith(PNG_MAGIC)
    assert _run(a, b, "--plot", tmp_path / "many.png").exit_code == 0
    assert (tmp_path / "many-a.png").exists() and (tmp_path / "many-b.png").exists()


def test_plot_targets_rules(tmp_path: Path) -> None:
    files = [Path("x/a.wav"), Path("y/a.wav"), Path("b.flac")]
    assert plot_targets(tmp_path / "p.png", files[:1]) == [tmp_path / "p.png"]
    assert plot_targets(tmp_path / "p.png", files) == [tmp_path / n for n in ("p-a.png", "p-a-2.png", "p-b.png")]
    assert plot_targets(tmp_path / "plots", files) == [tmp_path / "plots" / n for n in ("a.png", "a-2.png", "b.png")]
    assert plot_targets(tmp_path, files[:1]) == [tmp_path / "a.png"]  # an existing folder
    with pytest.raises(SnapkitError, match="PNG"):
        plot_targets(tmp_path / "p.svg", files)


# ------------------------------------------------------------------------------------------------ --save-clips


def test_detect_saves_each_events_clip_named_by_file_and_time(tmp_path: Path, fake_engine: type[FakeDetector]) -> None:
    a = _wav(tmp_path / "a.wav", 4.0, [(1.0, 1.5)])
    b = _wav(tmp_path / "b.wav", 4.0, [(0.3, 0.5), (2.0, 2.25)])
    clips = tmp_path / "clips"
    result = _run(a, b, "--save-clips", clips, "--pre-roll-s", "0.5", "--post-roll-s", "0.25")
    assert result.exit_code == 0, result.output
    assert "clips: 3 saved in" in result.output
    names = sorted(p.name for p in clips.iterdir())
    assert names == ["a-0001.00s-knock.wav", "b-0000.30s-knock.wav", "b-0002.00s-knock.wav"]
    clip, rate = sf.read(clips / "a-0001.00s-knock.wav")
    assert rate == RATE_HZ and len(clip) == round((0.5 + 0.5 + 0.25) * RATE_HZ)  # pre-roll + event + post-roll
    start, _ = sf.read(clips / "b-0000.30s-knock.wav")
    assert len(start) == round((0.3 + 0.2 + 0.25) * RATE_HZ)  # the pre-roll stops at the start of the file

    # The same files again: nothing is replaced, the new clips take the next free names.
    before = {p.name: p.read_bytes() for p in clips.iterdir()}
    assert _run(a, b, "--save-clips", clips, "--pre-roll-s", "0.5", "--post-roll-s", "0.25").exit_code == 0
    after = {p.name: p.read_bytes() for p in clips.iterdir()}
    assert {n: after[n] for n in before} == before
    assert after["a-0001.00s-knock-2.wav"] == before["a-0001.00s-knock.wav"] and len(after) == 6


def test_detect_clips_do_not_depend_on_chunk_size(tmp_path: Path, fake_engine: type[FakeDetector]) -> None:
    a = _wav(tmp_path / "a.wav", 5.0, [(0.3, 0.9), (2.0, 2.55), (4.7, 5.0)])
    saved = []
    for chunk_s in ("0.01", "0.37", "1.0"):
        clips = tmp_path / f"clips-{chunk_s}"
        assert _run(a, "--chunk-s", chunk_s, "--save-clips", clips).exit_code == 0
        saved.append({p.name: p.read_bytes() for p in clips.iterdir()})
    assert saved[0] == saved[1] == saved[2] and len(saved[0]) == 3


def test_detect_save_clips_into_a_file_is_refused_before_any_work(
    tmp_path: Path, fake_engine: type[FakeDetector]
) -> None:
    a = _wav(tmp_path / "a.wav", 2.0, [(1.0, 1.5)])
    taken = tmp_path / "taken"
    taken.write_text("a file")
    result = _run(a, "--save-clips", taken)
    assert isinstance(result.exception, SnapkitError) and "is a file, not a folder" in str(result.exception)
    assert all(d.pushed_lengths == [] for d in fake_engine.instances)
