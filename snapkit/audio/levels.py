"""Signal levels in dB relative to full scale (a full-scale sine peaks at 0 dBFS)."""

from __future__ import annotations

import math

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


# The "active part" of a sound: 10 ms frames within 20 dB of its loudest frame. SNRs of planted and mixed sounds are
# measured on it, so a short snap mixed at 0 dB is as audible as a long hum at 0 dB.
ACTIVE_FRAME_S = 0.010
ACTIVE_FLOOR_DB = -20.0


def frame_powers(audio: np.ndarray, sample_rate_hz: int, frame_s: float = ACTIVE_FRAME_S) -> np.ndarray:
    """Mean power of consecutive ``frame_s`` frames of ``audio`` ``[samples]`` (last frame zero-padded) ->
    ``[frames]``; empty for empty audio."""
    x = np.asarray(audio, dtype=np.float64)
    frame = max(1, round(frame_s * int(sample_rate_hz)))
    n_frames = math.ceil(len(x) / frame)
    padded = np.zeros(n_frames * frame)
    padded[: len(x)] = x
    return np.mean(padded.reshape(n_frames, frame) ** 2, axis=1)


def active_frames(powers: np.ndarray, floor_db: float = ACTIVE_FLOOR_DB) -> np.ndarray:
    """Boolean ``[frames]``: frames within ``floor_db`` dB of the loudest (none for silence)."""
    top = float(powers.max()) if len(powers) else 0.0
    if top <= 0:
        return np.zeros(len(powers), dtype=bool)
    return powers >= top * 10 ** (floor_db / 10)


def active_power(audio: np.ndarray, sample_rate_hz: int, *, floor_db: float = ACTIVE_FLOOR_DB) -> float:
    """Mean power (amplitude squared) of the active part of ``audio`` ``[samples]``; 0.0 for silence."""
    powers = frame_powers(audio, sample_rate_hz)
    active = active_frames(powers, floor_db)
    return float(powers[active].mean()) if active.any() else 0.0
