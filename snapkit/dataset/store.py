"""Saving clips into ``DATA/<label>/`` under names that never collide."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import numpy as np

from snapkit.audio.io import write_wav
from snapkit.dataset.labels import validate_label


def new_clip_path(data_dir: Path, label: str, *, stem: str | None = None) -> Path:
    """A fresh path ``DATA/<label>/<label>-<YYYYmmdd-HHMMSS>-<uuid8>.wav`` (or ``<stem>-<uuid8>.wav``).

    The random part makes two recorders on one folder, or two clips in one second, safe.
    """
    label = validate_label(label)
    head = stem or f"{label}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return Path(data_dir) / label / f"{head}-{uuid.uuid4().hex[:8]}.wav"


def save_clip(data_dir: Path, label: str, audio: np.ndarray, sample_rate_hz: int, *, stem: str | None = None) -> Path:
    """Write ``audio`` ``[samples]`` as a new 16-bit WAV clip of class ``label``; returns its path."""
    return write_wav(new_clip_path(data_dir, label, stem=stem), audio, sample_rate_hz)


def drops_silent_clips(label: str, background_label: str, keep_silent: bool = False) -> bool:
    """Whether a silent recording of ``label`` is refused: yes unless asked to keep it, or it is background, which
    is quiet by nature (dropping quiet clips there would throw away exactly what is wanted)."""
    return not keep_silent and label != background_label
