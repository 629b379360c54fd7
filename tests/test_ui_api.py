"""The workbench's API through the framework's test client: every action, and every refusal (token, label, missing
file, path outside, oversized or non-audio upload, silent recording)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from snapkit.audio.io import load_audio
from snapkit.errors import SnapkitError
from snapkit.ui.app import create_app
from snapkit.ui.security import TOKEN_COOKIE, TOKEN_HEADER, check_host, inside, is_loopback
from snapkit.ui.workbench import TRASH_DIR, Workbench
from tests.ui_helpers import RATE_HZ, make_data, make_events, tone

TOKEN = "test-token-123"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[TestClient, Workbench]:
    data, events = make_data(tmp_path), make_events(tmp_path)
    workbench = Workbench(data_dir=data, runs_dir=tmp_path / "runs", events_dirs=[events])
    app = create_app(workbench, TOKEN, max_upload_mb=0.5)
    return TestClient(app, headers={TOKEN_HEADER: TOKEN}), workbench


@pytest.fixture
def client(setup: tuple[TestClient, Workbench]) -> TestClient:
    return setup[0]


def wav_bytes(audio: np.ndarray, rate_hz: int = RATE_HZ) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, rate_hz, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# --- token -------------------------------------------------------------------------------------------------------


def test_every_request_needs_the_token_and_the_first_visit_sets_a_cookie(setup: tuple[TestClient, Workbench]) -> None:
    app = setup[0].app
    bare = TestClient(app)
    for url in ["/", "/api/dataset", "/static/app.js", "/api/file?root=data&path=beep/beep-0.wav"]:
        assert bare.get(url).status_code == 401, url
    assert bare.get("/?token=wrong").status_code == 401
    assert bare.get("/api/dataset", headers={TOKEN_HEADER: "wrong"}).status_code == 401
    first = bare.get(f"/?token={TOKEN}", follow_redirects=False)
    assert (
        first.status_code == 303
        and first.headers["location"].endswith("/")
        and "token" not in first.headers["location"]
    )
    assert (
        "httponly" in first.headers["set-cookie"].lower() and "samesite=strict" in first.headers["set-cookie"].lower()
    )
    assert bare.cookies.get(TOKEN_COOKIE) == TOKEN
    page = bare.get("/")
    assert page.status_code == 200 and "snapkit" in page.text and TOKEN in page.text
    assert bare.get("/api/dataset").status_code == 200


def test_a_change_needs_the_token_header_not_only_the_cookie(setup: tuple[TestClient, Workbench]) -> None:
    app, workbench = setup[0].app, setup[1]
    browser = TestClient(app, cookies={TOKEN_COOKIE: TOKEN})
    # What a link or form on another site could send: the cookie, no header. Refused, nothing moved.
    refused = browser.post("/api/move", json={"paths": ["beep/beep-0.wav"], "label": "whistle"})
    assert refused.status_code == 401 and (workbench.data_dir / "beep" / "beep-0.wav").exists()
    assert browser.post("/api/undo").status_code == 401
    # and no change is reachable by GET at all
    assert setup[0].get("/api/move").status_code == 405


def test_only_loopback_may_run_without_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    check_host("127.0.0.1", token_required=False)
    check_host("0.0.0.0", token_required=True)
    with pytest.raises(SnapkitError, match="cannot be turned off"):
        check_host("0.0.0.0", token_required=False)


def test_the_cli_refuses_a_network_host_without_a_token() -> None:
    from tests.conftest import run_cli

    result = run_cli("ui", "--host", "0.0.0.0", "--no-token", "--port", "1")
    assert result.returncode == 2 and "cannot be turned off" in result.stderr


# --- paths -------------------------------------------------------------------------------------------------------


def test_no_path_leaves_its_folder(client: TestClient, tmp_path: Path) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(wav_bytes(tone(500.0)))
    (tmp_path / "data" / "beep" / "link.wav").symlink_to(secret)
    (tmp_path / "data" / "linkdir").symlink_to(tmp_path)
    for path in [
        "../secret.wav",
        "beep/../../secret.wav",
        str(secret),
        "/etc/passwd",
        "beep/link.wav",
        "linkdir/secret.wav",
        ".snapkit-relabel.jsonl",
        "beep\\..\\..\\secret.wav",
    ]:
        for url in ["/api/file", "/api/spectrogram.png"]:
            answer = client.get(url, params={"root": "data", "path": path})
            assert answer.status_code == 403, (url, path, answer.text)
            assert answer.json()["error"].endswith(".")
        moved = client.post("/api/move", json={"paths": [path], "label": "whistle"})
        assert moved.status_code == 403, (path, moved.text)
    assert client.get("/api/file", params={"root": "nowhere", "path": "x.wav"}).status_code == 403
    assert secret.exists()
    with pytest.raises(SnapkitError):
        inside(tmp_path, "")


def test_files_and_spectrograms_are_served(client: TestClient) -> None:
    audio = client.get("/api/file", params={"root": "data", "path": "beep/beep-0.wav"})
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
    png = client.get("/api/spectrogram.png", params={"root": "events-0", "path": "kitchen-0012.50s-whistle.wav"})
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    missing = client.get("/api/file", params={"root": "data", "path": "beep/nope.wav"})
    assert missing.status_code == 404 and "nope.wav" in missing.json()["error"]


# --- dataset -----------------------------------------------------------------------------------------------------


def test_dataset_lists_classes_problems_and_clips(client: TestClient) -> None:
    data = client.get("/api/dataset").json()
    assert [(c["label"], c["clips"]) for c in data["classes"]] == [("beep", 3), ("whistle", 3), ("background", 3)]
    assert data["classes"][0]["seconds"] == pytest.approx(3.0)
    assert {c["path"] for c in data["clips"]} >= {"beep/beep-0.wav", "background/background-2.wav"}
    assert isinstance(data["problems"], list)
    assert data["changes"]["total"] == 9 and data["changes"]["trained_at"] is None  # no model yet: all is new


def test_the_problems_of_snapkit_data_are_shown(client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "data" / "beep" / "broken.wav").write_bytes(b"RIFF nonsense")
    problems = client.get("/api/dataset").json()["problems"]
    assert any(p["severity"] == "error" and p["path"] == "beep/broken.wav" for p in problems)


def test_move_a_clip_to_another_class_and_undo(client: TestClient, tmp_path: Path) -> None:
    data = tmp_path / "data"
    answer = client.post("/api/move", json={"paths": ["beep/beep-0.wav"], "label": "whistle"})
    assert answer.status_code == 200 and answer.json()["label"] == "whistle"
    assert (data / "whistle" / "beep-0.wav").exists() and not (data / "beep" / "beep-0.wav").exists()
    assert client.post("/api/undo").status_code == 200
    assert (data / "beep" / "beep-0.wav").exists() and not (data / "whistle" / "beep-0.wav").exists()


def test_move_refuses_a_bad_label_a_missing_file_and_its_own_class(client: TestClient, tmp_path: Path) -> None:
    for label in ["../x", ".hidden", "a/b", "", " spaced"]:
        answer = client.post("/api/move", json={"paths": ["beep/beep-0.wav"], "label": label})
        assert answer.status_code == 400, label
        assert answer.json()["error"].endswith(".")
    assert client.post("/api/move", json={"paths": ["beep/gone.wav"], "label": "whistle"}).status_code == 404
    assert client.post("/api/move", json={"paths": ["beep/beep-0.wav"], "label": "beep"}).status_code == 400
    assert (tmp_path / "data" / "beep" / "beep-0.wav").exists()


def test_delete_goes_to_the_trash_and_undo_brings_it_back(client: TestClient, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert client.post("/api/delete", json={"paths": ["beep/beep-1.wav"]}).status_code == 200
    assert not (data / "beep" / "beep-1.wav").exists() and (data / TRASH_DIR / "beep" / "beep-1.wav").exists()
    assert "beep/beep-1.wav" not in {c["path"] for c in client.get("/api/dataset").json()["clips"]}
    assert client.get("/api/dataset").json()["changes"]["deleted"] == 1
    assert client.post("/api/undo").status_code == 200
    assert (data / "beep" / "beep-1.wav").exists() and not (data / TRASH_DIR / "beep" / "beep-1.wav").exists()
    assert client.post("/api/delete", json={"paths": ["beep/nope.wav"]}).status_code == 404


def test_undo_with_nothing_to_undo_says_so(client: TestClient) -> None:
    answer = client.post("/api/undo")
    assert answer.status_code == 400 and answer.json()["error"].startswith("Nothing to undo")


def test_rename_a_class_and_undo(client: TestClient, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert client.post("/api/rename", json={"old": "beep", "new": "doorbell"}).status_code == 200
    assert not (data / "beep").exists() and len(list((data / "doorbell").glob("*.wav"))) == 3
    assert client.post("/api/rename", json={"old": "doorbell", "new": "whistle"}).status_code == 400  # taken
    assert client.post("/api/rename", json={"old": "doorbell", "new": "../up"}).status_code == 400
    assert client.post("/api/rename", json={"old": "nope", "new": "x"}).status_code == 404
    assert client.post("/api/rename", json={"old": "..", "new": "x"}).status_code == 400
    assert client.post("/api/undo").status_code == 200
    assert len(list((data / "beep").glob("*.wav"))) == 3 and not list((data / "doorbell").glob("*.wav"))


def test_upload_imports_audio_as_snapkit_import_does(client: TestClient, tmp_path: Path) -> None:
    audio = np.concatenate([tone(2000.0, 2.0), tone(2000.0, 2.0, seed=3)])
    answer = client.post(
        "/api/upload",
        params={"label": "chirp", "clip_s": 2.0, "hop_s": 2.0},
        files=[("files", ("garage evening.wav", wav_bytes(audio), "audio/wav"))],
    )
    assert answer.status_code == 200, answer.text
    written = answer.json()["written"]
    assert len(written) == 2 and all(p.startswith("chirp/garage evening-") for p in written)
    clip, rate = load_audio(tmp_path / "data" / written[0])
    assert rate == RATE_HZ and len(clip) == 2 * RATE_HZ


def test_upload_refuses_non_audio_oversized_and_bad_labels_writing_nothing(client: TestClient, tmp_path: Path) -> None:
    good = ("files", ("a.wav", wav_bytes(tone(2000.0)), "audio/wav"))
    not_audio = client.post(
        "/api/upload", params={"label": "chirp"}, files=[good, ("files", ("notes.wav", b"hello " * 100, "audio/wav"))]
    )
    assert not_audio.status_code == 415 and "notes.wav" in not_audio.json()["error"]
    assert "snapkit-upload" not in not_audio.json()["error"]  # names the user's file, not the temporary copy
    big = np.random.default_rng(0).normal(0, 0.1, 400_000).astype(np.float32)  # 800 kB > 0.5 MB
    too_large = client.post("/api/upload", params={"label": "chirp"}, files=[("files", ("big.wav", wav_bytes(big)))])
    assert too_large.status_code == 413
    assert client.post("/api/upload", params={"label": "../chirp"}, files=[good]).status_code == 400
    assert client.post("/api/upload", params={"label": "chirp"}, data={"x": "1"}).status_code == 400
    assert not (tmp_path / "data" / "chirp").exists() and not (tmp_path / "chirp").exists()


# --- record ------------------------------------------------------------------------------------------------------


def test_record_saves_a_clip_as_snapkit_record_names_it(client: TestClient, tmp_path: Path) -> None:
    audio = tone(1500.0, 2.0)
    answer = client.post(
        "/api/record", params={"label": "clap", "sample_rate_hz": RATE_HZ}, content=audio.astype("<f4").tobytes()
    )
    assert answer.status_code == 200, answer.text
    path = tmp_path / "data" / answer.json()["path"]
    assert path.parent.name == "clap" and path.name.startswith("clap-") and path.suffix == ".wav"
    saved, rate = load_audio(path)
    assert rate == RATE_HZ and np.allclose(saved, audio, atol=1e-4)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_record_refuses_silence_except_for_background(client: TestClient, tmp_path: Path) -> None:
    quiet = (np.random.default_rng(1).normal(0, 1e-4, RATE_HZ)).astype("<f4").tobytes()
    refused = client.post("/api/record", params={"label": "clap", "sample_rate_hz": RATE_HZ}, content=quiet)
    assert refused.status_code == 422 and "silent" in refused.json()["error"]
    assert not (tmp_path / "data" / "clap").exists()
    kept = client.post("/api/record", params={"label": "background", "sample_rate_hz": RATE_HZ}, content=quiet)
    assert kept.status_code == 200


def test_record_refuses_bad_input(client: TestClient) -> None:
    one_s = tone(1500.0).astype("<f4").tobytes()
    assert (
        client.post("/api/record", params={"label": "a/b", "sample_rate_hz": RATE_HZ}, content=one_s).status_code == 400
    )
    assert client.post("/api/record", params={"label": "a", "sample_rate_hz": 100}, content=one_s).status_code == 400
    assert (
        client.post("/api/record", params={"label": "a", "sample_rate_hz": RATE_HZ}, content=b"abc").status_code == 400
    )
    nan = np.full(100, np.nan, dtype="<f4").tobytes()
    assert client.post("/api/record", params={"label": "a", "sample_rate_hz": RATE_HZ}, content=nan).status_code == 400
    huge = np.zeros(200_000, dtype="<f4").tobytes()  # 800 kB > 0.5 MB
    assert client.post("/api/record", params={"label": "a", "sample_rate_hz": RATE_HZ}, content=huge).status_code == 413


# --- review ------------------------------------------------------------------------------------------------------


def test_review_lists_event_clips_with_label_score_and_time(client: TestClient) -> None:
    clips = {c["path"]: c for c in client.get("/api/review").json()["clips"]}
    assert set(clips) == {
        "beep-20261206-101500-250-1.wav",
        "beep-20261206-101700-000-2.wav",
        "kitchen-0012.50s-whistle.wav",
    }
    first = clips["beep-20261206-101500-250-1.wav"]
    assert first["label"] == "beep" and first["score"] == 0.91 and first["time"] == "2026-12-06T10:15:00.250"
    assert clips["kitchen-0012.50s-whistle.wav"]["label"] == "whistle"
    assert clips["kitchen-0012.50s-whistle.wav"]["time"] == "kitchen at 12.50 s"


def test_review_right_wrong_and_another_class_move_clips_and_undo(client: TestClient, tmp_path: Path) -> None:
    data, events = tmp_path / "data", tmp_path / "events"
    right = client.post(
        "/api/review", json={"root": "events-0", "path": "beep-20261206-101500-250-1.wav", "label": "beep"}
    )
    assert right.status_code == 200
    wrong = {"root": "events-0", "path": "beep-20261206-101700-000-2.wav", "label": "background"}
    assert client.post("/api/review", json=wrong).status_code == 200
    other = {"root": "events-0", "path": "kitchen-0012.50s-whistle.wav", "label": "beep"}
    assert client.post("/api/review", json=other).status_code == 200
    assert (data / "beep" / "beep-20261206-101500-250-1.wav").exists()
    assert (data / "background" / "beep-20261206-101700-000-2.wav").exists()
    assert (data / "beep" / "kitchen-0012.50s-whistle.wav").exists()
    assert client.get("/api/review").json()["clips"] == []
    assert client.get("/api/review").json()["changes"]["relabelled"] == 3
    assert client.post("/api/undo").status_code == 200
    assert (events / "kitchen-0012.50s-whistle.wav").exists() and not (
        data / "beep" / "kitchen-0012.50s-whistle.wav"
    ).exists()
    assert client.get("/api/review").json()["changes"]["relabelled"] == 2


def test_review_refuses_dataset_clips_bad_labels_and_paths_outside(client: TestClient) -> None:
    assert client.post("/api/review", json={"root": "data", "path": "beep/beep-0.wav", "label": "x"}).status_code == 403
    body = {"root": "events-0", "path": "kitchen-0012.50s-whistle.wav", "label": "../x"}
    assert client.post("/api/review", json=body).status_code == 400
    body = {"root": "events-0", "path": "../data/beep/beep-0.wav", "label": "x"}
    assert client.post("/api/review", json=body).status_code == 403
    body = {"root": "events-0", "path": "gone.wav", "label": "x"}
    assert client.post("/api/review", json=body).status_code == 404


def test_changes_count_from_the_newest_model(client: TestClient, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "model.snapkit").write_bytes(b"x")
    assert client.get("/api/review").json()["changes"]["total"] == 0
    body = {"root": "events-0", "path": "kitchen-0012.50s-whistle.wav", "label": "whistle"}
    assert client.post("/api/review", json=body).status_code == 200
    changes = client.get("/api/review").json()["changes"]
    assert changes["relabelled"] == 1 and changes["added"] == 0 and changes["total"] == 1


# --- train refusals ----------------------------------------------------------------------------------------------


def test_train_refuses_an_unknown_backbone_and_a_second_training(setup: tuple[TestClient, Workbench]) -> None:
    client = setup[0]
    assert client.post("/api/train", json={"backbone": "nope"}).status_code == 400
    job = client.app.state.job  # type: ignore[attr-defined]
    job.state = "running"  # as while a training runs
    busy = client.post("/api/train", json={"backbone": "convnet"})
    assert busy.status_code == 409 and "one at a time" in busy.json()["error"]
    status = client.get("/api/train").json()
    assert status["state"] == "running" and "convnet" in status["backbones"]


def test_snapkit_help_does_not_load_the_web_framework() -> None:
    import subprocess
    import sys

    code = "import sys; from snapkit.cli.app import app; print('fastapi' in sys.modules, 'uvicorn' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["False", "False"]
