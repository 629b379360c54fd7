"""Event- and segment-based scoring: hand-worked cases, then a cross-check against sed_eval on random event lists."""

from __future__ import annotations

import itertools
import math
import random
import sys
import types

import pytest

from snapkit.detection.events import Event
from snapkit.eval.scoring import (
    Counts,
    event_scores,
    false_alarms_per_hour,
    match_events,
    segment_scores,
)
from tests.conftest import skip_or_fail


def ev(label: str, onset_s: float, offset_s: float, peak: float = 0.9) -> Event:
    return Event(label, onset_s, offset_s, peak_score=peak, mean_score=peak)


# ---------------------------------------------------------------------------------------------------- event-based


def test_exact_match_is_perfect() -> None:
    ref = [ev("dog", 1.0, 2.0), ev("bell", 3.0, 3.5)]
    scores = event_scores(ref, list(ref))
    assert scores.overall == Counts(tp=2, fp=0, fn=0)
    assert scores.overall.f1 == 1.0 and scores.macro_f1 == 1.0
    assert scores.onset_errors_s == (0.0, 0.0) and scores.offset_errors_s == (0.0, 0.0)


@pytest.mark.parametrize(
    ("est_onset_s", "matches"),
    [
        (1.19, True),  # 0.19 s late: inside the 0.2 s collar
        (0.81, True),  # 0.19 s early
        (1.2, True),  # exactly on the collar; float says 0.19999999999999996 here and 0.2000000000000002 below
        (2.2 - 1.0, True),
        (1.21, False),  # 0.21 s late: outside
        (0.79, False),
    ],
)
def test_onset_collar(est_onset_s: float, matches: bool) -> None:
    ref = [ev("dog", 1.0, 2.0)]
    est = [ev("dog", est_onset_s, 2.0)]
    scores = event_scores(ref, est)
    assert scores.overall == (Counts(1, 0, 0) if matches else Counts(0, 1, 1))


def test_exactly_on_collar_despite_float_rounding() -> None:
    # 2.2 - 2.0 == 0.20000000000000018 in floats: still "0.2 s late", so inside a 0.2 s collar.
    assert event_scores([ev("dog", 2.0, 3.0)], [ev("dog", 2.2, 3.0)]).overall.tp == 1


def test_offset_collar_grows_with_long_events() -> None:
    # A 10 s reference: offset collar max(0.2, 0.5 * 10) = 5 s, so ending 2 s early still matches.
    assert event_scores([ev("rain", 0.0, 10.0)], [ev("rain", 0.0, 8.0)]).overall.tp == 1
    # ... but not 5.5 s early.
    assert event_scores([ev("rain", 0.0, 10.0)], [ev("rain", 0.0, 4.5)]).overall.tp == 0
    # A 0.2 s reference: collar max(0.2, 0.1) = 0.2 s, so ending 0.3 s late fails, 0.15 s late passes.
    assert event_scores([ev("clap", 5.0, 5.2)], [ev("clap", 5.0, 5.5)]).overall.tp == 0
    assert event_scores([ev("clap", 5.0, 5.2)], [ev("clap", 5.0, 5.35)]).overall.tp == 1


def test_offset_ignored_when_not_evaluated() -> None:
    ref, est = [ev("clap", 5.0, 5.2)], [ev("clap", 5.1, 9.0)]
    assert event_scores(ref, est).overall.tp == 0
    assert event_scores(ref, est, evaluate_offset=False).overall.tp == 1


def test_separate_onset_and_offset_collars() -> None:
    ref, est = [ev("dog", 1.0, 1.4)], [ev("dog", 1.3, 1.4)]
    assert event_scores(ref, est).overall.tp == 0
    assert event_scores(ref, est, onset_collar_s=0.5).overall.tp == 1
    ref, est = [ev("dog", 1.0, 1.4)], [ev("dog", 1.0, 1.8)]
    assert event_scores(ref, est).overall.tp == 0
    assert event_scores(ref, est, offset_collar_s=0.5).overall.tp == 1


