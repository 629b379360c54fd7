"""PANNs Cnn6/Cnn10/Cnn14 and sfx-cnn9: checkpoint compatibility, shapes, loading, refusal of bad files.

The expected keys and shapes below are written from the original definitions (``pytorch/models.py`` in
qiuqiangkong/audioset_tagging_cnn; ``aisfx/models/cnn2d.py`` in alisonbma/aiSFX), not derived from
our modules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from snapkit.errors import SnapkitError, WeightsError
from snapkit.models.backbones import base
from snapkit.models.backbones.base import FrameEmbedder, load_checkpoint_file
from snapkit.models.backbones.panns import Cnn6, Cnn10, Cnn14, PannsCnn
from snapkit.models.backbones.registry import BACKBONES, load_backbone
from snapkit.models.backbones.sfx_cnn9 import SfxCnn9
from snapkit.models.weights import WeightsSpec

Shapes = dict[str, tuple[int, ...]]

REAL_SFX_CHECKPOINT = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "sfx-cnn9" / "checkpoint.pth"


def _bn(prefix: str, channels: int) -> Shapes:
    shapes: Shapes = {f"{prefix}.{n}": (channels,) for n in ("weight", "bias", "running_mean", "running_var")}
    shapes[f"{prefix}.num_batches_tracked"] = ()
    return shapes


def _conv_block(prefix: str, cin: int, cout: int) -> Shapes:
    """Original ConvBlock: conv1, conv2 (3x3, no bias), bn1, bn2."""
    return {
        f"{prefix}.conv1.weight": (cout, cin, 3, 3),
        f"{prefix}.conv2.weight": (cout, cout, 3, 3),
        **_bn(f"{prefix}.bn1", cout),
        **_bn(f"{prefix}.bn2", cout),
    }


def _conv_block_5x5(prefix: str, cin: int, cout: int) -> Shapes:
    """Original ConvBlock5x5: conv1 (5x5, no bias), bn1."""
    return {f"{prefix}.conv1.weight": (cout, cin, 5, 5), **_bn(f"{prefix}.bn1", cout)}


def _expected_panns(block: str, channels: tuple[int, ...]) -> Shapes:
    shapes = _bn("bn0", 64)  # BatchNorm2d(64) over mel bins
    make = _conv_block if block == "3x3" else _conv_block_5x5
    cin = 1
    for index, cout in enumerate(channels, start=1):
        shapes.update(make(f"conv_block{index}", cin, cout))
        cin = cout
    width = channels[-1]
    shapes.update(
        {
            "fc1.weight": (width, width),
            "fc1.bias": (width,),
            "fc_audioset.weight": (527, width),
            "fc_audioset.bias": (527,),
        }
    )
    return shapes


# Written here, not read from the registry, so that test_registry checks the registry against it.
PANNS_MODELS: dict[str, type[PannsCnn]] = {"panns-cnn6": Cnn6, "panns-cnn10": Cnn10, "panns-cnn14": Cnn14}
EXPECTED_PANNS: dict[str, Shapes] = {
    "panns-cnn6": _expected_panns("5x5", (64, 128, 256, 512)),
    "panns-cnn10": _expected_panns("3x3", (64, 128, 256, 512)),
    "panns-cnn14": _expected_panns("3x3", (64, 128, 256, 512, 1024, 2048)),
}
# The original torchlibrosa front end's frozen tensors, in the released checkpoints (n_fft 1024, 64 mels).
EXTRACTOR_SHAPES: Shapes = {
    "spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
    "spectrogram_extractor.stft.conv_imag.weight": (513, 1, 1024),
    "logmel_extractor.melW": (513, 64),
}
EXPECTED_SFX: Shapes = {
    key: shape
    for index, (cin, cout) in enumerate([(1, 64), (64, 128), (128, 256), (256, 512)], start=1)
    for key, shape in _conv_block(f"embedding_net.conv_block{index}", cin, cout).items()
}
# Trainable parameters with 527 classes, excluding the front end (the PANNs paper's model sizes).
PARAM_COUNTS = {"panns-cnn6": 4_837_455, "panns-cnn10": 5_219_279, "panns-cnn14": 80_753_615}


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNAPKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SNAPKIT_WEIGHTS_DIR", raising=False)


@pytest.fixture(scope="module")
def panns_models() -> dict[str, PannsCnn]:
    """One instance of each (Cnn14 takes ~2 s to build, so build it once)."""
    torch.manual_seed(0)
    return {name: cls().eval() for name, cls in PANNS_MODELS.items()}


def _shapes(state: dict[str, torch.Tensor]) -> Shapes:
    return {key: tuple(value.shape) for key, value in state.items()}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _real_sfx_checkpoint() -> Path:
    if REAL_SFX_CHECKPOINT.is_file():
        return REAL_SFX_CHECKPOINT
    reason = f"the real sfx-cnn9 checkpoint is not at {REAL_SFX_CHECKPOINT} (see shared/models/README.md)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must have it: {reason}")
    pytest.skip(reason)


# ----------------------------------------------------------------------------------------------------------
# PANNs
# ----------------------------------------------------------------------------------------------------------


def test_registry() -> None:
    assert tuple(BACKBONES) == ("sfx-cnn9", "panns-cnn6", "panns-cnn10", "panns-cnn14")
    assert {name: BACKBONES[name].factory() for name in PANNS_MODELS} == PANNS_MODELS
    assert BACKBONES["sfx-cnn9"].factory() is SfxCnn9
    assert all(spec.weights.name == name for name, spec in BACKBONES.items())


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_panns_parameter_counts(panns_models: dict[str, PannsCnn], name: str) -> None:
    model = panns_models[name]
    count = sum(p.numel() for key, p in model.named_parameters() if not key.startswith("frontend."))
    assert count == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_PANNS))
def test_panns_keys_and_shapes_match_the_original(panns_models: dict[str, PannsCnn], name: str) -> None:
    assert _shapes(panns_models[name].checkpoint_state_dict()) == EXPECTED_PANNS[name]


@pytest.mark.parametrize("name", sorted(PANNS_MODELS))
def test_panns_frame_outputs(panns_models: dict[str, PannsCnn], name: str) -> None:
    model = panns_models[name]
    samples = 2 * 32_000
    waveform = 0.1 * torch.randn(2, samples, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        frames = model.forward_frames(waveform)
        clip = model.forward_clip(waveform)
    downsampling = 32 if name == "panns-cnn14" else 16
    assert model.frame_hop_s == pytest.approx(320 / 32_000 * downsampling)
    assert frames.shape == (2, (samples // 320 + 1) // downsampling, model.feature_dim)
    assert frames.shape[1] == model.num_frames(samples)
    assert model.feature_dim == (2048 if name == "panns-cnn14" else 512)
    assert torch.isfinite(frames).all()
    assert clip["clipwise_output"].shape == (2, 527)
    assert ((clip["clipwise_output"] >= 0) & (clip["clipwise_output"] <= 1)).all()
    assert clip["embedding"].shape == (2, model.feature_dim)
    with pytest.raises(ValueError, match="needs at least"):
        model(torch.zeros(1, 320 * (downsampling - 2)))


def _synthetic_panns_checkpoint(name: str) -> dict[str, torch.Tensor]:
    """Random tensors with the original's keys and shapes, extractor keys included."""
    generator = torch.Generator().manual_seed(2)
    state = {
        key: (
            torch.randint(0, 100, shape, generator=generator)
            if key.endswith("num_batches_tracked")
            else torch.rand(shape, generator=generator) + 0.5
        )
        for key, shape in {**EXPECTED_PANNS[name], **EXTRACTOR_SHAPES}.items()
    }
    return state


