"""`snapkit record` end to end: the real CLI recording from a real PortAudio input (PulseAudio null sink)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import VirtualMic

pytestmark = pytest.mark.e2e
RATE = 16_000


def played_signal(seconds: float, seed: int) -> np.ndarray:
    """Seeded, never-repeating test sound: chirps, tone bursts and clicks, all below 6 kHz so two resamplings
    (16 kHz -> PulseAudio's 44.1 kHz -> 16 kHz) leave it intact."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    out = np.zeros(n, np.float32)
    pos = 0
    while pos < n:
        length = int(rng.integers(RATE // 10, RATE // 3))
        t = np.arange(length) / RATE
        f0, f1 = rng.uniform(200, 5000, size=2)
        piece = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1] + 1e-9)))
        piece *= np.hanning(length) * rng.uniform(0.2, 0.5)
        end = min(n, pos + length)
        out[pos:end] += piece[: end - pos]
        pos = end + int(rng.integers(0, RATE // 20))
    return out


def locate(clip: np.ndarray, reference: np.ndarray) -> tuple[int, float]:
    """Where ``clip`` best matches inside ``reference``: (offset in samples, normalised correlation 0..1)."""
    n = len(reference) + len(clip)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(reference, size) * np.conj(np.fft.rfft(clip, size)), size)[: len(reference)]
    window = np.convolve(reference.astype(np.float64) ** 2, np.ones(len(clip)), mode="full")[len(clip) - 1 :]
    score = corr / (np.sqrt(np.maximum(window[: len(corr)], 1e-12)) * np.linalg.norm(clip) + 1e-12)
    best = int(np.argmax(score))
    return best, float(score[best])


def record_cmd(data: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snapkit",
        "record",
        "played",
        "--data",
        str(data),
        "--clip-s",
        "2",
        "--device",
        "pulse",
        "--sample-rate-hz",
        str(RATE),
        "--countdown-s",
        "0",
        *extra,
    ]


def test_record_captures_what_is_played(virtual_mic: VirtualMic, tmp_path: Path) -> None:
    reference = played_signal(14.0, seed=7)
    wav = tmp_path / "played.wav"
    sf.write(wav, reference, RATE, subtype="FLOAT")
    player = virtual_mic.play(wav)
    try:
        time.sleep(0.5)
        result = subprocess.run(
            record_cmd(tmp_path / "data", "--clips", "3"),
            env=virtual_mic.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        player.wait(timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    clips = sorted((tmp_path / "data" / "played").glob("*.wav"), key=lambda p: p.stat().st_mtime_ns)
    assert len(clips) == 3, result.stdout
    offsets = []
    for path in clips:
        info = sf.info(path)
        assert (info.samplerate, info.frames, info.subtype) == (RATE, 2 * RATE, "PCM_16")
        audio, _ = sf.read(path, dtype="float32")
        offset, score = locate(audio, reference)
        assert score > 0.9, f"{path.name} does not contain the played signal (correlation {score:.2f})"
        offsets.append(offset)
    # Clips were recorded one after the other, each 2 s after the start of the previous at least.
    assert all(b - a >= 2 * RATE - RATE // 50 for a, b in itertools.pairwise(offsets)), offsets
    assert "peak" in result.stdout and "RMS" in result.stdout


def test_continuous_recording_keeps_finished_clips_on_ctrl_c(virtual_mic: VirtualMic, tmp_path: Path) -> None:
    reference = played_signal(12.0, seed=8)
    wav = tmp_path / "played.wav"
    sf.write(wav, reference, RATE, subtype="FLOAT")
    folder = tmp_path / "data" / "played"
    player = virtual_mic.play(wav)
    proc = subprocess.Popen(
        record_cmd(tmp_path / "data", "--continuous", "--clip-s", "1"),
        env=virtual_mic.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(list(folder.glob("*.wav"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.4)  # mid-way through the next clip
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        player.kill()
        player.wait()
    assert proc.returncode == 0, out + err
    assert "unfinished one was discarded" in out
    clips = sorted(folder.glob("*.wav"))
    assert len(clips) >= 2
    for path in clips:
        assert sf.info(path).frames == RATE  # every kept clip is whole
    assert not [p for p in os.listdir(folder) if p.startswith(".")], "a temporary file was left behind"


def test_silent_input_is_recorded_again_then_refused(virtual_mic: VirtualMic, tmp_path: Path) -> None:
    result = subprocess.run(
        record_cmd(tmp_path / "data", "--clips", "1", "--clip-s", "0.5"),
        env=virtual_mic.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout.count("recording it again") == 3
    assert "silent" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "data").rglob("*.wav"))
