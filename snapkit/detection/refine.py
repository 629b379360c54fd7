"""Placing an event's onset or offset finer than the model's frames, from the audio's short-time energy.

Within ``search_s`` of the coarse edge the short-time energy (4 ms frames) of the audio, restricted to the class's
frequency band, is searched for the point where it crosses halfway (in dB) between the local floor and the peak.
"""

from __future__ import annotations

import numpy as np

from snapkit.audio.levels import band_energy_db

# Short-time energy frames used to place onsets and offsets inside a model frame.
REFINE_FRAME_S = 0.004
# A rise smaller than this (dB) over the local floor is not trusted to mark an edge; the coarse time is kept.
REFINE_MIN_RISE_DB = 6.0


def refine_edge(
    audio: np.ndarray,
    rate_hz: int,
    coarse_s: float,
    band_hz: tuple[float, float],
    *,
    rising: bool,
    search_s: float,
    first_n: int = 0,
) -> float:
    """The edge near ``coarse_s`` (seconds of stream time) where the band energy crosses halfway from floor to peak.

    ``audio`` ``[samples]`` holds the stream from absolute sample ``first_n`` up to the last sample that may be looked
    at; only samples within ``search_s`` of ``coarse_s`` are used. ``rising``: an onset (the first crossing up), else
    an offset (just after the last stretch above halfway). Returns ``coarse_s`` itself when the audio there is too
    short or shows no clear edge.
    """
    a = max(first_n, round((coarse_s - search_s) * rate_hz))
    b = min(first_n + len(audio), round((coarse_s + search_s) * rate_hz))
    frame = max(8, round(REFINE_FRAME_S * rate_hz))
    if b - a < 4 * frame:
        return coarse_s
    energy = band_energy_db(audio[a - first_n : b - first_n], rate_hz, frame, band_hz)
    floor, peak = np.percentile(energy, 10), energy.max()
    if peak - floor < REFINE_MIN_RISE_DB:
        return coarse_s
    # Two frames in a row (8 ms) above halfway: a lone spike of noise is not an edge.
    above = energy >= floor + 0.5 * (peak - floor)
    sustained = np.flatnonzero(above[:-1] & above[1:])
    if len(sustained) == 0:
        return coarse_s
    # The first crossing, not the loudest part: in a pattern of beeps the second may be the loudest.
    if rising:
        return (a + int(sustained[0]) * frame) / rate_hz
    return (a + (int(sustained[-1]) + 2) * frame) / rate_hz
