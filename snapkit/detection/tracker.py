"""Hysteresis over per-class probabilities: which stretches of a timeline are events.

The tracker holds only its trigger state (like silero-vad's ``VADIterator``): push rows of decided probabilities
``[cells, classes]``, one row per timeline cell, and it returns the starts and ends those rows completed, in cell
indices. It knows nothing of audio, models or seconds, so it can be tested on a list of floats.

Per class, an event begins when the probability reaches the on-threshold and ends once it has stayed below the
off-threshold for ``min_gap_cells`` (so two rises closer than that merge into one event). A rise that falls below the
off-threshold for more than ``confirm_gap_cells`` before lasting ``min_event_cells`` is dropped without a report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class TrackEdge:
    """A start or an end of one class's event, in timeline cells.

    ``onset_cell`` is the first cell at or above the on-threshold; ``end_cell`` (ends only) is one past the last cell
    at or above the off-threshold. ``peak`` and ``mean`` are over the event's cells so far (the whole event for an end).
    """

    kind: Literal["start", "end"]
    class_index: int
    event_id: int
    onset_cell: int
    end_cell: int | None
    peak: float
    mean: float


@dataclass
class _Track:
    """One class's open event."""

    event_id: int
    onset_cell: int
    last_above_cell: int
    peak: float
    total: float  # sum of probabilities from the onset to the last cell above the off threshold
    cells: int
    pending_total: float = 0.0  # cells below the off threshold since then: part of the event only if it resumes
    pending_cells: int = 0
    started: bool = False


class EventTracker:
    """Per-class hysteresis state machine over timeline cells. ``push`` rows, ``flush`` at the end, ``reset``."""

    def __init__(
        self,
        on: np.ndarray,
        off: np.ndarray,
        *,
        min_event_cells: int,
        min_gap_cells: np.ndarray | int,
        confirm_gap_cells: int,
    ) -> None:
        """``on``, ``off``: thresholds ``[classes]`` (probabilities, off <= on); ``min_gap_cells``: ``[classes]`` or
        one for all; ``min_event_cells``: cells above threshold before a start is reported (at least 1)."""
        self.on = np.asarray(on, dtype=float).reshape(-1)
        self.off = np.asarray(off, dtype=float).reshape(-1)
        if self.on.shape != self.off.shape:
            raise ValueError(f"on and off thresholds differ in length: {self.on.shape} vs {self.off.shape}")
        if np.any(self.off > self.on):
            raise ValueError("An off-threshold is above its on-threshold; off must be at most on for each class.")
        self.min_event_cells = max(1, int(min_event_cells))
        self.min_gap_cells = np.broadcast_to(np.asarray(min_gap_cells, dtype=int), self.on.shape).copy()
        self.confirm_gap_cells = int(confirm_gap_cells)
        self.reset()

    @property
    def classes(self) -> int:
        return len(self.on)

    def reset(self, first_event_id: int = 1) -> None:
        """Forget every open event; event ids start again at ``first_event_id`` and the next pushed row is cell 0."""
        self._tracks: dict[int, _Track] = {}
        self._next_id = first_event_id
        self._next_cell = 0

    @property
    def next_event_id(self) -> int:
        """The id the next event will get."""
        return self._next_id

    @property
    def next_cell(self) -> int:
        """Index of the cell the next pushed row stands for."""
        return self._next_cell

    def earliest_open_cell(self) -> int:
        """The earliest cell an edge still to be reported can lie on (``next_cell`` when no event is open)."""
        cells = [t.last_above_cell + 1 if t.started else t.onset_cell for t in self._tracks.values()]
        return min([self._next_cell, *cells])

    def push(self, probs: np.ndarray) -> list[TrackEdge]:
        """Step through rows ``[cells, classes]`` (cells ``next_cell`` on); returns the edges they completed.

        Within a cell, classes are handled in order, an end before a start of the same class.
        """
        probs = np.asarray(probs, dtype=float).reshape(-1, self.classes)
        edges: list[TrackEdge] = []
        for row in probs:
            edges += self._step(self._next_cell, row)
            self._next_cell += 1
        return edges

    def flush(self, end_cell: int | None = None) -> list[TrackEdge]:
        """End of stream at ``end_cell`` (default: ``next_cell``): close every open event that was reported."""
        end_cell = self._next_cell if end_cell is None else end_cell
        edges = []
        for c in sorted(self._tracks):
            track = self._tracks[c]
            edges += self._close(c, track, min(end_cell, track.last_above_cell + 1))
        self._tracks.clear()
        return edges

    def _step(self, cell: int, row: np.ndarray) -> list[TrackEdge]:
        edges: list[TrackEdge] = []
        for c, value in enumerate(row):
            track = self._tracks.get(c)
            if track is None:
                if value >= self.on[c]:
                    track = self._tracks[c] = _Track(self._next_id, cell, cell, float(value), float(value), 1)
                    self._next_id += 1
                else:
                    continue
            else:
                if value >= self.off[c]:
                    track.total += track.pending_total + float(value)
                    track.cells += track.pending_cells + 1
                    track.pending_total, track.pending_cells = 0.0, 0
                    track.last_above_cell = cell
                    track.peak = max(track.peak, float(value))
                elif not track.started and cell - track.last_above_cell > self.confirm_gap_cells:
                    # A blip that never lasted min_event_cells is dropped once it has been quiet for
                    # confirm_gap_cells, not merged with what follows min_gap_cells later: it would become the onset
                    # of a later sound and delay that sound's report. Shorter dips are the jagged probability of one
                    # short sound (a snap).
                    del self._tracks[c]
                    continue
                else:
                    track.pending_total += float(value)
                    track.pending_cells += 1
                if value < self.off[c] and cell - track.last_above_cell >= self.min_gap_cells[c]:
                    del self._tracks[c]
                    edges += self._close(c, track, track.last_above_cell + 1)
                    continue
            if not track.started and track.last_above_cell - track.onset_cell + 1 >= self.min_event_cells:
                track.started = True
                edges.append(
                    TrackEdge("start", c, track.event_id, track.onset_cell, None, track.peak, track.total / track.cells)
                )
        return edges

    @staticmethod
    def _close(c: int, track: _Track, end_cell: int) -> list[TrackEdge]:
        if not track.started:
            return []  # never lasted min_event_cells: dropped, and nothing was reported for it
        return [TrackEdge("end", c, track.event_id, track.onset_cell, end_cell, track.peak, track.total / track.cells)]
