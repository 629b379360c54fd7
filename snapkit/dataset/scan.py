"""Reading a class-folder dataset (``DATA/<label>/*.wav``) and finding what is wrong with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from snapkit.audio.io import is_audio_path, load_audio
from snapkit.audio.levels import DEFAULT_ACTIVITY_DB, holds_sound, peak_dbfs, rise_above_floor_db, rms_dbfs
from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL
from snapkit.errors import DatasetError, SnapkitError

# A clip whose loudest sample is below this is silent (a muted or unplugged microphone), unless it is background.
DEFAULT_SILENCE_THRESHOLD_DBFS = -45.0
MIN_CLIPS_PER_CLASS = 3
# A class whose median loudness differs from the others' by more than this was likely recorded differently.
LOUDNESS_SPREAD_DB = 20.0
# A clip of a sound class looks like background when nothing in it rises above its own noise floor (it is steady)
# and it is either BACKGROUND_LIKE_DB quieter than the class's clips that do hold a sound, or no more than
# BACKGROUND_MATCH_DB louder than the background class. Steadiness alone is not enough: a fridge, an air conditioner
# or a long horn is steady too (60 of 100 real air-conditioner clips are), but louder than the room. The class's
# sounding clips, not all its clips, set its level, so the rule holds however many room-tone clips it has; the
# background class catches quiet sounds (a drawer barely above a running tap) whose room tone is not 10 dB below.
# Measured with experiments/import_activity.py on clips cut from real sounds with room tone between them: the
# first test alone flagged 150 of the 181 steady room-tone clips, both tests all 181 (and 5 of 269 clips holding a
# faint sound); over the 2070 real kitchen and street clips as they are, 32 were flagged (6 dB instead of 10: 61).
BACKGROUND_LIKE_DB = 10.0
BACKGROUND_MATCH_DB = 3.0
# Shorter clips have too few frames to tell their noise floor from their sound.
MIN_FLOOR_S = 0.5
# A class whose sample rate is at most this fraction of the other classes' has an empty high band.
LOW_RATE_RATIO = 0.5


@dataclass(frozen=True)
class Clip:
    """One file of the dataset; ``error`` is set (and the numbers are NaN) when it cannot be read.

    ``has_sound`` says whether anything in it rises ``DEFAULT_ACTIVITY_DB`` above its own noise floor
    (:func:`snapkit.audio.levels.holds_sound`; None for clips shorter than ``MIN_FLOOR_S``): False for room tone
    and for steady sounds alike.
    """

    path: Path
    label: str
    sample_rate_hz: int = 0
    duration_s: float = float("nan")
    peak_dbfs: float = float("nan")
    rms_dbfs: float = float("nan")
    has_sound: bool | None = None
    error: str | None = None


@dataclass(frozen=True)
class Problem:
    """Something in the dataset a user should look at. ``severity`` is "error" or "warning"."""

    severity: str
    message: str
    path: Path | None = None


@dataclass
class Dataset:
    root: Path
    clips: list[Clip]
    background_label: str = DEFAULT_BACKGROUND_LABEL
    empty_classes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Every class with at least one clip, sorted, background included."""
        return sorted({c.label for c in self.clips})

    @property
    def readable(self) -> list[Clip]:
        return [c for c in self.clips if c.error is None]

    def to_frame(self) -> pd.DataFrame:
        """One row a clip: path, label, sample_rate_hz, duration_s, peak_dbfs, rms_dbfs, has_sound, error."""
        columns = ["path", "label", "sample_rate_hz", "duration_s", "peak_dbfs", "rms_dbfs", "has_sound", "error"]
        return pd.DataFrame([c.__dict__ for c in self.clips], columns=columns)

    def summary(self) -> pd.DataFrame:
        """One row a class (column "label"): clips, seconds, sample rates, median loudness; background last."""
        rows = []
        for label in self.labels + self.empty_classes:
            clips = [c for c in self.readable if c.label == label]
            rates = sorted({c.sample_rate_hz for c in clips})
            rows.append(
                {
                    "label": label,
                    "clips": len(clips),
                    "seconds": float(sum(c.duration_s for c in clips)),
                    "sample_rates_hz": ", ".join(str(r) for r in rates) or "-",
                    "median_rms_dbfs": float(np.median([c.rms_dbfs for c in clips])) if clips else float("nan"),
                    "is_background": label == self.background_label,
                }
            )
        frame = pd.DataFrame(rows)
        if not frame.empty:
            frame = frame.sort_values(["is_background", "label"]).reset_index(drop=True)
        return frame


