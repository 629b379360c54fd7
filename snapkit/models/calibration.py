"""What a bundle stores about each class for detection: its thresholds and what training measured on its clips.

One typed record per class, :class:`ClassCalibration`, written by ``snapkit train`` (and ``snapkit calibrate``) and
read by the detector, ``predict``/``evaluate``, exports and the CLI, in place of the loose ``{"on": ..., "off": ...}``
dicts and the ``training["class_profiles"]`` entries bundles before format 3 carried (:func:`from_legacy` reads
those). Since format 4 it may also hold the class's :class:`OperatingCurve`: false alarms per hour on background
audio and detection rate at each threshold, from which ``--sensitivity`` picks a point at run time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from snapkit.errors import SnapkitError

# Without calibration (no held-out clips, or an old bundle without thresholds): the usual 0.5 sigmoid threshold,
# and an off-threshold this fraction of it, so an event does not flicker off on a dip.
DEFAULT_ON_THRESHOLD = 0.5
OFF_FRACTION = 0.7


@dataclass(frozen=True)
class OperatingCurve:
    """One class's trade-off measured by ``snapkit calibrate``: at each on-threshold (ascending), its false alarms per
    hour on background audio and the share of its clips detected when mixed into that background.

    Attributes:
        thresholds: on-thresholds ``[points]``, ascending, each in (0, 1).
        false_alarms_per_hour: ``[points]``, this class's events per hour of background audio.
        detection_rate: ``[points]``, 0-1.
        background_s: seconds of background audio the false alarms were counted on.
        clips: clips the detection rate was measured on.
        budget_per_hour: the class's share of the false-alarm budget the bundle's thresholds were chosen for.
    """

    thresholds: tuple[float, ...]
    false_alarms_per_hour: tuple[float, ...]
    detection_rate: tuple[float, ...]
    background_s: float
    clips: int
    budget_per_hour: float

    def __post_init__(self) -> None:
        n = len(self.thresholds)
        if not n or len(self.false_alarms_per_hour) != n or len(self.detection_rate) != n:
            raise ValueError("an operating curve needs the same number (at least one) of thresholds and rates.")
        for name in ("thresholds", "false_alarms_per_hour", "detection_rate"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if any(not 0.0 < t < 1.0 for t in self.thresholds) or list(self.thresholds) != sorted(self.thresholds):
            raise ValueError("an operating curve's thresholds must ascend within (0, 1).")

    @property
    def background_hours(self) -> float:
        return self.background_s / 3600.0

    def index_for_rate(self, false_alarms_per_hour: float, prefer: float | None = None) -> int:
        """The point with the highest detection rate whose false alarms stay within ``false_alarms_per_hour``; among
        points within 0.01 of that rate, the one nearest ``prefer`` (in log-odds; None: the highest threshold). The
        highest threshold when no point is within the rate.

        The tie-break matters: measured on a few clips the detection rate is flat over a wide range, and neither end
        of the range is a safe choice (the lowest sits on the edge of the budget, the highest on the edge of
        missing). The threshold calibrated on clips is the natural default, moved only as far as the budget or a
        better detection rate asks."""
        within = [i for i, fa in enumerate(self.false_alarms_per_hour) if fa <= false_alarms_per_hour + 1e-9]
        if not within:
            return len(self.thresholds) - 1
        best = max(self.detection_rate[i] for i in within)
        good = [i for i in within if self.detection_rate[i] >= best - 0.01]
        if prefer is None:
            return max(good)
        target = _logit(prefer)
        return min(good, key=lambda i: (abs(_logit(self.thresholds[i]) - target), -i))

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": list(self.thresholds),
            "false_alarms_per_hour": list(self.false_alarms_per_hour),
            "detection_rate": list(self.detection_rate),
            "background_s": self.background_s,
            "clips": self.clips,
            "budget_per_hour": self.budget_per_hour,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> OperatingCurve:
        try:
            return cls(
                thresholds=tuple(values["thresholds"]),
                false_alarms_per_hour=tuple(values["false_alarms_per_hour"]),
                detection_rate=tuple(values["detection_rate"]),
                background_s=float(values["background_s"]),
                clips=int(values["clips"]),
                budget_per_hour=float(values["budget_per_hour"]),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed operating curve {dict(values)!r}") from error


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
        curve: The false-alarm / detection trade-off ``snapkit calibrate`` measured (None: not calibrated on
            background audio); ``on`` is then the point chosen for the budget.
    """

    on: float = DEFAULT_ON_THRESHOLD
    off: float = round(DEFAULT_ON_THRESHOLD * OFF_FRACTION, 4)
    band_hz: tuple[float, float] | None = None
    pause_s: float = 0.0
    curve: OperatingCurve | None = None

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
            "curve": None if self.curve is None else self.curve.to_dict(),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ClassCalibration:
        """Reads :meth:`to_dict`'s output; ValueError on unknown or malformed entries."""
        unknown = set(values) - {"on", "off", "band_hz", "pause_s", "curve"}
        if unknown:
            raise ValueError(f"unknown calibration entries {sorted(unknown)}")
        band = values.get("band_hz")
        try:
            return cls(
                on=float(values["on"]),
                off=float(values["off"]),
                band_hz=None if band is None else (float(band[0]), float(band[1])),
                pause_s=float(values.get("pause_s", 0.0)),
                curve=None if values.get("curve") is None else OperatingCurve.from_dict(values["curve"]),
            )
        except (KeyError, TypeError, IndexError) as error:
            raise ValueError(f"a calibration needs numbers 'on' and 'off', got {dict(values)!r}") from error


