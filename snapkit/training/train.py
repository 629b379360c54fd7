"""``snapkit train`` as a library call: plan, estimate quality on held-out clips, calibrate, fit, save a bundle.

With few clips a single split lies, so under ``cv_below_clips`` clips in the smallest class the quality figures
and the thresholds come from k-fold cross-validation (every clip predicted once by a model that never saw it),
then a final model is fitted on all clips. With more clips a stratified held-out split does both jobs and the
model trained on the rest is the one saved.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from snapkit.dataset.scan import Dataset, scan_dataset
from snapkit.errors import DatasetError, SnapkitError
from snapkit.files import INCOMPLETE_MARKER, check_writable, disk_advice, jsonable, write_atomically
from snapkit.models.backbones.base import FrameEmbedder
from snapkit.models.backbones.registry import load_backbone
from snapkit.models.bundle import ModelBundle
from snapkit.models.calibration import Calibration, ClassCalibration
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import ModelConfig
from snapkit.training import tensorboard as tb
from snapkit.training.augment import AugmentConfig, SpecAugment
from snapkit.training.budget import (
    HeadBudget,
    TrainBudget,
    measure_backbone_seconds_per_view,
    measure_seconds_per_view,
    plan_budget,
    plan_head_budget,
)
from snapkit.training.cache import EmbeddingCache, file_content_hash
from snapkit.training.chance import check_chance, near_chance_sentence
from snapkit.training.data import (
    ClipSet,
    WaveformDataset,
    check_trainable,
    load_clipset,
    stratified_folds,
    stratified_split,
)
from snapkit.training.headfit import FitSummary, HeadFitSettings, fit_head
from snapkit.training.inputs import TrainingInputs
from snapkit.training.metrics import calibrate_thresholds, clip_report
from snapkit.training.profile import class_profiles
from snapkit.training.settings import (
    ACCELERATORS,
    BACKBONE_CHOICES,
    CONVNET_CLIP_S,
    HEAD_CLIP_S,
    TrainerOptions,
    TrainSettings,
    auto_clip_s,
    model_config,
)

__all__ = [
    "ACCELERATORS",
    "BACKBONE_CHOICES",
    "CONVNET_CLIP_S",
    "HEAD_CLIP_S",
    "TrainPlan",
    "TrainResult",
    "TrainSettings",
    "TrainerOptions",
    "auto_clip_s",
    "check_run_folder",
    "check_trainer_options",
    "plan_training",
    "run_training",
]

if TYPE_CHECKING:
    from snapkit.training.lightning_fit import LightningPace

# What check_run_folder writes to try the runs folder (bytes): enough to tell a full disk, not a model's size.
RUN_PROBE_BYTES = 1 << 16


def check_trainer_options(options: TrainerOptions) -> None:
    """Refuse Lightning flags that cannot work here, before a plan is printed (see
    :func:`snapkit.training.lightning_fit.check_trainer_options`; imports Lightning)."""
    from snapkit.training.lightning_fit import check_trainer_options as check

    check(options)


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
    budget: TrainBudget | HeadBudget | None = None  # None: plan_training fills it in
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
        if isinstance(self.budget, HeadBudget):
            return f"in memory on {self.budget.views_per_clip} cached view(s) a clip, L-BFGS to convergence"
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
    weights: Path | None = None,
) -> TrainPlan:
    """Check the dataset and settle how training will go; raises ``SnapkitError`` for what cannot work.

    With ``measure_speed`` one batch is trained here (ConvNet), or embedded by the frozen backbone (heads, which also
    count the clips already in the embedding cache), a second or two, so the plan can state how long the run will
    take and fit it into ``settings.max_minutes``. ``weights``: the backbone's weights file, as for
    :func:`run_training`.
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
    fits = folds + 1 if folds >= 2 else 1
    budget: TrainBudget | HeadBudget
    if settings.is_head:
        budget = _plan_head(
            settings, augment, dataset, len(all_labels), fits, weights=weights, measure_speed=measure_speed
        )
    else:
        seconds_per_view = None
        if measure_speed:
            typical_s = float(np.median([c.duration_s for c in dataset.readable]))
            seconds_per_view = measure_seconds_per_view(
                model_config(settings, classes), augment, settings.batch_size, typical_s, seed=settings.seed
            )
        budget = plan_budget(
            is_head=False,
            train_clips=train_clips,
            fits=fits,
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


def _plan_head(
    settings: TrainSettings,
    augment: AugmentConfig,
    dataset: Dataset,
    clips: int,
    fits: int,
    *,
    weights: Path | None,
    measure_speed: bool,
) -> HeadBudget:
    """A head's budget: how many clips the embedding cache lacks, what a view costs here, and the views a clip gets
    within ``settings.max_minutes``."""
    views = augment.views_per_clip if augment.enabled else 1
    if not measure_speed:
        return plan_head_budget(
            fits=fits,
            clips=clips,
            clips_to_embed=clips,
            views_per_clip=views,
            seconds_per_view=None,
            max_minutes=settings.max_minutes,
        )
    backbone = load_backbone(settings.backbone, weights)
    clip_samples = round((settings.clip_s or CONVNET_CLIP_S) * backbone.frontend_config.sample_rate_hz)
    cache = EmbeddingCache.default(backbone.name, backbone.frontend_config, augment, clip_samples)
    readable = [c.path for c in dataset.readable]
    # A dataset without recorded background gets generated stand-in clips at load time: counted as to embed.
    stored = [cache.stored_views(file_content_hash(path), settings.seed) for path in readable]
    missing = clips - len(readable) + sum(n < views for n in stored)
    calibrate_audio_s = 0.0
    background = [c.duration_s for c in dataset.readable if c.label == settings.background_label]
    if settings.max_false_alarms_per_hour is not None and background:
        from snapkit.detection.operating import CONTEXT_S

        sounds = [c.duration_s for c in dataset.readable if c.label != settings.background_label]
        calibrate_audio_s = sum(background) + sum(sounds) + 2 * CONTEXT_S * len(sounds)
    return plan_head_budget(
        fits=fits,
        clips=clips,
        clips_to_embed=missing,
        views_per_clip=views,
        # Measured even when every view is cached: the false-alarm budget step runs the backbone again.
        seconds_per_view=measure_backbone_seconds_per_view(backbone, clip_samples),
        max_minutes=settings.max_minutes,
        calibrate_audio_s=calibrate_audio_s,
        clip_s=settings.clip_s or CONVNET_CLIP_S,
    )


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
    if s.is_head:
        _seed_everything(s.seed)
    else:
        import lightning as L

        L.seed_everything(s.seed, workers=True, verbose=False)

    backbone = load_backbone(s.backbone, weights) if s.is_head else None
    config = model_config(s, plan.classes)
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
    pace = _pace(plan, start, log, plain_lines=not options.progress_bar)

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
    if final.writer is not None:
        _log_augmented_examples(final.writer, plan, clips, template, clip_samples)

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
    final.close()
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


@dataclass
class _Fitted:
    """A fitted model and the TensorBoard writer of its fit (None without one)."""

    model: SoundClassifier
    writer: Any = None

    def close(self) -> None:
        if self.writer is not None and hasattr(self.writer, "flush"):
            self.writer.flush()


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
    pace: HeadPace | LightningPace,
    log: Callable[[str], None],
) -> tuple[_Fitted, _HeldOut | None]:
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
    plan: TrainPlan, config: ModelConfig, clips: ClipSet, final: _Fitted, held: _HeldOut | None
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
    writer = final.writer
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
    final: _Fitted,
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
    started = time.monotonic()
    result = calibrate_to_budget(
        probe,
        [clips.waveforms[i] for i in backgrounds],
        positives,
        max_false_alarms_per_hour=budget,
        seed=plan.settings.seed,
    )
    log(f"false-alarm budget: thresholds chosen in {time.monotonic() - started:.1f} s")
    report["false_alarm_budget"] = {"max_false_alarms_per_hour": budget, "table": result.table()}
    notes.extend(result.notes)
    if final.writer is not None:
        log_curves(final.writer, result.calibration)
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


