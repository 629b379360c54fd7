"""How long `snapkit train` takes and what it gives, run exactly as a user runs it, cold and warm, idle or busy.

    SNAPKIT_WEIGHTS_DIR=../shared/models python experiments/train_speed.py ../shared/sounds \
        [--classes 31] [--clips 5] [--backbone sfx-cnn9] [--busy 2] [--test-per-class 10] [--seed 0]

One episode is drawn from the real sets under SOUNDS (every sub-folder with a ``metadata.csv``; the sets' classes
sorted, the first ``--classes`` of them, ``--clips`` training clips each from different source recordings, up to
``--test-per-class`` test clips from the other sources). ``background`` is cut from the long household recordings
(``SOUNDS/background``): 5 s stretches of each recording's first half for training, of its second half for
testing. Then, each as a subprocess through the installed entry point:

1. ``snapkit train --data D --backbone B --out R1`` with an empty feature cache (cold);
2. ``snapkit train ... --out R2`` again, every view now cached (warm, as after ``relabel`` or ``mine``);
3. ``snapkit evaluate R1/model.snapkit --data T --json``: accuracy on the held-out clips.

The baseline is logistic regression (sklearn, C = 1, standardised) on the backbone's whole-clip embedding of the
same training clips, scored on the same test clips (its time excludes embedding). ``--busy N`` keeps N other
processes spinning on the CPU for the whole run, as a user's machine often is.

Writes ``train_speed.json`` (one record per run, appended) into ``--out`` (default experiments/results/train_speed/).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.realsets import LabelledClip, by_label, read_set, split_by_group

BACKGROUND_CLIP_S = 5.0


def _spin(stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def draw_episode(
    sounds: Path, classes: int, clips: int, test_per_class: int, seed: int, data: Path, test: Path
) -> dict[str, int]:
    """Write the training folder ``data`` and the test folder ``test`` (symlinks and cut background clips)."""
    rng = np.random.default_rng(seed)
    pools: dict[str, list[LabelledClip]] = {}
    for meta in sorted(sounds.glob("*/metadata.csv")):
        if meta.parent.name == "background":  # the long household recordings: ambience, not classes
            continue
        for label, group in by_label(read_set(meta.parent)).items():
            pools.setdefault(label, []).extend(group)
    counts: dict[str, int] = {}
    for label in sorted(pools)[:classes]:
        train, held = split_by_group(pools[label], clips, rng)
        picks = [held[i] for i in sorted(rng.permutation(len(held))[:test_per_class])]
        for folder, chosen in ((data, train), (test, picks)):
            (folder / label).mkdir(parents=True, exist_ok=True)
            for clip in chosen:
                (folder / label / clip.path.name).symlink_to(clip.path.resolve())
        counts[label] = len(train)
    for folder in (data / "background", test / "background"):
        folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((sounds / "background").glob("*.flac")):
        audio, rate = sf.read(path, dtype="float32")
        step, half = round(BACKGROUND_CLIP_S * rate), len(audio) // 2
        for k in range(half // step):
            sf.write(data / "background" / f"{path.stem}-{k}.wav", audio[k * step : (k + 1) * step], rate)
            sf.write(test / "background" / f"{path.stem}-{k}.wav", audio[half + k * step : half + (k + 1) * step], rate)
    counts["background"] = len(list((data / "background").iterdir()))
    return counts


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "snapkit", *args], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"snapkit {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def logreg_baseline(backbone: str, data: Path, test: Path) -> dict[str, float]:
    from experiments.fewshot import clip_embeddings, fit_predict_baseline

    items = {split: [(p, p.parent.name) for p in sorted(split.glob("*/*")) if p.is_file()] for split in (data, test)}
    vectors = clip_embeddings(backbone, None, [p for split in items.values() for p, _ in split])
    train_x = np.stack([vectors[p] for p, _ in items[data]])
    test_x = np.stack([vectors[p] for p, _ in items[test]])
    predicted, seconds = fit_predict_baseline("logreg", train_x, [label for _, label in items[data]], test_x)
    truth = [label for _, label in items[test]]
    return {"accuracy": float(np.mean([a == b for a, b in zip(predicted, truth, strict=True)])), "fit_s": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sounds", type=Path)
    parser.add_argument("--classes", type=int, default=31)
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--backbone", default="sfx-cnn9")
    parser.add_argument("--busy", type=int, default=0, help="other processes spinning on the CPU meanwhile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-warm", action="store_true", help="skip the second (warm) train")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `snapkit train` options")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_speed")
    args = parser.parse_args(argv)

    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    try:
        with tempfile.TemporaryDirectory(prefix="snapkit-train-speed-") as tmp_name:
            tmp = Path(tmp_name)
            data, test = tmp / "data", tmp / "test"
            counts = draw_episode(args.sounds, args.classes, args.clips, args.test_per_class, args.seed, data, test)
            env = {**os.environ, "SNAPKIT_CACHE_DIR": str(tmp / "cache")}
            train = ["train", "--data", str(data), "--backbone", args.backbone, *args.extra]
            cold_s, cold_out = run_cli([*train, "--out", str(tmp / "r1")], env)
            print(cold_out)
            warm_s = None
            if not args.no_warm:
                warm_s, warm_out = run_cli([*train, "--out", str(tmp / "r2")], env)
                print(warm_out.splitlines()[-3:])
            _, evaluated = run_cli(["evaluate", str(tmp / "r1" / "model.snapkit"), "--data", str(test), "--json"], env)
            report = json.loads(evaluated)
            metrics = json.loads((tmp / "r1" / "metrics.json").read_text())
            baseline = None if args.no_baseline else logreg_baseline(args.backbone, data, test)
    finally:
        stop.set()
        for p in spinners:
            p.join()
    record = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "backbone": args.backbone,
        "classes": args.classes,
        "clips": args.clips,
        "train_clips": sum(counts.values()),
        "busy": args.busy,
        "extra": args.extra,
        "cold_s": round(cold_s, 1),
        "warm_s": None if warm_s is None else round(warm_s, 1),
        "accuracy": report.get("accuracy"),
        "estimate": metrics.get("accuracy"),
        "logreg": baseline,
    }
    print(json.dumps(record))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "train_speed.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