Calibration = dict[str, ClassCalibration]


def check_budget(max_false_alarms_per_hour: float) -> float:
    """The false-alarm budget, or one sentence saying what it must be."""
    if not (math.isfinite(max_false_alarms_per_hour) and max_false_alarms_per_hour > 0):
        raise SnapkitError(
            f"--max-false-alarms-per-hour must be more than 0 false alarms an hour (e.g. 1), not "
            f"{max_false_alarms_per_hour:g}: no finite recording can show a detector never cries wolf."
        )
    return max_false_alarms_per_hour


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


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


# --sensitivity: named points, as multiples of the false-alarm budget the bundle was calibrated for; without a curve,
# a shift of the on-threshold in log-odds.
SENSITIVITY_BUDGET_FACTOR = {"low": 0.25, "normal": 1.0, "high": 4.0}
SENSITIVITY_LOGIT_SHIFT = {"low": 1.0, "normal": 0.0, "high": -1.0}


def parse_sensitivity(text: str) -> str | float:
    """``low``, ``normal``, ``high`` or a total number of false alarms per hour (``0.5``); ValueError otherwise."""
    word = text.strip().lower()
    if word in SENSITIVITY_BUDGET_FACTOR:
        return word
    try:
        rate = float(word)
    except ValueError:
        raise ValueError(
            f"--sensitivity {text!r}: give low, normal, high or a number of false alarms per hour (e.g. 0.5)."
        ) from None
    if not (math.isfinite(rate) and rate >= 0):
        raise ValueError(f"--sensitivity {text!r}: false alarms per hour must be zero or more.")
    return rate


def sensitivity_thresholds(calibration: Mapping[str, ClassCalibration], sensitivity: str | float) -> dict[str, float]:
    """Per class the on-threshold for ``sensitivity`` (see :func:`parse_sensitivity`).

    With an operating curve: ``low``/``normal``/``high`` scale each class's budget share by
    ``SENSITIVITY_BUDGET_FACTOR``; a number is a total rate, shared equally by the classes. Without a curve the named
    points shift the threshold by ``SENSITIVITY_LOGIT_SHIFT`` in log-odds, and a number is refused (ValueError)."""
    out: dict[str, float] = {}
    for label, entry in calibration.items():
        curve = entry.curve
        if curve is None:
            if not isinstance(sensitivity, str):
                raise ValueError(
                    f"--sensitivity {sensitivity}: class {label!r} has no false-alarm curve; run `snapkit calibrate` "
                    "on the model first, or use low, normal or high."
                )
            logit = _logit(entry.on) + SENSITIVITY_LOGIT_SHIFT[sensitivity]
            out[label] = round(min(0.99, max(0.01, 1 / (1 + math.exp(-logit)))), 4)
            continue
        if isinstance(sensitivity, str):
            rate = curve.budget_per_hour * SENSITIVITY_BUDGET_FACTOR[sensitivity]
            if sensitivity == "normal":
                out[label] = entry.on
                continue
        else:
            rate = sensitivity / max(1, len(calibration))
        out[label] = curve.thresholds[curve.index_for_rate(rate, prefer=entry.on)]
    return out


def parse_threshold_overrides(texts: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """``["dog=0.7", ...]`` -> ``{"dog": 0.7}``; ValueError naming the bad entry (unknown class, not 0 < value < 1)."""
    out: dict[str, float] = {}
    for text in texts:
        label, sep, value = text.partition("=")
        label = label.strip()
        if not sep or not label:
            raise ValueError(f"--threshold {text!r}: write it as LABEL=VALUE, e.g. --threshold {labels[0]}=0.6.")
        if label not in labels:
            raise ValueError(f"--threshold {text!r}: the model has no class {label!r}; its classes are {list(labels)}.")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not (0.0 < number < 1.0):
            raise ValueError(f"--threshold {text!r}: the threshold is a probability between 0 and 1, e.g. 0.6.")
        out[label] = number
    return out


def run_time_thresholds(
    calibration: Mapping[str, ClassCalibration],
    sensitivity: str | float = "normal",
    overrides: Mapping[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """``(on, off)`` overrides per class for ``DetectorSettings``: the sensitivity's point on each class's curve
    (nothing for ``normal``: the bundle's own thresholds), then the explicit ``overrides`` (on-thresholds). Each
    overridden class's off-threshold is the usual fraction of its on-threshold."""
    on = {} if sensitivity == "normal" else sensitivity_thresholds(calibration, sensitivity)
    on.update(overrides or {})
    return on, {label: round(value * OFF_FRACTION, 4) for label, value in on.items()}
