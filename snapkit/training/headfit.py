"""Fitting a head on a frozen backbone in memory: every cached view held as one tensor, full-batch optimisation.

A head is a few matrix products on features that never change, so it is fitted the way a logistic regression is
(perch-hoplite's agile loop, sklearn's ``LogisticRegression``): the cached views of the training clips as one
tensor, one convex or nearly convex loss over all of them, L-BFGS until it converges. Every fold of the
cross-validated estimate reads the same tensors.

The old way ran Lightning's loop over the same views in batches of 16: 30 epochs of 16 views a clip, 7,500 steps a
fit on 250 clips, 6 fits, each step 6-7 ms of loop overhead (data loader, per-item view draws, metric updates,
per-step logging) for well under a millisecond of arithmetic: 5 minutes, and on a busy machine the time limit cut
every fit after a handful of steps.

The model's parts are fitted in turn, each on what it reads:

1. ``input_norm`` (BatchNorm in eval mode) gets the training frames' mean and variance, per dimension: the
   standardisation a logistic-regression baseline does with ``StandardScaler``.
2. The clip head (softmax over the classes and background on max and standard deviation over time of the
   standardised frames) is multinomial logistic regression: both poolings are affine in the standardisation, so
   they are computed once per view from the raw frames and rescaled per fold.
3. The frame head (per-frame logits pooled over time, binary cross-entropy against the clip labels), on the
   frames of the views.

Views are weighted so that every outcome (each class and background) counts the same, as the class-balanced
sampler drew them before; the L2 penalty is sklearn's ``C``: ``1 / (2 C n)`` per clip of training data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snapkit.models.classifier import SoundClassifier

# BatchNorm's epsilon, which the eval-mode standardisation adds to the variance.
_BN_EPS = 1e-5


@dataclass(frozen=True)
class HeadFitSettings:
    """How a head is fitted.

    Attributes:
        c: inverse L2 strength, as sklearn's ``LogisticRegression(C=...)``: the penalty is ``||W||^2 / (2 C n)``
            against the mean loss over ``n`` training clips.
        clip_iterations: L-BFGS iterations of the clip head at most (it stops earlier once the loss stops moving):
            it is a convex problem on one vector a view, so it is run to convergence.
        frame_iterations: L-BFGS iterations of the frame head at most: each reads every frame of its views.
        clip_views: views a clip the clip head reads at most, the clean one first. 1: on real recordings (31
            classes x 5 clips, ``experiments/head_fit.py``) every augmented view cost clean held-out accuracy, at
            any weight: 0.671 with the clean view alone, 0.638 with one augmented view beside it, 0.540 with 7
            (0.629 for logistic regression); the augmented views helped only clips mixed with the same
            background recordings (0.24 -> 0.37 at 6 dB).
        frame_views: views a clip the frame head reads at most (the clean one first); None: every cached view. The
            detector's frames must stay low in the room's noise, which the augmented views mix in.
    """

    c: float = 1.0
    clip_iterations: int = 300
    frame_iterations: int = 200
    clip_views: int = 1
    frame_views: int | None = None


@dataclass(frozen=True)
class ViewStats:
    """What the fits read of cached views, computed once a run.

    Attributes:
        frames: ``[clips, views, frames, dim]`` float32, the frozen features of every view.
        pooled_max: ``[clips, views, dim]``, max over time.
        mean: ``[clips, views, dim]``, mean over time.
        mean_sq: ``[clips, views, dim]``, mean of squares over time.
    """

    frames: torch.Tensor
    pooled_max: torch.Tensor
    mean: torch.Tensor
    mean_sq: torch.Tensor

    @classmethod
    def of(cls, frames: torch.Tensor) -> ViewStats:
        """Statistics of ``frames`` ``[clips, views, frames, dim]``."""
        frames = frames.float()
        return cls(frames, frames.amax(dim=2), frames.mean(dim=2), frames.square().mean(dim=2))


@dataclass(frozen=True)
class FitSummary:
    """How a fit went: L-BFGS iterations of each part and its final loss."""

    clip_iterations: int
    clip_loss: float
    frame_iterations: int
    frame_loss: float


def outcome_weights(outcomes: torch.Tensor) -> torch.Tensor:
    """Per-row weights ``[rows]`` summing to 1 that give every outcome the same total, from ``outcomes`` ``[rows,
    outcomes]`` (soft targets: a row with two sounds counts half for each)."""
    totals = outcomes.sum(dim=0)
    share = torch.where(totals > 0, 1.0 / totals.clamp_min(1e-12), torch.zeros_like(totals))
    weights = (outcomes * share).sum(dim=1)
    return weights / weights.sum().clamp_min(1e-12)


def fit_head(
    model: SoundClassifier,
    stats: ViewStats,
    targets: torch.Tensor,
    clips: torch.Tensor,
    allowed: torch.Tensor,
    settings: HeadFitSettings | None = None,
    *,
    seed: int = 0,
    on_loss: Callable[[str, int, float], None] | None = None,
) -> FitSummary:
    """Fit ``model``'s trainable parts (a head on a frozen backbone) in place, on the views ``allowed`` of ``clips``.

    Args:
        model: a fresh :class:`SoundClassifier` with a backbone (its backbone is not run here).
        stats: the cached views of every clip of the run (:meth:`ViewStats.of`).
        targets: ``[all clips, classes]`` multi-hot, all zero for background.
        clips: indices of the training clips ``[n]``.
        allowed: ``[n, views]`` bool, the views of each training clip training may read (at least one a clip).
        settings: how; defaults to :class:`HeadFitSettings`.
        seed: seeds the initial weights.
        on_loss: called ``(part, evaluation, loss)`` at every evaluation of a part's loss (``"clip"``,
            ``"frame"``), e.g. to draw the curves in TensorBoard.
    """
    settings = settings or HeadFitSettings()
    if model.backbone is None or model.input_norm is None:
        raise ValueError("fit_head fits heads on a frozen backbone; the ConvNet trains with Lightning.")
    torch.manual_seed(seed)
    clips = torch.as_tensor(clips, dtype=torch.long)
    allowed = torch.as_tensor(allowed, dtype=torch.bool)
    n = len(clips)
    penalty = 1.0 / (2.0 * settings.c * max(n, 1))
    clip_targets = targets[clips].float()
    outcome = torch.cat([clip_targets, (clip_targets.sum(dim=1, keepdim=True) == 0).float()], dim=1)
    outcome = outcome / outcome.sum(dim=1, keepdim=True)

    # 1. Standardisation from the allowed views' frames (every view has the same number of frames).
    rows = allowed.nonzero(as_tuple=False)  # [views kept, 2]: (position in clips, view)
    row_clips, row_views = clips[rows[:, 0]], rows[:, 1]
    # From the views the clip head reads (the clean ones by default): standardised as logistic regression would
    # standardise them (31 classes x 5 clips: 0.671 against 0.659 with every view's frames).
    normed = _first_views(rows[:, 0], settings.clip_views)
    mean = stats.mean[row_clips[normed], row_views[normed]].mean(dim=0)
    var = (stats.mean_sq[row_clips[normed], row_views[normed]].mean(dim=0) - mean.square()).clamp_min(0.0)
    norm = model.input_norm
    with torch.no_grad():
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        norm.num_batches_tracked.fill_(1)
    for parameter in norm.parameters():
        parameter.requires_grad_(False)
    scale = torch.sqrt(var + _BN_EPS)

    model.eval()  # no dropout: the L2 penalty regularises a full-batch fit
    clip_iterations, clip_loss = 0, float("nan")
    if model.clip_head is not None:
        # 2. The clip head on the first ``clip_views`` allowed views of each clip.
        kept = _first_views(rows[:, 0], settings.clip_views)
        kept_clips, kept_views = row_clips[kept], row_views[kept]
        row_outcome = outcome[rows[kept, 0]]
        weights = _per_clip_weights(rows[kept, 0], outcome)
        spread = (stats.mean_sq[kept_clips, kept_views] - stats.mean[kept_clips, kept_views].square()).clamp_min(0.0)
        pooled = torch.cat([(stats.pooled_max[kept_clips, kept_views] - mean) / scale, spread.sqrt() / scale], dim=1)
        linear = model.clip_head[-1]

        def clip_objective() -> torch.Tensor:
            logits = linear(pooled)
            loss = -(row_outcome * F.log_softmax(logits, dim=1)).sum(dim=1)
            return (weights * loss).sum() + penalty * linear.weight.square().sum()

        clip_iterations, clip_loss = _lbfgs(
            list(linear.parameters()), clip_objective, settings.clip_iterations, _reporter("clip", on_loss)
        )

    # 3. The frame head on the frames of the first ``frame_views`` allowed views of each clip.
    first = _first_views(rows[:, 0], settings.frame_views or allowed.shape[1])
    frames = (stats.frames[row_clips[first], row_views[first]] - mean) / scale  # [rows, frames, dim]
    frame_targets = clip_targets[rows[first, 0]]
    frame_weights = _per_clip_weights(rows[first, 0], outcome)
    frame_params = [p for m in (model.head, model.att_head) if m is not None for p in m.parameters()]
    penalised = [p for p in frame_params if p.dim() > 1]

    def frame_objective() -> torch.Tensor:
        logits = model.head(frames)
        att = model.att_head(frames) if model.att_head is not None else None
        probs = model.clip_probs(logits, att).clamp(1e-6, 1 - 1e-6)
        loss = F.binary_cross_entropy(probs, frame_targets, reduction="none").mean(dim=1)
        return (frame_weights * loss).sum() + penalty * sum(p.square().sum() for p in penalised)

    frame_iterations, frame_loss = _lbfgs(
        frame_params, frame_objective, settings.frame_iterations, _reporter("frame", on_loss)
    )
    return FitSummary(clip_iterations, clip_loss, frame_iterations, frame_loss)


def _per_clip_weights(positions: torch.Tensor, outcome: torch.Tensor) -> torch.Tensor:
    """Row weights summing to 1: every outcome the same total, and within it every clip the same whatever its
    number of views. ``positions`` ``[rows]`` index ``outcome`` ``[n, outcomes]``."""
    views_of = torch.bincount(positions, minlength=len(outcome)).float()
    clip_weights = outcome_weights(outcome)  # [n]
    return clip_weights[positions] / views_of[positions]


def _first_views(positions: torch.Tensor, limit: int) -> torch.Tensor:
    """Indices of the rows that are among the first ``limit`` rows of their clip (rows sorted by clip)."""
    keep = torch.zeros(len(positions), dtype=torch.bool)
    seen: dict[int, int] = {}
    for r, p in enumerate(positions.tolist()):
        k = seen.get(p, 0)
        if k < limit:
            keep[r] = True
        seen[p] = k + 1
    return keep.nonzero(as_tuple=True)[0]


def _reporter(part: str, on_loss: Callable[[str, int, float], None] | None) -> Callable[[int, float], None] | None:
    if on_loss is None:
        return None
    return lambda evaluation, loss: on_loss(part, evaluation, loss)


def _lbfgs(
    params: list[torch.nn.Parameter],
    objective: Callable[[], torch.Tensor],
    max_iterations: int,
    report: Callable[[int, float], None] | None = None,
) -> tuple[int, float]:
    """Minimise ``objective()`` over ``params`` with L-BFGS (strong Wolfe line search); returns (iterations,
    final loss). ``report(evaluation, loss)`` sees every evaluation."""
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iterations,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        if report is not None:
            report(evaluations, float(loss))
        evaluations += 1
        return loss

    optimizer.step(closure)
    state = optimizer.state[optimizer._params[0]]
    with torch.no_grad():
        final = float(objective())
    if not math.isfinite(final):
        raise FloatingPointError("The head's fit diverged (non-finite loss).")
    return int(state.get("n_iter", 0)), final
