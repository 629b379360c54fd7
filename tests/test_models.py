"""The trainable models: config, ConvNet, heads on each backbone, frame timing, pooling, frozen backbones.

Every model here has random weights (backbones are built from their classes, never downloaded).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from snapkit.features.config import PANNS, SFX_CNN9, SNAPKIT
from snapkit.models.backbones.base import FrameEmbedder
from snapkit.models.backbones.registry import BACKBONES, backbone_architecture
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import ModelConfig
from snapkit.models.convnet import ConvNet
from snapkit.models.heads import FrameHead
from snapkit.models.pooling import AttentionPooling, LinearSoftmaxPooling, MaxPooling, make_pooling

LABELS = ("clap", "knock", "snap")


@pytest.fixture(scope="module")
def backbones() -> dict[str, FrameEmbedder]:
    """One random-weight frozen backbone of each architecture, built once (Cnn14 takes a moment to initialise)."""
    torch.manual_seed(0)
    return {name: backbone_architecture(name) for name in BACKBONES}


def _noise(batch: int, seconds: float, sample_rate_hz: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, round(seconds * sample_rate_hz), generator=generator)


# ----------------------------------------------------------------------------------------------------------
# ModelConfig
# ----------------------------------------------------------------------------------------------------------


def test_config_round_trips_through_json() -> None:
    config = ModelConfig(
        backbone="convnet",
        labels=LABELS,
        pooling="max",
        head_hidden=32,
        convnet_channels=(4, 8),
        convnet_future_frames=1,
    )
    restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert isinstance(restored.labels, tuple) and isinstance(restored.convnet_channels, tuple)
    assert all(isinstance(v, (str, int, float, bool, list, type(None))) for v in config.to_dict().values())
    older = {k: v for k, v in config.to_dict().items() if k != "convnet_future_frames"}  # bundles before the setting
    assert ModelConfig.from_dict(older).convnet_future_frames is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backbone": "resnet"}, "Unknown backbone"),
        ({"labels": ()}, "at least one"),
        ({"labels": ("snap", "clap")}, "sorted"),
        ({"labels": ("clap", "clap")}, "repeat"),
        ({"labels": ("background", "clap")}, "background"),
        ({"clip_s": 0.0}, "clip_s"),
        ({"pooling": "mean"}, "Unknown pooling"),
        ({"head_hidden": -1}, "head_hidden"),
        ({"dropout": 1.0}, "dropout"),
        ({"convnet_channels": ()}, "convnet_channels"),
        ({"convnet_kernel": 4}, "odd"),
    ],
)
def test_config_rejects_bad_values(changes: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"backbone": "convnet", "labels": LABELS, **changes}
    with pytest.raises(ValueError, match=message):
        ModelConfig(**values)  # type: ignore[arg-type]


def test_config_from_dict_rejects_unknown_keys() -> None:
    values = ModelConfig(backbone="convnet", labels=LABELS).to_dict()
    with pytest.raises(ValueError, match="Unknown model settings: colour"):
        ModelConfig.from_dict({**values, "colour": "red"})


# ----------------------------------------------------------------------------------------------------------
# ConvNet
# ----------------------------------------------------------------------------------------------------------


def test_convnet_keeps_the_frame_rate_and_is_small() -> None:
    net = ConvNet(SNAPKIT.n_mels)
    params = sum(p.numel() for p in net.parameters())
    assert 10_000 < params < 100_000  # "tens of thousands"
    out = net(torch.randn(2, 57, SNAPKIT.n_mels) * 20 - 50)  # raw dB values are fine: bn0 normalises
    assert out.shape == (2, 57, 64)
    assert torch.isfinite(out).all()


def test_convnet_classifier_shapes_and_timing() -> None:
    model = SoundClassifier(ModelConfig(backbone="convnet", labels=LABELS), None).eval()
    assert model.sample_rate_hz == 16_000
    assert model.frame_hop_s == pytest.approx(0.01)
    assert model.first_frame_centre_s == 0.0
    waveform = _noise(2, 0.5, 16_000)
    frame_probs, clip_probs = model(waveform)
    frames = 1 + 8000 // 160
    assert frame_probs.shape == (2, frames, 3) and clip_probs.shape == (2, 3)
    assert model.num_output_frames(8000) == frames
    assert ((frame_probs > 0) & (frame_probs < 1)).all() and ((clip_probs > 0) & (clip_probs < 1)).all()
    features = model.features(waveform)
    assert features.shape == (2, frames, SNAPKIT.n_mels) and not features.requires_grad
    np.testing.assert_allclose(model.frame_times_s(3), [0.0, 0.01, 0.02])


# ----------------------------------------------------------------------------------------------------------
# Heads on frozen backbones
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("hidden", [0, 16])
def test_head_on_each_backbone(backbones: dict[str, FrameEmbedder], name: str, hidden: int) -> None:
    backbone = backbones[name]
    model = SoundClassifier(
        ModelConfig(backbone=name, labels=LABELS, head_hidden=hidden, pooling="attention"), backbone
    ).eval()
    assert model.sample_rate_hz == backbone.frontend_config.sample_rate_hz
    assert model.frame_hop_s == pytest.approx(backbone.frame_hop_s)
    waveform = _noise(2, 1.0, model.sample_rate_hz)
    features = model.features(waveform)
    assert features.shape[-1] == backbone.feature_dim and not features.requires_grad
    frame_logits, att_logits = model.frame_outputs(features)
    assert frame_logits.shape == (2, features.shape[1], 3)
    assert att_logits is not None and att_logits.shape == frame_logits.shape
    frame_probs, clip_probs = model(waveform)
    assert frame_probs.shape == (2, model.num_output_frames(waveform.shape[1]), 3)
    assert clip_probs.shape == (2, 3)


@pytest.mark.parametrize("name", ["convnet", *BACKBONES])
def test_frame_count_and_times_match_the_output(backbones: dict[str, FrameEmbedder], name: str) -> None:
    backbone = None if name == "convnet" else backbones[name]
    model = SoundClassifier(ModelConfig(backbone=name, labels=LABELS, pooling="max"), backbone).eval()
    expected_hop = {
        "convnet": SNAPKIT.hop_s,
        "sfx-cnn9": 8 * SFX_CNN9.hop_s,
        "panns-cnn6": 16 * PANNS.hop_s,
        "panns-cnn10": 16 * PANNS.hop_s,
        "panns-cnn14": 32 * PANNS.hop_s,
    }[name]
    assert model.frame_hop_s == pytest.approx(expected_hop)
    for seconds in (0.7, 1.0, 1.37):
        samples = round(seconds * model.sample_rate_hz)
        frame_probs, _ = model(_noise(1, seconds, model.sample_rate_hz))
        frames = frame_probs.shape[1]
        assert frames == model.num_output_frames(samples)
        times = model.frame_times_s(frames)
        assert times.shape == (frames,)
        np.testing.assert_allclose(np.diff(times), model.frame_hop_s)
        # Every output frame is centred inside the input (the last centred log-mel frame may sit on its end).
        assert times[0] >= 0.0 and times[-1] <= samples / model.sample_rate_hz + 1e-9


def _time_support_centre(body: nn.Module, logmel: torch.Tensor, frame: int) -> float:
    """Midpoint (in log-mel frames) of the log-mel frames that output ``frame`` of ``body`` depends on."""
    logmel = logmel.clone().requires_grad_(True)
    out = body(logmel)  # [1, frames_out, dim]
    out[0, frame].sum().backward()
    assert logmel.grad is not None
    used = torch.nonzero(logmel.grad[0].abs().sum(dim=1) > 0).flatten()
    return (used.min().item() + used.max().item()) / 2


@pytest.mark.parametrize("name", ["convnet", "panns-cnn6", "panns-cnn14"])
def test_frame_centre_is_where_the_network_looks(backbones: dict[str, FrameEmbedder], name: str) -> None:
    """``first_frame_centre_s`` and ``frame_hop_s`` agree with the network's real receptive field: the span of
    log-mel frames an output frame depends on is centred on that frame's stated time.

    (sfx-cnn9 is left out: its max pooling makes the span depend on the data. The ConvNet and PANNs, with
    "same" convolutions and average pooling, have a fixed span.)
    """
    torch.manual_seed(0)
    hop_s = PANNS.hop_s if name != "convnet" else SNAPKIT.hop_s
    model = SoundClassifier(ModelConfig(backbone=name, labels=LABELS), None if name == "convnet" else backbones[name])
    model.eval()  # BatchNorm in train mode would mix all frames through the batch statistics
    if name == "convnet":
        assert model.convnet is not None
        body: nn.Module = model.convnet
        n_mels = SNAPKIT.n_mels
    else:
        backbone = backbones[name]

        class _Body(nn.Module):  # the backbone from the log-mel on: bn0, blocks, mean over frequency
            def forward(self, logmel: torch.Tensor) -> torch.Tensor:
                x = backbone.bn0(logmel.unsqueeze(1).transpose(1, 3)).transpose(1, 3)  # type: ignore[attr-defined]
                for index, pool in enumerate(backbone.pools, start=1):  # type: ignore[attr-defined]
                    x = getattr(backbone, f"conv_block{index}")(x, pool_size=(pool, pool))
                return x.mean(dim=3).transpose(1, 2)

        body = _Body()
        n_mels = PANNS.n_mels
    for parameter in body.parameters():
        parameter.requires_grad_(False)  # only the input's gradient is wanted
    # Long enough, and frames far enough from both ends, that the span is not clipped by the edges (Cnn14 looks
    # about 126 log-mel frames either side).
    logmel = torch.randn(1, 1000, n_mels)
    for frame in (20, 21):
        centre = _time_support_centre(body, logmel, frame)
        stated = model.frame_times_s(frame + 1)[frame] / hop_s
        assert centre == pytest.approx(stated)


# ----------------------------------------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------------------------------------


def test_one_strong_frame_gives_a_high_max_and_all_silent_frames_a_low_probability() -> None:
    logits = torch.full((1, 50, 2), -12.0)
    logits[0, 20, 0] = 12.0  # class 0: one confident frame
    uniform_att = torch.zeros_like(logits)
    max_probs = MaxPooling()(logits)
    assert max_probs[0, 0] > 0.99 and max_probs[0, 1] < 1e-4
    lse = LinearSoftmaxPooling()(logits)
    assert lse[0, 0] > 0.99 and lse[0, 1] < 1e-4  # its own probability weighs the confident frame most
    att = AttentionPooling()(logits, uniform_att)
    assert att[0, 0] == pytest.approx(1 / 50, rel=1e-3) and att[0, 1] < 1e-4  # uniform attention = mean


def test_pooling_orders_max_linear_softmax_mean() -> None:
    logits = torch.randn(4, 30, 5, generator=torch.Generator().manual_seed(1)) * 3
    probs = torch.sigmoid(logits)
    max_probs = MaxPooling()(logits)
    lse = LinearSoftmaxPooling()(logits)
    assert (max_probs >= lse - 1e-6).all()
    assert (lse >= probs.mean(dim=1) - 1e-6).all()


def test_attention_follows_its_weights_and_needs_them() -> None:
    logits = torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(2))
    att = torch.full_like(logits, -10.0)
    att[:, 7, :] = 10.0  # all attention on frame 7 (within the +-10 clamp)
    pooled = AttentionPooling()(logits, att)
    torch.testing.assert_close(pooled, torch.sigmoid(logits[:, 7, :]), atol=1e-6, rtol=1e-4)
    with pytest.raises(ValueError, match="att_logits"):
        AttentionPooling()(logits, None)


@pytest.mark.parametrize("name", ["max", "linear_softmax", "attention"])
def test_pooling_stays_strictly_inside_zero_one(name: str) -> None:
    logits = torch.tensor([[[100.0, -100.0]], [[50.0, -50.0]]]).expand(2, 8, 2).contiguous()
    clip = make_pooling(name)(logits, torch.zeros_like(logits))
    assert clip.shape == (2, 2)
    assert ((clip > 0) & (clip < 1)).all()
    assert torch.isfinite(torch.log(clip)).all() and torch.isfinite(torch.log1p(-clip)).all()


def test_frame_head_sizes() -> None:
    assert FrameHead(12, 3)(torch.randn(2, 5, 12)).shape == (2, 5, 3)
    head = FrameHead(12, 3, hidden=8, dropout=0.2)
    assert head(torch.randn(2, 5, 12)).shape == (2, 5, 3)
    assert sum(p.numel() for p in head.parameters()) == 12 * 8 + 8 + 8 * 3 + 3
    with pytest.raises(ValueError, match=r"\[batch, frames, 12\]"):
        head(torch.randn(2, 12))


# ----------------------------------------------------------------------------------------------------------
# What trains and what does not
# ----------------------------------------------------------------------------------------------------------


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval_mode(backbones: dict[str, FrameEmbedder]) -> None:
    backbone = backbones["panns-cnn6"]
    model = SoundClassifier(
        ModelConfig(backbone="panns-cnn6", labels=LABELS, head_hidden=8, pooling="attention"), backbone
    )
    model.train()
    assert model.training and model.head.training
    assert not backbone.training and all(not m.training for m in backbone.modules())
    running_mean = backbone.bn0.running_mean.clone()
    trainable = {id(p) for p in model.trainable_parameters()}
    head_params = {
        id(p)
        for p in [*model.head.parameters(), *model.att_head.parameters(), *model.input_norm.parameters()]  # type: ignore[union-attr]
    }
    assert trainable == head_params
    assert not any(p.requires_grad for p in backbone.parameters())

    _, clip_probs = model(_noise(2, 1.0, model.sample_rate_hz))
    loss = torch.nn.functional.binary_cross_entropy(clip_probs, torch.tensor([[1.0, 0, 0], [0, 0, 0]]))
    loss.backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert all(p.grad is not None for p in model.trainable_parameters())
    torch.testing.assert_close(backbone.bn0.running_mean, running_mean)  # batch statistics did not leak in


def test_convnet_trains_everything_but_the_front_end() -> None:
    model = SoundClassifier(ModelConfig(backbone="convnet", labels=LABELS, pooling="linear_softmax"), None).train()
    assert model.att_head is None
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable == {id(p) for p in model.parameters()}  # the front end has buffers, no parameters
    assert len(trainable) > 0
    features = model.features(_noise(2, 0.5, 16_000))
    frame_logits, att_logits = model.frame_outputs(features)
    assert att_logits is None
    model.clip_probs(frame_logits).sum().backward()
    assert all(p.grad is not None for p in model.trainable_parameters())


def test_classifier_checks_its_backbone(backbones: dict[str, FrameEmbedder]) -> None:
    with pytest.raises(ValueError, match="pass it"):
        SoundClassifier(ModelConfig(backbone="sfx-cnn9", labels=LABELS), None)
    with pytest.raises(ValueError, match="given for a"):
        SoundClassifier(ModelConfig(backbone="sfx-cnn9", labels=LABELS), backbones["panns-cnn6"])
    with pytest.raises(ValueError, match="no backbone"):
        SoundClassifier(ModelConfig(backbone="convnet", labels=LABELS), backbones["panns-cnn6"])