@pytest.mark.parametrize("name", ["panns-cnn6", "panns-cnn10"])
def test_synthetic_panns_checkpoint_loads(tmp_path: Path, name: str) -> None:
    state = _synthetic_panns_checkpoint(name)
    path = tmp_path / "synthetic.pth"
    torch.save({"model": state, "iteration": 123}, path)
    model = PANNS_MODELS[name]()
    model.load_checkpoint(path)
    loaded = model.checkpoint_state_dict()
    for key in EXPECTED_PANNS[name]:
        assert torch.equal(loaded[key], state[key].to(loaded[key].dtype)), key


def test_cnn14_accepts_a_state_dict_of_the_original(panns_models: dict[str, PannsCnn]) -> None:
    model = panns_models["panns-cnn14"]
    state = _synthetic_panns_checkpoint("panns-cnn14")
    model.load_state_from_checkpoint(state)
    assert torch.equal(model.fc_audioset.weight, state["fc_audioset.weight"])


def test_panns_checkpoint_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    model = Cnn6()
    state = _synthetic_panns_checkpoint("panns-cnn6")
    del state["conv_block2.conv1.weight"]
    with pytest.raises(WeightsError, match=r"missing: conv_block2\.conv1\.weight"):
        model.load_state_from_checkpoint(state)
    state = _synthetic_panns_checkpoint("panns-cnn10")  # Cnn10's 3x3 blocks are not Cnn6's 5x5 ones.
    with pytest.raises(WeightsError, match="does not fit panns-cnn6"):
        model.load_state_from_checkpoint(state)
    path = tmp_path / "bare.pth"
    torch.save(_synthetic_panns_checkpoint("panns-cnn6"), path)  # No "model" entry.
    with pytest.raises(WeightsError, match="no 'model' state dict"):
        model.load_checkpoint(path)


def test_load_backbone_panns_verifies_and_freezes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "Cnn6_mAP=0.343.pth"
    torch.save({"model": _synthetic_panns_checkpoint("panns-cnn6")}, path)
    entry = BACKBONES["panns-cnn6"]
    spec = entry.weights
    weights = WeightsSpec(name=spec.name, filename=spec.filename, url=None, md5=_md5(path))
    monkeypatch.setitem(BACKBONES, "panns-cnn6", dataclasses.replace(entry, weights=weights))
    model = load_backbone("panns-cnn6", path)
    assert isinstance(model, FrameEmbedder) and model.name == "panns-cnn6"
    assert not model.training and model.frozen
    assert not any(p.requires_grad for p in model.parameters())
    model.train()  # A parent module switching to training must not unfreeze BatchNorm statistics.
    assert not model.training and not model.bn0.training
    with torch.no_grad():
        assert model(torch.zeros(1, 32_000)).shape == (1, model.num_frames(32_000), 512)


