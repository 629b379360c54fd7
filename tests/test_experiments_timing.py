"""The timing experiment's real-recording set-up (experiments/timing.py): split by source recording, the training
class folder, the ambience bed and reference spans of weakly labelled clips. Tiny seeded files, no model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from experiments.realsets import read_set
from experiments.timing import (
    load_bed,
    load_event_clips,
    reference_span,
    split_real_sets,
    write_real_train_folder,
)
from snapkit.errors import SnapkitError

RATE = 16_000
CLIP_S = 1.0
# label -> (source recordings, clips per source)
LAYOUT = {"knock": (6, 2), "bark": (5, 1), "fridge": (4, 3), "fan": (3, 2), "cutlery": (2, 2)}


def _tone_in_noise(seed: int, onset_s: float = 0.3, length_s: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    audio = 0.003 * rng.standard_normal(round(CLIP_S * RATE))
    start, end = round(onset_s * RATE), round((onset_s + length_s) * RATE)
    audio[start:end] += 0.3 * np.sin(2 * np.pi * 900.0 * np.arange(end - start) / RATE)
    return audio.astype(np.float32)


@pytest.fixture
def real_set(tmp_path: Path) -> Path:
    """A metadata set: ``LAYOUT`` clips, each source recording's clips sharing its ``source_id``."""
    root = tmp_path / "set"
    rows = []
    seed = 0
    for label, (sources, per_source) in LAYOUT.items():
        (root / label).mkdir(parents=True)
        for source in range(sources):
            for take in range(per_source):
                name = f"{label}/{source}-{take}.flac"
                sf.write(root / name, _tone_in_noise(seed), RATE)
                rows.append({"file": name, "label": label, "source_id": f"{source}"})
                seed += 1
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "source_id"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture
def long_ambience(tmp_path: Path) -> Path:
    path = tmp_path / "room.flac"
    sf.write(path, 0.01 * np.random.default_rng(99).standard_normal(12 * RATE).astype(np.float32), RATE)
    return path


def test_no_source_recording_is_on_both_sides(real_set: Path, long_ambience: Path) -> None:
    clips = read_set(real_set)
    split = split_real_sets(
        clips, ["knock", "bark"], ["fridge", "fan"], ambience_files=[long_ambience], train_clips=3, seed=1
    )
    assert {label: len(c) for label, c in split.train.items()} == {"knock": 3, "bark": 3}
    # K clips from K different sources where there are enough; every other source held out whole.
    assert len({c.group for c in split.train["knock"]}) == 3
    assert len(split.events["knock"]) == 6 and len(split.events["bark"]) == 2
    for label in ("knock", "bark"):
        assert not {c.group for c in split.train[label]} & {c.group for c in split.events[label]}
    trained_ambience = {c.group for c in split.background}
    assert trained_ambience and not trained_ambience & {c.group for c in split.ambience}
    assert {c.label for c in split.background} == {"fridge", "fan"}  # every kind of ambience is heard
    assert set(split.others) == {"cutlery"} and len(split.others["cutlery"]) == 4
    # The long file: its first 30 % to train on, the rest bed.
    (train_piece,), (bed_piece,) = split.background_pieces, split.ambience_pieces
    assert train_piece.start_s == 0 and train_piece.end_s == pytest.approx(3.6) == bed_piece.start_s
    assert bed_piece.end_s is None
    assert split == split_real_sets(
        clips, ["knock", "bark"], ["fridge", "fan"], ambience_files=[long_ambience], train_clips=3, seed=1
    )


def test_training_folder_is_what_a_user_would_record(real_set: Path, long_ambience: Path, tmp_path: Path) -> None:
    split = split_real_sets(
        read_set(real_set), ["knock"], ["fridge"], ambience_files=[long_ambience], train_clips=2, background_clips=3
    )
    folder = tmp_path / "train"
    counts = write_real_train_folder(split, folder, clip_s=1.0)
    # 3 ambience clips plus the long file's first 3.6 s cut into whole 1 s clips.
    assert counts == {"knock": 2, "background": 6}
    assert sorted(p.name for p in (folder / "knock").iterdir()) == sorted(
        f"{i:03d}_{c.path.name}" for i, c in enumerate(split.train["knock"])
    )
    assert len(list((folder / "background").iterdir())) == 6


def test_bed_joins_each_source_and_keeps_the_held_out_part_of_long_files(real_set: Path, long_ambience: Path) -> None:
    split = split_real_sets(
        read_set(real_set), ["knock"], ["fridge"], ambience_files=[long_ambience], train_clips=2, seed=2
    )
    bed = load_bed(split, RATE)
    # One bed clip per held-out fridge source (3 clips of 1 s joined by 0.1 s crossfades), then the long file's rest.
    fridge = [clip for clip in bed if clip.label == "fridge"]
    assert len(fridge) == len({c.group for c in split.ambience})
    assert all(len(clip.audio) == round((3 * CLIP_S - 2 * 0.1) * RATE) for clip in fridge)
    assert len(bed[-1].audio) == 12 * RATE - round(3.6 * RATE)


def test_reference_span_is_the_sound_or_the_whole_clip_it_fills() -> None:
    start, end = reference_span(_tone_in_noise(5), RATE)
    assert abs(start / RATE - 0.3) < 0.01 and abs(end / RATE - 0.5) < 0.01
    # A steady sound with no quiet part of its own: the whole clip is the event, not its loudest few frames.
    steady = 0.2 * np.random.default_rng(6).standard_normal(RATE).astype(np.float32)
    assert reference_span(steady, RATE) == (0, RATE)


def test_held_out_event_clips_carry_their_reference_span(real_set: Path) -> None:
    split = split_real_sets(read_set(real_set), ["knock"], ["fridge"], train_clips=2)
    planted = load_event_clips(split.events, RATE)
    assert len(planted) == len(split.events["knock"])
    for clip in planted:
        assert clip.label == "knock" and clip.span_n == reference_span(clip.audio, RATE)


def test_a_class_named_twice_or_missing_is_refused(real_set: Path) -> None:
    clips = read_set(real_set)
    with pytest.raises(SnapkitError, match="named twice"):
        split_real_sets(clips, ["knock"], ["knock", "fridge"])
    with pytest.raises(SnapkitError, match="No clips of siren"):
        split_real_sets(clips, ["siren"], ["fridge"])
    with pytest.raises(SnapkitError, match="no source recording left"):
        split_real_sets(clips, ["bark"], ["fridge"], train_clips=5)
