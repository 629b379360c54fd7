"""Reading audio files of any common format into mono float32, and writing clips atomically.

Every failure a user can cause (missing, empty, not audio, truncated) becomes an ``AudioFileError`` whose message
names the file; nothing here prints a traceback at the user.
"""

from __future__ import annotations

import io
import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from snapkit.audio.resample import resample
from snapkit.errors import AudioFileError

# What snapkit treats as an audio file when it scans a folder; libsndfile reads all of these (MP3 since 1.1).
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header (and checked against its length for WAV)."""

    path: Path
    sample_rate_hz: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate_hz


def is_audio_path(path: Path) -> bool:
    """True for a visible file with an audio extension (hidden and temporary files are never clips)."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def audio_info(path: str | Path) -> AudioInfo:
    """Header facts of ``path``; raises ``AudioFileError`` if it is missing, not audio, empty or truncated."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file; check the path.")
    if path.is_dir():
        raise AudioFileError(f"{path} is a folder, not an audio file; give the path of a file inside it.")
    try:
        size = path.stat().st_size
    except FileNotFoundError:  # removed since the line above looked
        raise AudioFileError(f"{path}: no such file; check the path.") from None
    if size == 0:
        raise AudioFileError(f"{path} is empty (0 bytes); delete it or record it again.")
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioFileError(
            f"{path} is not an audio file snapkit can read ({_reason(err)}); use WAV, FLAC, OGG or MP3."
        ) from None
    if info.frames <= 0:
        raise AudioFileError(f"{path} holds no audio samples (empty or truncated); delete it or record it again.")
    declared = _declared_wav_frames(path, info.channels)
    if declared is not None and declared > info.frames:
        raise AudioFileError(
            f"{path} is truncated ({info.frames} of {declared} samples present); delete it or record it again."
        )
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype)


def load_audio(path: str | Path, sample_rate_hz: int | None = None, *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 in [-1, 1].

    Returns ``(audio, rate_hz)``: ``audio`` is ``[samples]`` when ``mono`` (channels averaged) or
    ``[samples, channels]`` otherwise; it is resampled to ``sample_rate_hz`` when that is given.
    Integer files of 8/16/24/32 bits and float files all load; libsndfile scales them to [-1, 1].
    """
    path = Path(path)
    info = audio_info(path)
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioFileError(f"{path} could not be decoded ({_reason(err)}); it may be damaged.") from None
    # libsndfile reads a truncated compressed file up to the damage without complaint: catch it here.
    if len(audio) == 0 or len(audio) < info.frames * 0.99:
        raise AudioFileError(
            f"{path} is truncated ({len(audio)} of {info.frames} samples decoded); delete it or record it again."
        )
    if mono:
        audio = to_mono(audio)
    if sample_rate_hz is not None and sample_rate_hz != rate:
        audio = resample(audio, rate, sample_rate_hz)
        rate = sample_rate_hz
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """``[samples]`` or ``[samples, channels]`` -> ``[samples]``, by averaging channels."""
    if audio.ndim == 1:
        return audio
    return audio.mean(axis=1, dtype=np.float32)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate_hz: int) -> Path:
    """Write ``audio`` (``[samples]`` or ``[samples, channels]``, float in [-1, 1]) as 16-bit PCM WAV.

    The file appears complete or not at all: it is written under a hidden temporary name in the same folder,
    flushed to disk, then linked to ``path``. An existing file is never overwritten (``FileExistsError``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(f"{path} already exists; snapkit never overwrites a recording.")
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.part")
    # Encoded in memory first: libsndfile writing to a file on a full or vanished disk reports each failed call as
    # an "Exception ignored from cffi callback" traceback on stderr; a plain write raises one OSError instead.
    encoded = io.BytesIO()
    sf.write(encoded, np.clip(audio, -1.0, 1.0), sample_rate_hz, format="WAV", subtype="PCM_16")
    try:
        with open(tmp, "wb") as handle:
            handle.write(encoded.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails if the target exists, so two writers racing for one name can never clobber each other.
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(f"{path} already exists; snapkit never overwrites a recording.") from None
        except OSError:  # filesystems without hard links
            if path.exists():
                raise FileExistsError(f"{path} already exists; snapkit never overwrites a recording.") from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _reason(err: Exception) -> str:
    text = str(err).strip().rstrip(".")
    # libsndfile says "Error opening '<path>': Format not recognised"; keep only the reason.
    return text.split(": ", 1)[-1] if ": " in text else text


def _declared_wav_frames(path: Path, channels: int) -> int | None:
    """Frames a RIFF/WAVE header promises in its data chunk, or None when not a plain WAV or unknowable.

    libsndfile quietly shortens a truncated WAV to what is present, so the header is the only witness.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            while True:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if chunk_id == b"fmt ":
                    fmt = handle.read(size)
                    if len(fmt) >= 14:
                        block_align = struct.unpack("<H", fmt[12:14])[0]
                    if size % 2:
                        handle.seek(1, os.SEEK_CUR)
                elif chunk_id == b"data":
                    # 0 and 0xFFFFFFFF are placeholders written by streaming recorders that never came back.
                    if block_align <= 0 or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    handle.seek(size + (size % 2), os.SEEK_CUR)
    except OSError:
        return None
