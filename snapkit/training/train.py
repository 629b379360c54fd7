"""``snapkit train`` as a library call: plan, estimate quality on held-out clips, calibrate, fit, save a bundle.

With few clips a single split lies, so under ``cv_below_clips`` clips in the smallest class the quality figures
and the thresholds come from k-fold cross-validation (every clip predicted once by a model that never saw it),
then a final model is fitted on all clips. With more clips a stratified held-out split does both jobs and the
model trained on the rest is the one saved.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL
from snapkit.dataset.scan import scan_dataset
from snapkit.errors import SnapkitError
from snapkit.models.backbones import BACKBONES, FrameEmbedder, load_backbone
from snapkit.models.bundle import ModelBundle
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import ModelConfig
from snapkit.training import tensorboard as tb
from snapkit.training.augment import AugmentConfig, SpecAugment
from snapkit.training.cache import EmbeddingCache, FeatureDataset, compute_views
from snapkit.training.data import (
    ClipSet,
    WaveformDataset,
    balanced_sampler,
    check_trainable,
    load_clipset,
    stratified_folds,
    stratified_split,
)
from snapkit.training.metrics import calibrate_thresholds, clip_report
from snapkit.training.module import SoundEventModule
from snapkit.training.profile import class_profiles

BACKBONE_CHOICES = ("convnet", *BACKBONES)


@dataclass(frozen=True)
class TrainSettings:
    """How to train. ``epochs``/``learning_rate`` of None pick the backbone's default."""

    backbone: str = "convnet"
    epochs: int | None = None
    batch_size: int = 16
    learning_rate: float | None = None
    weight_decay: float = 1e-4
    seed: int = 0
    clip_s: float = 2.0
    pooling: str | None = None  # None: the backbone's default, see effective_pooling
    head_hidden: int = 0
    cv_below_clips: int = 10
    max_folds: int = 5
    val_fraction: float = 0.2
    background_label: str = DEFAULT_BACKGROUND_LABEL
    estimate: bool = True  # False: no cross-validation or held-out split, one model on all clips
    # ConvNet only: future frames each block sees (None: symmetric, 3 for the 7-frame kernel); see
    # ModelConfig.convnet_future_frames. 1 lets the streaming detector decide 0.056 s after a moment instead of
    # 0.136 s. It is not the default: on 3 classes x 12 clips it scored better (event F1 0.923 vs 0.912, delay
    # median 0.271 vs 0.297 s), but on `make demo`'s data it never learnt snaps (held-out accuracy 0.70 vs 1.00,
    # 3 of 3 planted snaps missed): a 10 ms click needs the frames after it.
    convnet_future_frames: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise SnapkitError(f"val_fraction must be between 0 and 1 (a share per class), not {self.val_fraction}.")
        if self.max_folds < 2 or self.cv_below_clips < 0:
            raise SnapkitError("max_folds must be at least 2 and cv_below_clips cannot be negative.")

    @property
    def is_head(self) -> bool:
        return self.backbone != "convnet"

    @property
    def effective_epochs(self) -> int:
        # 60 for the ConvNet too: max pooling passes gradient through one frame per clip, and at 30 epochs a
        # model missed every snap in a generated stream (event F1 0.51 -> 0.88 at 6-10 dB SNR with 60).
        return self.epochs or (30 if self.is_head else 60)

    @property
    def effective_pooling(self) -> str:
        """Max pooling for every model: every frame of a background clip must stay low, so per-frame outputs, which
        the detector reads, localise events. Attention pooling leaves the frames it ignores unconstrained: its
        frame probabilities sit near 1 in background. Measured on generated streams (4 classes, 6-20 dB SNR, event
        F1 at a 200 ms collar): ConvNet 0.95 max vs 0.22 attention; sfx-cnn9 head 0.90 max vs 0.17 attention, both
        heads at 1.0 held-out clip accuracy."""
        return self.pooling or "max"

    @property
    def effective_learning_rate(self) -> float:
        return self.learning_rate or (1e-3 if self.is_head else 3e-3)


@dataclass(frozen=True)
class TrainerOptions:
    """Lightning's own hardware flags, passed through so one command scales to GPUs and nodes (DDP)."""

    accelerator: str = "cpu"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str | None = None
    progress_bar: bool = True


