"""Signal levels in dB relative to full scale (a full-scale sine peaks at 0 dBFS)."""

from __future__ import annotations

import numpy as np

# Below this a level is "digital silence"; keeps log10 away from zero.
FLOOR_DBFS = -120.0


def peak_dbfs(audio: np.ndarray) -> float:
    """Largest absolute sample of ``audio`` in dBFS (``FLOOR_DBFS`` for silence or no samples)."""
    if audio.size == 0:
        return FLOOR_DBFS
    peak = float(np.max(np.abs(audio)))
    return max(FLOOR_DBFS, 20.0 * np.log10(peak)) if peak > 0 else FLOOR_DBFS


def rms_dbfs(audio: np.ndarray) -> float:
    """Root-mean-square level of ``audio`` in dBFS: a simple loudness figure for a clip."""
    if audio.size == 0:
        return FLOOR_DBFS
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return max(FLOOR_DBFS, 20.0 * np.log10(rms)) if rms > 0 else FLOOR_DBFS
