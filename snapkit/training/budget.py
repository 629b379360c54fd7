"""How much training a run gets and how long it will take on this machine, settled before anything slow starts.

A fit draws *views*: augmented training examples of ``clip_s`` seconds, one per clip of a batch. The ConvNet's
work used to be a fixed number of epochs over the clips, so its time grew with the dataset without bound (41
minutes on 2 cores for 250 phone clips). Now a fit draws views in proportion to its clips, within fixed bounds,
and the whole run (every cross-validation fold and the final model) is fitted into ``max_minutes`` using the
cost of one view measured here at plan time. Heads on a frozen backbone cost about a millisecond a view on
cached features; their work keeps its fixed shape and only the time limit applies.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import ModelConfig
from snapkit.training.augment import AugmentConfig, SpecAugment, augment_waveform, generate_noise

# ConvNet views per training clip when --epochs is not given. 120, not the old 60 epochs: on `make demo`'s data
# (generated, 4 classes x 8 clips, 3 seeds x 3 streams of 60 s) 60 left one class's frame head unlearnt in some
# runs (planted sounds found 42 of 51, 1 false alarm; held-out accuracy 0.80-0.90); 120 found 51 of 51 with none
# (accuracy 1.00) for 76 s of training instead of 45. Large datasets reach the upper bound either way ...
CONVNET_VIEWS_PER_CLIP = 120
# ... within these bounds per fit. Below: a few clips still get enough optimiser steps to learn anything (60 x 32,
# the old smallest epoch). Above: 250 real clips of 5 kitchen sounds still gained from 4,000 to 13,000 views
# (held-out accuracy 0.67 -> 0.72), and 12,000 views take about 3.5 minutes on 2 idle cores.
CONVNET_VIEWS_PER_FIT = (1_920, 12_000)
# An epoch draws one view per training clip (at least this many), so the cosine schedule and the progress
# lines keep their usual meaning; a head's epoch draws 16 views per clip (see train._fit).
MIN_VIEWS_PER_EPOCH = 32
HEAD_VIEWS_PER_CLIP_PER_EPOCH = 16
# Work outside the fits (imports, loading and resampling clips, predicting held-out clips, saving), measured on
# the 2-core reference machine for 250 clips of 5 s: about 8 s plus 0.05 s per clip.
OVERHEAD_S = 8.0
OVERHEAD_S_PER_CLIP = 0.05
# Lightning's loop (data loader, metrics, logging) on top of the bare step the probe times, measured by comparing
# the probe with whole fits on the reference machine.
LOOP_FACTOR = 1.15
# Clips the probe augments, and the longest clip it makes (longer clips cost the same per view).
_PROBE_CLIPS = 4
_PROBE_MAX_CLIP_S = 10.0


@dataclass(frozen=True)
class TrainBudget:
    """The work of a training run and its expected duration.

    Attributes:
        fits: models trained: one per cross-validation fold plus the final one, or one.
        views_per_epoch: views each epoch of a fit draws.
        epochs: epochs of each fit.
        wanted_views_per_fit: views a fit would draw without the time limit.
        clips: clips loaded (all classes, background included).
        seconds_per_view: measured cost of a training view on this machine, Lightning's loop included; None when
            not measured (heads: their cost is the backbone's, paid once per cached view).
        max_minutes: the time limit of the whole run; None for none.
    """

    fits: int
    views_per_epoch: int
    epochs: int
    wanted_views_per_fit: int
    clips: int
    seconds_per_view: float | None = None
    max_minutes: float | None = None

    @property
    def views_per_fit(self) -> int:
        return self.views_per_epoch * self.epochs

    @property
    def capped(self) -> bool:
        """True when the time limit cut the views below what the dataset would get."""
        return self.views_per_fit < self.wanted_views_per_fit

    @property
    def overhead_s(self) -> float:
        return OVERHEAD_S + OVERHEAD_S_PER_CLIP * self.clips

    @property
    def estimated_s(self) -> float | None:
        """Expected wall time of the whole run, seconds (None when the cost of a view was not measured)."""
        if self.seconds_per_view is None:
            return None
        return self.overhead_s + self.fits * self.views_per_fit * self.seconds_per_view

    def describe(self) -> str:
        """The plan's time line: the estimate, what it rests on, and the limit."""
        limit = f"limit {self.max_minutes:g} min (--max-minutes)" if self.max_minutes else "no time limit"
        fits = f"{self.fits} fit{'s' if self.fits > 1 else ''} x {self.views_per_fit:,} views"
        if self.estimated_s is None or self.seconds_per_view is None:
            return f"not estimated for a frozen-backbone head ({fits}); {limit}"
        line = (
            f"about {format_duration(self.estimated_s)} ({fits} at {self.seconds_per_view * 1000:.0f} ms each,"
            f" measured now, + {format_duration(self.overhead_s)} loading and saving); {limit}"
        )
        if self.capped:
            line += (
                f"; capped by it from {self.wanted_views_per_fit:,} views a fit, so the model may be weaker:"
                " raise --max-minutes for the full training"
            )
        return line


def plan_budget(
    *,
    is_head: bool,
    train_clips: int,
    fits: int,
    clips: int,
    epochs: int | None,
    default_epochs: int,
    seconds_per_view: float | None,
    max_minutes: float | None,
) -> TrainBudget:
    """Views and epochs of each fit for a run of ``fits`` fits on about ``train_clips`` clips each.

    ``epochs`` given: that many epochs of one view per clip (a head: 16), as before budgets existed. Otherwise a
    head gets ``default_epochs`` of those, and the ConvNet ``CONVNET_VIEWS_PER_CLIP`` views per clip within
    ``CONVNET_VIEWS_PER_FIT``. With ``seconds_per_view`` and ``max_minutes`` the views are then cut so that the
    estimate fits the limit (at least one epoch).
    """
    per_clip = HEAD_VIEWS_PER_CLIP_PER_EPOCH if is_head else 1
    per_epoch = max(train_clips * per_clip, MIN_VIEWS_PER_EPOCH)
    if epochs is not None or is_head:
        wanted = per_epoch * (epochs or default_epochs)
    else:
        low, high = CONVNET_VIEWS_PER_FIT
        wanted = min(max(CONVNET_VIEWS_PER_CLIP * train_clips, low), high)
    allowed = wanted
    if seconds_per_view is not None and max_minutes:
        overhead = OVERHEAD_S + OVERHEAD_S_PER_CLIP * clips
        allowed = int((max_minutes * 60.0 - overhead) / (max(fits, 1) * seconds_per_view))
    views = max(min(wanted, allowed), 1)
    per_epoch = min(per_epoch, views)
    return TrainBudget(
        fits=max(fits, 1),
        views_per_epoch=per_epoch,
        epochs=max(1, views // per_epoch),
        wanted_views_per_fit=wanted,
        clips=clips,
        seconds_per_view=seconds_per_view,
        max_minutes=max_minutes,
    )


def measure_seconds_per_view(
    config: ModelConfig, augment: AugmentConfig, batch_size: int, clip_len_s: float, *, seed: int = 0
) -> float:
    """Seconds one ConvNet training view costs here: augmenting it, log-mel, forward, backward, optimiser step.

    Times one batch of ``batch_size`` views after a small warm-up batch, on generated noise clips of
    ``clip_len_s`` seconds (the dataset's typical length: placing a sound costs more in a longer clip), with
    the threads torch uses for training. Takes about two batches' time (a second or two on 2 cores); the result
    includes ``LOOP_FACTOR`` for Lightning's loop.
    """
    rng = np.random.default_rng(seed)
    model = SoundClassifier(config)
    rate = model.sample_rate_hz
    clip_samples = round(config.clip_s * rate)
    clip_len = max(clip_samples, round(min(clip_len_s, _PROBE_MAX_CLIP_S) * rate))
    clips = [generate_noise(rng, clip_len, "pink") * np.float32(0.1) for _ in range(_PROBE_CLIPS)]
    spec = SpecAugment.from_config(augment) if augment.enabled else None
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    model.train()

    def step(views: int) -> None:
        batch = [
            augment_waveform(clips[i % len(clips)], rng, augment, clip_samples, clips, sample_rate_hz=rate)
            for i in range(views)
        ]
        features = model.features(torch.as_tensor(np.stack(batch)))
        if spec is not None:
            features = spec(features)
        probs = model.clip_probs(*model.frame_outputs(features))
        loss = torch.nn.functional.binary_cross_entropy(probs, torch.full_like(probs, 0.5))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(min(batch_size, 4))  # first calls allocate and spin up threads
    start = time.perf_counter()
    step(batch_size)
    return LOOP_FACTOR * (time.perf_counter() - start) / batch_size


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``: a duration for a plan or a log line."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fit_steps(budget: TrainBudget, batch_size: int) -> int:
    """Optimiser steps a fit of ``budget`` takes with batches of ``batch_size`` (the last batch may be short)."""
    return budget.epochs * math.ceil(budget.views_per_epoch / batch_size)
