"""Training the ConvNet with Lightning: the Trainer, its data module, the run's pacing and time limit, Ctrl-C.

Imported only when a ConvNet trains or Lightning's flags are checked: Lightning takes seconds to import, and a head
on a frozen backbone is fitted without it (``snapkit.training.headfit``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import typing
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from snapkit.errors import SnapkitError
from snapkit.models.backbones.base import FrameEmbedder
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import ModelConfig
from snapkit.training.augment import SpecAugment
from snapkit.training.budget import TrainBudget, fit_steps, plan_budget
from snapkit.training.data import balanced_sampler
from snapkit.training.inputs import TrainingInputs
from snapkit.training.module import SoundEventModule
from snapkit.training.progress import RunProgress
from snapkit.training.settings import ACCELERATORS, TrainerOptions

if TYPE_CHECKING:
    from snapkit.training.train import TrainPlan


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
        with quiet_lightning(), warnings.catch_warnings():
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


def fit_convnet(
    inputs: TrainingInputs,
    config: ModelConfig,
    backbone: FrameEmbedder | None,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None,
    name: str,
    tb_dir: Path,
    options: TrainerOptions,
    pace: LightningPace,
) -> tuple[SoundClassifier, object]:
    """One ConvNet fit with Lightning on the clips ``train_idx`` (validating on ``val_idx``); returns the model and
    its TensorBoard writer."""
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
    data = FoldData(inputs, train_idx, val_idx, views_per_epoch=pace.budget.views_per_epoch)
    logger = TensorBoardLogger(save_dir=str(tb_dir), name="", version=name, default_hp_metric=False)
    # No Lightning checkpoints: nothing resumes from them (the bundle is the one output, written once training ends),
    # and each carried the whole model, 19 MB with a frozen sfx-cnn9, several per run.
    callbacks = pace.callbacks(name)
    with quiet_lightning():
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
    return module.model, (module.logger.experiment if module.logger is not None else None)


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


class LightningPace:
    """Run-wide pacing of the fits: the time limit shared among the fits still to come, the plain progress lines
    (when no terminal progress bar is drawn), and a note for every fit the limit cut short."""

    def __init__(self, plan: TrainPlan, start_s: float, log: Callable[[str], None], *, plain_lines: bool) -> None:
        s = plan.settings
        self.plan, self.start_s = plan, start_s
        self.log = log
        self.notes: list[str] = []
        self.cut: list[tuple[str, int, int]] = []  # (fit, steps taken, steps planned) of fits the limit cut short
        budget = plan.budget if isinstance(plan.budget, TrainBudget) else None
        self.budget = budget or plan_budget(
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


class FoldData(L.LightningDataModule):
    """One fit's data: balanced training draws from the clips ``train_idx`` (augmented waveforms) and the clean clips
    ``val_idx`` for validation (none: no validation loop). An epoch draws each outcome equally often, and every fit
    of a run draws the same number of views (``views_per_epoch``, see snapkit.training.budget), so the folds estimate
    the final model's training."""

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


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
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
