"""Speed, memory and stamina: real-time factor per backbone, onset-to-report delay, training time, a long run.

    python experiments/speed.py                      # everything, with a 10-minute stamina run
    python experiments/speed.py --stamina-hours 24   # the full day (about 30 minutes of wall time for the ConvNet)
    python experiments/speed.py --models runs/demo/convnet/model.snapkit runs/head/model.snapkit --backbones

Real-time factor = processing seconds / audio seconds on ONE torch thread at the default hop (0.25 s), fed in 0.1 s
chunks as the microphone does, in each detector mode the backbone supports ("stream": each output frame computed
once; "window": a 2 s window every hop). Backbones whose pretrained weights are not on this machine are timed with
random weights: the arithmetic, and so the speed, is the same. Each measurement runs in its own process, so its
peak resident memory (ru_maxrss) is its own.

The delay is, per detected event of a trained model (``--models``), the stream time at which its start was reported
(the end of the audio the decision needed) minus its true onset, plus the compute time of the model run that decided
it. Training time is for 5 classes x 10 generated clips through ``snapkit train``'s library API. The stamina run
streams generated audio with planted events through one detector block by block (never held in memory) and records
resident memory as it goes.

Writes ``experiments/results/speed/speed.md`` (and ``speed.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from snapkit.detection.detector import Detector, DetectorSettings
from snapkit.eval.synth import iter_stream, make_stream
from snapkit.models.backbones.registry import BACKBONES, backbone_architecture
from snapkit.models.bundle import ModelBundle
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import ModelConfig
from snapkit.models.streaming import streaming_unsupported_reason

CLASSES = ("beep", "scratch", "smoke_alarm")
ARCHITECTURES = ("convnet", *BACKBONES)
TRAIN_CLASSES = ("beep", "smoke_alarm", "snap", "scratch")  # + background: 5 classes


def rss_mb() -> float:
    """Current resident memory in MB (Linux /proc; falls back to the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_bundle(backbone: str) -> ModelBundle:
    """A bundle of the given architecture with random weights: for timing only."""
    config = ModelConfig(backbone=backbone, labels=CLASSES)
    model = SoundClassifier(config, None if backbone == "convnet" else backbone_architecture(backbone))
    return ModelBundle.from_model(model.eval())


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_time_factor(bundle: ModelBundle, seconds: float, mode: str, chunk_s: float = 0.1) -> tuple[float, float]:
    """(RTF, mean compute seconds per model run, i.e. per hop) of the detector over ``seconds`` of generated audio."""
    rate = bundle.model.sample_rate_hz
    audio, _ = make_stream(0, duration_s=seconds, classes=("beep",), sample_rate_hz=rate)
    detector = Detector(bundle, DetectorSettings(mode=mode))  # type: ignore[arg-type]
    n = round(chunk_s * rate)
    detector.push(audio[: 30 * n])  # warm-up (allocations, first-call overheads)
    detector.reset()
    start = time.perf_counter()
    for i in range(0, len(audio), n):
        detector.push(audio[i : i + n])
    detector.flush()
    elapsed = time.perf_counter() - start
    return elapsed / seconds, elapsed / (seconds / detector.settings.hop_s)


def modes(backbone: str) -> list[str]:
    """The detector modes a backbone supports: stream (when exact) and window."""
    return (["stream"] if streaming_unsupported_reason(random_bundle(backbone).model) is None else []) + ["window"]


def in_child(*args: str) -> dict[str, object]:
    """Run ``speed.py *args`` in a fresh process (its own peak memory) and return the JSON it prints last."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"speed.py {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_rtf(backbone: str, mode: str, seconds: float) -> dict[str, object]:
    torch.set_num_threads(1)
    rtf, per_run = real_time_factor(random_bundle(backbone), seconds, mode)
    return {
        "backbone": backbone,
        "mode": mode,
        "rtf_1_thread": round(rtf, 4),
        "ms_per_hop": round(per_run * 1000, 2),
        "peak_rss_mb": round(peak_rss_mb(), 0),
    }


def child_train(backbone: str) -> dict[str, object]:
    """Train on 5 classes x 10 generated clips with snapkit's defaults (all threads, as ``snapkit train`` does)."""
    from snapkit.eval.synth import make_dataset
    from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SNAPKIT_CACHE_DIR"] = str(Path(tmp) / "cache")  # no embeddings cached by earlier runs
        data = Path(tmp) / "data"
        make_dataset(data, classes=TRAIN_CLASSES, clips_per_class=10, background_clips=10, seed=0)
        start = time.perf_counter()
        plan = plan_training(data, Path(tmp) / "run", TrainSettings(backbone=backbone))
        result = run_training(plan, trainer_options=TrainerOptions(progress_bar=False), log=lambda m: None)
        return {
            "backbone": backbone,
            "train_wall_s": round(time.perf_counter() - start, 1),
            "accuracy": result.report.get("accuracy"),
            "estimate": plan.estimate,
            "peak_rss_mb": round(peak_rss_mb(), 0),
        }


def delays(bundle: ModelBundle, compute_per_run_s: float, minutes: float = 5.0) -> list[float]:
    """Onset-to-report delays (s) of detected events that match a planted one (same label, onset within 0.2 s)."""
    rate = bundle.model.sample_rate_hz
    from snapkit.eval.synth import SOUND_CLASSES

    classes = tuple(label for label in bundle.labels if label in SOUND_CLASSES)
    if not classes:
        return []  # a model of real recordings: generated sounds cannot stand in for its classes
    audio, truth = make_stream(4, duration_s=minutes * 60, classes=classes, snr_db=(10, 20), sample_rate_hz=rate)
    detector = Detector(bundle)
    updates = []
    step = round(0.1 * rate)
    for i in range(0, len(audio), step):
        updates += detector.push(audio[i : i + step])
    result = []
    for update in updates:
        if update.kind != "start":
            continue
        match = [e for e in truth if e.label == update.event.label and abs(e.onset_s - update.event.onset_s) < 0.2]
        if match and match[0].onset_s > bundle.config.clip_s:  # nothing can be reported before the first window
            result.append(update.reported_at_s - match[0].onset_s + compute_per_run_s)
    return result


def stamina(bundle: ModelBundle, hours: float) -> dict[str, object]:
    """Stream ``hours`` of audio through one detector; memory samples every 10 minutes and event counts."""
    planted = found = 0
    samples: list[tuple[float, float]] = []
    detector = Detector(bundle)
    start = time.perf_counter()
    next_sample = 0.0
    for chunk in iter_stream(5, duration_s=hours * 3600, classes=CLASSES, chunk_s=1.0, snr_db=(10, 20)):
        planted += len(chunk.events)
        found += sum(u.kind == "end" for u in detector.push(chunk.audio))
        if chunk.start_s >= next_sample:
            samples.append((chunk.start_s / 3600, rss_mb()))
            print(
                f"stamina: {samples[-1][0]:.2f} h of audio, RSS {samples[-1][1]:.1f} MB, planted {planted}, "
                f"found {found}, wall {time.perf_counter() - start:.0f} s",
                flush=True,
            )
            next_sample += 600.0
    found += sum(u.kind == "end" for u in detector.flush())
    # Growth: the highest resident memory while streaming minus the first sample after warm-up (the first ten
    # minutes of audio allocate the detector's buffers and torch's caches).
    after_warmup = [mb for h, mb in samples if h >= min(0.2, hours / 2)] or [samples[-1][1]]
    return {
        "hours": hours,
        "wall_s": round(time.perf_counter() - start, 1),
        "planted_events": planted,
        "detected_events": found,
        "rss_mb_samples": [(round(h, 2), round(mb, 1)) for h, mb in samples],
        "rss_growth_after_warmup_mb": round(max(after_warmup) - after_warmup[0], 1),
        "rss_mb_after_flush": round(rss_mb(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--audio-s", "--seconds", dest="seconds", type=float, default=120.0, help="audio seconds per RTF measurement"
    )
    parser.add_argument(
        "--backbones", nargs="*", default=list(ARCHITECTURES), help="which backbones to time (none: skip)"
    )
    parser.add_argument(
        "--train", nargs="*", default=["convnet", "sfx-cnn9"], help="backbones to time training for (none: skip)"
    )
    parser.add_argument(
        "--models",
        nargs="*",
        type=Path,
        default=[Path("runs/demo/convnet/model.snapkit")],
        help="trained bundles (of generated classes) for the delay; the first also runs the stamina test",
    )
    parser.add_argument("--stamina-hours", type=float, default=1 / 6, help="hours of audio for the stamina run")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/speed"), help="results folder")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # internal: one measurement in a subprocess
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_rtf(rest[0], rest[1], args.seconds) if kind == "rtf" else child_train(rest[0])
        print(json.dumps(result))
        return
    torch.set_num_threads(1)  # the figure asked for: one thread, as on a small device
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {torch.get_num_threads()} torch thread, "
        f"torch {torch.__version__}, {platform.python_version()}",
    }

    rows = []
    for name in args.backbones:
        for mode in modes(name):
            rows.append(in_child("--audio-s", str(args.seconds), "--child", "rtf", name, mode))
            print(rows[-1], flush=True)
    results["rtf"] = rows

    training = []
    for name in args.train:
        try:
            training.append(in_child("--child", "train", name))
        except RuntimeError as error:  # e.g. pretrained weights missing on this machine
            print(f"training {name}: skipped ({str(error).strip().splitlines()[-1]})", flush=True)
            continue
        print(training[-1], flush=True)
    results["training"] = training

    from snapkit.models.bundle import load_model

    delay_rows = []
    for path in [p for p in args.models if p.exists()]:
        trained = load_model(path)
        detector = Detector(trained)
        mode = "stream" if detector.streaming else "window"
        ms = next((r["ms_per_hop"] for r in rows if r["backbone"] == trained.config.backbone and r["mode"] == mode), 0)
        d = delays(trained, float(ms) / 1000)
        delay_rows.append(
            {
                "model": str(path),
                "backbone": trained.config.backbone,
                "mode": mode,
                "events": len(d),
                "median_s": round(float(np.median(d)), 3) if d else None,
                "p90_s": round(float(np.percentile(d, 90)), 3) if d else None,
                "max_s": round(float(np.max(d)), 3) if d else None,
            }
        )
        print(delay_rows[-1], flush=True)
    results["delay"] = delay_rows
    existing = [p for p in args.models if p.exists()]
    if args.stamina_hours > 0 and existing:
        results["stamina"] = stamina(load_model(existing[0]), args.stamina_hours)
        print(results["stamina"], flush=True)

    (args.out / "speed.json").write_text(json.dumps(results, indent=2))
    goal = DetectorSettings().hop_s + 0.15
    lines = [
        "# Speed, memory and stamina",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']}",
        "",
        "| backbone | detector mode | real-time factor (1 thread) | ms per 0.25 s hop | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['backbone']} | {r['mode']} | {r['rtf_1_thread']} | {r['ms_per_hop']} | {r['peak_rss_mb']:.0f} |"
        for r in rows
    ]
    if training:
        lines += [
            "",
            "| training (5 classes x 10 clips) | wall s | accuracy | estimate | peak RSS MB |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['backbone']} | {r['train_wall_s']} | {r['accuracy']} | {r['estimate']} | {r['peak_rss_mb']:.0f} |"
            for r in training
        ]
    if delay_rows:
        lines += ["", f"| delay, onset to report (goal < {goal:.2f} s) | mode | events | median s | 90 % s | max s |"]
        lines += ["|---|---|---|---|---|---|"]
        lines += [
            f"| {r['model']} ({r['backbone']}) | {r['mode']} | {r['events']} | {r['median_s']} | {r['p90_s']} "
            f"| {r['max_s']} |"
            for r in delay_rows
        ]
    if "stamina" in results:
        lines += ["", f"Stamina: {json.dumps(results['stamina'])}"]
    (args.out / "speed.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'speed.md'}")


if __name__ == "__main__":
    main()
