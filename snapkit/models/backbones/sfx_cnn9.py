"""sfx-cnn9: the 9-layer CNN of Ma & Lerch, "Representation Learning for the Automatic Indexing of Sound
Effects Libraries" (ISMIR 2022), released in the ``aisfx==0.1.2`` wheel (``aisfx/models/checkpoint.pth``,
licence CC BY 4.0).

Architecture, as ``EmbeddingNet('max', 3, 1, 64)`` in ``aisfx/models/cnn2d.py`` (itself the DCASE 2018
cross-task baseline ``Cnn_9layers`` by Kong et al.):

- input: the normalised log-mel ``[batch, frames, 96]`` given a channel axis -> ``[batch, 1, frames, 96]``;
  there is NO input BatchNorm (no ``bn0`` key in the checkpoint) and no other learnt normalisation: the only
  scaling is the front end's fixed division by 9.457798957824707 (aisfx's ``spectrogram_normalize``, min-max
  with min 0), which ``LogMel(SFX_CNN9)`` applies;
- four blocks of two 3x3 convolutions (padding 1, stride 1, no bias), each followed by BatchNorm and ReLU;
  channels 64-128-256-512; 2x2 MAX pooling after blocks 1-3, none after block 4;
- embedding: mean over mel bins, then max over time -> 512 values.

The checkpoint is a pickled tuple ``(state_dict, ds_dict)``: the backbone's keys are
``embedding_net.conv_block{1..4}.{conv1,conv2}.weight`` and
``.{bn1,bn2}.{weight,bias,running_mean,running_var,num_batches_tracked}``; the ``fc.*`` keys are the authors'
per-dataset training heads and are not used. ``ds_dict`` maps dataset names to ``(numpy.int64 index,
number of classes)``.

Output frame hop: one log-mel frame every 1024 samples at 44.1 kHz (23.2 ms), three 2x2 poolings -> 8x ->
8192 / 44100 = 0.1858 s per output frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from snapkit.errors import WeightsError
from snapkit.features.config import SFX_CNN9
from snapkit.features.frontend import LogMel
from snapkit.models.backbones.base import FrameEmbedder, load_checkpoint_file

EMBEDDING_DIM = 512
_PREFIX = "embedding_net."
_TIME_DOWNSAMPLING = 8  # 2x2 max pooling after blocks 1, 2 and 3.


class _ConvBlock(nn.Module):
    """Two 3x3 conv (no bias) + BN + ReLU, then 2D max pooling (keys ``conv1``, ``conv2``, ``bn1``,
    ``bn2``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        """``[batch, in, time, freq]`` -> ``[batch, out, time // pool, freq // pool]``."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, kernel_size=pool) if pool > 1 else x


class _EmbeddingNet(nn.Module):
    """The convolutional body; attribute names match the checkpoint's ``embedding_net.*`` keys."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_block1 = _ConvBlock(1, 64)
        self.conv_block2 = _ConvBlock(64, 128)
        self.conv_block3 = _ConvBlock(128, 256)
        self.conv_block4 = _ConvBlock(256, EMBEDDING_DIM)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel ``[batch, frames, 96]`` -> ``[batch, 512, frames // 8, 96 // 8]``."""
        x = mel.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        x = self.conv_block1(x, pool=2)
        x = self.conv_block2(x, pool=2)
        x = self.conv_block3(x, pool=2)
        return self.conv_block4(x, pool=1)


class SfxCnn9(FrameEmbedder):
    """sfx-cnn9 backbone: waveform at 44.1 kHz -> 512-d frames every 0.1858 s (:meth:`forward_frames`) or one
    512-d clip embedding (:meth:`embed`)."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "sfx-cnn9"
        self.frontend_config = SFX_CNN9
        self.feature_dim = EMBEDDING_DIM
        self.time_downsampling = _TIME_DOWNSAMPLING
        self.frame_hop_s = SFX_CNN9.hop_s * _TIME_DOWNSAMPLING
        self.frontend = LogMel(SFX_CNN9)
        # Channels-last convolutions: oneDNN's fastest layout on a CPU. 16 views of 5 s took 1.02 s instead of 1.26 s
        # on 2 cores (outputs equal within 3e-6); loading weights copies values into these tensors, keeping it.
        self.embedding_net = _EmbeddingNet().to(memory_format=torch.channels_last)

    def num_frames(self, num_samples: int) -> int:
        """Output frames for ``num_samples`` samples: log-mel frames // 8."""
        return self.frontend.num_frames(num_samples) // _TIME_DOWNSAMPLING

    def forward_frames(self, waveform: torch.Tensor) -> torch.Tensor:
        """Frame features ``[batch, frames_out, 512]`` of ``waveform`` ``[batch, samples]`` at 44.1 kHz: block
        4's output averaged over mel bins; ``frames_out = (samples // 1024 + 1) // 8``."""
        if waveform.dim() != 2:
            raise ValueError(f"Expected a waveform [batch, samples], got shape {tuple(waveform.shape)}.")
        if self.num_frames(waveform.shape[-1]) < 1:
            minimum = (_TIME_DOWNSAMPLING - 1) * SFX_CNN9.hop_length
            raise ValueError(
                f"sfx-cnn9 needs at least {minimum} samples ({minimum / SFX_CNN9.sample_rate_hz:.3f} s at "
                f"{SFX_CNN9.sample_rate_hz} Hz), got {waveform.shape[-1]}."
            )
        return self.embedding_net(self.frontend(waveform)).mean(dim=3).transpose(1, 2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_frames`."""
        return self.forward_frames(waveform)

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """Clip embedding ``[batch, 512]``: max over time of :meth:`forward_frames` (as the original).

        The authors embed blocks of about 100 log-mel frames (2.3 s); a 2-second clip is one such block.
        """
        return self.forward_frames(waveform).amax(dim=1)

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict without the front end: the ``embedding_net.*`` keys the checkpoint must provide."""
        return {key: value for key, value in self.state_dict().items() if key.startswith(_PREFIX)}

    def load_state_from_checkpoint(self, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load the ``embedding_net.*`` entries of an aisfx state dict (other entries are ignored).

        Raises:
            WeightsError: a backbone key is missing or has the wrong shape.
        """
        expected = self.checkpoint_state_dict()
        missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
        wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
        unexpected = [k for k in state if k.startswith(_PREFIX) and k not in expected]
        if missing or wrong_shape or unexpected:
            keys = (missing + wrong_shape + unexpected)[:3]
            raise WeightsError(
                f"The {source} does not fit sfx-cnn9 (first mismatching keys: {', '.join(keys)}); use the "
                "checkpoint.pth from aisfx==0.1.2."
            )
        backbone = {k: v for k, v in state.items() if k.startswith(_PREFIX)}
        # Not strict: the front end's buffers (if any) are not in the checkpoint; the backbone keys were checked.
        self.load_state_dict(backbone, strict=False)

    def load_checkpoint(self, path: Path) -> None:
        """Load aisfx's ``checkpoint.pth`` (a tuple ``(state_dict, ds_dict)``), already verified by sha256.

        Raises:
            WeightsError: unreadable file, or not of that format.
        """
        checkpoint = load_checkpoint_file(path)
        if isinstance(checkpoint, tuple) and checkpoint and isinstance(checkpoint[0], Mapping):
            state = checkpoint[0]
        elif isinstance(checkpoint, Mapping):
            state = checkpoint  # A bare state dict, e.g. re-saved by a user: accept it too.
        else:
            raise WeightsError(
                f"The file {path} is not an aisfx checkpoint (expected (state_dict, ds_dict)); use the "
                "checkpoint.pth from aisfx==0.1.2."
            )
        self.load_state_from_checkpoint(state, source=f"file {path}")
