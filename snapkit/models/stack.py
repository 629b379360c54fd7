"""Several heads on one frozen backbone, run as one model: the backbone's frames are computed once per input and
every head reads them (the openWakeWord pattern: one shared embedding, many small heads).

Each bundle a user trains on, say, sfx-cnn9 holds the same frozen backbone and its own small head. Listening with
ten of them should not run the backbone ten times: :func:`stack_bundles` makes one :class:`StackedBundle` whose model
is a :class:`HeadStack`, which the :class:`~snapkit.detection.detector.Detector` runs like any bundle, its classes
those of every member in turn. :func:`can_share_backbone` says which bundles may be stacked: the same backbone with
the same weights, the same clip length, and a model that runs in windows (one that can stream keeps its own
detector, which streams).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from snapkit.features.config import FrontEndConfig
from snapkit.models.backbones.base import FrameEmbedder
from snapkit.models.calibration import ClassCalibration
from snapkit.models.classifier import SoundClassifier
from snapkit.models.streaming import streaming_unsupported_reason


class HeadStack(nn.Module):
    """``models`` (each a :class:`SoundClassifier` on the same frozen backbone) as one:
    waveform ``[batch, samples]`` -> ``(frame_probs [batch, frames, classes], clip_probs [batch, classes])`` where the
    classes are every member's, in order. The backbone runs once per call; the members are made to hold that one
    backbone, so its weights are in memory once.
    """

    def __init__(self, models: Sequence[SoundClassifier]) -> None:
        super().__init__()
        if not models:
            raise ValueError("HeadStack needs at least one model.")
        backbone = models[0].backbone
        if backbone is None:
            raise ValueError("HeadStack stacks heads on a pretrained backbone; a ConvNet has none to share.")
        for model in models[1:]:
            if not same_backbone(model.backbone, backbone):
                raise ValueError("Every model of a HeadStack must hold the same backbone with the same weights.")
            model.backbone = backbone
        self.backbone: FrameEmbedder = backbone
        self.members = nn.ModuleList(models)
        self.logmel = None  # what streaming_unsupported_reason reads: the front end is the backbone's
        self.backbone_runs = 0  # inputs the backbone has seen (what sharing saves, for tests and measurements)

    @property
    def first(self) -> SoundClassifier:
        return self.members[0]  # type: ignore[return-value]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for model in self.members for label in model.labels)  # type: ignore[attr-defined]

    @property
    def frontend_config(self) -> FrontEndConfig:
        return self.first.frontend_config

    @property
    def sample_rate_hz(self) -> int:
        return self.first.sample_rate_hz

    @property
    def frame_hop_s(self) -> float:
        return self.first.frame_hop_s

    @property
    def first_frame_centre_s(self) -> float:
        return self.first.first_frame_centre_s

    def frame_times_s(self, num_frames: int) -> np.ndarray:
        return self.first.frame_times_s(num_frames)

    def num_output_frames(self, num_samples: int) -> int:
        return self.first.num_output_frames(num_samples)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.first.features(waveform)  # [batch, frames, dim], once
        self.backbone_runs += int(waveform.shape[0])
        frame_probs, clip_probs = [], []
        for model in self.members:
            frame_logits, att_logits, clip_logits = model.all_outputs(features)  # type: ignore[operator]
            frame_probs.append(torch.sigmoid(frame_logits))
            clip_probs.append(model.decision_from(frame_logits, att_logits, clip_logits))  # type: ignore[operator]
        return torch.cat(frame_probs, dim=-1), torch.cat(clip_probs, dim=-1)


@dataclass(frozen=True)
class StackedConfig:
    """What the detector reads of a bundle's config: every member's ``labels`` in order and the shared ``clip_s``."""

    labels: tuple[str, ...]
    clip_s: float
    backbone: str


@dataclass(frozen=True)
class StackedBundle:
    """Bundles sharing one backbone, as one bundle the :class:`~snapkit.detection.detector.Detector` runs:
    ``model`` a :class:`HeadStack`, ``calibration`` every member's classes, ``paths`` the files they came from."""

    model: HeadStack
    config: StackedConfig
    calibration: Mapping[str, ClassCalibration]
    paths: tuple[Path | None, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels


def same_backbone(a: FrameEmbedder | None, b: FrameEmbedder | None) -> bool:
    """True when ``a`` and ``b`` are the same backbone (name and every weight)."""
    if a is None or b is None or a.name != b.name:
        return False
    if a is b:
        return True
    state_a, state_b = a.state_dict(), b.state_dict()
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def can_share_backbone(a: object, b: object) -> bool:
    """Whether bundles ``a`` and ``b`` can run as one :class:`HeadStack`: the same backbone and weights, the same
    clip length (the window the detector runs), and models that run in windows rather than stream."""
    model_a, model_b = a.model, b.model  # type: ignore[attr-defined]
    if model_a.backbone is None or model_b.backbone is None:
        return False
    if streaming_unsupported_reason(model_a) is None or streaming_unsupported_reason(model_b) is None:
        return False
    return a.config.clip_s == b.config.clip_s and same_backbone(model_a.backbone, model_b.backbone)  # type: ignore[attr-defined]


def stack_bundles(bundles: Sequence[object]) -> StackedBundle:
    """One :class:`StackedBundle` of ``bundles`` (all :func:`can_share_backbone` with the first). Labels must not
    repeat across them (the caller says which models clash)."""
    first = bundles[0]
    for other in bundles[1:]:
        if not can_share_backbone(first, other):
            raise ValueError("stack_bundles: every bundle must share the first one's backbone (can_share_backbone).")
    model = HeadStack([bundle.model for bundle in bundles])  # type: ignore[attr-defined]
    labels = model.labels
    if len(set(labels)) != len(labels):
        raise ValueError(f"stack_bundles: a class name repeats across the bundles: {labels}.")
    calibration: dict[str, ClassCalibration] = {}
    for bundle in bundles:
        calibration.update(bundle.calibration)  # type: ignore[attr-defined]
    config = StackedConfig(labels, float(first.config.clip_s), str(first.config.backbone))  # type: ignore[attr-defined]
    return StackedBundle(model.eval(), config, calibration, tuple(getattr(b, "path", None) for b in bundles))
