"""Does cross-validation tell the truth when the dataset has recorded background clips?

    SNAPKIT_WEIGHTS_DIR=../shared/models python experiments/cv_leak.py ../shared/sounds [--seeds 0 1 2] [--leak]

A head on a frozen backbone trains on cached augmented views, and a view may mix in a recorded background clip.
Before issue 10 (item 8) the views of every fold were made from the whole background pool, so a fold trained on
sounds mixed with the very background clips it then tested on. This script measures what that does to the figure
``snapkit train`` prints: per episode, the cross-validated estimate (accuracy over the held-out folds) against the
accuracy on clips of other sources and on background from the unused half of the long recordings.

Episode ``seed``: 6 classes (3 kitchen20, 3 urban), ``--shots`` clips each from different sources; background
clips cut from the first half of the four long household recordings; the test set is up to ``--test-per-class``
clips a class from other sources plus as many background stretches from the second halves. ``--leak`` trains the
way it was before (every view allowed in every fold), for the before/after comparison. Training has no time limit
here, so a busy machine changes the time taken, not the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.realsets import by_label, read_set, split_by_group  # noqa: E402

CLASSES = {"kitchen20": ("blender", "cutlery", "water-flowing"), "urban": ("dog_bark", "car_horn", "siren")}
CLIP_S = 5.0


def build_episode(sounds: Path, data: Path, seed: int, shots: int, test_per_class: int) -> list[tuple[Path, str]]:
    """Training folder into ``data``; returns the test clips ``(path, label)`` (background stretches written to
    ``data.parent / 'test-background'``)."""
    rng = np.random.default_rng(seed)
    test: list[tuple[Path, str]] = []
    for name, labels in CLASSES.items():
        groups = by_label(read_set(sounds / name))
        for label in labels:
            train, held = split_by_group(groups[label], shots, rng)
            (data / label).mkdir(parents=True)
            for clip in train:
                (data / label / clip.path.name).symlink_to(clip.path.resolve())
            picks = rng.permutation(len(held))[:test_per_class]
            test += [(held[i].path, label) for i in sorted(picks)]
    (data / "background").mkdir()
    held_bg = data.parent / "test-background"
    held_bg.mkdir(exist_ok=True)
    for path in sorted((sounds / "background").glob("*.flac")):
        audio, rate = sf.read(path, dtype="float32")
        step = round(CLIP_S * rate)
        half = len(audio) // 2
        for k in range(half // step):
            sf.write(data / "background" / f"{path.stem}-{k}.wav", audio[k * step : (k + 1) * step], rate)
        for k in range((len(audio) - half) // step):
            out = held_bg / f"{path.stem}-{k}.wav"
            sf.write(out, audio[half + k * step : half + (k + 1) * step], rate)
            test.append((out, "background"))
    return test


def run(sounds: Path, seed: int, shots: int, test_per_class: int, leak: bool) -> dict[str, float]:
    from snapkit.audio.io import load_audio
    from snapkit.models.bundle import load_model
    from snapkit.models.predict import clip_probabilities, decide
    from snapkit.training import train as train_module
    from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        test = build_episode(sounds, work / "data", seed, shots, test_per_class)
        original = train_module.TrainingInputs.dataset
        if leak:  # the behaviour before: no view left out of any fold

            def leaky(self, indices, *, train):  # type: ignore[no-untyped-def]
                heard, self.heard = self.heard, [tuple(frozenset() for _ in h) for h in self.heard]
                try:
                    return original(self, indices, train=train)
                finally:
                    self.heard = heard

            train_module.TrainingInputs.dataset = leaky  # type: ignore[method-assign]
        try:
            settings = TrainSettings(backbone="sfx-cnn9", seed=seed, max_minutes=None)
            plan = plan_training(work / "data", work / "run", settings)
            result = run_training(plan, trainer_options=TrainerOptions(progress_bar=False), log=lambda _m: None)
        finally:
            train_module.TrainingInputs.dataset = original  # type: ignore[method-assign]
        bundle = load_model(result.bundle_path)
        rate = bundle.model.sample_rate_hz
        answers = [decide(bundle, clip_probabilities(bundle, load_audio(p, rate)[0])) for p, _ in test]
        truth = np.array([label for _, label in test])
        right = np.array(answers) == truth
        is_bg = truth == "background"
        report = result.report
        background = report.get("per_class", {}).get("background", {})
        return {
            "seed": seed,
            "folds": plan.folds,
            "estimate_accuracy": float(report["accuracy"]),
            "test_accuracy": float(right.mean()),
            "estimate_background_recall": float(background.get("recall", float("nan"))),
            "test_background_recall": float(right[is_bg].mean()),
            "test_sound_accuracy": float(right[~is_bg].mean()),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sounds", type=Path, help="the shared real recordings (../shared/sounds)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shots", type=int, default=6)
    parser.add_argument("--test-per-class", type=int, default=12)
    parser.add_argument("--leak", action="store_true", help="train as before: every view in every fold")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one: no fight with other jobs)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for seed in args.seeds:
        row = run(args.sounds, seed, args.shots, args.test_per_class, args.leak)
        rows.append(row)
        print(json.dumps(row), flush=True)
    gap = np.array([r["estimate_accuracy"] - r["test_accuracy"] for r in rows])
    print(
        f"{'leak' if args.leak else 'fixed'}: estimate - test accuracy mean {gap.mean():+.3f}, "
        f"worst {gap[np.argmax(np.abs(gap))]:+.3f}; test accuracy {np.mean([r['test_accuracy'] for r in rows]):.3f}"
    )


if __name__ == "__main__":
    main()
