"""The stretch of a stream's audio the detector still needs, addressed by absolute sample index."""

from __future__ import annotations

import numpy as np


class StreamBuffer:
    """Holds samples ``[start, end)`` of a stream; ``append`` adds to the end, ``discard_before`` drops the front.

    The array grows by doubling and is compacted in place, so appending 10 ms does not copy the seconds held.
    """

    def __init__(self, *, min_discard_n: int = 0) -> None:
        """``min_discard_n``: compact only once more than this many samples (and half the held ones) can go."""
        self.min_discard_n = min_discard_n
        self.reset()

    def reset(self) -> None:
        self._data = np.zeros(0, np.float32)
        self._len = 0
        self.start = 0  # absolute index of the first sample held
        self.end = 0  # samples received since the last reset

    def append(self, samples: np.ndarray) -> None:
        """Add ``samples`` (float32 ``[samples]``) at the end of the stream."""
        if not len(samples):
            return
        need = self._len + len(samples)
        if need > len(self._data):
            grown = np.empty(max(need, 2 * len(self._data)), np.float32)
            grown[: self._len] = self._data[: self._len]
            self._data = grown
        self._data[self._len : need] = samples
        self._len = need
        self.end += len(samples)

    def view(self, a: int, b: int) -> np.ndarray:
        """Samples ``[a, b)`` (absolute indices, ``start <= a``, ``b <= end``) as a view: valid until the next call
        that changes the buffer."""
        if a < self.start or b > self.end:
            raise IndexError(f"samples [{a}, {b}) are not held (held: [{self.start}, {self.end}))")
        return self._data[a - self.start : b - self.start]

    def discard_before(self, sample: int) -> None:
        """Let samples before ``sample`` go (they are dropped in batches, so some may stay)."""
        keep_from = min(max(self.start, sample), self.end)
        drop = keep_from - self.start
        if drop > max(self.min_discard_n, self._len // 2):
            kept = self._len - drop
            self._data[:kept] = self._data[drop : self._len]  # numpy copies overlapping slices safely
            self._len = kept
            self.start = keep_from
