"""Seeded test audio for the workbench tests: a small dataset and a folder of event clips as listen/detect save them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snapkit.audio.io import write_wav

RATE_HZ = 16_000


def tone(freq_hz: float, seconds: float = 1.0, level: float = 0.3, seed: int = 0) -> np.ndarray:
    """A tone with a little seeded noise ``[samples]`` at ``RATE_HZ``."""
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (level * np.sin(2 * np.pi * freq_hz * t) + noise).astype(np.float32)


def make_data(root: Path, clips_per_class: int = 3) -> Path:
    """``root/data`` with classes beep (1 kHz) and whistle (3 kHz) and a background of quiet noise."""
    data = root / "data"
    for label, freq in [("beep", 1000.0), ("whistle", 3000.0)]:
        for i in range(clips_per_class):
            write_wav(data / label / f"{label}-{i}.wav", tone(freq, seed=i), RATE_HZ)
    for i in range(clips_per_class):
        noise = np.random.default_rng(100 + i).normal(0, 0.003, RATE_HZ).astype(np.float32)
        write_wav(data / "background" / f"background-{i}.wav", noise, RATE_HZ)
    return data


def make_events(root: Path) -> Path:
    """``root/events`` with two live clips (``<label>-<stamp>-<id>.wav``) and one cut from a file, and a listen log
    giving the first its score."""
    events = root / "events"
    write_wav(events / "beep-20261206-101500-250-1.wav", tone(1000.0, seed=7), RATE_HZ)
    write_wav(events / "beep-20261206-101700-000-2.wav", tone(3000.0, seed=8), RATE_HZ)
    write_wav(events / "kitchen-0012.50s-whistle.wav", tone(1000.0, seed=9), RATE_HZ)
    log = '{"kind": "end", "event_id": 1, "label": "beep", "peak_score": 0.91, "clip_path": "%s"}\n' % (
        events / "beep-20261206-101500-250-1.wav"
    )
    (events / "listen.jsonl").write_text(log)
    return events
