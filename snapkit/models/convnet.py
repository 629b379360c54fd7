"""snapkit's own small ConvNet, trained from scratch on log-mel frames, that keeps the full frame rate.

It starts from the "finger-snap" design (blocks of a 7x7 convolution + GELU + BatchNorm, channels 8-16-32-64)
with two changes:

- Only the mel axis is pooled (``MaxPool2d((1, 2))`` after each block); time is never downsampled, so the
  output has one frame per input log-mel frame (every 10 ms with the ``SNAPKIT`` front end) and the detector
  can time a snap to about a hundredth of a second. Convolutions use "same" padding with an odd kernel, so
  output frame ``k`` stays centred on input frame ``k``.
- After the first block (one input channel, where a full k x k kernel costs almost nothing) each k x k
  convolution is factorised into a (1 x k) convolution along frequency (``c_in -> c_in``) followed by a
  (k x 1) convolution along time (``c_in -> c_out``), as in Inception-v3. Same k x k receptive field, but about
  29 k parameters instead of 132 k for full 7x7 kernels at 8-16-32-64, and about 4x less compute; both matter
  when it learns from 5-20 clips per class and runs on a laptop CPU.

Receptive field in time: ``1 + blocks * (kernel - 1)`` frames (25 frames = 0.25 s with the defaults). With
``future_frames`` each block's time convolution sees that many frames ahead and ``kernel - 1 - future_frames``
behind (zero padding split that way), so the network needs only ``blocks * future_frames`` frames of the future:
what the streaming detector must wait for before deciding a moment.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snapkit.models.streaming import Pointwise, StreamStage, TimeConv


class _Block(nn.Module):
    """k x k (or factorised) conv, GELU, BatchNorm, then max pooling over frequency only.

    ``[batch, c_in, frames, bins]`` -> ``[batch, c_out, frames, bins // pool]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, pool_freq: int, future: int) -> None:
        super().__init__()
        pad = kernel // 2
        convs: list[nn.Module]
        # Time padding is done in forward(): (past, future) frames, which need not be equal.
        if in_channels == 1:
            convs = [nn.Conv2d(1, out_channels, kernel, padding=(0, pad))]
        else:
            convs = [
                # No bias on the first: the second conv's bias follows immediately.
                nn.Conv2d(in_channels, in_channels, (1, kernel), padding=(0, pad), bias=False),
                nn.Conv2d(in_channels, out_channels, (kernel, 1), padding=(0, 0)),
            ]
        self.conv = nn.Sequential(*convs)
        self.time_pad = (kernel - 1 - future, future)
        self.act = nn.GELU()
        self.norm = nn.BatchNorm2d(out_channels)
        self.pool = nn.MaxPool2d((1, pool_freq)) if pool_freq > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.conv:
            if conv.kernel_size[0] > 1:
                x = F.pad(x, (0, 0, *self.time_pad))  # zeros before and after in time
            x = conv(x)
        return self.pool(self.norm(self.act(x)))


class ConvNet(nn.Module):
    """Log-mel frames ``[batch, frames, n_mels]`` -> frame features ``[batch, frames, channels[-1]]``.

    Steps: a BatchNorm over mel bins (like PANNs' ``bn0``: it learns each bin's mean and spread, so raw dB
    values go in as they are); one block per entry of ``channels``, each halving the mel axis while it has at
    least two bins; then the mean over the remaining mel bins. The time axis is untouched throughout.

    Args:
        n_mels: Mel bins of the input.
        channels: Output channels of each block.
        kernel: Odd kernel size, in frames and in mel bins.
        future_frames: Frames ahead each block's time convolution sees; None: ``kernel // 2`` (symmetric).
    """

    def __init__(
        self,
        n_mels: int,
        channels: tuple[int, ...] = (8, 16, 32, 64),
        kernel: int = 7,
        future_frames: int | None = None,
    ) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be an odd positive size, got {kernel}.")
        if not channels:
            raise ValueError("channels must name at least one block.")
        future = kernel // 2 if future_frames is None else future_frames
        if not 0 <= future < kernel:
            raise ValueError(f"future_frames must be between 0 and kernel - 1, got {future_frames}.")
        self.n_mels = n_mels
        self.out_dim = channels[-1]
        self.bn0 = nn.BatchNorm1d(n_mels)
        blocks = []
        bins, in_channels = n_mels, 1
        for out_channels in channels:
            pool = 2 if bins >= 2 else 1
            blocks.append(_Block(in_channels, out_channels, kernel, pool, future))
            bins, in_channels = bins // pool, out_channels
        self.blocks = nn.Sequential(*blocks)
        self.out_bins = bins

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        """``[batch, frames, n_mels]`` (dB or any log scale) -> ``[batch, frames, out_dim]``."""
        if logmel.dim() != 3 or logmel.shape[-1] != self.n_mels:
            raise ValueError(f"ConvNet expects log-mel [batch, frames, {self.n_mels}], got {tuple(logmel.shape)}.")
        x = self.bn0(logmel.transpose(1, 2)).transpose(1, 2)  # BatchNorm1d normalises axis 1: the mel bins
        x = self.blocks(x.unsqueeze(1))  # [batch, channels, frames, bins]
        return x.mean(dim=3).transpose(1, 2)

    def streaming_stages(self) -> list[StreamStage]:
        """The same network as stream stages on ``[1, 1, frames, n_mels]`` log-mel pieces (eval mode only): the
        output is ``[1, out_dim, frames, out_bins]`` before the mean over mel bins."""
        stages: list[StreamStage] = [Pointwise(lambda x: self.bn0(x[:, 0].transpose(1, 2)).transpose(1, 2)[:, None])]
        for block in self.blocks:
            stages += [TimeConv(conv, block.time_pad if conv.kernel_size[0] > 1 else (0, 0)) for conv in block.conv]
            stages.append(Pointwise(lambda x, b=block: b.pool(b.norm(b.act(x)))))
        return stages
