"""The event tracker's hysteresis on plain probability arrays: no model, no audio."""

from __future__ import annotations

import numpy as np
import pytest

from snapkit.detection.tracker import EventTracker, TrackEdge


def tracker(classes: int = 1, *, min_gap_cells: int | list[int] = 4) -> EventTracker:
    """On 0.5, off 0.3; a start after 3 cells; 4 quiet cells end an event; an unconfirmed rise dies after 2."""
    return EventTracker(
        np.full(classes, 0.5),
        np.full(classes, 0.3),
        min_event_cells=3,
        min_gap_cells=np.asarray(min_gap_cells),
        confirm_gap_cells=2,
    )


def column(*values: float) -> np.ndarray:
    """One class's probabilities as rows ``[cells, 1]``."""
    return np.array(values, dtype=float)[:, None]


def spans(edges: list[TrackEdge]) -> list[tuple[str, int, int | None]]:
    return [(e.kind, e.onset_cell, e.end_cell) for e in edges]


def test_on_and_off_thresholds_differ() -> None:
    """0.4 alone never starts an event (below on); once started, 0.35 and 0.32 keep it going (above off)."""
    t = tracker()
    edges = t.push(column(0.1, 0.4, 0.6, 0.45, 0.35, 0.32, 0.2, 0.1, 0.1, 0.1, 0.1))
    assert spans(edges) == [("start", 2, None), ("end", 2, 6)]
    start, end = edges
    assert start.event_id == end.event_id == 1 and start.class_index == 0
    assert start.peak == end.peak == 0.6
    assert start.mean == pytest.approx((0.6 + 0.45 + 0.35) / 3)  # the cells up to the start's report
    assert end.mean == pytest.approx((0.6 + 0.45 + 0.35 + 0.32) / 4)  # the quiet tail is not part of the event
    assert t.next_cell == 11


def test_the_end_is_reported_after_min_gap_quiet_cells() -> None:
    t = tracker()
    assert spans(t.push(column(0.9, 0.9, 0.9))) == [("start", 0, None)]
    assert t.push(column(0.0, 0.0, 0.0)) == []  # 3 quiet cells: not yet
    assert spans(t.push(column(0.0))) == [("end", 0, 3)]


def test_an_event_split_across_pushes_gives_the_same_edges() -> None:
    rng = np.random.default_rng(0)
    # Two classes of smoothed noise crossing both thresholds many times.
    smooth = np.convolve(rng.random(600), np.ones(5) / 5, mode="same")
    probs = np.clip((smooth[:, None] - 0.5) * [4.0, 3.0] + 0.35, 0, 1)
    whole = tracker(2, min_gap_cells=[4, 9])
    reference = whole.push(probs) + whole.flush()
    assert sum(e.kind == "end" for e in reference) >= 20
    for piece in (1, 3, 7, 250):
        t = tracker(2, min_gap_cells=[4, 9])
        edges = [e for i in range(0, len(probs), piece) for e in t.push(probs[i : i + piece])]
        assert edges + t.flush() == reference


def test_rises_closer_than_the_gap_merge() -> None:
    t = tracker()
    edges = t.push(column(*[0.8] * 5, *[0.1] * 3, *[0.8] * 5, *[0.0] * 6))
    assert spans(edges) == [("start", 0, None), ("end", 0, 13)]
    assert edges[1].mean == pytest.approx((10 * 0.8 + 3 * 0.1) / 13)  # the dip inside the event counts


def test_rises_a_gap_apart_are_two_events() -> None:
    t = tracker()
    edges = t.push(column(*[0.8] * 5, *[0.1] * 4, *[0.8] * 5, *[0.0] * 6))
    assert spans(edges) == [("start", 0, None), ("end", 0, 5), ("start", 9, None), ("end", 9, 14)]
    assert [e.event_id for e in edges] == [1, 1, 2, 2]


def test_each_class_has_its_own_gap() -> None:
    t = tracker(2, min_gap_cells=[2, 6])
    both = np.array([0.8] * 4 + [0.0] * 3 + [0.8] * 4 + [0.0] * 8)
    edges = t.push(np.stack([both, both], axis=1))
    assert [(e.class_index, e.kind, e.onset_cell, e.end_cell) for e in edges] == [
        (0, "start", 0, None),
        (1, "start", 0, None),
        (0, "end", 0, 4),
        (0, "start", 7, None),
        (0, "end", 7, 11),
        (1, "end", 0, 11),
    ]


def test_a_rise_shorter_than_min_duration_is_dropped() -> None:
    t = tracker()
    assert t.push(column(0.9, 0.9, 0.1, 0.1, 0.1, *[0.0] * 10)) == []
    assert t.flush() == []
    assert t.earliest_open_cell() == t.next_cell


def test_a_short_dip_before_the_start_does_not_split_a_sound() -> None:
    """A snap's jagged probability: up, down for one cell, up again, counts from the first rise."""
    t = tracker()
    assert spans(t.push(column(0.9, 0.1, 0.9, 0.0))) == [("start", 0, None)]


def test_flush_closes_an_open_event() -> None:
    t = tracker()
    t.push(column(0.0, *[0.9] * 5))
    assert t.earliest_open_cell() == 6  # a started event's end can come no earlier than after its last cell
    assert spans(t.flush()) == [("end", 1, 6)]
    assert t.flush() == []

    t.reset()
    t.push(column(*[0.9] * 5, 0.1, 0.1))
    assert spans(t.flush()) == [("end", 0, 5)]  # ends after the last cell above off, not at the stream's end
    t.reset()
    t.push(column(0.0, 0.9, 0.9))  # not yet confirmed: never reported, so nothing to close
    assert t.earliest_open_cell() == 1
    assert t.flush() == []


def test_reset_starts_again() -> None:
    t = tracker()
    first = t.push(column(*[0.9] * 4, *[0.0] * 5))
    t.reset()
    assert t.next_cell == 0 and t.push(column(*[0.9] * 4, *[0.0] * 5)) == first


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="off-threshold"):
        EventTracker(np.array([0.3]), np.array([0.5]), min_event_cells=1, min_gap_cells=1, confirm_gap_cells=1)
