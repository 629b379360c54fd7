"""Clip-level quality figures, and per-class thresholds calibrated on held-out predictions.

The model is multi-label (one sigmoid per target class; background is "no class above threshold"), but users ask
"which sound was it?", so for accuracy, F1 and the confusion matrix every clip gets one label: the most likely
class if its probability clears that class's threshold, else background. Background is the last index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from snapkit.models.calibration import DEFAULT_ON_THRESHOLD, ClassCalibration

# Calibrated thresholds stay inside this range: with a handful of held-out clips the F1-best threshold can land
# at 0.15, which on a day of background audio is a stream of false alarms (measured: 21 in 4 minutes).
THRESHOLD_GRID = np.round(np.arange(0.3, 0.901, 0.025), 3)


def single_labels(probs: torch.Tensor, thresholds: Sequence[float] | None = None) -> torch.Tensor:
    """Clip probabilities ``[N, C]`` -> one label per clip ``[N]`` in 0..C (C = background)."""
    n_classes = probs.shape[1]
    limits = torch.as_tensor(
        thresholds if thresholds is not None else [DEFAULT_ON_THRESHOLD] * n_classes, dtype=probs.dtype
    )
    # Compare classes by how far they clear their own threshold, so a class with a low threshold can win.
    margin = probs - limits
    best = margin.argmax(dim=1)
    cleared = margin.gather(1, best[:, None])[:, 0] >= 0
    return torch.where(cleared, best, torch.full_like(best, n_classes))


def softmax_labels(probs: torch.Tensor) -> torch.Tensor:
    """Clip-head probabilities ``[N, C]`` (a softmax whose background share is ``1 - sum``) -> one label per clip
    ``[N]`` in 0..C (C = background): the most probable outcome, background included."""
    rest = (1.0 - probs.sum(dim=1, keepdim=True)).clamp(min=0.0)
    return torch.cat([probs, rest], dim=1).argmax(dim=1)


def clip_decisions(
    probs: torch.Tensor, thresholds: Sequence[float] | None = None, *, background_is_rest: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip probabilities ``[N, C]`` -> (one label per clip ``[N]`` in 0..C, C = background; its score ``[N]``).

    The label is :func:`softmax_labels` when ``background_is_rest`` (clip-head probabilities), else
    :func:`single_labels` with ``thresholds``. The score is the probability of that label; background has no output
    of its own, so its score is what the classes leave (``1 - sum``) for a clip head and ``1 - max`` otherwise.
    """
    pred = softmax_labels(probs) if background_is_rest else single_labels(probs, thresholds)
    rest = 1.0 - (probs.sum(dim=1) if background_is_rest else probs.max(dim=1).values)
    scores = torch.cat([probs, rest.clamp(min=0.0)[:, None]], dim=1).gather(1, pred[:, None])[:, 0]
    return pred, scores


def target_labels(targets: torch.Tensor) -> torch.Tensor:
    """Multi-hot targets ``[N, C]`` (all zero for background) -> labels ``[N]`` in 0..C."""
    n_classes = targets.shape[1]
    has = targets.sum(dim=1) > 0
    return torch.where(has, targets.argmax(dim=1), torch.full((len(targets),), n_classes, dtype=torch.long))


def clip_report(
    probs: torch.Tensor,
    targets: torch.Tensor,
    labels: Sequence[str],
    background_label: str,
    thresholds: Sequence[float] | None = None,
    *,
    background_is_rest: bool = False,
) -> dict[str, object]:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix (rows: truth).

    ``labels`` are the target classes; the report's classes are ``labels + [background_label]``. Clips are
    labelled by :func:`softmax_labels` when ``background_is_rest`` (clip-head probabilities), else by
    :func:`single_labels` with ``thresholds``.
    """
    names = [*labels, background_label]
    k = len(names)
    pred, _ = clip_decisions(probs, thresholds, background_is_rest=background_is_rest)
    true = target_labels(targets)
    # Counted here rather than with torchmetrics, which takes a second and a half to import (a head's whole fit).
    confusion = torch.bincount(true * k + pred, minlength=k * k).reshape(k, k)
    hits = confusion.diagonal().double()
    predicted, support = confusion.sum(dim=0), confusion.sum(dim=1)
    precision = torch.where(predicted > 0, hits / predicted.clamp_min(1), torch.zeros_like(hits))
    recall = torch.where(support > 0, hits / support.clamp_min(1), torch.zeros_like(hits))
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp_min(1e-12), torch.zeros_like(hits))
    present = support > 0  # macro averages over classes that occur, so an absent class cannot score 0 or 1
    return {
        "accuracy": float(hits.sum() / max(len(true), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "classes": names,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion_matrix": confusion.tolist(),
    }


def calibrate_thresholds(
    probs: torch.Tensor, targets: torch.Tensor, labels: Sequence[str]
) -> dict[str, ClassCalibration]:
    """Per class, the on-threshold that maximises one-vs-rest F1 on held-out clip probabilities.

    Among thresholds with the best F1 the middle one is taken, which keeps the margin to both errors widest.
    A class with no held-out positives keeps the default. ``off = OFF_FRACTION * on``.
    """
    result: dict[str, ClassCalibration] = {}
    p = probs.detach().cpu().numpy()
    t = targets.detach().cpu().numpy() > 0.5
    for c, label in enumerate(labels):
        if not t[:, c].any():
            on = DEFAULT_ON_THRESHOLD
        else:
            scores = np.array([_f1(p[:, c] >= g, t[:, c]) for g in THRESHOLD_GRID])
            best = np.flatnonzero(scores >= scores.max() - 1e-9)
            on = float(THRESHOLD_GRID[best[len(best) // 2]])
        result[label] = ClassCalibration.from_on(on)
    return result


def _f1(pred: np.ndarray, true: np.ndarray) -> float:
    tp = float(np.sum(pred & true))
    fp = float(np.sum(pred & ~true))
    fn = float(np.sum(~pred & true))
    return 2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0
