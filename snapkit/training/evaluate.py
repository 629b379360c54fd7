"""``snapkit evaluate``: a trained bundle's clip-level quality on a labelled folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from snapkit.audio.io import load_audio
from snapkit.dataset.scan import scan_dataset
from snapkit.errors import DatasetError
from snapkit.models.bundle import ModelBundle
from snapkit.models.predict import clip_probabilities
from snapkit.training.metrics import clip_decisions, clip_report


def evaluate_bundle(
    bundle: ModelBundle, data_dir: Path, on_clip: Callable[[], None] | None = None
) -> tuple[dict[str, object], list[str]]:
    """Report (accuracy, macro F1, per-class figures, confusion matrix, mistakes) and warnings for ``data_dir``.

    ``report["mistakes"]`` lists each misclassified clip as ``{"path", "true", "predicted", "score"}`` (score: the
    probability of the predicted label, see :func:`~snapkit.training.metrics.clip_decisions`), worst first, so a
    user can listen to them and fix a label or record more. Clips of classes the model does not know are skipped
    with a warning; unreadable clips too.
    """
    config = bundle.config
    dataset = scan_dataset(data_dir, background_label=config.background_label)
    known = set(config.labels) | {config.background_label}
    notes = [f"skipped unreadable {c.path}" for c in dataset.clips if c.error]
    unknown = sorted({c.label for c in dataset.readable} - known)
    if unknown:
        notes.append(f"skipped classes the model was not trained on: {', '.join(unknown)}")
    clips = [c for c in dataset.readable if c.label in known]
    if not clips:
        raise DatasetError(f"{data_dir} has no readable clips of the model's classes ({', '.join(sorted(known))}).")
    probs, targets = [], []
    for clip in clips:
        audio, _ = load_audio(clip.path, bundle.model.sample_rate_hz)
        probs.append(clip_probabilities(bundle, audio))
        target = np.zeros(len(config.labels), np.float32)
        if clip.label != config.background_label:
            target[config.labels.index(clip.label)] = 1.0
        targets.append(target)
        if on_clip:
            on_clip()
    thresholds = [bundle.calibrated(label).on for label in config.labels]
    probs_t, targets_t = torch.as_tensor(np.stack(probs)), torch.as_tensor(np.stack(targets))
    # the rule of `snapkit predict` (snapkit.models.predict.decide)
    report = clip_report(
        probs_t, targets_t, config.labels, config.background_label, thresholds, background_is_rest=config.clip_head
    )
    report["clips"] = len(clips)
    pred, scores = clip_decisions(probs_t, thresholds, background_is_rest=config.clip_head)
    names = [*config.labels, config.background_label]
    mistakes = [
        {"path": str(clip.path), "true": clip.label, "predicted": names[int(p)], "score": round(float(s), 4)}
        for clip, p, s in zip(clips, pred, scores, strict=True)
        if names[int(p)] != clip.label
    ]
    report["mistakes"] = sorted(mistakes, key=lambda m: (-m["score"], m["path"]))
    return report, notes
