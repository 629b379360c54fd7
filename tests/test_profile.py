"""Class profiles measured on training clips: frequency band and the longest pause inside the sound."""

from __future__ import annotations

import numpy as np
import pytest

from snapkit.training.profile import class_profiles

RATE = 16_000


def tone(freq_hz: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.sin(2 * np.pi * freq_hz * t)


def clip(rng: np.random.Generator, parts: list[tuple[float, float]], snr_db: float = 10.0) -> np.ndarray:
    """2 s of low-passed noise with tone pulses of (start_s, length_s) at 2 kHz, ``snr_db`` above the noise."""
    noise = np.convolve(rng.standard_normal(2 * RATE), np.ones(16) / 16, mode="same")  # mostly below 1 kHz
    noise /= np.sqrt(np.mean(noise**2))
    out = noise * 10 ** (-snr_db / 20)
    for start_s, length_s in parts:
        a = round(start_s * RATE)
        out[a : a + round(length_s * RATE)] += np.sqrt(2) * tone(2000.0, length_s)
    return out.astype(np.float32)


@pytest.fixture
def profiles() -> dict:
    rng = np.random.default_rng(0)
    waves, labels = [], []
    for i in range(6):
        waves.append(clip(rng, [(0.2 + 0.05 * i, 0.3), (0.9 + 0.05 * i, 0.3)]))  # a 0.4 s pause
        labels.append("double")
        waves.append(clip(rng, [(0.3, 1.2)]))
        labels.append("long")
        waves.append(clip(rng, []))
        labels.append("background")
    return class_profiles(waves, labels, RATE, "background")


def test_pause_inside_a_pattern_is_measured(profiles: dict) -> None:
    assert set(profiles) == {"double", "long"}
    assert profiles["double"].pause_s == pytest.approx(0.4, abs=0.03)
    assert profiles["long"].pause_s == 0.0


def test_band_is_around_the_sound_not_the_noise(profiles: dict) -> None:
    for label in ("double", "long"):
        low, high = profiles[label].band_hz
        assert 1000.0 < low < 2000.0 < high < 3500.0, profiles[label]


def test_without_background_or_sound_the_band_is_everything() -> None:
    rng = np.random.default_rng(1)
    quiet = [np.zeros(2 * RATE, np.float32), (0.01 * rng.standard_normal(2 * RATE)).astype(np.float32)]
    profile = class_profiles(quiet, ["hush", "hush"], RATE, "background")["hush"]
    assert profile.pause_s == 0.0
    assert profile.band_hz[1] == RATE / 2
