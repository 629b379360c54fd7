"""Incremental inference: a stream computed in pieces equals the model over the whole stream at once."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from snapkit.features.config import PANNS, SNAPKIT, FrontEndConfig
from snapkit.features.frontend import LogMel
from snapkit.models.backbones.registry import backbone_architecture
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import ModelConfig
from snapkit.models.streaming import StreamingClassifier, StreamingLogMel, streaming_unsupported_reason

LABELS = ("a", "b", "c")


def model_for(backbone: str, future_frames: int | None = None) -> SoundClassifier:
    torch.manual_seed(0)
    config = ModelConfig(
        backbone=backbone,
        labels=LABELS,
        pooling="max" if backbone == "convnet" else "attention",
        convnet_future_frames=future_frames,
    )
    model = SoundClassifier(config, None if backbone == "convnet" else backbone_architecture(backbone)).eval()
    if model.input_norm is not None:  # random but not trivial statistics, so the test sees them used
        model.input_norm.running_mean.uniform_(-0.5, 0.5)
        model.input_norm.running_var.uniform_(0.5, 2.0)
    return model


def random_pieces(audio: np.ndarray, seed: int, largest: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    pieces, i = [], 0
    while i < len(audio):
        n = int(rng.integers(1, largest))
        pieces.append(audio[i : i + n])
        i += n
    return pieces


def stream(model: SoundClassifier, audio: np.ndarray, seed: int, largest: int) -> np.ndarray:
    streamer = StreamingClassifier(model)
    outputs = [streamer.push(piece) for piece in random_pieces(audio, seed, largest)]
    outputs.append(streamer.push(np.zeros(0, np.float32), final=True))
    assert streamer.frames_done == sum(len(o) for o in outputs)
    return np.concatenate(outputs)


def whole(model: SoundClassifier, audio: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(audio)[None])[0][0].numpy()


@pytest.mark.parametrize("backbone", ["convnet", "convnet-future-1", "panns-cnn6", "panns-cnn10"])
@pytest.mark.parametrize(("seed", "largest"), [(1, 300), (2, 9000), (3, 40_000)])
def test_streamed_frames_equal_the_whole_stream(backbone: str, seed: int, largest: int) -> None:
    model = model_for("convnet", 1) if backbone == "convnet-future-1" else model_for(backbone)
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(round(4.37 * model.sample_rate_hz))).astype(np.float32)
    expected = whole(model, audio)
    got = stream(model, audio, seed, largest)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.parametrize(
    "config",
    [SNAPKIT, PANNS, dataclasses.replace(SNAPKIT, pad_mode="constant"), dataclasses.replace(SNAPKIT, pad_mode="edge")],
    ids=["snapkit-reflect", "panns", "constant", "edge"],
)
def test_streamed_log_mel_equals_the_whole_stream(config: FrontEndConfig) -> None:
    logmel = LogMel(config)
    audio = torch.from_numpy(np.random.default_rng(4).standard_normal(config.sample_rate_hz).astype(np.float32))
    streamer = StreamingLogMel(logmel)
    parts = [streamer.push(torch.from_numpy(p)) for p in random_pieces(audio.numpy(), 5, 3000)]
    parts.append(streamer.push(audio[:0], final=True))
    got = torch.cat([p for p in parts if p is not None], dim=1)
    expected = logmel(audio[None])
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("future_frames", [None, 1, 0])
def test_each_frame_needs_exactly_its_lookahead(future_frames: int | None) -> None:
    """Changing audio after a frame's centre + lookahead_s leaves it alone; changing it just before does not."""
    model = model_for("convnet", future_frames)
    streamer = StreamingClassifier(model)
    rate = model.sample_rate_hz
    audio = (0.1 * np.random.default_rng(6).standard_normal(2 * rate)).astype(np.float32)
    j = 100
    centre_s = float(model.frame_times_s(j + 1)[j])
    reference = whole(model, audio)[j]
    later = audio.copy()
    later[round((centre_s + streamer.lookahead_s) * rate) :] *= -3.0
    np.testing.assert_allclose(whole(model, later)[j], reference, atol=1e-7)
    earlier = audio.copy()
    earlier[round((centre_s + streamer.lookahead_s - 0.012) * rate) :] *= -3.0
    assert np.abs(whole(model, earlier)[j] - reference).max() > 1e-6


def test_short_stream_gives_what_the_whole_forward_gives() -> None:
    model = model_for("convnet")
    audio = np.full(2000, 0.1, np.float32)
    np.testing.assert_allclose(stream(model, audio, 7, 50), whole(model, audio), atol=2e-6)
    streamer = StreamingClassifier(model)
    assert streamer.push(np.zeros(100, np.float32), final=True).shape == (0, len(LABELS))  # too short to reflect


def test_peak_normalised_front_end_cannot_stream() -> None:
    model = model_for("sfx-cnn9")
    assert "peak" in (streaming_unsupported_reason(model) or "")
    with pytest.raises(ValueError, match="cannot stream"):
        StreamingClassifier(model)
    with pytest.raises(ValueError, match="peak_normalize"):
        StreamingLogMel(LogMel(dataclasses.replace(SNAPKIT, peak_normalize=True)))
