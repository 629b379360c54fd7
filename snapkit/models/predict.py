"""Clip-level prediction with a trained bundle: whole files, any length."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from snapkit.audio.io import load_audio
from snapkit.models.bundle import ModelBundle

# Files longer than a clip are scored in clip-length windows overlapping by half; a sound anywhere counts.
WINDOW_OVERLAP = 0.5


@dataclass(frozen=True)
class FilePrediction:
    path: Path
    probabilities: dict[str, float]  # target class -> clip probability (max over windows)
    label: str  # the decision: best class over its threshold, else the background label

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]


def clip_probabilities(bundle: ModelBundle, audio: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Probabilities ``[classes]`` for ``audio`` ``[samples]`` at the model's rate: max over clip windows."""
    model = bundle.model
    clip = round(bundle.config.clip_s * model.sample_rate_hz)
    if len(audio) <= clip:
        windows = [np.pad(audio, (0, clip - len(audio)))]
    else:
        hop = max(1, round(clip * (1 - WINDOW_OVERLAP)))
        starts = list(range(0, len(audio) - clip + 1, hop))
        if starts[-1] + clip < len(audio):
            starts.append(len(audio) - clip)
        windows = [audio[s : s + clip] for s in starts]
    probs = []
    with torch.inference_mode():
        for i in range(0, len(windows), batch_size):
            batch = torch.as_tensor(np.stack(windows[i : i + batch_size]), dtype=torch.float32)
            probs.append(model(batch)[1])
    return torch.cat(probs).max(dim=0).values.numpy()


def decide(bundle: ModelBundle, probs: np.ndarray) -> str:
    """The label of a clip: the class that clears its on-threshold by most, else background."""
    labels = bundle.config.labels
    margins = [probs[i] - bundle.thresholds[label]["on"] for i, label in enumerate(labels)]
    best = int(np.argmax(margins))
    return labels[best] if margins[best] >= 0 else bundle.config.background_label


def predict_file(bundle: ModelBundle, path: str | Path) -> FilePrediction:
    """Score one audio file of any length with ``bundle``."""
    audio, _ = load_audio(path, bundle.model.sample_rate_hz)
    probs = clip_probabilities(bundle, audio)
    return FilePrediction(
        path=Path(path),
        probabilities={label: float(p) for label, p in zip(bundle.config.labels, probs, strict=True)},
        label=decide(bundle, probs),
    )
