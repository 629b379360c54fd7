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
import os
import shutil
import signal
import threading
import time
import typing
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL, validate_label
from snapkit.dataset.scan import Dataset, scan_dataset
from snapkit.errors import DatasetError, SnapkitError
from snapkit.files import INCOMPLETE_MARKER, check_writable, disk_advice, jsonable, write_atomically
from snapkit.models.backbones.base import FrameEmbedder
from snapkit.models.backbones.registry import BACKBONES, load_backbone
from snapkit.models.bundle import ModelBundle
from snapkit.models.calibration import Calibration, ClassCalibration, check_budget
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import POOLINGS, ModelConfig
from snapkit.training import tensorboard as tb
from snapkit.training.augment import AugmentConfig, SpecAugment
from snapkit.training.budget import TrainBudget, fit_steps, measure_seconds_per_view, plan_budget
from snapkit.training.chance import check_chance, near_chance_sentence
from snapkit.training.data import (
    ClipSet,
    WaveformDataset,
    check_trainable,
    load_clipset,
    stratified_folds,
    stratified_split,
)
from snapkit.training.inputs import TrainingInputs
from snapkit.training.metrics import calibrate_thresholds, clip_report
from snapkit.training.module import SoundEventModule
from snapkit.training.profile import class_profiles
from snapkit.training.progress import RunProgress

BACKBONE_CHOICES = ("convnet", *BACKBONES)
# What check_run_folder writes to try the runs folder (bytes): enough to tell a full disk, not a model's size.
RUN_PROBE_BYTES = 1 << 16
# Lightning's --accelerator names snapkit passes through (cuda and tpu are Lightning's too).
ACCELERATORS = ("cpu", "gpu", "mps", "auto", "cuda", "tpu")


@dataclass(frozen=True)
class TrainSettings:
    """How to train. ``epochs``/``learning_rate`` of None pick the backbone's default (for the ConvNet, ``epochs``
    None means a budget of views that grows with the dataset, see ``snapkit.training.budget``)."""

    backbone: str = "convnet"
    epochs: int | None = None
    batch_size: int = 16
    learning_rate: float | None = None
    weight_decay: float = 1e-4
    seed: int = 0
    clip_s: float | None = None  # None: the plan picks it, see auto_clip_s
    pooling: str | None = None  # None: the backbone's default, see effective_pooling
    head_hidden: int = 0
    cv_below_clips: int = 10
    max_folds: int = 5
    val_fraction: float = 0.2
    background_label: str = DEFAULT_BACKGROUND_LABEL
    estimate: bool = True  # False: no cross-validation or held-out split, one model on all clips
    clip_head: bool = True  # a clip classifier on pooled features decides what a clip holds (ModelConfig.clip_head)
    # Wall-time limit of the whole run (every fold and the final model); None: none. The plan fits the ConvNet's
    # views into it from a measured cost per view, and training stops at it whatever happens.
    max_minutes: float | None = 5.0
    # The false-alarm budget the thresholds are chosen for on the dataset's recorded background audio (see
    # snapkit.detection.operating); None: thresholds calibrated on clips only.
    max_false_alarms_per_hour: float | None = 1.0
    # ConvNet only: future frames each block sees (None: symmetric, 3 for the 7-frame kernel); see
    # ModelConfig.convnet_future_frames. 1 lets the streaming detector decide 0.056 s after a moment instead of
    # 0.136 s. It is not the default: on 3 classes x 12 clips it scored better (event F1 0.923 vs 0.912, delay
    # median 0.271 vs 0.297 s), but on `make demo`'s data it never learnt snaps (held-out accuracy 0.70 vs 1.00,
    # 3 of 3 planted snaps missed): a 10 ms click needs the frames after it.
    convnet_future_frames: int | None = None

    def __post_init__(self) -> None:
        # Every setting a user can give is checked here, before a plan is printed or a folder made: one sentence
        # naming the option (as `snapkit train` spells it) and what it may be.
        if self.backbone not in BACKBONE_CHOICES:
            raise SnapkitError(f"--backbone {self.backbone!r} is unknown; choose one of {', '.join(BACKBONE_CHOICES)}.")
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise SnapkitError(f"--pooling {self.pooling!r} is unknown; choose one of {', '.join(POOLINGS)}.")
        if self.epochs is not None and self.epochs < 1:
            raise SnapkitError(f"--epochs must be a whole number of at least 1, not {self.epochs}.")
        if self.batch_size < 1:
            raise SnapkitError(f"The batch size must be a whole number of at least 1, not {self.batch_size}.")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise SnapkitError(f"The learning rate must be more than 0, not {self.learning_rate}.")
        if not self.weight_decay >= 0:
            raise SnapkitError(f"The weight decay must be 0 or more, not {self.weight_decay}.")
        if self.clip_s is not None and not self.clip_s > 0:
            raise SnapkitError(f"--clip-s must be more than 0 seconds, not {self.clip_s}.")
        if self.head_hidden < 0:
            raise SnapkitError(f"--head-hidden must be 0 (a linear head) or a number of units, not {self.head_hidden}.")
        try:
            validate_label(self.background_label)
        except SnapkitError as err:
            raise SnapkitError(f"--background-label: {err}") from None
        if not 0.0 < self.val_fraction < 1.0:
            raise SnapkitError(f"val_fraction must be between 0 and 1 (a share per class), not {self.val_fraction}.")
        if self.max_folds < 2 or self.cv_below_clips < 0:
            raise SnapkitError("max_folds must be at least 2 and cv_below_clips cannot be negative.")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise SnapkitError(f"--max-minutes must be more than 0 (minutes of training), not {self.max_minutes}.")
        if self.max_false_alarms_per_hour is not None:
            check_budget(self.max_false_alarms_per_hour)

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


