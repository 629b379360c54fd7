"""Training time and few-shot quality: snapkit's heads and ConvNet against a plain embedding baseline.

    SNAPKIT_WEIGHTS_DIR=../shared/models python experiments/train_quality.py [DATA_DIR]

Without DATA_DIR a dataset is generated (6 sound classes + background, ``--clips`` per class). With DATA_DIR (any
``DIR/<label>/*.wav`` folder with a ``background`` class) your own recordings are used.

For each model, the same stratified k-fold split (snapkit's ``stratified_folds``) gives a cross-validated clip
accuracy and macro F1; wall time is for the whole ``snapkit train`` (all folds + the final model). The baseline is
logistic regression on the plain 512-d sfx-cnn9 clip embedding (mean over mels, max over time) of the clean clip,
no augmentation: the reference figure in ``../shared/models/README.md``.

Writes ``experiments/results/train_quality/train_quality.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from snapkit.dataset.scan import scan_dataset
from snapkit.eval.synth import make_dataset
from snapkit.models.backbones.registry import load_backbone
from snapkit.training.augment import fit_to_length
from snapkit.training.data import load_clipset, stratified_folds
from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

CLASSES = ("beep", "smoke_alarm", "snap", "scratch", "chirp", "knock")


def baseline_logreg(data_dir: Path, folds: int, seed: int) -> dict[str, float]:
    """Cross-validated accuracy / macro F1 of logistic regression on sfx-cnn9 clip embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.preprocessing import StandardScaler

    backbone = load_backbone("sfx-cnn9")
    clips = load_clipset(scan_dataset(data_dir), backbone.frontend_config.sample_rate_hz, progress=False)
    n = round(2.0 * clips.sample_rate_hz)
    waves = torch.as_tensor(np.stack([fit_to_length(w, n) for w in clips.waveforms]))
    with torch.no_grad():
        embeddings = torch.cat([backbone.embed(waves[i : i + 16]) for i in range(0, len(waves), 16)]).numpy()
    labels = np.asarray(clips.labels)
    predicted = np.empty_like(labels)
    for train_idx, test_idx in stratified_folds(labels, folds, seed):
        scaler = StandardScaler().fit(embeddings[train_idx])
        clf = LogisticRegression(max_iter=2000).fit(scaler.transform(embeddings[train_idx]), labels[train_idx])
        predicted[test_idx] = clf.predict(scaler.transform(embeddings[test_idx]))
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="?", type=Path, help="class-folder dataset (default: generated)")
    parser.add_argument("--clips", type=int, default=5, help="clips per class when generating")
    parser.add_argument("--classes", nargs="+", default=list(CLASSES), help="sound classes when generating")
    parser.add_argument("--seed", type=int, default=0, help="seed of generation and folds")
    parser.add_argument("--backbones", nargs="+", default=["sfx-cnn9", "convnet"], help="snapkit models to train")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/train_quality"), help="results folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data_dir
        if data is None:
            data = Path(tmp) / "data"
            make_dataset(
                data,
                classes=tuple(args.classes),
                clips_per_class=args.clips,
                background_clips=args.clips,
                seed=args.seed,
            )
        rows = []
        folds = 0
        for backbone in args.backbones:
            plan = plan_training(data, Path(tmp) / f"run-{backbone}", TrainSettings(backbone=backbone, seed=args.seed))
            folds = max(folds, plan.folds)
            start = time.perf_counter()
            result = run_training(plan, trainer_options=TrainerOptions(progress_bar=False), log=lambda m: None)
            rows.append(
                {
                    "model": f"snapkit {backbone}",
                    "accuracy": result.report.get("accuracy"),
                    "macro_f1": result.report.get("macro_f1"),
                    "train_wall_s": round(time.perf_counter() - start, 1),
                    "estimate": plan.estimate,
                }
            )
            print(rows[-1], flush=True)
        # The same folds as snapkit's cross-validation; when snapkit used a held-out split (>= 10 clips), 5 folds.
        k = folds if folds >= 2 else 5
        base = baseline_logreg(data, k, args.seed)
        rows.append(
            {
                "model": "logistic regression on sfx-cnn9 clip embedding",
                **base,
                "train_wall_s": None,
                "estimate": f"{k}-fold cross-validation",
            }
        )
        print(rows[-1], flush=True)
    (args.out / "train_quality.json").write_text(json.dumps(rows, indent=2))
    lines = ["| model | accuracy | macro F1 | train wall s | estimate |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['model']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['train_wall_s']} | {r['estimate']} |"
        for r in rows
    ]
    (args.out / "train_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