def _fit(
    inputs: TrainingInputs,
    config: ModelConfig,
    backbone: FrameEmbedder | None,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None,
    name: str,
    tb_dir: Path,
    options: TrainerOptions,
    pace: HeadPace | LightningPace,
) -> _Fitted:
    """One fit: a head in memory (:func:`_fit_head`), or the ConvNet with Lightning."""
    if isinstance(pace, HeadPace):
        return _fit_head(inputs, config, backbone, train_idx, name, tb_dir, pace)
    from snapkit.training.lightning_fit import fit_convnet

    return _Fitted(*fit_convnet(inputs, config, backbone, train_idx, val_idx, name, tb_dir, options, pace))


class HeadPace:
    """A head's run: its fits are not paced (each runs in memory to convergence; the plan fitted the views to the
    time limit), so this only says how each converged and what the plan was."""

    def __init__(self, plan: TrainPlan, log: Callable[[str], None]) -> None:
        self.log = log
        self.notes: list[str] = []
        budget = plan.budget if isinstance(plan.budget, HeadBudget) else None
        self.budget = budget or plan_head_budget(
            fits=plan.folds + 1 if plan.folds >= 2 else 1,
            clips=sum(plan.counts.values()),
            clips_to_embed=sum(plan.counts.values()),
            views_per_clip=plan.augment.views_per_clip if plan.augment.enabled else 1,
            seconds_per_view=None,
            max_minutes=plan.settings.max_minutes,
        )

    def head_fit_done(self, name: str, summary: FitSummary, seconds: float) -> None:
        self.log(
            f"{name}: head fitted in {seconds:.1f} s (clip head {summary.clip_iterations} and frame head "
            f"{summary.frame_iterations} L-BFGS iterations)"
        )

    def summary(self, seconds: float) -> dict[str, object]:
        """What metrics.json records about time: the plan's estimate beside what the run took."""
        return {"seconds": seconds, **self.budget.summary(), "stopped_early": False}


