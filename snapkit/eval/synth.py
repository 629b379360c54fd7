"""Seeded synthetic sounds, example datasets, and long streams with planted events.

Used by ``make demo`` (no microphone, no download), by the tests (events planted at known sample positions)
and by experiments. Everything is pure numpy/scipy and deterministic given a seed: every random draw comes
from a :class:`numpy.random.Generator` that is passed in or derived from a seed with
:class:`numpy.random.SeedSequence`; nothing uses global random state.

Conventions
-----------
- Audio is mono ``float32`` with shape ``[samples]`` and values in ``[-1, 1)``.
- A sound generator ``gen(rng, sample_rate_hz, *, max_seconds=None)`` returns the sound *trimmed to itself*:
  its first sample is the onset and its last sample the offset (both non-zero, behind 1–6 ms fades), so
  whoever places it knows exactly where it is. Its peak is a random level in ``[0.3, 0.8]``; the clip and
  stream builders rescale it to a signal-to-noise ratio anyway.
- SNR (dB) is ``10*log10(P_sound / P_background)``, where ``P_sound`` is the mean power of the *active* part
  of the sound (10 ms frames within 20 dB of its loudest frame, so the silent gaps between beeps do not
  count) and ``P_background`` the mean power of the background under the sound.

Streams are built block by block (``block_s``, 60 s by default). Block ``k`` draws its background noise and
its events from its own generators derived from ``(seed, k)``; the background filters carry their state and
the mains hum its phase from one block to the next, so the background is continuous. Events never cross a
block boundary and keep ``min_gap_s / 2`` away from it, so :func:`make_stream` (all blocks at once) and
:func:`iter_stream` (any chunk size, flat memory) produce the same samples and the same events.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
from scipy import signal

from snapkit.audio.levels import active_power

__all__ = [
    "BACKGROUND_LABEL",
    "SOUND_CLASSES",
    "PlantedEvent",
    "SoundGenerator",
    "StreamChunk",
    "active_power",
    "background",
    "beep_pattern",
    "chirp",
    "door_knock",
    "finger_snap",
    "iter_stream",
    "make_clip",
    "make_dataset",
    "make_stream",
    "scratch",
    "smoke_alarm",
    "speech",
]

BACKGROUND_LABEL = "background"

_MIN_SAMPLE_RATE_HZ = 8_000
# Highest frequency any generator puts energy at, as a fraction of the sample rate (below Nyquist).
_MAX_FREQ_FRACTION = 0.45
# Peak the clip and stream builders never exceed (leaves headroom for 16-bit PCM and resampling overshoot).
_MAX_PEAK = 0.95
# Pink-noise filter (Julius O. Smith / Paul Kellet), -3 dB/octave over about three decades below Nyquist.
_PINK_B = (0.049922035, -0.095993537, 0.050612699, -0.004408786)
_PINK_A = (1.0, -2.494956002, 2.017265875, -0.522189400)
# Stream seed namespaces (first element of a SeedSequence spawn key).
_KEY_PARAMS, _KEY_BACKGROUND, _KEY_EVENTS = 0, 1, 2


class SoundGenerator(Protocol):
    """A seeded sound ``(rng, sample_rate_hz, *, max_seconds) -> float32 [samples]``, trimmed to itself."""

    def __call__(
        self, rng: np.random.Generator, sample_rate_hz: int = 16_000, *, max_seconds: float | None = None
    ) -> np.ndarray: ...


# ----------------------------------------------------------------------------------------------------
# Small helpers


def _check_rate(sample_rate_hz: int) -> int:
    """Validate a sample rate (Hz) and return it as an int."""
    if isinstance(sample_rate_hz, bool) or int(sample_rate_hz) != sample_rate_hz:
        raise ValueError(f"sample_rate_hz must be a whole number of Hz, got {sample_rate_hz!r}")
    sr = int(sample_rate_hz)
    if sr < _MIN_SAMPLE_RATE_HZ:
        raise ValueError(f"sample_rate_hz must be at least {_MIN_SAMPLE_RATE_HZ} Hz, got {sr}")
    return sr


def _max_samples(max_seconds: float | None, sr: int) -> int | None:
    """``max_seconds`` as a sample count (rounded down), or None for no limit."""
    if max_seconds is None:
        return None
    if not (math.isfinite(max_seconds) and max_seconds > 0):
        raise ValueError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
    return max(1, math.floor(float(max_seconds) * sr + 1e-9))


def _n(seconds: float, sr: int) -> int:
    """Seconds to a sample count, at least 1."""
    return max(1, round(float(seconds) * sr))


def _fmax(sr: int) -> float:
    """Highest frequency (Hz) a generator may use at this sample rate."""
    return _MAX_FREQ_FRACTION * sr


def _ramp(n: int) -> np.ndarray:
    """Raised-cosine fade-in of ``n`` samples, strictly between 0 and 1 (so the first sample is not zero)."""
    i = np.arange(n, dtype=np.float64)
    return np.sin(0.5 * np.pi * (i + 0.5) / n) ** 2


def _fade(x: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    """Apply a raised-cosine fade-in of ``n_in`` and fade-out of ``n_out`` samples to ``x`` in place."""
    n_in = min(max(n_in, 0), len(x))
    n_out = min(max(n_out, 0), len(x))
    if n_in:
        x[:n_in] *= _ramp(n_in)
    if n_out:
        x[len(x) - n_out :] *= _ramp(n_out)[::-1]
    return x


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _unit_rms(x: np.ndarray) -> np.ndarray:
    r = _rms(x)
    return x / r if r > 0 else x


def _finish(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale to a random peak in [0.3, 0.8] and return float32."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > 0:
        x = x * (rng.uniform(0.3, 0.8) / peak)
    return x.astype(np.float32)


def _bandpass_noise(rng: np.random.Generator, n: int, sr: int, lo_hz: float, hi_hz: float) -> np.ndarray:
    """``n`` samples of Gaussian noise band-passed to [lo_hz, hi_hz] (4th-order Butterworth), unit RMS.

    The filter's start-up transient is discarded (the noise is drawn 50 ms longer and the head dropped).
    """
    hi = min(hi_hz, _fmax(sr))
    lo = min(lo_hz, 0.8 * hi)
    pad = _n(0.05, sr)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
    y = signal.sosfilt(sos, rng.standard_normal(n + pad))[pad:]
    return _unit_rms(y)


def _lowpass_noise(rng: np.random.Generator, n: int, sr: int, cutoff_hz: float, order: int = 2) -> np.ndarray:
    """``n`` samples of Gaussian noise low-passed at ``cutoff_hz`` (Butterworth), unit RMS."""
    pad = _n(0.1, sr)
    sos = signal.butter(order, min(cutoff_hz, _fmax(sr)), btype="lowpass", fs=sr, output="sos")
    return _unit_rms(signal.sosfilt(sos, rng.standard_normal(n + pad))[pad:])


def _harmonics(phase: np.ndarray, amps: Sequence[float], f_max_hz: float, sr: int) -> np.ndarray:
    """Sum of ``amps[k-1] * sin(k * phase)`` for every harmonic ``k`` whose highest frequency stays below
    ``0.45 * sr`` (``f_max_hz`` is the highest instantaneous fundamental frequency, Hz)."""
    y = np.zeros_like(phase)
    for k, a in enumerate(amps, start=1):
        if a and k * f_max_hz < _fmax(sr):
            y += a * np.sin(k * phase)
    return y


def _fit_pattern(durs: list[int], gaps: list[int], max_n: int | None) -> tuple[list[int], list[int]]:
    """Drop trailing elements (then shorten the first one) of an on/off pattern until it fits ``max_n``.

    ``durs`` are the lengths of the sounding parts and ``gaps`` (one fewer) of the silences, in samples.
    """
    durs, gaps = list(durs), list(gaps)
    if max_n is None:
        return durs, gaps
    while len(durs) > 1 and sum(durs) + sum(gaps) > max_n:
        durs.pop()
        gaps.pop()
    durs[0] = min(durs[0], max_n)
    return durs, gaps


def _render_pattern(
    durs: Sequence[int], gaps: Sequence[int], render: Callable[[int, int, int], np.ndarray]
) -> np.ndarray:
    """Assemble an on/off pattern: ``render(i, start, n)`` gives the ``n`` samples of element ``i`` that
    starts at sample ``start``; gaps are exact zeros."""
    out = np.zeros(sum(durs) + sum(gaps), dtype=np.float64)
    pos = 0
    for i, d in enumerate(durs):
        out[pos : pos + d] = render(i, pos, d)
        pos += d + (gaps[i] if i < len(gaps) else 0)
    return out


# ----------------------------------------------------------------------------------------------------
# Target sounds


def beep_pattern(
    rng: np.random.Generator, sample_rate_hz: int = 16_000, *, max_seconds: float | None = None
) -> np.ndarray:
    """Appliance beeps (washing machine, microwave): 2–4 sine beeps at one pitch in 2–3.5 kHz.

    Each beep lasts 80–200 ms (the last one is sometimes 1.5–2.5x longer), with 80–250 ms gaps, faint 2nd/3rd
    harmonics (-25 to -45 dB) and 3–6 ms fades; small per-beep jitter in length, pitch and level.

    Args:
        rng: source of all randomness.
        sample_rate_hz: output sample rate (Hz), at least 8000.
        max_seconds: if set, trailing beeps are dropped so the pattern fits.

    Returns:
        float32 ``[samples]`` from the first beep's onset to the last beep's offset.
    """
    sr = _check_rate(sample_rate_hz)
    max_n = _max_samples(max_seconds, sr)
    freq = rng.uniform(2000.0, 3500.0)
    n_beeps = int(rng.integers(2, 5))
    beep_s = rng.uniform(0.08, 0.2)
    gap_s = rng.uniform(0.08, 0.25)
    durs_s = beep_s * rng.uniform(0.95, 1.05, n_beeps)
    if rng.random() < 0.3:
        durs_s[-1] *= rng.uniform(1.5, 2.5)
    gaps_s = gap_s * rng.uniform(0.9, 1.1, n_beeps - 1)
    freqs = freq * (1.0 + rng.normal(0.0, 0.002, n_beeps))
    phases = rng.uniform(0.0, 2 * np.pi, n_beeps)
    levels = rng.uniform(0.85, 1.0, n_beeps)
    amps = (1.0, rng.uniform(0.01, 0.05), rng.uniform(0.005, 0.02))
    fade_n = _n(rng.uniform(0.003, 0.006), sr)
    durs, gaps = _fit_pattern([_n(d, sr) for d in durs_s], [_n(g, sr) for g in gaps_s], max_n)

    def render(i: int, _start: int, n: int) -> np.ndarray:
        phase = 2 * np.pi * freqs[i] * np.arange(n) / sr + phases[i]
        return _fade(levels[i] * _harmonics(phase, amps, freqs[i], sr), fade_n, fade_n)

    return _finish(_render_pattern(durs, gaps, render), rng)


def smoke_alarm(
    rng: np.random.Generator, sample_rate_hz: int = 16_000, *, max_seconds: float | None = None
) -> np.ndarray:
    """Smoke alarm in the T3 pattern: three ~0.5 s pulses with ~0.5 s silences (2.5 s in all).

    A harsh piezo tone at 3.1–3.4 kHz: band-limited square-ish wave (odd harmonics 1/k, strong even
    harmonics too, limited to below 0.45 x sample rate), slight pitch warble and a 60–140 Hz buzz.

    Args:
        rng: source of all randomness.
        sample_rate_hz: output sample rate (Hz), at least 8000.
        max_seconds: if set, trailing pulses are dropped (a single pulse shortened) so the pattern fits;
            a 2 s clip holds two pulses.

    Returns:
        float32 ``[samples]`` from the first pulse's onset to the last pulse's offset.
    """
    sr = _check_rate(sample_rate_hz)
    max_n = _max_samples(max_seconds, sr)
    freq = rng.uniform(3100.0, 3400.0)
    on_s = rng.uniform(0.45, 0.55)
    off_s = rng.uniform(0.45, 0.55)
    durs_s = on_s * rng.uniform(0.98, 1.02, 3)
    gaps_s = off_s * rng.uniform(0.98, 1.02, 2)
    even = rng.uniform(0.8, 1.2)
    amps = [(1.0 if k % 2 else even) / k for k in range(1, 12)]
    warble_hz, warble_depth = rng.uniform(3.0, 8.0), rng.uniform(0.001, 0.004)
    buzz_hz, buzz_depth = rng.uniform(60.0, 140.0), rng.uniform(0.1, 0.3)
    phase0 = rng.uniform(0.0, 2 * np.pi)
    fade_n = _n(rng.uniform(0.002, 0.005), sr)
    durs, gaps = _fit_pattern([_n(d, sr) for d in durs_s], [_n(g, sr) for g in gaps_s], max_n)
    f_top = freq * (1 + warble_depth)

    def render(_i: int, start: int, n: int) -> np.ndarray:
        t = (start + np.arange(n)) / sr
        inst = freq * (1.0 + warble_depth * np.sin(2 * np.pi * warble_hz * t))
        phase = phase0 + 2 * np.pi * np.cumsum(inst) / sr
        y = _harmonics(phase, amps, f_top, sr) * (1.0 - buzz_depth * (0.5 + 0.5 * np.sin(2 * np.pi * buzz_hz * t)))
        return _fade(y, fade_n, fade_n)

    return _finish(_render_pattern(durs, gaps, render), rng)


def finger_snap(
    rng: np.random.Generator, sample_rate_hz: int = 16_000, *, max_seconds: float | None = None
) -> np.ndarray:
    """1–3 finger snaps, 0.25–0.6 s apart: sharp broadband clicks.

    Each snap is an 8–22 ms burst of noise band-passed to ~1.5–6 kHz (capped below 0.45 x sample rate) with a
    0.2–0.8 ms attack and an exponential decay to -50 dB, plus a faint decaying 1.8–3.2 kHz ring.

    Args:
        rng: source of all randomness.
        sample_rate_hz: output sample rate (Hz), at least 8000.
        max_seconds: if set, trailing snaps are dropped so the sound fits.

    Returns:
        float32 ``[samples]`` from the first snap's onset to the end of the last snap's decay.
    """
    sr = _check_rate(sample_rate_hz)
    max_n = _max_samples(max_seconds, sr)
    n_snaps = int(rng.integers(1, 4))
    interval_s = rng.uniform(0.25, 0.6)
    lo, hi = rng.uniform(1300.0, 2000.0), rng.uniform(5000.0, 7000.0)
    ring_hz, ring_level = rng.uniform(1800.0, 3200.0), rng.uniform(0.1, 0.35)
    durs_s = rng.uniform(0.008, 0.022, n_snaps)
    gaps_s = interval_s * rng.uniform(0.9, 1.1, n_snaps - 1) - durs_s[:-1]
    levels = rng.uniform(0.7, 1.0, n_snaps)
    attacks = rng.uniform(0.0002, 0.0008, n_snaps)
    durs, gaps = _fit_pattern([_n(d, sr) for d in durs_s], [_n(g, sr) for g in gaps_s], max_n)
    noises = [_bandpass_noise(rng, d, sr, lo, hi) for d in durs]
    ring_phases = rng.uniform(0.0, 2 * np.pi, len(durs))

    def render(i: int, _start: int, n: int) -> np.ndarray:
        t = np.arange(n) / sr
        tau = n / sr / (50.0 / 8.686)  # reaches -50 dB at the end
        y = noises[i] + ring_level * np.sin(2 * np.pi * ring_hz * t + ring_phases[i]) * np.exp(-t / tau)
        y *= np.exp(-t / tau)
        attack_n = min(n, _n(attacks[i], sr))
        y[:attack_n] *= (np.arange(attack_n) + 1.0) / attack_n
        return levels[i] * _fade(y, 0, _n(0.001, sr))

    return _finish(_render_pattern(durs, gaps, render), rng)


def scratch(rng: np.random.Generator, sample_rate_hz: int = 16_000, *, max_seconds: float | None = None) -> np.ndarray:
    """A dog scratching at a door: 0.5–1.5 s of short grainy noise bursts in an irregular rhythm.

    Bursts last 20–80 ms, 30–160 ms apart (sometimes a 150–300 ms pause), noise band-passed to ~0.5–3 kHz
    with a rough (20–300 Hz) amplitude texture, 2–6 ms attacks and per-burst level changes.

    Args:
        rng: source of all randomness.
        sample_rate_hz: output sample rate (Hz), at least 8000.
        max_seconds: if set, the scratching stops in time to fit.

    Returns:
        float32 ``[samples]`` from the first burst's onset to the last burst's offset.
    """
    sr = _check_rate(sample_rate_hz)
    max_n = _max_samples(max_seconds, sr)
    total_n = _n(rng.uniform(0.5, 1.5), sr)
    if max_n is not None:
        total_n = min(total_n, max_n)
    lo, hi = rng.uniform(400.0, 800.0), rng.uniform(2200.0, 3200.0)
    durs: list[int] = []
    gaps: list[int] = []
    t = 0
    while True:
        d = _n(rng.uniform(0.02, 0.08), sr)
        if durs and t + d > total_n:
            break
        d = min(d, total_n - t)
        durs.append(d)
        t += d
        g = _n(rng.uniform(0.15, 0.3) if rng.random() < 0.15 else rng.uniform(0.03, 0.16), sr)
        if t + g + _n(0.02, sr) > total_n:
            break
        gaps.append(g)
        t += g
    gaps = gaps[: len(durs) - 1]
    length = sum(durs) + sum(gaps)
    texture = _bandpass_noise(rng, length, sr, lo, hi)
    grain = np.abs(_lowpass_noise(rng, length, sr, rng.uniform(150.0, 300.0)))
    texture *= 0.4 + 0.6 * grain / max(float(grain.max()), 1e-12)
    levels = rng.uniform(0.5, 1.0, len(durs))
    attacks = rng.uniform(0.002, 0.006, len(durs))
    decays = rng.uniform(1.5, 3.0, len(durs))

    def render(i: int, start: int, n: int) -> np.ndarray:
        tt = np.arange(n) / sr
        env = (1.0 - np.exp(-(tt + 0.5 / sr) / attacks[i])) * np.exp(-tt * decays[i] / (n / sr))
        return _fade(levels[i] * env * texture[start : start + n], 0, _n(0.002, sr))

    return _finish(_render_pattern(durs, gaps, render), rng)


def door_knock(
    rng: np.random.Generator, sample_rate_hz: int = 16_000, *, max_seconds: float | None = None
) -> np.ndarray:
    """2–5 knocks on a wooden door, 0.12–0.3 s apart.

    Each knock is a click (noise band-passed to 1–4 kHz, ~1.5 ms decay) exciting three damped modes: a
    90–250 Hz body mode, a second mode 2.1–2.9x higher, and a 600–1200 Hz panel mode (15–40 ms decay).

    Args:
        rng: source of all randomness.
        sample_rate_hz: output sample rate (Hz), at least 8000.
        max_seconds: if set, trailing knocks are dropped so the sound fits.

    Returns:
        float32 ``[samples]`` from the first knock's onset to the end of the last knock's decay.
    """
    sr = _check_rate(sample_rate_hz)
    max_n = _max_samples(max_seconds, sr)
    n_knocks = int(rng.integers(2, 6))
    f1 = rng.uniform(90.0, 250.0)
    f2 = f1 * rng.uniform(2.1, 2.9)
    f3 = rng.uniform(600.0, 1200.0)
    tau = rng.uniform(0.015, 0.04)
    knock_s = tau * 50.0 / 8.686  # the slowest mode reaches -50 dB
    interval_s = max(rng.uniform(0.12, 0.3), knock_s + 0.03)
    durs_s = np.full(n_knocks, knock_s)
    gaps_s = interval_s * rng.uniform(0.9, 1.1, n_knocks - 1) - knock_s
    mode_amps = (1.0, rng.uniform(0.4, 0.8), rng.uniform(0.4, 0.8))
    click_level = rng.uniform(0.3, 0.7)
    levels = rng.uniform(0.75, 1.0, n_knocks)
    durs, gaps = _fit_pattern([_n(d, sr) for d in durs_s], [_n(g, sr) for g in gaps_s], max_n)
    clicks = [_bandpass_noise(rng, d, sr, 1000.0, 4000.0) for d in durs]
    phases = rng.uniform(0.0, 2 * np.pi, (len(durs), 3))

    def render(i: int, _start: int, n: int) -> np.ndarray:
        t = np.arange(n) / sr
        y = (
            mode_amps[0] * np.sin(2 * np.pi * f1 * t + phases[i, 0]) * np.exp(-t / tau)
            + mode_amps[1] * np.sin(2 * np.pi * f2 * t + phases[i, 1]) * np.exp(-t / (0.6 * tau))
            + mode_amps[2] * np.sin(2 * np.pi * f3 * t + phases[i, 2]) * np.exp(-t / (0.25 * tau))
            + click_level * clicks[i] * np.exp(-t / 0.0015)
        )
        return levels[i] * _fade(y, _n(0.001, sr), _n(0.002, sr))

    return _finish(_render_pattern(durs, gaps, render), rng)


def chirp(rng: np.random.Generator, sample_rate_hz: int = 16_000, *, max_seconds: float | None = None) -> np.ndarray:
    """A rising whistle: an exponential sweep from 0.8–2 kHz up to 3.5–6.5 kHz in 0.2–0.8 s.

    A faint 2nd harmonic is added when it stays below 0.45 x sample rate; 3–15 ms fade-in, 10–50 ms fade-out.

    Args:
        rng: source of all randomness.
        sample_rate_hz: output sample rate (Hz), at least 8000.
        max_seconds: if set, the sweep is made shorter so it fits.

    Returns:
        float32 ``[samples]``, the sweep from onset to offset.
    """
    sr = _check_rate(sample_rate_hz)
    max_n = _max_samples(max_seconds, sr)
    n = _n(rng.uniform(0.2, 0.8), sr)
    if max_n is not None:
        n = min(n, max_n)
    f0 = rng.uniform(800.0, 2000.0)
    f1 = min(rng.uniform(3500.0, 6500.0), _fmax(sr))
    h2 = rng.uniform(0.05, 0.2)
    phase0 = rng.uniform(0.0, 2 * np.pi)
    fade_in, fade_out = _n(rng.uniform(0.003, 0.015), sr), _n(rng.uniform(0.01, 0.05), sr)
    duration = n / sr
    t = np.arange(n) / sr
    k = f1 / f0
    phase = phase0 + 2 * np.pi * f0 * duration / np.log(k) * (k ** (t / duration) - 1.0)
    y = _harmonics(phase, (1.0, h2), f1, sr)
    return _finish(_fade(y, min(fade_in, n // 2), min(fade_out, n // 2)), rng)


def speech(
    rng: np.random.Generator,
    sample_rate_hz: int = 16_000,
    *,
    max_seconds: float | None = None,
    text: str = "hello",
    voice: str = "en",
) -> np.ndarray:
    """Spoken ``text`` from the espeak-ng synthesiser, with random pitch (30–70) and speed (140–190 wpm).

    Not one of the default classes; useful as a distractor or a "say a word" class. Leading and trailing
    silence (below -50 dB of the peak) is trimmed, the result resampled to ``sample_rate_hz``.

    Args:
        rng: source of the pitch and speed.
        sample_rate_hz: output sample rate (Hz), at least 8000.
        max_seconds: if set, the speech is cut (with a 10 ms fade) to fit.
        text: what to say.
        voice: an espeak-ng voice name, e.g. ``"en"``, ``"en-us"``, ``"de"``.

    Returns:
        float32 ``[samples]`` from the first to the last audible sample.

    Raises:
        RuntimeError: espeak-ng is not installed or fails.
    """
    sr = _check_rate(sample_rate_hz)
    max_n = _max_samples(max_seconds, sr)
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(
            "speech() needs the espeak-ng program, which is not installed or not on PATH "
            "(Debian/Ubuntu: sudo apt-get install espeak-ng; macOS: brew install espeak-ng)."
        )
    pitch, speed = int(rng.integers(30, 71)), int(rng.integers(140, 191))
    with tempfile.TemporaryDirectory(prefix="snapkit-speech-") as tmp:
        out = Path(tmp) / "speech.wav"
        cmd = [exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(out), "--", text]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise RuntimeError(f"espeak-ng could not be run: {err}") from err
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"espeak-ng failed (exit {proc.returncode}): {proc.stderr.strip()}")
        audio, file_sr = sf.read(out, dtype="float64", always_2d=True)
    x = audio.mean(axis=1)
    if file_sr != sr:
        g = math.gcd(int(file_sr), sr)
        x = signal.resample_poly(x, sr // g, int(file_sr) // g)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak <= 0:
        raise RuntimeError(f"espeak-ng produced silence for {text!r}")
    loud = np.flatnonzero(np.abs(x) >= peak * 10 ** (-50 / 20))
    x = x[loud[0] : loud[-1] + 1].copy()
    if max_n is not None and len(x) > max_n:
        x = _fade(x[:max_n].copy(), 0, min(_n(0.01, sr), max_n))
    return _finish(_fade(x, min(_n(0.001, sr), len(x)), min(_n(0.001, sr), len(x))), rng)


SOUND_CLASSES: dict[str, SoundGenerator] = {
    "beep": beep_pattern,
    "smoke_alarm": smoke_alarm,
    "snap": finger_snap,
    "scratch": scratch,
    "chirp": chirp,
    "knock": door_knock,
}
"""Target sound classes: label -> generator. ``speech`` is not registered (it needs an external program)."""


# ----------------------------------------------------------------------------------------------------
# Background ambience


@dataclass(frozen=True)
class _BackgroundParams:
    """What makes one room sound like itself (drawn once per clip or per stream)."""

    noise_rms: float  # RMS of the noise bed (linear, full scale = 1)
    brown_mix: float  # 0 = pink, 1 = brown
    white_mix: float  # amplitude of white hiss relative to the unit-power coloured noise
    hum_hz: int  # mains frequency, 50 or 60
    hum_amps: tuple[float, ...]  # absolute amplitude of harmonics 1..N of the hum
    hum_phases: tuple[float, ...]
    mod_depth: float  # slow level swing of the noise bed, fraction
    mod_period_s: float
    mod_phase: float
    distractors_per_minute: float


def _draw_background_params(rng: np.random.Generator) -> _BackgroundParams:
    noise_rms = 10 ** (rng.uniform(-55.0, -38.0) / 20)
    hum_on = rng.random() < 0.7
    hum_level = noise_rms * 10 ** (rng.uniform(-30.0, -8.0) / 20) if hum_on else 0.0
    shape = rng.uniform(0.2, 1.0, 6) / np.arange(1, 7) ** 0.7
    shape = shape / np.sqrt(np.sum(shape**2) / 2)  # unit RMS
    return _BackgroundParams(
        noise_rms=float(noise_rms),
        brown_mix=float(rng.uniform(0.0, 1.0)),
        white_mix=float(rng.uniform(0.05, 0.3)),
        hum_hz=int(rng.choice([50, 60])),
        hum_amps=tuple(float(a) for a in hum_level * shape),
        hum_phases=tuple(float(p) for p in rng.uniform(0.0, 2 * np.pi, 6)),
        mod_depth=float(rng.uniform(0.0, 0.25)),
        mod_period_s=float(rng.uniform(15.0, 90.0)),
        mod_phase=float(rng.uniform(0.0, 2 * np.pi)),
        distractors_per_minute=float(rng.uniform(6.0, 20.0)),
    )


class _BackgroundSource:
    """Continuous room ambience rendered block after block.

    Noise bed: one white sequence through a pink and a brown (20 Hz leaky integrator) filter whose states
    carry over between blocks, plus a little white hiss, slowly swelling in level. Mains hum (50/60 Hz and
    harmonics) whose phase is computed from the absolute sample index. Occasional faint distractors that
    resemble no target class (slow-onset drones and noise swells, dull low thuds), each inside one block.
    """

    def __init__(self, params: _BackgroundParams, sample_rate_hz: int, warmup_rng: np.random.Generator) -> None:
        self._p = params
        self._sr = sample_rate_hz
        pole = math.exp(-2 * math.pi * 20.0 / sample_rate_hz)
        self._brown_b, self._brown_a = np.array([1.0]), np.array([1.0, -pole])
        impulse = np.zeros(1 << 16)
        impulse[0] = 1.0
        pink_h = signal.lfilter(_PINK_B, _PINK_A, impulse)
        brown_h = signal.lfilter(self._brown_b, self._brown_a, impulse)
        self._pink_gain = math.sqrt(1.0 - params.brown_mix) / math.sqrt(float(np.sum(pink_h**2)))
        self._brown_gain = math.sqrt(params.brown_mix) / math.sqrt(float(np.sum(brown_h**2)))
        total_h = self._mix(pink_h, brown_h, impulse)
        self._gain = params.noise_rms / math.sqrt(float(np.sum(total_h**2)))
        self._zi_pink = np.zeros(len(_PINK_A) - 1)
        self._zi_brown = np.zeros(1)
        self._pos = 0
        # The hum (harmonics of an integer mains frequency) repeats every sr / gcd(sr, hum_hz) samples:
        # one period is tabulated and indexed by the absolute sample position, so its phase never drifts.
        period = sample_rate_hz // math.gcd(sample_rate_hz, params.hum_hz)
        j = np.arange(period, dtype=np.int64)
        self._hum = np.zeros(period)
        for k, (amp, ph) in enumerate(zip(params.hum_amps, params.hum_phases, strict=True), start=1):
            if amp and k * params.hum_hz < _fmax(sample_rate_hz):
                self._hum += amp * np.sin(2 * np.pi * ((k * params.hum_hz * j) % sample_rate_hz) / sample_rate_hz + ph)
        self._noise(warmup_rng.standard_normal(_n(0.5, sample_rate_hz)))  # settle the filter states

    def _mix(self, pink: np.ndarray, brown: np.ndarray, white: np.ndarray) -> np.ndarray:
        return self._pink_gain * pink + self._brown_gain * brown + self._p.white_mix * white

    def _noise(self, white: np.ndarray) -> np.ndarray:
        pink, self._zi_pink = signal.lfilter(_PINK_B, _PINK_A, white, zi=self._zi_pink)
        brown, self._zi_brown = signal.lfilter(self._brown_b, self._brown_a, white, zi=self._zi_brown)
        return self._gain * self._mix(pink, brown, white)

    def render(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The next ``n`` samples (float64), with noise and distractors drawn from ``rng``."""
        p, sr = self._p, self._sr
        idx = self._pos + np.arange(n, dtype=np.int64)
        y = self._noise(rng.standard_normal(n))
        if p.mod_depth:
            y *= 1.0 + p.mod_depth * np.sin(2 * np.pi * (idx / sr) / p.mod_period_s + p.mod_phase)
        if any(p.hum_amps):
            y += self._hum[idx % len(self._hum)]
        for _ in range(int(rng.poisson(p.distractors_per_minute * n / sr / 60.0))):
            d = _distractor(rng, n, sr)
            start = int(rng.integers(0, n - len(d) + 1))
            y[start : start + len(d)] += p.noise_rms * 10 ** (rng.uniform(-12.0, 0.0) / 20) * d
        self._pos += n
        return y


