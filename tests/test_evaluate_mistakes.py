"""``snapkit evaluate`` lists every misclassified clip (path, true, predicted, score) in its table and JSON report."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from snapkit.cli.app import app
from snapkit.models.calibration import ClassCalibration
from snapkit.training import evaluate as evaluate_module
from snapkit.training.evaluate import evaluate_bundle
from tests.conftest import run_cli

RATE_HZ = 16_000


def _clip(path: Path, peak: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = np.zeros(RATE_HZ // 2, np.float32)
    audio[100] = peak
    sf.write(path, audio, RATE_HZ, subtype="FLOAT")
    return path


@pytest.fixture
def fake_bundle(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A one-class bundle whose 'knock' probability is the clip's peak, thresholded at 0.5 (no clip head)."""
    bundle = types.SimpleNamespace(
        config=types.SimpleNamespace(labels=["knock"], background_label="background", clip_head=False),
        model=types.SimpleNamespace(sample_rate_hz=RATE_HZ),
        calibrated=lambda label: ClassCalibration.from_on(0.5),
        calibration=None,
    )
    monkeypatch.setattr(evaluate_module, "clip_probabilities", lambda b, audio: np.array([np.abs(audio).max()]))
    return bundle


def _dataset(root: Path) -> Path:
    _clip(root / "knock" / "loud.wav", 0.9)
    _clip(root / "knock" / "quiet.wav", 0.2)  # missed: background at 1 - 0.2
    _clip(root / "background" / "bang.wav", 0.7)  # a false alarm: knock at 0.7
    _clip(root / "background" / "hush.wav", 0.1)
    return root


def test_evaluate_reports_each_mistake_worst_first(tmp_path: Path, fake_bundle: types.SimpleNamespace) -> None:
    data = _dataset(tmp_path / "data")
    report, _ = evaluate_bundle(fake_bundle, data)
    assert report["mistakes"] == [
        {"path": str(data / "knock" / "quiet.wav"), "true": "knock", "predicted": "background", "score": 0.8},
        {"path": str(data / "background" / "bang.wav"), "true": "background", "predicted": "knock", "score": 0.7},
    ]
    matrix = np.array(report["confusion_matrix"])
    assert len(report["mistakes"]) == matrix.sum() - np.trace(matrix)


def test_evaluate_command_prints_the_mistakes_and_writes_them_to_json(
    tmp_path: Path, fake_bundle: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import snapkit.models.bundle

    monkeypatch.setattr(snapkit.models.bundle, "load_model", lambda path: fake_bundle)
    data = _dataset(tmp_path / "data")
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        ["evaluate", "model.snapkit", "--data", str(data), "--report", str(report)],
        env={"COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert result.exit_code == 0, result.output
    table = result.output.split("Misclassified clips (2)", 1)[1]
    assert str(data / "knock" / "quiet.wav") in table and "background" in table and "0.80" in table
    assert result.output.index("Confusion matrix") < result.output.index("Misclassified clips")
    assert [m["path"] for m in json.loads(report.read_text())["mistakes"]] == [
        str(data / "knock" / "quiet.wav"),
        str(data / "background" / "bang.wav"),
    ]
    printed = CliRunner().invoke(app, ["evaluate", "model.snapkit", "--data", str(data), "--json"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout)["mistakes"] == json.loads(report.read_text())["mistakes"]


@pytest.mark.slow
def test_evaluate_lists_a_mislabelled_clip_with_the_real_model(detector_bundle_path: Path, tmp_path: Path) -> None:
    from snapkit.eval.synth import make_dataset
    from tests.conftest import DETECTOR_CLASSES

    data = tmp_path / "data"
    make_dataset(data, classes=DETECTOR_CLASSES, clips_per_class=2, background_clips=2, seed=99)
    # A beep filed as a scratch: whatever else the model gets wrong, this one is a mistake.
    beep = sorted((data / "beep").iterdir())[0]
    wrong = data / "scratch" / f"misfiled-{beep.name}"
    shutil.move(beep, wrong)
    report = tmp_path / "report.json"
    result = run_cli("evaluate", str(detector_bundle_path), "--data", str(data), "--report", str(report))
    assert result.returncode == 0, result.stderr
    mistakes = json.loads(report.read_text())["mistakes"]
    mine = [m for m in mistakes if m["path"] == str(wrong)]
    assert len(mine) == 1 and mine[0]["true"] == "scratch" and mine[0]["predicted"] != "scratch"
    assert 0.0 <= mine[0]["score"] <= 1.0
    assert "Misclassified clips" in result.stdout and wrong.name in result.stdout
