"""The interface every frozen pretrained backbone implements, and what the implementations share.

A backbone is a :class:`FrameEmbedder`: it owns its log-mel front end (with the exact settings its weights were
trained with), takes mono audio at ``frontend_config.sample_rate_hz`` and returns one ``feature_dim`` vector every
``frame_hop_s`` seconds. Small heads trained on a user's clips sit on top of these frames. Implementations import
this module only; the registry (``registry.py``) imports them, never the other way round.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from snapkit.errors import WeightsError
from snapkit.features.config import FrontEndConfig


class FrameEmbedder(torch.nn.Module):
    """Base class: waveform ``[batch, samples]`` -> frame features ``[batch, frames, feature_dim]``.

    Attributes:
        name: Its name in the registry (``registry.BACKBONES``).
        frontend_config: The front end the weights were trained with; the input must be at its sample rate.
        feature_dim: Size of each output frame vector.
        frame_hop_s: Seconds between two output frames.
    """

    name: str
    frontend_config: FrontEndConfig
    feature_dim: int
    frame_hop_s: float

    def __init__(self) -> None:
        super().__init__()
        self._frozen = False

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Frame features ``[batch, frames, feature_dim]`` of ``waveform`` ``[batch, samples]`` (float, in
        [-1, 1], at ``frontend_config.sample_rate_hz``)."""
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        """How many output frames ``forward`` gives for ``num_samples`` input samples (0 when too short)."""
        raise NotImplementedError

    def load_checkpoint(self, path: Path) -> None:
        """Load the released weights file at ``path`` (already verified by the caller) into this model."""
        raise NotImplementedError

    def freeze(self) -> FrameEmbedder:
        """Put the model in eval mode for good and stop gradients to its parameters; returns ``self``.

        A frozen backbone stays in eval mode even when a parent module calls ``.train()``: otherwise its
        BatchNorm layers would start updating their running statistics from a user's handful of clips and
        quietly drift away from the pretrained weights.
        """
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self._frozen = True
        return super().train(False)

    @property
    def frozen(self) -> bool:
        """Whether :meth:`freeze` was called."""
        return self._frozen

    def train(self, mode: bool = True) -> FrameEmbedder:
        return super().train(False if self._frozen else mode)


def _numpy_safe_globals() -> list[object]:
    """numpy types that released checkpoints pickle beside their tensors, allow-listed for safe loading.

    Only plain number and dtype constructors: they cannot run code, unlike the arbitrary callables a full
    unpickler would accept (which is why ``weights_only=False`` is never used).
    """
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    allowed: list[object] = [scalar, np.dtype]
    if scalar.__module__ != "numpy.core.multiarray":
        # Files written under numpy 1.x name it numpy.core.multiarray.scalar; numpy 2 moved it to numpy._core.
        allowed.append((scalar, "numpy.core.multiarray.scalar"))
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles a dtype through its class in numpy.dtypes
    if dtypes is not None:
        for bits in ("8", "16", "32", "64"):
            allowed += [getattr(dtypes, f"Int{bits}DType"), getattr(dtypes, f"UInt{bits}DType")]
        allowed += [dtypes.Float16DType, dtypes.Float32DType, dtypes.Float64DType, dtypes.BoolDType]
    return allowed


def load_checkpoint_file(path: Path) -> object:
    """``torch.load`` of a verified checkpoint, always with ``weights_only=True`` (no arbitrary code runs).

    Raises:
        WeightsError: the file cannot be read that way (not a checkpoint, or one holding unexpected objects).
    """
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(
            f"The weights file {path} could not be read as a PyTorch checkpoint ({first_line}); "
            "replace it with a fresh copy."
        ) from error
