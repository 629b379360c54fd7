"""How good are detected events against a reference annotation: DCASE-style event- and segment-based scores.

Event-based (as ``sed_eval.sound_event.EventBasedMetrics`` with its default ``"optimal"`` matching): a reference
and an estimated event match when they have the same label, their onsets differ by at most ``onset_collar_s``
and (unless ``evaluate_offset=False``) their offsets by at most ``max(offset_collar_s, offset_collar_rate *
reference duration)``, so a long event is not failed for an offset a short one would be. Each event matches at most
one other; among all such one-to-one matchings the largest is taken, so the result does not depend on the order of
the lists. Matched pairs are true positives, unmatched estimates false positives, unmatched references false
negatives.

Segment-based (as ``sed_eval.sound_event.SegmentBasedMetrics``): the time line is cut into segments of
``segment_s``; a class is active in a segment if any of its events overlaps it, and each (segment, class) is then
a true positive, false positive or false negative.

One deliberate difference from sed_eval: F1 is ``2·TP / (2·TP + FP + FN)``, which is 0 (not undefined) for a class
with no reference events but some false alarms, and so counts against the macro average instead of dropping out.
It is undefined (NaN) only for a class with no events at all.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from snapkit.detection.events import Event

DEFAULT_ONSET_COLLAR_S = 0.2
DEFAULT_OFFSET_COLLAR_S = 0.2
DEFAULT_OFFSET_COLLAR_RATE = 0.5
SECONDS_PER_HOUR = 3600.0
# Times come out of float arithmetic (frames x hop, 0.3 / 0.1 = 2.9999999999999996): a difference within a
# nanosecond of a collar or a segment boundary counts as on it, so "exactly 0.2 s late" is inside a 0.2 s collar.
_TIME_EPS_S = 1e-9


@dataclass(frozen=True)
class Counts:
    """True positives, false positives and false negatives, and the figures that follow from them.

    Precision and recall are NaN when their denominator is 0; F1 is NaN only when all three counts are 0.
    """

    tp: int
    fp: int
    fn: int

    @property
    def n_reference(self) -> int:
        return self.tp + self.fn

    @property
    def n_estimated(self) -> int:
        return self.tp + self.fp

    @property
    def precision(self) -> float:
        return self.tp / self.n_estimated if self.n_estimated else math.nan

    @property
    def recall(self) -> float:
        return self.tp / self.n_reference if self.n_reference else math.nan

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else math.nan

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def to_dict(self) -> dict[str, float]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def _macro_f1(per_class: dict[str, Counts]) -> float:
    """Mean F1 over the classes where it is defined; NaN if there is none."""
    values = [counts.f1 for counts in per_class.values() if not math.isnan(counts.f1)]
    return statistics.fmean(values) if values else math.nan


@dataclass(frozen=True)
class Matching:
    """The one-to-one pairing of reference and estimated events.

    ``pairs`` holds ``(reference index, estimated index)`` into the lists given to :func:`match_events`, ordered by
    reference onset; ``missed`` the reference indices left unmatched (false negatives), ``false_alarms`` the
    estimated indices left unmatched (false positives), both in ascending order.
    """

    reference: tuple[Event, ...]
    estimated: tuple[Event, ...]
    pairs: tuple[tuple[int, int], ...]
    missed: tuple[int, ...]
    false_alarms: tuple[int, ...]

    def matched_events(self) -> list[tuple[Event, Event]]:
        """``[(reference event, estimated event)]`` for every match."""
        return [(self.reference[r], self.estimated[e]) for r, e in self.pairs]


@dataclass(frozen=True)
class EventScores:
    """Event-based scores. ``per_class`` maps label -> counts; ``overall`` sums them (micro average);
    ``macro_f1`` is the mean of per-class F1. ``onset_errors_s`` and ``offset_errors_s`` are, per matched pair in
    ``matching.pairs`` order, estimated minus reference time in seconds: positive means the detector was late."""

    per_class: dict[str, Counts]
    overall: Counts
    macro_f1: float
    onset_errors_s: tuple[float, ...]
    offset_errors_s: tuple[float, ...]
    matching: Matching

    @property
    def median_abs_onset_error_s(self) -> float:
        return _median_abs(self.onset_errors_s)

    @property
    def mean_abs_onset_error_s(self) -> float:
        return _mean_abs(self.onset_errors_s)

    @property
    def median_abs_offset_error_s(self) -> float:
        return _median_abs(self.offset_errors_s)

    @property
    def mean_abs_offset_error_s(self) -> float:
        return _mean_abs(self.offset_errors_s)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able figures (no event lists)."""
        return {
            "per_class": {label: counts.to_dict() for label, counts in self.per_class.items()},
            "overall": self.overall.to_dict(),
            "macro_f1": self.macro_f1,
            "median_abs_onset_error_s": self.median_abs_onset_error_s,
            "mean_abs_onset_error_s": self.mean_abs_onset_error_s,
            "median_abs_offset_error_s": self.median_abs_offset_error_s,
            "mean_abs_offset_error_s": self.mean_abs_offset_error_s,
        }


