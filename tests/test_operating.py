"""Calibration to a false-alarm budget (issue 11): the event counter, the operating curve, run-time sensitivity,
the bundle record, and ``snapkit calibrate`` end to end on the session's detector model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snapkit.detection.operating import MIN_BACKGROUND_S, THRESHOLD_GRID, calibrate_to_budget, event_onsets
from snapkit.detection.tracker import EventTracker
from snapkit.models.calibration import (
    ClassCalibration,
    OperatingCurve,
    parse_sensitivity,
    parse_threshold_overrides,
    run_time_thresholds,
    sensitivity_thresholds,
)
from tests.conftest import DETECTOR_CLASSES, run_cli

RATE = 16_000


# ------------------------------------------------------------------------------------------ the event counter


def _tracker_onsets(trace: np.ndarray, on: float, off: float, **cells: int) -> list[int]:
    tracker = EventTracker(np.array([on]), np.array([off]), **cells)
    edges = tracker.push(trace.reshape(-1, 1)) + tracker.flush()
    return [e.onset_cell for e in edges if e.kind == "start"]


@pytest.mark.parametrize("seed", range(8))
def test_event_onsets_are_the_trackers_own(seed: int) -> None:
    """Cutting long quiet stretches changes nothing: the same onsets as the tracker stepping through every cell."""
    rng = np.random.default_rng(seed)
    # Bursty traces: long quiet stretches, rises of varied length and dips of varied depth.
    trace = np.zeros(6000)
    for start in rng.integers(0, 5900, size=40):
        trace[start : start + rng.integers(1, 80)] = rng.uniform(0.2, 1.0)
    trace += rng.uniform(0, 0.3, size=len(trace)) * (rng.random(len(trace)) < 0.2)
    cells = {
        "min_event_cells": int(rng.integers(1, 4)),
        "min_gap_cells": int(rng.integers(5, 90)),
        "confirm_gap_cells": 3,
    }
    for on in (0.3, 0.5, 0.8):
        off = round(on * 0.7, 4)
        assert event_onsets(trace, on, off, **cells) == _tracker_onsets(trace, on, off, **cells)


def test_event_onsets_edge_cases() -> None:
    cells = {"min_event_cells": 2, "min_gap_cells": 10, "confirm_gap_cells": 3}
    assert event_onsets(np.zeros(100), 0.5, 0.35, **cells) == []
    assert event_onsets(np.ones(100) * 0.9, 0.5, 0.35, **cells) == [0]
    one_blip = np.zeros(100)
    one_blip[50] = 0.9  # a single cell never lasts min_event_cells
    assert event_onsets(one_blip, 0.5, 0.35, **cells) == []


# ------------------------------------------------------------------------------------------ the curve


def _curve(fa: list[float], detected: list[float], budget: float = 1.0) -> OperatingCurve:
    thresholds = tuple(np.linspace(0.1, 0.9, len(fa)).round(3))
    return OperatingCurve(thresholds, tuple(fa), tuple(detected), background_s=7200.0, clips=10, budget_per_hour=budget)


def test_operating_point_for_a_rate() -> None:
    curve = _curve([9.0, 4.0, 1.0, 0.5, 0.0], [1.0, 1.0, 0.9, 0.6, 0.2])
    assert curve.thresholds[curve.index_for_rate(1.0)] == curve.thresholds[2]  # best detection within 1/h
    assert curve.index_for_rate(0.0) == 4
    assert curve.index_for_rate(100.0, prefer=0.1) == 0  # everything allowed: the best detection, nearest 0.1
    assert curve.index_for_rate(100.0) == 1  # ties (1.0 at both) go to the higher threshold without a preference
    never = _curve([5.0, 5.0, 5.0], [1.0, 1.0, 1.0])
    assert never.index_for_rate(1.0) == 2  # nothing within: the highest threshold
    flat = _curve([0.0] * 5, [1.0] * 5)
    assert flat.thresholds[flat.index_for_rate(1.0, prefer=0.52)] == 0.5  # equals: the one nearest the preference


def test_curve_validation() -> None:
    with pytest.raises(ValueError, match="ascend"):
        OperatingCurve((0.5, 0.4), (0.0, 0.0), (1.0, 1.0), background_s=10, clips=1, budget_per_hour=1)
    with pytest.raises(ValueError, match="same number"):
        OperatingCurve((0.5,), (0.0, 0.0), (1.0,), background_s=10, clips=1, budget_per_hour=1)


def test_class_calibration_keeps_its_curve() -> None:
    entry = ClassCalibration(on=0.5, off=0.35, band_hz=(100.0, 4000.0), pause_s=0.2, curve=_curve([2, 1, 0], [1, 1, 0]))
    again = ClassCalibration.from_dict(json.loads(json.dumps(entry.to_dict())))
    assert again == entry
    old = entry.to_dict()
    del old["curve"]  # what format-3 bundles hold
    assert ClassCalibration.from_dict(old).curve is None


def test_sensitivity() -> None:
    assert parse_sensitivity("HIGH") == "high" and parse_sensitivity("0.5") == 0.5
    for bad in ("loud", "-1", "nan"):
        with pytest.raises(ValueError, match="--sensitivity"):
            parse_sensitivity(bad)
    curve = _curve([8.0, 4.0, 1.0, 0.25, 0.0], [1.0, 0.95, 0.9, 0.6, 0.2], budget=1.0)
    calibration = {
        "dog": ClassCalibration.from_on(curve.thresholds[2], curve=curve),
        "cat": ClassCalibration.from_on(0.5),
    }
    dog = {name: sensitivity_thresholds(calibration, name)["dog"] for name in ("low", "normal", "high")}
    assert dog["low"] > dog["normal"] > dog["high"]  # 0.25/h, 1/h, 4/h on the curve
    assert dog == {"low": curve.thresholds[3], "normal": curve.thresholds[2], "high": curve.thresholds[1]}
    cat = {name: sensitivity_thresholds(calibration, name)["cat"] for name in ("low", "normal", "high")}
    assert cat["low"] > 0.5 == cat["normal"] > cat["high"]  # no curve: a shift in log-odds
    with pytest.raises(ValueError, match="no false-alarm curve"):
        sensitivity_thresholds(calibration, 2.0)
    only_dog = {"dog": calibration["dog"]}
    assert sensitivity_thresholds(only_dog, 8.0)["dog"] == curve.thresholds[0]
    on, off = run_time_thresholds(calibration, "normal", {"cat": 0.8})
    assert on == {"cat": 0.8} and off == {"cat": 0.56}  # normal: the bundle's own thresholds, except the override


def test_threshold_overrides() -> None:
    assert parse_threshold_overrides(["dog=0.7", " cat = 0.2"], ["dog", "cat"]) == {"dog": 0.7, "cat": 0.2}
    for bad, message in (("dog", "LABEL=VALUE"), ("cow=0.5", "no class 'cow'"), ("dog=1.5", "between 0 and 1")):
        with pytest.raises(ValueError, match=message):
            parse_threshold_overrides([bad], ["dog", "cat"])


# ------------------------------------------------------------------------------------------ on a real model


def _room(seconds: float, seed: int) -> np.ndarray:
    from snapkit.eval.synth import background

    return background(np.random.default_rng(seed), RATE, seconds=seconds)


def _clips(label: str, count: int, seed: int) -> list[np.ndarray]:
    from snapkit.eval.synth import make_clip

    rng = np.random.default_rng(seed)
    return [make_clip(label, rng, seconds=2.0, sample_rate_hz=RATE, snr_db=(10.0, 20.0)) for _ in range(count)]


def test_budget_on_background_with_and_without_the_sounds(detector_bundle_path: Path) -> None:
    """Quiet room: no false alarms, the sounds are found, thresholds never lowered on a few minutes. A "background"
    full of one target sound: that class's false alarms are counted, its threshold goes up to the top, and the
    result says the budget could not be met."""
    from snapkit.models.bundle import load_model

    bundle = load_model(detector_bundle_path)
    clips = {label: _clips(label, 4, seed=k) for k, label in enumerate(DETECTOR_CLASSES)}
    quiet = calibrate_to_budget(bundle, [_room(120.0, 1)], clips, max_false_alarms_per_hour=1.0)
    assert quiet.background_s == pytest.approx(120.0) and not quiet.supported
    share = 1.0 / len(DETECTOR_CLASSES)
    for row in quiet.rows:
        entry = quiet.calibration[row.label]
        curve = entry.curve
        assert curve is not None and curve.thresholds == THRESHOLD_GRID
        assert entry.on == row.threshold and entry.off == pytest.approx(entry.on * 0.7, abs=1e-4)
        assert max(curve.detection_rate) >= 0.75, row  # the clips are found, at some threshold
        assert row.false_alarms_per_hour <= share  # within the class's share of the budget
        assert row.threshold >= row.previous_threshold  # short background: only ever raised
        # ... and only as far as the background forced it: every lower point from the old threshold up either
        # raised a false alarm or detected less.
        best = row.detection_rate
        for t, fa, found in zip(curve.thresholds, curve.false_alarms_per_hour, curve.detection_rate, strict=True):
            if row.previous_threshold + 0.03 <= t < row.threshold:
                assert fa > share or found < best - 0.01, (row, t, fa, found)
    assert "Only 2.0 minutes" in quiet.notes[0]

    beeps = np.concatenate([np.concatenate([c, _room(6.0, 10 + i)]) for i, c in enumerate(_clips("beep", 10, 7))])
    noisy = calibrate_to_budget(bundle, [beeps], clips, max_false_alarms_per_hour=1.0)
    beep = next(row for row in noisy.rows if row.label == "beep")
    curve = noisy.calibration["beep"].curve
    assert curve is not None and curve.false_alarms_per_hour[0] >= 5 * 3600 / len(beeps) * RATE
    # Every beep in the "background" is a false alarm: the threshold climbs until they stop, and the beeps with them.
    assert beep.threshold > 0.9 and beep.false_alarms_per_hour <= 1.0 / len(DETECTOR_CLASSES)
    assert beep.detection_rate < max(curve.detection_rate)
    assert any("beep detects" in note and "snapkit mine" in note for note in noisy.notes)


def test_long_background_may_lower_a_threshold(detector_bundle_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With enough background, the threshold follows the curve, below the clip-calibrated one if that detects more.
    (MIN_BACKGROUND_S is lowered so the test scores two minutes, not ten.)"""
    import snapkit.detection.operating as operating
    from snapkit.models.bundle import load_model

    bundle = load_model(detector_bundle_path)
    strict = {label: ClassCalibration.from_on(0.97) for label in bundle.config.labels}
    bundle.calibration = strict
    clips = {label: _clips(label, 4, seed=k) for k, label in enumerate(DETECTOR_CLASSES)}
    monkeypatch.setattr(operating, "MIN_BACKGROUND_S", 60.0)
    result = calibrate_to_budget(bundle, [_room(120.0, 2)], clips, max_false_alarms_per_hour=1.0)
    assert result.supported and not any("Only" in note for note in result.notes)
    lowered = [row for row in result.rows if row.threshold < 0.97]
    assert lowered and all(row.detection_rate >= 0.75 for row in lowered)
    assert MIN_BACKGROUND_S == 600.0


