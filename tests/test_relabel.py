"""``snapkit relabel``: saved clips move into the dataset atomically, never replacing one; ``--undo`` undoes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snapkit.dataset.relabel import RELABEL_LOG, last_batch, relabel_clips, undo_last
from snapkit.errors import LabelError, SnapkitError
from tests.conftest import run_cli

RATE_HZ = 16_000


def _clip(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).uniform(-0.1, 0.1, RATE_HZ // 4).astype(np.float32), RATE_HZ)
    return path


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_relabel_moves_logs_and_undo_restores(tmp_path: Path) -> None:
    a, b = _clip(tmp_path / "clips" / "a.wav", 1), _clip(tmp_path / "clips" / "b.wav", 2)
    a_bytes = a.read_bytes()
    data = tmp_path / "data"
    batch = relabel_clips([a, b], data, "doorbell")

    assert not a.exists() and not b.exists()
    assert (data / "doorbell" / "a.wav").read_bytes() == a_bytes
    record = json.loads((data / RELABEL_LOG).read_text())
    assert record["kind"] == "relabel" and record["label"] == "doorbell" and record["batch"] == batch.batch
    assert record["moves"][0] == {"from": str(a.resolve()), "to": str((data / "doorbell" / "a.wav").resolve())}

    undone = undo_last(data)
    assert undone.batch == batch.batch
    assert a.read_bytes() == a_bytes and b.exists()
    assert _files(data / "doorbell") == []
    assert last_batch(data) is None  # the log says this batch is undone
    with pytest.raises(SnapkitError, match="Nothing to undo"):
        undo_last(data)


def test_undo_goes_back_one_batch_at_a_time(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _clip(tmp_path / "clips" / "first.wav", 1)
    second = _clip(tmp_path / "clips" / "second.wav", 2)
    relabel_clips([first], data, "knock")
    relabel_clips([second], data, "background")
    undo_last(data)
    assert second.exists() and (data / "knock" / "first.wav").exists()
    undo_last(data)
    assert first.exists() and _files(data / "knock") == []


def test_never_overwrites_a_clip_in_the_dataset(tmp_path: Path) -> None:
    data = tmp_path / "data"
    existing = _clip(data / "knock" / "x.wav", 1)
    kept = existing.read_bytes()
    incoming = _clip(tmp_path / "clips" / "x.wav", 2)
    moved = incoming.read_bytes()
    batch = relabel_clips([incoming], data, "knock")
    assert existing.read_bytes() == kept
    assert batch.moves[0].target.name == "x-2.wav"
    assert (data / "knock" / "x-2.wav").read_bytes() == moved

    # The place it came from is taken again by the time of the undo: a fresh name there too.
    again = _clip(tmp_path / "clips" / "x.wav", 3)
    again_bytes = again.read_bytes()
    undone = undo_last(data)
    assert again.read_bytes() == again_bytes
    assert undone.moves[0].target.name == "x-2.wav" and (tmp_path / "clips" / "x-2.wav").read_bytes() == moved
    assert existing.read_bytes() == kept


def test_a_clip_already_in_that_class_or_bad_input_moves_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    inside = _clip(data / "knock" / "in.wav")
    fine = _clip(tmp_path / "clips" / "fine.wav")
    with pytest.raises(SnapkitError, match=r"already in .*knock; nothing was moved"):
        relabel_clips([fine, inside], data, "knock")
    with pytest.raises(SnapkitError, match="no such file"):
        relabel_clips([fine, tmp_path / "missing.wav"], data, "knock")
    note = tmp_path / "notes.txt"
    note.write_text("not a clip")
    with pytest.raises(SnapkitError, match="not an audio clip"):
        relabel_clips([fine, note], data, "knock")
    with pytest.raises(SnapkitError, match="named twice"):
        relabel_clips([fine, fine], data, "knock")
    with pytest.raises(LabelError):
        relabel_clips([fine], data, "../escape")
    with pytest.raises(SnapkitError, match="No clips given"):
        relabel_clips([], data, "knock")
    assert fine.exists() and inside.exists() and not (data / RELABEL_LOG).exists()
    assert not (tmp_path / "escape").exists()


def test_undo_refuses_a_log_pointing_outside_the_dataset(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    outside = _clip(tmp_path / "elsewhere" / "x.wav")
    record = {
        "kind": "relabel",
        "batch": "b1",
        "time": "now",
        "label": "knock",
        "moves": [{"from": str(tmp_path / "clips" / "x.wav"), "to": str(outside)}],
    }
    (data / RELABEL_LOG).write_text(json.dumps(record) + "\n")
    with pytest.raises(SnapkitError, match="outside"):
        undo_last(data)
    assert outside.exists()


def test_undo_of_a_clip_moved_since_moves_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    a, b = _clip(tmp_path / "clips" / "a.wav", 1), _clip(tmp_path / "clips" / "b.wav", 2)
    relabel_clips([a, b], data, "knock")
    (data / "knock" / "b.wav").unlink()
    with pytest.raises(SnapkitError, match="no longer where relabel put it"):
        undo_last(data)
    assert (data / "knock" / "a.wav").exists() and not a.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_class_folder_is_one_sentence_and_nothing_half_moved(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = data / "knock"
    folder.mkdir(parents=True)
    clip = _clip(tmp_path / "clips" / "a.wav")
    folder.chmod(0o500)
    try:
        with pytest.raises(SnapkitError, match=r"Could not move .*writable.*Nothing was moved"):
            relabel_clips([clip], data, "knock")
    finally:
        folder.chmod(0o700)
    assert clip.exists() and _files(folder) == []


def test_relabel_cli_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "data"
    a = _clip(tmp_path / "clips" / "knock-20250501-120000-000-1.wav")
    result = run_cli("relabel", str(a), "--background", "--data", str(data))
    assert result.returncode == 0, result.stderr
    assert (data / "background" / a.name).exists()
    assert "Moved 1 clip(s)" in result.stdout and "--undo" in result.stdout

    result = run_cli("relabel", "--undo", "--data", str(data))
    assert result.returncode == 0, result.stderr
    assert a.exists() and "Undid" in result.stdout

    for args, message in [
        ((str(a),), "give --label LABEL or --background"),
        ((str(a), "--label", "x", "--background"), "give --label LABEL or --background"),
        (("--undo", str(a)), "--undo takes no clips"),
        ((str(a), "--label", "a/b"), "a plain folder name"),
        (("--undo",), "Nothing to undo"),
    ]:
        result = run_cli("relabel", *args, "--data", str(data))
        assert result.returncode == 2, (args, result.stdout)
        assert message in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    assert a.exists()


def test_a_full_disk_part_way_moves_the_first_clips_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stands in for a full or read-only target (root, which runs CI here, may write into read-only folders).
    import errno

    from snapkit.dataset import relabel as relabel_module

    data = tmp_path / "data"
    a, b = _clip(tmp_path / "clips" / "a.wav", 1), _clip(tmp_path / "clips" / "b.wav", 2)
    real_link = relabel_module._link

    def link_until_full(source: Path, target: Path) -> None:
        if source.name == "b.wav":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_link(source, target)

    monkeypatch.setattr(relabel_module, "_link", link_until_full)
    with pytest.raises(SnapkitError, match=r"Could not move .*b\.wav.*No space left.*Nothing was moved"):
        relabel_clips([a, b], data, "knock")
    assert a.exists() and b.exists() and _files(data) == []
