"""One round of hard-negative mining on real recordings: false alarms per hour and detection, before and after.

    SNAPKIT_WEIGHTS_DIR=../shared/models python experiments/mining.py ../shared/sounds [--mine-minutes 30]

Issue 11's measurement. The user's story: train on a few clips of each sound and some room tone, leave the detector
running on ordinary audio with none of the sounds (``--mine-minutes`` of it), collect what it wrongly detected with
``snapkit mine`` into ``background``, train again.

Data (split by source recording, nothing on both sides; ``experiments/timing.py``'s real split):
* events ``dog_bark``, ``car_horn``, ``drawer``: ``--train-clips`` clips each to train on, held-out sources planted
  in the test soundscape at ``--snr`` dB;
* ambience (fridge, stove-fan, air_conditioner, engine_idling and the four long household recordings): the
  training side is the user's ``background`` class and the bed of the mining audio; the held-out side is the bed
  of the test audio;
* other sounds (kitchen and street sounds that are none of the events): each class's sources are split in two
  halves; one half is planted in the mining audio, the other in the held-out false-alarm audio.

Measured before and after the round: false alarms per hour on ``--test-minutes`` of held-out ambience with other
sounds (every detection is one), and event recall / F1 on a ``--minutes`` soundscape of held-out events, with the
bundle's thresholds as ``snapkit train`` sets them (false-alarm budget included). Also: what ``mine`` found, and how
long the retraining took with the embedding cache warm.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.realsets import LabelledClip, grouped_order, read_set  # noqa: E402
from experiments.timing import (  # noqa: E402
    CHECK_AMBIENCE,
    CHECK_EVENTS,
    load_bed,
    load_event_clips,
    overall,
    score,
    split_real_sets,
    write_real_train_folder,
)

OTHERS = (
    "cutlery",
    "plates",
    "chopping",
    "clean-dishes",
    "book",
    "peel",
    "children_playing",
    "street_music",
    "drilling",
    "siren",
)


def split_others(others: dict[str, list[LabelledClip]], seed: int) -> tuple[dict, dict]:
    """Each class's source recordings in two halves: (for mining, for testing)."""
    rng = np.random.default_rng(seed)
    mine, test = {}, {}
    for label, clips in others.items():
        groups = grouped_order(clips, rng)
        cut = max(1, len(groups) // 2)
        mine[label] = [c for g in groups[:cut] for c in g]
        test[label] = [c for g in groups[cut:] for c in g]
    return mine, test


def train(data: Path, run: Path, seed: int) -> tuple[object, dict]:
    from snapkit.models.bundle import load_model
    from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

    start = time.monotonic()
    plan = plan_training(data, run, TrainSettings(backbone="sfx-cnn9", seed=seed))
    result = run_training(plan, trainer_options=TrainerOptions(progress_bar=False), log=lambda m: print(f"  {m}"))
    info = {
        "seconds": time.monotonic() - start,
        "embedding": result.embedding_stats,
        "counts": plan.counts,
        "thresholds": {k: v.on for k, v in result.calibration.items()},
        "budget": result.report.get("false_alarm_budget"),
        "warnings": result.warnings,
    }
    return load_model(result.bundle_path), info


def measure(bundle: object, events: list, bed: list, others: list, args: argparse.Namespace, files: Path) -> dict:
    from experiments.timing import detect_file
    from snapkit.detection.detector import DetectorSettings
    from snapkit.eval.soundscape import make_soundscape

    rate = bundle.model.sample_rate_hz  # type: ignore[attr-defined]
    labels = list(bundle.config.labels)  # type: ignore[attr-defined]
    settings = DetectorSettings()
    scape = make_soundscape(
        events, bed, sample_rate_hz=rate, duration_s=args.minutes * 60, snr_db=args.snr, seed=args.seed, labels=labels
    )
    detected, _ = detect_file(bundle, settings, scape.write(files / "events.wav", overwrite=True))
    figures = score(scape.reference_events(), detected, scape.duration_s, labels)
    event, onset = overall(figures["event"]), overall(figures["onset_only"])
    quiet = make_soundscape(
        others,
        bed,
        sample_rate_hz=rate,
        duration_s=args.test_minutes * 60,
        snr_db=[0.0, 6.0, 12.0],
        seed=args.seed + 1,
        events_per_minute=args.others_per_minute,
    )
    alarms, _ = detect_file(bundle, settings, quiet.write(files / "quiet.wav", overwrite=True))
    hours = quiet.duration_s / 3600
    return {
        "false_alarms_per_hour": len(alarms) / hours,
        "false_alarms_per_class_per_hour": {label: sum(a.label == label for a in alarms) / hours for label in labels},
        "event_recall": event.recall,
        "event_f1": event.f1,
        "onset_recall": onset.recall,
        "events_planted": len(scape.events),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sounds", type=Path, help="../shared/sounds")
    parser.add_argument("--mine-minutes", type=float, default=30.0, help="minutes of ordinary audio mined")
    parser.add_argument("--test-minutes", type=float, default=20.0, help="minutes of held-out false-alarm audio")
    parser.add_argument("--minutes", type=float, default=4.0, help="minutes of the held-out event soundscape")
    parser.add_argument("--snr", type=float, default=6.0, help="SNR of the planted events, dB")
    parser.add_argument("--others-per-minute", type=float, default=4.0, help="other sounds planted per minute")
    parser.add_argument("--train-clips", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/mining"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one: no fight with other jobs)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    from experiments.timing import DEFAULT_BACKGROUND_TRAIN_CLIPS
    from snapkit.audio.io import load_audio
    from snapkit.detection.detector import Detector, DetectorSettings
    from snapkit.detection.mine import mine_files
    from snapkit.eval.soundscape import SoundClip, make_soundscape

    args.out.mkdir(parents=True, exist_ok=True)
    clips = [c for name in ("urban", "kitchen20") for c in read_set(args.sounds / name)]
    ambience_files = sorted((args.sounds / "background").glob("*.flac"))
    split = split_real_sets(
        clips,
        CHECK_EVENTS,
        CHECK_AMBIENCE,
        ambience_files=ambience_files,
        train_clips=args.train_clips,
        background_clips=DEFAULT_BACKGROUND_TRAIN_CLIPS,
        others=OTHERS,
        seed=args.seed,
    )
    mine_others, test_others = split_others(split.others, args.seed)
    report: dict[str, object] = {"settings": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="snapkit-mining-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        write_real_train_folder(split, data)
        bundle, report["train_before"] = train(data, tmp / "run1", args.seed)
        rate = bundle.model.sample_rate_hz
        events = load_event_clips({label: split.events[label] for label in bundle.config.labels}, rate)
        bed = load_bed(split, rate)
        test = load_event_clips(test_others, rate)
        report["before"] = before = measure(bundle, events, bed, test, args, tmp)
        print("before:", json.dumps(before), flush=True)

        # The mining audio: the training side's ambience with the other half of the other sounds in it.
        own_bed = [SoundClip(load_audio(c.path, rate)[0], "ambience", c.path.name) for c in split.background]
        mining = make_soundscape(
            load_event_clips(mine_others, rate),
            own_bed,
            sample_rate_hz=rate,
            duration_s=args.mine_minutes * 60,
            snr_db=[0.0, 6.0, 12.0],
            seed=args.seed + 2,
            events_per_minute=args.others_per_minute,
        )
        wav = mining.write(tmp / "ordinary.wav", overwrite=True)
        detector = Detector(bundle, DetectorSettings())
        start = time.monotonic()
        mined = mine_files(detector, [wav], data, "background", sample_rate_hz=rate, window_s=bundle.config.clip_s)
        report["mined"] = {
            "clips": len(mined.clips),
            "per_class": dict(mined.counts),
            "minutes": args.mine_minutes,
            "seconds": time.monotonic() - start,
        }
        print("mined:", json.dumps(report["mined"]), flush=True)
        bundle2, report["train_after"] = train(data, tmp / "run2", args.seed)
        report["after"] = after = measure(bundle2, events, bed, test, args, tmp)
        print("after:", json.dumps(after), flush=True)
    (args.out / "mining.json").write_text(json.dumps(report, indent=2, default=str))
    print(
        f"false alarms/h {before['false_alarms_per_hour']:.1f} -> {after['false_alarms_per_hour']:.1f}; "
        f"event recall {before['event_recall']:.3f} -> {after['event_recall']:.3f}; "
        f"F1 {before['event_f1']:.3f} -> {after['event_f1']:.3f}; retrain "
        f"{report['train_before']['seconds']:.0f} s -> {report['train_after']['seconds']:.0f} s"  # type: ignore[index]
    )


if __name__ == "__main__":
    main()
