"""The model snapkit trains, saves in a bundle and runs in the detector: waveform -> per-frame and per-clip
probabilities of each target class.

Two kinds, chosen by ``ModelConfig.backbone``:

- ``"convnet"``: ``LogMel(SNAPKIT)`` (fixed) -> :class:`~snapkit.models.convnet.ConvNet` + per-frame head
  (trained from scratch), one output frame every 10 ms;
- a pretrained backbone (``registry.BACKBONES``): the frozen backbone's frames -> a small per-frame head (trained), one
  output frame every ``backbone.frame_hop_s`` seconds.

Outputs are independent sigmoids (multi-label): the background class has no output, and a background clip's
target is all zeros.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from snapkit.features.config import SNAPKIT, FrontEndConfig
from snapkit.features.frontend import LogMel
from snapkit.models.backbones.base import FrameEmbedder
from snapkit.models.backbones.registry import backbone_architecture, load_backbone
from snapkit.models.config import CONVNET, ModelConfig
from snapkit.models.convnet import ConvNet
from snapkit.models.heads import FrameHead
from snapkit.models.pooling import make_pooling

# What the clip head pools over time: max and standard deviation, so its input is this many times the trunk's width.
CLIP_POOLS = 2


class SoundClassifier(nn.Module):
    """Waveform ``[batch, samples]`` -> ``(frame_probs [batch, frames, classes], clip_probs [batch, classes])``.

    The forward pass is split where training needs it:

    1. :meth:`features` - the part that never learns (log-mel frames for the ConvNet; frozen backbone frames
       for a head), computed without gradients; augmentation and feature caching act on its output;
    2. :meth:`frame_outputs` - the trainable part: per-frame logits (and attention logits for attention
       pooling);
    3. :meth:`clip_probs` - pooling of frame logits into one probability per clip, for the clip-level loss.

    Args:
        config: What to build. ``config.backbone`` must match ``backbone``.
        backbone: The pretrained :class:`FrameEmbedder` for ``config.backbone`` (frozen here if it is not
            already); ``None`` for the ConvNet.
    """

    def __init__(self, config: ModelConfig, backbone: FrameEmbedder | None = None) -> None:
        super().__init__()
        self.config = config
        self.logmel: LogMel | None = None
        self.convnet: ConvNet | None = None
        self.backbone: FrameEmbedder | None = None
        if config.backbone == CONVNET:
            if backbone is not None:
                raise ValueError("The ConvNet model takes no backbone; pass backbone=None.")
            self.logmel = LogMel(SNAPKIT)
            self.convnet = ConvNet(
                SNAPKIT.n_mels, config.convnet_channels, config.convnet_kernel, config.convnet_future_frames
            )
            trunk_dim = self.convnet.out_dim
            self._time_stride = 1
        else:
            if backbone is None:
                raise ValueError(
                    f"Model config asks for backbone {config.backbone!r}: pass it, e.g. "
                    f"SoundClassifier.from_config(config) or load_backbone({config.backbone!r})."
                )
            if backbone.name != config.backbone:
                raise ValueError(f"Backbone {backbone.name!r} given for a {config.backbone!r} model config.")
            if not backbone.frozen:
                backbone.freeze()
            self.backbone = backbone
            trunk_dim = backbone.feature_dim
            # Log-mel frames per output frame: the backbone's time pooling.
            self._time_stride = int(
                getattr(
                    backbone,
                    "time_downsampling",
                    round(backbone.frame_hop_s / backbone.frontend_config.hop_s),
                )
            )
        # Frozen features come in very different scales per dimension (ReLU maps); a learnt per-dimension
        # standardisation, like the StandardScaler a logistic-regression baseline uses, lets a linear head use them.
        self.input_norm = nn.BatchNorm1d(trunk_dim) if backbone is not None else None
        self.head = FrameHead(trunk_dim, config.n_classes, config.head_hidden, config.dropout)
        self.pooling = make_pooling(config.pooling)
        # A separate head for attention logits, as PANNs' AttBlock has separate `att` and `cla` layers.
        self.att_head = (
            FrameHead(trunk_dim, config.n_classes, config.head_hidden, config.dropout)
            if self.pooling.needs_attention
            else None
        )
        # The clip head reads the whole input's pooled features. On real 5 s clips (kitchen20, 20-way, 5 clips a
        # class, sfx-cnn9, 3 episodes) a linear layer on max-pooled features scored 0.62 where the max over frames
        # of a per-frame linear layer scored 0.50: the frame head must decide from one frame, the clip head sees
        # the evidence of every frame at once. Max + standard deviation over time added 0.015 over max alone.
        # Its last output is background, so "nothing to report" is an answer it weighs against the sounds, not
        # what is left when no sigmoid clears a threshold (that rule lost a third of real sounds to background).
        self.clip_head = (
            nn.Sequential(nn.Dropout(config.dropout), nn.Linear(CLIP_POOLS * trunk_dim, config.n_classes + 1))
            if config.clip_head
            else None
        )

    @classmethod
    def from_config(
        cls,
        config: ModelConfig,
        *,
        pretrained: bool = True,
        weights: Path | str | None = None,
        download: bool = True,
    ) -> SoundClassifier:
        """A new, untrained classifier for ``config``.

        Args:
            config: What to build.
            pretrained: Load the backbone's released weights (``load_backbone``); False gives a random-weight
                backbone (tests, or before loading a saved state dict).
            weights: A backbone weights file instead of the cache / ``$SNAPKIT_WEIGHTS_DIR``.
            download: Whether missing backbone weights may be downloaded.

        Raises:
            WeightsError: ``pretrained`` weights are missing or do not verify.
        """
        if config.backbone == CONVNET:
            return cls(config, None)
        if pretrained:
            backbone = load_backbone(config.backbone, weights, download=download)
        else:
            backbone = backbone_architecture(config.backbone)
        return cls(config, backbone)

    # ------------------------------------------------------------------------------------------------------
    # Description

    @property
    def labels(self) -> tuple[str, ...]:
        """Target classes, in output order (background excluded)."""
        return self.config.labels

    @property
    def n_classes(self) -> int:
        """Number of outputs."""
        return self.config.n_classes

    @property
    def frontend_config(self) -> FrontEndConfig:
        """The log-mel front end the input goes through (``SNAPKIT`` or the backbone's)."""
        return SNAPKIT if self.backbone is None else self.backbone.frontend_config

    @property
    def sample_rate_hz(self) -> int:
        """Sample rate the input waveform must have."""
        return self.frontend_config.sample_rate_hz

    @property
    def clip_samples(self) -> int:
        """Samples in one training clip (``config.clip_s`` at ``sample_rate_hz``)."""
        return round(self.config.clip_s * self.sample_rate_hz)

    @property
    def frame_hop_s(self) -> float:
        """Seconds between two output frames: 0.01 for the ConvNet, the backbone's ``frame_hop_s`` otherwise."""
        return self.frontend_config.hop_s * self._time_stride

    @property
    def first_frame_centre_s(self) -> float:
        """Centre time of output frame 0, in seconds from the start of the input.

        The front end's frames are centred: log-mel frame ``t`` is centred on sample ``t * hop_length``, i.e.
        at ``t * hop_s`` seconds. Convolutions with "same" padding keep that alignment. A model that pools time
        by ``s`` (floor, non-overlapping) makes output frame ``k`` from log-mel frames ``k*s .. k*s + s - 1``,
        whose centre is at ``(k*s + (s - 1) / 2) * hop_s``. So frame 0 is centred at ``(s - 1) / 2 * hop_s``:
        0 for the ConvNet (s = 1); 0.0813 s for sfx-cnn9 (s = 8, hop 23.2 ms); 0.075 s for PANNs Cnn6/Cnn10
        (s = 16, hop 10 ms); 0.155 s for Cnn14 (s = 32). The convolutions' receptive field reaches further
        on both sides, symmetrically, so the centre stays where it is.
        """
        return (self._time_stride - 1) / 2 * self.frontend_config.hop_s

    def frame_times_s(self, num_frames: int) -> np.ndarray:
        """Centre times, in seconds from the start of the input, of output frames ``0 .. num_frames - 1``:
        ``first_frame_centre_s + k * frame_hop_s`` (float64 ``[num_frames]``)."""
        return self.first_frame_centre_s + np.arange(num_frames, dtype=np.float64) * self.frame_hop_s

    def num_output_frames(self, num_samples: int) -> int:
        """Output frames :meth:`forward` gives for a waveform of ``num_samples`` samples (0 when too short)."""
        if self.backbone is None:
            assert self.logmel is not None
            return max(self.logmel.num_frames(num_samples), 0)
        return max(self.backbone.num_frames(num_samples), 0)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters training updates: the ConvNet's or the head's (never the frozen backbone's)."""
        return [parameter for parameter in self.parameters() if parameter.requires_grad]

    # ------------------------------------------------------------------------------------------------------
    # Forward pass

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """The non-trainable part, computed without gradients: ``[batch, samples]`` -> ``[batch, frames, dim]``.

        ConvNet: log-mel frames in dB, ``[batch, 1 + samples // 160, 64]`` at 10 ms. Heads: the frozen
        backbone's frame features ``[batch, backbone.num_frames(samples), feature_dim]`` (the backbone is in
        eval mode whatever mode this module is in).

        Args:
            waveform: Mono float audio ``[batch, samples]`` in [-1, 1] at ``sample_rate_hz``.
        """
        if waveform.dim() != 2:
            raise ValueError(f"SoundClassifier expects waveforms [batch, samples], got shape {tuple(waveform.shape)}.")
        with torch.no_grad():
            if self.backbone is None:
                assert self.logmel is not None
                return self.logmel(waveform)
            return self.backbone(waveform)

    def frame_outputs(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The trainable part: ``features`` ``[batch, frames, dim]`` -> ``(frame_logits, att_logits)``.

        Both are ``[batch, frames, classes]`` with the same frames as the input (nothing here pools time);
        ``att_logits`` is None unless the pooling is ``"attention"``.
        """
        return self.head_outputs(features if self.convnet is None else self.convnet(features))

    def head_outputs(self, trunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The heads alone: trunk frames ``[batch, frames, dim]`` (ConvNet output or backbone frames) ->
        ``(frame_logits, att_logits)`` as :meth:`frame_outputs`. Each frame is treated on its own (eval mode)."""
        trunk = self._normalised(trunk)
        att_logits = self.att_head(trunk) if self.att_head is not None else None
        return self.head(trunk), att_logits

    def _normalised(self, trunk: torch.Tensor) -> torch.Tensor:
        if self.input_norm is None:
            return trunk
        return self.input_norm(trunk.transpose(1, 2)).transpose(1, 2)  # BatchNorm1d wants [batch, dim, frames]

    def all_outputs(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``features`` ``[batch, frames, dim]`` -> ``(frame_logits, att_logits, clip_logits)``: the first two as
        :meth:`frame_outputs`, ``clip_logits`` ``[batch, classes + 1]`` (last: background) from the clip head over
        all the frames, None without a clip head. One pass through the trunk serves both heads."""
        trunk = self._normalised(features if self.convnet is None else self.convnet(features))
        att_logits = self.att_head(trunk) if self.att_head is not None else None
        # The ConvNet's trunk learns from the frame loss alone and the clip head reads it: trained jointly, the clip
        # loss pulled the trunk away from what the frame head (the detector) needs. Measured (experiments/
        # convnet_budget.py on kitchen20, 5 classes x 50 clips; generated demo data, 3 seeds x 3 streams): held-out
        # accuracy 0.885 -> 0.904, planted sounds found 38 -> 42 of 51. Without any clip head: 0.635, 47 of 51.
        clip_in = trunk.detach() if self.convnet is not None else trunk
        clip_logits = self.clip_head(clip_pool(clip_in)) if self.clip_head is not None else None
        return self.head(trunk), att_logits, clip_logits

    def decision_from(
        self, frame_logits: torch.Tensor, att_logits: torch.Tensor | None, clip_logits: torch.Tensor | None
    ) -> torch.Tensor:
        """Clip probabilities ``[batch, classes]`` that say which sound an input holds, from :meth:`all_outputs`:
        the clip head's softmax without its background column where the model has one (background's is one minus
        their sum), else the pooled frame probabilities (:meth:`clip_probs`)."""
        return clip_softmax(clip_logits) if clip_logits is not None else self.clip_probs(frame_logits, att_logits)

    def clip_probs(self, frame_logits: torch.Tensor, att_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Clip probabilities ``[batch, classes]`` in (0, 1) by the configured pooling of ``[batch, frames,
        classes]`` logits."""
        return self.pooling(frame_logits, att_logits)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[batch, samples]`` -> ``(frame_probs [batch, frames, classes], clip_probs [batch, classes])``.

        ``frame_probs`` are the per-frame sigmoids the detector thresholds; frame ``k`` is centred at
        ``frame_times_s(frames)[k]``; ``frames == num_output_frames(samples)``. ``clip_probs`` come from the
        clip head where the model has one (:meth:`decision_from`).
        """
        frame_logits, att_logits, clip_logits = self.all_outputs(self.features(waveform))
        return torch.sigmoid(frame_logits), self.decision_from(frame_logits, att_logits, clip_logits)


def clip_softmax(clip_logits: torch.Tensor) -> torch.Tensor:
    """Clip head logits ``[batch, classes + 1]`` -> probabilities of the target classes ``[batch, classes]``
    (softmax over all outputs, background's column dropped)."""
    return torch.softmax(clip_logits, dim=-1)[..., :-1]


def clip_pool(trunk: torch.Tensor) -> torch.Tensor:
    """Trunk frames ``[batch, frames, dim]`` -> ``[batch, 2 * dim]``: max and (population) standard deviation over
    time. The max keeps the loudest evidence of each feature, the spread tells a steady sound from a passing one."""
    return torch.cat([trunk.amax(dim=1), trunk.std(dim=1, correction=0)], dim=1)