def _distractor(rng: np.random.Generator, max_n: int, sr: int) -> np.ndarray:
    """A unit-RMS ambient event of at most ``max_n`` samples that resembles no target class."""
    kind = int(rng.integers(0, 3))
    if kind == 2:  # a dull thud (footstep, something set down next door): below 150 Hz only
        n = min(max_n, _n(rng.uniform(0.08, 0.2), sr))
        t = np.arange(n) / sr
        y = _lowpass_noise(rng, n, sr, rng.uniform(60.0, 150.0), order=4) * np.exp(-t / rng.uniform(0.02, 0.05))
        return _unit_rms(_fade(y, _n(0.008, sr), _n(0.01, sr)))
    n = min(max_n, _n(rng.uniform(0.8, 4.0), sr))
    t = np.arange(n) / sr
    if kind == 0:  # a drone (fridge compressor, distant engine): 80–600 Hz with harmonics, slight vibrato
        f0 = rng.uniform(80.0, 600.0)
        inst = f0 * (1.0 + 0.01 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t))
        phase = rng.uniform(0.0, 2 * np.pi) + 2 * np.pi * np.cumsum(inst) / sr
        y = _harmonics(phase, (1.0, 0.5, 0.33, 0.25), 1.01 * f0, sr)
    else:  # a swell of low noise (a car passing, wind, a tap running somewhere)
        y = _lowpass_noise(rng, n, sr, rng.uniform(150.0, 900.0))
    edge = max(1, int(n * rng.uniform(0.25, 0.5)))
    return _unit_rms(_fade(y, edge, edge))


