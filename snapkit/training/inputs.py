"""What a training run's fits read: the clips prepared once (:class:`TrainingInputs`) and one fit's Lightning data
module (:class:`FoldData`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from snapkit.models.backbones.base import FrameEmbedder
from snapkit.models.classifier import SoundClassifier
from snapkit.models.predict import probabilities_from_features, window_features
from snapkit.training.cache import EmbeddingCache, FeatureDataset, compute_views
from snapkit.training.data import ClipSet, WaveformDataset, balanced_sampler

if TYPE_CHECKING:
    from snapkit.training.train import TrainPlan


class TrainingInputs:
    """What every fit of a run trains on, prepared once: the clips, their targets and, for a head on a frozen
    backbone, the cached views of their features (:func:`compute_views`). :meth:`fold` gives one fit's
    :class:`FoldData`; :meth:`score_whole` scores held-out clips as ``snapkit predict`` would."""

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
        if backbone is not None:
            cache = EmbeddingCache.default(backbone.name, backbone.frontend_config, plan.augment, clip_samples)
            views, self.hashes, stats = compute_views(
                clips,
                template.features,
                cache,
                views_per_clip=plan.augment.views_per_clip if plan.augment.enabled else 1,
                backgrounds=self.backgrounds,
                seed=s.seed,
                progress=progress,
            )
            self.views = [torch.from_numpy(np.ascontiguousarray(v.features)) for v in views]
            self.heard = [v.heard for v in views]
            self.embedding_stats = str(stats)
            log(f"embeddings: {stats}")

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
                self._whole[i] = window_features(model, self.clips.waveforms[i])
            p, d = probabilities_from_features(model, self._whole[i])
            pooled.append(torch.from_numpy(p))
            decision.append(torch.from_numpy(d))
        model.train(was_training)
        return torch.stack(pooled), torch.stack(decision)

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

    def fold(self, train_idx: np.ndarray, val_idx: np.ndarray | None, *, views_per_epoch: int) -> FoldData:
        """The Lightning data module of one fit: training on ``train_idx``, validating on ``val_idx`` (if any)."""
        return FoldData(self, train_idx, val_idx, views_per_epoch=views_per_epoch)


class FoldData(L.LightningDataModule):
    """One fit's data: balanced training draws from the clips ``train_idx`` (views, or augmented waveforms) and the
    clean clips ``val_idx`` for validation (none: no validation loop).

    An epoch draws each outcome equally often. A head's step on cached features costs about a millisecond, so its
    epochs draw many views per clip: at one per clip, 60 epochs were 120 steps and left the head under-trained
    (clip probabilities near 0.3, 5-fold accuracy 0.5 with max pooling). Every fit of a run draws the same number
    of views (``views_per_epoch``, see snapkit.training.budget), so the folds estimate the final model's training.
    """

    def __init__(
        self, inputs: TrainingInputs, train_idx: np.ndarray, val_idx: np.ndarray | None, *, views_per_epoch: int
    ) -> None:
        super().__init__()
        self.inputs, self.train_idx, self.val_idx = inputs, train_idx, val_idx
        self.views_per_epoch = views_per_epoch

    def train_dataloader(self) -> DataLoader:
        s = self.inputs.plan.settings
        labels = [self.inputs.clips.labels[i] for i in self.train_idx]
        sampler = balanced_sampler(labels, num_samples=self.views_per_epoch, seed=s.seed)
        return DataLoader(self.inputs.dataset(self.train_idx, train=True), batch_size=s.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_idx is None or not len(self.val_idx):
            return []
        batch_size = self.inputs.plan.settings.batch_size
        return DataLoader(self.inputs.dataset(self.val_idx, train=False), batch_size=batch_size)
