"""Incremental ("streaming") inference: each output frame of a stream computed once, as new audio arrives.

A sliding-window detector runs a 2 s window every 0.25 s and so computes every frame about eight times. The models
here are convolutional in time (log-mel frames, "same"-padded convolutions, non-overlapping pooling, per-frame
heads), so the output for a whole stream can instead be computed in pieces: every layer that looks at neighbouring
frames keeps the last few frames of its input (its receptive field) between calls, as streaming keyword spotters do
(Rybakov et al., "Streaming keyword spotting on mobile devices", Interspeech 2020). The result equals running the
model over the whole stream at once, whatever the pieces (tested to float rounding), at a fraction of the cost.

The price is latency: an output frame can only be computed once its receptive field's right half has arrived
(:attr:`StreamingClassifier.lookahead_s`), about 0.14 s for snapkit's ConvNet.

Not every model can stream exactly. A front end that normalises each input by its own peak (``peak_normalize``, the
sfx-cnn9 preset) or floors it at its own maximum (``top_db``) gives numbers that depend on where the input starts
and ends; :func:`streaming_unsupported_reason` says why, and the detector then keeps its sliding windows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from snapkit.features.config import FrontEndConfig
from snapkit.features.frontend import LogMel

Tensor = torch.Tensor


class StreamStage:
    """One step of a streamed network on ``[batch, channels, frames, bins]`` maps.

    ``__call__(x, final)`` takes the new frames (or None) and returns the output frames now computable (or None);
    ``final`` marks the end of the stream, where the stage flushes what it holds as the whole-input forward would.
    """

    def __call__(self, x: Tensor | None, final: bool) -> Tensor | None:
        raise NotImplementedError


class Pointwise(StreamStage):
    """A function acting on each frame on its own (BatchNorm in eval mode, activations, frequency pooling)."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn = fn

    def __call__(self, x: Tensor | None, final: bool) -> Tensor | None:
        return None if x is None or x.shape[2] == 0 else self.fn(x)


class TimeConv(StreamStage):
    """A ``Conv2d`` with zero padding in time, streamed: it keeps the last ``kernel - 1`` input frames.

    ``time_pad`` is the (past, future) zero padding of the whole-input forward; None takes the conv's own
    symmetric time padding ("same"). The stream starts with ``past`` zero frames and the final call appends
    ``future`` more, so output frame ``t`` is the whole-input forward's frame ``t``. Padding along frequency is
    applied by the convolution as usual.
    """

    def __init__(self, conv: nn.Conv2d, time_pad: tuple[int, int] | None = None) -> None:
        if not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros":
            raise ValueError("TimeConv needs a Conv2d with numeric zero padding.")
        kernel = conv.kernel_size[0]
        past, future = (conv.padding[0], conv.padding[0]) if time_pad is None else time_pad
        if time_pad is not None and conv.padding[0] != 0:
            raise ValueError("With time_pad given, the Conv2d itself must not pad in time.")
        if conv.stride[0] != 1 or conv.dilation[0] != 1 or past + future != kernel - 1:
            raise ValueError("TimeConv needs stride 1, dilation 1 and padding that keeps the number of frames.")
        self.conv = conv
        self.kernel = kernel
        self.past = past
        self.future = future  # frames of the future each output needs
        self.held: Tensor | None = None

    def __call__(self, x: Tensor | None, final: bool) -> Tensor | None:
        parts = [] if self.held is None else [self.held]
        if x is not None:
            if self.held is None:  # first frames of the stream: the left zero padding goes in front
                parts.append(x.new_zeros(*x.shape[:2], self.past, x.shape[3]))
            parts.append(x)
        if not parts:
            return None
        if final:
            parts.append(parts[-1].new_zeros(*parts[-1].shape[:2], self.future, parts[-1].shape[3]))
        buffer = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
        self.held = buffer[:, :, max(0, buffer.shape[2] - (self.kernel - 1)) :]
        if buffer.shape[2] < self.kernel:
            return None
        c = self.conv
        return F.conv2d(buffer, c.weight, c.bias, stride=1, padding=(0, c.padding[1]), dilation=c.dilation)


class TimePool(StreamStage):
    """Non-overlapping pooling whose time kernel equals its stride ``frames``; frames left over wait for the next
    call and are dropped at the end, as the whole-input forward's floor does."""

    def __init__(self, fn: Callable[[Tensor], Tensor], frames: int) -> None:
        self.fn = fn
        self.frames = frames
        self.held: Tensor | None = None

    def __call__(self, x: Tensor | None, final: bool) -> Tensor | None:
        if x is None:
            return None
        buffer = x if self.held is None or self.held.shape[2] == 0 else torch.cat([self.held, x], dim=2)
        usable = buffer.shape[2] - buffer.shape[2] % self.frames
        self.held = buffer[:, :, usable:]
        return self.fn(buffer[:, :, :usable]) if usable else None


def run_stages(stages: Sequence[StreamStage], x: Tensor | None, final: bool) -> Tensor | None:
    """Pass ``x`` through ``stages`` in order; None when no output frame is complete yet."""
    for stage in stages:
        x = stage(x, final)
    return x


def streaming_unsupported_reason(model: nn.Module) -> str | None:
    """Why ``model`` (a ``SoundClassifier``) cannot be streamed exactly, or None if it can."""
    logmel: LogMel = model.logmel if model.backbone is None else model.backbone.frontend
    if logmel.config.peak_normalize:
        return "its front end scales each input by its own peak, so a frame's value depends on the window around it"
    if logmel.config.top_db is not None:
        return "its front end floors each input at its own maximum minus top_db"
    trunk = model.convnet if model.backbone is None else model.backbone
    if not hasattr(trunk, "streaming_stages"):
        return f"the {type(trunk).__name__} network has no streaming form"
    return None


