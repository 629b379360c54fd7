"""The quiet gate (``--min-level-dbfs``): windows quieter than the level skip the model; sounds above it are found
exactly as without the gate, whatever the chunk size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snapkit.detection.detector import Detector, DetectorSettings
from snapkit.detection.events import Event
from snapkit.errors import SnapkitError
from snapkit.eval.synth import make_stream
from snapkit.models.bundle import ModelBundle, load_model
from tests.conftest import DETECTOR_CLASSES, run_cli

GATE_DBFS = -50.0


@pytest.fixture(scope="module")
def bundle(detector_bundle_path: Path) -> ModelBundle:
    return load_model(detector_bundle_path)


def quiet_house(seed: int = 3) -> tuple[np.ndarray, int]:
    """Sounds well apart on a room at about -90 dBFS (a quiet house at night); returns (audio, planted count)."""
    audio, truth = make_stream(
        seed, duration_s=60.0, classes=DETECTOR_CLASSES, events_per_minute=4, min_gap_s=8.0, background=False
    )
    rng = np.random.default_rng(seed)
    audio = audio + rng.normal(0, 10 ** (-90 / 20), len(audio)).astype(np.float32)
    return audio.astype(np.float32), len(truth)


def detect(bundle: ModelBundle, audio: np.ndarray, chunk_s: float, gate: float | None) -> tuple[list[Event], Detector]:
    detector = Detector(bundle, DetectorSettings(mode="window", min_level_dbfs=gate))
    n = round(chunk_s * detector.sample_rate_hz)
    updates = []
    for i in range(0, len(audio), n):
        updates += detector.push(audio[i : i + n])
    updates += detector.flush()
    return [u.event for u in updates if u.kind == "end"], detector


def test_sounds_above_the_gate_are_found_as_without_it_and_quiet_windows_skip_the_model(bundle: ModelBundle) -> None:
    audio, planted = quiet_house()
    assert planted >= 2
    without, plain = detect(bundle, audio, 0.5, None)
    with_gate, gated = detect(bundle, audio, 0.5, GATE_DBFS)
    assert len(without) >= planted - 1  # the model finds these sounds at all
    assert [(e.label, e.onset_s, e.offset_s) for e in with_gate] == [(e.label, e.onset_s, e.offset_s) for e in without]
    skipped = gated.scorer.windows_skipped  # type: ignore[union-attr]
    assert skipped > 0.3 * (skipped + gated.scorer.windows_run)  # type: ignore[union-attr]
    assert plain.scorer.windows_skipped == 0  # type: ignore[union-attr]


def test_the_gate_never_depends_on_the_chunk_size(bundle: ModelBundle) -> None:
    audio, _ = quiet_house(5)
    small, _ = detect(bundle, audio, 0.1, GATE_DBFS)
    large, _ = detect(bundle, audio, 1.7, GATE_DBFS)
    assert small == large


def test_everything_below_the_gate_costs_no_model_run(bundle: ModelBundle) -> None:
    audio, _ = quiet_house()
    events, detector = detect(bundle, audio * 10 ** (-60 / 20), 1.0, -20.0)  # the same sounds, 60 dB quieter
    assert events == []
    assert detector.scorer.windows_run == 0  # type: ignore[union-attr]
    assert "skip the model" in detector.describe()


def test_a_level_out_of_range_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(SnapkitError, match="--min-level-dbfs must be between -120 and 0"):
        DetectorSettings(min_level_dbfs=12.0)
    result = run_cli("detect", str(tmp_path / "model.snapkit"), str(tmp_path / "a.wav"), "--min-level-dbfs", "5")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
