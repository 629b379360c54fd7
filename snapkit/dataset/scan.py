"""Reading a class-folder dataset (``DATA/<label>/*.wav``) and finding what is wrong with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from snapkit.audio.io import is_audio_path, load_audio
from snapkit.audio.levels import peak_dbfs, rms_dbfs
from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL
from snapkit.errors import DatasetError, SnapkitError

# A clip whose loudest sample is below this is silent (a muted or unplugged microphone), unless it is background.
DEFAULT_SILENCE_THRESHOLD_DBFS = -45.0
MIN_CLIPS_PER_CLASS = 3
# A class whose median loudness differs from the others' by more than this was likely recorded differently.
LOUDNESS_SPREAD_DB = 20.0


@dataclass(frozen=True)
class Clip:
    """One file of the dataset; ``error`` is set (and the numbers are NaN) when it cannot be read."""

    path: Path
    label: str
    sample_rate_hz: int = 0
    duration_s: float = float("nan")
    peak_dbfs: float = float("nan")
    rms_dbfs: float = float("nan")
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
        """One row a clip: path, label, sample_rate_hz, duration_s, peak_dbfs, rms_dbfs, error."""
        columns = ["path", "label", "sample_rate_hz", "duration_s", "peak_dbfs", "rms_dbfs", "error"]
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
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and is_audio_path(p))
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
    )


def find_problems(dataset: Dataset, silence_threshold_dbfs: float = DEFAULT_SILENCE_THRESHOLD_DBFS) -> list[Problem]:
    """What would hurt training: unreadable or silent clips, tiny classes, odd loudness, no background."""
    problems: list[Problem] = []
    for clip in dataset.clips:
        if clip.error is not None:
            problems.append(Problem("error", f"unreadable: {clip.error}", clip.path))
        elif clip.peak_dbfs < silence_threshold_dbfs and clip.label != dataset.background_label:
            problems.append(
                Problem(
                    "warning",
                    f"{clip.path} is silent (peak {clip.peak_dbfs:.0f} dBFS < {silence_threshold_dbfs:.0f}); "
                    "delete it or record it again.",
                    clip.path,
                )
            )
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
    if dataset.clips and dataset.background_label not in dataset.labels:
        problems.append(
            Problem(
                "warning",
                f"no {dataset.background_label!r} class: record the room's ordinary sound with "
                f"`snapkit record {dataset.background_label}` so snapkit learns what to ignore.",
            )
        )
    return problems
