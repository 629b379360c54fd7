"""Quality guard on real recordings (../shared/sounds): a change that breaks real-world quality fails CI.

Two small fixed episodes, a few minutes of CPU together, both with the sfx-cnn9 head trained as `snapkit train`
trains it by default (cross-validated thresholds and all):

* **Recognition**: 6 classes (3 kitchen20, 3 urban) of 6 clips each from different source recordings, plus
  background clips cut from one half of the long household recordings; tested on up to 12 clips a class from
  other sources. Floors on accuracy and on the share of sound clips lost to ``background``.
* **Detection**: ``experiments/timing.py``'s fixed check (dog_bark, car_horn, drawer over real ambience at 6 dB,
  plus ambience with other sounds for false alarms), with a floor on event F1.

The floors sit below what the code reaches (figures in experiments/RESULTS.md) by a margin for run-to-run
variation (the head's training is time-limited, so a loaded machine trains it less), and above what snapkit
reached before the clip head (a third of real sounds lost to background; detection event F1 0.13).

Skipped locally when the recordings or the weights are missing; CI has both and fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO, SHARED_MODELS, skip_or_fail

SOUNDS = Path(os.environ.get("SNAPKIT_SOUNDS_DIR", REPO.parent / "shared" / "sounds"))
CLASSES = {"kitchen20": ("blender", "cutlery", "water-flowing"), "urban": ("dog_bark", "car_horn", "siren")}
SHOTS = 6
TEST_PER_CLASS = 12
BACKGROUND_CLIP_S = 5.0
BACKGROUND_CLIPS = 8

# Floors (measured figures in experiments/RESULTS.md, "Quality guard").
# Recognition measured 0.81 accuracy, 0 % lost (2026-12-05); 0.875 and 1.4 % with the head fitted in memory on the
# clean views (2026-12-07); detection event F1 0.20 and median onset error 15 ms (0.13 before the clip head), 0.167
# and 76 ms since (2026-12-07, as before that change). Detection is far from issue 21's targets: this floor only
# keeps it from falling back.
ACCURACY_FLOOR = 0.75
LOST_TO_BACKGROUND_CEILING = 0.10
DETECTION_F1_FLOOR = 0.15
# The onset figure is a median over the 7-8 onsets the small check matches: the false-alarm budget step in `train`
# (raising thresholds on the 1.8 min of background) drops one of them and moves it from 15 to 76 ms, p90 150 ms
# both times (experiments/RESULTS.md, 2026-12-06). The ceiling catches edges left on the model's 0.25 s hop, not that.
ONSET_ERROR_CEILING_MS = 100.0

pytestmark = pytest.mark.slow


def _require() -> Path:
    if not all((SOUNDS / name / "metadata.csv").is_file() for name in CLASSES):
        skip_or_fail(f"the real recordings are not at {SOUNDS} (set SNAPKIT_SOUNDS_DIR)")
    weights = Path(os.environ.get("SNAPKIT_WEIGHTS_DIR", SHARED_MODELS))
    if not (weights / "sfx-cnn9" / "checkpoint.pth").is_file():
        skip_or_fail(f"the sfx-cnn9 weights are not in {weights} (set SNAPKIT_WEIGHTS_DIR)")
    return weights


def _episode(data: Path) -> list[tuple[Path, str]]:
    """Write the training folder (symlinks and cut background clips) into ``data``; return the test clips."""
    from experiments.realsets import by_label, read_set, split_by_group

    rng = np.random.default_rng(0)
    test: list[tuple[Path, str]] = []
    for name, labels in CLASSES.items():
        groups = by_label(read_set(SOUNDS / name))
        for label in labels:
            train, held = split_by_group(groups[label], SHOTS, rng)
            (data / label).mkdir(parents=True)
            for clip in train:
                (data / label / clip.path.name).symlink_to(clip.path.resolve())
            picks = rng.permutation(len(held))[:TEST_PER_CLASS]
            test += [(held[i].path, label) for i in sorted(picks)]
    # Background: 5 s stretches of the first half of each long household recording (the second half is unused).
    (data / "background").mkdir()
    written = 0
    for path in sorted((SOUNDS / "background").glob("*.flac")):
        audio, rate = sf.read(path, dtype="float32")
        step = round(BACKGROUND_CLIP_S * rate)
        for k in range(len(audio) // 2 // step):
            if written < BACKGROUND_CLIPS and k < 2:
                sf.write(data / "background" / f"{path.stem}-{k}.wav", audio[k * step : (k + 1) * step], rate)
                written += 1
    return test


def test_recognition_on_real_recordings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = _require()
    monkeypatch.setenv("SNAPKIT_WEIGHTS_DIR", str(weights))
    monkeypatch.setenv("SNAPKIT_CACHE_DIR", str(tmp_path / "cache"))
    from snapkit.audio.io import load_audio
    from snapkit.models.bundle import load_model
    from snapkit.models.predict import clip_probabilities, decide
    from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

    test = _episode(tmp_path / "data")
    plan = plan_training(tmp_path / "data", tmp_path / "run", TrainSettings(backbone="sfx-cnn9"))
    result = run_training(plan, trainer_options=TrainerOptions(progress_bar=False), log=lambda _m: None)
    bundle = load_model(result.bundle_path)
    rate = bundle.model.sample_rate_hz
    answers = [decide(bundle, clip_probabilities(bundle, load_audio(path, rate)[0])) for path, _ in test]
    truth = [label for _, label in test]
    accuracy = float(np.mean([a == t for a, t in zip(answers, truth, strict=True)]))
    lost = float(np.mean([a == "background" for a in answers]))
    print(f"real recognition: accuracy {accuracy:.3f}, lost to background {lost:.3f}, estimate {result.report}")
    assert accuracy >= ACCURACY_FLOOR, f"accuracy {accuracy:.3f} on real clips fell below {ACCURACY_FLOOR}"
    assert lost <= LOST_TO_BACKGROUND_CEILING, f"{lost:.0%} of real sounds answered background"


def test_detection_on_real_recordings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNAPKIT_WEIGHTS_DIR", str(_require()))
    monkeypatch.setenv("SNAPKIT_CACHE_DIR", str(tmp_path / "cache"))
    from experiments.timing import real_detection_check

    figures = real_detection_check(SOUNDS, tmp_path / "out")
    print(f"real detection check: {figures}")
    assert figures["event_f1"] >= DETECTION_F1_FLOOR, f"event F1 {figures['event_f1']:.3f} at 6 dB on real sounds"
    assert figures["onset_abs_median_ms"] <= ONSET_ERROR_CEILING_MS


def test_a_head_matches_logistic_regression_and_retrains_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tiny real episode (the first 6 classes of the sets, 5 clips each, household background): the default head
    is at least as accurate as logistic regression on the backbone's whole-clip embedding (less 0.02), and training
    the same data again embeds nothing (every view read from the cache)."""
    weights = _require()
    monkeypatch.setenv("SNAPKIT_WEIGHTS_DIR", str(weights))
    monkeypatch.setenv("SNAPKIT_CACHE_DIR", str(tmp_path / "cache"))
    import torch

    from experiments.fewshot import fit_predict_baseline
    from experiments.train_speed import draw_episode
    from snapkit.audio.io import load_audio
    from snapkit.models.bundle import load_model
    from snapkit.models.predict import clip_probabilities, decide
    from snapkit.training.augment import fit_to_length
    from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

    data, test = tmp_path / "data", tmp_path / "test"
    draw_episode(SOUNDS, 6, 5, 8, 0, data, test)
    runs = []
    for name in ("first", "again"):
        plan = plan_training(data, tmp_path / name, TrainSettings(backbone="sfx-cnn9"))
        runs.append(run_training(plan, trainer_options=TrainerOptions(progress_bar=False), log=lambda _m: None))
    assert runs[1].embedding_stats is not None and runs[1].embedding_stats.startswith("embedded 0 new clips")

    bundle = load_model(runs[0].bundle_path)
    rate = bundle.model.sample_rate_hz
    items = {split: sorted((p, p.parent.name) for p in split.glob("*/*")) for split in (data, test)}
    audio = {p: load_audio(p, rate)[0] for split in items.values() for p, _ in split}
    answers = [decide(bundle, clip_probabilities(bundle, audio[p])) for p, _ in items[test]]
    truth = [label for _, label in items[test]]
    head = float(np.mean([a == t for a, t in zip(answers, truth, strict=True)]))

    backbone = bundle.model.backbone
    assert backbone is not None
    with torch.no_grad():

        def embed(wave: np.ndarray) -> np.ndarray:
            wave = fit_to_length(wave, 2 * rate) if len(wave) < 2 * rate else wave
            return backbone.embed(torch.as_tensor(wave)[None]).numpy()[0]

        train_x = np.stack([embed(audio[p]) for p, _ in items[data]])
        test_x = np.stack([embed(audio[p]) for p, _ in items[test]])
    predicted, _ = fit_predict_baseline("logreg", train_x, [label for _, label in items[data]], test_x)
    logreg = float(np.mean([a == t for a, t in zip(predicted, truth, strict=True)]))
    print(f"tiny real episode: head {head:.3f}, logistic regression {logreg:.3f}")
    assert head >= logreg - 0.02, f"the head ({head:.3f}) fell below logistic regression ({logreg:.3f})"