def _background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    params = _draw_background_params(rng)
    return _BackgroundSource(params, sr, rng).render(rng, n)


def background(rng: np.random.Generator, sample_rate_hz: int = 16_000, *, seconds: float = 2.0) -> np.ndarray:
    """Room ambience: pink/brown noise (-55 to -38 dBFS RMS), often 50/60 Hz hum, faint distractors.

    Level, colour, hum and distractors vary from call to call. Distractors are slow drones (80–600 Hz),
    low noise swells and dull thuds below 150 Hz: nothing like beeps, alarms, snaps, scratching or chirps.

    Args:
        rng: source of all randomness.
        sample_rate_hz: output sample rate (Hz), at least 8000.
        seconds: length (s).

    Returns:
        float32 ``[round(seconds * sample_rate_hz)]``.
    """
    sr = _check_rate(sample_rate_hz)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    return _background(rng, _n(seconds, sr), sr).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Clips and datasets


def _snr_range(snr_db: float | tuple[float, float]) -> tuple[float, float]:
    lo, hi = (snr_db, snr_db) if isinstance(snr_db, int | float) else snr_db
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"snr_db must be a number or a (low, high) pair with low <= high, got {snr_db!r}")
    return lo, hi


def _generator(label: str) -> SoundGenerator:
    try:
        return SOUND_CLASSES[label]
    except KeyError:
        known = ", ".join(sorted(SOUND_CLASSES))
        raise ValueError(f"unknown sound class {label!r}; choose from {known} (or {BACKGROUND_LABEL!r})") from None


