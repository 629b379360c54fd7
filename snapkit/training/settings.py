"""What ``snapkit train`` is asked to do: the training settings, Lightning's hardware flags, the training window.

Nothing here imports Lightning, so a head on a frozen backbone (fitted in memory, ``snapkit.training.headfit``)
never pays for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL, validate_label
from snapkit.errors import SnapkitError
from snapkit.models.backbones.registry import BACKBONES
from snapkit.models.calibration import check_budget
from snapkit.models.config import POOLINGS, ModelConfig

BACKBONE_CHOICES = ("convnet", *BACKBONES)
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
    # Inverse L2 strength of a head's fit, as sklearn's LogisticRegression(C=...) (see snapkit.training.headfit).
    head_c: float = 1.0
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


def model_config(s: TrainSettings, classes: tuple[str, ...]) -> ModelConfig:
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
