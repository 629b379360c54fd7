"""Small trainable per-frame heads on top of frame features."""

from __future__ import annotations

import torch
from torch import nn


class FrameHead(nn.Module):
    """Per-frame logits from frame features: ``[batch, frames, in_dim]`` -> ``[batch, frames, n_classes]``.

    With ``hidden == 0``: dropout then one Linear (a logistic regression per frame: the right size for a
    handful of clips per class on good pretrained features). With ``hidden > 0``:
    Linear(in_dim, hidden) - GELU - Dropout - Linear(hidden, n_classes). The same weights are applied to every
    frame, so the head works for any number of frames.
    """

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        if in_dim < 1 or n_classes < 1 or hidden < 0:
            raise ValueError(f"Invalid head sizes: in_dim={in_dim}, n_classes={n_classes}, hidden={hidden}.")
        self.in_dim = in_dim
        self.n_classes = n_classes
        self.hidden = hidden
        layers: list[nn.Module]
        if hidden == 0:
            layers = [nn.Dropout(dropout), nn.Linear(in_dim, n_classes)]
        else:
            layers = [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[batch, frames, in_dim]`` -> logits ``[batch, frames, n_classes]`` (Linear acts on the last axis)."""
        if features.dim() != 3 or features.shape[-1] != self.in_dim:
            raise ValueError(
                f"FrameHead expects features [batch, frames, {self.in_dim}], got shape {tuple(features.shape)}."
            )
        return self.layers(features)
