"""The few-shot experiment's episode sampler and statistics (experiments/fewshot.py); no training, no audio."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from experiments.fewshot import Run as FewshotRun
from experiments.fewshot import fit_predict_baseline, mean_ci, paired_differences, sample_episode, score
from snapkit.errors import DatasetError


def _clips(counts: dict[str, int]) -> dict[str, list[Path]]:
    return {label: [Path(f"/data/{label}/{label}-{i:03d}.wav") for i in range(n)] for label, n in counts.items()}


CLIPS = _clips({"beep": 8, "snap": 6, "chirp": 7, "knock": 9, "background": 10})


@pytest.mark.parametrize("shots", [1, 2, 5])
def test_episode_trains_on_k_per_class_and_tests_on_the_rest(shots: int) -> None:
    episode = sample_episode(CLIPS, shots, index=0, seed=3)
    assert episode.classes == ("background", "beep", "chirp", "knock", "snap")
    for label in episode.classes:
        train, test = set(episode.train[label]), set(episode.test[label])
        assert len(episode.train[label]) == len(train) == shots
        assert not train & test
        assert train | test == set(CLIPS[label])
    assert len(episode.train_items()) == shots * 5
    assert {label for _, label in episode.test_items()} == set(episode.classes)


def test_episode_is_reproducible_and_nested_across_shots() -> None:
    a = sample_episode(CLIPS, 2, index=4, ways=2, seed=1)
    assert a == sample_episode(CLIPS, 2, index=4, ways=2, seed=1)
    assert a != sample_episode(CLIPS, 2, index=5, ways=2, seed=1)
    assert a != sample_episode(CLIPS, 2, index=4, ways=2, seed=2)
    larger = sample_episode(CLIPS, 5, index=4, ways=2, seed=1)
    assert larger.classes == a.classes
    for label in a.classes:  # the K = 5 training clips start with the K = 2 ones
        assert larger.train[label][:2] == a.train[label]


def test_ways_draws_that_many_targets_plus_background() -> None:
    drawn = {sample_episode(CLIPS, 1, index=i, ways=2, seed=0).classes for i in range(20)}
    assert all(len(classes) == 3 and "background" in classes for classes in drawn)
    assert len(drawn) > 1  # different episodes draw different classes


def test_a_class_too_small_for_k_plus_one_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match=r"6-shot episodes need at least 7 clips.*'snap' has 6.*lower --shots"):
        sample_episode(CLIPS, 6, index=0)
    with pytest.raises(DatasetError, match="--ways 5"):
        sample_episode(CLIPS, 1, index=0, ways=5)
    with pytest.raises(DatasetError, match="--shots must be at least 1"):
        sample_episode(CLIPS, 0, index=0)


def test_without_background_episodes_are_n_way() -> None:
    clips = _clips({"beep": 3, "snap": 3})
    assert sample_episode(clips, 2, index=0).classes == ("beep", "snap")
    with pytest.raises(DatasetError, match="no 'background' class"):
        sample_episode(clips, 1, index=0, ways=1)


def test_mean_ci_on_hand_worked_numbers() -> None:
    # mean 2, sd 1, n 3: half width = t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(2.484138, abs=1e-6)
    # mean 0.8, sd sqrt(2 * 0.05^2 / 1) = 0.070711, n 2: t(0.975, 1) * 0.070711 / sqrt(2) = 12.706205 * 0.05 = 0.635310
    assert mean_ci([0.75, 0.85])[1] == pytest.approx(0.635310, abs=1e-6)
    assert mean_ci([0.5] * 4) == (0.5, 0.0)
    assert math.isnan(mean_ci([0.7])[1])
    with pytest.raises(ValueError):
        mean_ci([])


def test_score_averages_f1_over_the_labels_present() -> None:
    # a: tp 1, fn 1 -> F1 2/3; b: tp 1, fp 1, fn 1 -> 1/2; "c" is predicted but absent: not averaged -> 7/12.
    accuracy, macro_f1 = score(["a", "a", "b", "b"], ["a", "b", "b", "c"])
    assert accuracy == pytest.approx(0.5)
    assert macro_f1 == pytest.approx(7 / 12)


def test_baselines_separate_two_clusters() -> None:
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.normal(-3, 1, (4, 5)), rng.normal(3, 1, (4, 5))])
    test = np.concatenate([rng.normal(-3, 1, (6, 5)), rng.normal(3, 1, (6, 5))])
    labels = ["x"] * 4 + ["y"] * 4
    for kind in ("logreg", "ncm"):
        predicted, seconds = fit_predict_baseline(kind, train, labels, test)
        assert predicted == ["x"] * 6 + ["y"] * 6
        assert seconds >= 0


def test_paired_differences_use_the_same_episodes() -> None:
    def run(method: str, episode: int, accuracy: float) -> FewshotRun:
        return FewshotRun(
            method=method,
            shots=1,
            episode=episode,
            accuracy=accuracy,
            macro_f1=accuracy,
            train_s=0.0,
            train_clips=2,
            test_clips=2,
            labelled_background=0.0,
            classes=["a", "b"],
        )

    runs = [run("ref", 0, 0.5), run("ref", 1, 0.7), run("new", 0, 0.6), run("new", 1, 0.9)]
    (row,) = paired_differences(runs, "ref", [1])
    # differences 0.1 and 0.2: mean 0.15
    assert row["method"] == "new" and row["episodes"] == 2
    assert row["difference"] == pytest.approx(0.15)


def test_read_set_and_group_split_keep_each_source_on_one_side(tmp_path: Path) -> None:
    from experiments.realsets import by_label, read_set, split_by_group

    rows = ["file,label,source_id,near_silent"]
    for label in ("a", "b"):
        for source in range(4):
            for take in range(3):
                rows.append(f"{label}/{source}-{take}.flac,{label},{source},{int(source == 3 and take == 2)}")
    (tmp_path / "metadata.csv").write_text("\n".join(rows) + "\n")
    clips = read_set(tmp_path)
    assert len(clips) == 22  # the two flagged near-silent rows are left out
    groups = by_label(clips)
    for shots in (1, 2, 3):
        train, test = split_by_group(groups["a"], shots, np.random.default_rng(7))
        assert len(train) == shots
        assert not {c.group for c in train} & {c.group for c in test}
        assert test
    one, _ = split_by_group(groups["a"], 1, np.random.default_rng(7))
    three, _ = split_by_group(groups["a"], 3, np.random.default_rng(7))
    assert one[0] == three[0] and len({c.group for c in three}) == 3  # nested, and one source per clip


def test_sample_episode_with_groups_never_tests_a_trained_source() -> None:
    clips = {label: [Path(f"{label}/{s}-{t}.wav") for s in range(5) for t in range(3)] for label in ("a", "b", "c")}
    groups = {p: p.name.split("-")[0] for paths in clips.values() for p in paths}
    episode = sample_episode(clips, 2, index=0, seed=0, groups=groups)
    for label in episode.classes:
        trained = {groups[p] for p in episode.train[label]}
        assert len(trained) == 2
        assert not trained & {groups[p] for p in episode.test[label]}
