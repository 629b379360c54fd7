"""``snapkit mine``: every detection in audio without the target sounds is saved as a background training clip.

The library is driven by the energy-threshold fake detector of ``test_detect_outputs`` on seeded noise with planted
tone bursts, so onsets, names and clip windows can be asserted exactly; the command runs end to end on the
session's trained ConvNet.
"""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snapkit.detection.mine import MineResult, mine_files
from snapkit.errors import LabelError, SnapkitError
from tests.conftest import run_cli
from tests.test_detect_outputs import RATE_HZ, FakeDetector, _planted_audio

WINDOW_S = 2.0


def _detector() -> FakeDetector:
    return FakeDetector(types.SimpleNamespace(labels=("knock", "bell")))


def _wav(path: Path, duration_s: float, bursts: list[tuple[float, float]], seed: int = 0) -> Path:
    sf.write(path, _planted_audio(duration_s, bursts, seed), RATE_HZ)
    return path


def _mine(files: list[Path], data: Path, chunk_s: float = 1.0, label: str = "background") -> MineResult:
    return mine_files(_detector(), files, data, label, sample_rate_hz=RATE_HZ, window_s=WINDOW_S, chunk_s=chunk_s)


def test_each_detection_is_saved_centred_in_the_model_window_and_counted(tmp_path: Path) -> None:
    a = _wav(tmp_path / "kitchen.wav", 10.0, [(2.0, 2.5), (6.0, 6.3)])
    b = _wav(tmp_path / "street.flac", 8.0, [(0.2, 0.4)], seed=1)
    result = _mine([a, b], tmp_path / "data")

    folder = tmp_path / "data" / "background"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["kitchen-0002.00s-knock.wav", "kitchen-0006.00s-knock.wav", "street-0000.20s-knock.wav"]
    assert result.counts == {"knock": 3} and result.total == 3 and len(result.clips) == 3
    assert result.audio_s == pytest.approx(18.0) and result.files == 2
    assert result.per_hour("knock") == pytest.approx(3 * 3600 / 18.0) and result.per_hour("bell") == 0.0

    clip, rate = sf.read(folder / "kitchen-0002.00s-knock.wav")
    assert rate == RATE_HZ and len(clip) == WINDOW_S * RATE_HZ
    # The burst 2.0-2.5 s sits in the middle of 1.25-3.25 s: loud at 0.75-1.25 s of the clip, quiet at the edges.
    loud = slice(int(0.8 * RATE_HZ), int(1.2 * RATE_HZ))
    assert np.abs(clip[loud]).max() > 0.4 and np.abs(clip[: int(0.7 * RATE_HZ)]).max() < 0.1
    # Near the start of a file the window starts at 0 and keeps its length.
    start, _ = sf.read(folder / "street-0000.20s-knock.wav")
    assert len(start) == WINDOW_S * RATE_HZ and np.abs(start[int(0.25 * RATE_HZ)]) > 0.0


def test_mining_twice_never_overwrites(tmp_path: Path) -> None:
    a = _wav(tmp_path / "a.wav", 4.0, [(1.0, 1.5)])
    _mine([a], tmp_path / "data")
    first = tmp_path / "data" / "background" / "a-0001.00s-knock.wav"
    before = first.read_bytes()
    _mine([a], tmp_path / "data")
    assert first.read_bytes() == before
    assert sorted(p.name for p in first.parent.iterdir()) == ["a-0001.00s-knock-2.wav", "a-0001.00s-knock.wav"]


def test_clips_do_not_depend_on_chunk_size(tmp_path: Path) -> None:
    a = _wav(tmp_path / "a.wav", 6.0, [(0.5, 0.9), (3.0, 3.2), (5.5, 6.0)])
    contents = []
    for chunk_s in (0.01, 0.1, 1.0):
        data = tmp_path / f"data-{chunk_s}"
        _mine([a], data, chunk_s=chunk_s)
        contents.append({p.name: p.read_bytes() for p in (data / "background").iterdir()})
    assert contents[0] == contents[1] == contents[2] and len(contents[0]) == 3


def test_an_unreadable_file_is_skipped_and_the_others_mined(tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_text("not audio")
    a = _wav(tmp_path / "a.wav", 3.0, [(1.0, 1.2)])
    result = _mine([bad, tmp_path / "missing.wav", a], tmp_path / "data")
    assert result.files == 1 and result.total == 1 and len(result.skipped) == 2
    assert "broken.wav" in result.skipped[0] and "missing.wav" in result.skipped[1]


def test_a_label_of_the_model_or_not_a_folder_name_is_refused_before_reading(tmp_path: Path) -> None:
    a = _wav(tmp_path / "a.wav", 3.0, [(1.0, 1.2)])
    with pytest.raises(SnapkitError, match=r"--label knock is one of the model's classes"):
        _mine([a], tmp_path / "data", label="knock")
    with pytest.raises(LabelError):
        _mine([a], tmp_path / "data", label="../up")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "background").write_text("a file")
    with pytest.raises(SnapkitError, match="is a file, not a class folder"):
        _mine([a], tmp_path / "data")
    assert not (tmp_path / "up").exists()


