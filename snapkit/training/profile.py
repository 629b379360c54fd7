"""What each class sounds like, measured on its training clips: its frequency band and the pauses inside it.

The detector uses both (they are saved in the model bundle):

- the band restricts the energy envelope that places onsets and offsets inside a model frame, so background
  energy outside the class's band does not move the edges;
- the longest pause inside a class's clips is the least gap that separates two events of that class: a smoke alarm's
  three pulses, 0.5 s apart, are one alarm, not three (without it a 24-hour run reported 2.6 % more events than
  were planted, mostly alarm pulses split off).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from snapkit.audio.levels import active_frames, band_energy_db

# Spectra of 32 ms Hann frames; "active" frames are within 20 dB of a clip's loudest (as audio.levels does).
_FRAME_S = 0.032
_ACTIVE_FLOOR_DB = -20.0
# A class's band: where its mean spectrum exceeds the background's by this much, from the 5th to the 95th percentile
# of that excess energy, widened by a third of an octave each side (missing part of the sound costs more than
# including a little noise).
_EXCESS_DB = 3.0
_BAND_QUANTILES = (0.05, 0.95)
_BAND_WIDEN = 2 ** (1 / 3)
# Pauses: quiet runs of 10 ms frames inside a clip's sound (see _longest_pause); shorter than this are the ripple of
# one sound, not a pause.
_MIN_PAUSE_S = 0.03
_PAUSE_QUANTILE = 0.9


@dataclass(frozen=True)
class ClassProfile:
    """``band_hz``: (low, high) frequency range of the class's energy; ``pause_s``: the longest quiet stretch inside
    its sound (90th percentile over its clips; 0 for one continuous sound)."""

    band_hz: tuple[float, float]
    pause_s: float

    def to_dict(self) -> dict[str, object]:
        return {"band_hz": [round(self.band_hz[0], 1), round(self.band_hz[1], 1)], "pause_s": round(self.pause_s, 3)}


def class_profiles(
    waveforms: Sequence[np.ndarray], labels: Sequence[str], sample_rate_hz: int, background_label: str
) -> dict[str, ClassProfile]:
    """Profile of every class but the background, from clips ``waveforms[i]`` ``[samples]`` labelled ``labels[i]``."""
    nyquist = sample_rate_hz / 2
    spectra = {
        label: _mean_spectrum([w for w, lab in zip(waveforms, labels, strict=True) if lab == label], sample_rate_hz)
        for label in set(labels)
    }
    background = spectra.get(background_label)
    freqs = np.fft.rfftfreq(_frame_n(sample_rate_hz), 1 / sample_rate_hz)
    profiles = {}
    for label in sorted(set(labels) - {background_label}):
        band = _band(spectra[label], background, freqs, nyquist)
        pauses = [
            _longest_pause(w, sample_rate_hz, band) for w, lab in zip(waveforms, labels, strict=True) if lab == label
        ]
        pause_s = float(np.quantile(pauses, _PAUSE_QUANTILE)) if pauses else 0.0
        profiles[label] = ClassProfile(band, pause_s)
    return profiles


def _frame_n(sample_rate_hz: int) -> int:
    return max(64, round(_FRAME_S * sample_rate_hz))


def _mean_spectrum(clips: list[np.ndarray], sample_rate_hz: int) -> np.ndarray:
    """Mean power spectrum ``[bins]`` of the active frames of ``clips``."""
    n = _frame_n(sample_rate_hz)
    window = np.hanning(n)
    total = np.zeros(n // 2 + 1)
    count = 0
    for clip in clips:
        frames = len(clip) // n
        if frames == 0:
            continue
        x = np.asarray(clip[: frames * n], dtype=np.float64).reshape(frames, n)
        active = active_frames(np.mean(x**2, axis=1), _ACTIVE_FLOOR_DB)
        if active.any():
            total += (np.abs(np.fft.rfft(x[active] * window, axis=1)) ** 2).sum(axis=0)
            count += int(active.sum())
    return total / max(count, 1)


def _band(
    spectrum: np.ndarray, background: np.ndarray | None, freqs: np.ndarray, nyquist: float
) -> tuple[float, float]:
    """(low, high) Hz holding the class's energy above the background; the whole range if nothing stands out."""
    floor = background if background is not None and background.any() else np.zeros_like(spectrum)
    excess = np.where(spectrum > floor * 10 ** (_EXCESS_DB / 10), spectrum - floor, 0.0)
    if excess.sum() <= 0:
        return (0.0, nyquist)
    cumulative = np.cumsum(excess) / excess.sum()
    lo = float(freqs[np.searchsorted(cumulative, _BAND_QUANTILES[0])])
    hi = float(freqs[min(len(freqs) - 1, np.searchsorted(cumulative, _BAND_QUANTILES[1]))])
    return (lo / _BAND_WIDEN, min(nyquist, hi * _BAND_WIDEN))


def _longest_pause(clip: np.ndarray, sample_rate_hz: int, band_hz: tuple[float, float]) -> float:
    """Longest quiet run inside the sound of ``clip``, in seconds.

    The envelope is the energy in ``band_hz`` of 10 ms frames; a frame is "sounding" above halfway (in dB) between
    the clip's floor (10th percentile) and its peak, as the detector places edges. Background noise in the clip is
    mostly outside the band, so pauses show even at low SNR.
    """
    n = max(16, round(0.010 * sample_rate_hz))
    if len(clip) // n < 3:
        return 0.0
    energy_db = band_energy_db(np.asarray(clip, dtype=np.float64), sample_rate_hz, n, band_hz)
    floor, peak = np.percentile(energy_db, 10), energy_db.max()
    if peak - floor < 2 * _EXCESS_DB:
        return 0.0  # no clear sound over the noise: nothing to measure
    sounding = np.flatnonzero(energy_db >= floor + 0.5 * (peak - floor))
    if len(sounding) < 2:
        return 0.0
    longest = float((np.diff(sounding) - 1).max()) * n / sample_rate_hz
    return longest if longest >= _MIN_PAUSE_S else 0.0
