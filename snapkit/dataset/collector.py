"""Cutting a stream of blocks into clips of an exact length, for recording."""

from __future__ import annotations

import numpy as np


class ClipCollector:
    """Push blocks of any length; get back each clip of exactly ``clip_samples`` as it completes.

    Samples past the end of a clip start the next one, so back-to-back (``--continuous``) clips lose nothing
    between them. ``reset()`` throws away a partial clip (after a countdown, or on Ctrl-C).
    """

    def __init__(self, clip_samples: int) -> None:
        if clip_samples <= 0:
            raise ValueError(f"clip_samples must be positive, got {clip_samples}")
        self.clip_samples = clip_samples
        self._parts: list[np.ndarray] = []
        self._filled = 0

    @property
    def fraction(self) -> float:
        """How much of the current clip is recorded, 0..1."""
        return self._filled / self.clip_samples

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        """Add ``block`` ``[samples]``; returns the clips (``[clip_samples]`` each) it completed, oldest first."""
        done: list[np.ndarray] = []
        block = np.asarray(block, dtype=np.float32)
        while len(block):
            take = min(len(block), self.clip_samples - self._filled)
            self._parts.append(block[:take])
            self._filled += take
            block = block[take:]
            if self._filled == self.clip_samples:
                done.append(np.concatenate(self._parts))
                self._parts, self._filled = [], 0
        return done

    def reset(self) -> None:
        self._parts, self._filled = [], 0
