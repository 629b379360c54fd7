"""The streaming detector: push audio chunks of any length in, get event starts and ends out.

How it works, and why it does not depend on how the audio was chunked:

1. The model runs every ``hop_s`` seconds of audio, at fixed absolute sample positions (multiples of the hop), in
   one of two ways (``mode``):

   - ``"stream"`` (the default wherever the model allows it): the model is run incrementally over the whole
     stream (:class:`snapkit.models.streaming.StreamingClassifier`): each run computes only the output frames the
     new audio completed, each frame exactly once and exactly as if the whole stream had gone through the model at
     once. A frame needs its receptive field's future half first (``lookahead_s`` of the streaming model, 0.14 s
     for the ConvNet), so a sound's report comes about that plus up to one hop after it.
   - ``"window"``: windows of ``window_s`` (default: the model's clip length) start every ``hop_s`` (window k
     covers samples ``[k*hop, k*hop + window)``), each run through the model as soon as its last sample has
     arrived, so each moment is seen by about ``window_s / hop_s`` windows. Needed for models whose front end
     normalises each input by its own peak (sfx-cnn9), which cannot stream exactly.

   Either gives per-frame class probabilities ``[frames, classes]``.
2. Each frame's probability is spread over the cells of a fine timeline (``grid_s``, 10 ms) that the frame spans;
   in window mode overlapping windows are averaged cell by cell.
3. A cell is *decided* once its value is final. Streaming frames are final when computed. In window mode a cell is
   decided once the newest window's frames reach ``lookahead_s`` past it, its value the average of all windows
   that covered it by then (a larger lookahead averages more windows: steadier, later).
4. Per class, decided cells drive a hysteresis state machine: an event begins when the probability reaches the
   class's on-threshold and ends when it has stayed below the off-threshold for ``min_gap_s`` or, if longer, the
   longest pause inside the class's training clips plus 0.25 s (so events closer than that merge: a smoke alarm's
   three pulses are one alarm); a rise that falls below the off-threshold before lasting ``min_event_s`` is
   dropped. A "start" update is sent once an event has lasted ``min_event_s``; its "end" update follows with the
   final times.
5. Onset and offset are then placed finer than the model's frames: within ``refine_s`` (at least one model frame)
   of the coarse edge, the
   short-time energy (4 ms frames) of the audio, restricted to the class's frequency band when the bundle knows it,
   is searched for the point where it crosses halfway (in dB) between the local floor and the event's peak.

Every step uses only sample positions and the audio up to the end of the window being processed, never "what has
been pushed so far", so 10 ms, 100 ms and 1 s chunks give identical events. The background class is not a model
output and so never an event.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from snapkit.audio.levels import band_energy_db
from snapkit.audio.resample import StreamResampler
from snapkit.detection.events import Event, EventUpdate
from snapkit.errors import SnapkitError
from snapkit.models.calibration import thresholds_in_force
from snapkit.models.streaming import StreamingClassifier, streaming_unsupported_reason

# Short-time energy frames used to place onsets and offsets inside a model frame.
_REFINE_FRAME_S = 0.004
# Before an event is confirmed (min_event_s), dips below the off threshold longer than this end it.
_CONFIRM_GAP_S = 0.05
# Added to the longest pause inside a class's training clips to get its least gap between two events.
_PAUSE_MARGIN_S = 0.25
# A rise smaller than this (dB) over the local floor is not trusted to mark an edge; the coarse time is kept.
_REFINE_MIN_RISE_DB = 6.0


@dataclass(frozen=True)
class DetectorSettings:
    """How the detector turns a stream into events. Thresholds default to the bundle's calibrated ones."""

    hop_s: float = 0.25
    mode: Literal["auto", "stream", "window"] = "auto"  # auto: stream when the model can, else window
    window_s: float | None = None  # window mode only; None: the model's clip length
    lookahead_s: float = 0.1
    min_event_s: float = 0.02
    min_gap_s: float = 0.6
    grid_s: float = 0.01
    refine: bool = True
    refine_s: float = 0.15
    history_s: float = 10.0
    # Per-class overrides: label -> on threshold / off threshold (probabilities 0..1).
    on_thresholds: dict[str, float] = field(default_factory=dict)
    off_thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("hop_s", "grid_s"):
            if getattr(self, name) <= 0:
                raise SnapkitError(f"Detector setting {name} must be a positive number of seconds.")
        if self.mode not in ("auto", "stream", "window"):
            raise SnapkitError(f"Detector setting mode must be 'auto', 'stream' or 'window', not {self.mode!r}.")
        for name in ("lookahead_s", "min_event_s", "min_gap_s", "refine_s", "history_s"):
            if getattr(self, name) < 0:
                raise SnapkitError(f"Detector setting {name} cannot be negative.")


