"""Running the model over a stream: frame probabilities, the sample spans they stand for, and what they make final.

Two ways, both at fixed absolute sample positions (multiples of the hop), so what is scored never depends on how the
audio was chunked:

- :class:`StreamScorer`: the model runs incrementally (:class:`snapkit.models.streaming.StreamingClassifier`), each
  output frame computed once, exactly as if the whole stream had gone through the model at once. A frame is final
  when computed.
- :class:`WindowScorer`: windows of ``window_n`` samples start every hop, each run through the model once its last
  sample has arrived. A cell is final once the newest window's frames reach ``lookahead_n`` past it. For models whose
  front end normalises each input by its own peak (sfx-cnn9), which cannot stream exactly. With a quiet gate
  (``min_level_dbfs``) a window whose loudest 20 ms stays below the level is not run: it adds nothing to the
  timeline (cells no window reached are 0), so a quiet house costs almost no CPU. Every window that holds a sound
  above the level runs as before.

Each run gives a :class:`Scores`: frames ``[frames, classes]``, their spans, and the cell up to which the timeline
(:mod:`snapkit.detection.timeline`) may be decided.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from snapkit.audio.levels import frame_powers
from snapkit.detection.buffer import StreamBuffer
from snapkit.detection.timeline import cell_of, cells_to_cover, first_cell_from
from snapkit.models.streaming import StreamingClassifier

# The quiet gate's level is that of a window's loudest stretch this long: a short knock in a quiet window counts.
GATE_FRAME_S = 0.02


@dataclass(frozen=True)
class Scores:
    """One model run: ``probs`` ``[frames, classes]``, ``spans`` the absolute sample span ``[a, b)`` of each frame,
    ``decided_cells`` the timeline cells final after it (all cells before that index), and ``audio_end`` the last
    sample (exclusive) the run has seen, which is all later steps may look at."""

    spans: list[tuple[int, int]]
    probs: np.ndarray
    decided_cells: int
    audio_end: int


class StreamScorer:
    """The model run incrementally over the stream, every ``hop_n`` samples on the new audio only."""

    def __init__(self, model: torch.nn.Module, *, hop_n: int, grid_n: int) -> None:
        self.model = model
        self.rate_hz = int(model.sample_rate_hz)
        self.hop_n = hop_n
        self.grid_n = grid_n
        self._stream = StreamingClassifier(model)
        self.lookahead_s: float = self._stream.lookahead_s
        self.reset()

    def reset(self) -> None:
        self._stream.reset()
        self._processed = 0  # samples given to the streaming model

    @property
    def next_input_n(self) -> int:
        """The first sample a later run will read."""
        return self._processed

    def score(self, buffer: StreamBuffer) -> Iterator[Scores]:
        """Runs for every whole hop of ``buffer`` not yet scored."""
        # One hop at a time, so that what is reported when never depends on how the audio was chunked.
        while self._processed + self.hop_n <= buffer.end:
            yield self._run(buffer, self._processed + self.hop_n, final=False)

    def finish(self, buffer: StreamBuffer) -> Scores:
        """The last run at the end of the stream: every remaining cell becomes final."""
        return self._run(buffer, buffer.end, final=True)

    def _run(self, buffer: StreamBuffer, end: int, *, final: bool) -> Scores:
        first = self._stream.frames_done
        probs = self._stream.push(buffer.view(self._processed, end), final=final)
        self._processed = end
        spans = [self._frame_span(first + j) for j in range(len(probs))]
        if final and spans:
            # The frames stop short of the stream's end by up to one frame: the last one stands for the rest.
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        if final:
            decided = cells_to_cover(end, self.grid_n)
        elif spans:
            decided = first_cell_from(spans[-1][1], self.grid_n)
        else:
            decided = 0  # nothing new: nothing more is final
        return Scores(spans, probs, decided, end)

    def _frame_span(self, j: int) -> tuple[int, int]:
        """Sample span ``[a, b)`` stream frame ``j`` stands for: halfway to its neighbours' centres."""
        rate, first, hop = self.rate_hz, self.model.first_frame_centre_s, self.model.frame_hop_s
        return max(0, round((first + (j - 0.5) * hop) * rate)), round((first + (j + 0.5) * hop) * rate)


