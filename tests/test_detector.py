"""The streaming detector on generated streams with planted events of known onset and offset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snapkit.detection.detector import Detector, DetectorSettings
from snapkit.detection.events import Event, EventUpdate
from snapkit.eval.scoring import event_scores
from snapkit.eval.synth import make_stream
from snapkit.models.bundle import ModelBundle, load_model
from tests.conftest import DETECTOR_CLASSES

RATE = 16_000


@pytest.fixture(scope="module")
def bundle(detector_bundle_path: Path) -> ModelBundle:
    return load_model(detector_bundle_path)


def run(detector: Detector, audio: np.ndarray, chunk_s: float) -> list[EventUpdate]:
    n = max(1, round(chunk_s * detector.sample_rate_hz))
    updates: list[EventUpdate] = []
    for i in range(0, len(audio), n):
        updates += detector.push(audio[i : i + n])
    return updates + detector.flush()


def planted(events: list) -> list[Event]:
    return [Event(e.label, e.onset_s, e.offset_s, 1.0, 1.0) for e in events]


def test_planted_events_are_found_with_their_onsets(bundle: ModelBundle) -> None:
    """Streams at three SNR bands; event F1 at a 200 ms onset collar over all their planted events >= 0.9."""
    truth_all: list[Event] = []
    found_all: list[Event] = []
    for band, snr_db in enumerate([(6.0, 10.0), (10.0, 15.0), (15.0, 20.0)]):
        audio, truth = make_stream(100 + int(snr_db[0]), duration_s=240.0, classes=DETECTOR_CLASSES, snr_db=snr_db)
        updates = run(Detector(bundle), audio, chunk_s=0.5)
        # Each stream on its own stretch of a shared time axis, so events of different streams never match.
        shift = band * 1000.0
        truth_all += [Event(e.label, e.onset_s + shift, e.offset_s + shift, 1.0, 1.0) for e in truth]
        found_all += [
            Event(u.event.label, u.event.onset_s + shift, u.event.offset_s + shift, 1.0, 1.0)
            for u in updates
            if u.kind == "end"
        ]
    scores = event_scores(truth_all, found_all, onset_collar_s=0.2, evaluate_offset=False)
    assert len(truth_all) >= 60
    assert scores.overall.f1 >= 0.9, scores.to_dict()
    assert scores.median_abs_onset_error_s < 0.05, scores.to_dict()


@pytest.mark.parametrize("mode", ["stream", "window"])
def test_chunk_size_never_changes_the_events(bundle: ModelBundle, mode: str) -> None:
    audio, _truth = make_stream(7, duration_s=40.0, classes=DETECTOR_CLASSES, events_per_minute=9)
    settings = DetectorSettings(mode=mode)  # type: ignore[arg-type]
    reference = run(Detector(bundle, settings), audio, chunk_s=1.0)
    assert any(u.kind == "end" for u in reference)
    for chunk_s in (0.01, 0.1, 0.37):
        assert run(Detector(bundle, settings), audio, chunk_s=chunk_s) == reference


def test_stream_mode_timeline_is_the_model_over_the_whole_stream(bundle: ModelBundle) -> None:
    """In stream mode each 10 ms cell holds exactly the model's output frame for it, as one pass over the file."""
    import torch

    audio, _truth = make_stream(8, duration_s=20.0, classes=DETECTOR_CLASSES, events_per_minute=9)
    detector = Detector(bundle, keep_timeline=True)
    assert detector.streaming and "streaming" in detector.describe()
    run(detector, audio, chunk_s=0.3)
    times_s, probs = detector.timeline()
    with torch.inference_mode():
        expected = bundle.model(torch.from_numpy(audio)[None])[0][0].numpy()
    # Frame j is centred on j * 10 ms and spans +-5 ms; a cell takes the frame its centre falls in, i.e. cell i
    # ([i, i+1) x 10 ms, centre on a frame boundary) takes frame i + 1 (spans are half-open).
    assert len(times_s) == len(expected) - 1 == round(20.0 / 0.01)
    np.testing.assert_allclose(probs, expected[1:], atol=1e-5)


