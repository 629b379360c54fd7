"""The streaming detector: push audio chunks of any length in, get event starts and ends out.

:class:`Detector` composes small parts, each testable on its own:

1. :class:`snapkit.audio.resample.StreamResampler` brings the input to the model's rate, and a
   :class:`~snapkit.detection.buffer.StreamBuffer` holds the audio still needed.
2. A scorer (:mod:`snapkit.detection.scorer`) runs the model every ``hop_s`` seconds of audio at fixed absolute
   sample positions, ``mode`` ``"stream"`` (the default wherever the model allows it: incremental, each output frame
   computed once, exactly as one pass over the whole stream) or ``"window"`` (windows of ``window_s``, default the
   model's clip length, every ``hop_s``; for models that normalise each input by its own peak, like sfx-cnn9).
   Either gives per-frame class probabilities ``[frames, classes]``.
3. The :class:`~snapkit.detection.timeline.Timeline` spreads each frame over the cells of a fine grid (``grid_s``,
   10 ms) it spans, averaging overlapping windows cell by cell. A cell is *decided* once its value is final:
   streaming frames when computed, windows once the newest window's frames reach ``lookahead_s`` past it.
4. The :class:`~snapkit.detection.tracker.EventTracker` runs per-class hysteresis over decided cells: an event begins
   at the class's on-threshold and ends when it has stayed below the off-threshold for ``min_gap_s`` or, if longer,
   the longest pause inside the class's training clips plus 0.25 s (so a smoke alarm's three pulses are one alarm);
   a rise that falls below the off-threshold before lasting ``min_event_s`` is dropped. A "start" update is sent
   once an event has lasted ``min_event_s``; its "end" update follows with the final times.
5. :func:`~snapkit.detection.refine.refine_edge` places onset and offset finer than the model's frames: within
   ``refine_s`` (at least one model frame) of the coarse edge, where the short-time energy in the class's band crosses
   halfway (dB) between the local floor and the peak.

Every step uses only sample positions and the audio up to the end of the model run that decided a cell, never "what
has been pushed so far", so 10 ms, 100 ms and 1 s chunks give identical events. The background class is not a model
output and so never an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from snapkit.audio.resample import StreamResampler
from snapkit.detection.buffer import StreamBuffer
from snapkit.detection.events import Event, EventUpdate
from snapkit.detection.refine import refine_edge
from snapkit.detection.scorer import Scores, StreamScorer, WindowScorer
from snapkit.detection.timeline import Timeline, cells_to_cover
from snapkit.detection.tracker import EventTracker, TrackEdge
from snapkit.errors import SnapkitError
from snapkit.models.calibration import thresholds_in_force
from snapkit.models.streaming import streaming_unsupported_reason

# Before an event is confirmed (min_event_s), dips below the off threshold longer than this end it.
_CONFIRM_GAP_S = 0.05
# Added to the longest pause inside a class's training clips to get its least gap between two events.
_PAUSE_MARGIN_S = 0.25


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
    # Quiet gate (window mode): windows whose loudest 20 ms stays below this level (dBFS) skip the model; None: off.
    min_level_dbfs: float | None = None
    # Per-class overrides: label -> on threshold / off threshold (probabilities 0..1).
    on_thresholds: dict[str, float] = field(default_factory=dict)
    off_thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("hop_s", "grid_s"):
            if getattr(self, name) <= 0:
                raise SnapkitError(f"Detector setting {name} must be a positive number of seconds.")
        if self.mode not in ("auto", "stream", "window"):
            raise SnapkitError(f"Detector setting mode must be 'auto', 'stream' or 'window', not {self.mode!r}.")
        for name in ("lookahead_s", "min_event_s", "min_gap_s", "refine_s"):
            if getattr(self, name) < 0:
                raise SnapkitError(f"Detector setting {name} cannot be negative.")
        if self.min_level_dbfs is not None and not -120.0 <= self.min_level_dbfs <= 0.0:
            raise SnapkitError(
                f"--min-level-dbfs must be between -120 and 0 dBFS (e.g. -60 for a quiet room), "
                f"not {self.min_level_dbfs:g}."
            )


class Detector:
    """Streaming event detector over a trained bundle. ``push`` chunks, read the updates, ``flush`` at the end.

    Composes a resampler, a :class:`StreamBuffer` of the audio still needed, a scorer (the model over the stream), a
    :class:`Timeline`, an :class:`EventTracker` (hysteresis) and :func:`refine_edge` (edge placement).
    """

    def __init__(
        self,
        bundle: object,
        settings: DetectorSettings | None = None,
        *,
        sample_rate_hz: int | None = None,
        keep_timeline: bool = False,
    ) -> None:
        self.bundle = bundle
        self.settings = s = settings or DetectorSettings()
        model = bundle.model.eval()
        self.model = model
        self.labels: tuple[str, ...] = tuple(bundle.config.labels)
        self.model_rate_hz = rate = int(model.sample_rate_hz)
        self.sample_rate_hz = int(sample_rate_hz or self.model_rate_hz)
        self._win_n = round((s.window_s or bundle.config.clip_s) * rate)
        hop_n = max(1, round(s.hop_s * rate))
        self._grid_n = grid_n = max(1, round(s.grid_s * rate))
        # A coarse edge can be a whole model frame off (0.19 s for sfx-cnn9): search at least that far for the real one.
        self._refine_s = max(s.refine_s, float(model.frame_hop_s))
        calibration = bundle.calibration
        # Per class (on, off): the bundle's calibration with the settings' overrides.
        self.thresholds = thresholds_in_force(calibration, s.on_thresholds, s.off_thresholds)
        on = np.array([self.thresholds[c][0] for c in self.labels])
        off = np.array([self.thresholds[c][1] for c in self.labels])
        if np.any(off > on):
            raise SnapkitError("An off-threshold is above its on-threshold; off must be at most on for each class.")
        # Per class: at least min_gap_s, and longer than the pauses inside the class's own training clips (plus
        # _PAUSE_MARGIN_S, as the model's probability dips for longer than the sound does).
        min_gap_cells = np.array(
            [max(1, round(max(s.min_gap_s, calibration[c].pause_s + _PAUSE_MARGIN_S) / s.grid_s)) for c in self.labels]
        )
        self.tracker = EventTracker(
            on,
            off,
            min_event_cells=max(1, round(s.min_event_s / s.grid_s)),
            min_gap_cells=min_gap_cells,
            confirm_gap_cells=max(1, round(_CONFIRM_GAP_S / s.grid_s)),
        )
        self._cannot_stream = streaming_unsupported_reason(model)
        if s.mode == "stream" and self._cannot_stream is not None:
            raise SnapkitError(
                f"This model cannot run in stream mode: {self._cannot_stream}; use the window mode (--mode window)."
            )
        self.streaming = s.mode == "stream" or (s.mode == "auto" and self._cannot_stream is None)
        self.scorer: StreamScorer | WindowScorer
        if self.streaming:
            self.scorer = StreamScorer(model, hop_n=hop_n, grid_n=grid_n)
        else:
            lookahead_n = round(s.lookahead_s * rate)
            self.scorer = WindowScorer(
                model,
                window_n=self._win_n,
                hop_n=hop_n,
                grid_n=grid_n,
                lookahead_n=lookahead_n,
                min_level_dbfs=s.min_level_dbfs,
            )
            self.model = self.scorer.model
        self.timeline_cells = Timeline(len(self.labels), grid_n, keep=keep_timeline)
        self.buffer = StreamBuffer(min_discard_n=self._win_n)
        nyquist = self.model_rate_hz / 2
        self._bands = [calibration[c].band_hz or (50.0, nyquist) for c in self.labels]
        self._keep_timeline = keep_timeline
        self.reset()

    # ------------------------------------------------------------------ public API

    def reset(self) -> None:
        """Forget everything: the next ``push`` starts a new stream at time 0."""
        self._restart(offset_s=0.0, first_event_id=1)

    def _restart(self, *, offset_s: float, first_event_id: int) -> None:
        """A fresh stream whose sample 0 lies ``offset_s`` into the stream the caller counts."""
        self._offset_s = offset_s
        self._pushed_n = 0  # input samples (at sample_rate_hz) pushed since the restart
        self._resampler = StreamResampler(self.sample_rate_hz, self.model_rate_hz)
        self.buffer.reset()
        self.scorer.reset()
        self.timeline_cells.reset()
        self.tracker.reset(first_event_id)
        self._onsets_s: dict[int, float] = {}  # refined onset of each reported, still open event, by event id
        self._flushed = False

    def describe(self) -> str:
        """One line for a user: how the model runs over the stream."""
        s = self.settings
        if isinstance(self.scorer, StreamScorer):
            return (
                f"streaming: the model runs every {s.hop_s:g} s on the new audio only, each output frame computed "
                f"once; a moment is decided {self.scorer.lookahead_s:.2f} s of audio after it"
                + ("; no quiet gate (a streaming model already runs on new audio only)" if s.min_level_dbfs else "")
            )
        why = self._cannot_stream
        return (
            f"windows of {self._win_n / self.model_rate_hz:g} s every {s.hop_s:g} s, overlapping outputs averaged"
            + (f" (this model cannot stream: {why})" if why else "")
            + (
                f"; windows quieter than {s.min_level_dbfs:g} dBFS skip the model"
                if s.min_level_dbfs is not None
                else ""
            )
        )

    @property
    def position_s(self) -> float:
        """Seconds of stream so far: audio pushed, and gaps passed to ``skip``."""
        return self._offset_s + self.buffer.end / self.model_rate_hz

    @property
    def latest_probabilities(self) -> dict[str, float]:
        """The newest decided probability of each class (for a live view)."""
        return {label: float(p) for label, p in zip(self.labels, self.timeline_cells.latest, strict=True)}

    def push(self, chunk: np.ndarray) -> list[EventUpdate]:
        """Feed ``chunk`` (mono float32 ``[samples]`` at ``sample_rate_hz``); returns the updates it completed."""
        if self._flushed:
            raise RuntimeError("push() after flush(): call reset() to start a new stream")
        samples = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self._pushed_n += len(samples)
        return self._ingest(self._resampler(samples))

    def skip(self, samples: int) -> list[EventUpdate]:
        """The input lost ``samples`` (at ``sample_rate_hz``) just before the next chunk (a device that went away,
        a long dropout): events still open end at the last sample heard, and the stream goes on after the gap as a
        fresh one whose times still count from the first sample, so onsets after it are not early by the lost time.
        Event ids go on from where they were. Short losses are better filled with silence and pushed, which keeps
        the model's context; this is for gaps too long to be worth running the model over. Returns the updates."""
        if samples < 0:
            raise ValueError(f"skip() takes a number of samples >= 0, not {samples}")
        updates = self.flush()
        offset_s = self._offset_s + (self._pushed_n + samples) / self.sample_rate_hz
        self._restart(offset_s=offset_s, first_event_id=self.tracker.next_event_id)
        return updates

    def flush(self) -> list[EventUpdate]:
        """End of stream: score the tail, decide every remaining moment and close open events."""
        if self._flushed:
            return []
        updates = self._ingest(self._resampler(np.zeros(0, np.float32), last=True))
        self._flushed = True
        end = self.buffer.end
        updates += self._take(self.scorer.finish(self.buffer))  # decides every cell up to the end
        updates += self._report(self.tracker.flush(cells_to_cover(end, self._grid_n)), end)
        return updates

    def timeline(self) -> tuple[np.ndarray, np.ndarray]:
        """Decided timeline ``(times_s [cells], probs [cells, classes])`` (cell starts); needs ``keep_timeline``."""
        if not self._keep_timeline:
            raise RuntimeError("Detector(keep_timeline=True) is needed for timeline()")
        probs = self.timeline_cells.decided()
        return np.arange(len(probs)) * self._grid_n / self.model_rate_hz, probs

    # ------------------------------------------------------------------ composition

    def _ingest(self, samples: np.ndarray) -> list[EventUpdate]:
        self.buffer.append(samples)
        updates: list[EventUpdate] = []
        for scores in self.scorer.score(self.buffer):
            updates += self._take(scores)
        self._discard_unneeded_audio()
        return updates

    def _take(self, scores: Scores) -> list[EventUpdate]:
        """Place a run's frames on the timeline, decide the cells it made final and step the tracker over them."""
        self.timeline_cells.add(scores.spans, scores.probs)
        first = self.timeline_cells.first_undecided
        values = self.timeline_cells.decide_until(scores.decided_cells)
        assert first == self.tracker.next_cell
        return self._report(self.tracker.push(values), scores.audio_end)

    def _report(self, edges: list[TrackEdge], audio_end: int) -> list[EventUpdate]:
        """Turn the tracker's edges into updates, their times refined on the audio before ``audio_end``."""
        reported_at_s = audio_end / self.model_rate_hz
        shift_s = self._offset_s  # stream seconds before this (re)start; 0 unless skip() was called
        updates = []
        for edge in edges:
            label = self.labels[edge.class_index]
            if edge.kind == "start":
                onset_s = self._refine(edge.class_index, self._cell_time(edge.onset_cell), True, audio_end)
                self._onsets_s[edge.event_id] = onset_s
                event = Event(label, round(shift_s + onset_s, 4), None, round(edge.peak, 4), round(edge.mean, 4))
            else:
                assert edge.end_cell is not None
                onset_s = self._onsets_s.pop(edge.event_id)
                offset_s = self._refine(edge.class_index, self._cell_time(edge.end_cell), False, audio_end)
                offset_s = min(max(offset_s, onset_s + self.settings.grid_s), reported_at_s)
                onset_s, offset_s = shift_s + onset_s, shift_s + offset_s
                event = Event(label, round(onset_s, 4), round(offset_s, 4), round(edge.peak, 4), round(edge.mean, 4))
            updates.append(EventUpdate(edge.kind, edge.event_id, event, reported_at_s=shift_s + reported_at_s))
        return updates

    def _cell_time(self, cell: int) -> float:
        return cell * self._grid_n / self.model_rate_hz

    def _refine(self, c: int, coarse_s: float, rising: bool, audio_end: int) -> float:
        if not self.settings.refine:
            return coarse_s
        audio = self.buffer.view(self.buffer.start, audio_end)
        return refine_edge(
            audio,
            self.model_rate_hz,
            coarse_s,
            self._bands[c],
            rising=rising,
            search_s=self._refine_s,
            first_n=self.buffer.start,
        )

    def _discard_unneeded_audio(self) -> None:
        """Let go of audio no model run and no edge still to be refined can need."""
        # Edges to come lie on or after the earliest open event's edge or the first undecided cell; refinement looks
        # up to _refine_s before an edge (one more cell against rounding).
        edge_cell = min(self.tracker.earliest_open_cell(), self.timeline_cells.first_undecided)
        reach_back = round(self._refine_s * self.model_rate_hz) + self._grid_n
        self.buffer.discard_before(min(self.scorer.next_input_n, edge_cell * self._grid_n - reach_back))