@dataclass
class TrainPlan:
    data_dir: Path
    out_dir: Path
    settings: TrainSettings
    augment: AugmentConfig
    classes: tuple[str, ...]
    counts: dict[str, int]
    estimate: str
    folds: int
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        """Lines for the plan printout, before anything slow happens."""
        s = self.settings
        lines = [
            f"data: {self.data_dir}  ->  {self.out_dir}",
            "classes: "
            + ", ".join(f"{label} ({self.counts[label]})" for label in self.classes)
            + (f"; {s.background_label} ({self.counts.get(s.background_label, 0)})"),
            f"model: {s.backbone}"
            + (
                " (frozen) + " + ("linear head" if not s.head_hidden else f"{s.head_hidden}-unit head")
                if s.is_head
                else " from scratch"
            )
            + f", {s.effective_pooling} pooling of per-frame outputs, {s.clip_s:g} s clips",
            f"training: {s.effective_epochs} epochs, batch {s.batch_size}, learning rate {s.effective_learning_rate:g},"
            f" seed {s.seed}, class-balanced sampling",
            f"quality estimate: {self.estimate}",
            "augmentation: " + ("; ".join(self._augmentations()) if self.augment.enabled else "off"),
        ]
        return lines

    def _augmentations(self) -> list[str]:
        # SpecAugment acts on the ConvNet's log-mel input; cached views exist only for frozen-backbone heads.
        skip = "SpecAugment" if self.settings.is_head else "cached views"
        return [line for line in self.augment.describe() if skip not in line]


@dataclass
class TrainResult:
    bundle_path: Path
    metrics_path: Path
    tensorboard_dir: Path
    report: dict[str, object]
    thresholds: dict[str, dict[str, float]]
    seconds: float
    embedding_stats: str | None = None


def plan_training(
    data_dir: Path, out_dir: Path, settings: TrainSettings, augment: AugmentConfig | None = None
) -> TrainPlan:
    """Check the dataset and settle how training will go; raises ``SnapkitError`` for what cannot work."""
    if settings.backbone not in BACKBONE_CHOICES:
        raise SnapkitError(f"--backbone {settings.backbone!r} is unknown; choose one of {', '.join(BACKBONE_CHOICES)}.")
    dataset = scan_dataset(data_dir, background_label=settings.background_label)
    notes = check_trainable(dataset)
    counts = Counter(c.label for c in dataset.readable)
    classes = tuple(sorted(label for label in counts if label != settings.background_label))
    smallest = min(counts.values())
    if not settings.estimate:
        folds, estimate = 0, "none (asked for): one model on all clips, default thresholds"
    elif smallest < settings.cv_below_clips:
        folds = max(2, min(settings.max_folds, smallest))
        estimate = (
            f"{folds}-fold cross-validation (smallest class has {smallest} clips < {settings.cv_below_clips}),"
            " then a final model on all clips"
        )
        if smallest < 2:
            folds, estimate = 0, "none (a class has a single clip; record more to get an estimate)"
    else:
        folds = 1
        estimate = f"held-out {settings.val_fraction:.0%} of each class"
    return TrainPlan(
        data_dir=Path(data_dir),
        out_dir=Path(out_dir),
        settings=settings,
        augment=augment or AugmentConfig(),
        classes=classes,
        counts=dict(counts),
        estimate=estimate,
        folds=folds,
        warnings=list(notes),
    )