def _pace(
    plan: TrainPlan, start_s: float, log: Callable[[str], None], *, plain_lines: bool
) -> HeadPace | LightningPace:
    if plan.settings.is_head:
        return HeadPace(plan, log)
    from snapkit.training.lightning_fit import LightningPace

    return LightningPace(plan, start_s, log, plain_lines=plain_lines)


def _seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's generators, as Lightning's ``seed_everything`` seeds them."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fit_head(
    inputs: TrainingInputs,
    config: ModelConfig,
    backbone: FrameEmbedder | None,
    train_idx: np.ndarray,
    name: str,
    tb_dir: Path,
    pace: HeadPace,
) -> _Fitted:
    """A head on the frozen backbone fitted in memory on the cached views of ``train_idx``
    (:func:`snapkit.training.headfit.fit_head`); its loss curves go to TensorBoard as ``<part>/loss``."""
    from torch.utils.tensorboard import SummaryWriter

    s = inputs.plan.settings
    model = SoundClassifier(config, backbone)
    writer = SummaryWriter(log_dir=str(tb_dir / name))
    started = time.monotonic()
    summary = fit_head(
        model,
        inputs.view_stats(),
        inputs.targets,
        torch.as_tensor(train_idx),
        inputs.allowed_views(train_idx),
        HeadFitSettings(c=s.head_c),
        seed=s.seed,
        on_loss=lambda part, step, loss: writer.add_scalar(f"{part}/loss", loss, step),
    )
    pace.head_fit_done(name, summary, time.monotonic() - started)
    return _Fitted(model, writer)


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
