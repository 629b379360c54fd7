"""The LightningModule that trains a ``SoundClassifier``: one shared step for train, val and test."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from snapkit.models.classifier import clip_softmax
from snapkit.training.metrics import single_labels, softmax_labels, target_labels

STAGES = ("train", "val", "test")
# Clip probabilities are clamped before the log in the loss: a saturated sigmoid must not give an infinite loss.
PROB_EPS = 1e-6


class SoundEventModule(L.LightningModule):
    """Trains the trainable part of ``model`` (ConvNet or head) on clip-level labels.

    Batches are ``(inputs, targets)``: ``inputs`` are waveforms ``[batch, samples]`` for the ConvNet (its log-mel
    front end runs here, then SpecAugment in training) or cached frame features ``[batch, frames, dim]`` for a head
    on a frozen backbone (``inputs_are_features``); ``targets`` are multi-hot ``[batch, classes]`` (all zero for
    background). The loss is binary cross-entropy on the clip probabilities pooled from per-frame outputs, plus,
    for a model with a clip head, cross-entropy of its softmax over the classes and background (both heads learn
    from every batch).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        inputs_are_features: bool,
        learning_rate: float,
        weight_decay: float,
        max_epochs: int,
        spec_augment: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "spec_augment"])
        self.model = model
        self.spec_augment = spec_augment
        outcomes = model.n_classes + 1  # + background
        for stage in STAGES:
            metrics = MetricCollection(
                {
                    "accuracy": MulticlassAccuracy(outcomes, average="micro"),
                    "macro_f1": MulticlassF1Score(outcomes, average="macro"),
                },
                prefix=f"{stage}/",
            )
            setattr(self, f"{stage}_metrics", metrics)

    def clip_probabilities(self, inputs: torch.Tensor, *, augment: bool = False) -> torch.Tensor:
        """Clip probabilities ``[batch, classes]`` of a batch of inputs (see class docstring): the clip head's
        where the model has one, else pooled frame probabilities."""
        pooled, clip_logits = self._outputs(inputs, augment=augment)
        return clip_softmax(clip_logits) if clip_logits is not None else pooled

    def _outputs(self, inputs: torch.Tensor, *, augment: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(pooled frame probabilities [batch, classes], clip head logits [batch, classes + 1] or None)``."""
        features = inputs if self.hparams.inputs_are_features else self.model.features(inputs)
        if augment and self.spec_augment is not None:
            features = self.spec_augment(features)
        frame_logits, att_logits, clip_logits = self.model.all_outputs(features)
        return self.model.clip_probs(frame_logits, att_logits), clip_logits

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        inputs, targets = batch
        pooled, clip_logits = self._outputs(inputs, augment=stage == "train")
        loss = F.binary_cross_entropy(pooled.clamp(PROB_EPS, 1 - PROB_EPS), targets)
        probs = pooled
        if clip_logits is not None:
            # Background is the last outcome; a clip with several sounds shares its target among them.
            outcome = torch.cat([targets, (targets.sum(dim=1, keepdim=True) == 0).to(targets.dtype)], dim=1)
            loss = loss + F.cross_entropy(clip_logits, outcome / outcome.sum(dim=1, keepdim=True))
            probs = clip_softmax(clip_logits)
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        labels = softmax_labels(probs.detach()) if clip_logits is not None else single_labels(probs.detach())
        metrics.update(labels, target_labels(targets))
        size = len(targets)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "test", batch_size=size)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=size)
        return loss

    def on_train_epoch_start(self) -> None:
        # Augmented views are drawn from (seed, epoch, index): tell the dataset which epoch it is, or every epoch
        # would replay the same augmentations whenever DataLoader workers are re-created.
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.clip_probabilities(batch[0])

    def configure_optimizers(self) -> dict[str, object]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay)
        # Cosine decay over the whole run: no schedule to tune, and the last epochs settle instead of bouncing.
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.hparams.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
