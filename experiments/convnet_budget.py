"""How long does `snapkit train` take on a realistic dataset, and does the ConvNet learn anything there?

    python experiments/convnet_budget.py ../shared/sounds/kitchen20 --classes cutlery dishwasher drawer \
        frying-pan sweep --train-per-class 50 [--backbone convnet] [-- --max-minutes 5 ...]

From a labelled set (a folder with ``metadata.csv``: ``file`` and ``label`` columns, and a source-recording column
such as ``source_id``) it builds, in a temporary folder, a class-folder training set of ``--train-per-class`` clips
per class and a test set of the other clips of those classes, split by source recording so no near-copy of a test
clip is trained on. Files are symlinked, never copied. Then it runs the real CLI as a user would: ``snapkit
train`` (timed end to end, plan and estimate included) and ``snapkit evaluate`` on the test set.

Prints and writes ``experiments/results/convnet_budget/<name>.json``: wall time, the estimate the plan printed,
the quality estimate of ``train`` (its own held-out split or cross-validation), held-out test accuracy and chance.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

GROUP_COLUMNS = ("source_id", "fsID", "source", "group")


def build_split(
    set_dir: Path, classes: list[str], train_per_class: int, out_dir: Path, seed: int
) -> dict[str, dict[str, int]]:
    """Symlink ``out_dir/train/<label>/`` and ``out_dir/test/<label>/``; returns clip counts per side and label.

    Source recordings are dealt to training in a seeded random order until a class has ``train_per_class`` clips;
    the clips left over from the last dealt recording are dropped (they would be near-copies of training clips).
    """
    with (set_dir / "metadata.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    group_column = next((c for c in GROUP_COLUMNS if rows and c in rows[0]), None)
    rng = np.random.default_rng(seed)
    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    for label in classes:
        groups: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            if row["label"] == label and row.get("near_silent", "0") in ("0", ""):
                groups[row[group_column] if group_column else row["file"]].append(row["file"])
        if not groups:
            raise SystemExit(f"no clips of class {label!r} in {set_dir / 'metadata.csv'}.")
        order = sorted(groups)
        rng.shuffle(order)
        train: list[str] = []
        test: list[str] = []
        for group in order:
            if len(train) < train_per_class:
                train += groups[group][: train_per_class - len(train)]
            else:
                test += groups[group]
        for side, files in (("train", train), ("test", test)):
            folder = out_dir / side / label
            folder.mkdir(parents=True, exist_ok=True)
            for name in files:
                (folder / Path(name).name).symlink_to((set_dir / name).resolve())
            counts[side][label] = len(files)
    return counts


def run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "snapkit", *args], env=env, capture_output=True, text=True)
    return result, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set_dir", type=Path, help="labelled set with metadata.csv (e.g. ../shared/sounds/kitchen20)")
    parser.add_argument("--classes", nargs="+", required=True, help="labels to train on")
    parser.add_argument("--train-per-class", type=int, default=50, help="training clips per class")
    parser.add_argument("--backbone", default="convnet", help="snapkit train --backbone")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and of training")
    parser.add_argument("--name", default=None, help="result file name (default: backbone)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/convnet_budget"), help="results folder")
    argv = sys.argv[1:]
    # Everything after a lone "--" goes to `snapkit train` as it is (argparse cannot take it as a positional).
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.train_args = argv[cut + 1 :]
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        counts = build_split(args.set_dir, args.classes, args.train_per_class, root, args.seed)
        print(f"train: {counts['train']}\ntest:  {counts['test']}", flush=True)
        run_dir = root / "run"
        options = ["--backbone", args.backbone, "--out", str(run_dir), "--seed", str(args.seed), *args.train_args]
        train, train_s = run(["train", "--data", str(root / "train"), *options], env)
        print(train.stdout, train.stderr, sep="\n", flush=True)
        if train.returncode != 0:
            raise SystemExit(f"snapkit train failed (exit {train.returncode}).")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        evaluate, _ = run(
            [
                "evaluate",
                str(run_dir / "model.snapkit"),
                "--data",
                str(root / "test"),
                "--report",
                str(root / "test.json"),
            ],
            env,
        )
        if evaluate.returncode != 0:
            raise SystemExit(f"snapkit evaluate failed (exit {evaluate.returncode}):\n{evaluate.stderr}")
        test = json.loads((root / "test.json").read_text())
    # The plan's time line, unwrapped from the panel it is printed in.
    panel = " ".join(line.strip("│ ") for line in train.stdout.splitlines())
    planned = re.search(r"time: (.*?) augmentation:", panel)
    result = {
        "backbone": args.backbone,
        "train_args": args.train_args,
        "train_counts": counts["train"],
        "test_counts": counts["test"],
        "train_wall_s": round(train_s, 1),
        "plan_time_line": planned.group(1).strip() if planned else None,
        "train_estimate_accuracy": metrics.get("accuracy"),
        "near_chance": metrics.get("chance", {}).get("near_chance"),
        "train_warnings": metrics.get("warnings", []),
        "time": metrics.get("time"),
        "test_accuracy": test["accuracy"],
        "test_macro_f1": test["macro_f1"],
        # Every test clip belongs to a sound class: a uniform guess over the classes is right 1/classes of the time.
        "test_chance": 1 / len(args.classes),
        "test_background_share": _background_share(test),
    }
    name = args.name or args.backbone
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _background_share(report: dict) -> float:
    """Share of test clips answered ``background`` (its column of the confusion matrix)."""
    classes = list(report["classes"])
    if "background" not in classes:
        return 0.0
    matrix = np.asarray(report["confusion_matrix"])
    return float(matrix[:, classes.index("background")].sum() / max(1, matrix.sum()))


if __name__ == "__main__":
    main()
