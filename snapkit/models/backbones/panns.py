"""PANNs Cnn6, Cnn10 and Cnn14 (Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks for Audio
Pattern Recognition", 2020), parameter-for-parameter compatible with the released AudioSet checkpoints
(Zenodo record 3987831, ``Cnn6_mAP=0.343.pth``, ``Cnn10_mAP=0.380.pth``, ``Cnn14_mAP=0.431.pth``).

Written from the architecture of ``pytorch/models.py`` in ``qiuqiangkong/audioset_tagging_cnn``:

- log-mel ``[batch, 1, frames, 64]`` -> ``bn0``: a BatchNorm2d over the 64 mel bins (applied with the mel axis
  moved to the channel axis);
- Cnn14: six ``ConvBlock`` (two 3x3 conv, no bias, each followed by BN + ReLU), channels
  64-128-256-512-1024-2048, 2x2 average pooling after blocks 1-5 and none after block 6;
- Cnn6 / Cnn10: four blocks, channels 64-128-256-512, 2x2 average pooling after each; Cnn6 blocks are
  ``ConvBlock5x5`` (one 5x5 conv + BN + ReLU), Cnn10 blocks are ``ConvBlock`` (two 3x3);
- mean over frequency -> ``[batch, channels, frames']``; clip pooling = max over time + mean over time;
  ``fc1`` (+ ReLU) then ``fc_audioset`` (+ sigmoid) over 527 AudioSet classes. Dropout only acts in training.

The original's torchlibrosa extractor (checkpoint keys ``spectrogram_extractor.*`` and ``logmel_extractor.*``,
frozen STFT kernels and mel matrix) is replaced by snapkit's own ``LogMel(PANNS)``, so those keys are dropped
on load; SpecAugmentation and mixup are training-only and have no parameters, so they are left out.

Output frame hop: the front end gives one frame every 320 samples at 32 kHz (10 ms); the 2x2 poolings divide
time by 32 in Cnn14 (0.32 s per output frame) and by 16 in Cnn6 and Cnn10 (0.16 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from snapkit.errors import WeightsError
from snapkit.features.config import PANNS
from snapkit.features.frontend import LogMel
from snapkit.models.backbones.base import FrameEmbedder, load_checkpoint_file
from snapkit.models.streaming import Pointwise, StreamStage, TimeConv, TimePool

AUDIOSET_CLASSES = 527
# Checkpoint entries of the original torchlibrosa front end, which LogMel replaces.
_EXTRACTOR_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.")


def _init_layer(layer: nn.Conv2d | nn.Linear) -> None:
    # Same initialisation as the original (Xavier uniform, zero bias), so an untrained model behaves alike.
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _init_bn(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    nn.init.zeros_(bn.bias)
    nn.init.ones_(bn.weight)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions (padding 1, no bias), each followed by BatchNorm and ReLU, then 2D pooling.

    Keys: ``conv1``, ``conv2``, ``bn1``, ``bn2`` (as in the original).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        for conv in (self.conv1, self.conv2):
            _init_layer(conv)
        for bn in (self.bn1, self.bn2):
            _init_bn(bn)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int] = (2, 2)) -> torch.Tensor:
        """``[batch, in, time, freq]`` -> ``[batch, out, time // p0, freq // p1]`` (average pooling)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)

    def streaming_stages(self, pool: int) -> list[StreamStage]:
        """This block as stream stages (eval mode), with ``pool`` x ``pool`` average pooling."""
        return [
            TimeConv(self.conv1),
            Pointwise(lambda x: F.relu(self.bn1(x))),
            TimeConv(self.conv2),
            Pointwise(lambda x: F.relu(self.bn2(x))),
            *_pool_stages(pool),
        ]


class ConvBlock5x5(nn.Module):
    """One 5x5 convolution (padding 2, no bias), BatchNorm, ReLU, then 2D average pooling (keys ``conv1``, ``bn1``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=5, stride=1, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        _init_layer(self.conv1)
        _init_bn(self.bn1)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int] = (2, 2)) -> torch.Tensor:
        """``[batch, in, time, freq]`` -> ``[batch, out, time // p0, freq // p1]``."""
        x = F.relu(self.bn1(self.conv1(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)

    def streaming_stages(self, pool: int) -> list[StreamStage]:
        """This block as stream stages (eval mode), with ``pool`` x ``pool`` average pooling."""
        return [TimeConv(self.conv1), Pointwise(lambda x: F.relu(self.bn1(x))), *_pool_stages(pool)]


def _pool_stages(pool: int) -> list[StreamStage]:
    return [TimePool(lambda x: F.avg_pool2d(x, kernel_size=pool), pool)] if pool > 1 else []


class PannsCnn(FrameEmbedder):
    """Common body of Cnn6 / Cnn10 / Cnn14; use those subclasses.

    Input: mono waveform ``[batch, samples]`` at 32 kHz, float in [-1, 1].
    """

    # Set by each subclass.
    registry_name: ClassVar[str]
    block_type: ClassVar[type[ConvBlock] | type[ConvBlock5x5]]
    channels: ClassVar[tuple[int, ...]]
    # Time (and frequency) pooling factor after each block; the last block of Cnn14 has none.
    pools: ClassVar[tuple[int, ...]]

    def __init__(self, classes_num: int = AUDIOSET_CLASSES) -> None:
        super().__init__()
        self.name = self.registry_name
        self.frontend_config = PANNS
        self.feature_dim = self.channels[-1]
        self.time_downsampling = 1
        for pool in self.pools:
            self.time_downsampling *= pool
        self.frame_hop_s = PANNS.hop_s * self.time_downsampling

        self.frontend = LogMel(PANNS)
        self.bn0 = nn.BatchNorm2d(PANNS.n_mels)
        in_channels = 1
        for index, out_channels in enumerate(self.channels, start=1):
            # Attribute names conv_block1..N are the checkpoint's key prefixes.
            self.add_module(f"conv_block{index}", self.block_type(in_channels, out_channels))
            in_channels = out_channels
        width = self.channels[-1]
        self.fc1 = nn.Linear(width, width, bias=True)
        self.fc_audioset = nn.Linear(width, classes_num, bias=True)
        _init_bn(self.bn0)
        _init_layer(self.fc1)
        _init_layer(self.fc_audioset)

    # --------------------------------------------------------------------------------------------------------

    def num_frames(self, num_samples: int) -> int:
        """Output frames for ``num_samples`` samples: log-mel frames // time downsampling (nested floors)."""
        return self.frontend.num_frames(num_samples) // self.time_downsampling

    def streaming_stages(self) -> list[StreamStage]:
        """The network as stream stages on ``[1, 1, frames, mels]`` log-mel pieces (eval mode): bn0 and every
        block; the output is the last block's map, as :meth:`_feature_map` gives for the whole stream."""
        stages: list[StreamStage] = [Pointwise(lambda x: self.bn0(x.transpose(1, 3)).transpose(1, 3))]
        for index, pool in enumerate(self.pools, start=1):
            stages += getattr(self, f"conv_block{index}").streaming_stages(pool)
        return stages

    def _feature_map(self, waveform: torch.Tensor) -> torch.Tensor:
        """Last conv block's output ``[batch, channels, frames_out, mel_bins_out]``."""
        if waveform.dim() != 2:
            raise ValueError(f"Expected a waveform [batch, samples], got shape {tuple(waveform.shape)}.")
        if self.num_frames(waveform.shape[-1]) < 1:
            minimum = (self.time_downsampling - 1) * PANNS.hop_length
            raise ValueError(
                f"{self.name} needs at least {minimum} samples ({minimum / PANNS.sample_rate_hz:.3f} s at "
                f"{PANNS.sample_rate_hz} Hz), got {waveform.shape[-1]}."
            )
        x = self.frontend(waveform).unsqueeze(1)  # [batch, 1, frames, mels]
        # bn0 normalises each mel bin: move mels to the channel axis and back.
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for index, pool in enumerate(self.pools, start=1):
            block = getattr(self, f"conv_block{index}")
            x = block(x, pool_size=(pool, pool))
            x = F.dropout(x, p=0.2, training=self.training)
        return x

    def forward_frames(self, waveform: torch.Tensor) -> torch.Tensor:
        """Frame features ``[batch, frames_out, feature_dim]``: the last block's map averaged over frequency.

        ``frames_out = (samples // 320 + 1) // time_downsampling``; one frame every ``frame_hop_s`` seconds.
        """
        return self._feature_map(waveform).mean(dim=3).transpose(1, 2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_frames`."""
        return self.forward_frames(waveform)

    def forward_clip(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """The original clip path: ``{"clipwise_output": [batch, classes] probabilities, "embedding": [batch,
        feature_dim] (after fc1 + ReLU)}``."""
        x = self._feature_map(waveform).mean(dim=3)  # [batch, channels, frames_out]
        x = x.amax(dim=2) + x.mean(dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu(self.fc1(x))
        embedding = F.dropout(x, p=0.5, training=self.training)
        clipwise = torch.sigmoid(self.fc_audioset(x))
        return {"clipwise_output": clipwise, "embedding": embedding}

    # --------------------------------------------------------------------------------------------------------

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's state dict without the front end: exactly the keys a released checkpoint must hold
        (besides the dropped extractor keys)."""
        return {key: value for key, value in self.state_dict().items() if not key.startswith("frontend.")}

    def load_state_from_checkpoint(self, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load an original PANNs state dict (extractor keys are ignored); every other key must match.

        Raises:
            WeightsError: a key is missing or unexpected, or a shape differs.
        """
        state = {k: v for k, v in state.items() if not k.startswith(_EXTRACTOR_PREFIXES)}
        expected = self.checkpoint_state_dict()
        # Checkpoints written before PyTorch 0.4.1 lack BatchNorm's num_batches_tracked; it is unused in eval.
        missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in expected]
        wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
        if missing or unexpected or wrong_shape:
            details = "; ".join(
                f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong_shape))
                if keys
            )
            raise WeightsError(
                f"The {source} does not fit {self.name} ({details}); use the released {self.name} weights."
            )
        # Not strict only because the front end's own buffers (if any) are not in the checkpoint; every
        # checkpoint key was checked above.
        self.load_state_dict(state, strict=False)

    def load_checkpoint(self, path: Path) -> None:
        """Load a released checkpoint file (a dict whose ``"model"`` entry is the state dict).

        Raises:
            WeightsError: unreadable file, no ``"model"`` entry, or keys/shapes that do not fit.
        """
        checkpoint = load_checkpoint_file(path)
        state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
        if not isinstance(state, Mapping):
            raise WeightsError(
                f"The file {path} is not a PANNs checkpoint (no 'model' state dict); use the released "
                f"{self.name} weights."
            )
        self.load_state_from_checkpoint(state, source=f"file {path}")


class Cnn6(PannsCnn):
    """PANNs Cnn6: four 5x5 blocks (64-128-256-512), 16x time downsampling -> 512-d frames every 0.16 s."""

    registry_name = "panns-cnn6"
    block_type = ConvBlock5x5
    channels = (64, 128, 256, 512)
    pools = (2, 2, 2, 2)


class Cnn10(PannsCnn):
    """PANNs Cnn10: four 3x3 double-conv blocks (64-128-256-512), 16x -> 512-d frames every 0.16 s."""

    registry_name = "panns-cnn10"
    block_type = ConvBlock
    channels = (64, 128, 256, 512)
    pools = (2, 2, 2, 2)


class Cnn14(PannsCnn):
    """PANNs Cnn14: six 3x3 double-conv blocks (64 ... 2048), 32x -> 2048-d frames every 0.32 s."""

    registry_name = "panns-cnn14"
    block_type = ConvBlock
    channels = (64, 128, 256, 512, 1024, 2048)
    pools = (2, 2, 2, 2, 2, 1)
