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
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from snapkit.errors import SnapkitError
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


# A head's fit (every part, L-BFGS to convergence) on cached tensors costs about this per cached view it reads,
# measured on the 2-core reference machine (sfx-cnn9, 27 frames a view: 190 clips x 8 views fitted in about 1 s).
HEAD_FIT_S_PER_VIEW = 6e-4
# Work outside embedding and fitting for a head: imports, loading the backbone and the clips, hashing, saving.
HEAD_OVERHEAD_S = 6.0
HEAD_OVERHEAD_S_PER_CLIP = 0.02
# The false-alarm budget step runs the streaming detector over the background and every clip (with context): its
# overlapping windows cost this many times a batched view of the same audio (measured: 1,770 s of audio in 118 s
# against 12 ms a second of audio embedded in batches, sfx-cnn9 on 2 cores).
DETECTOR_COST_FACTOR = 5.5


@dataclass(frozen=True)
class HeadBudget:
    """The work of training a head on a frozen backbone, and its expected duration.

    The cost is the backbone's, paid once per view not yet in the embedding cache; fitting the head on the cached
    views takes seconds. A time limit is met by embedding fewer views per clip (at least the clean one), never by
    stopping a fit.

    Attributes:
        fits: heads fitted: one per cross-validation fold plus the final one, or one.
        clips: clips of the run (background included).
        views_per_clip: views each clip contributes (view 0 clean, the rest augmented).
        wanted_views_per_clip: views a clip would get without the time limit.
        clips_to_embed: clips with fewer than ``views_per_clip`` views in the cache.
        seconds_per_view: the backbone's measured cost of one view here (None: not measured).
        max_minutes: the time limit of the whole run; None for none.
    """

    fits: int
    clips: int
    views_per_clip: int
    wanted_views_per_clip: int
    clips_to_embed: int
    seconds_per_view: float | None = None
    max_minutes: float | None = None
    calibrate_audio_s: float = 0.0
    clip_s: float = 5.0

    @property
    def capped(self) -> bool:
        return self.views_per_clip < self.wanted_views_per_clip

    @property
    def calibrate_s(self) -> float:
        """Expected seconds of the false-alarm budget step (0 without background to calibrate on)."""
        if self.seconds_per_view is None or not self.calibrate_audio_s:
            return 0.0
        per_audio_s = max(self.seconds_per_view, 1e-3) / self.clip_s
        return self.calibrate_audio_s * per_audio_s * DETECTOR_COST_FACTOR

    @property
    def overhead_s(self) -> float:
        return HEAD_OVERHEAD_S + HEAD_OVERHEAD_S_PER_CLIP * self.clips

    @property
    def fit_s(self) -> float:
        """Expected seconds of every fit together."""
        return self.fits * self.clips * self.views_per_clip * HEAD_FIT_S_PER_VIEW

    @property
    def embed_s(self) -> float | None:
        if self.seconds_per_view is None:
            return None
        return self.clips_to_embed * self.views_per_clip * self.seconds_per_view

    @property
    def estimated_s(self) -> float | None:
        embed = self.embed_s
        return None if embed is None else self.overhead_s + embed + self.fit_s + self.calibrate_s

    def describe(self) -> str:
        limit = f"limit {self.max_minutes:g} min (--max-minutes)" if self.max_minutes else "no time limit"
        cached = self.clips - self.clips_to_embed
        work = (
            f"{self.views_per_clip} view{'s' if self.views_per_clip > 1 else ''} a clip; "
            f"{self.clips_to_embed} clip{'s' if self.clips_to_embed != 1 else ''} to embed, {cached} cached; "
            f"{self.fits} head fit{'s' if self.fits > 1 else ''} in memory"
        )
        if self.estimated_s is None or self.seconds_per_view is None:
            return f"{work}; {limit}"
        calibrate = (
            f"; the false-alarm budget about {format_duration(self.calibrate_s)}" if self.calibrate_s >= 1 else ""
        )
        line = (
            f"about {format_duration(self.estimated_s)} ({work}; {self.seconds_per_view * 1000:.0f} ms a view, "
            f"measured now{calibrate}); {limit}"
        )
        if self.capped:
            line += (
                f"; {self.views_per_clip} instead of {self.wanted_views_per_clip} views a clip to fit it, so the model"
                " may be less robust to noise: raise --max-minutes for all of them"
            )
        return line

    def summary(self) -> dict[str, object]:
        """What metrics.json records of the plan."""
        return {
            "estimated_s": self.estimated_s,
            "seconds_per_view": self.seconds_per_view,
            "max_minutes": self.max_minutes,
            "fits": self.fits,
            "views_per_clip": self.views_per_clip,
            "wanted_views_per_clip": self.wanted_views_per_clip,
            "clips_to_embed": self.clips_to_embed,
            "calibrate_s": self.calibrate_s,
            "capped": self.capped,
        }


def plan_head_budget(
    *,
    fits: int,
    clips: int,
    clips_to_embed: int,
    views_per_clip: int,
    seconds_per_view: float | None,
    max_minutes: float | None,
    calibrate_audio_s: float = 0.0,
    clip_s: float = 5.0,
) -> HeadBudget:
    """The views a clip gets so that the run fits ``max_minutes``: ``views_per_clip`` when it fits, else as many as
    fit (at least 1, the clean view). ``calibrate_audio_s``: the audio the false-alarm budget step will score
    (background and clips with their context), ``clip_s`` the length of a view.

    Raises:
        SnapkitError: even one view a clip does not fit; the sentence says how many minutes would.
    """
    budget = HeadBudget(
        fits=max(fits, 1),
        clips=clips,
        views_per_clip=views_per_clip,
        wanted_views_per_clip=views_per_clip,
        clips_to_embed=clips_to_embed,
        seconds_per_view=seconds_per_view,
        max_minutes=max_minutes,
        calibrate_audio_s=calibrate_audio_s,
        clip_s=clip_s,
    )
    if seconds_per_view is None or not max_minutes or budget.estimated_s is None:
        return budget
    limit_s = max_minutes * 60.0
    views = views_per_clip
    while views > 1 and (replace(budget, views_per_clip=views).estimated_s or 0.0) > limit_s:
        views -= 1
    budget = replace(budget, views_per_clip=views)
    needed = budget.estimated_s or 0.0
    if needed > limit_s:
        calibrate = (
            f", {format_duration(budget.calibrate_s)} of it the false-alarm budget" if budget.calibrate_s >= 1 else ""
        )
        raise SnapkitError(
            f"--max-minutes {max_minutes:g} cannot hold even one view of each of the {clips_to_embed} clips to embed "
            f"(about {format_duration(needed)} here{calibrate}): give --max-minutes {math.ceil(needed / 60.0)} or "
            "more, or train on fewer clips."
        )
    return budget


def measure_backbone_seconds_per_view(features_fn: Callable[[torch.Tensor], torch.Tensor], clip_samples: int) -> float:
    """Seconds the frozen backbone takes for one view of ``clip_samples`` samples here, in batches of 8 as the cache
    embeds them: one small warm-up call, then one timed batch of noise."""
    rng = np.random.default_rng(0)
    batch = torch.as_tensor(rng.standard_normal((8, clip_samples)).astype(np.float32) * 0.05)
    with torch.no_grad():
        features_fn(batch[:1])
        start = time.perf_counter()
        features_fn(batch)
    return (time.perf_counter() - start) / len(batch)