def lookahead_s(stages: Sequence[StreamStage], frontend: FrontEndConfig) -> float:
    """Audio a streamed network needs past an output frame's centre before it can compute that frame, in seconds.

    Walking the stages: a time convolution needs ``future`` more input frames at the current time stride, a pooling
    of ``k`` frames needs ``k - 1`` more and multiplies the stride by ``k``. An output frame is centred
    ``(stride - 1) / 2`` log-mel frames after its first one, and each log-mel frame needs ``n_fft / 2`` samples past
    its centre (``n_fft`` without centring).
    """
    stride, reach = 1, 0
    for stage in stages:
        if isinstance(stage, TimeConv):
            reach += stage.future * stride
        elif isinstance(stage, TimePool):
            reach += (stage.frames - 1) * stride
            stride *= stage.frames
    stft_reach_s = (frontend.n_fft // 2 if frontend.center else frontend.n_fft) / frontend.sample_rate_hz
    return (reach - (stride - 1) / 2) * frontend.hop_s + stft_reach_s


class StreamingLogMel:
    """Log-mel frames of a stream, computed as samples arrive; the same frames as ``LogMel`` on the whole stream.

    ``push(samples)`` returns the new frames ``[1, frames, mels]`` whose samples have all arrived (or None);
    ``push(..., final=True)`` adds the end padding and returns the rest.
    """

    def __init__(self, logmel: LogMel) -> None:
        cfg = logmel.config
        if cfg.peak_normalize or cfg.top_db is not None:
            raise ValueError("A front end with peak_normalize or top_db depends on the whole input; it cannot stream.")
        self.logmel = logmel
        self.n_fft = cfg.n_fft
        self.hop = cfg.hop_length
        self.pad = cfg.n_fft // 2 if cfg.center else 0
        self.pad_mode = cfg.pad_mode
        self.held = torch.zeros(0)  # padded samples from the next frame's start on
        self.started = False
        self.received = 0

    def push(self, samples: Tensor, final: bool = False) -> Tensor | None:
        """``samples`` ``[n]`` float -> new log-mel frames ``[1, frames, mels]`` or None."""
        self.received += samples.shape[0]
        buffer = torch.cat([self.held, samples.float()])
        if not self.started:
            if self.pad and self.pad_mode == "reflect" and buffer.shape[0] <= self.pad:
                if not final:
                    self.held = buffer
                    return None
                return None  # too short to reflect: the whole-input forward refuses such a stream too
            buffer = self._pad(buffer, left=True)
            self.started = True
        if final:
            buffer = self._pad(buffer, left=False)
        frames = 0 if buffer.shape[0] < self.n_fft else 1 + (buffer.shape[0] - self.n_fft) // self.hop
        self.held = buffer[frames * self.hop :]
        if frames == 0:
            return None
        return self.logmel.from_padded(buffer[None, : (frames - 1) * self.hop + self.n_fft])

    def _pad(self, x: Tensor, *, left: bool) -> Tensor:
        if not self.pad:
            return x
        if self.pad_mode == "reflect":
            # Needs pad + 1 samples on that side; the held samples always include the end of the stream.
            edge = x[1 : self.pad + 1].flip(0) if left else x[-self.pad - 1 : -1].flip(0)
        elif self.pad_mode == "edge":
            edge = (x[:1] if left else x[-1:]).expand(self.pad)
        else:
            edge = x.new_zeros(self.pad)
        return torch.cat([edge, x]) if left else torch.cat([x, edge])


class StreamingClassifier:
    """Per-frame class probabilities of a stream from a ``SoundClassifier``, each frame computed once.

    ``push(samples)`` (mono float ``[n]`` at the model's rate) returns the probabilities ``[frames, classes]`` of
    the output frames completed by those samples, in order; frame ``j`` of the stream (counting all pushes) is
    centred at ``model.frame_times_s(j + 1)[j]`` seconds and equals frame ``j`` of ``model(whole_stream)``.
    ``push(..., final=True)`` ends the stream.
    """

    def __init__(self, model: nn.Module) -> None:
        reason = streaming_unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"This model cannot stream: {reason}.")
        self.model = model.eval()
        trunk = model.convnet if model.backbone is None else model.backbone
        self._trunk = trunk
        self._logmel = model.logmel if model.backbone is None else model.backbone.frontend
        self.reset()
        self.lookahead_s = lookahead_s(self._stages, self._logmel.config)
        """Audio needed past an output frame's centre before that frame can be computed, in seconds."""

    def reset(self) -> None:
        """Start a new stream."""
        self._frontend = StreamingLogMel(self._logmel)
        self._stages = self._trunk.streaming_stages()
        self.frames_done = 0

    def push(self, samples: np.ndarray | Tensor, final: bool = False) -> np.ndarray:
        """New frame probabilities ``[frames, classes]`` (float32, possibly 0 frames)."""
        x = torch.as_tensor(np.asarray(samples, dtype=np.float32)).reshape(-1)
        with torch.inference_mode():
            mel = self._frontend.push(x, final)
            features = run_stages(self._stages, None if mel is None else mel.unsqueeze(1), final)
            if features is None or features.shape[2] == 0:
                return np.zeros((0, self.model.n_classes), np.float32)
            frames = features.mean(dim=3).transpose(1, 2)  # [1, frames, dim]
            logits, _ = self.model.head_outputs(frames)
            probs = torch.sigmoid(logits)[0].numpy()
        self.frames_done += len(probs)
        return probs