# ---------------------------------------------------------------------------------------------- the real engine


@pytest.mark.slow
def test_mine_cli_counts_what_detect_finds(detector_bundle_path: Path, tmp_path: Path) -> None:
    """The session's ConvNet on a generated stream: mine finds what detect finds, names its clips as detect
    --save-clips does, and prints the counts per class and per hour."""
    from snapkit.eval.synth import make_stream
    from snapkit.models.bundle import load_model
    from tests.conftest import DETECTOR_CLASSES

    audio, truth = make_stream(5, duration_s=24.0, classes=DETECTOR_CLASSES, events_per_minute=12, snr_db=(15, 20))
    wav = tmp_path / "other-sounds.wav"
    sf.write(wav, audio, 16_000, subtype="FLOAT")
    events = tmp_path / "events.jsonl"
    detect_clips = tmp_path / "detect-clips"
    result = run_cli(
        "detect", str(detector_bundle_path), str(wav), "--events", str(events), "--save-clips", str(detect_clips)
    )
    assert result.returncode == 0, result.stderr
    found = [line for line in events.read_text().splitlines() if line.strip()]
    assert len(found) >= len(truth) - 1 > 0

    data = tmp_path / "data"
    result = run_cli("mine", str(detector_bundle_path), str(wav), "--data", str(data))
    assert result.returncode == 0, result.stderr
    clips = sorted((data / "background").iterdir())
    assert len(clips) == len(found)
    assert [p.name for p in clips] == sorted(p.name for p in detect_clips.iterdir())
    assert all(re.fullmatch(r"other-sounds-\d{4}\.\d\ds-(beep|smoke_alarm|scratch)(-\d+)?\.wav", p.name) for p in clips)
    # Each clip is the model's window centred on its event, or the whole event when that is longer.
    clip_s = load_model(detector_bundle_path).config.clip_s
    records = [json.loads(line) for line in found]
    for clip in clips:
        onset_s = float(re.search(r"-(\d{4}\.\d\d)s-", clip.name)[1])  # type: ignore[index]
        (record,) = [r for r in records if abs(r["onset_s"] - onset_s) <= 0.006]
        length_s = max(clip_s, record["offset_s"] - record["onset_s"])
        assert sf.info(clip).duration == pytest.approx(length_s, abs=0.002), clip.name
    out = result.stdout
    assert f"{len(found)} false alarm(s) in 0.4 min of audio from 1 file(s)" in " ".join(out.split())
    for label in DETECTOR_CLASSES:
        n = sum(re.search(r"\ds-([a-z_]+)", p.name)[1] == label for p in clips)  # type: ignore[index]
        assert re.search(rf"{label}\s*│\s*{n}\s*│\s*{n * 3600 / 24.0:.1f}", out), (label, out)
    assert "too little for a reliable rate" in out

    result = run_cli("mine", str(detector_bundle_path), str(wav), "--data", str(data), "--label", "beep")
    assert result.returncode == 2 and "one of the model's classes" in " ".join(result.stderr.split())


def test_another_sample_rate_and_a_file_shorter_than_the_window(tmp_path: Path) -> None:
    # 8 kHz in: resampled to the detector's rate, so the event and its clip are where they are in seconds.
    t = np.arange(4 * 8000) / 8000
    audio = (0.01 * np.random.default_rng(3).standard_normal(len(t))).astype(np.float32)
    burst = (t >= 1.5) & (t < 2.0)
    audio[burst] += 0.5 * np.sin(2 * np.pi * 800 * t[burst]).astype(np.float32)
    low = tmp_path / "low.wav"
    sf.write(low, audio, 8000)
    short = _wav(tmp_path / "short.wav", 0.5, [])
    result = _mine([low, short], tmp_path / "data")
    (clip,) = (tmp_path / "data" / "background").iterdir()
    assert clip.name == "low-0001.50s-knock.wav" and sf.info(clip).samplerate == RATE_HZ
    assert sf.info(clip).duration == pytest.approx(WINDOW_S)
    assert result.files == 2 and result.total == 1 and result.audio_s == pytest.approx(4.5)


def test_a_clip_that_cannot_be_written_is_counted_and_mining_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import snapkit.detection.sinks

    def disk_full(path: Path, audio: np.ndarray, rate_hz: int) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapkit.detection.sinks, "write_wav", disk_full)
    warnings: list[str] = []
    a = _wav(tmp_path / "a.wav", 6.0, [(1.0, 1.2), (4.0, 4.2)])
    result = mine_files(
        _detector(),
        [a],
        tmp_path / "data",
        "background",
        sample_rate_hz=RATE_HZ,
        window_s=WINDOW_S,
        on_warning=warnings.append,
    )
    assert result.total == 2 and result.failures == 2 and result.clips == []
    assert all("No space left" in w for w in warnings) and len(warnings) == 2
