"""Pictures for TensorBoard: the confusion matrix, PR curves per class, and augmented spectrograms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def confusion_figure(matrix: Sequence[Sequence[int]], names: Sequence[str]):  # -> matplotlib Figure
    """A labelled confusion-matrix heat map (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix)
    size = 1.2 + 0.55 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = counts.max() if counts.size else 0
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(
                j, i, str(counts[i, j]), ha="center", va="center", color="white" if counts[i, j] > peak / 2 else "black"
            )
    fig.tight_layout()
    return fig


def log_confusion_matrix(writer, matrix: Sequence[Sequence[int]], names: Sequence[str], step: int = 0) -> None:
    """Add the confusion matrix as an image under ``confusion_matrix``."""
    writer.add_figure("confusion_matrix", confusion_figure(matrix, names), global_step=step, close=True)


def log_pr_curves(writer, probs: torch.Tensor, targets: torch.Tensor, labels: Sequence[str], step: int = 0) -> None:
    """One precision-recall curve per class from held-out clip probabilities ``[N, C]``."""
    for c, label in enumerate(labels):
        writer.add_pr_curve(f"pr_curve/{label}", targets[:, c] > 0.5, probs[:, c], global_step=step)


def log_spectrograms(writer, tag: str, spectrograms: torch.Tensor, step: int = 0) -> None:
    """Add ``[N, frames, mels]`` log-mel spectrograms as images (low frequencies at the bottom)."""
    for i, spec in enumerate(spectrograms):
        image = spec.T.flip(0)  # [mels, frames], low mels at the bottom like every spectrogram plot
        lo, hi = float(image.min()), float(image.max())
        image = (image - lo) / (hi - lo + 1e-9)
        writer.add_image(f"{tag}/{i}", image[None], global_step=step, dataformats="CHW")
