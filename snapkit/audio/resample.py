"""Sample-rate conversion with soxr (libsoxr's band-limited resampler, the quality reference in this field)."""

from __future__ import annotations

import numpy as np
import soxr


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """``audio`` (``[samples]`` or ``[samples, channels]``) from ``from_hz`` to ``to_hz``, float32 out."""
    if from_hz <= 0 or to_hz <= 0:
        raise ValueError(f"sample rates must be positive, got {from_hz} Hz -> {to_hz} Hz")
    if from_hz == to_hz:
        return np.asarray(audio, dtype=np.float32)
    out = soxr.resample(np.asarray(audio, dtype=np.float32), from_hz, to_hz, quality="HQ")
    return np.asarray(out, dtype=np.float32)


class StreamResampler:
    """Resamples a stream block by block; the concatenated output equals resampling the whole stream at once
    (up to soxr's internal delay, which it compensates), so live and file paths agree."""

    def __init__(self, from_hz: int, to_hz: int) -> None:
        self.from_hz = from_hz
        self.to_hz = to_hz
        self._stream = None if from_hz == to_hz else soxr.ResampleStream(from_hz, to_hz, 1, "float32", "HQ")

    def __call__(self, block: np.ndarray, *, last: bool = False) -> np.ndarray:
        """One mono block ``[samples]`` in, whatever output is ready ``[samples']`` out; ``last`` flushes."""
        if self._stream is None:
            return np.asarray(block, dtype=np.float32)
        return self._stream.resample_chunk(np.asarray(block, dtype=np.float32), last=last)