def test_duplicate_detections_count_one_tp_and_one_fp() -> None:
    ref = [ev("dog", 1.0, 2.0)]
    est = [ev("dog", 1.05, 2.0, peak=0.7), ev("dog", 1.1, 2.1, peak=0.9)]
    scores = event_scores(ref, est)
    assert scores.per_class["dog"] == Counts(tp=1, fp=1, fn=0)
    assert scores.per_class["dog"].precision == 0.5
    assert scores.per_class["dog"].recall == 1.0
    assert scores.per_class["dog"].f1 == pytest.approx(2 / 3)
    # The closer one is the match; its errors are what gets reported.
    assert scores.matching.pairs == ((0, 0),)
    assert scores.matching.false_alarms == (1,)
    assert scores.onset_errors_s == pytest.approx((0.05,))


def test_label_mismatch_is_a_miss_and_a_false_alarm() -> None:
    scores = event_scores([ev("dog", 1.0, 2.0)], [ev("cat", 1.0, 2.0)])
    assert scores.per_class == {"cat": Counts(0, 1, 0), "dog": Counts(0, 0, 1)}
    assert scores.overall == Counts(0, 1, 1)
    assert scores.overall.f1 == 0.0
    # cat: no reference events but a false alarm -> F1 0 (not undefined), so the macro average is 0.
    assert scores.per_class["cat"].f1 == 0.0 and math.isnan(scores.per_class["cat"].recall)
    assert scores.macro_f1 == 0.0


def test_optimal_matching_beats_greedy() -> None:
    # Onset only, 0.2 s collar. Reference A (1.0 s) fits estimates X (0.9 s) and Y (1.15 s); reference B (0.75 s)
    # fits only X. Greedy, taking references in list order and each one's first fitting estimate, gives A X and
    # leaves B unmatched: 1 TP. The maximum matching is A-Y, B-X: 2 TP.
    a, b = ev("dog", 1.0, 2.0), ev("dog", 0.75, 1.75)
    x, y = ev("dog", 0.9, 1.9), ev("dog", 1.15, 2.15)
    for refs in itertools.permutations([a, b]):
        for ests in itertools.permutations([x, y]):
            scores = event_scores(list(refs), list(ests), evaluate_offset=False)
            assert scores.overall == Counts(2, 0, 0)
            assert {(refs[r], ests[e]) for r, e in scores.matching.pairs} == {(a, y), (b, x)}


def test_longer_augmenting_path() -> None:
    # A chain where each reference fits its own estimate and the next one: references taken in time order each grab
    # the nearest estimate, and the last can only be seated by moving every earlier one along.
    refs = [ev("tick", 1.0 + 0.15 * i, 1.5 + 0.15 * i) for i in range(5)]
    ests = [ev("tick", 1.0 + 0.15 * i + 0.1, 1.6 + 0.15 * i) for i in range(5)]
    scores = event_scores(refs, ests, evaluate_offset=False)
    assert scores.overall == Counts(5, 0, 0)


def test_timing_errors_are_signed_and_summarised() -> None:
    ref = [ev("dog", 1.0, 2.0), ev("dog", 5.0, 6.0), ev("dog", 9.0, 10.0)]
    est = [ev("dog", 1.1, 2.3), ev("dog", 4.9, 6.0), ev("dog", 9.15, 9.8)]
    scores = event_scores(ref, est)
    assert scores.onset_errors_s == pytest.approx((0.1, -0.1, 0.15))
    assert scores.offset_errors_s == pytest.approx((0.3, 0.0, -0.2))
    assert scores.median_abs_onset_error_s == pytest.approx(0.1)
    assert scores.mean_abs_onset_error_s == pytest.approx(0.35 / 3)
    assert scores.median_abs_offset_error_s == pytest.approx(0.2)
    assert scores.mean_abs_offset_error_s == pytest.approx(0.5 / 3)


