"""The quiet gate (``--min-level-dbfs``) on real recordings: does it change what is found, and what does it save?

    SNAPKIT_WEIGHTS_DIR=../shared/models python experiments/quiet_gate.py ../shared/sounds [--gate-dbfs -50]

A quiet house: held-out real events (urban dog_bark, car_horn, siren; sources not trained on) at their recorded
level, 12-25 s apart, on a real household recording turned down to ``--room-dbfs`` (RMS). An sfx-cnn9 head is
trained quickly on 6 clips of each class from other sources plus background clips cut from another household
recording (``snapkit train --no-estimate``). The same stream goes through the same detector (window mode, as
sfx-cnn9 runs) with and without the gate: the events must be the same; the windows run and the wall time say what
the gate saves.
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

from experiments.realsets import by_label, read_set, split_by_group  # noqa: E402

CLASSES = ("dog_bark", "car_horn", "siren")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sounds", type=Path, help="../shared/sounds")
    parser.add_argument("--gate-dbfs", type=float, default=-50.0, help="the gate's level, dBFS")
    parser.add_argument("--room-dbfs", type=float, default=-65.0, help="RMS of the room between the sounds, dBFS")
    parser.add_argument("--events", type=int, default=15, help="held-out events in the stream")
    parser.add_argument("--shots", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/quiet_gate"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from snapkit.audio.io import load_audio, write_wav
    from snapkit.audio.levels import rms_dbfs
    from snapkit.detection.detector import Detector, DetectorSettings
    from snapkit.models.bundle import load_model
    from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

    rng = np.random.default_rng(args.seed)
    clips = by_label(c for c in read_set(args.sounds / "urban") if c.label in CLASSES)
    rooms = sorted((args.sounds / "background").glob("*.flac"))
    report: dict[str, object] = {"settings": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="snapkit-gate-") as tmp_name:
        tmp = Path(tmp_name)
        data, tests = tmp / "data", []
        for label in CLASSES:
            train, test = split_by_group(clips[label], args.shots, rng)
            (data / label).mkdir(parents=True)
            for clip in train:
                (data / label / clip.path.name).symlink_to(clip.path.resolve())
            tests += test
        (data / "background").mkdir()
        bed, rate = load_audio(rooms[0], 32_000)
        for k in range(8):
            write_wav(data / "background" / f"room-{k}.wav", bed[k * 5 * rate : (k + 1) * 5 * rate], rate)
        plan = plan_training(data, tmp / "run", TrainSettings(backbone="sfx-cnn9", seed=args.seed, estimate=False))
        start = time.monotonic()
        result = run_training(plan, trainer_options=TrainerOptions(progress_bar=False), log=lambda m: None)
        report["train_s"] = time.monotonic() - start
        bundle = load_model(result.bundle_path)
        rate = bundle.model.sample_rate_hz

        room, _ = load_audio(rooms[1], rate)
        room = room * np.float32(10 ** ((args.room_dbfs - rms_dbfs(room)) / 20))
        picked = [tests[i] for i in rng.choice(len(tests), size=min(args.events, len(tests)), replace=False)]
        parts, cursor, planted = [], 0, []
        for clip in picked:
            gap = int(rng.uniform(12, 25) * rate)
            sound, _ = load_audio(clip.path, rate)
            parts += [np.zeros(gap, np.float32), sound]
            planted.append((clip.label, (cursor + gap) / rate, (cursor + gap + len(sound)) / rate))
            cursor += gap + len(sound)
        stream = np.concatenate([*parts, np.zeros(10 * rate, np.float32)])
        stream = stream + np.resize(room, len(stream))
        report["stream_s"] = len(stream) / rate

        runs = {}
        for name, gate in (("without", None), ("with", args.gate_dbfs)):
            detector = Detector(bundle, DetectorSettings(min_level_dbfs=gate))
            start = time.monotonic()
            updates = []
            for i in range(0, len(stream), rate):
                updates += detector.push(stream[i : i + rate])
            updates += detector.flush()
            seconds = time.monotonic() - start
            events = [u.event for u in updates if u.kind == "end"]
            on_sounds = [e for e in events if any(a - 0.5 < e.offset_s and e.onset_s < b + 0.5 for _, a, b in planted)]
            found = [
                any(a - 0.5 < e.offset_s and e.onset_s < b + 0.5 and e.label == lab for e in events)
                for lab, a, b in planted
            ]
            runs[name] = on_sounds
            report[name] = {
                "events": len(events),
                "events_on_sounds": len(on_sounds),
                "events_in_the_quiet": len(events) - len(on_sounds),
                "sounds_found_with_their_label": int(sum(found)),
                "windows_run": detector.scorer.windows_run,  # type: ignore[union-attr]
                "windows_skipped": detector.scorer.windows_skipped,  # type: ignore[union-attr]
                "wall_s": seconds,
                "real_time_factor": seconds / (len(stream) / rate),
            }
            print(name, json.dumps(report[name]), flush=True)

        # Events on the planted sounds, the same with and without the gate (to the 10 ms cell)?
        def key(e: object) -> tuple:
            return (e.label, round(e.onset_s, 2), round(e.offset_s, 2))  # type: ignore[attr-defined]

        report["identical_events_on_sounds"] = [key(e) for e in runs["with"]] == [key(e) for e in runs["without"]]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quiet_gate.json").write_text(json.dumps(report, indent=2, default=str))
    print(
        f"{report['stream_s']:.0f} s quiet house, {len(picked)} events: "
        f"events on the sounds identical {report['identical_events_on_sounds']}; "
        f"windows run {report['without']['windows_run']} -> {report['with']['windows_run']}; "  # type: ignore[index]
        f"real-time factor {report['without']['real_time_factor']:.3f} -> "  # type: ignore[index]
        f"{report['with']['real_time_factor']:.3f}"  # type: ignore[index]
    )


if __name__ == "__main__":
    main()
