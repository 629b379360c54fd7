"""Per-class calibration, the typed record a bundle keeps for detection (snapkit.models.calibration)."""

from __future__ import annotations

import pytest

from snapkit.models.calibration import (
    ClassCalibration,
    default_calibration,
    from_legacy,
    thresholds_in_force,
)


def test_the_record_round_trips_and_checks_its_values() -> None:
    entry = ClassCalibration(on=0.6, off=0.42, band_hz=(300, 4000), pause_s=0.5)
    assert entry.band_hz == (300.0, 4000.0)  # numbers become floats
    assert ClassCalibration.from_dict(entry.to_dict()) == entry
    assert ClassCalibration.from_on(0.6) == ClassCalibration(on=0.6, off=0.42)
    with pytest.raises(ValueError, match="off <= on"):
        ClassCalibration(on=1.0, off=0.5)
    with pytest.raises(ValueError, match="off <= on"):
        ClassCalibration(on=float("nan"), off=0.5)
    with pytest.raises(ValueError, match="needs numbers"):
        ClassCalibration.from_dict({"on": 0.5})


def test_legacy_thresholds_and_profiles_become_the_record() -> None:
    thresholds = {"a": {"on": 0.6, "off": 0.4}, "b": {"on": 0.5, "off": 0.35}}
    profiles = {"a": {"band_hz": [100.0, 900.0], "pause_s": 0.3}}  # "b" was never measured
    assert from_legacy(thresholds, profiles, ["a", "b"]) == {
        "a": ClassCalibration(on=0.6, off=0.4, band_hz=(100.0, 900.0), pause_s=0.3),
        "b": ClassCalibration(on=0.5, off=0.35),
    }
    assert from_legacy(None, None, ["a"]) == default_calibration(["a"])
    with pytest.raises(ValueError, match="one entry per label"):
        from_legacy({"a": {"on": 0.6, "off": 0.4}}, None, ["a", "b"])


def test_run_time_overrides_replace_only_what_they_name() -> None:
    calibration = {"a": ClassCalibration(on=0.6, off=0.4), "b": ClassCalibration()}
    assert thresholds_in_force(calibration, {"a": 0.8}, {"b": 0.2}) == {"a": (0.8, 0.4), "b": (0.5, 0.2)}