def test_per_class_micro_and_macro() -> None:
    ref = [ev("dog", 1.0, 2.0), ev("dog", 3.0, 4.0), ev("bell", 5.0, 5.5)]
    est = [ev("dog", 1.0, 2.0), ev("bell", 5.0, 5.5), ev("bell", 8.0, 8.5)]
    scores = event_scores(ref, est, labels=["dog", "bell", "knock"])
    assert list(scores.per_class) == ["dog", "bell", "knock"]
    assert scores.per_class["dog"] == Counts(1, 0, 1)  # P 1, R 0.5, F1 2/3
    assert scores.per_class["bell"] == Counts(1, 1, 0)  # P 0.5, R 1, F1 2/3
    assert math.isnan(scores.per_class["knock"].f1)  # nothing to score: left out of the macro average
    assert scores.overall == Counts(2, 1, 1)
    assert scores.overall.f1 == pytest.approx(2 / 3)
    assert scores.macro_f1 == pytest.approx(2 / 3)
    assert scores.to_dict()["overall"]["tp"] == 2


def test_empty_lists() -> None:
    scores = event_scores([], [])
    assert scores.per_class == {} and math.isnan(scores.overall.f1) and math.isnan(scores.macro_f1)
    assert math.isnan(scores.median_abs_onset_error_s)
    scores = event_scores([ev("dog", 1.0, 2.0)], [])
    assert scores.overall == Counts(0, 0, 1) and scores.overall.f1 == 0.0


def test_open_events_are_refused() -> None:
    with pytest.raises(ValueError, match="no offset"):
        match_events([ev("dog", 1.0, 2.0)], [Event("dog", 1.0, None, 0.9, 0.9)])


# -------------------------------------------------------------------------------------------------- segment-based


def test_segment_scores_hand_worked() -> None:
    # 5 s in 1 s segments. dog reference 0.5-2.2 s covers segments 0, 1, 2; estimate 1.0-2.0 s covers exactly 1.
    # bell reference 3.0-3.5 s covers 3; estimate 3.9-4.1 s covers 3 and 4.
    ref = [ev("dog", 0.5, 2.2), ev("bell", 3.0, 3.5)]
    est = [ev("dog", 1.0, 2.0), ev("bell", 3.9, 4.1)]
    scores = segment_scores(ref, est, segment_s=1.0, duration_s=5.0)
    assert scores.n_segments == 5
    assert scores.per_class["dog"] == Counts(tp=1, fp=0, fn=2)
    assert scores.per_class["bell"] == Counts(tp=1, fp=1, fn=0)
    assert scores.overall == Counts(2, 1, 2)
    assert scores.overall.f1 == pytest.approx(4 / 7)
    assert scores.macro_f1 == pytest.approx((0.5 + 2 / 3) / 2)


def test_segment_scores_boundaries_and_duration() -> None:
    # 0.3-0.6 s in 0.1 s segments is segments 3, 4, 5 even though 0.3 / 0.1 = 2.9999999999999996 in floats.
    scores = segment_scores([ev("a", 0.3, 0.6)], [ev("a", 0.3, 0.6)], segment_s=0.1, duration_s=1.0)
    assert scores.per_class["a"] == Counts(3, 0, 0)
    # Events past the end are cut at duration_s; a partial last segment counts.
    scores = segment_scores([ev("a", 2.0, 9.0)], [], segment_s=1.0, duration_s=3.5)
    assert scores.n_segments == 4 and scores.per_class["a"] == Counts(0, 0, 2)
    with pytest.raises(ValueError):
        segment_scores([], [], duration_s=0.0)


def test_false_alarms_per_hour() -> None:
    est = [ev("dog", 10.0 * i, 10.0 * i + 1) for i in range(6)]
    assert false_alarms_per_hour(est, duration_s=1800.0) == 12.0
    # With a reference, matched detections are not false alarms.
    assert false_alarms_per_hour(est, duration_s=1800.0, reference=est[:4]) == 4.0
    with pytest.raises(ValueError):
        false_alarms_per_hour(est, duration_s=0.0)


# ------------------------------------------------------------------------------------- cross-check with sed_eval


def _import_sed_eval(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    # dcase_util (sed_eval's container library) does `import pkg_resources` at import time but never calls it on the
    # paths used here; setuptools >= 81 no longer ships pkg_resources, so a stand-in module lets it import.
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "pkg_resources", types.ModuleType("pkg_resources"))
    try:
        import sed_eval
    except ImportError:
        skip_or_fail("sed_eval is not installed (pip install -e '.[dev]')")
    return sed_eval