def _generate(label: str, rng: np.random.Generator, sr: int, max_n: int) -> np.ndarray:
    """A sound of class ``label`` at most ``max_n`` samples long (float64)."""
    s = np.asarray(_generator(label)(rng, sr, max_seconds=max_n / sr), dtype=np.float64)
    if len(s) > max_n:  # rounding in a generator; cut with a fade rather than fail
        s = _fade(s[:max_n].copy(), 0, min(_n(0.002, sr), max_n))
    return s


def _gain_for_snr(sound: np.ndarray, bg: np.ndarray, snr_db: float, sr: int) -> tuple[float, float, float]:
    """Gain that puts ``sound`` ``snr_db`` dB above ``bg``; also returns (P_active(sound), P(bg))."""
    p_sound = active_power(sound, sr)
    p_bg = max(float(np.mean(bg**2)) if len(bg) else 0.0, 1e-20)
    gain = math.sqrt(p_bg * 10 ** (snr_db / 10) / p_sound) if p_sound > 0 else 0.0
    return gain, p_sound, p_bg


def make_clip(
    label: str,
    rng: np.random.Generator,
    *,
    seconds: float = 2.0,
    sample_rate_hz: int = 16_000,
    snr_db: float | tuple[float, float] = (5.0, 25.0),
) -> np.ndarray:
    """A training clip: background ambience plus one sound of class ``label`` fully inside it.

    The sound starts at a uniformly random sample such that it ends inside the clip, at an SNR drawn
    uniformly from ``snr_db`` (active power of the sound vs. power of the background under it). Sounds
    longer than the clip are shortened by their generator (e.g. a 2 s smoke-alarm clip holds two pulses).
    If the mix would peak above 0.95, the whole clip is scaled down (the SNR is unchanged).

    Args:
        label: a key of :data:`SOUND_CLASSES`, or ``"background"`` for ambience only.
        rng: source of all randomness.
        seconds: clip length (s).
        sample_rate_hz: sample rate (Hz), at least 8000.
        snr_db: an SNR (dB) or a (low, high) range to draw it from.

    Returns:
        float32 ``[round(seconds * sample_rate_hz)]``, peak below 0.95.
    """
    sr = _check_rate(sample_rate_hz)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    lo, hi = _snr_range(snr_db)
    if label != BACKGROUND_LABEL:
        _generator(label)  # fail before drawing anything
    n = _n(seconds, sr)
    clip = _background(rng, n, sr)
    if label != BACKGROUND_LABEL:
        sound = _generate(label, rng, sr, n)
        start = int(rng.integers(0, n - len(sound) + 1))
        segment = clip[start : start + len(sound)]
        gain, _, _ = _gain_for_snr(sound, segment, rng.uniform(lo, hi), sr)
        segment += gain * sound
    peak = float(np.max(np.abs(clip)))
    if peak > _MAX_PEAK:
        clip *= _MAX_PEAK / peak
    return clip.astype(np.float32)


