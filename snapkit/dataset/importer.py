"""Cutting recordings a user already has into clips of a dataset, skipping silent and room-tone-only stretches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snapkit.audio.io import load_audio
from snapkit.audio.levels import ACTIVITY_HOP_S, DEFAULT_ACTIVITY_DB, holds_sound, peak_dbfs, rise_above_floor_db
from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL, validate_label
from snapkit.dataset.store import save_clip
from snapkit.errors import SnapkitError
from snapkit.files import disk_advice


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
    """What an import did. ``room_tone_skipped`` counts windows that were not silent but held nothing above their
    file's noise floor; ``steady_files`` are files with no such stretch anywhere, kept whole; the two ``checked``
    flags say which tests ran (see import_files)."""

    written: list[Path] = field(default_factory=list)
    silence_checked: bool = False
    room_tone_checked: bool = False
    silent_skipped: int = 0
    room_tone_skipped: int = 0
    steady_files: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)


def import_files(
    files: list[Path],
    data_dir: Path,
    label: str,
    *,
    seconds: float = 2.0,
    hop_s: float = 1.0,
    silence_threshold_dbfs: float = -45.0,
    activity_db: float = DEFAULT_ACTIVITY_DB,
    keep_silent: bool = False,
    background_label: str = DEFAULT_BACKGROUND_LABEL,
    on_file: Callable[[Path, int], None] | None = None,
) -> ImportReport:
    """Cut each file into clips of ``seconds`` every ``hop_s`` and save them in ``data_dir/label/``.

    Clips keep the file's own sample rate and are named after the file and the start time. Unless ``keep_silent``,
    a window is skipped when its peak is below ``silence_threshold_dbfs`` (silent), or when nothing in it rises
    ``activity_db`` above the file's own noise floor (room tone only: a recording of knocks holds more room than
    knocks; see :func:`snapkit.audio.levels.holds_sound`). A file with no such stretch anywhere is one steady
    sound (a fridge) or room tone throughout; the two cannot be told apart, so it is kept whole and listed in
    ``steady_files``.
    ``activity_db <= 0`` skips that test. The ``background_label`` class is kept whole, as ``snapkit record`` keeps
    it: it is room tone by nature, and a quiet room's peaks may well be below the silence threshold.
    A file that cannot be read is reported in ``failed`` and the others still import. ``on_file(path,
    clips_written)`` is called after each file.
    """
    validate_label(label)
    if seconds <= 0 or hop_s <= 0:
        raise SnapkitError(f"--clip-s ({seconds}) and --hop-s ({hop_s}) must both be positive numbers of seconds.")
    report = ImportReport()
    report.silence_checked = not keep_silent and label != background_label
    report.room_tone_checked = report.silence_checked and activity_db > 0
    for path in files:
        try:
            audio, rate = load_audio(path)
        except SnapkitError as err:
            report.failed[Path(path)] = str(err)
            if on_file:
                on_file(Path(path), 0)
            continue
        clip_samples, hop_samples = round(seconds * rate), max(1, round(hop_s * rate))
        starts = clip_starts(len(audio), clip_samples, hop_samples)
        if report.silence_checked:
            loud = [s for s in starts if peak_dbfs(audio[s : s + clip_samples]) >= silence_threshold_dbfs]
            report.silent_skipped += len(starts) - len(loud)
            starts = loud
        if starts and report.room_tone_checked:
            sounding = _windows_with_sound(audio, rate, starts, clip_samples, activity_db)
            if sounding:
                report.room_tone_skipped += len(starts) - len(sounding)
                starts = sounding
            else:
                report.steady_files.append(Path(path))
        for start in starts:
            stem = f"{Path(path).stem}-{start / rate:08.2f}s"
            try:
                written = save_clip(data_dir, label, audio[start : start + clip_samples], rate, stem=stem)
            except FileExistsError:
                raise
            except OSError as err:
                raise SnapkitError(
                    f"Could not save a clip of {path} into {Path(data_dir) / label} ({err.strerror or err}): "
                    f"{disk_advice(err)}; {len(report.written)} clip(s) were saved before it, and the files you gave "
                    "are unchanged."
                ) from None
            report.written.append(written)
        if on_file:
            on_file(Path(path), len(starts))
    return report


def _windows_with_sound(
    audio: np.ndarray, sample_rate_hz: int, starts: list[int], clip_samples: int, activity_db: float
) -> list[int]:
    """The ``starts`` (samples) whose window of ``clip_samples`` holds a sound ``activity_db`` above the noise floor
    of the whole recording ``audio`` ``[samples]``."""
    rise_db = rise_above_floor_db(audio, sample_rate_hz, hop_s=ACTIVITY_HOP_S)
    hop = max(1, round(ACTIVITY_HOP_S * sample_rate_hz))
    centres = (np.arange(len(rise_db)) + 1) * hop  # frame k spans [k·hop, k·hop + 2·hop)
    kept = []
    for start in starts:
        lo, hi = np.searchsorted(centres, [start, start + clip_samples])
        if holds_sound(rise_db[lo:hi], activity_db, ACTIVITY_HOP_S):
            kept.append(start)
    return kept


def is_silent(audio: np.ndarray, threshold_dbfs: float) -> bool:
    """True when the loudest sample of ``audio`` is below ``threshold_dbfs``."""
    return peak_dbfs(audio) < threshold_dbfs
