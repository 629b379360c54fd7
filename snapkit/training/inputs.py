"""What a training run's fits read: the clips prepared once (:class:`TrainingInputs`), and for a head their cached
views as tensors."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from snapkit.models.backbones.base import FrameEmbedder
from snapkit.models.classifier import SoundClassifier
from snapkit.models.predict import probabilities_from_features, window_features
from snapkit.training.cache import EmbeddingCache, FeatureDataset, compute_views
from snapkit.training.data import ClipSet, WaveformDataset
from snapkit.training.headfit import ViewStats

if TYPE_CHECKING:
    from snapkit.training.train import TrainPlan


class TrainingInputs:
    """What every fit of a run trains on, prepared once: the clips, their targets and, for a head on a frozen
    backbone, the cached views of their features (:func:`compute_views`) and, as tensors, :meth:`view_stats`.
    :meth:`dataset` gives a Lightning fit's items; :meth:`score_whole` scores held-out clips as ``snapkit predict``
    would."""

    def __init__(
        self,
        plan: TrainPlan,
        clips: ClipSet,
        template: SoundClassifier,
        backbone: FrameEmbedder | None,
        clip_samples: int,
        log: Callable[[str], None],
        progress: bool = True,
    ) -> None:
        self.plan, self.clips, self.clip_samples = plan, clips, clip_samples
        s = plan.settings
        # Recorded background clips only: generated stand-in noise is never mixed into a head's views.
        self.backgrounds = [
            i
            for i, (label, generated) in enumerate(zip(clips.labels, clips.generated, strict=True))
            if label == s.background_label and not generated
        ]
        self.targets = torch.as_tensor(clips.targets())
        self.embedding_stats: str | None = None
        self.views: list[torch.Tensor] | None = None
        self.heard: list[tuple[frozenset[str], ...]] = []  # per clip, per view: hashes of the backgrounds it heard
        self.hashes: list[str] = []
        self._whole: dict[int, list[torch.Tensor]] = {}  # clip index -> frozen features of its scoring windows
        self._stats: ViewStats | None = None
        if backbone is not None:
            started = time.monotonic()
            cache = EmbeddingCache.default(backbone.name, backbone.frontend_config, plan.augment, clip_samples)
            views, self.hashes, stats = compute_views(
                clips,
                template.features,
                cache,
                views_per_clip=_views_per_clip(plan),
                backgrounds=self.backgrounds,
                seed=s.seed,
                progress=progress,
            )
            self.views = [torch.from_numpy(np.ascontiguousarray(v.features)) for v in views]
            self.heard = [v.heard for v in views]
            self.embedding_stats = str(stats)
            log(f"embeddings: {stats} in {time.monotonic() - started:.1f} s")

    def score_whole(self, model: SoundClassifier, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pooled frame probabilities, decision probabilities)`` ``[len(indices), classes]`` of whole clips, as
        ``snapkit.models.predict`` scores a file. The frozen features of a clip are computed once and kept: every
        fold's model reads the same ones."""
        was_training = model.training
        model.eval()
        pooled, decision = [], []
        for i in indices:
            i = int(i)
            if i not in self._whole:
                if self.views is not None and len(self.clips.waveforms[i]) <= self.clip_samples:
                    # A clip no longer than the window is scored as view 0 was made (centred in the window): the
                    # cached features are those, so the backbone does not run again.
                    self._whole[i] = [self.views[i][:1]]
                else:
                    self._whole[i] = window_features(model, self.clips.waveforms[i])
            p, d = probabilities_from_features(model, self._whole[i])
            pooled.append(torch.from_numpy(p))
            decision.append(torch.from_numpy(d))
        model.train(was_training)
        return torch.stack(pooled), torch.stack(decision)

    def view_stats(self) -> ViewStats:
        """Every clip's cached views as one tensor ``[clips, views, frames, dim]`` and its statistics over time, made
        once a run (heads on a frozen backbone only)."""
        if self.views is None:
            raise ValueError("Only a head on a frozen backbone has cached views.")
        if self._stats is None:
            self._stats = ViewStats.of(torch.stack(self.views))
        return self._stats

    def allowed_views(self, indices: np.ndarray) -> torch.Tensor:
        """``[len(indices), views]`` bool: the cached views of the clips ``indices`` that training on them may read,
        leaving out those that mixed in a background clip outside ``indices`` (see :meth:`dataset`)."""
        if self.views is None:
            raise ValueError("Only a head on a frozen backbone has cached views.")
        held_out = {self.hashes[i] for i in self.backgrounds} - {self.hashes[int(i)] for i in indices}
        allowed = torch.zeros(len(indices), len(self.views[0]), dtype=torch.bool)
        for row, i in enumerate(indices):
            for v, heard in enumerate(self.heard[int(i)]):
                allowed[row, v] = not heard & held_out
        return allowed

    def dataset(self, indices: np.ndarray, *, train: bool) -> TorchDataset:
        """Training (``train=True``) or validation items of the clips ``indices``. Training never hears a clip
        outside ``indices``: a head's cached views that mixed in a background clip of the held-out part are left out
        (a fold's test clips are scored on their own, so a view that heard one would leak it)."""
        if self.views is not None:
            held_out = {self.hashes[i] for i in self.backgrounds} - {self.hashes[int(i)] for i in indices}
            allowed = [[v for v, heard in enumerate(self.heard[int(i)]) if not heard & held_out] for i in indices]
            return FeatureDataset([self.views[i] for i in indices], self.targets[indices], train=train, allowed=allowed)
        # backgrounds=None: mix only background clips of this subset, so a fold never hears its test audio.
        return WaveformDataset(
            self.clips.subset(indices),
            self.clip_samples,
            train=train,
            augment=self.plan.augment,
            backgrounds=None,
            seed=self.plan.settings.seed,
        )


def _views_per_clip(plan: TrainPlan) -> int:
    """Views a clip gets: what the plan's budget fitted into the time limit, else the augmentation's count."""
    views = getattr(plan.budget, "views_per_clip", None)
    if isinstance(views, int):
        return views
    return plan.augment.views_per_clip if plan.augment.enabled else 1