@dataclass(frozen=True)
class SegmentScores:
    """Segment-based scores: counts of (segment, class) cells, per class and summed (``overall``, micro average);
    ``macro_f1`` is the mean of per-class F1. ``n_segments`` segments of ``segment_s`` seconds were scored."""

    per_class: dict[str, Counts]
    overall: Counts
    macro_f1: float
    segment_s: float
    n_segments: int

    def to_dict(self) -> dict[str, object]:
        return {
            "per_class": {label: counts.to_dict() for label, counts in self.per_class.items()},
            "overall": self.overall.to_dict(),
            "macro_f1": self.macro_f1,
            "segment_s": self.segment_s,
            "n_segments": self.n_segments,
        }


def _median_abs(errors: Sequence[float]) -> float:
    return statistics.median(abs(e) for e in errors) if errors else math.nan


def _mean_abs(errors: Sequence[float]) -> float:
    return statistics.fmean(abs(e) for e in errors) if errors else math.nan


def _complete(events: Iterable[Event], what: str) -> list[Event]:
    """``events`` as a list, or ValueError if one is still open (no offset): only finished events can be scored."""
    events = list(events)
    for event in events:
        if event.offset_s is None:
            raise ValueError(f"{what} event {event} has no offset; score only finished events ('end' updates).")
    return events


def _class_labels(reference: Sequence[Event], estimated: Sequence[Event], labels: Sequence[str] | None) -> list[str]:
    """``labels`` (in that order) followed by any other label that occurs, sorted."""
    given = list(labels or [])
    seen = {event.label for event in [*reference, *estimated]} - set(given)
    return given + sorted(seen)


def _is_match(
    ref: Event,
    est: Event,
    onset_collar_s: float,
    offset_collar_s: float,
    offset_collar_rate: float,
    evaluate_offset: bool,
) -> bool:
    """The DCASE rule for one (reference, estimate) pair of the same label."""
    if abs(est.onset_s - ref.onset_s) > onset_collar_s + _TIME_EPS_S:
        return False
    if not evaluate_offset:
        return True
    assert ref.offset_s is not None and est.offset_s is not None  # checked by _complete
    collar_s = max(offset_collar_s, offset_collar_rate * (ref.offset_s - ref.onset_s))
    return abs(est.offset_s - ref.offset_s) <= collar_s + _TIME_EPS_S


def _maximum_matching(candidates: list[list[int]]) -> dict[int, int]:
    """A maximum-cardinality one-to-one matching: ``candidates[r]`` lists the estimates reference ``r`` may match,
    preferred first. Returns ``{estimate: reference}``.

    Kuhn's augmenting-path algorithm: each reference in turn looks for a free estimate, re-seating earlier
    references along an alternating path if that frees one. Unlike greedy "first come, first served" matching it
    never loses a match because an earlier reference took an estimate it did not need. The search is an explicit
    stack rather than recursion, so a day of densely packed events cannot hit Python's recursion limit.
    """
    owner: dict[int, int] = {}  # estimate -> reference
    matched_to: dict[int, int] = {}  # reference -> estimate
    for start in range(len(candidates)):
        reached_from: dict[int, int] = {}  # estimate -> the reference whose search reached it
        stack = [(start, iter(candidates[start]))]
        free = None
        while stack and free is None:
            ref, options = stack[-1]
            for est in options:
                if est in reached_from:
                    continue
                reached_from[est] = ref
                if est not in owner:
                    free = est
                else:
                    # Can the reference holding `est` move to another estimate? Search from it next.
                    stack.append((owner[est], iter(candidates[owner[est]])))
                break
            else:
                stack.pop()
        # Flip the alternating path: each reference on it takes the estimate that led to the next one.
        est = free
        while est is not None:
            ref = reached_from[est]
            previous = matched_to.get(ref)
            owner[est], matched_to[ref] = ref, est
            est = previous
    return owner


