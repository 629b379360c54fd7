"""The in-memory head fit (snapkit.training.headfit) and the head's time plan (snapkit.training.budget)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snapkit.errors import SnapkitError
from snapkit.models.backbones.base import FrameEmbedder
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import ModelConfig
from snapkit.training.budget import HeadBudget, plan_head_budget
from snapkit.training.headfit import HeadFitSettings, ViewStats, fit_head, outcome_weights


class _Stub(FrameEmbedder):
    """A backbone stand-in of the registered name (the fit never runs it)."""

    name = "sfx-cnn9"
    feature_dim = 6
    frame_hop_s = 0.1

    def __init__(self) -> None:
        super().__init__()
        from snapkit.models.backbones.registry import backbone_architecture

        self.frontend_config = backbone_architecture("sfx-cnn9").frontend_config


def _views(seed: int = 0, clips_per_class: int = 12, views: int = 3, frames: int = 7, dim: int = 6):
    """Separable frame features of 2 classes + background: ``(frames [clips, views, frames, dim], targets,
    labels)``; each class lifts one dimension in a few frames."""
    rng = np.random.default_rng(seed)
    labels = ["a"] * clips_per_class + ["b"] * clips_per_class + ["background"] * clips_per_class
    x = rng.normal(0, 1, (len(labels), views, frames, dim)).astype(np.float32)
    for i, label in enumerate(labels):
        if label != "background":
            column = 0 if label == "a" else 1
            x[i, :, 2:4, column] += 3.0
    targets = np.zeros((len(labels), 2), dtype=np.float32)
    for i, label in enumerate(labels):
        if label != "background":
            targets[i, 0 if label == "a" else 1] = 1.0
    return torch.from_numpy(x), torch.from_numpy(targets), labels


def _model() -> SoundClassifier:
    config = ModelConfig(backbone="sfx-cnn9", labels=("a", "b"), clip_s=1.0, clip_head=True)
    return SoundClassifier(config, _Stub())


def test_the_clip_head_is_the_logistic_regression_sklearn_fits_on_the_same_pooled_views() -> None:
    from sklearn.linear_model import LogisticRegression

    frames, targets, labels = _views()
    stats = ViewStats.of(frames)
    n, views = frames.shape[:2]
    model = _model()
    settings = HeadFitSettings(c=0.5, clip_views=views, clip_iterations=500)
    fit_head(model, stats, targets, torch.arange(n), torch.ones(n, views, dtype=torch.bool), settings)
    model.eval()
    with torch.no_grad():
        flat = frames.reshape(n * views, *frames.shape[2:])
        ours = torch.softmax(model.all_outputs(flat)[2], dim=1).numpy()
        # The same standardisation, then the same pooling, then sklearn's multinomial regression with the same C
        # and the outcome-balanced weights scaled to its sum-of-losses form.
        trunk = model._normalised(flat)
        pooled = torch.cat([trunk.amax(dim=1), trunk.std(dim=1, correction=0)], dim=1).numpy()
    outcomes = np.repeat(np.array([0 if t == "a" else 1 if t == "b" else 2 for t in labels]), views)
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(outcomes), 3).float()
    weights = outcome_weights(one_hot).numpy() * n  # per clip: every view of a clip shares its clip's weight
    reference = LogisticRegression(C=0.5, max_iter=5000, tol=1e-10).fit(pooled, outcomes, sample_weight=weights)
    np.testing.assert_allclose(ours, reference.predict_proba(pooled), atol=2e-3)


def test_the_fit_learns_frames_and_clips_and_standardises_from_clean_training_views_only() -> None:
    frames, targets, labels = _views(seed=1)
    stats = ViewStats.of(frames)
    n, views = frames.shape[:2]
    train = torch.arange(0, n, 2)
    model = _model()
    summary = fit_head(model, stats, targets, train, torch.ones(len(train), views, dtype=torch.bool))
    assert summary.clip_iterations > 0 and summary.frame_iterations > 0
    expected_mean = frames[train, 0].reshape(-1, frames.shape[-1]).mean(dim=0)  # the clean views the clip head reads
    torch.testing.assert_close(model.input_norm.running_mean, expected_mean, atol=1e-5, rtol=1e-5)
    test = torch.arange(1, n, 2)
    model.eval()
    with torch.no_grad():
        frame_probs = model.all_outputs(frames[test, 0])[0].sigmoid()
        clip_logits = model.all_outputs(frames[test, 0])[2]
        decision = clip_logits.argmax(dim=1).numpy()
    truth = np.array([0 if labels[i] == "a" else 1 if labels[i] == "b" else 2 for i in test.tolist()])
    assert (decision == truth).mean() >= 0.9
    # The frame head puts each class's evidence in the frames that hold it (2 and 3), not elsewhere.
    lifted = frame_probs[:, 2:4].amax(dim=1)
    quiet = torch.cat([frame_probs[:, :2], frame_probs[:, 4:]], dim=1).amax(dim=1)
    is_a = torch.as_tensor(truth == 0)
    assert lifted[is_a, 0].mean() > 0.6 and quiet[is_a, 0].mean() < 0.4, (lifted[is_a, 0], quiet[is_a, 0])


def test_views_that_are_not_allowed_are_not_read() -> None:
    frames, targets, _ = _views(seed=2)
    n, views = frames.shape[:2]
    allowed = torch.zeros(n, views, dtype=torch.bool)
    allowed[:, 0] = True
    poisoned = frames.clone()
    poisoned[:, 1:] = float("nan")  # any read of a view that is not allowed makes the fit non-finite
    model = _model()
    fit_head(model, ViewStats.of(poisoned), targets, torch.arange(n), allowed)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_outcome_weights_give_every_outcome_the_same_total() -> None:
    outcomes = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    w = outcome_weights(outcomes)
    assert torch.isclose(w.sum(), torch.tensor(1.0))
    assert torch.allclose(w[:3].sum(), w[3]) and torch.allclose(w[3], w[4])


def test_the_head_plan_cuts_views_to_the_limit_but_never_below_the_clean_one() -> None:
    common = {"fits": 6, "clips": 200, "clips_to_embed": 200, "views_per_clip": 8}
    free = plan_head_budget(**common, seconds_per_view=0.05, max_minutes=None)
    assert free.views_per_clip == 8 and not free.capped
    capped = plan_head_budget(**common, seconds_per_view=0.05, max_minutes=0.5)
    assert 1 <= capped.views_per_clip < 8 and capped.capped
    assert capped.estimated_s is not None and capped.estimated_s <= 30
    assert "instead of 8 views a clip" in capped.describe()
    warm = plan_head_budget(**{**common, "clips_to_embed": 0}, seconds_per_view=0.0, max_minutes=0.5)
    assert warm.views_per_clip == 8  # nothing to embed: every view fits


def test_a_limit_that_cannot_hold_one_view_a_clip_is_refused_with_the_minutes_needed() -> None:
    with pytest.raises(SnapkitError, match=r"--max-minutes 0.1 cannot hold .* give --max-minutes 3 or more"):
        plan_head_budget(
            fits=2, clips=1000, clips_to_embed=1000, views_per_clip=8, seconds_per_view=0.1, max_minutes=0.1
        )


def test_a_head_plan_without_a_measurement_says_what_it_will_do() -> None:
    budget = HeadBudget(fits=6, clips=40, views_per_clip=8, wanted_views_per_clip=8, clips_to_embed=40)
    assert budget.estimated_s is None
    assert "40 clips to embed" in budget.describe() and "6 head fits in memory" in budget.describe()