def run_training(
    plan: TrainPlan,
    *,
    weights: Path | None = None,
    trainer_options: TrainerOptions | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Carry out ``plan``: writes ``model.snapkit``, ``metrics.json`` and TensorBoard logs into ``plan.out_dir``."""
    start = time.monotonic()
    s, options = plan.settings, trainer_options or TrainerOptions()
    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    bundle_path = out / "model.snapkit"
    if bundle_path.exists():
        raise SnapkitError(f"{bundle_path} already exists; choose another --out so no trained model is replaced.")
    L.seed_everything(s.seed, workers=True, verbose=False)

    backbone = load_backbone(s.backbone, weights) if s.is_head else None
    config = ModelConfig(
        backbone=s.backbone,
        labels=plan.classes,
        background_label=s.background_label,
        clip_s=s.clip_s,
        pooling=s.effective_pooling,
        head_hidden=s.head_hidden,
        convnet_future_frames=s.convnet_future_frames if not s.is_head else None,
    )
    template = SoundClassifier(config, backbone)
    rate = template.sample_rate_hz
    dataset = scan_dataset(plan.data_dir, background_label=s.background_label)
    clips = load_clipset(dataset, rate, progress=options.progress_bar)
    clip_samples = round(s.clip_s * rate)
    targets = torch.as_tensor(clips.targets())
    labels = np.asarray(clips.labels)

    inputs = _Inputs(plan, clips, template, backbone, clip_samples, log, progress=options.progress_bar)
    tb_dir = out / "tensorboard"

    held_probs: torch.Tensor | None = None
    held_idx: np.ndarray | None = None
    if plan.folds >= 2:
        held_probs = torch.zeros_like(targets)
        for k, (train_idx, test_idx) in enumerate(stratified_folds(labels, plan.folds, s.seed), start=1):
            log(f"fold {k}/{plan.folds}: training on {len(train_idx)} clips, testing on {len(test_idx)}")
            module = _fit(inputs, config, backbone, train_idx, None, f"fold-{k}", tb_dir, options)
            held_probs[test_idx] = _predict(module, inputs.dataset(test_idx, train=False), options)
        held_idx = np.arange(len(labels))
        log(f"final model: training on all {len(labels)} clips")
        final = _fit(inputs, config, backbone, np.arange(len(labels)), None, "final", tb_dir, options)
    elif plan.folds == 1:
        train_idx, val_idx = stratified_split(labels, s.val_fraction, s.seed)
        final = _fit(inputs, config, backbone, train_idx, val_idx, "final", tb_dir, options)
        held_probs = _predict(final, inputs.dataset(val_idx, train=False), options)
        held_idx = val_idx
    else:
        final = _fit(inputs, config, backbone, np.arange(len(labels)), None, "final", tb_dir, options)

    if held_probs is not None and held_idx is not None:
        held_targets = targets[held_idx]
        thresholds = calibrate_thresholds(held_probs, held_targets, plan.classes)
        report = clip_report(
            held_probs, held_targets, plan.classes, s.background_label, [thresholds[c].on for c in plan.classes]
        )
        report["estimate"] = plan.estimate
        writer = final.logger.experiment if final.logger is not None else None
        if writer is not None:
            tb.log_confusion_matrix(writer, report["confusion_matrix"], report["classes"])
            tb.log_pr_curves(writer, held_probs, held_targets, plan.classes)
    else:
        thresholds = calibrate_thresholds(
            torch.zeros(0, len(plan.classes)), torch.zeros(0, len(plan.classes)), plan.classes
        )
        report = {"estimate": plan.estimate}

    if final.logger is not None:
        _log_augmented_examples(final.logger.experiment, plan, clips, template, clip_samples)
    model = final.model.eval()
    threshold_dict = {label: t.to_dict() for label, t in thresholds.items()}
    seconds = time.monotonic() - start
    profiles = class_profiles(clips.waveforms, clips.labels, clips.sample_rate_hz, s.background_label)
    training_info = {
        "class_profiles": {label: profile.to_dict() for label, profile in profiles.items()},
        "settings": asdict(s),
        "augment": plan.augment.to_dict(),
        "counts": plan.counts,
        "report": report,
        "seconds": seconds,
        "data_dir": str(plan.data_dir),
    }
    ModelBundle(model=model, config=config, thresholds=threshold_dict, training=_jsonable(training_info)).save(
        bundle_path
    )
    metrics_path = out / "metrics.json"
    metrics_path.write_text(
        json.dumps(
            _jsonable(
                {
                    **report,
                    "thresholds": threshold_dict,
                    "seconds": seconds,
                    "counts": plan.counts,
                    "backbone": s.backbone,
                }
            ),
            indent=2,
        )
    )
    return TrainResult(
        bundle_path=bundle_path,
        metrics_path=metrics_path,
        tensorboard_dir=tb_dir,
        report=report,
        thresholds=threshold_dict,
        seconds=seconds,
        embedding_stats=inputs.embedding_stats,
    )


class _Inputs:
    """What a fit trains on: augmented waveforms (ConvNet) or cached views of frozen features (heads)."""

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
        self.backgrounds = [
            w for w, label in zip(clips.waveforms, clips.labels, strict=True) if label == s.background_label
        ]
        self.targets = torch.as_tensor(clips.targets())
        self.embedding_stats: str | None = None
        self.views: list[torch.Tensor] | None = None
        if backbone is not None:
            cache = EmbeddingCache.default(backbone.name, backbone.frontend_config, plan.augment, clip_samples)
            views, stats = compute_views(
                clips,
                template.features,
                cache,
                views_per_clip=plan.augment.views_per_clip if plan.augment.enabled else 1,
                backgrounds=self.backgrounds,
                seed=s.seed,
                progress=progress,
            )
            self.views = views
            self.embedding_stats = str(stats)
            log(f"embeddings: {stats}")

    def dataset(self, indices: np.ndarray, *, train: bool) -> Dataset:
        if self.views is not None:
            return FeatureDataset([self.views[i] for i in indices], self.targets[indices], train=train)
        # backgrounds=None: mix only background clips of this subset, so a fold never hears its test audio.
        return WaveformDataset(
            self.clips.subset(indices),
            self.clip_samples,
            train=train,
            augment=self.plan.augment,
            backgrounds=None,
            seed=self.plan.settings.seed,
        )


def _fit(
    inputs: _Inputs,
    config: ModelConfig,
    backbone: FrameEmbedder | None,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None,
    name: str,
    tb_dir: Path,
    options: TrainerOptions,
) -> SoundEventModule:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    s = inputs.plan.settings
    model = SoundClassifier(config, backbone)
    spec = SpecAugment.from_config(inputs.plan.augment) if (not s.is_head and inputs.plan.augment.enabled) else None
    module = SoundEventModule(
        model,
        inputs_are_features=s.is_head,
        learning_rate=s.effective_learning_rate,
        weight_decay=s.weight_decay,
        max_epochs=s.effective_epochs,
        spec_augment=spec,
    )
    labels = [inputs.clips.labels[i] for i in train_idx]
    # An epoch draws each outcome equally often. A head's step on cached features costs about a millisecond, so
    # its epochs draw 16 views per clip (30 epochs): at one per clip, 60 epochs were 120 steps and left the head
    # under-trained (clip probabilities near 0.3, 5-fold accuracy 0.5 with max pooling).
    per_epoch = max(len(train_idx) * (16 if s.is_head else 1), 32)
    sampler = balanced_sampler(labels, num_samples=per_epoch, seed=s.seed)
    train_loader = DataLoader(inputs.dataset(train_idx, train=True), batch_size=s.batch_size, sampler=sampler)
    val_loader = (
        DataLoader(inputs.dataset(val_idx, train=False), batch_size=s.batch_size)
        if val_idx is not None and len(val_idx)
        else None
    )
    logger = TensorBoardLogger(save_dir=str(tb_dir), name="", version=name, default_hp_metric=False)
    # Only the final fit is checkpointed, every 10 epochs: a head's checkpoint carries the frozen backbone (20 MB
    # for sfx-cnn9), and writing one per epoch of every fold dominated training time.
    callbacks = (
        [
            ModelCheckpoint(
                dirpath=str(inputs.plan.out_dir / "checkpoints"), save_last=True, save_top_k=0, every_n_epochs=10
            )
        ]
        if name == "final"
        else []
    )
    with _quiet_lightning():
        trainer = L.Trainer(
            max_epochs=s.effective_epochs,
            accelerator=options.accelerator,
            devices=options.devices,
            strategy=options.strategy,
            num_nodes=options.num_nodes,
            precision=options.precision,
            logger=logger,
            callbacks=callbacks,
            enable_progress_bar=options.progress_bar,
            enable_model_summary=False,
            log_every_n_steps=1,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, train_loader, val_loader)
    if trainer.interrupted:
        raise KeyboardInterrupt
    return module


def _log_augmented_examples(
    writer: object, plan: TrainPlan, clips: ClipSet, template: SoundClassifier, clip_samples: int, count: int = 4
) -> None:
    """A few training views as TensorBoard images: what the model is shown after augmentation, as log-mel."""
    from snapkit.features.frontend import LogMel

    dataset = WaveformDataset(
        clips, clip_samples, train=plan.augment.enabled, augment=plan.augment, seed=plan.settings.seed
    )
    picks = np.linspace(0, len(clips.labels) - 1, num=min(count, len(clips.labels))).round().astype(int)
    waves = torch.stack([dataset[int(i)][0] for i in picks])
    with torch.no_grad():
        specs = LogMel(template.frontend_config)(waves)
        if not plan.settings.is_head and plan.augment.enabled:
            specs = SpecAugment.from_config(plan.augment).train()(specs)
    tb.log_spectrograms(writer, "augmented_views", specs)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Keep Lightning's start-up chatter and the warnings that do not apply here off the user's terminal."""
    # "GPU available", the cloud-logging tip, "max_epochs reached" are INFO records of these two loggers.
    chatty = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in chatty]
    for logger in chatty:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Clips are already in memory: DataLoader workers would only add start-up time.
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            # The frozen backbone is in eval mode on purpose (its BatchNorm must keep pretrained statistics).
            warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
            # Cross-validation folds train without a validation set on purpose.
            warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for logger, level in zip(chatty, levels, strict=True):
            logger.setLevel(level)


def _predict(module: SoundEventModule, dataset: Dataset, options: TrainerOptions) -> torch.Tensor:
    module.eval()
    loader = DataLoader(dataset, batch_size=32)
    with torch.no_grad():
        return torch.cat([module.clip_probabilities(inputs) for inputs, _ in loader])


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value
