"""Several models on one stream: ``listen MODEL MODEL ...``.

:func:`build_detector` turns the bundles into as few detectors as it can: bundles that share a backbone (the same
pretrained network and weights, run in windows: :func:`snapkit.models.stack.can_share_backbone`) become one
:class:`~snapkit.models.stack.HeadStack` in one :class:`Detector`, so the backbone runs once per window however many
heads read it; the others (a ConvNet, which streams) get a detector each. :class:`DetectorGroup` runs those
detectors side by side on the same chunks and numbers their events as one stream, so everything downstream (the
live runner, logs, clips, notifiers) sees one detector.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from snapkit.detection.detector import Detector, DetectorSettings
from snapkit.detection.events import EventUpdate
from snapkit.errors import SnapkitError
from snapkit.models.stack import can_share_backbone, stack_bundles


class DetectorGroup:
    """Detectors run side by side on one stream: every chunk goes to each; event ids are renumbered in the order the
    updates come, so they are unique across members. Labels never repeat across members (``build_detector``)."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        if not detectors:
            raise ValueError("DetectorGroup needs at least one detector.")
        rates = {d.sample_rate_hz for d in detectors}
        if len(rates) != 1:
            raise ValueError(f"DetectorGroup: the detectors expect different input rates {sorted(rates)}.")
        self.members = tuple(detectors)
        self.sample_rate_hz = detectors[0].sample_rate_hz
        self.labels: tuple[str, ...] = tuple(label for d in detectors for label in d.labels)
        self.thresholds: dict[str, tuple[float, float]] = {k: v for d in detectors for k, v in d.thresholds.items()}
        self._ids: dict[tuple[int, int], int] = {}
        self._next_id = 1

    def describe(self) -> str:
        return "; ".join(f"{', '.join(d.labels)}: {d.describe()}" for d in self.members)

    @property
    def position_s(self) -> float:
        return self.members[0].position_s

    @property
    def latest_probabilities(self) -> dict[str, float]:
        return {k: v for d in self.members for k, v in d.latest_probabilities.items()}

    def push(self, chunk: np.ndarray) -> list[EventUpdate]:
        return self._gather([d.push(chunk) for d in self.members])

    def flush(self) -> list[EventUpdate]:
        return self._gather([d.flush() for d in self.members])

    def skip(self, samples: int) -> list[EventUpdate]:
        return self._gather([d.skip(samples) for d in self.members])

    def reset(self) -> None:
        for d in self.members:
            d.reset()
        self._ids.clear()
        self._next_id = 1

    def _gather(self, per_member: list[list[EventUpdate]]) -> list[EventUpdate]:
        """The members' updates as one stream's: in order of when they were decided, with group-wide ids."""
        tagged = [(u.reported_at_s, i, u) for i, updates in enumerate(per_member) for u in updates]
        out = []
        for _, member, update in sorted(tagged, key=lambda t: (t[0], t[1])):
            key = (member, update.event_id)
            if key not in self._ids:
                self._ids[key] = self._next_id
                self._next_id += 1
            event_id = self._ids.pop(key) if update.kind == "end" else self._ids[key]
            out.append(dataclasses.replace(update, event_id=event_id))
        return out


def build_detector(
    bundles: Sequence[object],
    settings: Sequence[DetectorSettings],
    *,
    sample_rate_hz: int | None = None,
    names: Sequence[str] | None = None,
) -> Detector | DetectorGroup:
    """One detector for ``bundles`` (``settings[i]`` for ``bundles[i]``): a plain :class:`Detector` for one bundle,
    else a :class:`DetectorGroup` in which bundles sharing a backbone run as one stacked model. ``names`` (the
    files, for messages) default to "model 1", "model 2" ... Two bundles with a class of the same name are refused
    in one sentence: their events could not be told apart."""
    if len(bundles) != len(settings):
        raise ValueError("build_detector: one DetectorSettings per bundle.")
    check_distinct_labels(bundles, names)
    if len(bundles) == 1:
        return Detector(bundles[0], settings[0], sample_rate_hz=sample_rate_hz)
    groups: list[list[int]] = []
    for i, bundle in enumerate(bundles):
        for group in groups:
            first = group[0]
            if can_share_backbone(bundles[first], bundle) and _same_run_settings(settings[first], settings[i]):
                group.append(i)
                break
        else:
            groups.append([i])
    detectors = []
    for group in groups:
        if len(group) == 1:
            detectors.append(Detector(bundles[group[0]], settings[group[0]], sample_rate_hz=sample_rate_hz))
            continue
        stacked = stack_bundles([bundles[i] for i in group])
        merged = dataclasses.replace(
            settings[group[0]],
            on_thresholds={k: v for i in group for k, v in settings[i].on_thresholds.items()},
            off_thresholds={k: v for i in group for k, v in settings[i].off_thresholds.items()},
        )
        detectors.append(Detector(stacked, merged, sample_rate_hz=sample_rate_hz))
    return detectors[0] if len(detectors) == 1 else DetectorGroup(detectors)


def check_distinct_labels(bundles: Sequence[object], names: Sequence[str] | None = None) -> None:
    """SnapkitError in one sentence when two of ``bundles`` (``names``: their files) detect a class of the same name:
    their events could not be told apart."""
    names = list(names or [f"model {i + 1}" for i in range(len(bundles))])
    seen: dict[str, str] = {}
    for name, bundle in zip(names, bundles, strict=True):
        for label in bundle.config.labels:  # type: ignore[attr-defined]
            if label in seen:
                raise SnapkitError(
                    f"{seen[label]} and {name} both detect {label!r}; their events could not be told apart, so "
                    "listen with one of them (or retrain one with another class name)."
                )
            seen[label] = name


def _same_run_settings(a: DetectorSettings, b: DetectorSettings) -> bool:
    """Settings that may run as one detector: equal but for the per-class thresholds."""
    blank = {"on_thresholds": {}, "off_thresholds": {}}
    return dataclasses.replace(a, **blank) == dataclasses.replace(b, **blank)
