"""The package's one atomic writer, cache folder and JSON normaliser (snapkit.files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from snapkit.errors import SnapkitError
from snapkit.files import CACHE_DIR_ENV, cache_root, jsonable, replace_atomically, write_atomically


def test_a_finished_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.json"  # the folder is created
    write_atomically(path, "old")
    write_atomically(path, b"new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["events.json"]


def test_a_failed_write_keeps_the_old_file_whole(tmp_path: Path) -> None:
    path = write_atomically(tmp_path / "model.snapkit", "old")
    with pytest.raises(KeyboardInterrupt), replace_atomically(path) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt  # Ctrl-C in the middle
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.snapkit"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_one_sentence_naming_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(SnapkitError, match=r"Could not write the model file .*ro/m\.snapkit .*writable"):
            write_atomically(folder / "m.snapkit", "x", what="the model file")
    finally:
        folder.chmod(0o700)


def test_a_disk_error_is_one_sentence_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "plot.png"
    full = r"Could not write .*plot\.png \(No space left on device\)"
    with pytest.raises(SnapkitError, match=full), replace_atomically(path):
        raise OSError(28, "No space left on device")
    assert not list(tmp_path.iterdir())


def test_cache_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert cache_root().name == "snapkit"


def test_jsonable_turns_what_json_cannot_hold_into_what_it_can() -> None:
    value = {"a": (1, np.float32(0.5)), 2: [Path("x/y"), {"n": np.int64(3)}]}
    assert jsonable(value) == {"a": [1, 0.5], "2": ["x/y", {"n": 3}]}