def _random_case(seed: int) -> tuple[list[Event], list[Event], float]:
    """References of 3 classes over 60 s, and estimates: jittered copies of most, duplicates, and false alarms.
    Times are continuous, so no onset or offset lands exactly on a collar edge (where float rounding decides)."""
    rng = random.Random(seed)
    labels = ["bell", "dog", "knock"]
    duration_s = 60.0
    reference = []
    for label in labels:
        for _ in range(rng.randint(1, 8)):
            onset = rng.uniform(0, duration_s - 6)
            reference.append(ev(label, onset, onset + rng.uniform(0.05, 5.0)))
    estimated = []
    for event in reference:
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            onset = max(0.0, event.onset_s + rng.gauss(0, 0.2))
            offset = max(onset + 0.02, event.offset_s + rng.gauss(0, 0.5))  # type: ignore[operator]
            estimated.append(ev(rng.choice(labels) if rng.random() < 0.1 else event.label, onset, offset))
    for _ in range(rng.randint(0, 6)):
        onset = rng.uniform(0, duration_s - 3)
        estimated.append(ev(rng.choice(labels), onset, onset + rng.uniform(0.05, 3.0)))
    rng.shuffle(estimated)
    return reference, estimated, duration_s


def _sed_list(events: list[Event]) -> list[dict[str, object]]:
    return [{"filename": "a.wav", "event_label": e.label, "onset": e.onset_s, "offset": e.offset_s} for e in events]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("evaluate_offset", [True, False])
def test_event_scores_match_sed_eval(seed: int, evaluate_offset: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    sed_eval = _import_sed_eval(monkeypatch)
    reference, estimated, _ = _random_case(seed)
    labels = sorted({e.label for e in reference})
    metrics = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=labels,
        t_collar=0.2,
        percentage_of_length=0.5,
        evaluate_offset=evaluate_offset,
        empty_system_output_handling="zero_score",
    )
    metrics.evaluate(_sed_list(reference), _sed_list(estimated))
    ours = event_scores(reference, estimated, evaluate_offset=evaluate_offset)

    assert ours.overall.tp == metrics.overall["Ntp"]
    assert ours.overall.n_estimated == metrics.overall["Nsys"]
    assert ours.overall.n_reference == metrics.overall["Nref"]
    assert ours.overall.f1 == pytest.approx(metrics.results_overall_metrics()["f_measure"]["f_measure"])
    class_wise = metrics.results_class_wise_metrics()
    for label in labels:  # every label has reference events, so F1 means the same thing in both
        assert ours.per_class[label].f1 == pytest.approx(class_wise[label]["f_measure"]["f_measure"])
    average = metrics.results_class_wise_average_metrics()["f_measure"]["f_measure"]
    assert ours.macro_f1 == pytest.approx(average)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("segment_s", [1.0, 0.25])
def test_segment_scores_match_sed_eval(seed: int, segment_s: float, monkeypatch: pytest.MonkeyPatch) -> None:
    sed_eval = _import_sed_eval(monkeypatch)
    reference, estimated, duration_s = _random_case(seed)
    labels = sorted({e.label for e in reference})
    metrics = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=labels, time_resolution=segment_s)
    metrics.evaluate(_sed_list(reference), _sed_list(estimated), evaluated_length_seconds=duration_s)
    ours = segment_scores(reference, estimated, segment_s=segment_s, duration_s=duration_s)

    assert ours.overall.tp == metrics.overall["Ntp"]
    assert ours.overall.fp == metrics.overall["Nfp"]
    assert ours.overall.fn == metrics.overall["Nfn"]
    assert ours.overall.f1 == pytest.approx(metrics.results_overall_metrics()["f_measure"]["f_measure"])
    class_wise = metrics.results_class_wise_metrics()
    for label in labels:
        assert ours.per_class[label].f1 == pytest.approx(class_wise[label]["f_measure"]["f_measure"])
