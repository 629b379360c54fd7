"""How reliably the ConvNet learns `make demo`'s generated sounds: train on the demo's data with several seeds and
count the planted sounds the streaming detector finds in several generated minutes.

    python experiments/demo_check.py --seeds 0 1 2 --streams 1 2 3

One demo run is one draw; this is the spread behind "found 8 of 8". Generated sounds only: it checks the loop,
not quality on real recordings.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from snapkit.detection.detector import Detector
from snapkit.eval.synth import make_dataset, make_stream
from snapkit.models.bundle import load_model
from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

COLLAR_S = 0.2  # a detection within this of a planted onset, with its label, finds it
CHUNK = 8_000  # 0.5 s at 16 kHz, as the demo feeds it


def _near(planted_s: float, found_s: float) -> bool:
    return abs(planted_s - found_s) <= COLLAR_S


def check(seed: int, streams: list[int], work: Path, epochs: int | None) -> dict[str, object]:
    """Train the demo's ConvNet with ``seed`` and detect in each stream; counts of found and false alarms."""
    data = work / "data"
    if not data.exists():
        make_dataset(data, clips_per_class=10, background_clips=10, seed=0)  # the demo's dataset
    start = time.monotonic()
    plan = plan_training(data, work / f"run-{seed}", TrainSettings(backbone="convnet", seed=seed, epochs=epochs))
    result = run_training(plan, trainer_options=TrainerOptions(progress_bar=False), log=lambda message: None)
    seconds = time.monotonic() - start
    bundle = load_model(result.bundle_path)
    found = planted_total = false_alarms = 0
    for stream_seed in streams:
        audio, planted = make_stream(stream_seed, duration_s=60.0, classes=bundle.config.labels, snr_db=(10, 20))
        detector = Detector(bundle, sample_rate_hz=16_000)
        updates = []
        for at in range(0, len(audio), CHUNK):
            updates += detector.push(audio[at : at + CHUNK])
        hit: set[int] = set()
        for event in [u.event for u in updates + detector.flush() if u.kind == "end"]:
            match = [i for i, p in enumerate(planted) if p.label == event.label and _near(p.onset_s, event.onset_s)]
            if match:
                hit.add(match[0])
            else:
                false_alarms += 1
        found += len(hit)
        planted_total += len(planted)
    return {
        "seed": seed,
        "accuracy": result.report.get("accuracy"),
        "found": found,
        "planted": planted_total,
        "false_alarms": false_alarms,
        "train_s": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 3], help="seeds of the 60 s streams")
    parser.add_argument("--epochs", type=int, default=None, help="snapkit train --epochs (default: its own)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            row = check(seed, args.streams, Path(tmp), args.epochs)
            print(json.dumps(row), flush=True)
            rows.append(row)
    found, planted = sum(int(r["found"]) for r in rows), sum(int(r["planted"]) for r in rows)
    alarms = sum(int(r["false_alarms"]) for r in rows)
    print(f"found {found} of {planted} planted sounds, {alarms} false alarm(s), over {len(rows)} trainings")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
