"""The model bundle (save / load, refusal of bad and malicious files) and export to TorchScript and ONNX."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import snapkit
from snapkit.errors import SnapkitError
from snapkit.models import ModelBundle, ModelConfig, SoundClassifier, load_model
from snapkit.models.backbones.registry import backbone_architecture
from snapkit.models.bundle import FORMAT, FORMAT_VERSION
from snapkit.models.calibration import ClassCalibration
from snapkit.models.export import export_model, sidecar_path

from .conftest import SHARED_MODELS, skip_or_fail

LABELS = ("clap", "snap")
DATA = Path(__file__).parent / "data"
REAL_SFX_CHECKPOINT = SHARED_MODELS / "sfx-cnn9" / "checkpoint.pth"


def _noise(model: SoundClassifier, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    waveform = 0.05 * torch.randn(batch, model.clip_samples, generator=generator)
    waveform[:, model.clip_samples // 3 : model.clip_samples // 2] *= 8  # a louder stretch in the middle
    return waveform


def _trained_convnet(**config: object) -> SoundClassifier:
    """A ConvNet model whose weights and BatchNorm statistics differ from a fresh one's, as after training."""
    torch.manual_seed(3)
    model = SoundClassifier(ModelConfig(backbone="convnet", labels=LABELS, **config), None)  # type: ignore[arg-type]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.train()
    with torch.no_grad():
        model(_noise(model, batch=4, seed=9))  # moves the BatchNorm running statistics off their defaults
    return model.eval()


