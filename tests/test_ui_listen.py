"""The workbench's live detector through the test client: `snapkit listen`'s engine on an in-memory source, its
probabilities and events pushed to the page, and the refusals (no such run, a path outside the runs folder)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from snapkit.audio.sources import ArraySource
from snapkit.ui.app import create_app
from snapkit.ui.security import TOKEN_HEADER
from snapkit.ui.workbench import Workbench
from tests.ui_helpers import RATE_HZ, make_data, tone

TOKEN = "listen-token"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ConvNet trained for one epoch on all clips: enough to run, not to be right."""
    from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("listen")
    settings = TrainSettings(epochs=1, estimate=False, max_false_alarms_per_hour=None)
    plan = plan_training(make_data(root), root / "runs" / "tiny", settings, measure_speed=False)
    run_training(plan, trainer_options=TrainerOptions(progress_bar=False), log=lambda line: None)
    return root / "runs"


def client_for(runs: Path, tmp_path: Path) -> TestClient:
    stream = np.concatenate([np.zeros(RATE_HZ, np.float32), tone(1000.0, 1.0), np.zeros(RATE_HZ, np.float32)])
    workbench = Workbench(data_dir=tmp_path / "data", runs_dir=runs, events_dirs=[tmp_path / "events"])
    app = create_app(workbench, TOKEN, source_factory=lambda: ArraySource(stream, RATE_HZ))
    return TestClient(app, headers={TOKEN_HEADER: TOKEN})


def test_listen_runs_the_live_detector_and_reports_probabilities(runs: Path, tmp_path: Path) -> None:
    client = client_for(runs, tmp_path)
    assert client.get("/api/models").json()["runs"] == ["tiny"]
    assert client.get("/api/listen").json()["state"] == "idle"
    started = client.post("/api/listen", json={"run": "tiny"})
    assert started.status_code == 200 and started.json()["model"] == "tiny"
    deadline = time.monotonic() + 60
    while client.get("/api/listen").json()["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    snapshot = client.get("/api/listen").json()
    assert snapshot["state"] == "stopped", snapshot
    assert set(snapshot["status"]["probabilities"]) == {"beep", "whistle"}
    assert snapshot["status"]["position_s"] == pytest.approx(3.0, abs=0.2)
    # The stream pushes the same snapshots and ends when listening has ended.
    pushed = client.get("/api/listen/stream")
    assert pushed.status_code == 200 and pushed.text.startswith("data: ") and '"state": "stopped"' in pushed.text
    assert client.post("/api/listen/stop").json()["state"] == "stopped"


def test_listen_refuses_a_missing_run_and_a_path_outside(runs: Path, tmp_path: Path) -> None:
    client = client_for(runs, tmp_path)
    assert client.post("/api/listen", json={"run": "nope"}).status_code == 404
    assert client.post("/api/listen", json={"run": "../tiny"}).status_code == 403
    assert client.post("/api/listen", json={"run": "/etc"}).status_code == 403
    assert client.get("/api/listen").json()["state"] == "idle"
