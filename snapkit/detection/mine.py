"""Hard-negative mining: every detection in audio that holds none of the target sounds is a false alarm, saved as
a training clip of the background class.

openWakeWord reports that adding past false activations as negatives is among the most effective ways to cut false
alarms. :func:`mine_files` streams each recording through the detector exactly as ``snapkit detect`` does (the same
:class:`~snapkit.audio.sources.FileSource` blocks, the same :class:`~snapkit.detection.sinks.ClipSaver`), and saves
the model's window around each event (``window_s``, the model's clip length, centred on it) into ``DATA/<label>/``
as ``<file stem>-<onset>s-<class it was taken for>.wav``: written atomically, never replacing a clip.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from snapkit.dataset.labels import validate_label
from snapkit.detection.events import EventUpdate
from snapkit.detection.sinks import ClipSaver, Warn, file_time_name
from snapkit.errors import SnapkitError

SECONDS_PER_HOUR = 3600.0


class StreamDetector(Protocol):
    """What mining needs of :class:`snapkit.detection.detector.Detector` (a fake in the tests)."""

    labels: tuple[str, ...]

    def push(self, chunk: np.ndarray) -> list[EventUpdate]: ...

    def flush(self) -> list[EventUpdate]: ...

    def reset(self) -> None: ...


@dataclass
class MineResult:
    """What a mining run found: false alarms per class, the clips saved, the audio it rests on, files skipped."""

    labels: tuple[str, ...]
    target: Path  # the folder the clips went into, DATA/<label>
    counts: Counter[str] = field(default_factory=Counter)  # finished events per class
    clips: list[Path] = field(default_factory=list)
    audio_s: float = 0.0
    files: int = 0  # files read to the end
    skipped: list[str] = field(default_factory=list)  # one sentence per file that could not be read
    failures: int = 0  # clips that could not be written (see the warnings)

    def per_hour(self, label: str) -> float:
        """False alarms of ``label`` per hour of the audio read (nan before any audio)."""
        return self.counts[label] * SECONDS_PER_HOUR / self.audio_s if self.audio_s else float("nan")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def mine_target(data_dir: Path, label: str, model_labels: Sequence[str]) -> Path:
    """``DATA/<label>``, after checking ``label`` can be a folder and is not one of the model's own classes."""
    label = validate_label(label)
    if label in model_labels:
        raise SnapkitError(
            f"--label {label} is one of the model's classes; false alarms are negatives: use --label background "
            "(or another class the sounds really are)."
        )
    target = Path(data_dir) / label
    if target.exists() and not target.is_dir():
        raise SnapkitError(f"{target} is a file, not a class folder; move it away or give another --data folder.")
    return target


def mine_files(
    detector: StreamDetector,
    files: Sequence[Path],
    data_dir: Path,
    label: str,
    *,
    sample_rate_hz: int,
    window_s: float,
    chunk_s: float = 1.0,
    on_file: Callable[[Path, int], None] | None = None,
    on_warning: Warn | None = None,
) -> MineResult:
    """Run ``detector`` over ``files`` (recordings with none of its target sounds) and save each detection's
    ``window_s`` seconds of audio, centred on it, into ``DATA/<label>/`` at ``sample_rate_hz`` (the detector's
    input rate; files are resampled to it).

    A file that cannot be read is skipped with one sentence in ``result.skipped``; the others go on.
    ``on_file(path, events)`` is called after each file.
    """
    import soundfile as sf

    from snapkit.audio.sources import FileSource

    target = mine_target(data_dir, label, detector.labels)
    result = MineResult(tuple(detector.labels), target)
    for path in files:
        detector.reset()  # nothing of one file may leak into the next
        try:
            source = FileSource(path, sample_rate_hz, block_s=chunk_s)
        except SnapkitError as err:
            result.skipped.append(str(err))
            continue
        saver = ClipSaver(
            target,
            sample_rate_hz=sample_rate_hz,
            clip_name=file_time_name(path),
            window_s=window_s,
            on_warning=on_warning,
        )
        samples, events = 0, 0
        try:
            for block in source.blocks():
                updates = detector.push(block)
                saver.take(block, updates)
                events += _count(result, updates)
                samples += len(block)
        except (sf.SoundFileError, RuntimeError) as err:  # decoding stopped part way: keep what was found before it
            result.skipped.append(f"{path} could not be decoded past {samples / sample_rate_hz:.1f} s ({err}).")
        updates = detector.flush()
        saver.take(np.zeros(0, np.float32), updates)
        saver.finish()
        events += _count(result, updates)
        result.audio_s += samples / sample_rate_hz
        result.files += 1
        result.clips += saver.saved
        result.failures += saver.failures
        if on_file is not None:
            on_file(path, events)
    return result


def _count(result: MineResult, updates: list[EventUpdate]) -> int:
    ends = [u.event.label for u in updates if u.kind == "end"]
    result.counts.update(ends)
    return len(ends)
