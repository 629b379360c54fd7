"""The ConvNet's training budget and time estimate, the near-chance rule, and the plain progress lines."""

from __future__ import annotations

import pytest

from snapkit.training.budget import (
    CONVNET_VIEWS_PER_CLIP,
    CONVNET_VIEWS_PER_FIT,
    TrainBudget,
    fit_steps,
    format_duration,
    measure_seconds_per_view,
    plan_budget,
)
from snapkit.training.chance import check_chance, near_chance_sentence
from snapkit.training.progress import RunProgress, format_clock


def convnet_budget(train_clips: int, **kwargs: object) -> TrainBudget:
    values: dict = {
        "is_head": False,
        "train_clips": train_clips,
        "fits": 1,
        "clips": train_clips,
        "epochs": None,
        "default_epochs": 60,
        "seconds_per_view": None,
        "max_minutes": None,
    }
    return plan_budget(**{**values, **kwargs})


def test_convnet_views_grow_with_the_dataset_within_bounds() -> None:
    low, high = CONVNET_VIEWS_PER_FIT
    assert convnet_budget(8).views_per_fit == low  # a handful of clips still gets enough steps
    assert convnet_budget(50).views_per_fit == CONVNET_VIEWS_PER_CLIP * 50  # one view per clip an epoch
    assert convnet_budget(50).epochs == CONVNET_VIEWS_PER_CLIP
    big = convnet_budget(2_000)
    assert big.views_per_fit <= high and big.views_per_epoch == 2_000  # an epoch is still one pass over the clips
    assert not big.capped  # the bound is the rule, not the time limit


def test_explicit_epochs_keep_their_meaning() -> None:
    assert convnet_budget(50, epochs=2).views_per_fit == 100
    assert convnet_budget(5, epochs=2).views_per_fit == 64  # at least 32 views an epoch
    head = plan_budget(
        is_head=True,
        train_clips=40,
        fits=6,
        clips=48,
        epochs=None,
        default_epochs=30,
        seconds_per_view=None,
        max_minutes=5.0,
    )
    assert (head.epochs, head.views_per_epoch) == (30, 640)  # 16 cached views per clip an epoch
    assert "not estimated" in head.describe() and "limit 5 min" in head.describe()


def test_the_estimate_adds_up_and_the_time_limit_cuts_the_views() -> None:
    free = convnet_budget(50, fits=2, clips=250, seconds_per_view=0.04)
    assert free.views_per_fit == 6_000 and not free.capped
    assert free.estimated_s == pytest.approx(free.overhead_s + 2 * 6_000 * 0.04)
    assert "about" in free.describe() and "40 ms each" in free.describe() and "no time limit" in free.describe()

    capped = convnet_budget(50, fits=2, clips=250, seconds_per_view=0.04, max_minutes=3.0)
    assert capped.capped and capped.views_per_fit < 6_000
    assert capped.estimated_s is not None and capped.estimated_s <= 3 * 60
    assert capped.views_per_fit > (3 * 60 - capped.overhead_s) / (2 * 0.04) - 100  # at most one epoch lost
    assert "capped by it from 6,000 views" in capped.describe() and "raise --max-minutes" in capped.describe()
    assert fit_steps(capped, 16) == capped.epochs * -(-capped.views_per_epoch // 16)

    hopeless = convnet_budget(200, seconds_per_view=10.0, max_minutes=0.5)
    assert hopeless.epochs == 1 and hopeless.views_per_fit >= 1  # still a model, however short the limit


def test_the_probe_measures_a_training_view_in_seconds() -> None:
    from snapkit.models.config import ModelConfig
    from snapkit.training.augment import AugmentConfig

    config = ModelConfig(backbone="convnet", labels=("a", "b"), clip_s=0.5, pooling="max")
    seconds = measure_seconds_per_view(config, AugmentConfig(), batch_size=4, clip_len_s=1.0)
    assert 0 < seconds < 2.0


@pytest.mark.parametrize(("seconds", "text"), [(4.4, "4 s"), (65, "1 min 05 s"), (3725, "1 h 02 min")])
def test_durations_read_as_minutes_and_seconds(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_near_chance_is_judged_against_the_most_common_class_and_the_number_of_clips() -> None:
    five_even = [c for c in "abcde" for _ in range(10)]  # 50 clips, chance 0.2
    assert check_chance(0.2, five_even).near_chance  # a guess
    assert check_chance(0.3, five_even).near_chance  # within 2 standard errors (0.11) of chance on 50 clips
    assert not check_chance(0.5, five_even).near_chance
    # All answered "background" when background is most of the test set: high accuracy, still chance.
    mostly_background = ["background"] * 40 + ["knock"] * 10
    assert check_chance(0.8, mostly_background).near_chance
    assert not check_chance(0.95, mostly_background).near_chance
    # With many clips the standard error shrinks, but 2 points above chance is not learning.
    many = [c for c in "ab" for _ in range(5_000)]
    assert check_chance(0.52, many).near_chance and not check_chance(0.6, many).near_chance
    # On 6 clips even 4 right is no evidence.
    assert check_chance(4 / 6, ["a", "a", "b", "b", "c", "c"]).near_chance
    with pytest.raises(ValueError):
        check_chance(0.5, [])


def test_the_near_chance_sentence_is_one_sentence_that_says_what_to_do() -> None:
    check = check_chance(0.22, [c for c in "abcde" for _ in range(10)])
    text = near_chance_sentence(check, "convnet", "held-out 20% of each class")
    assert "learnt little" in text and "0.22" in text and "0.20" in text and "--backbone sfx-cnn9" in text
    assert text.endswith(".") and text.count(". ") == 0
    assert "sfx-cnn9" not in near_chance_sentence(check, "sfx-cnn9", "5-fold cross-validation")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_are_plain_rate_limited_and_estimate_the_time_left() -> None:
    clock, lines = FakeClock(), []
    progress = RunProgress(total_views=1_000, log=lines.append, every_s=10.0, clock=clock)
    for epoch in range(1, 11):  # 10 epochs of 100 views, 3 s each
        clock.now += 3.0
        progress.advance(100)
        progress.epoch_done("fold 2/5", epoch, 10, 0.4123)
    assert lines[0] == "fold 2/5  epoch 1/10  loss 0.41  elapsed 0:03  ~0:27 left"
    assert [line.split("  ")[1] for line in lines] == ["epoch 1/10", "epoch 5/10", "epoch 9/10", "epoch 10/10"]
    assert lines[-1] == "fold 2/5  epoch 10/10  loss 0.41  elapsed 0:30"  # nothing left to estimate
    assert "\x1b" not in "".join(lines)  # no terminal control codes in a log file
    assert format_clock(3725) == "1:02:05"
