"""Timing that stays true when the input loses audio (issue 13, item 4), and a device that comes back (item 5).

PortAudio is simulated at its callback: ``MicrophoneSource._callback`` gets the blocks a sound card would give, with
the capture timestamps (``inputBufferAdcTime``) and overflow flags PortAudio passes, and some blocks never arrive.
The detector is the level-threshold fake of ``test_listen`` (exact onsets) or the real one.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snapkit.audio import sources
from snapkit.audio.devices import InputDevice
from snapkit.audio.sources import Block, InputClock, MicrophoneSource, ReconnectingMicrophone, timed_blocks
from snapkit.detection.live import FILL_LOST_MAX_S, run_live
from snapkit.detection.sinks import ClipSaver
from snapkit.errors import DeviceError
from tests.test_listen import RATE, FakeDetector, planted

BLOCK_N = 400  # 50 ms at RATE


class Collect:
    """A sink that keeps every update in ``got``."""

    failures = 0

    def __init__(self, got: list) -> None:
        self.got = got

    def handle(self, update: object, wall_time: object) -> None:
        self.got.append(update)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------- the clock alone


def test_a_gap_both_clocks_see_is_lost_and_jitter_is_not() -> None:
    clock = InputClock(RATE, tolerance_n=BLOCK_N)

    def block(adc_s: float, callback_s: float, overflow: bool = False) -> int:
        return clock.lost_before(
            BLOCK_N, adc_time_s=1000.0 + adc_s, callback_time_s=50.0 + callback_s, overflow=overflow
        )

    assert block(0.00, 0.06) == 0  # block 0: captured at 0, its callback once it is in (plus 10 ms)
    assert block(0.054, 0.11) == 0  # jitter of a few ms is not a loss
    assert block(0.097, 0.16) == 0
    # Three blocks (0.15 s) never arrived: the next one was captured at 0.30 s instead of 0.15 s, called back late too.
    assert block(0.30, 0.36, overflow=True) == 3 * BLOCK_N
    assert block(0.35, 0.41) == 0  # and both clocks go on from there


def test_stamps_that_run_ahead_while_callbacks_keep_time_are_no_loss() -> None:
    """Through PulseAudio's ALSA plugin the stamps of a new stream ran 0.7 s ahead in its first 1.3 s (measured:
    one every 100 ms for blocks 50 ms apart, callbacks exactly every 50 ms) with nothing lost."""
    clock = InputClock(RATE, tolerance_n=BLOCK_N)
    lost = [
        clock.lost_before(
            BLOCK_N,
            adc_time_s=1000.0 + (0.05 * k if k <= 10 else 0.5 + 0.1 * (k - 10)),
            callback_time_s=50.0 + 0.05 * (k + 1),
            overflow=False,
        )
        for k in range(26)
    ]
    assert lost == [0] * 26


def test_a_late_callback_with_good_stamps_is_no_loss() -> None:
    clock = InputClock(RATE, tolerance_n=BLOCK_N)
    late = [0.0, 0.0, 0.4, 0.4, 0.0, 0.0]  # two callbacks held up 0.4 s (a busy machine), then a burst
    assert [
        clock.lost_before(
            BLOCK_N,
            adc_time_s=1000.0 + 0.05 * k,
            callback_time_s=50.0 + 0.05 * (k + 1) + late[k],
            overflow=False,
        )
        for k in range(6)
    ] == [0] * 6


def test_without_stamps_a_late_callback_is_no_loss_unless_portaudio_flags_an_overflow() -> None:
    clock = InputClock(RATE, tolerance_n=BLOCK_N)
    assert clock.lost_before(BLOCK_N, adc_time_s=0.0, callback_time_s=50.0, overflow=False) == 0
    # Callbacks run 0.3 s late and then in a burst: nothing was lost.
    assert clock.lost_before(BLOCK_N, adc_time_s=0.0, callback_time_s=50.35, overflow=False) == 0
    assert clock.lost_before(BLOCK_N, adc_time_s=0.0, callback_time_s=50.351, overflow=False) == 0
    # An overflow: block 4 should have come at 50.15 s and came at 50.65 s, so 0.5 s went missing.
    lost = clock.lost_before(BLOCK_N, adc_time_s=0.0, callback_time_s=50.65, overflow=True)
    assert lost == round(0.5 * RATE)


# ---------------------------------------------------------------------------------------------- a simulated card


class FakeStream:
    active = True
    latency = 0.0

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        pass


@pytest.fixture
def fake_device(monkeypatch: pytest.MonkeyPatch) -> InputDevice:
    device = InputDevice(
        index=7, name="Simulated card", channels=1, default_sample_rate_hz=RATE, host_api="test", is_default=True
    )
    monkeypatch.setattr(sources, "resolve_input_device", lambda spec: device)
    return device


def feed_card(mic: MicrophoneSource, audio: np.ndarray, lost_blocks: set[int], *, stamps: bool) -> None:
    """Deliver ``audio`` through the PortAudio callback as a card would, block by block in real time, except the
    blocks in ``lost_blocks`` (an overrun: they never arrive, and the next one is flagged). The callback clock reads
    what a card paced in real time gives; with ``stamps`` each block also carries its capture time."""
    mic._stream = FakeStream()  # what start() would have opened
    flagged = False
    for k, start in enumerate(range(0, len(audio), BLOCK_N)):
        if k in lost_blocks:
            flagged = True
            continue
        block = audio[start : start + BLOCK_N, None]
        time_info = types.SimpleNamespace(inputBufferAdcTime=5000.0 + start / RATE if stamps else 0.0)
        status = types.SimpleNamespace(input_overflow=flagged)
        flagged = False
        sources.time.monotonic = lambda start=start: 9000.0 + (start + BLOCK_N) / RATE + 0.01  # type: ignore[assignment]
        mic._callback(block, len(block), time_info, status)


@pytest.fixture
def paced_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "time", types.SimpleNamespace(time=lambda: 1.0e9, monotonic=lambda: 0.0))


@pytest.mark.parametrize("stamps", [True, False], ids=["adc-stamps", "callback-clock"])
def test_onsets_after_dropped_blocks_are_not_early(fake_device: InputDevice, paced_clock: None, stamps: bool) -> None:
    # A knock at 3.0-3.5 s and a clap at 6.0-6.25 s; 0.5 s of blocks (2.0-2.5 s) are lost in between.
    audio = planted([(3.0, 0.0), (0.5, 0.5), (2.5, 0.0), (0.25, -0.5), (1.0, 0.0)])
    lost = set(range(40, 50))
    mic = MicrophoneSource(sample_rate_hz=RATE, block_s=BLOCK_N / RATE)
    feed_card(mic, audio, lost, stamps=stamps)
    got: list = []

    summary = run_live(FakeDetector(), mic, [Collect(got)], [], duration_s=len(audio) / RATE)
    ends = {u.event.label: u.event for u in got if u.kind == "end"}
    assert ends["knock"].onset_s == pytest.approx(3.0, abs=0.011) and ends["knock"].offset_s == pytest.approx(
        3.5, abs=0.011
    )
    assert ends["clap"].onset_s == pytest.approx(6.0, abs=0.011)
    assert summary.lost_s == pytest.approx(0.5, abs=0.011) and mic.overflows == 1
    assert summary.seconds == pytest.approx(len(audio) / RATE)


def test_without_the_lost_time_the_same_stream_would_be_early(fake_device: InputDevice, paced_clock: None) -> None:
    """The test above can fail: the blocks alone, without what was lost, put the knock 0.5 s early."""
    audio = planted([(3.0, 0.0), (0.5, 0.5), (1.0, 0.0)])
    mic = MicrophoneSource(sample_rate_hz=RATE, block_s=BLOCK_N / RATE)
    feed_card(mic, audio, set(range(40, 50)), stamps=True)
    blocks = [b.samples for b in _drain(mic)]
    detector = FakeDetector()
    onsets = [u.event.onset_s for block in blocks for u in detector.push(block) if u.kind == "start"]
    assert onsets == [pytest.approx(2.5)]


def _drain(mic: MicrophoneSource) -> list[Block]:
    out = []
    while not mic._queue.empty():
        lost, block = mic._queue.get_nowait()
        out.append(Block(block[:, 0], lost))
    return out


def test_a_full_queue_counts_the_blocks_it_throws_away_as_lost(fake_device: InputDevice, paced_clock: None) -> None:
    mic = MicrophoneSource(sample_rate_hz=RATE, block_s=BLOCK_N / RATE, max_queue_s=0.2)  # room for 4 blocks
    feed_card(mic, np.zeros(10 * BLOCK_N, np.float32), set(), stamps=True)
    assert mic.dropped == 6 and mic.lost_n == 6 * BLOCK_N
    blocks = _drain(mic)
    assert [b.lost_before_n for b in blocks] == [0, 0, 0, 0]
    # The next block that fits carries the six that did not.
    feed_card_more(mic, 10)
    assert _drain(mic)[0].lost_before_n == 6 * BLOCK_N


def feed_card_more(mic: MicrophoneSource, k: int) -> None:
    sources.time.monotonic = lambda: 9000.0 + (k + 1) * BLOCK_N / RATE + 0.01  # type: ignore[assignment]
    mic._callback(
        np.zeros((BLOCK_N, 1), np.float32),
        BLOCK_N,
        types.SimpleNamespace(inputBufferAdcTime=5000.0 + k * BLOCK_N / RATE),
        None,
    )


# ---------------------------------------------------------------------------------------------- long gaps


class GappySource:
    """Blocks with a gap before some: what ``timed_blocks`` of a live input gives."""

    sample_rate_hz = RATE

    def __init__(self, parts: list[tuple[int, np.ndarray]]) -> None:
        self.parts = parts

    def timed_blocks(self) -> Iterator[Block]:
        for lost, audio in self.parts:
            for i, start in enumerate(range(0, len(audio), BLOCK_N)):
                yield Block(audio[start : start + BLOCK_N], lost if i == 0 else 0)

    def blocks(self) -> Iterator[np.ndarray]:
        raise AssertionError("the runner must read timed_blocks")

    def close(self) -> None:
        pass


def test_a_long_gap_restarts_the_detector_and_clips_stay_aligned(tmp_path: Path) -> None:
    gap_s = 30.0
    assert gap_s > FILL_LOST_MAX_S  # the skip path, not the silence fill
    first = planted([(1.0, 0.0), (0.5, 0.5), (1.0, 0.0)])
    second = planted([(1.0, 0.0), (0.4, -0.5), (1.6, 0.0)])
    source = GappySource([(0, first), (round(gap_s * RATE), second)])
    saver = ClipSaver(tmp_path / "clips", pre_roll_s=0.5, post_roll_s=0.5, sample_rate_hz=RATE)
    detector = FakeDetector()
    got: list = []

    summary = run_live(detector, source, [Collect(got)], [], clip_saver=saver)
    ends = [u.event for u in got if u.kind == "end"]
    assert [(e.label, e.onset_s) for e in ends] == [("knock", 1.0), ("clap", pytest.approx(2.5 + gap_s + 1.0))]
    assert detector.pushes == (len(first) + len(second)) // BLOCK_N  # the gap itself never ran the model
    assert summary.seconds == pytest.approx(2.5 + gap_s + 3.0) and summary.lost_s == pytest.approx(gap_s)
    # The clap's clip is the clap (with its pre/post roll), not audio from before the gap.
    clap_clip, _ = sf.read(saver.saved[1])
    assert len(clap_clip) == round(1.4 * RATE) and clap_clip.min() == pytest.approx(-0.5)
    assert np.count_nonzero(clap_clip) == round(0.4 * RATE)


def test_a_short_gap_is_filled_with_silence_so_an_event_goes_on_across_it() -> None:
    knock = planted([(1.0, 0.0), (0.5, 0.5)])
    more = planted([(0.5, 0.5), (1.0, 0.0)])
    source = GappySource([(0, knock), (round(0.1 * RATE), more)])
    detector = FakeDetector()
    summary = run_live(detector, source, [], [])
    assert summary.events == 2  # the fake ends an event at silence: the filled 0.1 s splits it, at the true times
    assert summary.seconds == pytest.approx(3.1) and detector.samples == round(3.1 * RATE)


def test_detector_skip_continues_times_and_ids(detector_bundle_path: Path) -> None:
    from snapkit.detection.detector import Detector
    from snapkit.eval.synth import make_stream
    from snapkit.models.bundle import load_model
    from tests.conftest import DETECTOR_CLASSES

    bundle = load_model(detector_bundle_path)
    audio, _truth = make_stream(5, duration_s=8.0, classes=DETECTOR_CLASSES, snr_db=(15.0, 20.0))
    alone = Detector(bundle)
    reference = alone.push(audio) + alone.flush()
    assert reference, "the stream must hold events for this test to mean anything"
    detector = Detector(bundle)
    before = detector.push(audio) + detector.skip(16_000 * 100)
    after = detector.push(audio) + detector.flush()
    assert [u.event_id for u in before + after] == sorted(u.event_id for u in before + after)
    assert len({u.event_id for u in after} & {u.event_id for u in before}) == 0
    assert [u.event for u in before] == [u.event for u in reference]
    shifted = [(u.event.label, round(u.event.onset_s - 108.0, 3)) for u in after]
    assert shifted == [(u.event.label, round(u.event.onset_s, 3)) for u in reference]
    assert detector.position_s == pytest.approx(116.0)


# ---------------------------------------------------------------------------------------------- device comes back


class FlakyMic:
    """A microphone that delivers ``blocks_before`` blocks, then goes away; reopening fails ``fail_reopen`` times."""

    opened: list[FlakyMic] = []  # noqa: RUF012
    fail_reopen = 2

    def __init__(self, device: str | int | None = None, sample_rate_hz: int | None = None, block_s: float = 0.05):
        if len(FlakyMic.opened) >= 1 and FlakyMic.fail_reopen > 0:
            FlakyMic.fail_reopen -= 1
            raise DeviceError("--device 'Simulated card': no input device has that name; run `snapkit devices`.")
        self.device = types.SimpleNamespace(index=7, name="Simulated card")
        self.sample_rate_hz = RATE
        self.overflows = self.dropped = self.lost_n = 0
        self.number = len(FlakyMic.opened)
        FlakyMic.opened.append(self)
        self.closed = False

    def start(self) -> FlakyMic:
        return self

    def first_sample_wall_time_s(self, timeout_s: float = 15.0) -> float:
        return 1000.0 if self.number == 0 else 1000.0 + 2.0 + 12.5  # back 12.5 s after the 2 s it delivered

    def timed_blocks(self) -> Iterator[Block]:
        audio = planted([(1.0, 0.0), (0.5, 0.5), (0.5, 0.0)])
        for start in range(0, len(audio), BLOCK_N):
            yield Block(audio[start : start + BLOCK_N])
        if self.number == 0:
            raise DeviceError(
                "Input device 7 (Simulated card) went away (its stream stopped); check that it is still connected."
            )

    def close(self) -> None:
        self.closed = True


def test_a_device_that_goes_away_is_reopened_with_backoff_and_times_stay_true(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FlakyMic.opened, FlakyMic.fail_reopen = [], 4  # two attempts fail (each tries the name, then the spec)
    monkeypatch.setattr(sources, "rescan_devices", lambda: None)
    messages: list[str] = []
    waits: list[float] = []
    mic = ReconnectingMicrophone(log=messages.append, backoff_s=(0.01, 0.02), open_mic=FlakyMic)
    real_wait = mic._stopping.wait
    monkeypatch.setattr(mic._stopping, "wait", lambda s: waits.append(s) or real_wait(0))
    detector = FakeDetector()
    got: list = []

    summary = run_live(detector, mic, [Collect(got)], [], duration_s=2.0 + 12.5 + 2.0)
    onsets = [u.event.onset_s for u in got if u.kind == "start"]
    assert onsets == [pytest.approx(1.0), pytest.approx(2.0 + 12.5 + 1.0)]
    assert waits == [0.01, 0.02, 0.02] and summary.reconnects == 1 and summary.lost_s == pytest.approx(12.5)
    assert "went away" in messages[0] and "retrying" in messages[0]
    assert sum("Attempt" in m for m in messages) == 2 and "back after 12.5 s" in messages[-1]
    assert FlakyMic.opened[0].closed


def test_stopping_while_the_device_is_away_ends_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    FlakyMic.opened, FlakyMic.fail_reopen = [], 10**6
    monkeypatch.setattr(sources, "rescan_devices", lambda: None)
    mic = ReconnectingMicrophone(log=lambda m: None, backoff_s=(3600.0,), open_mic=FlakyMic)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    summary = run_live(FakeDetector(), mic, [], [], stop_event=stop, status_interval_s=0.05)
    assert summary.interrupted and summary.seconds == pytest.approx(2.0)


def test_plain_sources_lose_nothing() -> None:
    from snapkit.audio.sources import ArraySource

    assert [b.lost_before_n for b in timed_blocks(ArraySource(np.zeros(1000, np.float32), RATE))] == [0, 0, 0]
