"""Clip-level metrics and threshold calibration, on hand-worked cases."""

from __future__ import annotations

import torch

from snapkit.training.metrics import (
    calibrate_thresholds,
    clip_decisions,
    clip_report,
    single_labels,
    target_labels,
)


def test_single_labels_pick_the_class_clearing_its_threshold_by_most() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.45], [0.2, 0.3], [0.6, 0.7]])
    assert single_labels(probs).tolist() == [0, 2, 2, 1]  # 2 = background
    # With per-class thresholds, 0.4 clears 0.3 by more than 0.45 clears 0.5 (which it does not).
    assert single_labels(probs, [0.3, 0.5]).tolist() == [0, 0, 2, 0]


def test_target_labels_map_all_zero_rows_to_background() -> None:
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    assert target_labels(targets).tolist() == [0, 2, 1]


def test_clip_report_by_hand() -> None:
    # truth: a, a, b, bg ; predicted: a, bg, b, b
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.1], [0.1, 0.8], [0.1, 0.7]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    report = clip_report(probs, targets, ["a", "b"], "bg")
    assert report["accuracy"] == 0.5
    assert report["confusion_matrix"] == [[1, 0, 1], [0, 1, 0], [0, 1, 0]]
    per = report["per_class"]
    assert (per["a"]["precision"], per["a"]["recall"], per["a"]["support"]) == (1.0, 0.5, 2)
    assert abs(per["a"]["f1"] - 2 / 3) < 1e-6
    assert per["b"]["precision"] == 0.5 and per["b"]["recall"] == 1.0
    assert per["bg"]["f1"] == 0.0
    assert abs(report["macro_f1"] - (2 / 3 + 2 / 3 + 0) / 3) < 1e-6


def test_calibration_finds_the_gap_between_classes() -> None:
    # Positives of class 0 score 0.5..0.6, negatives at most 0.4: any threshold in (0.4, 0.5] is perfect.
    probs = torch.tensor([[0.5, 0.0], [0.55, 0.0], [0.6, 0.0], [0.1, 0.0], [0.4, 0.0]])
    targets = torch.tensor([[1.0, 0], [1.0, 0], [1.0, 0], [0.0, 0], [0.0, 0]])
    thresholds = calibrate_thresholds(probs, targets, ["a", "b"])
    assert 0.4 < thresholds["a"].on <= 0.5
    assert thresholds["a"].off < thresholds["a"].on
    assert thresholds["b"].on == 0.5  # no positives held out: the default stays


def test_calibration_never_goes_below_the_floor() -> None:
    # Positives at 0.1..0.15 would want a threshold near 0.1: on a day of background that is a stream of alarms.
    probs = torch.tensor([[0.1, 0.0], [0.15, 0.0], [0.02, 0.0]])
    targets = torch.tensor([[1.0, 0], [1.0, 0], [0.0, 0]])
    assert calibrate_thresholds(probs, targets, ["a", "b"])["a"].on >= 0.3


def test_clip_decisions_give_the_label_and_its_probability() -> None:
    probs = torch.tensor([[0.9, 0.05], [0.2, 0.3], [0.5, 0.45]])
    pred, scores = clip_decisions(probs, [0.5, 0.5])
    assert pred.tolist() == [0, 2, 0]
    # Background has no output of its own: its score is 1 - the highest class probability.
    assert torch.allclose(scores, torch.tensor([0.9, 0.7, 0.5]))
    pred, scores = clip_decisions(probs, background_is_rest=True)
    assert pred.tolist() == [0, 2, 0]  # a clip head: background's share is 1 - sum (0.05, 0.5, 0.05)
    assert torch.allclose(scores, torch.tensor([0.9, 0.5, 0.5]))