@dataclass
class _Track:
    """The state of one class's hysteresis machine while an event is open (cell indices on the timeline)."""

    event_id: int
    onset_cell: int
    last_above_cell: int
    peak: float
    total: float  # sum of probabilities from the onset to the last cell above the off threshold
    cells: int
    pending_total: float = 0.0  # cells below the off threshold since then: part of the event only if it resumes
    pending_cells: int = 0
    started: bool = False
    onset_s: float = 0.0  # refined onset, fixed when the start is reported


class Detector:
    """Streaming event detector over a trained bundle. ``push`` chunks, read the updates, ``flush`` at the end."""

    def __init__(
        self,
        bundle: object,
        settings: DetectorSettings | None = None,
        *,
        sample_rate_hz: int | None = None,
        keep_timeline: bool = False,
    ) -> None:
        self.bundle = bundle
        self.settings = settings or DetectorSettings()
        model = bundle.model.eval()
        self.model = model
        self.labels: tuple[str, ...] = tuple(bundle.config.labels)
        self.model_rate_hz = int(model.sample_rate_hz)
        self.sample_rate_hz = int(sample_rate_hz or self.model_rate_hz)
        s = self.settings
        rate = self.model_rate_hz
        self._win_n = round((s.window_s or bundle.config.clip_s) * rate)
        self._hop_n = max(1, round(s.hop_s * rate))
        self._grid_n = max(1, round(s.grid_s * rate))
        self._lookahead_n = round(s.lookahead_s * rate)
        # A coarse edge can be a whole model frame off (0.19 s for sfx-cnn9): search at least that far for the real one.
        self._refine_s = max(s.refine_s, float(model.frame_hop_s))
        self._min_event_cells = max(1, round(s.min_event_s / s.grid_s))
        calibration = bundle.calibration
        # Per class: at least min_gap_s, and longer than the pauses inside the class's own training clips (plus
        # _PAUSE_MARGIN_S, as the model's probability dips for longer than the sound does).
        self._min_gap_cells = np.array(
            [max(1, round(max(s.min_gap_s, calibration[c].pause_s + _PAUSE_MARGIN_S) / s.grid_s)) for c in self.labels]
        )
        self._confirm_gap_cells = max(1, round(_CONFIRM_GAP_S / s.grid_s))
        # Per class (on, off): the bundle's calibration with the settings' overrides.
        self.thresholds = thresholds_in_force(calibration, s.on_thresholds, s.off_thresholds)
        self._on = np.array([self.thresholds[c][0] for c in self.labels])
        self._off = np.array([self.thresholds[c][1] for c in self.labels])
        if np.any(self._off > self._on):
            raise SnapkitError("An off-threshold is above its on-threshold; off must be at most on for each class.")
        self._cannot_stream = streaming_unsupported_reason(model)
        if s.mode == "stream" and self._cannot_stream is not None:
            raise SnapkitError(
                f"This model cannot run in stream mode: {self._cannot_stream}; use the window mode (--mode window)."
            )
        self.streaming = s.mode == "stream" or (s.mode == "auto" and self._cannot_stream is None)
        self._stream = StreamingClassifier(model) if self.streaming else None
        if not self.streaming:
            # Channels-last tensors let oneDNN pick faster convolution kernels on CPU (measured 1.4x for sfx-cnn9
            # windows); a copy, so the caller's model keeps its layout. Same numbers to float rounding.
            self.model = copy.deepcopy(model).to(memory_format=torch.channels_last)
            self._frame_cells = self._frame_cell_spans()
            self._coverage_end_n = self._frame_cells[-1][1]  # where the last frame's span of a window ends
        nyquist = self.model_rate_hz / 2
        self._bands = [calibration[c].band_hz or (50.0, nyquist) for c in self.labels]
        self._keep_timeline = keep_timeline
        self.reset()

    # ------------------------------------------------------------------ public API

    def reset(self) -> None:
        """Forget everything: the next ``push`` starts a new stream at time 0."""
        self._resampler = StreamResampler(self.sample_rate_hz, self.model_rate_hz)
        # Audio held for windows, edge refinement and clip requests: _buffer[:_buffer_len] are the samples from
        # absolute index _buffer_start on. The array grows by doubling and is compacted in place (see _trim), so a
        # push of 10 ms does not copy the seconds already held.
        self._buffer = np.zeros(0, np.float32)
        self._buffer_len = 0
        self._buffer_start = 0
        self._total = 0  # samples received (model rate)
        self._next_window = 0
        self._processed = 0  # stream mode: samples given to the streaming model
        if self._stream is not None:
            self._stream.reset()
        self._acc_start = 0  # absolute cell index of _acc_sum[0]; cells before it are decided
        self._acc_sum = np.zeros((0, len(self.labels)))
        self._acc_count = np.zeros(0)
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self._latest = np.zeros(len(self.labels))
        self._timeline: list[np.ndarray] = []
        self._flushed = False

    def describe(self) -> str:
        """One line for a user: how the model runs over the stream."""
        s = self.settings
        if self._stream is not None:
            return (
                f"streaming: the model runs every {s.hop_s:g} s on the new audio only, each output frame computed "
                f"once; a moment is decided {self._stream.lookahead_s:.2f} s of audio after it"
            )
        why = self._cannot_stream
        return (
            f"windows of {self._win_n / self.model_rate_hz:g} s every {s.hop_s:g} s, overlapping outputs averaged"
            + (f" (this model cannot stream: {why})" if why else "")
        )

    @property
    def position_s(self) -> float:
        """Seconds of audio pushed so far."""
        return self._total / self.model_rate_hz

    @property
    def latest_probabilities(self) -> dict[str, float]:
        """The newest decided probability of each class (for a live view)."""
        return {label: float(p) for label, p in zip(self.labels, self._latest, strict=True)}

    def push(self, chunk: np.ndarray) -> list[EventUpdate]:
        """Feed ``chunk`` (mono float32 ``[samples]`` at ``sample_rate_hz``); returns the updates it completed."""
        if self._flushed:
            raise RuntimeError("push() after flush(): call reset() to start a new stream")
        samples = self._resampler(np.asarray(chunk, dtype=np.float32).reshape(-1))
        return self._ingest(samples)

    def flush(self) -> list[EventUpdate]:
        """End of stream: score the tail, decide every remaining moment and close open events."""
        if self._flushed:
            return []
        updates = self._ingest(self._resampler(np.zeros(0, np.float32), last=True))
        self._flushed = True
        end = self._total
        if self._stream is not None:
            updates += self._run_stream(end, final=True)
        elif self._next_window == 0 or (self._next_window - 1) * self._hop_n + self._win_n < end:
            # The tail after the last full window: one more window ending exactly at the stream's end.
            updates += self._run_window(max(0, end - self._win_n), decide_all=True)
        else:
            updates += self._decide_until(self._cell_of(end + self._grid_n - 1), end)
        end_cell = self._cell_of(end + self._grid_n - 1)
        for index in sorted(self._tracks):
            updates += self._close(
                index, self._tracks[index], min(end_cell, self._tracks[index].last_above_cell + 1), end
            )
        self._tracks.clear()
        return updates

    def timeline(self) -> tuple[np.ndarray, np.ndarray]:
        """Decided timeline ``(times_s [cells], probs [cells, classes])`` (cell starts); needs ``keep_timeline``."""
        if not self._keep_timeline:
            raise RuntimeError("Detector(keep_timeline=True) is needed for timeline()")
        probs = np.concatenate(self._timeline) if self._timeline else np.zeros((0, len(self.labels)))
        return np.arange(len(probs)) * self._grid_n / self.model_rate_hz, probs

    def audio_between(self, start_s: float, end_s: float) -> np.ndarray | None:
        """Audio ``[samples]`` (model rate) between two stream times if still held, else None."""
        a = max(0, round(start_s * self.model_rate_hz))
        b = min(self._total, round(end_s * self.model_rate_hz))
        if a < self._buffer_start or b <= a:
            return None
        return self._buffer[a - self._buffer_start : b - self._buffer_start].copy()

    # ------------------------------------------------------------------ windows and timeline

    def _ingest(self, samples: np.ndarray) -> list[EventUpdate]:
        if len(samples):
            need = self._buffer_len + len(samples)
            if need > len(self._buffer):
                grown = np.empty(max(need, 2 * len(self._buffer)), np.float32)
                grown[: self._buffer_len] = self._buffer[: self._buffer_len]
                self._buffer = grown
            self._buffer[self._buffer_len : need] = samples
            self._buffer_len = need
            self._total += len(samples)
        updates: list[EventUpdate] = []
        if self._stream is not None:
            # One hop at a time, so that what is reported when never depends on how the audio was chunked.
            while self._processed + self._hop_n <= self._total:
                updates += self._run_stream(self._processed + self._hop_n, final=False)
        else:
            while self._next_window * self._hop_n + self._win_n <= self._total:
                updates += self._run_window(self._next_window * self._hop_n)
                self._next_window += 1
        self._trim()
        return updates

    def _run_stream(self, end: int, *, final: bool) -> list[EventUpdate]:
        """Give the streaming model the audio up to sample ``end``, place the frames it completes, decide them."""
        assert self._stream is not None
        first = self._stream.frames_done
        audio = self._buffer[self._processed - self._buffer_start : end - self._buffer_start]
        frame_probs = self._stream.push(audio, final=final)
        self._processed = end
        spans = [self._stream_frame_span(first + j) for j in range(len(frame_probs))]
        if final and spans:
            # The frames stop short of the stream's end by up to one frame: the last one stands for the rest.
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        self._accumulate(spans, frame_probs)
        if final:
            return self._decide_until(self._cell_of(end + self._grid_n - 1), end)
        if not spans:
            return []
        return self._decide_until(self._first_cell_from(spans[-1][1]), end)

    def _stream_frame_span(self, j: int) -> tuple[int, int]:
        """Sample span ``[a, b)`` stream frame ``j`` stands for: halfway to its neighbours' centres."""
        rate, first, hop = self.model_rate_hz, self.model.first_frame_centre_s, self.model.frame_hop_s
        return max(0, round((first + (j - 0.5) * hop) * rate)), round((first + (j + 0.5) * hop) * rate)

    def _run_window(self, start: int, *, decide_all: bool = False) -> list[EventUpdate]:
        """Score the window starting at sample ``start`` and decide the cells it makes final."""
        end = start + self._win_n
        audio = self._buffer[start - self._buffer_start : min(end, self._total) - self._buffer_start]
        if len(audio) < self._win_n:
            # Only a stream shorter than one window gets here. Repeat it rather than pad with digital silence, which
            # no microphone produces and a model never saw; cells past the stream's end are never decided anyway.
            audio = np.pad(audio, (0, self._win_n - len(audio)), mode="wrap" if len(audio) else "constant")
        with torch.inference_mode():
            frame_probs = self.model(torch.from_numpy(np.ascontiguousarray(audio))[None])[0][0].numpy()
        self._accumulate([(start + a, start + b) for a, b in self._frame_cells], frame_probs)
        if decide_all:
            return self._decide_until(self._cell_of(self._total + self._grid_n - 1), self._total)
        horizon = start + self._coverage_end_n - self._lookahead_n
        return self._decide_until(self._cell_of(max(0, horizon)), end)

    def _frame_cell_spans(self) -> list[tuple[int, int]]:
        """For each output frame of a window, the sample span ``[a, b)`` it stands for, relative to the window."""
        frames = self.model.num_output_frames(self._win_n)
        centres = self.model.frame_times_s(frames)
        hop_n = self.model.frame_hop_s * self.model_rate_hz
        spans = []
        for centre in centres:
            a = round(centre * self.model_rate_hz - hop_n / 2)
            spans.append((max(0, a), min(self._win_n, round(a + hop_n))))
        return spans

    def _cell_of(self, sample: int) -> int:
        return sample // self._grid_n

    def _first_cell_from(self, sample: int) -> int:
        """Index of the first cell whose centre ``i*g + g/2`` is at or after ``sample``."""
        g = self._grid_n
        return -(-(2 * sample - g) // (2 * g))

    def _accumulate(self, spans: list[tuple[int, int]], frame_probs: np.ndarray) -> None:
        """Add frames ``[frames, classes]`` to the cells whose centre falls in each frame's absolute sample span."""
        for (a, b), probs in zip(spans, frame_probs, strict=False):
            lo = max(self._acc_start, self._first_cell_from(a))
            hi = self._first_cell_from(b)
            if hi <= lo:
                continue
            self._grow(hi)
            self._acc_sum[lo - self._acc_start : hi - self._acc_start] += probs
            self._acc_count[lo - self._acc_start : hi - self._acc_start] += 1

    def _grow(self, cell_end: int) -> None:
        need = cell_end - self._acc_start - len(self._acc_count)
        if need > 0:
            self._acc_sum = np.concatenate([self._acc_sum, np.zeros((need, len(self.labels)))])
            self._acc_count = np.concatenate([self._acc_count, np.zeros(need)])

    def _decide_until(self, cell_end: int, audio_end: int) -> list[EventUpdate]:
        """Decide cells up to (excluding) ``cell_end``; ``audio_end`` is the last sample refinement may look at."""
        n = cell_end - self._acc_start
        if n <= 0:
            return []
        self._grow(cell_end)
        counts = self._acc_count[:n]
        values = np.where(counts[:, None] > 0, self._acc_sum[:n] / np.maximum(counts, 1)[:, None], 0.0)
        updates: list[EventUpdate] = []
        for offset, row in enumerate(values):
            updates += self._step(self._acc_start + offset, row, audio_end)
        self._latest = values[-1]
        if self._keep_timeline:
            self._timeline.append(values.astype(np.float32))
        self._acc_sum = self._acc_sum[n:]
        self._acc_count = self._acc_count[n:]
        self._acc_start = cell_end
        return updates

    # ------------------------------------------------------------------ events

    def _step(self, cell: int, row: np.ndarray, audio_end: int) -> list[EventUpdate]:
        updates: list[EventUpdate] = []
        for c, value in enumerate(row):
            track = self._tracks.get(c)
            if track is None:
                if value >= self._on[c]:
                    self._tracks[c] = _Track(self._next_id, cell, cell, float(value), float(value), 1)
                    self._next_id += 1
                    track = self._tracks[c]
                else:
                    continue
            else:
                if value >= self._off[c]:
                    track.total += track.pending_total + float(value)
                    track.cells += track.pending_cells + 1
                    track.pending_total, track.pending_cells = 0.0, 0
                    track.last_above_cell = cell
                    track.peak = max(track.peak, float(value))
                elif not track.started and cell - track.last_above_cell > self._confirm_gap_cells:
                    # A blip that never lasted min_event_s is dropped once it has been quiet for _CONFIRM_GAP_S, not
                    # merged with what follows min_gap_s later: it would become the onset of a later sound and delay
                    # that sound's report. Shorter dips are the jagged probability of one short sound (a snap).
                    del self._tracks[c]
                    continue
                else:
                    track.pending_total += float(value)
                    track.pending_cells += 1
                if value < self._off[c] and cell - track.last_above_cell >= self._min_gap_cells[c]:
                    del self._tracks[c]
                    updates += self._close(c, track, track.last_above_cell + 1, audio_end)
                    continue
            if not track.started and track.last_above_cell - track.onset_cell + 1 >= self._min_event_cells:
                track.started = True
                track.onset_s = self._refine(c, self._cell_time(track.onset_cell), rising=True, audio_end=audio_end)
                updates.append(
                    EventUpdate(
                        "start",
                        track.event_id,
                        Event(
                            self.labels[c],
                            round(track.onset_s, 4),
                            None,
                            round(track.peak, 4),
                            round(track.total / track.cells, 4),
                        ),
                        reported_at_s=audio_end / self.model_rate_hz,
                    )
                )
        return updates

    def _close(self, c: int, track: _Track, end_cell: int, audio_end: int) -> list[EventUpdate]:
        if not track.started:
            return []  # never lasted min_event_s: dropped, and nothing was reported for it
        offset = self._refine(c, self._cell_time(end_cell), rising=False, audio_end=audio_end)
        offset = min(max(offset, track.onset_s + self.settings.grid_s), audio_end / self.model_rate_hz)
        mean = track.total / track.cells
        event = Event(self.labels[c], round(track.onset_s, 4), round(offset, 4), round(track.peak, 4), round(mean, 4))
        return [EventUpdate("end", track.event_id, event, reported_at_s=audio_end / self.model_rate_hz)]

    def _cell_time(self, cell: int) -> float:
        return cell * self._grid_n / self.model_rate_hz

    # ------------------------------------------------------------------ edge refinement

    def _refine(self, c: int, coarse_s: float, *, rising: bool, audio_end: int) -> float:
        """Place an edge near ``coarse_s`` where the class-band energy crosses halfway (dB) from floor to peak."""
        s = self.settings
        if not s.refine:
            return coarse_s
        rate = self.model_rate_hz
        a = max(self._buffer_start, round((coarse_s - self._refine_s) * rate))
        b = min(audio_end, round((coarse_s + self._refine_s) * rate))
        frame = max(8, round(_REFINE_FRAME_S * rate))
        if b - a < 4 * frame:
            return coarse_s
        audio = self._buffer[a - self._buffer_start : b - self._buffer_start]
        energy = band_energy_db(audio, rate, frame, self._bands[c])
        floor, peak = np.percentile(energy, 10), energy.max()
        if peak - floor < _REFINE_MIN_RISE_DB:
            return coarse_s
        # Two frames in a row (8 ms) above halfway: a lone spike of noise is not an edge.
        above = energy >= floor + 0.5 * (peak - floor)
        sustained = np.flatnonzero(above[:-1] & above[1:])
        if len(sustained) == 0:
            return coarse_s
        # The first crossing, not the loudest part: in a pattern of beeps the second may be the loudest.
        if rising:
            return (a + int(sustained[0]) * frame) / rate
        return (a + (int(sustained[-1]) + 2) * frame) / rate

    def _trim(self) -> None:
        """Drop audio no window, refinement or clip request can need any more."""
        s, rate = self.settings, self.model_rate_hz
        # Windows to come start at the next grid position; edges still to be refined lie at most min_gap + refine
        # before the first undecided cell; clip requests may reach history_s further back.
        next_model_input = self._processed if self._stream is not None else self._next_window * self._hop_n
        needed = min(next_model_input, self._acc_start * self._grid_n)
        reach_back = round((s.history_s + self._refine_s) * rate) + int(self._min_gap_cells.max()) * self._grid_n
        keep_from = max(self._buffer_start, needed - reach_back)
        drop = keep_from - self._buffer_start
        if drop > max(self._win_n, self._buffer_len // 2):
            kept = self._buffer_len - drop
            self._buffer[:kept] = self._buffer[drop : self._buffer_len]  # numpy copies overlapping slices safely
            self._buffer_len = kept
            self._buffer_start = keep_from