def _child_rng(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for ``key`` under ``seed`` (SeedSequence spawn key)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _label_key(label: str) -> int:
    return zlib.crc32(label.encode("utf-8"))


def _write_pcm16_new(path: Path, audio: np.ndarray, sample_rate_hz: int) -> None:
    """Write a 16-bit PCM WAV to a temporary name, then move it to ``path``; never replaces a file."""
    if path.exists():
        raise FileExistsError(_exists_message(path))
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.part")
    try:
        sf.write(tmp, audio, sample_rate_hz, subtype="PCM_16", format="WAV")
        if path.exists():
            raise FileExistsError(_exists_message(path))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _exists_message(path: Path) -> str:
    return (
        f"{path} already exists; snapkit never overwrites audio files. "
        "Write the example dataset into an empty folder, or move the existing files away first."
    )


def make_dataset(
    root: Path | str,
    *,
    classes: Sequence[str] = ("beep", "smoke_alarm", "snap", "scratch"),
    clips_per_class: int = 10,
    background_clips: int = 10,
    seconds: float = 2.0,
    sample_rate_hz: int = 16_000,
    seed: int = 0,
) -> dict[str, list[Path]]:
    """Write an example dataset: ``root/<label>/<label>-NNN.wav`` (16-bit PCM, mono).

    Every clip comes from :func:`make_clip` with its own generator derived from ``(seed, label, index)``,
    so a clip does not change when other classes or counts change. Before anything is written, every target
    path is checked: if any exists, :class:`FileExistsError` is raised and nothing is written.

    Args:
        root: dataset folder (created if missing).
        classes: target class labels (keys of :data:`SOUND_CLASSES`).
        clips_per_class: clips per target class.
        background_clips: clips of the ``"background"`` class (0 for none).
        seconds: clip length (s).
        sample_rate_hz: sample rate (Hz).
        seed: dataset seed (a non-negative int).

    Returns:
        label -> written paths, in class order, ``"background"`` last.

    Raises:
        FileExistsError: a file to be written already exists (nothing is overwritten).
        ValueError: an unknown or repeated class, a negative count.
    """
    sr = _check_rate(sample_rate_hz)
    classes = tuple(classes)
    for label in classes:
        if label == BACKGROUND_LABEL:
            raise ValueError(f"{BACKGROUND_LABEL!r} is not a target class; set background_clips instead")
        _generator(label)
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must not repeat, got {classes!r}")
    if clips_per_class < 0 or background_clips < 0:
        raise ValueError("clips_per_class and background_clips must not be negative")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    root = Path(root)
    plan = [(label, clips_per_class) for label in classes]
    if background_clips:
        plan.append((BACKGROUND_LABEL, background_clips))
    paths = {label: [root / label / f"{label}-{i:03d}.wav" for i in range(count)] for label, count in plan}
    for label_paths in paths.values():
        for path in label_paths:
            if path.exists():
                raise FileExistsError(_exists_message(path))
    for label, label_paths in paths.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(label_paths):
            rng = _child_rng(seed, _label_key(label), i)
            clip = make_clip(label, rng, seconds=seconds, sample_rate_hz=sr)
            _write_pcm16_new(path, clip, sr)
    return paths


# ----------------------------------------------------------------------------------------------------
# Streams


@dataclass(frozen=True)
class PlantedEvent:
    """A sound planted in a synthetic stream.

    ``onset_s`` is the time (s from the stream start) of the sound's first sample, ``offset_s`` the time just
    after its last sample: the sound occupies samples ``round(onset_s * sr)`` to ``round(offset_s * sr) - 1``.
    ``snr_db`` is the SNR actually used (dB, active sound power vs. the background under it); it is below
    the drawn value only when the sound had to be turned down to keep the stream's peak under 0.95.
    """

    label: str
    onset_s: float
    offset_s: float
    snr_db: float

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s


@dataclass(frozen=True, eq=False)
class StreamChunk:
    """One chunk of :func:`iter_stream`: ``audio`` float32 ``[samples]`` starting at ``start_sample`` and
    the planted events whose onset lies in this chunk (their offset may lie in a later chunk)."""

    start_sample: int
    audio: np.ndarray
    sample_rate_hz: int
    events: tuple[PlantedEvent, ...] = field(default=())

    @property
    def start_s(self) -> float:
        return self.start_sample / self.sample_rate_hz

    @property
    def end_s(self) -> float:
        return (self.start_sample + len(self.audio)) / self.sample_rate_hz


@dataclass(frozen=True)
class _StreamSpec:
    seed: int
    n_total: int
    sr: int
    block_n: int
    classes: tuple[str, ...]
    events_per_minute: float
    snr: tuple[float, float]
    min_gap_n: int
    background: bool


def _stream_spec(
    rng_or_seed: int | np.random.Generator,
    duration_s: float,
    classes: Sequence[str],
    sample_rate_hz: int,
    events_per_minute: float,
    snr_db: float | tuple[float, float],
    min_gap_s: float,
    background: bool,
    block_s: float,
) -> _StreamSpec:
    sr = _check_rate(sample_rate_hz)
    if isinstance(rng_or_seed, np.random.Generator):
        seed = int(rng_or_seed.integers(0, 2**63 - 1))
    elif isinstance(rng_or_seed, int | np.integer) and not isinstance(rng_or_seed, bool) and rng_or_seed >= 0:
        seed = int(rng_or_seed)
    else:
        raise TypeError(f"rng_or_seed must be a non-negative int or a numpy Generator, got {rng_or_seed!r}")
    if isinstance(classes, str):
        raise TypeError("classes must be a sequence of labels, not a single string")
    classes = tuple(classes)
    for label in classes:
        _generator(label)
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
    if not (math.isfinite(events_per_minute) and events_per_minute >= 0):
        raise ValueError(f"events_per_minute must be >= 0, got {events_per_minute!r}")
    if events_per_minute > 0 and not classes:
        raise ValueError("classes is empty: name at least one sound class, or set events_per_minute=0")
    if not (math.isfinite(min_gap_s) and min_gap_s >= 0):
        raise ValueError(f"min_gap_s must be >= 0, got {min_gap_s!r}")
    if not (math.isfinite(block_s) and block_s > 0):
        raise ValueError(f"block_s must be a positive number of seconds, got {block_s!r}")
    return _StreamSpec(
        seed=seed,
        n_total=_n(duration_s, sr),
        sr=sr,
        block_n=_n(block_s, sr),
        classes=classes,
        events_per_minute=float(events_per_minute),
        snr=_snr_range(snr_db),
        min_gap_n=round(float(min_gap_s) * sr),
        background=bool(background),
    )


def _plant_events(
    rng: np.random.Generator, bg: np.ndarray, block_start: int, spec: _StreamSpec
) -> tuple[np.ndarray, list[PlantedEvent]]:
    """Sounds for one block: returns (events-only signal float64 [len(bg)], events sorted by onset)."""
    n, sr = len(bg), spec.sr
    placed = np.zeros(n)
    margin = (spec.min_gap_n + 1) // 2  # events in neighbouring blocks stay min_gap apart
    room = n - 2 * margin
    if not spec.classes or spec.events_per_minute <= 0 or room <= 0:
        return placed, []
    count = int(rng.poisson(spec.events_per_minute * n / sr / 60.0))
    labels: list[str] = []
    sounds: list[np.ndarray] = []
    used = 0
    for _ in range(count):
        label = spec.classes[int(rng.integers(len(spec.classes)))]
        gap = spec.min_gap_n if sounds else 0
        max_len = room - used - gap
        if max_len < _n(0.05, sr):
            break  # the block is full; drop the remaining events
        sound = _generate(label, rng, sr, max_len)
        labels.append(label)
        sounds.append(sound)
        used += gap + len(sound)
    slack = room - used
    shifts = np.sort(rng.integers(0, slack + 1, size=len(sounds)))
    events = []
    pos = margin
    for i, (label, sound) in enumerate(zip(labels, sounds, strict=True)):
        onset = pos + int(shifts[i])
        offset = onset + len(sound)
        segment = bg[onset:offset]
        gain, p_sound, p_bg = _gain_for_snr(sound, segment, rng.uniform(*spec.snr), sr)
        peak = float(np.max(np.abs(segment + gain * sound)))
        if peak > _MAX_PEAK:  # turn the sound down rather than clip; record the SNR actually used
            gain *= max(_MAX_PEAK - float(np.max(np.abs(segment))), 0.0) / (gain * float(np.max(np.abs(sound))))
        snr = 10 * math.log10(gain**2 * p_sound / p_bg) if gain > 0 and p_sound > 0 else -math.inf
        placed[onset:offset] = gain * sound
        events.append(PlantedEvent(label, (block_start + onset) / sr, (block_start + offset) / sr, snr))
        pos += len(sound) + spec.min_gap_n
    return placed, events


def _iter_blocks(spec: _StreamSpec) -> Iterator[tuple[int, np.ndarray, list[PlantedEvent]]]:
    """Yield (start_sample, float32 audio, events) for each block of the stream."""
    params_rng = _child_rng(spec.seed, _KEY_PARAMS)
    source = _BackgroundSource(_draw_background_params(params_rng), spec.sr, params_rng)
    start, k = 0, 0
    while start < spec.n_total:
        n = min(spec.block_n, spec.n_total - start)
        bg = source.render(_child_rng(spec.seed, _KEY_BACKGROUND, k), n)
        placed, events = _plant_events(_child_rng(spec.seed, _KEY_EVENTS, k), bg, start, spec)
        audio = bg + placed if spec.background else placed
        yield start, audio.astype(np.float32), events
        start += n
        k += 1


def make_stream(
    rng_or_seed: int | np.random.Generator,
    *,
    duration_s: float,
    classes: Sequence[str],
    sample_rate_hz: int = 16_000,
    events_per_minute: float = 6.0,
    snr_db: float | tuple[float, float] = (6.0, 20.0),
    min_gap_s: float = 1.0,
    background: bool = True,
    block_s: float = 60.0,
) -> tuple[np.ndarray, list[PlantedEvent]]:
    """A stream of room ambience with sounds planted at random, non-overlapping times.

    The stream is built in blocks of ``block_s`` seconds (see the module docstring); the number of events in
    a block is Poisson with mean ``events_per_minute * block_s / 60`` (fewer if they do not fit), each of a
    class drawn uniformly from ``classes``, at an SNR drawn uniformly from ``snr_db``. Consecutive events
    are at least ``min_gap_s`` apart (offset to next onset); no event starts within ``min_gap_s / 2`` of the
    stream's start or ends within it of the stream's end.

    Args:
        rng_or_seed: a non-negative int seed, or a Generator (one integer seed is drawn from it).
        duration_s: stream length (s).
        classes: labels of the sounds to plant (keys of :data:`SOUND_CLASSES`).
        sample_rate_hz: sample rate (Hz).
        events_per_minute: mean event rate (events per minute); 0 for ambience only.
        snr_db: an SNR (dB) or a (low, high) range.
        min_gap_s: least silence between two events (s).
        background: if False, the ambience is left out (events on digital silence, same samples, same SNR
            bookkeeping as with it).
        block_s: block length (s); the same seed with another block length gives another stream.

    Returns:
        (audio float32 ``[round(duration_s * sample_rate_hz)]``, events sorted by onset).
    """
    spec = _stream_spec(
        rng_or_seed,
        duration_s,
        classes,
        sample_rate_hz,
        events_per_minute,
        snr_db,
        min_gap_s,
        background,
        block_s,
    )
    audio = np.empty(spec.n_total, dtype=np.float32)
    events: list[PlantedEvent] = []
    for start, block, block_events in _iter_blocks(spec):
        audio[start : start + len(block)] = block
        events.extend(block_events)
    return audio, events


def iter_stream(
    rng_or_seed: int | np.random.Generator,
    *,
    duration_s: float,
    classes: Sequence[str],
    chunk_s: float = 1.0,
    sample_rate_hz: int = 16_000,
    events_per_minute: float = 6.0,
    snr_db: float | tuple[float, float] = (6.0, 20.0),
    min_gap_s: float = 1.0,
    background: bool = True,
    block_s: float = 60.0,
) -> Iterator[StreamChunk]:
    """The stream of :func:`make_stream`, in chunks of ``chunk_s`` seconds, in flat memory.

    For the same integer seed and arguments, the chunks' audio concatenates to exactly the samples of
    :func:`make_stream`, and the chunks' events to its event list. Memory stays about one block plus one
    chunk, so a 24-hour stream is fine. Arguments are checked when this is called, not at the first chunk.

    Args:
        chunk_s: chunk length (s); every chunk has ``round(chunk_s * sample_rate_hz)`` samples except
            possibly the last, which is shorter.
        (others): as :func:`make_stream`.

    Yields:
        :class:`StreamChunk` in order; each carries the events whose onset falls inside it.
    """
    spec = _stream_spec(
        rng_or_seed,
        duration_s,
        classes,
        sample_rate_hz,
        events_per_minute,
        snr_db,
        min_gap_s,
        background,
        block_s,
    )
    if not (math.isfinite(chunk_s) and chunk_s > 0):
        raise ValueError(f"chunk_s must be a positive number of seconds, got {chunk_s!r}")
    return _iter_chunks(spec, _n(chunk_s, spec.sr))


def _iter_chunks(spec: _StreamSpec, chunk_n: int) -> Iterator[StreamChunk]:
    buf = np.empty(0, dtype=np.float32)
    pending: deque[tuple[int, PlantedEvent]] = deque()
    pos = 0

    def take(n: int) -> StreamChunk:
        nonlocal buf, pos
        audio, buf = buf[:n].copy(), buf[n:]
        end = pos + len(audio)
        events = []
        while pending and pending[0][0] < end:
            events.append(pending.popleft()[1])
        chunk = StreamChunk(pos, audio, spec.sr, tuple(events))
        pos = end
        return chunk

    for _start, block, events in _iter_blocks(spec):
        pending.extend((round(e.onset_s * spec.sr), e) for e in events)
        buf = np.concatenate([buf, block]) if len(buf) else block
        while len(buf) >= chunk_n:
            yield take(chunk_n)
    while len(buf):
        yield take(min(chunk_n, len(buf)))
