"""The backbone registry is the single source of backbone names: the CLI, model settings, loading, bundles and the
weights look-up all read it, and adding a backbone is one module plus one entry."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from torch import nn

from snapkit.errors import SnapkitError
from snapkit.features.config import SNAPKIT
from snapkit.features.frontend import LogMel
from snapkit.models import ModelBundle, ModelConfig, SoundClassifier, load_model
from snapkit.models.backbones import base
from snapkit.models.backbones.base import FrameEmbedder, load_checkpoint_file
from snapkit.models.backbones.registry import (
    BACKBONES,
    BackboneSpec,
    backbone_architecture,
    backbone_spec,
    load_backbone,
)
from snapkit.models.weights import WeightsSpec

PACKAGE = Path(base.__file__).parent
UNKNOWN = "Unknown backbone 'vggish': choose one of sfx-cnn9, panns-cnn6, panns-cnn10, panns-cnn14."


def _backbone_help() -> str:
    from snapkit.cli.app import app

    train = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    (option,) = [param for param in train.params if param.name == "backbone"]
    return str(option.help)


def test_cli_help_lists_exactly_the_registry() -> None:
    help_text = _backbone_help()
    # "convnet (...), or a frozen pretrained backbone: NAME (help); NAME (help)."
    convnet, _, pretrained = help_text.partition(": ")
    assert convnet.startswith("convnet ")
    listed = [entry.split(" (", 1)[0] for entry in pretrained.rstrip(".").split("; ")]
    assert listed == list(BACKBONES)
    for spec in BACKBONES.values():
        assert f"{spec.name} ({spec.help})" in help_text


@pytest.mark.parametrize("name", BACKBONES)
def test_every_entry_builds_its_architecture(name: str) -> None:
    spec = BACKBONES[name]
    assert spec.name == spec.weights.name == name
    assert spec.help and "\n" not in spec.help
    model = backbone_architecture(name)
    assert isinstance(model, FrameEmbedder) and type(model) is spec.factory()
    assert model.name == name and model.frozen and not model.training
    ModelConfig(backbone=name, labels=("knock",))  # model settings accept every registry name


def test_an_unknown_name_is_one_sentence_naming_the_choices() -> None:
    for look_up in (backbone_spec, backbone_architecture, load_backbone):
        with pytest.raises(SnapkitError) as caught:
            look_up("vggish")
        assert str(caught.value) == UNKNOWN


def test_an_entry_must_agree_with_its_weights_and_its_class() -> None:
    spec = BACKBONES["sfx-cnn9"]
    with pytest.raises(ValueError, match="weights of 'sfx-cnn9'"):
        dataclasses.replace(spec, name="sfx-cnn10")
    with pytest.raises(ValueError, match="module:Class"):
        dataclasses.replace(spec, architecture="snapkit.models.backbones.sfx_cnn9.SfxCnn9")
    misnamed = dataclasses.replace(spec, architecture="snapkit.models.backbones.panns:Cnn6")
    with pytest.raises(ValueError, match="called 'panns-cnn6', registered as 'sfx-cnn9'"):
        misnamed.build()


# ----------------------------------------------------------------------------------------------------------
# Adding a backbone: one class, one entry


class ToyEmbedder(FrameEmbedder):
    """Stand-in backbone: snapkit's log-mel frames through one linear layer, ``[batch, samples] -> [batch, frames,
    4]``; its checkpoint is that layer's state dict."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "toy-net"
        self.frontend_config = SNAPKIT
        self.feature_dim = 4
        self.frame_hop_s = SNAPKIT.hop_s
        self.frontend = LogMel(SNAPKIT)
        self.project = nn.Linear(SNAPKIT.n_mels, self.feature_dim)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.project(self.frontend(waveform))

    def num_frames(self, num_samples: int) -> int:
        return self.frontend.num_frames(num_samples)

    def load_checkpoint(self, path: Path) -> None:
        self.project.load_state_dict(load_checkpoint_file(path))  # type: ignore[arg-type]


def test_a_new_backbone_is_one_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    checkpoint = tmp_path / "toy.pth"
    torch.save(ToyEmbedder().project.state_dict(), checkpoint)
    weights = WeightsSpec(
        name="toy-net", filename="toy.pth", url=None, sha256=hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    )
    entry = BackboneSpec(name="toy-net", architecture=f"{__name__}:ToyEmbedder", weights=weights, help="a toy")
    monkeypatch.setenv("SNAPKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(BACKBONES, "toy-net", entry)

    loaded = load_backbone("toy-net", checkpoint, download=False, progress=False)
    assert isinstance(loaded, ToyEmbedder) and loaded.frozen
    assert torch.equal(loaded.project.weight, torch.load(checkpoint)["weight"])
    config = ModelConfig(backbone="toy-net", labels=("knock", "snap"))
    model = SoundClassifier.from_config(config, weights=checkpoint, download=False).eval()

    # A saved bundle stores the name and is rebuilt through the registry.
    path = ModelBundle.from_model(model).save(tmp_path / "toy.snapkit")
    restored = load_model(path)
    assert isinstance(restored.model.backbone, ToyEmbedder)
    waveform = 0.1 * torch.randn(1, SNAPKIT.sample_rate_hz, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for expected, got in zip(model(waveform), restored.model(waveform), strict=True):
            torch.testing.assert_close(got, expected)


# ----------------------------------------------------------------------------------------------------------
# Import structure


def test_implementations_never_import_the_registry() -> None:
    for module in sorted(PACKAGE.glob("*.py")):
        if module.name == "registry.py":
            continue
        tree = ast.parse(module.read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        assert "snapkit.models.backbones.registry" not in imported, module.name


def test_the_registry_does_not_import_torch() -> None:
    """``snapkit train --help`` lists the names from the registry; torch would add seconds to it."""
    code = (
        "import sys; import snapkit.models.backbones.registry as r; import snapkit.cli.train; "
        "assert 'torch' not in sys.modules, 'torch imported'; print(len(r.BACKBONES))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(BACKBONES))
