"""The fine timeline (10 ms cells by default) that model frames of any hop are placed on.

Cell ``i`` covers samples ``[i*grid_n, (i+1)*grid_n)``. A model frame stands for a span of samples; its probabilities
go to every cell whose centre falls in that span, and cells covered by several frames (overlapping windows) hold their
average. Cells are *decided* in order, once the scorer says their value is final, and are then dropped from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cell_of(sample: int, grid_n: int) -> int:
    """Index of the cell holding ``sample``."""
    return sample // grid_n


def cells_to_cover(samples: int, grid_n: int) -> int:
    """How many cells it takes to cover the first ``samples`` samples (the last one may be partial)."""
    return cell_of(samples + grid_n - 1, grid_n)


def first_cell_from(sample: int, grid_n: int) -> int:
    """Index of the first cell whose centre ``i*g + g/2`` is at or after ``sample``."""
    return -(-(2 * sample - grid_n) // (2 * grid_n))


class Timeline:
    """Accumulates frame probabilities onto cells until they are decided."""

    def __init__(self, classes: int, grid_n: int, *, keep: bool = False) -> None:
        """``classes``: probabilities per cell; ``grid_n``: samples per cell; ``keep``: hold every decided cell."""
        self.classes = classes
        self.grid_n = grid_n
        self.keep = keep
        self.reset()

    def reset(self) -> None:
        self._start = 0  # absolute cell index of _sum[0]; cells before it are decided
        self._sum = np.zeros((0, self.classes))
        self._count = np.zeros(0)
        self._kept: list[np.ndarray] = []
        self.latest = np.zeros(self.classes)  # the newest decided cell's probabilities [classes]

    @property
    def first_undecided(self) -> int:
        """Index of the first cell not decided yet."""
        return self._start

    def add(self, spans: Sequence[tuple[int, int]], frame_probs: np.ndarray) -> None:
        """Add frames ``[frames, classes]`` to the cells whose centre falls in each frame's sample span ``[a, b)``.

        Cells already decided are left alone.
        """
        for (a, b), probs in zip(spans, frame_probs, strict=False):
            lo = max(self._start, first_cell_from(a, self.grid_n))
            hi = first_cell_from(b, self.grid_n)
            if hi <= lo:
                continue
            self._grow(hi)
            self._sum[lo - self._start : hi - self._start] += probs
            self._count[lo - self._start : hi - self._start] += 1

    def decide_until(self, cell_end: int) -> np.ndarray:
        """Decide the cells before ``cell_end``: returns their values ``[cells, classes]`` (cells no frame reached
        are 0), from ``first_undecided`` on; empty if they are all decided already."""
        n = cell_end - self._start
        if n <= 0:
            return np.zeros((0, self.classes))
        self._grow(cell_end)
        counts = self._count[:n]
        values = np.where(counts[:, None] > 0, self._sum[:n] / np.maximum(counts, 1)[:, None], 0.0)
        self.latest = values[-1]
        if self.keep:
            self._kept.append(values.astype(np.float32))
        self._sum = self._sum[n:]
        self._count = self._count[n:]
        self._start = cell_end
        return values

    def decided(self) -> np.ndarray:
        """Every decided cell's values ``[cells, classes]`` (float32) since the last reset; needs ``keep``."""
        return np.concatenate(self._kept) if self._kept else np.zeros((0, self.classes))

    def _grow(self, cell_end: int) -> None:
        need = cell_end - self._start - len(self._count)
        if need > 0:
            self._sum = np.concatenate([self._sum, np.zeros((need, self.classes))])
            self._count = np.concatenate([self._count, np.zeros(need)])