def scan_dataset(root: str | Path, background_label: str = DEFAULT_BACKGROUND_LABEL) -> Dataset:
    """Every audio file in ``root/<label>/``, with its level; unreadable files are kept with their error."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"Data folder {root} does not exist; record clips with `snapkit record LABEL` first.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file; give the data folder that holds one folder per class.")
    clips: list[Clip] = []
    empty: list[str] = []
    try:
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as err:
        raise DatasetError(
            f"Cannot read the data folder {root} ({err.strerror or err}); check its permissions."
        ) from None
    for class_dir in class_dirs:
        try:
            files = sorted(p for p in class_dir.iterdir() if p.is_file() and is_audio_path(p))
        except FileNotFoundError:
            continue  # removed since the data folder was listed: it is no class any more
        except OSError as err:
            raise DatasetError(
                f"Cannot read the class folder {class_dir} ({err.strerror or err}); check its permissions."
            ) from None
        if not files:
            empty.append(class_dir.name)
        for path in files:
            clips.append(_read_clip(path, class_dir.name))
    return Dataset(root=root, clips=clips, background_label=background_label, empty_classes=empty)


def _read_clip(path: Path, label: str) -> Clip:
    try:
        audio, rate = load_audio(path)
    except SnapkitError as err:
        return Clip(path=path, label=label, error=str(err))
    return Clip(
        path=path,
        label=label,
        sample_rate_hz=rate,
        duration_s=len(audio) / rate,
        peak_dbfs=peak_dbfs(audio),
        rms_dbfs=rms_dbfs(audio),
        has_sound=None if len(audio) < MIN_FLOOR_S * rate else holds_sound(rise_above_floor_db(audio, rate)),
    )


def find_problems(dataset: Dataset, silence_threshold_dbfs: float = DEFAULT_SILENCE_THRESHOLD_DBFS) -> list[Problem]:
    """What would hurt training: unreadable or silent clips, clips of a sound class that look like background, tiny
    classes, odd loudness, a class at a much lower sample rate, no background."""
    problems: list[Problem] = []
    silent: set[Path] = set()
    for clip in dataset.clips:
        if clip.error is not None:
            problems.append(Problem("error", f"unreadable: {clip.error}", clip.path))
        elif clip.peak_dbfs < silence_threshold_dbfs and clip.label != dataset.background_label:
            silent.add(clip.path)
            problems.append(
                Problem(
                    "warning",
                    f"{clip.path} is silent (peak {clip.peak_dbfs:.0f} dBFS < {silence_threshold_dbfs:.0f}); "
                    "delete it or record it again.",
                    clip.path,
                )
            )
    problems += _background_like(dataset, silent)
    for label in dataset.empty_classes:
        problems.append(Problem("warning", f"class {label!r} has no audio files; record some or remove the folder."))
    summary = dataset.summary()
    for row in summary.itertuples():
        if 0 < row.clips < MIN_CLIPS_PER_CLASS:
            problems.append(
                Problem(
                    "warning",
                    f"class {row.label!r} has only {row.clips} clip(s); record at least {MIN_CLIPS_PER_CLASS}.",
                )
            )
    # Background is quieter by nature, so it neither sets the reference nor gets compared.
    loud = summary.dropna(subset=["median_rms_dbfs"])
    loud = loud[loud["label"] != dataset.background_label]
    if len(loud) >= 2:
        overall = float(np.median(loud["median_rms_dbfs"]))
        for row in loud.itertuples():
            if abs(row.median_rms_dbfs - overall) > LOUDNESS_SPREAD_DB:
                problems.append(
                    Problem(
                        "warning",
                        f"class {row.label!r} is {row.median_rms_dbfs - overall:+.0f} dB from the other classes' "
                        "median loudness; was it recorded with another microphone or gain?",
                    )
                )
    problems += _low_rates(dataset)
    if dataset.clips and dataset.background_label not in dataset.labels:
        problems.append(
            Problem(
                "warning",
                f"no {dataset.background_label!r} class: record the room's ordinary sound with "
                f"`snapkit record {dataset.background_label}` so snapkit learns what to ignore.",
            )
        )
    return problems


def _background_like(dataset: Dataset, skip: set[Path]) -> list[Problem]:
    """One warning per sound class naming its clips that look like background (see ``BACKGROUND_LIKE_DB``);
    clips in ``skip`` (already reported as silent) are left out."""
    background = [c.rms_dbfs for c in dataset.readable if c.label == dataset.background_label]
    background_dbfs = float(np.median(background)) if background else -np.inf
    problems = []
    for label in dataset.labels:
        if label == dataset.background_label:
            continue
        clips = [c for c in dataset.readable if c.label == label]
        sounding = [c.rms_dbfs for c in clips if c.has_sound]
        sounding_dbfs = float(np.median(sounding)) if sounding else -np.inf
        quiet = [
            c.path.name
            for c in clips
            if c.has_sound is False
            and c.path not in skip
            and (c.rms_dbfs < sounding_dbfs - BACKGROUND_LIKE_DB or c.rms_dbfs <= background_dbfs + BACKGROUND_MATCH_DB)
        ]
        if quiet:
            problems.append(
                Problem(
                    "warning",
                    f"class {label!r}: {len(quiet)} clip(s) look like background (steady, nothing "
                    f"{DEFAULT_ACTIVITY_DB:g} dB above their own noise floor, and as quiet as the background or "
                    f"{BACKGROUND_LIKE_DB:g}+ dB below the class's clips that hold a sound): {', '.join(quiet)}; "
                    f"listen to them, then delete them or move them to {dataset.root / dataset.background_label}/.",
                )
            )
    return problems


def _low_rates(dataset: Dataset) -> list[Problem]:
    """A warning for each class whose sample rate is at most ``LOW_RATE_RATIO`` of the other classes'.

    Such a class has nothing above its Nyquist frequency while the others do, so a model can learn "no high
    frequencies" as that class instead of its sound, and then miss it when it is recorded at the usual rate.
    """
    rates = {
        label: float(np.median([c.sample_rate_hz for c in dataset.readable if c.label == label]))
        for label in {c.label for c in dataset.readable}
    }
    problems = []
    for label, rate in sorted(rates.items()):
        others = [r for other, r in rates.items() if other != label]
        if not others:
            continue
        typical = float(np.median(others))
        if rate <= LOW_RATE_RATIO * typical:
            problems.append(
                Problem(
                    "warning",
                    f"class {label!r} was recorded at {rate:.0f} Hz, the other classes at about {typical:.0f} Hz: "
                    f"it has nothing above {rate / 2:.0f} Hz, so a model can learn that silence up there means "
                    f"{label!r}; record it again at {typical:.0f} Hz (`snapkit record {label} --sample-rate-hz "
                    f"{typical:.0f}`).",
                )
            )
    return problems