class WindowScorer:
    """Windows of ``window_n`` samples every ``hop_n``, window k covering ``[k*hop_n, k*hop_n + window_n)``."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        window_n: int,
        hop_n: int,
        grid_n: int,
        lookahead_n: int,
        min_level_dbfs: float | None = None,
    ) -> None:
        # Channels-last tensors let oneDNN pick faster convolution kernels on CPU (measured 1.4x for sfx-cnn9
        # windows); a copy, so the caller's model keeps its layout. Same numbers to float rounding.
        self.model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        self.rate_hz = int(model.sample_rate_hz)
        self.window_n = window_n
        self.hop_n = hop_n
        self.grid_n = grid_n
        self.lookahead_n = lookahead_n
        self.min_level_dbfs = min_level_dbfs
        self._frame_spans = self._window_frame_spans()
        self._coverage_end_n = self._frame_spans[-1][1]  # where the last frame's span of a window ends
        self.reset()

    def reset(self) -> None:
        self._next_window = 0
        self.windows_run = 0
        self.windows_skipped = 0  # by the quiet gate

    @property
    def next_input_n(self) -> int:
        """The first sample a later run may read (the tail window at the end may start before the next window)."""
        return max(0, (self._next_window - 1) * self.hop_n)

    def score(self, buffer: StreamBuffer) -> Iterator[Scores]:
        """Runs for every window of ``buffer`` complete and not yet scored."""
        while self._next_window * self.hop_n + self.window_n <= buffer.end:
            start = self._next_window * self.hop_n
            self._next_window += 1
            yield self._run(buffer, start)

    def finish(self, buffer: StreamBuffer) -> Scores:
        """The last run at the end of the stream: every remaining cell becomes final."""
        end = buffer.end
        if self._next_window == 0 or (self._next_window - 1) * self.hop_n + self.window_n < end:
            # The tail after the last full window: one more window ending exactly at the stream's end.
            return self._run(buffer, max(0, end - self.window_n), final=True)
        return Scores([], np.zeros((0, 0)), cells_to_cover(end, self.grid_n), end)

    def _run(self, buffer: StreamBuffer, start: int, *, final: bool = False) -> Scores:
        end = start + self.window_n
        audio = buffer.view(start, min(end, buffer.end))
        if len(audio) < self.window_n:
            # Only a stream shorter than one window gets here. Repeat it rather than pad with digital silence, which
            # no microphone produces and a model never saw; cells past the stream's end are never decided anyway.
            audio = np.pad(audio, (0, self.window_n - len(audio)), mode="wrap" if len(audio) else "constant")
        if self._quiet(audio):
            self.windows_skipped += 1
            spans: list[tuple[int, int]] = []
            probs = np.zeros((0, 0))
        else:
            self.windows_run += 1
            with torch.inference_mode():
                probs = self.model(torch.from_numpy(np.ascontiguousarray(audio))[None])[0][0].numpy()
            spans = [(start + a, start + b) for a, b in self._frame_spans]
        if final:
            return Scores(spans, probs, cells_to_cover(buffer.end, self.grid_n), buffer.end)
        horizon = start + self._coverage_end_n - self.lookahead_n
        return Scores(spans, probs, cell_of(max(0, horizon), self.grid_n), end)

    def _quiet(self, audio: np.ndarray) -> bool:
        """True when the quiet gate is on and the loudest ``GATE_FRAME_S`` of ``audio`` stays below its level."""
        if self.min_level_dbfs is None or not len(audio):
            return False
        powers = frame_powers(audio, self.rate_hz, GATE_FRAME_S)
        loudest = float(np.max(powers)) if len(powers) else 0.0
        return loudest < 10.0 ** (self.min_level_dbfs / 10.0)

    def _window_frame_spans(self) -> list[tuple[int, int]]:
        """For each output frame of a window, the sample span ``[a, b)`` it stands for, relative to the window."""
        frames = self.model.num_output_frames(self.window_n)
        centres = self.model.frame_times_s(frames)
        hop_n = self.model.frame_hop_s * self.rate_hz
        spans = []
        for centre in centres:
            a = round(centre * self.rate_hz - hop_n / 2)
            spans.append((max(0, a), min(self.window_n, round(a + hop_n))))
        return spans
