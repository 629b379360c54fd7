"""Clip-level prediction with a trained bundle: whole files, any length."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from snapkit.audio.io import load_audio
from snapkit.models.bundle import ModelBundle
from snapkit.models.classifier import SoundClassifier
from snapkit.training.augment import fit_to_length

# Files longer than the model's clip are scored in clip-long windows overlapping by half, as the model was
# trained; a sound anywhere counts. (A head's clip is as long as the user's clips, see train.auto_clip_s.)
WINDOW_OVERLAP = 0.5


@dataclass(frozen=True)
class FilePrediction:
    path: Path
    probabilities: dict[str, float]  # target class -> clip probability (max over windows)
    label: str  # the decision: best class over its threshold, else the background label

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]


def window_starts(num_samples: int, window_samples: int) -> list[int]:
    """Starts of windows of ``window_samples`` overlapping by ``WINDOW_OVERLAP`` that cover ``num_samples``; the
    last is moved back to end at the end of the audio. ``[0]`` when the audio fits one window."""
    if num_samples <= window_samples:
        return [0]
    hop = max(1, round(window_samples * (1 - WINDOW_OVERLAP)))
    starts = list(range(0, num_samples - window_samples + 1, hop))
    if starts[-1] + window_samples < num_samples:
        starts.append(num_samples - window_samples)
    return starts


def window_features(model: SoundClassifier, audio: np.ndarray) -> list[torch.Tensor]:
    """The frozen part of ``model`` run on each clip-long scoring window of ``audio`` ``[samples]`` (at the
    model's rate): one ``[1, frames, dim]`` tensor a window. Audio shorter than a training clip is centred in one
    clip of zeros, as training evaluates short clips."""
    clip = model.clip_samples
    if len(audio) < clip:
        audio = fit_to_length(audio, clip)
    with torch.inference_mode():
        return [
            model.features(torch.as_tensor(np.ascontiguousarray(audio[s : s + clip]), dtype=torch.float32)[None])
            for s in window_starts(len(audio), clip)
        ]


def probabilities_from_features(model: SoundClassifier, windows: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """``(pooled frame probabilities, decision probabilities)``, each ``[classes]``, the max over ``windows``
    (from :func:`window_features`). Decision probabilities come from the clip head where there is one."""
    pooled, decision = [], []
    with torch.inference_mode():
        for features in windows:
            outputs = model.all_outputs(features)
            pooled.append(model.clip_probs(*outputs[:2])[0])
            decision.append(model.decision_from(*outputs)[0])
    return torch.stack(pooled).amax(dim=0).numpy(), torch.stack(decision).amax(dim=0).numpy()


def clip_probabilities(bundle: ModelBundle, audio: np.ndarray) -> np.ndarray:
    """Probabilities ``[classes]`` that ``audio`` ``[samples]`` (at the model's rate) holds each sound: the
    decision probabilities of :func:`probabilities_from_features`, max over scoring windows."""
    return probabilities_from_features(bundle.model, window_features(bundle.model, audio))[1]


def decide(bundle: ModelBundle, probs: np.ndarray) -> str:
    """The label of a clip from its :func:`clip_probabilities`.

    With a clip head (a softmax over the classes and background): the most probable outcome, background's
    probability being what the classes leave. Bundles without one (format 1): the class that clears its
    on-threshold by most, else background.
    """
    labels = bundle.config.labels
    if bundle.config.clip_head:
        from snapkit.training.metrics import softmax_labels  # the one rule, shared with training and evaluate

        best = int(softmax_labels(torch.as_tensor(probs, dtype=torch.float32)[None])[0])
        return labels[best] if best < len(labels) else bundle.config.background_label
    margins = [probs[i] - bundle.calibrated(label).on for i, label in enumerate(labels)]
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
