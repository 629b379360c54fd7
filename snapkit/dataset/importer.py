"""Cutting recordings a user already has into clips of a dataset, skipping silent stretches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snapkit.audio.io import load_audio
from snapkit.audio.levels import peak_dbfs
from snapkit.dataset.labels import validate_label
from snapkit.dataset.store import save_clip
from snapkit.errors import SnapkitError


def clip_starts(num_samples: int, clip_samples: int, hop_samples: int) -> list[int]:
    """Start samples of windows of ``clip_samples`` every ``hop_samples`` covering a signal of ``num_samples``.

    The last window is moved back to end exactly at the signal's end, so its tail is not lost; a signal shorter
    than one clip gives one window at 0 (the clip is then shorter than asked).
    """
    if num_samples <= clip_samples:
        return [0]
    starts = list(range(0, num_samples - clip_samples + 1, hop_samples))
    if starts[-1] + clip_samples < num_samples:
        starts.append(num_samples - clip_samples)
    return starts


@dataclass
class ImportReport:
    written: list[Path] = field(default_factory=list)
    silent_skipped: int = 0
    failed: dict[Path, str] = field(default_factory=dict)


def import_files(
    files: list[Path],
    data_dir: Path,
    label: str,
    *,
    seconds: float = 2.0,
    hop_s: float = 1.0,
    silence_threshold_dbfs: float = -45.0,
    keep_silent: bool = False,
    on_file: Callable[[Path, int], None] | None = None,
) -> ImportReport:
    """Cut each file into clips of ``seconds`` every ``hop_s`` and save them in ``data_dir/label/``.

    Clips keep the file's own sample rate, are named after the file and the start time, and windows whose peak is
    below ``silence_threshold_dbfs`` are skipped unless ``keep_silent``. A file that cannot be read is reported in
    ``failed`` and the others still import. ``on_file(path, clips_written)`` is called after each file.
    """
    validate_label(label)
    if seconds <= 0 or hop_s <= 0:
        raise SnapkitError(f"--seconds ({seconds}) and --hop ({hop_s}) must both be positive numbers of seconds.")
    report = ImportReport()
    for path in files:
        try:
            audio, rate = load_audio(path)
        except SnapkitError as err:
            report.failed[Path(path)] = str(err)
            if on_file:
                on_file(Path(path), 0)
            continue
        clip_samples, hop_samples = round(seconds * rate), max(1, round(hop_s * rate))
        count = 0
        for start in clip_starts(len(audio), clip_samples, hop_samples):
            clip = audio[start : start + clip_samples]
            if not keep_silent and peak_dbfs(clip) < silence_threshold_dbfs:
                report.silent_skipped += 1
                continue
            stem = f"{Path(path).stem}-{start / rate:08.2f}s"
            report.written.append(save_clip(data_dir, label, clip, rate, stem=stem))
            count += 1
        if on_file:
            on_file(Path(path), count)
    return report


def is_silent(audio: np.ndarray, threshold_dbfs: float) -> bool:
    """True when the loudest sample of ``audio`` is below ``threshold_dbfs``."""
    return peak_dbfs(audio) < threshold_dbfs