def test_load_backbone_refuses_unverified_panns_file(tmp_path: Path) -> None:
    path = tmp_path / "Cnn10_mAP=0.380.pth"
    torch.save({"model": _synthetic_panns_checkpoint("panns-cnn10")}, path)
    with pytest.raises(WeightsError, match="md5 does not match"):
        load_backbone("panns-cnn10", path)


def test_unknown_backbone_lists_choices() -> None:
    with pytest.raises(SnapkitError, match="sfx-cnn9, panns-cnn6, panns-cnn10, panns-cnn14"):
        load_backbone("vggish")


# ----------------------------------------------------------------------------------------------------------
# sfx-cnn9
# ----------------------------------------------------------------------------------------------------------


def test_sfx_keys_and_shapes_match_the_original() -> None:
    assert _shapes(SfxCnn9().checkpoint_state_dict()) == EXPECTED_SFX


def test_synthetic_sfx_checkpoint_with_numpy_scalars_loads_weights_only(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(3)
    state = {key: torch.rand(shape, generator=generator) for key, shape in EXPECTED_SFX.items()}
    state["fc.0.0.weight"] = torch.zeros(256, 512)  # A training head: ignored.
    ds_dict = {"prosfx": (np.int64(0), 78), "ucsMixed": (np.int64(2), 69)}
    path = tmp_path / "checkpoint.pth"
    torch.save((state, ds_dict), path)
    model = SfxCnn9()
    model.load_checkpoint(path)
    key = "embedding_net.conv_block3.bn2.running_var"
    assert torch.equal(model.checkpoint_state_dict()[key], state[key])


def test_sfx_wrong_sha256_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "checkpoint.pth"
    fake.write_bytes(b"\0" * 1000)
    with pytest.raises(WeightsError, match="sha256 does not match"):
        load_backbone("sfx-cnn9", fake)
    # Same size as the real file, other content: refused by the digest, not only by the size.
    fake.write_bytes(b"\0" * BACKBONES["sfx-cnn9"].weights.size_bytes)  # type: ignore[operator]
    with pytest.raises(WeightsError, match="sha256 does not match"):
        load_backbone("sfx-cnn9", fake)


def test_sfx_real_checkpoint_loads_weights_only(monkeypatch: pytest.MonkeyPatch) -> None:
    path = _real_sfx_checkpoint()
    calls: list[object] = []
    real_load = torch.load

    def spy_load(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(base.torch, "load", spy_load)
    checkpoint = load_checkpoint_file(path)
    assert calls == [True]
    assert isinstance(checkpoint, tuple) and len(checkpoint) == 2
    state, ds_dict = checkpoint
    assert _shapes({k: v for k, v in state.items() if k.startswith("embedding_net.")}) == EXPECTED_SFX
    assert not any(key.startswith("embedding_net.bn0") for key in state)  # No input BatchNorm in the original.
    assert isinstance(ds_dict, dict) and ds_dict


def test_sfx_real_checkpoint_embeddings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _real_sfx_checkpoint()
    model = load_backbone("sfx-cnn9", path, download=False)
    assert isinstance(model, SfxCnn9) and not model.training
    samples = 2 * 44_100
    t = torch.arange(samples) / 44_100
    tone = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    noise = 0.3 * torch.randn(samples, generator=torch.Generator().manual_seed(4))
    waveform = torch.stack([tone, noise])
    with torch.no_grad():
        frames = model(waveform)
        embedding = model.embed(waveform)
    assert model.frame_hop_s == pytest.approx(8 * 1024 / 44_100)
    assert frames.shape == (2, (samples // 1024 + 1) // 8, 512) == (2, model.num_frames(samples), 512)
    assert embedding.shape == (2, 512)
    assert torch.isfinite(embedding).all() and (embedding >= 0).all()  # After ReLU, mean and max.
    assert not torch.allclose(embedding[0], embedding[1], atol=1e-3)  # A tone and noise differ.
    state = load_checkpoint_file(path)[0]  # type: ignore[index]
    key = "embedding_net.conv_block4.conv2.weight"
    assert torch.equal(model.checkpoint_state_dict()[key], state[key])

    # Found through SNAPKIT_WEIGHTS_DIR (as <dir>/sfx-cnn9/checkpoint.pth), without a download.
    monkeypatch.setenv("SNAPKIT_WEIGHTS_DIR", str(path.parent.parent))
    assert load_backbone("sfx-cnn9", download=False).name == "sfx-cnn9"
    # A copy in the user cache is found too.
    monkeypatch.delenv("SNAPKIT_WEIGHTS_DIR")
    cached = tmp_path / "cache" / "weights" / "sfx-cnn9" / "checkpoint.pth"
    cached.parent.mkdir(parents=True)
    shutil.copyfile(path, cached)
    assert isinstance(load_backbone("sfx-cnn9", download=False), SfxCnn9)
