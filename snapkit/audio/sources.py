"""Where audio comes from: the microphone, a file, or an array in memory, all as a stream of mono blocks.

Every source yields float32 ``[samples]`` blocks at its ``sample_rate_hz``; the recorder and the detector
consume any of them the same way, so what a file test proves holds for the microphone.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np
import soundfile as sf

from snapkit.audio.devices import resolve_input_device, sounddevice_module
from snapkit.audio.io import audio_info, to_mono
from snapkit.audio.resample import StreamResampler
from snapkit.errors import DeviceError

DEFAULT_BLOCK_S = 0.05


class AudioSource(Protocol):
    """A stream of mono float32 blocks ``[samples]`` at ``sample_rate_hz``."""

    sample_rate_hz: int

    def blocks(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


class ArraySource:
    """An in-memory signal ``[samples]`` served in blocks of ``block_s`` seconds: the twin of the others."""

    def __init__(self, audio: np.ndarray, sample_rate_hz: int, block_s: float = DEFAULT_BLOCK_S) -> None:
        self.audio = np.asarray(audio, dtype=np.float32)
        self.sample_rate_hz = sample_rate_hz
        self.block_samples = max(1, round(block_s * sample_rate_hz))

    def blocks(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.audio), self.block_samples):
            yield self.audio[start : start + self.block_samples]

    def close(self) -> None:
        pass

    def __enter__(self) -> ArraySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileSource:
    """A file read block by block (never whole, so a day-long recording fits in memory), mixed to mono and
    resampled to ``sample_rate_hz`` (the file's own rate when None)."""

    def __init__(self, path: str | Path, sample_rate_hz: int | None = None, block_s: float = DEFAULT_BLOCK_S) -> None:
        self.path = Path(path)
        self.info = audio_info(self.path)
        self.sample_rate_hz = sample_rate_hz or self.info.sample_rate_hz
        self.block_samples = max(1, round(block_s * self.info.sample_rate_hz))
        self._resampler = StreamResampler(self.info.sample_rate_hz, self.sample_rate_hz)

    @property
    def duration_s(self) -> float:
        return self.info.duration_s

    def blocks(self) -> Iterator[np.ndarray]:
        with sf.SoundFile(str(self.path)) as handle:
            while True:
                raw = handle.read(self.block_samples, dtype="float32", always_2d=True)
                last = len(raw) < self.block_samples
                out = self._resampler(to_mono(raw), last=last)
                if len(out):
                    yield out
                if last:
                    return

    def close(self) -> None:
        pass

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MicrophoneSource:
    """A PortAudio input stream. Its callback only copies the block onto a bounded queue and counts trouble;
    everything else happens in the consumer that iterates ``blocks()``.

    ``overflows`` counts blocks PortAudio reported as overflowed (the machine fell behind the sound card);
    ``dropped`` counts blocks thrown away because the consumer fell more than ``max_queue_s`` behind.
    """

    def __init__(
        self,
        device: str | int | None = None,
        sample_rate_hz: int | None = None,
        block_s: float = DEFAULT_BLOCK_S,
        max_queue_s: float = 30.0,
    ) -> None:
        self.device = resolve_input_device(device)
        self.sample_rate_hz = int(sample_rate_hz or self.device.default_sample_rate_hz)
        self.block_samples = max(1, round(block_s * self.sample_rate_hz))
        self.overflows = 0
        self.dropped = 0
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=max(1, int(max_queue_s / block_s)))
        self._lock = threading.Lock()
        self._stream = None
        self._first_block_wall_s: float | None = None
        self._first_block = threading.Event()

    def _callback(self, indata: np.ndarray, frames: int, time_info: object, status: object) -> None:
        if self._first_block_wall_s is None:
            # One clock read, once: what anchors stream second 0 to the wall clock (see first_sample_wall_time_s).
            self._first_block_wall_s = time.time() - frames / self.sample_rate_hz
            self._first_block.set()
        if status and getattr(status, "input_overflow", False):
            with self._lock:
                self.overflows += 1
        try:
            self._queue.put_nowait(indata.copy())
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def start(self) -> MicrophoneSource:
        sd = sounddevice_module()
        try:
            self._stream = sd.InputStream(
                device=self.device.index,
                channels=1,
                samplerate=self.sample_rate_hz,
                blocksize=self.block_samples,
                dtype="float32",
                callback=self._callback,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as err:
            self._stream = None
            raise DeviceError(
                f"Could not open input device {self.device.index} ({self.device.name}) at "
                f"{self.sample_rate_hz} Hz: {err}; try another --device or --sample-rate-hz."
            ) from None
        return self

    def blocks(self, timeout_s: float = 5.0, first_timeout_s: float = 15.0) -> Iterator[np.ndarray]:
        """Blocks as they arrive; raises ``DeviceError`` if the device goes quiet for ``timeout_s``.

        The first block may take longer (``first_timeout_s``): a sound server waking up has been seen to need 1.6 s.
        """
        if self._stream is None:
            self.start()
        wait_s = first_timeout_s
        while True:
            try:
                block = self._queue.get(timeout=wait_s)
                wait_s = timeout_s
            except queue.Empty:
                raise DeviceError(
                    f"Input device {self.device.index} ({self.device.name}) stopped delivering audio; "
                    "check that it is still connected."
                ) from None
            yield block[:, 0]

    def first_sample_wall_time_s(self, timeout_s: float = 15.0) -> float:
        """Wall-clock time (Unix seconds) at which the stream's first sample was captured.

        The first callback's clock reading, less that block's length and the device's input latency. Without this,
        wall times of events would be early by however long the device took to start (seen: 1 s with PulseAudio).
        """
        if self._stream is None:
            self.start()
        if not self._first_block.wait(timeout_s):
            raise DeviceError(
                f"Input device {self.device.index} ({self.device.name}) delivered no audio within {timeout_s:g} s; "
                "check that it is connected and not in use."
            )
        latency_s = float(getattr(self._stream, "latency", 0.0) or 0.0)
        assert self._first_block_wall_s is not None
        return self._first_block_wall_s - latency_s

    def discard_pending(self) -> None:
        """Drop blocks recorded so far (e.g. during a countdown) so the next block is fresh."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    def __enter__(self) -> MicrophoneSource:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
