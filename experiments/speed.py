"""Speed and stamina of the detector: real-time factor per backbone, onset-to-report delay, and a long run.

    python experiments/speed.py                      # RTF + delay for every backbone, 10 min stamina run
    python experiments/speed.py --stamina-hours 24   # the full day (about an hour of wall time for the ConvNet)

Real-time factor = processing seconds / audio seconds on ONE torch thread at the default hop (0.25 s), fed in 0.1 s
chunks as the microphone does. Backbones whose pretrained weights are not on this machine are timed with random
weights: the arithmetic, and so the speed, is the same. The delay is, per detected event, the stream time at which
its start was reported (the end of the audio the decision needed) minus its true onset, plus the compute time of
the window that decided it. The stamina run streams generated audio with planted events through the detector
block by block (never held in memory) and records resident memory as it goes.

Writes ``experiments/results/speed/speed.md`` (and ``speed.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from snapkit.detection.detector import Detector, DetectorSettings
from snapkit.models.bundle import ModelBundle
from snapkit.models.classifier import SoundClassifier, backbone_architecture
from snapkit.models.config import ModelConfig
from snapkit.synth import iter_stream, make_stream

CLASSES = ("beep", "scratch", "smoke_alarm")
BACKBONES = ("convnet", "sfx-cnn9", "panns-cnn6", "panns-cnn10", "panns-cnn14")


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


def real_time_factor(bundle: ModelBundle, seconds: float, chunk_s: float = 0.1) -> tuple[float, float]:
    """(RTF, mean compute seconds per window) of the detector over ``seconds`` of generated audio."""
    rate = bundle.model.sample_rate_hz
    audio, _ = make_stream(0, duration_s=seconds, classes=("beep",), sample_rate_hz=rate)
    detector = Detector(bundle)
    n = round(chunk_s * rate)
    detector.push(audio[: 4 * n])  # warm-up (allocations, first-call overheads)
    detector.reset()
    start = time.perf_counter()
    for i in range(0, len(audio), n):
        detector.push(audio[i : i + n])
    detector.flush()
    elapsed = time.perf_counter() - start
    windows = max(1, int((seconds - (bundle.config.clip_s)) / detector.settings.hop_s) + 1)
    return elapsed / seconds, elapsed / windows


def delays(bundle: ModelBundle, compute_per_window_s: float, minutes: float = 5.0) -> list[float]:
    """Onset-to-report delays (s) of detected events that match a planted one (same label, onset within 0.2 s)."""
    audio, truth = make_stream(4, duration_s=minutes * 60, classes=CLASSES, snr_db=(10, 20))
    detector = Detector(bundle)
    updates = []
    for i in range(0, len(audio), 1600):
        updates += detector.push(audio[i : i + 1600])
    result = []
    for update in updates:
        if update.kind != "start":
            continue
        match = [e for e in truth if e.label == update.event.label and abs(e.onset_s - update.event.onset_s) < 0.2]
        if match and match[0].onset_s > bundle.config.clip_s:  # nothing can be reported before the first window
            result.append(update.reported_at_s - match[0].onset_s + compute_per_window_s)
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
    samples.append((hours, rss_mb()))
    after_warmup = [mb for h, mb in samples if h >= min(0.2, hours / 2)] or [samples[-1][1]]
    return {
        "hours": hours,
        "wall_s": round(time.perf_counter() - start, 1),
        "planted_events": planted,
        "detected_events": found,
        "rss_mb_samples": [(round(h, 2), round(mb, 1)) for h, mb in samples],
        "rss_growth_after_warmup_mb": round(max(after_warmup) - min(after_warmup), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="audio seconds per RTF measurement")
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONES), help="which backbones to time (none: skip)")
    parser.add_argument("--no-delay", action="store_true", help="skip the onset-to-report delay measurement")
    parser.add_argument("--stamina-hours", type=float, default=1 / 6, help="hours of audio for the stamina run")
    parser.add_argument("--stamina-model", default=None, help="trained bundle for the stamina run (default: demo's)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/speed"), help="results folder")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the figure asked for: one thread, as on a small device
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    for name in args.backbones:
        bundle = random_bundle(name)
        rtf, per_window = real_time_factor(bundle, args.seconds)
        rows.append({"backbone": name, "rtf_1_thread": round(rtf, 4), "ms_per_window": round(per_window * 1000, 1)})
        print(rows[-1], flush=True)

    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}, 1 thread",
        "rtf": rows,
    }
    model_path = Path(args.stamina_model) if args.stamina_model else Path("runs/demo/convnet/model.snapkit")
    if model_path.exists():
        from snapkit.models.bundle import load_model

        trained = load_model(model_path)
        per_window = next((r["ms_per_window"] for r in rows if r["backbone"] == trained.config.backbone), 0.0) / 1000
        d = [] if args.no_delay else delays(trained, per_window)
        results["delay_s"] = {
            "model": str(model_path),
            "events": len(d),
            "median": round(float(np.median(d)), 3) if d else None,
            "max": round(float(np.max(d)), 3) if d else None,
            "goal": f"< hop + 0.15 = {DetectorSettings().hop_s + 0.15:.2f}",
        }
        print(results["delay_s"], flush=True)
        if args.stamina_hours > 0:
            results["stamina"] = stamina(trained, args.stamina_hours)
            print(results["stamina"], flush=True)
    (args.out / "speed.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# Detector speed",
        "",
        f"Machine: {results['machine']}",
        "",
        "| backbone | real-time factor (1 thread) | ms per window |",
        "|---|---|---|",
    ]
    lines += [f"| {r['backbone']} | {r['rtf_1_thread']} | {r['ms_per_window']} |" for r in rows]
    if "delay_s" in results:
        lines += ["", f"Onset-to-report delay: {json.dumps(results['delay_s'])}"]
    if "stamina" in results:
        lines += ["", f"Stamina: {json.dumps(results['stamina'])}"]
    (args.out / "speed.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'speed.md'}")


if __name__ == "__main__":
    main()
