"""What a bundle stores about each class for detection: its thresholds and what training measured on its clips.

One typed record per class, :class:`ClassCalibration`, written by ``snapkit train`` and read by the detector,
``predict``/``evaluate``, exports and the CLI, in place of the loose ``{"on": ..., "off": ...}`` dicts and the
``training["class_profiles"]`` entries bundles before format 3 carried (:func:`from_legacy` reads those).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Without calibration (no held-out clips, or an old bundle without thresholds): the usual 0.5 sigmoid threshold,
# and an off-threshold this fraction of it, so an event does not flicker off on a dip.
DEFAULT_ON_THRESHOLD = 0.5
OFF_FRACTION = 0.7


@dataclass(frozen=True)
class ClassCalibration:
    """One class's detection settings.

    Attributes:
        on: Frame probability (0-1) at which an event of the class starts.
        off: Frame probability below which it ends (the hysteresis: ``0 < off <= on < 1``).
        band_hz: ``(low, high)`` frequency range of the class's energy, measured on its training clips; the
            detector refines event edges in it. None: not measured (the whole spectrum).
        pause_s: The longest pause inside the class's training clips (e.g. between a smoke alarm's beeps): events
            closer than this (plus a margin) are one event.
    """

    on: float = DEFAULT_ON_THRESHOLD
    off: float = round(DEFAULT_ON_THRESHOLD * OFF_FRACTION, 4)
    band_hz: tuple[float, float] | None = None
    pause_s: float = 0.0

    def __post_init__(self) -> None:
        on, off = float(self.on), float(self.off)
        if not (math.isfinite(on) and math.isfinite(off) and 0.0 < off <= on < 1.0):
            raise ValueError(f"A class's thresholds need 0 < off <= on < 1, got on={self.on}, off={self.off}.")
        object.__setattr__(self, "on", on)
        object.__setattr__(self, "off", off)
        if self.band_hz is not None:
            low, high = (float(v) for v in self.band_hz)
            if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low < high):
                raise ValueError(f"A class's band_hz needs 0 <= low < high, got {self.band_hz}.")
            object.__setattr__(self, "band_hz", (low, high))
        pause = float(self.pause_s)
        if not (math.isfinite(pause) and pause >= 0.0):
            raise ValueError(f"A class's pause_s must be 0 or more seconds, got {self.pause_s}.")
        object.__setattr__(self, "pause_s", pause)

    @classmethod
    def from_on(cls, on: float, **measured: Any) -> ClassCalibration:
        """The calibration with on-threshold ``on`` and the usual off-threshold (``OFF_FRACTION * on``)."""
        return cls(on=on, off=round(on * OFF_FRACTION, 4), **measured)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the bundle file (and for JSON)."""
        return {
            "on": self.on,
            "off": self.off,
            "band_hz": None if self.band_hz is None else [self.band_hz[0], self.band_hz[1]],
            "pause_s": self.pause_s,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ClassCalibration:
        """Reads :meth:`to_dict`'s output; ValueError on unknown or malformed entries."""
        unknown = set(values) - {"on", "off", "band_hz", "pause_s"}
        if unknown:
            raise ValueError(f"unknown calibration entries {sorted(unknown)}")
        band = values.get("band_hz")
        try:
            return cls(
                on=float(values["on"]),
                off=float(values["off"]),
                band_hz=None if band is None else (float(band[0]), float(band[1])),
                pause_s=float(values.get("pause_s", 0.0)),
            )
        except (KeyError, TypeError, IndexError) as error:
            raise ValueError(f"a calibration needs numbers 'on' and 'off', got {dict(values)!r}") from error


Calibration = dict[str, ClassCalibration]


def default_calibration(labels: Sequence[str]) -> Calibration:
    """The uncalibrated settings for every label."""
    return {label: ClassCalibration() for label in labels}


def check_calibration(calibration: Mapping[str, ClassCalibration], labels: Sequence[str]) -> Calibration:
    """``calibration`` as a dict in ``labels`` order, or ValueError unless it has exactly one entry per label."""
    if not isinstance(calibration, Mapping) or set(calibration) != set(labels):
        given = sorted(calibration) if isinstance(calibration, Mapping) else calibration
        raise ValueError(f"the calibration must have exactly one entry per label {list(labels)}, got {given}.")
    for label in labels:
        if not isinstance(calibration[label], ClassCalibration):
            raise ValueError(f"calibration[{label!r}] must be a ClassCalibration, got {calibration[label]!r}.")
    return {label: calibration[label] for label in labels}


def from_legacy(
    thresholds: Mapping[str, Any] | None, profiles: Mapping[str, Any] | None, labels: Sequence[str]
) -> Calibration:
    """The calibration of a format-1/2 bundle: ``thresholds`` ``{label: {"on", "off"}}`` (None: defaults) and
    ``training["class_profiles"]`` ``{label: {"band_hz", "pause_s"}}`` (None or missing labels: not measured)."""
    if thresholds is not None and (not isinstance(thresholds, Mapping) or set(thresholds) != set(labels)):
        given = sorted(thresholds) if isinstance(thresholds, Mapping) else thresholds
        raise ValueError(f"thresholds must have exactly one entry per label {list(labels)}, got {given}.")
    result: Calibration = {}
    for label in labels:
        entry = dict((thresholds or {}).get(label) or {"on": DEFAULT_ON_THRESHOLD, "off": ClassCalibration().off})
        profile = (profiles or {}).get(label) or {}
        entry["band_hz"] = profile.get("band_hz")
        entry["pause_s"] = profile.get("pause_s", 0.0)
        result[label] = ClassCalibration.from_dict(entry)
    return result


def thresholds_in_force(
    calibration: Mapping[str, ClassCalibration],
    on_overrides: Mapping[str, float] | None = None,
    off_overrides: Mapping[str, float] | None = None,
) -> dict[str, tuple[float, float]]:
    """Per class ``(on, off)``: the calibration's, with run-time overrides where given (what the detector uses)."""
    on_overrides, off_overrides = on_overrides or {}, off_overrides or {}
    return {
        label: (float(on_overrides.get(label, entry.on)), float(off_overrides.get(label, entry.off)))
        for label, entry in calibration.items()
    }