def _outputs(model: torch.nn.Module, waveform: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        return [tensor.numpy() for tensor in model(waveform)]


# ----------------------------------------------------------------------------------------------------------
# Save and load
# ----------------------------------------------------------------------------------------------------------


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = _trained_convnet(pooling="linear_softmax", head_hidden=8)
    calibration = {
        "clap": ClassCalibration(on=0.6, off=0.4, band_hz=(300.0, 4000.0), pause_s=0.25),
        "snap": ClassCalibration(on=0.7, off=0.2),
    }
    training = {"val/f1": np.float32(0.75), "loss": torch.tensor(0.25), "clips": {"clap": 12, "snap": 9}, "x": (1, 2)}
    bundle = ModelBundle.from_model(model, calibration=calibration, training=training)
    path = bundle.save(tmp_path / "model.pt")
    assert bundle.path == path
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind

    loaded = load_model(path)
    assert not loaded.model.training
    assert loaded.config == model.config
    assert loaded.calibration == calibration
    assert loaded.training == {"val/f1": 0.75, "loss": 0.25, "clips": {"clap": 12, "snap": 9}, "x": [1, 2]}
    assert loaded.snapkit_version == snapkit.__version__
    assert loaded.path == path
    waveform = _noise(model)
    for want, got in zip(_outputs(model, waveform), _outputs(loaded.model, waveform), strict=True):
        np.testing.assert_array_equal(want, got)


def test_round_trip_of_a_head_on_a_backbone(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = SoundClassifier(ModelConfig(backbone="panns-cnn6", labels=LABELS), backbone_architecture("panns-cnn6"))
    model.eval()  # dropout off, for comparable outputs
    path = ModelBundle.from_model(model).save(tmp_path / "cnn6.pt")
    loaded = load_model(path)
    assert loaded.calibration == {label: ClassCalibration(on=0.5, off=0.35) for label in LABELS}  # the defaults
    assert loaded.model.backbone is not None and loaded.model.backbone.frozen
    waveform = _noise(model)
    for want, got in zip(_outputs(model, waveform), _outputs(loaded.model, waveform), strict=True):
        np.testing.assert_array_equal(want, got)


def test_file_is_plain_data_that_weights_only_loading_reads(tmp_path: Path) -> None:
    path = ModelBundle.from_model(_trained_convnet()).save(tmp_path / "model.pt")
    contents = torch.load(path, map_location="cpu", weights_only=True)
    assert contents["format"] == FORMAT and contents["format_version"] == FORMAT_VERSION
    assert contents["snapkit_version"] == snapkit.__version__
    assert contents["model_config"]["labels"] == list(LABELS)
    assert contents["frontend_config"]["sample_rate_hz"] == 16_000
    assert all(isinstance(value, torch.Tensor) for value in contents["state_dict"].values())
    json.dumps({key: value for key, value in contents.items() if key != "state_dict"})  # all plain values


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    bundle = ModelBundle.from_model(_trained_convnet())
    path = bundle.save(tmp_path / "model.pt")
    before = path.read_bytes()
    with pytest.raises(SnapkitError, match="already exists"):
        bundle.save(path)
    assert path.read_bytes() == before
    bundle.calibration = {"clap": ClassCalibration(on=0.9, off=0.1), "snap": ClassCalibration()}
    bundle.save(path, overwrite=True)
    assert load_model(path).calibrated("clap") == ClassCalibration(on=0.9, off=0.1)


def test_bundle_rejects_bad_thresholds_and_training_values() -> None:
    model = _trained_convnet()
    with pytest.raises(ValueError, match="off <= on"):
        ClassCalibration(on=0.3, off=0.5)
    with pytest.raises(ValueError, match="low < high"):
        ClassCalibration(band_hz=(4000.0, 300.0))
    with pytest.raises(ValueError, match="pause_s"):
        ClassCalibration(pause_s=-1.0)
    with pytest.raises(ValueError, match="one entry per label"):
        ModelBundle.from_model(model, calibration={"clap": ClassCalibration()})
    with pytest.raises(ValueError, match="must be a ClassCalibration"):
        ModelBundle.from_model(model, calibration={"clap": ClassCalibration(), "snap": {"on": 0.5}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"training\['when'\]"):
        ModelBundle.from_model(model, training={"when": object()})


# ----------------------------------------------------------------------------------------------------------
# Files that are not (good) bundles
# ----------------------------------------------------------------------------------------------------------


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(SnapkitError, match=r"no model file at .*nope\.pt"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(SnapkitError, match=r"is a folder.*model\.snapkit") as raised:
        load_model(tmp_path)
    assert ".pt" not in str(raised.value)


@pytest.mark.parametrize(
    "contents",
    [b"", b"this is not a model", b"PK\x03\x04 truncated zip"],
    ids=["empty", "text", "broken-zip"],
)
def test_garbage_files_are_refused(tmp_path: Path, contents: bytes) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(contents)
    with pytest.raises(SnapkitError, match=r"model\.pt is not a readable snapkit model"):
        load_model(path)


def test_truncated_bundle_is_refused(tmp_path: Path) -> None:
    path = ModelBundle.from_model(_trained_convnet()).save(tmp_path / "model.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SnapkitError, match="not a readable snapkit model"):
        load_model(path)


@pytest.mark.parametrize(
    "contents",
    [{"model": {}}, torch.zeros(3), [1, 2, 3], {"format": "something-else", "format_version": 1}],
    ids=["checkpoint-dict", "tensor", "list", "other-format"],
)
def test_other_pytorch_files_are_refused(tmp_path: Path, contents: object) -> None:
    path = tmp_path / "model.pt"
    torch.save(contents, path)
    with pytest.raises(SnapkitError, match="no 'snapkit-model' marker"):
        load_model(path)


def test_newer_format_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = ModelBundle.from_model(_trained_convnet()).save(tmp_path / "model.pt")
    contents = torch.load(path, weights_only=True)
    contents["format_version"] = FORMAT_VERSION + 1
    torch.save(contents, path)
    with pytest.raises(SnapkitError, match=r"newer snapkit.*upgrade snapkit"):
        load_model(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["frontend_config"].update(hop_length=320), "front end differs .*hop_length"),
        (lambda c: c["model_config"].update(labels=["clap", "knock", "snap"]), "do not fit .*wrong shape: head"),
        (lambda c: c["model_config"].update(pooling="median"), "Unknown pooling"),
        (lambda c: c["state_dict"].pop("head.layers.1.weight"), r"do not fit .*missing: head\.layers\.1\.weight"),
        (lambda c: c.pop("model_config"), "missing entry 'model_config'"),
        (lambda c: c["calibration"]["clap"].update(on=2.0), "off <= on < 1"),
        (lambda c: c["calibration"]["clap"].update(gain=2.0), "unknown calibration entries"),
    ],
    ids=["frontend", "labels", "pooling", "weights", "config", "thresholds", "calibration"],
)
def test_inconsistent_bundles_are_refused(tmp_path: Path, edit: object, message: str) -> None:
    path = ModelBundle.from_model(_trained_convnet()).save(tmp_path / "model.pt")
    contents = torch.load(path, weights_only=True)
    edit(contents)  # type: ignore[operator]
    torch.save(contents, path)
    with pytest.raises(SnapkitError, match=message):
        load_model(path)


class _Evil:
    """Unpickling this runs a shell command: what a malicious "model" file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_file_is_refused_without_running_code(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    payload = {"format": FORMAT, "format_version": 1, "state_dict": {}, "model_config": _Evil(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    # Sanity check: the payload is live (a full unpickler would run it) - proven on a copy, not via load_model.
    pickle.loads(pickle.dumps(_Evil(tmp_path / "live")))
    assert (tmp_path / "live").exists()

    with pytest.raises(SnapkitError, match="objects other than tensors"):
        load_model(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------------------
# Real weights (one test)
# ----------------------------------------------------------------------------------------------------------


def test_bundle_with_real_sfx_cnn9_weights_is_self_contained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not REAL_SFX_CHECKPOINT.is_file():
        skip_or_fail(f"the real sfx-cnn9 checkpoint is not at {REAL_SFX_CHECKPOINT} (see shared/models/README.md)")
    from snapkit.models.backbones.sfx_cnn9 import SfxCnn9

    backbone = SfxCnn9()
    backbone.load_checkpoint(REAL_SFX_CHECKPOINT)
    torch.manual_seed(5)
    model = SoundClassifier(ModelConfig(backbone="sfx-cnn9", labels=LABELS, head_hidden=16), backbone.freeze())
    model.eval()
    path = ModelBundle.from_model(model).save(tmp_path / "sfx.pt")
    assert 15e6 < path.stat().st_size < 40e6  # about 20 MB: the backbone travels inside

    # Loading needs nothing but the file: no weights folder, no cache, no network.
    monkeypatch.setenv("SNAPKIT_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    loaded = load_model(path)
    waveform = _noise(model, batch=1)
    features = loaded.model.features(waveform)
    torch.testing.assert_close(features, model.features(waveform), rtol=0, atol=0)
    assert features.abs().sum() > 0
    for want, got in zip(_outputs(model, waveform), _outputs(loaded.model, waveform), strict=True):
        np.testing.assert_array_equal(want, got)


@pytest.mark.parametrize("version", [1, 2])
def test_older_bundle_files_still_load_with_their_calibration(version: int) -> None:
    """tests/data/bundle-v1/v2.snapkit were written by the format-2 code (v1: no clip head, as before it existed):
    their loose thresholds and training["class_profiles"] become the typed calibration, outputs unchanged."""
    bundle = load_model(DATA / f"bundle-v{version}.snapkit")
    assert bundle.config.clip_head == (version == 2)
    assert bundle.calibration == {
        "clap": ClassCalibration(on=0.6, off=0.42, band_hz=(400.0, 5000.0), pause_s=0.0),
        "snap": ClassCalibration(on=0.45, off=0.3, band_hz=(1000.0, 7000.0), pause_s=0.25),
    }
    assert "class_profiles" not in bundle.training and bundle.training["seconds"] == 1.0
    saved = torch.load(DATA / f"bundle-v{version}-outputs.pt", weights_only=True)
    for want, got in zip((saved["frame"], saved["clip"]), _outputs(bundle.model, saved["input"]), strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-6)


def test_an_older_bundle_is_saved_again_in_the_current_format(tmp_path: Path) -> None:
    bundle = load_model(DATA / "bundle-v2.snapkit")
    path = bundle.save(tmp_path / "model.snapkit")
    contents = torch.load(path, weights_only=True)
    assert contents["format_version"] == FORMAT_VERSION and "thresholds" not in contents
    assert load_model(path).calibration == bundle.calibration


# ----------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------


def _check_sidecar(path: Path, bundle: ModelBundle, model_format: str) -> None:
    info = json.loads(sidecar_path(path).read_text())
    model = bundle.model
    assert info["model_format"] == model_format and info["model_file"] == path.name
    assert info["labels"] == list(LABELS) and info["calibration"] == {
        label: entry.to_dict() for label, entry in (bundle.calibration or {}).items()
    }
    assert info["sample_rate_hz"] == model.sample_rate_hz and info["clip_s"] == model.config.clip_s
    assert info["frame_hop_s"] == pytest.approx(model.frame_hop_s)
    assert info["num_frames"] == model.num_output_frames(model.clip_samples)
    assert len(info["frame_times_s"]) == info["num_frames"]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_export_matches_the_bundle(tmp_path: Path) -> None:
    bundle = load_model(ModelBundle.from_model(_trained_convnet()).save(tmp_path / "model.pt"))
    path = export_model(bundle, tmp_path / "model.ts.pt", "torchscript")
    _check_sidecar(path, bundle, "torchscript")
    scripted = torch.jit.load(str(path))
    for batch in (1, 3):  # the batch axis is free
        waveform = _noise(bundle.model, batch=batch, seed=batch)
        for want, got in zip(_outputs(bundle.model, waveform), _outputs(scripted, waveform), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    with pytest.raises(SnapkitError, match="already exists"):
        export_model(bundle, path, "torchscript")
    with pytest.raises(SnapkitError, match="Unknown export format"):
        export_model(bundle, tmp_path / "model.tflite", "tflite")  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_export_of_a_head_on_a_backbone(tmp_path: Path) -> None:
    torch.manual_seed(6)
    config = ModelConfig(backbone="panns-cnn6", labels=LABELS, pooling="max", head_hidden=8, clip_s=1.0)
    bundle = ModelBundle.from_model(SoundClassifier(config, backbone_architecture("panns-cnn6")).eval())
    path = export_model(bundle, tmp_path / "cnn6.pt", "torchscript")
    scripted = torch.jit.load(str(path))
    waveform = _noise(bundle.model, batch=2)
    for want, got in zip(_outputs(bundle.model, waveform), _outputs(scripted, waveform), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_onnx_export_matches_the_bundle(tmp_path: Path) -> None:
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        skip_or_fail(f"ONNX export needs {', '.join(missing)} (pip install -e '.[dev]')")
    import onnxruntime

    bundle = load_model(ModelBundle.from_model(_trained_convnet()).save(tmp_path / "model.pt"))
    path = export_model(bundle, tmp_path / "model.onnx", "onnx")
    _check_sidecar(path, bundle, "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json", "model.pt"]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["waveform"]
    for batch in (1, 4):
        waveform = _noise(bundle.model, batch=batch, seed=batch)
        got = session.run(["frame_probs", "clip_probs"], {"waveform": waveform.numpy()})
        for want, actual in zip(_outputs(bundle.model, waveform), got, strict=True):
            np.testing.assert_allclose(actual, want, atol=1e-4, rtol=0)