def test_window_mode_is_kept_for_models_that_cannot_stream() -> None:
    from snapkit.errors import SnapkitError
    from snapkit.models.backbones.registry import backbone_architecture
    from snapkit.models.classifier import SoundClassifier
    from snapkit.models.config import ModelConfig

    config = ModelConfig(backbone="sfx-cnn9", labels=("beep",), pooling="attention")
    sfx = ModelBundle.from_model(SoundClassifier(config, backbone_architecture("sfx-cnn9")).eval())
    detector = Detector(sfx)
    assert not detector.streaming and "cannot stream" in detector.describe()
    with pytest.raises(SnapkitError, match="cannot run in stream mode"):
        Detector(sfx, DetectorSettings(mode="stream"))


def test_every_start_has_one_end_and_is_reported_soon(bundle: ModelBundle) -> None:
    audio, _truth = make_stream(8, duration_s=120.0, classes=DETECTOR_CLASSES)
    settings = DetectorSettings()
    updates = run(Detector(bundle, settings), audio, chunk_s=0.25)
    starts = {u.event_id: u for u in updates if u.kind == "start"}
    ends = {u.event_id: u for u in updates if u.kind == "end"}
    assert starts and starts.keys() == ends.keys()
    window_s = bundle.config.clip_s
    for event_id, start in starts.items():
        end = ends[event_id]
        if start.event.onset_s < window_s:
            continue  # nothing can be reported before the first window is complete
        assert updates.index(start) < updates.index(end)
        assert end.event.offset_s > end.event.onset_s
        # The start is known one hop + lookahead (+ the last frame's reach) after the onset at the latest.
        delay = start.reported_at_s - start.event.onset_s
        assert delay <= settings.hop_s + settings.lookahead_s + settings.min_event_s + 0.1, (start, delay)


def test_background_alone_raises_no_alarm(bundle: ModelBundle) -> None:
    audio, truth = make_stream(9, duration_s=120.0, classes=DETECTOR_CLASSES, events_per_minute=0.0)
    assert truth == []
    updates = run(Detector(bundle), audio, chunk_s=1.0)
    assert len([u for u in updates if u.kind == "end"]) <= 1  # at most one false alarm in 2 minutes


def test_an_event_cut_off_by_the_end_of_the_stream_is_closed(bundle: ModelBundle) -> None:
    audio, truth = make_stream(10, duration_s=60.0, classes=("smoke_alarm",), events_per_minute=4)
    cut = round((truth[0].onset_s + 0.3) * RATE)
    updates = run(Detector(bundle), audio[:cut], chunk_s=0.1)
    ends = [u.event for u in updates if u.kind == "end"]
    assert ends and ends[-1].label == "smoke_alarm"
    assert abs(ends[-1].onset_s - truth[0].onset_s) < 0.05
    assert ends[-1].offset_s <= cut / RATE + 1e-4  # times are rounded to 0.1 ms


def test_short_stream_and_reset(bundle: ModelBundle) -> None:
    audio, truth = make_stream(12, duration_s=60.0, classes=("scratch",), events_per_minute=6)
    onset = round(truth[0].onset_s * RATE)
    piece = audio[onset - RATE // 4 : onset + RATE // 2]  # 0.75 s: shorter than one window
    detector = Detector(bundle)
    first = run(detector, piece, chunk_s=0.1)
    detector.reset()
    assert run(detector, piece, chunk_s=0.3) == first
    assert [u.event.label for u in first if u.kind == "end"] == ["scratch"]


def test_other_input_rates_are_resampled(bundle: ModelBundle) -> None:
    import soxr

    audio, truth = make_stream(13, duration_s=60.0, classes=DETECTOR_CLASSES, snr_db=(12.0, 20.0))
    at_44k = soxr.resample(audio, RATE, 44_100)
    found = [u.event for u in run(Detector(bundle, sample_rate_hz=44_100), at_44k, 0.1) if u.kind == "end"]
    scores = event_scores(planted(truth), found, onset_collar_s=0.2, evaluate_offset=False)
    assert scores.overall.f1 >= 0.8, scores.to_dict()


def test_settings_are_checked() -> None:
    from snapkit.errors import SnapkitError

    with pytest.raises(SnapkitError, match="hop_s"):
        DetectorSettings(hop_s=0)
    with pytest.raises(SnapkitError, match="mode"):
        DetectorSettings(mode="fast")  # type: ignore[arg-type]