def match_events(
    reference: Sequence[Event],
    estimated: Sequence[Event],
    *,
    onset_collar_s: float = DEFAULT_ONSET_COLLAR_S,
    offset_collar_s: float = DEFAULT_OFFSET_COLLAR_S,
    offset_collar_rate: float = DEFAULT_OFFSET_COLLAR_RATE,
    evaluate_offset: bool = True,
) -> Matching:
    """Pair reference and estimated events one-to-one by the DCASE collar rule (see the module docstring).

    Args:
        reference: The true events (every ``offset_s`` set).
        estimated: The detected events (every ``offset_s`` set).
        onset_collar_s: Largest allowed ``|onset difference|``, in seconds.
        offset_collar_s: Smallest offset collar, in seconds.
        offset_collar_rate: Offset collar as a fraction of the reference event's duration, when that is larger.
        evaluate_offset: False: onsets alone decide (DCASE "onset only").

    Returns:
        The largest possible matching. Among equally large ones, each reference prefers the estimate whose onset
        is closest, so the onset errors describe the detector rather than an arbitrary pairing.
    """
    reference = _complete(reference, "A reference")
    estimated = _complete(estimated, "An estimated")
    pairs: list[tuple[int, int]] = []
    for label in _class_labels(reference, estimated, None):
        # Events sorted by time: the matching (not just its size) is then independent of the input order.
        refs = sorted((i for i, e in enumerate(reference) if e.label == label), key=lambda i: _time_key(reference[i]))
        ests = sorted((i for i, e in enumerate(estimated) if e.label == label), key=lambda i: _time_key(estimated[i]))
        candidates = []
        for r in refs:
            fits = [
                k
                for k, e in enumerate(ests)
                if _is_match(
                    reference[r], estimated[e], onset_collar_s, offset_collar_s, offset_collar_rate, evaluate_offset
                )
            ]
            fits.sort(key=lambda k, r=r: abs(estimated[ests[k]].onset_s - reference[r].onset_s))
            candidates.append(fits)
        owner = _maximum_matching(candidates)
        pairs.extend((refs[r], ests[k]) for k, r in owner.items())
    pairs.sort(key=lambda pair: (_time_key(reference[pair[0]]), pair))
    matched_refs = {r for r, _ in pairs}
    matched_ests = {e for _, e in pairs}
    return Matching(
        reference=tuple(reference),
        estimated=tuple(estimated),
        pairs=tuple(pairs),
        missed=tuple(i for i in range(len(reference)) if i not in matched_refs),
        false_alarms=tuple(i for i in range(len(estimated)) if i not in matched_ests),
    )


def _time_key(event: Event) -> tuple[float, float, float]:
    # The higher-scoring of two identical-time detections comes first, so it is the one that gets matched.
    return (event.onset_s, event.offset_s or 0.0, -event.peak_score)


