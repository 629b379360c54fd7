"""Labels, clip naming, cutting streams into clips, scanning a dataset and finding its problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snapkit.dataset.collector import ClipCollector
from snapkit.dataset.importer import clip_starts, import_files
from snapkit.dataset.labels import validate_label
from snapkit.dataset.scan import find_problems, scan_dataset
from snapkit.dataset.store import new_clip_path, save_clip
from snapkit.errors import DatasetError, LabelError

RATE = 16_000


@pytest.mark.parametrize("label", ["doorbell", "smoke_alarm", "dog-scratch", "Türklingel", "snap 2"])
def test_plain_labels_pass(label: str) -> None:
    assert validate_label(label) == label


@pytest.mark.parametrize(
    "label",
    ["", "   ", "..", ".", ".hidden", "a/b", "../escape", "a\\b", "x\0y", " padded", "tab\there", "a:b"],
)
def test_unsafe_labels_are_refused_with_a_sentence(label: str) -> None:
    with pytest.raises(LabelError) as err:
        validate_label(label)
    assert err.value.args[0].endswith(".")


def test_clip_names_never_collide(tmp_path: Path) -> None:
    names = {new_clip_path(tmp_path, "snap").name for _ in range(2000)}
    assert len(names) == 2000
    paths = [save_clip(tmp_path, "snap", np.zeros(160, np.float32), RATE) for _ in range(20)]
    assert len(set(paths)) == 20 and all(p.parent == tmp_path / "snap" for p in paths)


def test_collector_cuts_exact_clips_and_carries_the_rest() -> None:
    stream = np.arange(10_000, dtype=np.float32)
    for block in (1, 7, 160, 999, 10_000):
        collector = ClipCollector(3000)
        clips = [c for i in range(0, len(stream), block) for c in collector.push(stream[i : i + block])]
        assert len(clips) == 3
        assert np.array_equal(np.concatenate(clips), stream[:9000])
        assert collector.fraction == pytest.approx(1000 / 3000)
    collector.reset()
    assert collector.fraction == 0


def test_clip_starts_cover_the_tail() -> None:
    assert clip_starts(100, 40, 20) == [0, 20, 40, 60]
    assert clip_starts(105, 40, 20) == [0, 20, 40, 60, 65]
    assert clip_starts(30, 40, 20) == [0]


def test_import_cuts_skips_silence_and_reports_bad_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    audio = np.zeros(RATE * 10, np.float32)
    audio[RATE * 1 : RATE * 3] = rng.standard_normal(RATE * 2) * 0.2  # sound only in 1..3 s
    good = tmp_path / "kitchen.wav"
    sf.write(good, audio, RATE, subtype="PCM_16")
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    report = import_files([good, bad], tmp_path / "data", "fridge", seconds=2.0, hop_s=1.0)
    # Windows start at 0..8 s; those at 0, 1 and 2 s overlap the sound at 1..3 s, the other six are silent.
    assert len(report.written) == 3 and report.silent_skipped == 6
    assert list(report.failed) == [bad]
    starts = sorted(p.name for p in report.written)
    assert starts[0].startswith("kitchen-00000.00s-") and starts[-1].startswith("kitchen-00002.00s-")
    for path in report.written:
        info = sf.info(path)
        assert info.frames == 2 * RATE and info.samplerate == RATE


def _make(root: Path, label: str, n: int, amp: float, rate: int = RATE) -> None:
    rng = np.random.default_rng(len(label) + n)
    for i in range(n):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{label}{i}.wav", (rng.standard_normal(rate) * amp).astype(np.float32), rate)


def test_scan_summarises_and_finds_problems(tmp_path: Path) -> None:
    _make(tmp_path, "beep", 5, 0.1)
    _make(tmp_path, "snap", 2, 0.1, rate=44_100)
    _make(tmp_path, "whisper", 4, 0.0005)
    (tmp_path / "empty").mkdir()
    (tmp_path / "beep" / "broken.wav").write_text("oops")
    (tmp_path / "beep" / ".beep0.1234.part").write_bytes(b"half")  # an unfinished write is never a clip
    dataset = scan_dataset(tmp_path)
    summary = dataset.summary().set_index("label")
    assert summary.loc["beep", "clips"] == 5 and summary.loc["beep", "seconds"] == pytest.approx(5.0)
    assert summary.loc["snap", "sample_rates_hz"] == "44100"
    messages = "\n".join(p.message for p in find_problems(dataset))
    assert "broken.wav" in messages and "unreadable" in messages
    assert "'snap' has only 2 clip(s)" in messages
    assert "whisper" in messages and "silent" in messages
    assert "'empty' has no audio files" in messages
    assert "no 'background' class" in messages
    assert "dB from the other classes" in messages


def test_quiet_background_is_not_a_problem(tmp_path: Path) -> None:
    _make(tmp_path, "beep", 3, 0.1)
    _make(tmp_path, "background", 3, 0.0003)
    assert find_problems(scan_dataset(tmp_path)) == []


def test_missing_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_dataset(tmp_path / "nope")
