"""Signal levels in dB relative to full scale (a full-scale sine peaks at 0 dBFS)."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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


def band_energy_db(audio: np.ndarray, sample_rate_hz: int, frame: int, band_hz: tuple[float, float]) -> np.ndarray:
    """Energy in dB of consecutive ``frame``-sample Hann-windowed frames of ``audio`` ``[samples]``, counting only
    the frequencies in ``band_hz`` (all of them if the band holds no FFT bin) -> ``[len(audio) // frame]``."""
    n = len(audio) // frame
    frames = audio[: n * frame].reshape(n, frame) * np.hanning(frame)
    spectrum = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(frame, 1 / sample_rate_hz)
    lo, hi = band_hz
    mask = (freqs >= lo) & (freqs <= hi)
    if not mask.any():
        mask[:] = True
    return 10 * np.log10(spectrum[:, mask].sum(axis=1) + 1e-12)


# ----------------------------------------------------------------------------------------------------
# Where the sound is in a clip

# Frames this far apart, and how far above the clip's noise a frame must rise to count as sound.
GROUND_TRUTH_FRAME_S = 0.005
NOISE_MARGIN_DB = 6.0
# A sound too weak for that margin still has the frames within this many dB of its loudest.
SAME_SOUND_DB = 3.0
# The clip's noise, per frequency and overall, is this percentile over its frames: right while the sound fills
# less than about 80 % of the clip (a 1.5 s alarm in a 2 s clip), and on generated clips of every synth class at
# 5-25 dB it put onsets within 6 ms of the truth where the 10th percentile let a few offsets drift by 0.2 s.
SPAN_NOISE_PERCENTILE = 20.0
# Most frames whose spectra are held at once (some 30 MB at 16 kHz with 10 ms hops).
_MAX_NOISE_FRAMES = 8192


def _whitened_envelope(
    audio: np.ndarray,
    sample_rate_hz: int,
    hop_s: float,
    *,
    percentile: float = SPAN_NOISE_PERCENTILE,
    skip_digital_silence: bool = False,
) -> tuple[np.ndarray, int]:
    """How far each short frame of ``audio`` ``[samples]`` rises above the clip's own noise, across frequency ->
    (``[frames]``, hop in samples).

    Frames of ``2 * hop_s`` (Hann window) every ``hop_s``; each frequency bin's power is divided by that bin's
    ``percentile``-th percentile over the clip (the noise there), and the ratios are averaged over bins.
    Per-bin normalisation is what makes this work on real rooms: the plain frame power of a recording is dominated
    by low rumble and hum, whose 5 ms power swings by more than a quiet sound adds, so a short snap in a room could
    not be told from the room. Averaged over some 80 bins, noise frames stay within about 1 dB of each other.
    ``skip_digital_silence`` leaves all-zero frames out of the noise estimate (a file padded with zeros would
    otherwise have no noise at all, and every bit of room tone would stand out).
    """
    hop = max(1, round(hop_s * int(sample_rate_hz)))
    window = 2 * hop
    x = np.asarray(audio, dtype=np.float64)
    if len(x) < window:
        x = np.pad(x, (0, window - len(x)))
    n_frames = (len(x) - window) // hop + 1
    taper = np.hanning(window)

    def spectra(first: int, last: int, step: int = 1) -> np.ndarray:
        frames = sliding_window_view(x, window)[first * hop : last * hop : step * hop] * taper  # [frames, window]
        return np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [frames, bins]

    # The noise of a long file is estimated from at most _MAX_NOISE_FRAMES frames spread evenly over it, so an hour
    # of audio never needs all its spectra in memory at once; a short clip uses every frame.
    step = max(1, math.ceil(n_frames / _MAX_NOISE_FRAMES))
    sample = spectra(0, n_frames, step)
    reference = sample
    if skip_digital_silence:
        heard = sample.sum(axis=1) > 0
        reference = sample[heard] if heard.any() else sample
    floor = np.percentile(reference, percentile, axis=0)  # [bins]
    # Bins of digital silence (a trimmed file) would divide by zero; their ratio stays tiny instead.
    floor = np.maximum(floor, float(sample.max()) * 1e-12 + np.finfo(np.float64).tiny)
    if step == 1 and n_frames <= _MAX_NOISE_FRAMES:
        return np.mean(sample / floor, axis=1), hop
    chunks = range(0, n_frames, _MAX_NOISE_FRAMES)
    envelope = [np.mean(spectra(c, min(n_frames, c + _MAX_NOISE_FRAMES)) / floor, axis=1) for c in chunks]
    return np.concatenate(envelope), hop


def sound_span(
    audio: np.ndarray,
    sample_rate_hz: int,
    *,
    frame_s: float = GROUND_TRUTH_FRAME_S,
    floor_db: float = ACTIVE_FLOOR_DB,
    margin_db: float = NOISE_MARGIN_DB,
) -> tuple[int, int]:
    """Samples ``[start, end)`` of the sound in a clip ``[samples]``: from its first to its last active frame.

    Used for the ground truth of test soundscapes and to move a sound within its window in training augmentation.
    Frames are ``frame_s`` apart and measured against the clip's own noise, frequency by frequency
    (:func:`_whitened_envelope`). A frame is active when it is within ``-floor_db`` dB of the loudest frame and at
    least ``margin_db`` dB above the clip's quiet frames (their ``SPAN_NOISE_PERCENTILE``-th percentile); a
    sound too weak for that margin (or one that fills its clip, so that it is its own floor) still gets the frames
    within ``SAME_SOUND_DB`` of its loudest. The noise estimates hold while the sound fills less than about
    ``100 - SPAN_NOISE_PERCENTILE`` % of the clip. Start and end are exact to about half a frame.

    Raises:
        ValueError: ``audio`` is silent or empty (it holds no sound to find).
    """
    envelope, hop = _whitened_envelope(audio, sample_rate_hz, frame_s)
    top = float(envelope.max())
    if top <= 0:
        raise ValueError("The clip is silent, so it holds no sound to place.")
    quiet = float(np.percentile(envelope, SPAN_NOISE_PERCENTILE))
    threshold = max(top * 10 ** (floor_db / 10), quiet * 10 ** (margin_db / 10))
    threshold = min(threshold, top * 10 ** (-SAME_SOUND_DB / 10))
    active = np.flatnonzero(envelope >= threshold)
    # Frame k spans samples [k·hop, k·hop + 2·hop); the hop at its centre is the time it stands for.
    start = 0 if active[0] == 0 else int(active[0] * hop + hop // 2)
    end = len(audio) if active[-1] == len(envelope) - 1 else int((active[-1] + 1) * hop + hop // 2)
    return start, min(end, len(audio))


# ----------------------------------------------------------------------------------------------------
# Activity against a recording's own noise floor (what `snapkit import` keeps and `snapkit data` checks)

ACTIVITY_HOP_S = 0.010
# The floor is this percentile of the recording's frames, per frequency and overall: it stays the room tone while
# the sound fills up to about 95 % of the recording. Too low a floor keeps some room tone (what import did before);
# too high a floor drops real sound (of 103 clips of steady sounds recorded back to back, the 10th and 20th
# percentiles kept 93 and 85, the 5th 97, all at 8 dB and 30 ms), so it errs low.
ACTIVITY_NOISE_PERCENTILE = 5.0
# A stretch holds a sound when at least MIN_ACTIVE_S of its frames rise DEFAULT_ACTIVITY_DB above the floor, or one
# frame rises CLICK_EXTRA_DB higher still: a snap or a tap fills only one or two frames. Noise frames, averaged over
# frequency, stay within a few dB of each other, so this is clear of steady room tone. On real sounds over real room
# tone (experiments/import_activity.py) 8 dB and 30 ms lost 2 of 269 clips holding a sound and kept 17 of 168 of
# plain room tone; 10 dB lost 5 and kept 8, 6 dB lost 1 and kept 85. No frame of plain room rose 12 dB without also
# passing the 30 ms test, so the click rule keeps no more room; it saves generated snaps, which 30 ms alone dropped.
DEFAULT_ACTIVITY_DB = 8.0
MIN_ACTIVE_S = 0.03
CLICK_EXTRA_DB = 4.0


def rise_above_floor_db(audio: np.ndarray, sample_rate_hz: int, *, hop_s: float = ACTIVITY_HOP_S) -> np.ndarray:
    """dB by which each frame of a recording ``[samples]`` rises above the recording's own noise floor -> ``[frames]``.

    Frame k covers samples ``[k·hop, k·hop + 2·hop)`` (hop = ``hop_s``); its level is measured frequency by
    frequency against the recording's quiet frames (:func:`_whitened_envelope`), so a soft knock over a loud hum
    still stands out, and 0 dB is the ``ACTIVITY_NOISE_PERCENTILE``-th percentile frame. Frames of digital silence
    are left out of the floor and come out far below 0 dB.
    """
    envelope, _ = _whitened_envelope(
        audio, sample_rate_hz, hop_s, percentile=ACTIVITY_NOISE_PERCENTILE, skip_digital_silence=True
    )
    heard = envelope > 0
    if not heard.any():
        return np.full(len(envelope), FLOOR_DBFS)
    level_db = 10 * np.log10(np.maximum(envelope, np.finfo(np.float64).tiny))
    return level_db - float(np.percentile(level_db[heard], ACTIVITY_NOISE_PERCENTILE))


def holds_sound(rise_db: np.ndarray, activity_db: float = DEFAULT_ACTIVITY_DB, hop_s: float = ACTIVITY_HOP_S) -> bool:
    """True when the frames ``rise_db`` ``[frames]`` (from :func:`rise_above_floor_db`, ``hop_s`` apart) hold a
    sound: ``MIN_ACTIVE_S`` of them at least ``activity_db`` above the floor, or one ``CLICK_EXTRA_DB`` higher."""
    if len(rise_db) == 0:
        return False
    long_enough = np.count_nonzero(rise_db >= activity_db) >= max(1, round(MIN_ACTIVE_S / hop_s))
    return bool(long_enough or float(rise_db.max()) >= activity_db + CLICK_EXTRA_DB)