def check_trainer_options(options: TrainerOptions) -> None:
    """Refuse Lightning flags that cannot work here, before a plan is printed: an unknown ``--accelerator``,
    ``--precision``, ``--strategy`` or ``--devices``, a GPU that is not there. Raises SnapkitError, one sentence
    naming the option and what it may be."""
    from lightning.pytorch.strategies import StrategyRegistry

    accelerator = options.accelerator.lower()
    if accelerator not in ACCELERATORS:
        raise SnapkitError(f"--accelerator {options.accelerator!r} is unknown; choose one of cpu, gpu, mps or auto.")
    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if (accelerator == "cuda" and not has_cuda) or (accelerator == "gpu" and not (has_cuda or has_mps)):
        raise SnapkitError(
            f"--accelerator {options.accelerator}: this machine has no GPU that PyTorch can use; train on the "
            "processor with --accelerator cpu (the default)."
        )
    if accelerator == "mps" and not has_mps:
        raise SnapkitError(
            "--accelerator mps: this machine has no Apple GPU (MPS) that PyTorch can use; train on the processor "
            "with --accelerator cpu (the default)."
        )
    precisions = _lightning_precisions()
    if options.precision is not None and options.precision not in precisions:
        raise SnapkitError(
            f"--precision {options.precision!r} is unknown; choose one of {', '.join(precisions)} (default: 32-true)."
        )
    strategies = ("auto", *StrategyRegistry.available_strategies())
    if options.strategy not in strategies:
        raise SnapkitError(
            f"--strategy {options.strategy!r} is unknown; choose auto, ddp, ddp_spawn, fsdp or another of "
            "Lightning's strategies."
        )
    devices = options.devices.strip()
    listed = [part.strip() for part in devices.split(",") if part.strip()]
    if devices != "auto" and devices != "-1" and not (listed and all(part.isdigit() for part in listed)):
        raise SnapkitError(
            f"--devices {options.devices!r} is not a device choice; give a count such as 2, a list of GPU numbers "
            "such as 0,1, or auto."
        )
    if devices.isdigit() and int(devices) < 1:
        raise SnapkitError("--devices 0 trains on nothing; give a count of at least 1, a list such as 0,1, or auto.")
    # What only Lightning knows (a list of GPUs on the CPU, a strategy whose package is missing): build a Trainer,
    # which checks these flags against the machine without training or writing anything.
    try:
        with _quiet_lightning(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(
                accelerator=options.accelerator,
                devices=options.devices,
                strategy=options.strategy,
                num_nodes=options.num_nodes,
                precision=options.precision,  # type: ignore[arg-type]
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
    except Exception as err:  # Lightning raises several kinds here (MisconfigurationException, ValueError, ...)
        flags = (
            f"--accelerator {options.accelerator} --devices {options.devices} --strategy {options.strategy}"
            + (f" --num-nodes {options.num_nodes}" if options.num_nodes != 1 else "")
            + (f" --precision {options.precision}" if options.precision else "")
        )
        reason = " ".join(str(err).split()).rstrip(".")
        raise SnapkitError(
            f"Lightning cannot train with {flags} on this machine ({reason}); change those options or leave them out."
        ) from None


def _lightning_precisions() -> tuple[str, ...]:
    """The --precision values this Lightning accepts, e.g. 16-mixed, bf16-mixed, 32-true, 64-true, 32."""
    try:
        from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
    except ImportError:  # a private name: should a later Lightning move it, fall back to the 2.x list
        return ("16-mixed", "bf16-mixed", "16-true", "bf16-true", "32-true", "64-true", "16", "bf16", "32", "64")
    return (*typing.get_args(_PRECISION_INPUT_STR), *typing.get_args(_PRECISION_INPUT_STR_ALIAS))


def check_run_folder(out_dir: Path) -> None:
    """Refuse a run folder that would mix this run with earlier results, or that cannot be written, before any
    work: ``out_dir`` must not exist, or be an empty folder, and its parent must take files."""
    out_dir = Path(out_dir)
    if (out_dir / "model.snapkit").exists():
        raise SnapkitError(
            f"{out_dir / 'model.snapkit'} already exists; choose another --out so no trained model is replaced."
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise SnapkitError(f"--out {out_dir} is a file; give a folder name for the run.")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise SnapkitError(
            f"The run folder {out_dir} already holds files; choose another --out (or empty it) so this run's results "
            "are not mixed with others."
        )
    # 64 KiB really written: a full disk is refused here, before the plan, rather than after it.
    check_writable(out_dir.parent, what="the runs folder", instead="choose another --out", size_bytes=RUN_PROBE_BYTES)


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
    budget: TrainBudget | None = None  # None: plan_training fills it in
    dataset: Dataset | None = field(default=None, repr=False)  # the scan the plan rests on; None: scanned again

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
            + f", {s.effective_pooling} pooling of per-frame outputs, {s.clip_s or CONVNET_CLIP_S:g} s clips",
            f"training: {self._work()}, batch {s.batch_size}, learning rate {s.effective_learning_rate:g},"
            f" seed {s.seed}, class-balanced sampling",
            f"quality estimate: {self.estimate}",
            *([f"time: {self.budget.describe()}"] if self.budget is not None else []),
            "augmentation: " + ("; ".join(self._augmentations()) if self.augment.enabled else "off"),
        ]
        return lines

    def _work(self) -> str:
        if self.budget is None:
            return f"{self.settings.effective_epochs} epochs"
        b = self.budget
        fits = f" in each of {b.fits} fits" if b.fits > 1 else ""
        return f"{b.views_per_fit:,} views{fits} ({b.epochs} epochs of {b.views_per_epoch})"

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
    calibration: Calibration  # per class: thresholds, band and pauses, as the bundle stores them
    seconds: float
    embedding_stats: str | None = None
    warnings: list[str] = field(default_factory=list)  # one sentence each: a near-chance model, a cut-short fit


def plan_training(
    data_dir: Path,
    out_dir: Path,
    settings: TrainSettings,
    augment: AugmentConfig | None = None,
    *,
    measure_speed: bool = True,
) -> TrainPlan:
    """Check the dataset and settle how training will go; raises ``SnapkitError`` for what cannot work.

    With ``measure_speed`` (ConvNet only) one batch is trained here, a second or two, so the plan can state how
    long the run will take and fit it into ``settings.max_minutes``.
    """
    check_run_folder(out_dir)
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
    augment = augment or AugmentConfig()
    if settings.is_head:
        # Cached views for a head mix only the user's own background clips (see AugmentConfig.mix_generated_noise).
        augment = replace(augment, mix_generated_noise=False)
    if settings.clip_s is None:
        sounds = [c.duration_s for c in dataset.readable if c.label != settings.background_label]
        settings = replace(settings, clip_s=auto_clip_s(settings.is_head, sounds))
    all_labels = [label for label, n in sorted(counts.items()) for _ in range(n)]
    train_clips = len(all_labels)
    if folds == 1:
        train_clips = len(stratified_split(all_labels, settings.val_fraction, settings.seed)[0])
    seconds_per_view = None
    if measure_speed and not settings.is_head:
        typical_s = float(np.median([c.duration_s for c in dataset.readable]))
        seconds_per_view = measure_seconds_per_view(
            _model_config(settings, classes), augment, settings.batch_size, typical_s, seed=settings.seed
        )
    budget = plan_budget(
        is_head=settings.is_head,
        train_clips=train_clips,
        fits=folds + 1 if folds >= 2 else 1,
        clips=len(all_labels),
        epochs=settings.epochs,
        default_epochs=settings.effective_epochs,
        seconds_per_view=seconds_per_view,
        max_minutes=settings.max_minutes,
    )
    return TrainPlan(
        data_dir=Path(data_dir),
        out_dir=Path(out_dir),
        settings=settings,
        augment=augment,
        classes=classes,
        counts=dict(counts),
        estimate=estimate,
        folds=folds,
        warnings=list(notes),
        budget=budget,
        dataset=dataset,
    )


# The ConvNet's training window, and the range of a head's (longer files are scored in windows this long).
CONVNET_CLIP_S = 2.0
HEAD_CLIP_S = (2.0, 10.0)


def auto_clip_s(is_head: bool, sound_durations_s: list[float]) -> float:
    """The training window when ``--clip-s`` is not given: 2 s for the ConvNet; for a head, the median length
    of the sound clips (to 0.5 s) within ``HEAD_CLIP_S``, so it learns from whole clips as it will score them.

    On real 5 s kitchen20 clips (20 classes, 5 a class, sfx-cnn9) a 5 s window scored 0.53 where 2 s scored 0.49:
    a 2 s window of a weakly labelled clip often misses the sound its label names.
    """
    if not is_head or not sound_durations_s:
        return CONVNET_CLIP_S
    low, high = HEAD_CLIP_S
    return float(min(max(round(float(np.median(sound_durations_s)) * 2) / 2, low), high))


def run_training(
    plan: TrainPlan,
    *,
    weights: Path | None = None,
    trainer_options: TrainerOptions | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Carry out ``plan``: writes ``model.snapkit``, ``metrics.json`` and TensorBoard logs into ``plan.out_dir``.

    Four steps: load the clips (and, for a head, their cached views); fit every cross-validation fold and the final
    model (:func:`_fit_all`); calibrate and report on the held-out clips (:func:`_assess`); save (:func:`_save`).

    The run is built in a hidden folder beside ``plan.out_dir`` (``.NAME.incomplete-...``, holding an
    ``INCOMPLETE`` marker) and renamed to ``plan.out_dir`` only once the model and its metrics are written. So Ctrl-C
    (KeyboardInterrupt, re-raised), an error or a full disk leave no run folder behind, and nothing that finds runs
    by their ``model.snapkit`` (``detect``, the workbench) can take a half-done run for a model.
    """
    out = Path(plan.out_dir)
    check_run_folder(out)
    staging = out.parent / f".{out.name}.incomplete-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        staging.mkdir(parents=True)
        (staging / INCOMPLETE_MARKER).write_text(
            f"snapkit train is building the run {out.name} here, or was stopped before it finished; this folder holds "
            "no finished model and can be deleted once no training runs.\n",
            encoding="utf-8",
        )
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise SnapkitError(
            f"Cannot create the run folder {out} ({err.strerror or err}): {disk_advice(err)}, or choose another --out."
        ) from None
    try:
        result = _train_into(plan, staging, weights, trainer_options or TrainerOptions(), log)
    except SnapkitError as err:
        shutil.rmtree(staging, ignore_errors=True)
        # Name files where the user will look for them (the run folder), not in the hidden folder that is gone.
        raise SnapkitError(str(err).replace(str(staging), str(out))) from err
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        where = f"{str(err.filename).replace(str(staging), str(out))}: " if err.filename else ""
        raise SnapkitError(
            f"Training stopped on a file error ({where}{err.strerror or err}): {disk_advice(err)}, then train again; "
            "nothing was saved."
        ) from None
    except BaseException:  # Ctrl-C, or a bug: no half-done run is left behind either way
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _move_into_place(result, staging, out)


def _move_into_place(result: TrainResult, staging: Path, out: Path) -> TrainResult:
    """Rename the finished run ``staging`` to ``out``; returns ``result`` with its paths in ``out``."""
    try:
        (staging / INCOMPLETE_MARKER).unlink()
        if out.is_dir():  # empty (check_run_folder): rename replaces an empty folder on Linux, not everywhere
            out.rmdir()
        os.rename(staging, out)
    except OSError as err:
        raise SnapkitError(
            f"The model is trained but could not be moved to {out} ({err.strerror or err}); it is complete in "
            f"{staging}: rename that folder to use it."
        ) from None
    return replace(
        result,
        bundle_path=out / result.bundle_path.name,
        metrics_path=out / result.metrics_path.name,
        tensorboard_dir=out / result.tensorboard_dir.name,
    )


def _train_into(
    plan: TrainPlan, out: Path, weights: Path | None, options: TrainerOptions, log: Callable[[str], None]
) -> TrainResult:
    """The run itself, written into the folder ``out``; see :func:`run_training`."""
    start = time.monotonic()
    s = plan.settings
    bundle_path = out / "model.snapkit"
    L.seed_everything(s.seed, workers=True, verbose=False)

    backbone = load_backbone(s.backbone, weights) if s.is_head else None
    config = _model_config(s, plan.classes)
    template = SoundClassifier(config, backbone)
    dataset = plan.dataset or scan_dataset(plan.data_dir, background_label=s.background_label)
    clips = load_clipset(dataset, template.sample_rate_hz, progress=options.progress_bar)
    if clips.skipped:
        # A clip deleted or changed since the scan: the plan (classes, folds, time) no longer describes the data.
        raise DatasetError(
            f"{len(clips.skipped)} clip(s) could not be read any more after training was planned (first: "
            f"{clips.skipped[0].rstrip('.')}); nothing was trained, so run `snapkit train` again."
        )
    clip_samples = round((s.clip_s or CONVNET_CLIP_S) * template.sample_rate_hz)
    inputs = TrainingInputs(plan, clips, template, backbone, clip_samples, log, progress=options.progress_bar)
    pace = _Pace(plan, start, log, plain_lines=not options.progress_bar)

    final, held = _fit_all(inputs, config, backbone, out / "tensorboard", options, pace, log)
    thresholds, report = _assess(plan, config, clips, final, held)
    notes = list(pace.notes)
    if held is not None and "accuracy" in report:
        # Never silently: a model no better than always answering one class is still saved (it was asked for),
        # but the user, metrics.json and the bundle all say so.
        scored = [int(i) for i in held.indices if not clips.generated[int(i)]]  # the clips the accuracy counts
        chance = check_chance(float(report["accuracy"]), [clips.labels[i] for i in scored])
        report["chance"] = chance.to_dict()
        if chance.near_chance:
            notes.append(near_chance_sentence(chance, s.backbone, plan.estimate))
    report["time"] = pace.summary(time.monotonic() - start)
    report["warnings"] = notes
    if final.logger is not None:
        _log_augmented_examples(final.logger.experiment, plan, clips, template, clip_samples)

    # The bundle's calibration: each class's thresholds with what its clips measured (band, pauses).
    profiles = class_profiles(clips.waveforms, clips.labels, clips.sample_rate_hz, s.background_label)
    calibration = {
        label: replace(entry, band_hz=profiles[label].band_hz, pause_s=profiles[label].pause_s)
        if label in profiles
        else entry
        for label, entry in thresholds.items()
    }
    calibration = _fit_budget(plan, out, config, clips, inputs.backgrounds, final, calibration, report, notes, log)
    seconds = time.monotonic() - start
    metrics_path = _save(plan, final.model.eval(), config, calibration, report, seconds, bundle_path)
    return TrainResult(
        bundle_path=bundle_path,
        metrics_path=metrics_path,
        tensorboard_dir=out / "tensorboard",
        report=report,
        calibration=calibration,
        seconds=seconds,
        embedding_stats=inputs.embedding_stats,
        warnings=notes,
    )


@dataclass(frozen=True)
class _HeldOut:
    """What the models that never saw them made of the held-out clips, scored whole as ``snapkit predict`` and
    ``evaluate`` will score a user's clips, so the estimate and the thresholds describe what the user gets.

    ``indices`` ``[n]`` into the clips; ``pooled`` ``[n, classes]`` pooled frame probabilities (the detector's
    thresholds); ``decision`` ``[n, classes]`` decision probabilities (the clip decision and the estimate)."""

    indices: np.ndarray
    pooled: torch.Tensor
    decision: torch.Tensor


def _fit_all(
    inputs: TrainingInputs,
    config: ModelConfig,
    backbone: FrameEmbedder | None,
    tb_dir: Path,
    options: TrainerOptions,
    pace: _Pace,
    log: Callable[[str], None],
) -> tuple[SoundEventModule, _HeldOut | None]:
    """Every fit of the plan: k folds then a final model on all clips, a held-out split, or one model on all clips
    (no estimate). Returns the final model and the held-out scores (None without an estimate)."""
    plan, s = inputs.plan, inputs.plan.settings
    labels = np.asarray(inputs.clips.labels)
    everything = np.arange(len(labels))
    if plan.folds >= 2:
        pooled, decision = torch.zeros_like(inputs.targets), torch.zeros_like(inputs.targets)
        for k, (train_idx, test_idx) in enumerate(stratified_folds(labels, plan.folds, s.seed), start=1):
            log(f"fold {k}/{plan.folds}: training on {len(train_idx)} clips, testing on {len(test_idx)}")
            module = _fit(inputs, config, backbone, train_idx, None, f"fold-{k}", tb_dir, options, pace)
            pooled[test_idx], decision[test_idx] = inputs.score_whole(module.model, test_idx)
        log(f"final model: training on all {len(labels)} clips")
        final = _fit(inputs, config, backbone, everything, None, "final", tb_dir, options, pace)
        return final, _HeldOut(everything, pooled, decision)
    if plan.folds == 1:
        train_idx, val_idx = stratified_split(labels, s.val_fraction, s.seed)
        final = _fit(inputs, config, backbone, train_idx, val_idx, "final", tb_dir, options, pace)
        return final, _HeldOut(val_idx, *inputs.score_whole(final.model, val_idx))
    return _fit(inputs, config, backbone, everything, None, "final", tb_dir, options, pace), None


def _assess(
    plan: TrainPlan, config: ModelConfig, clips: ClipSet, final: SoundEventModule, held: _HeldOut | None
) -> tuple[dict[str, ClassCalibration], dict[str, Any]]:
    """Thresholds calibrated on the held-out clips and the report of how they were classified (logged to
    TensorBoard too); the default thresholds and no figures without held-out clips."""
    classes = plan.classes
    if held is None:
        empty = torch.zeros(0, len(classes))
        return calibrate_thresholds(empty, empty, classes), {"estimate": plan.estimate}
    targets = torch.as_tensor(clips.targets())[held.indices]
    thresholds = calibrate_thresholds(held.pooled, targets, classes)
    # The estimate is of the user's own clips: generated stand-in noise is trivially told from a sound, and
    # counting it made the estimate 0.05-0.09 too high on real kitchen20 episodes.
    recorded = torch.as_tensor([not clips.generated[int(i)] for i in held.indices])
    report = clip_report(
        held.decision[recorded],
        targets[recorded],
        classes,
        plan.settings.background_label,
        [thresholds[c].on for c in classes],
        background_is_rest=config.clip_head,
    )
    report["estimate"] = plan.estimate
    writer = final.logger.experiment if final.logger is not None else None
    if writer is not None:
        tb.log_confusion_matrix(writer, report["confusion_matrix"], report["classes"])
        tb.log_pr_curves(writer, held.decision, targets, classes)
    return thresholds, report


def _fit_budget(
    plan: TrainPlan,
    out: Path,
    config: ModelConfig,
    clips: ClipSet,
    backgrounds: list[int],
    final: SoundEventModule,
    calibration: Calibration,
    report: dict[str, Any],
    notes: list[str],
    log: Callable[[str], None],
) -> Calibration:
    """``snapkit calibrate``'s step, when the dataset has recorded background audio: each class's threshold for the
    false-alarm budget (never lowered on a few minutes of background), the curves to TensorBoard and
    ``calibration.png``, the table into the report. Returns the calibration to save."""
    from snapkit.detection.operating import calibrate_to_budget, log_curves, write_curve_png

    budget = plan.settings.max_false_alarms_per_hour
    if budget is None or not backgrounds:
        return calibration
    rate = clips.sample_rate_hz
    seconds = sum(len(clips.waveforms[i]) for i in backgrounds) / rate
    log(f"false-alarm budget {budget:g}/h: scoring {seconds / 60:.1f} min of background and the clips")
    probe = ModelBundle(model=final.model.eval(), config=config, calibration=calibration)
    positives = {
        label: [
            w
            for w, own, gen in zip(clips.waveforms, clips.labels, clips.generated, strict=True)
            if own == label and not gen
        ]
        for label in plan.classes
    }
    result = calibrate_to_budget(
        probe,
        [clips.waveforms[i] for i in backgrounds],
        positives,
        max_false_alarms_per_hour=budget,
        seed=plan.settings.seed,
    )
    report["false_alarm_budget"] = {"max_false_alarms_per_hour": budget, "table": result.table()}
    notes.extend(result.notes)
    if final.logger is not None:
        log_curves(final.logger.experiment, result.calibration)
    write_curve_png(result.calibration, out / "calibration.png")
    return result.calibration


def _save(
    plan: TrainPlan,
    model: SoundClassifier,
    config: ModelConfig,
    calibration: Calibration,
    report: dict[str, Any],
    seconds: float,
    bundle_path: Path,
) -> Path:
    """Write the bundle and ``metrics.json`` beside it; returns the metrics path."""
    s = plan.settings
    training_info = {
        "settings": asdict(s),
        "augment": plan.augment.to_dict(),
        "counts": plan.counts,
        "report": report,
        "seconds": seconds,
        "data_dir": str(plan.data_dir),
    }
    ModelBundle(model=model, config=config, calibration=calibration, training=jsonable(training_info)).save(bundle_path)
    metrics = {
        **report,
        "calibration": {label: entry.to_dict() for label, entry in calibration.items()},
        "seconds": seconds,
        "counts": plan.counts,
        "backbone": s.backbone,
    }
    return write_atomically(bundle_path.parent / "metrics.json", json.dumps(jsonable(metrics), indent=2))


def _model_config(s: TrainSettings, classes: tuple[str, ...]) -> ModelConfig:
    return ModelConfig(
        backbone=s.backbone,
        labels=classes,
        background_label=s.background_label,
        clip_s=s.clip_s or CONVNET_CLIP_S,
        pooling=s.effective_pooling,
        head_hidden=s.head_hidden,
        convnet_future_frames=s.convnet_future_frames if not s.is_head else None,
        clip_head=s.clip_head,
    )


def _fit(
    inputs: TrainingInputs,
    config: ModelConfig,
    backbone: FrameEmbedder | None,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None,
    name: str,
    tb_dir: Path,
    options: TrainerOptions,
    pace: _Pace,
) -> SoundEventModule:
    from lightning.pytorch.loggers import TensorBoardLogger

    s = inputs.plan.settings
    model = SoundClassifier(config, backbone)
    spec = SpecAugment.from_config(inputs.plan.augment) if (not s.is_head and inputs.plan.augment.enabled) else None
    module = SoundEventModule(
        model,
        inputs_are_features=s.is_head,
        learning_rate=s.effective_learning_rate,
        weight_decay=s.weight_decay,
        max_epochs=pace.budget.epochs,
        spec_augment=spec,
    )
    data = inputs.fold(train_idx, val_idx, views_per_epoch=pace.budget.views_per_epoch)
    logger = TensorBoardLogger(save_dir=str(tb_dir), name="", version=name, default_hp_metric=False)
    # No Lightning checkpoints: nothing resumes from them (the bundle is the one output, written once training ends),
    # and each carried the whole model, 19 MB with a frozen sfx-cnn9, several per run.
    callbacks = pace.callbacks(name)
    with _quiet_lightning():
        trainer = L.Trainer(
            max_epochs=pace.budget.epochs,
            max_time=pace.fit_time_limit(),
            accelerator=options.accelerator,
            devices=options.devices,
            strategy=options.strategy,
            num_nodes=options.num_nodes,
            precision=options.precision,
            logger=logger,
            callbacks=callbacks,
            enable_checkpointing=False,
            enable_progress_bar=options.progress_bar,
            enable_model_summary=False,
            log_every_n_steps=1,
            num_sanity_val_steps=0,
        )
        _fit_interruptibly(trainer, module, data)
    pace.fit_done(name, trainer.global_step, s.batch_size)
    return module


def _fit_interruptibly(trainer: L.Trainer, module: SoundEventModule, data: L.LightningDataModule) -> None:
    """``trainer.fit``, with Ctrl-C raised as KeyboardInterrupt. Lightning 2.x catches Ctrl-C itself, ignores SIGINT
    from then on and ends the process with ``sys.exit(1)``: snapkit would stop without a word, with exit code 1, and
    a second Ctrl-C would do nothing. The SIGINT handler is put back too."""
    in_main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if in_main else None
    try:
        trainer.fit(module, datamodule=data)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
    if trainer.interrupted:
        raise KeyboardInterrupt


class _Pace:
    """Run-wide pacing of the fits: the time limit shared among the fits still to come, the plain progress lines
    (when no terminal progress bar is drawn), and a note for every fit the limit cut short."""

    def __init__(self, plan: TrainPlan, start_s: float, log: Callable[[str], None], *, plain_lines: bool) -> None:
        s = plan.settings
        self.plan, self.start_s = plan, start_s
        self.budget = plan.budget or plan_budget(
            is_head=s.is_head,
            train_clips=sum(plan.counts.values()),
            fits=plan.folds + 1 if plan.folds >= 2 else 1,
            clips=sum(plan.counts.values()),
            epochs=s.epochs,
            default_epochs=s.effective_epochs,
            seconds_per_view=None,
            max_minutes=s.max_minutes,
        )
        self.fits_left = self.budget.fits
        self.progress = RunProgress(self.budget.fits * self.budget.views_per_fit, log) if plain_lines else None
        self.notes: list[str] = []
        self.cut: list[tuple[str, int, int]] = []  # (fit, steps taken, steps planned) of fits the limit cut short

    def fit_time_limit(self) -> timedelta | None:
        """This fit's share of the time left before ``max_minutes``, or None without a limit."""
        if not self.plan.settings.max_minutes:
            return None
        left_s = self.plan.settings.max_minutes * 60.0 - (time.monotonic() - self.start_s)
        # At least a second: Lightning takes 0 as "no limit", and a fit must take one step to give a model.
        return timedelta(seconds=max(1.0, left_s / max(1, self.fits_left)))

    def callbacks(self, name: str) -> list[L.Callback]:
        if self.progress is None:
            return []
        k = name.removeprefix("fold-")
        shown = f"fold {k}/{self.plan.folds}" if k != name else ("final model" if self.plan.folds >= 2 else "training")
        return [self.progress.callback(shown, self.budget.views_per_epoch)]

    def fit_done(self, name: str, steps: int, batch_size: int) -> None:
        self.fits_left -= 1
        planned = fit_steps(self.budget, batch_size)
        if steps < planned:
            self.cut.append((name, steps, planned))
        if self.cut:
            # One sentence for the run, however many of its fits the limit cut short.
            names = ", ".join(f"{n} ({done} of {want} steps)" for n, done, want in self.cut)
            self.notes[:] = [
                f"The --max-minutes limit ({self.plan.settings.max_minutes:g} min) cut training short in {names},"
                " so the model may be weaker; raise --max-minutes to train fully."
            ]

    def summary(self, seconds: float) -> dict[str, object]:
        """What metrics.json records about time: the plan's estimate beside what the run took."""
        b = self.budget
        return {
            "seconds": seconds,
            "estimated_s": b.estimated_s,
            "seconds_per_view": b.seconds_per_view,
            "max_minutes": b.max_minutes,
            "fits": b.fits,
            "views_per_fit": b.views_per_fit,
            "wanted_views_per_fit": b.wanted_views_per_fit,
            "capped": b.capped,
            "stopped_early": bool(self.notes),
        }


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
            warnings.filterwarnings("ignore", message=".*Total length of `list` across ranks is zero.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for logger, level in zip(chatty, levels, strict=True):
            logger.setLevel(level)