def event_scores(
    reference: Sequence[Event],
    estimated: Sequence[Event],
    *,
    onset_collar_s: float = DEFAULT_ONSET_COLLAR_S,
    offset_collar_s: float = DEFAULT_OFFSET_COLLAR_S,
    offset_collar_rate: float = DEFAULT_OFFSET_COLLAR_RATE,
    evaluate_offset: bool = True,
    labels: Sequence[str] | None = None,
) -> EventScores:
    """Event-based precision, recall and F1 per class, overall (micro) and macro, plus timing errors of the matches.

    The collar arguments are those of :func:`match_events`. ``labels`` lists classes to report even when no event
    of theirs occurs (e.g. the model's labels); any other label that occurs is added.
    """
    matching = match_events(
        reference,
        estimated,
        onset_collar_s=onset_collar_s,
        offset_collar_s=offset_collar_s,
        offset_collar_rate=offset_collar_rate,
        evaluate_offset=evaluate_offset,
    )
    per_class = {label: Counts(0, 0, 0) for label in _class_labels(matching.reference, matching.estimated, labels)}
    for r, _ in matching.pairs:
        per_class[matching.reference[r].label] += Counts(1, 0, 0)
    for e in matching.false_alarms:
        per_class[matching.estimated[e].label] += Counts(0, 1, 0)
    for r in matching.missed:
        per_class[matching.reference[r].label] += Counts(0, 0, 1)
    pairs = matching.matched_events()
    return EventScores(
        per_class=per_class,
        overall=sum(per_class.values(), Counts(0, 0, 0)),
        macro_f1=_macro_f1(per_class),
        onset_errors_s=tuple(est.onset_s - ref.onset_s for ref, est in pairs),
        offset_errors_s=tuple(est.offset_s - ref.offset_s for ref, est in pairs),  # type: ignore[operator]
        matching=matching,
    )


def _active_segments(events: Iterable[Event], label: str, segment_s: float, n_segments: int) -> set[int]:
    """Indices of the segments ``[k·segment_s, (k+1)·segment_s)`` that an event of ``label`` overlaps."""
    active: set[int] = set()
    for event in events:
        if event.label != label:
            continue
        assert event.offset_s is not None  # checked by _complete
        first = math.floor(event.onset_s / segment_s + _TIME_EPS_S)
        end = math.ceil(event.offset_s / segment_s - _TIME_EPS_S)
        active.update(range(max(first, 0), min(end, n_segments)))
    return active


def segment_scores(
    reference: Sequence[Event],
    estimated: Sequence[Event],
    *,
    segment_s: float = 1.0,
    duration_s: float,
    labels: Sequence[str] | None = None,
) -> SegmentScores:
    """Segment-based precision, recall and F1 of class activity, per class, overall (micro) and macro.

    Args:
        reference: The true events (every ``offset_s`` set).
        estimated: The detected events (every ``offset_s`` set).
        segment_s: Segment length, in seconds (DCASE uses 1 s).
        duration_s: Length of the scored audio, in seconds; the last segment may be partial, events beyond the end
            are ignored.
        labels: Classes to report even when no event of theirs occurs; any other label that occurs is added.
    """
    if segment_s <= 0 or duration_s <= 0:
        raise ValueError(f"segment_s and duration_s must be positive, got {segment_s} and {duration_s}.")
    reference = _complete(reference, "A reference")
    estimated = _complete(estimated, "An estimated")
    n_segments = math.ceil(duration_s / segment_s - _TIME_EPS_S)
    per_class: dict[str, Counts] = {}
    for label in _class_labels(reference, estimated, labels):
        truth = _active_segments(reference, label, segment_s, n_segments)
        found = _active_segments(estimated, label, segment_s, n_segments)
        per_class[label] = Counts(tp=len(truth & found), fp=len(found - truth), fn=len(truth - found))
    return SegmentScores(
        per_class=per_class,
        overall=sum(per_class.values(), Counts(0, 0, 0)),
        macro_f1=_macro_f1(per_class),
        segment_s=segment_s,
        n_segments=n_segments,
    )


def false_alarms_per_hour(
    estimated: Sequence[Event], duration_s: float, *, reference: Sequence[Event] | None = None
) -> float:
    """False alarms per hour of audio.

    Without ``reference`` every estimated event counts: that is the figure for audio known to hold none of the
    target sounds (a quiet day, background only). With ``reference``, only estimates left unmatched by
    :func:`match_events` (default collars) count.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}.")
    count = len(estimated) if reference is None else len(match_events(reference, estimated).false_alarms)
    return count * SECONDS_PER_HOUR / duration_s
