"""`snapkit train / evaluate / predict / export` end to end through the real CLI, on generated sounds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from snapkit.eval.synth import make_dataset
from snapkit.models.bundle import load_model
from tests.conftest import SHARED_MODELS, run_cli, skip_or_fail

pytestmark = pytest.mark.e2e
CLASSES = ("beep", "smoke_alarm", "snap", "scratch")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "data"
    make_dataset(root, classes=CLASSES[:3], clips_per_class=4, background_clips=4, seed=1)
    return root


@pytest.fixture(scope="module")
def weights_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not (SHARED_MODELS / "sfx-cnn9" / "checkpoint.pth").exists():
        skip_or_fail(f"the sfx-cnn9 weights are not at {SHARED_MODELS}/sfx-cnn9/checkpoint.pth")
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "SNAPKIT_WEIGHTS_DIR": str(SHARED_MODELS), "SNAPKIT_CACHE_DIR": str(cache)}


def test_convnet_trains_and_the_bundle_works_everywhere(small_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("train", "--data", str(small_data), "--out", str(out), "--epochs", "2", "--seed", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert "plan" in text and "beep (4)" in text and "background (4)" in text and "SpecAugment" in text
    assert "4-fold cross-validation" in text and "accuracy" in text and "Confusion matrix" in text
    assert "GPU available" not in text + result.stderr  # Lightning's chatter stays off the terminal
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"beep", "smoke_alarm", "snap", "background"}
    assert sum(map(sum, metrics["confusion_matrix"])) == 16  # every clip predicted once, out of fold
    events = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert {p.parent.name for p in events} >= {"fold-1", "final"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    final_log = EventAccumulator(str(out / "tensorboard" / "final")).Reload()
    images = final_log.Tags()["images"]
    assert "confusion_matrix" in images and any(t.startswith("augmented_views/") for t in images), images
    assert any(t.startswith("train/loss") for t in final_log.Tags()["scalars"])
    # The bundle is the one model a run leaves: no Lightning checkpoints beside it (nothing resumes from them).
    assert not list(out.rglob("*.ckpt")) and not (out / "checkpoints").exists()

    bundle = load_model(out / "model.snapkit")
    assert bundle.config.labels == ("beep", "smoke_alarm", "snap")
    assert set(bundle.calibration) == set(bundle.config.labels)
    assert all(0 < c.off < c.on < 1 and c.band_hz is not None for c in bundle.calibration.values())

    model = str(out / "model.snapkit")
    ev = run_cli("evaluate", model, "--data", str(small_data), "--json", "--report", str(tmp_path / "ev.json"))
    assert ev.returncode == 0, ev.stderr
    assert json.loads((tmp_path / "ev.json").read_text())["clips"] == 16
    assert json.loads(ev.stdout) == json.loads((tmp_path / "ev.json").read_text())

    clip = next((small_data / "beep").glob("*.wav"))
    pred = run_cli("predict", str(out / "model.snapkit"), str(clip), "--json", "--top-k", "2")
    assert pred.returncode == 0, pred.stderr
    answer = json.loads(pred.stdout)
    assert answer[0]["file"] == str(clip) and len(answer[0]["top"]) == 2

    exp = run_cli("export", str(out / "model.snapkit"), "--format", "torchscript", "--out", str(tmp_path / "m.pt"))
    assert exp.returncode == 0, exp.stderr
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    audio, _ = sf.read(clip, dtype="float32")
    wave = torch.as_tensor(audio[None, : bundle.model.clip_samples])
    with torch.no_grad():
        np.testing.assert_allclose(scripted(wave)[1].numpy(), bundle.model(wave)[1].numpy(), atol=1e-4)

    again = run_cli("train", "--data", str(small_data), "--out", str(out), "--epochs", "1")
    assert again.returncode == 2 and "already exists" in again.stderr  # a trained model is never replaced


def test_sfx_cnn9_head_learns_the_sounds_and_reuses_cached_embeddings(
    weights_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    make_dataset(data, classes=CLASSES, clips_per_class=8, background_clips=8, seed=5)
    first = run_cli(
        "train", "--data", str(data), "--backbone", "sfx-cnn9", "--out", str(tmp_path / "a"), env=weights_env
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "embedded 40 new clips, 0 from cache" in first.stdout
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    # 5-fold cross-validated, every clip scored by a model that never saw it: a real bar, not a smoke test.
    assert metrics["accuracy"] >= 0.8, metrics
    assert metrics["macro_f1"] >= 0.8, metrics
    # And its per-frame outputs find the sounds in a stream (an attention-pooled head scored event F1 0.17 here).
    from snapkit.detection.detector import Detector
    from snapkit.detection.events import Event
    from snapkit.eval.scoring import event_scores
    from snapkit.eval.synth import make_stream

    audio, truth = make_stream(21, duration_s=120.0, classes=CLASSES, snr_db=(10.0, 20.0))
    detector = Detector(load_model(tmp_path / "a" / "model.snapkit"), sample_rate_hz=16_000)
    updates = [u for i in range(0, len(audio), 16_000) for u in detector.push(audio[i : i + 16_000])]
    found = [u.event for u in updates + detector.flush() if u.kind == "end"]
    planted = [Event(e.label, e.onset_s, e.offset_s, 1.0, 1.0) for e in truth]
    scores = event_scores(planted, found, onset_collar_s=0.2, evaluate_offset=False)
    assert scores.overall.f1 >= 0.8, scores.to_dict()

    for i, src in enumerate(sorted((data / "snap").glob("*.wav"))[:3]):
        shutil.copy(src, data / "snap" / f"copy-{i}.wav")
        audio, rate = sf.read(src, dtype="float32")
        sf.write(data / "snap" / f"new-{i}.wav", audio[::-1].copy(), rate)
    second = run_cli(
        "train", str(data), "--backbone", "sfx-cnn9", "--out", str(tmp_path / "b"), "--epochs", "2", env=weights_env
    )
    assert second.returncode == 0, second.stdout + second.stderr
    # Copies are the same content (cache hits); the three reversed clips are new.
    assert "embedded 3 new clips, 43 from cache" in second.stdout


@pytest.mark.parametrize(
    ("layout", "words"),
    [
        ({"beep": 3}, "background"),  # one class and no background: nothing to tell apart
        ({"beep": 0, "background": 0}, "holds no audio clips"),
    ],
)
def test_untrainable_datasets_get_one_clear_sentence(tmp_path: Path, layout: dict[str, int], words: str) -> None:
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for label, n in layout.items():
        (data / label).mkdir(parents=True)
        for i in range(n):
            sf.write(data / label / f"{i}.wav", rng.standard_normal(8000).astype(np.float32) * 0.1, 16_000)
    result = run_cli("train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3


def test_awkward_but_trainable_dataset_warns_and_trains(tmp_path: Path) -> None:
    """One clip in a class, an unreadable file, mixed sample rates, no background: warnings, then a model."""
    data = tmp_path / "data"
    make_dataset(data, classes=("beep", "snap"), clips_per_class=3, background_clips=0, seed=2)
    shutil.rmtree(data / "background", ignore_errors=True)
    (data / "chirp").mkdir()
    rng = np.random.default_rng(1)
    sf.write(data / "chirp" / "only.wav", rng.standard_normal(44_100 * 2).astype(np.float32) * 0.1, 44_100)
    (data / "beep" / "broken.wav").write_text("not audio")
    result = run_cli("train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "warning" in out and "broken.wav" in out and "background" in out
    assert (tmp_path / "run" / "model.snapkit").exists()


def test_a_convnet_that_learns_nothing_says_so_and_logs_plain_progress(tmp_path: Path) -> None:
    """Two 'sounds' and a background that are all the same white noise: nothing to learn, so the run must say the
    model is near chance and point to sfx-cnn9; its output is a pipe, so progress comes as plain lines."""
    data = tmp_path / "data"
    rng = np.random.default_rng(7)
    for label in ("hiss", "fizz", "background"):
        (data / label).mkdir(parents=True)
        for i in range(10):
            sf.write(data / label / f"{i}.wav", rng.standard_normal(16_000).astype(np.float32) * 0.1, 16_000)
    out = tmp_path / "run"
    result = run_cli("train", "--data", str(data), "--out", str(out), "--epochs", "2", "--max-minutes", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert "time: about" in text and "limit 2 min (--max-minutes)" in text  # the estimate, before training
    assert "training epoch 1/2 loss" in text and "training epoch 2/2 loss" in text and "elapsed 0:" in text
    assert "warning: The model learnt little" in text and "--backbone sfx-cnn9" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["chance"]["near_chance"] is True and metrics["warnings"], metrics
    assert metrics["time"]["estimated_s"] > 0 and not metrics["time"]["stopped_early"]
    assert (out / "model.snapkit").exists()  # asked for, so still written, but never silently