def test_calibrate_command(detector_bundle_path: Path, tmp_path: Path) -> None:
    """`snapkit calibrate` through the real CLI: table, PNG, TensorBoard, the bundle written with its curves, and
    `detect --sensitivity/--threshold` reading them."""
    from snapkit.eval.synth import make_dataset
    from snapkit.models.bundle import load_model

    data = tmp_path / "data"
    make_dataset(data, classes=DETECTOR_CLASSES, clips_per_class=3, background_clips=3, seed=5)
    room = tmp_path / "room.wav"
    sf.write(room, _room(60.0, 3), RATE)
    out = tmp_path / "calibrated" / "model.snapkit"
    original = detector_bundle_path.read_bytes()
    result = run_cli("calibrate", str(detector_bundle_path), str(room), "--data", str(data), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (
        "Thresholds for the false-alarm budget" in result.stdout
        and "record at least 10 minutes" in result.stdout.lower()
    )
    assert (out.parent / "calibration.png").stat().st_size > 1000
    assert list((out.parent / "tensorboard" / "calibration").glob("events.out.tfevents.*"))
    bundle = load_model(out)
    assert all(entry.curve is not None for entry in bundle.calibration.values())
    assert bundle.training["false_alarm_budget"]["max_false_alarms_per_hour"] == 1.0
    assert detector_bundle_path.read_bytes() == original  # --out: the model given is left as it was

    stream = tmp_path / "stream.wav"
    sf.write(stream, np.concatenate([_room(1.0, 4), _clips("beep", 1, 9)[0], _room(1.0, 5)]), RATE)
    shown = run_cli("detect", str(out), str(stream), "--sensitivity", "high", "--threshold", "beep=0.61")
    assert shown.returncode == 0, shown.stderr
    assert (
        "beep 0.61/0.43" in shown.stdout and "sensitivity high" in shown.stdout and "--threshold: beep" in shown.stdout
    )
    bad = run_cli("detect", str(out), str(stream), "--threshold", "cow=0.5")
    assert bad.returncode == 2 and "no class 'cow'" in bad.stderr
    bad = run_cli("detect", str(out), str(stream), "--sensitivity", "loud")
    assert bad.returncode == 2 and "low, normal, high" in bad.stderr

    json_out = run_cli("calibrate", str(out), "--data", str(data), "--json", "--max-false-alarms-per-hour", "2")
    assert json_out.returncode == 0, json_out.stderr
    table = json.loads(json_out.stdout)["table"]
    assert {row["class"] for row in table} == set(DETECTOR_CLASSES)


def test_calibrate_without_background_says_what_to_record(detector_bundle_path: Path, tmp_path: Path) -> None:
    from snapkit.eval.synth import make_dataset

    data = tmp_path / "data"
    make_dataset(data, classes=DETECTOR_CLASSES, clips_per_class=3, background_clips=0, seed=5)
    result = run_cli("calibrate", str(detector_bundle_path), "--data", str(data), "--out", str(tmp_path / "m.snapkit"))
    assert result.returncode == 2
    assert "no background audio" in result.stderr and "snapkit record background" in result.stderr


@pytest.mark.parametrize("budget", ["0", "-1", "nan"])
def test_a_budget_of_zero_or_below_is_one_sentence_before_any_work(budget: str, tmp_path: Path) -> None:
    from snapkit.errors import SnapkitError
    from snapkit.training.train import TrainSettings

    # The model file does not exist: the budget is refused before anything is read.
    result = run_cli("calibrate", str(tmp_path / "none.snapkit"), f"--max-false-alarms-per-hour={budget}")
    assert result.returncode == 2
    assert "--max-false-alarms-per-hour must be more than 0" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(SnapkitError, match="must be more than 0"):
        TrainSettings(max_false_alarms_per_hour=float(budget))
