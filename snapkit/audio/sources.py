"""Where audio comes from: the microphone, a file, or an array in memory, all as a stream of mono blocks.

Every source yields float32 ``[samples]`` blocks at its ``sample_rate_hz``; the recorder and the detector
consume any of them the same way, so what a file test proves holds for the microphone.

A live input can lose audio: PortAudio overruns when the machine falls behind the sound card, the queue behind the
callback fills when the consumer does, a device goes away. ``timed_blocks`` says how much was lost before each
block (:class:`Block`), measured from PortAudio's capture timestamps, so that whoever counts samples to tell the time
(the detector) can keep its clock true. :class:`ReconnectingMicrophone` reopens a device that went away, with
backoff, and reports the time it was gone the same way.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np
import soundfile as sf

from snapkit.audio.devices import rescan_devices, resolve_input_device, sounddevice_module
from snapkit.audio.io import audio_info, to_mono
from snapkit.audio.resample import StreamResampler
from snapkit.errors import DeviceError

DEFAULT_BLOCK_S = 0.05
# How long the device may stay silent before it counts as gone (seconds), and how often to look whether PortAudio
# has already stopped the stream (a sound server that died), which says so at once.
DEVICE_SILENT_TIMEOUT_S = 5.0
_POLL_S = 0.25
# Waits between attempts to reopen a device that went away (seconds); the last one repeats.
RECONNECT_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# A reopened PulseAudio stream was seen to take 2 s to deliver its first block (seconds to wait for it).
_REOPEN_FIRST_BLOCK_S = 10.0


class AudioSource(Protocol):
    """A stream of mono float32 blocks ``[samples]`` at ``sample_rate_hz``."""

    sample_rate_hz: int

    def blocks(self) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Block:
    """A block of input ``samples`` ``[n]`` (float32), and ``lost_before_n``: samples of stream time the input lost
    just before it (overrun, full queue, device away), so ``lost_before_n + len(samples)`` is how far the stream's
    clock moved."""

    samples: np.ndarray
    lost_before_n: int = 0


def timed_blocks(source: AudioSource) -> Iterator[Block]:
    """``source``'s blocks with what was lost before each: its own ``timed_blocks()`` when it has one (a live
    input), else nothing is ever lost (a file, an array)."""
    timed = getattr(source, "timed_blocks", None)
    if callable(timed):
        yield from timed()
        return
    for samples in source.blocks():
        yield Block(samples)


class InputClock:
    """Finds audio an input stream lost, from when each block was captured and when its callback ran.

    Lost audio shows as time passing without samples: by the time a block arrives, the stream should have delivered
    more samples than it did. Two clocks say when a block arrived, and neither is enough alone:

    * PortAudio's capture stamp (``inputBufferAdcTime``) of the block's first sample. Exact where the host keeps it
      well, but not everywhere: through PulseAudio's ALSA plugin it ran 0.7 s ahead of the audio in the first 1.3 s
      of a stream, with nothing lost (measured: callbacks every 50 ms, stamps 100 ms apart);
    * the time the callback ran, once the block's last sample was in. Late and bursty under load without anything
      being lost.

    A block's loss is what both clocks agree on (the smaller of the two), so a bad stamp and a late callback alone
    count nothing, and a real gap, which moves both, counts. Where the host gives no stamps (0) the callback clock
    counts alone, and only for a block PortAudio flagged as overflowed. Losses up to ``tolerance_n`` (the clocks'
    jitter) are not counted. Pure arithmetic, one thread: the audio callback's.
    """

    def __init__(self, sample_rate_hz: int, tolerance_n: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.tolerance_n = tolerance_n
        self._adc_origin_s: float | None = None
        self._callback_origin_s: float | None = None
        self._delivered_n = 0  # samples delivered, and lost, since the first block

    def lost_before(self, frames: int, *, adc_time_s: float, callback_time_s: float, overflow: bool) -> int:
        """Samples lost just before a block of ``frames`` captured at ``adc_time_s`` (0: unknown) whose callback
        ran at ``callback_time_s`` (a monotonic clock); ``overflow`` is PortAudio's input-overflow flag."""
        rate = self.sample_rate_hz
        # The callback runs once the block's last sample is in: compare it with the block's end.
        if self._callback_origin_s is None:
            self._callback_origin_s = callback_time_s - (self._delivered_n + frames) / rate
        behind_n = round((callback_time_s - self._callback_origin_s) * rate) - (self._delivered_n + frames)
        if adc_time_s > 0:
            if self._adc_origin_s is None:  # the first stamped block: measure the stamps from here on
                self._adc_origin_s = adc_time_s - self._delivered_n / rate
            behind_n = min(behind_n, round((adc_time_s - self._adc_origin_s) * rate) - self._delivered_n)
        else:
            self._adc_origin_s = None  # a host that stops stamping: start afresh if it stamps again
            if not overflow:
                behind_n = 0
        lost = behind_n if behind_n > self.tolerance_n else 0
        self._delivered_n += lost + frames
        return lost


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
    ``dropped`` counts blocks thrown away because the consumer fell more than ``max_queue_s`` behind;
    ``lost_s`` the stream time both lost (:class:`InputClock`), which ``timed_blocks`` reports where it happened.
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
        # Each item: (samples lost just before the block, the block [frames, 1]).
        self._queue: queue.Queue[tuple[int, np.ndarray]] = queue.Queue(maxsize=max(1, int(max_queue_s / block_s)))
        self._lock = threading.Lock()
        self._stream = None
        self._first_block_wall_s: float | None = None
        self._first_block = threading.Event()
        # PulseAudio's stamps were seen 0.1 s off while a stream starts: losses shorter than that are not counted.
        self._clock = InputClock(
            self.sample_rate_hz, tolerance_n=max(2 * self.block_samples, self.sample_rate_hz // 10)
        )
        self._lost_pending_n = 0  # lost before a block that could not be queued either: carried to the next one
        self.lost_n = 0

    @property
    def lost_s(self) -> float:
        """Stream seconds lost so far (overruns and blocks the full queue threw away)."""
        return self.lost_n / self.sample_rate_hz

    def _callback(self, indata: np.ndarray, frames: int, time_info: object, status: object) -> None:
        if self._first_block_wall_s is None:
            # One clock read, once: what anchors stream second 0 to the wall clock (see first_sample_wall_time_s).
            self._first_block_wall_s = time.time() - frames / self.sample_rate_hz
            self._first_block.set()
        overflow = bool(status and getattr(status, "input_overflow", False))
        lost = self._clock.lost_before(
            frames,
            adc_time_s=float(getattr(time_info, "inputBufferAdcTime", 0.0) or 0.0),
            callback_time_s=time.monotonic(),
            overflow=overflow,
        )
        with self._lock:
            self.overflows += overflow
            self.lost_n += lost
        try:
            self._queue.put_nowait((self._lost_pending_n + lost, indata.copy()))
            self._lost_pending_n = 0
        except queue.Full:
            self._lost_pending_n += lost + frames
            with self._lock:
                self.dropped += 1
                self.lost_n += frames

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

    def blocks(self, timeout_s: float = DEVICE_SILENT_TIMEOUT_S, first_timeout_s: float = 15.0) -> Iterator[np.ndarray]:
        """Blocks as they arrive; raises ``DeviceError`` if the device goes quiet for ``timeout_s`` or PortAudio
        stops the stream (the device or its sound server went away).

        The first block may take longer (``first_timeout_s``): a sound server waking up has been seen to need 1.6 s.
        """
        for block in self.timed_blocks(timeout_s, first_timeout_s):
            yield block.samples

    def timed_blocks(
        self, timeout_s: float = DEVICE_SILENT_TIMEOUT_S, first_timeout_s: float = 15.0
    ) -> Iterator[Block]:
        """As :meth:`blocks`, each with the samples lost just before it (:class:`Block`)."""
        if self._stream is None:
            self.start()
        waited_s, limit_s = 0.0, first_timeout_s
        while True:
            try:
                lost, block = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                waited_s += _POLL_S
                stream = self._stream
                if stream is not None and not stream.active and self._first_block.is_set():
                    raise DeviceError(
                        f"Input device {self.device.index} ({self.device.name}) went away (its stream stopped); "
                        "check that it is still connected."
                    ) from None
                if waited_s >= limit_s:
                    raise DeviceError(
                        f"Input device {self.device.index} ({self.device.name}) stopped delivering audio; "
                        "check that it is still connected."
                    ) from None
                continue
            waited_s, limit_s = 0.0, timeout_s
            yield Block(block[:, 0], lost)

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
            stream, self._stream = self._stream, None
            try:
                stream.stop()
                stream.close()
            except Exception:  # a stream whose device or server went away may refuse to stop; it is gone anyway
                pass

    def __enter__(self) -> MicrophoneSource:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ReconnectingMicrophone:
    """A microphone that comes back by itself: a :class:`MicrophoneSource` reopened whenever its device goes away.

    When the device stops delivering (unplugged, its sound server restarted), ``log`` is told, the stream is closed
    and reopened after each wait in ``backoff_s`` (the last one repeating) until it works again or ``interrupt``/
    ``close`` is called; PortAudio's device list is rescanned first, so a device plugged back in under a new number
    is found by its name. The time it was away comes out as the first new block's ``lost_before_n`` (measured on the
    wall clock from when the first stream began), so that times after it stay true. Blocks come from
    ``timed_blocks`` (or ``blocks``) on one consumer thread.
    """

    def __init__(
        self,
        device: str | int | None = None,
        sample_rate_hz: int | None = None,
        block_s: float = DEFAULT_BLOCK_S,
        *,
        log: Callable[[str], None],
        backoff_s: Sequence[float] = RECONNECT_BACKOFF_S,
        open_mic: Callable[..., MicrophoneSource] = MicrophoneSource,
    ) -> None:
        self._spec = device
        self._block_s = block_s
        self._open_mic = open_mic
        self._mic = open_mic(device=device, sample_rate_hz=sample_rate_hz, block_s=block_s)
        self.device = self._mic.device
        self.sample_rate_hz = self._mic.sample_rate_hz
        self.log = log
        self.backoff_s = tuple(backoff_s) or (1.0,)
        self.reconnects = 0
        self._stopping = threading.Event()
        self._counts = {"overflows": 0, "dropped": 0, "lost_n": 0}  # of the streams already closed
        self._away_n = 0  # stream time the device was away
        self._wall0_s: float | None = None
        self._delivered_n = 0  # stream samples delivered or lost so far

    @property
    def overflows(self) -> int:
        return self._counts["overflows"] + self._mic.overflows

    @property
    def dropped(self) -> int:
        return self._counts["dropped"] + self._mic.dropped

    @property
    def lost_s(self) -> float:
        """Stream seconds lost: overruns, full queue, and time the device was away."""
        return (self._counts["lost_n"] + self._mic.lost_n + self._away_n) / self.sample_rate_hz

    def start(self) -> ReconnectingMicrophone:
        self._mic.start()
        return self

    def first_sample_wall_time_s(self, timeout_s: float = 15.0) -> float:
        """Wall-clock time (Unix seconds) of the first stream's first sample: stream second 0."""
        if self._wall0_s is None:
            self._wall0_s = self._mic.first_sample_wall_time_s(timeout_s)
        return self._wall0_s

    def blocks(self) -> Iterator[np.ndarray]:
        for block in self.timed_blocks():
            yield block.samples

    def timed_blocks(self) -> Iterator[Block]:
        self.first_sample_wall_time_s()
        away_n = 0  # to report before the next block: the time the device was away
        while not self._stopping.is_set():
            try:
                for block in timed_blocks(self._mic):
                    lost = block.lost_before_n + away_n
                    away_n = 0
                    self._delivered_n += lost + len(block.samples)
                    yield Block(block.samples, lost)
                    if self._stopping.is_set():
                        return
                return  # the stream ended by itself (a test's fake): nothing to come back from
            except DeviceError as err:
                if self._stopping.is_set():
                    return
                self.log(f"{err} Listening goes on when it is back; retrying.")
                if not self._reopen():
                    return
                away_n = self._away_since_last_block()
                self.log(
                    f"Input device {self.device.index} ({self.device.name}) is back after "
                    f"{away_n / self.sample_rate_hz:.1f} s; listening again."
                )

    def _reopen(self) -> bool:
        """Close the dead stream and open a new one, waiting between attempts; False if stopped first."""
        self._retire(self._mic)
        for attempt in range(1, 1_000_000_000):
            wait_s = self.backoff_s[min(attempt - 1, len(self.backoff_s) - 1)]
            if self._stopping.wait(wait_s):
                return False
            mic: MicrophoneSource | None = None
            try:
                rescan_devices()
                mic = self._open_again()
                mic.start()
                mic.first_sample_wall_time_s(timeout_s=_REOPEN_FIRST_BLOCK_S)
            except DeviceError as err:
                if mic is not None:
                    mic.close()
                next_s = self.backoff_s[min(attempt, len(self.backoff_s) - 1)]
                self.log(f"Attempt {attempt} to reopen the input failed: {err} Next try in {next_s:g} s.")
                continue
            self._mic = mic
            self.device = mic.device
            self.reconnects += 1
            return True
        return False

    def _open_again(self) -> MicrophoneSource:
        """The same device, found by name (its number may have changed), else as the user named it."""
        try:
            return self._open_mic(device=self.device.name, sample_rate_hz=self.sample_rate_hz, block_s=self._block_s)
        except DeviceError:
            return self._open_mic(device=self._spec, sample_rate_hz=self.sample_rate_hz, block_s=self._block_s)

    def _away_since_last_block(self) -> int:
        """Stream samples between the last block delivered and the new stream's first sample (wall clock)."""
        assert self._wall0_s is not None
        expected_n = round((self._mic.first_sample_wall_time_s() - self._wall0_s) * self.sample_rate_hz)
        away = max(0, expected_n - self._delivered_n)
        self._away_n += away
        return away

    def _retire(self, mic: MicrophoneSource) -> None:
        for name in ("overflows", "dropped", "lost_n"):
            self._counts[name] += getattr(mic, name)
            setattr(mic, name, 0)  # counted here now; the properties add the current stream's own
        mic.close()

    def interrupt(self) -> None:
        """Stop waiting for the device (from another thread): ``timed_blocks`` ends at the next block or wait."""
        self._stopping.set()

    def close(self) -> None:
        self._stopping.set()
        self._mic.close()

    def __enter__(self) -> ReconnectingMicrophone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
