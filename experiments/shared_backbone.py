"""Several models on one stream (issue 13, item 2): the CPU cost of 1, 3 and 10 sfx-cnn9 heads on one microphone.

Bundles trained on sfx-cnn9 each hold the same frozen backbone and a small head. ``listen MODEL MODEL ...`` stacks
them (``snapkit.models.stack.HeadStack``): the backbone runs once per window, every head reads its frames. This
script streams a real household recording (``../shared/sounds/background``) through ``build_detector`` with N heads
and reports the real-time factor (CPU seconds per second of audio, one thread) stacked, and for comparison with
each head in its own detector (what listening with N separate processes would cost).

The heads are untrained (random weights on the real sfx-cnn9 backbone): a trained head costs exactly the same, and
what is measured is cost, not quality. Run with one thread, pinned to one core::

    taskset -c 0 python experiments/shared_backbone.py            # 60 s of audio per run
    taskset -c 0 python experiments/shared_backbone.py --quick    # 6 s, for the test
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

from snapkit.audio.io import load_audio
from snapkit.detection.detector import Detector, DetectorSettings
from snapkit.detection.group import DetectorGroup, build_detector
from snapkit.models.backbones.registry import load_backbone
from snapkit.models.bundle import ModelBundle
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import ModelConfig

SOUNDS = Path(__file__).resolve().parents[2] / "shared" / "sounds"
RECORDING = SOUNDS / "background" / "doing_the_dishes.flac"


def heads(count: int, backbone: torch.nn.Module) -> list[ModelBundle]:
    """``count`` single-class head bundles on (copies of) ``backbone``, as ``count`` bundle files would load."""
    out = []
    for k in range(count):
        torch.manual_seed(k)
        model = SoundClassifier(ModelConfig(backbone="sfx-cnn9", labels=(f"sound{k}",)), copy.deepcopy(backbone))
        out.append(ModelBundle.from_model(model.eval()))
    return out


def cpu_seconds(detector: Detector | DetectorGroup, audio: np.ndarray, chunk_s: float = 0.05) -> float:
    """Process CPU time to push ``audio`` through ``detector`` in live-sized chunks and flush."""
    n = round(chunk_s * detector.sample_rate_hz)
    start = time.process_time()
    for i in range(0, len(audio), n):
        detector.push(audio[i : i + n])
    detector.flush()
    return time.process_time() - start


def measure(counts: list[int], seconds: float, separate_up_to: int) -> list[dict[str, float]]:
    torch.set_num_threads(1)
    backbone = load_backbone("sfx-cnn9")
    audio, rate = load_audio(RECORDING)
    audio = np.tile(audio, int(np.ceil(seconds * rate / len(audio))))[: round(seconds * rate)]
    rows = []
    for count in counts:
        bundles = heads(count, backbone)
        settings = [DetectorSettings()] * count
        stacked = build_detector(bundles, settings, sample_rate_hz=rate)
        cpu_seconds(build_detector(bundles, settings, sample_rate_hz=rate), audio[: rate * 3])  # warm-up
        row = {"heads": count, "stacked_rtf": cpu_seconds(stacked, audio) / seconds}
        if count <= separate_up_to:
            alone = DetectorGroup([Detector(b, s, sample_rate_hz=rate) for b, s in zip(bundles, settings, strict=True)])
            row["separate_rtf"] = cpu_seconds(alone, audio) / seconds
        rows.append(row)
        print(
            f"{count:3d} head(s): stacked RTF {row['stacked_rtf']:.3f}"
            + (f", each in its own detector {row['separate_rtf']:.3f}" if "separate_rtf" in row else ""),
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="Seconds of audio per run.")
    parser.add_argument("--quick", action="store_true", help="6 s of audio, 1 and 3 heads (for the test).")
    args = parser.parse_args()
    if args.quick:
        measure([1, 3], 6.0, separate_up_to=3)
    else:
        measure([1, 3, 10], args.seconds, separate_up_to=3)


if __name__ == "__main__":
    main()
