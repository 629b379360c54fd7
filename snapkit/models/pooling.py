"""Frame -> clip pooling for multi-label sigmoid outputs.

Training clips carry one label for the whole clip, but the detector needs a probability per frame. The model
therefore predicts per-frame logits and a pooling turns them into the clip probability the loss sees
("multiple-instance learning"): the frames learn where in the clip the sound is, without frame labels.

Every pooling takes ``frame_logits`` ``[batch, frames, classes]`` (and, for attention, ``att_logits`` of the
same shape) and returns clip probabilities ``[batch, classes]`` clamped to ``[EPS, 1 - EPS]``, so a binary
cross-entropy on them stays finite.
"""

from __future__ import annotations

import torch
from torch import nn

# Keeps clip probabilities strictly inside (0, 1): float32 sigmoid rounds to exactly 1.0 above ~17.
EPS = 1e-7
# PANNs' AttBlock clamps attention logits to [-10, 10] so one frame cannot take all the softmax mass at once
# early in training (and exp() cannot overflow).
ATT_CLAMP = 10.0


def _check(frame_logits: torch.Tensor) -> None:
    if frame_logits.dim() != 3:
        raise ValueError(f"Expected frame logits [batch, frames, classes], got shape {tuple(frame_logits.shape)}.")


class Pooling(nn.Module):
    """Base class: ``(frame_logits [B, T, C], att_logits [B, T, C] | None) -> clip_probs [B, C]``."""

    name: str = ""
    needs_attention: bool = False

    def forward(self, frame_logits: torch.Tensor, att_logits: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class MaxPooling(Pooling):
    """Clip probability = max over frames of the frame probability: a clip is positive if any frame is.

    Gradients reach only the loudest frame, so it learns slowly from weak frames but localises sharply.
    """

    name = "max"

    def forward(self, frame_logits: torch.Tensor, att_logits: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, C]`` logits -> ``[B, C]`` probabilities; ``att_logits`` is ignored."""
        _check(frame_logits)
        # max of sigmoid == sigmoid of max (monotonic), and the latter is one sigmoid per clip.
        return torch.sigmoid(frame_logits.amax(dim=1)).clamp(EPS, 1.0 - EPS)


class LinearSoftmaxPooling(Pooling):
    """Clip probability = ``sum_t p_t^2 / sum_t p_t`` (Wang, Li & Metze, ICASSP 2019, "A comparison of five
    multiple instance learning pooling functions for sound event detection with weak labeling").

    A weighted mean of the frame probabilities where each frame weighs its own probability: between the mean
    and the max, and the pooling that localised events best in that comparison.
    """

    name = "linear_softmax"

    def forward(self, frame_logits: torch.Tensor, att_logits: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, C]`` logits -> ``[B, C]`` probabilities; ``att_logits`` is ignored."""
        _check(frame_logits)
        probs = torch.sigmoid(frame_logits)
        clip = probs.square().sum(dim=1) / probs.sum(dim=1).clamp(min=EPS)
        return clip.clamp(EPS, 1.0 - EPS)


class AttentionPooling(Pooling):
    """PANNs-style decision-level attention (Kong et al. 2020, ``AttBlock``): a second set of per-frame logits
    ``att`` is clamped to [-10, 10] and soft-maxed over time (per class), then weighs the frame probabilities:
    ``clip = sum_t softmax_t(att)_t * sigmoid(frame_logits)_t``.

    The model learns which frames matter for each class; the frame probabilities themselves stay calibrated
    per frame, which is what the detector thresholds.
    """

    name = "attention"
    needs_attention = True

    def forward(self, frame_logits: torch.Tensor, att_logits: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, C]`` frame logits and ``[B, T, C]`` attention logits -> ``[B, C]`` probabilities."""
        _check(frame_logits)
        if att_logits is None or att_logits.shape != frame_logits.shape:
            shape = None if att_logits is None else tuple(att_logits.shape)
            raise ValueError(
                f"Attention pooling needs att_logits shaped like frame_logits {tuple(frame_logits.shape)}, got {shape}."
            )
        weights = torch.softmax(att_logits.clamp(-ATT_CLAMP, ATT_CLAMP), dim=1)
        clip = (weights * torch.sigmoid(frame_logits)).sum(dim=1)
        return clip.clamp(EPS, 1.0 - EPS)


_POOLINGS: dict[str, type[Pooling]] = {cls.name: cls for cls in (MaxPooling, LinearSoftmaxPooling, AttentionPooling)}


def make_pooling(name: str) -> Pooling:
    """The pooling module called ``name`` (``"max"``, ``"attention"`` or ``"linear_softmax"``)."""
    try:
        return _POOLINGS[name]()
    except KeyError:
        raise ValueError(f"Unknown pooling {name!r}: choose one of {', '.join(_POOLINGS)}.") from None
