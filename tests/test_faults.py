"""Faults a user causes never crash a command or lose what they recorded (issue 13, item 6).

Read-only and full disks are real where the machine allows it: a tmpfs mounted read-only, or one so small that it
fills up (root in a container, as in CI and the development machine). Where ``mount`` is refused those tests skip,
and the same code paths are still covered by tests that make the single write layer fail with the same errno.
Commands run in-process through ``snapkit.cli.app.main``, the real entry point (its exit code and its one line on
stderr); a few run as a subprocess where a second process is the point.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import textwrap
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

import snapkit.dataset.store as store
import snapkit.training.train as train_module
from snapkit.cli import record as record_cli
from snapkit.cli.app import main
from snapkit.dataset.scan import scan_dataset
from snapkit.detection.events import EventUpdate
from snapkit.detection.outputs import lock_event_file, read_events
from snapkit.detection.sinks import EventLog
from snapkit.errors import DatasetError, SnapkitError
from snapkit.eval.synth import make_dataset
from snapkit.files import INCOMPLETE_MARKER, FileLock, check_writable
from snapkit.training.train import TrainerOptions, TrainSettings, check_trainer_options
from tests.conftest import REPO, run_cli
from tests.test_event_files import BLOCK_S, BlockDetector, engine  # noqa: F401 (the fixture, used by name)

# ---------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Run:
    """What a command did: its exit code and its output, whitespace folded so wrapping does not matter."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + " " + self.err


@pytest.fixture(autouse=True)
def _wide_usage_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Click's usage errors are drawn in a box as wide as COLUMNS: wide enough to hold one on one line."""
    monkeypatch.setenv("COLUMNS", "200")


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Run:
    """``snapkit ARGS`` through the real entry point, in this process."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    captured = capsys.readouterr()
    return Run(code, " ".join(captured.out.split()), " ".join(captured.err.split()))


def one_sentence_error(result: Run) -> str:
    """The error line, checked to be the whole of stderr: one sentence, no traceback."""
    assert "Traceback" not in result.text, result.text
    assert result.err.startswith("error: "), result.err
    message = result.err.removeprefix("error: ")
    assert message.endswith(".") and ". " not in message.rstrip("."), message  # one sentence (paths have no ". ")
    return message


@contextlib.contextmanager
def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real tmpfs at ``where`` (``mount -t tmpfs -o OPTIONS``); skips where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a read-only file system (root writes through chmod, so a mount is the real thing)."""
    with mounted_tmpfs(tmp_path / "ro", "ro,size=64k") as folder:
        yield folder


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB file system: fill it with ``fill(small_disk)`` to get a real ENOSPC."""
    with mounted_tmpfs(tmp_path / "disk", "size=256k") as folder:
        yield folder


def fill(disk: Path) -> Path:
    """Write a filler file until ``disk`` is full (another program filling the disk); returns the filler."""
    filler = disk / f"filler-{uuid.uuid4().hex[:6]}"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


def remount_read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)


# ---------------------------------------------------------------------------------------------- the write layer


def test_check_writable_refuses_a_read_only_disk(read_only_dir: Path) -> None:
    with pytest.raises(SnapkitError) as info:
        check_writable(read_only_dir / "doorbell", what="the data folder", instead="choose another --data folder")
    assert str(info.value) == (
        f"Cannot write to the data folder {read_only_dir / 'doorbell'} (Read-only file system): remount that disk "
        "writable, or choose another --data folder."
    )


def test_check_writable_refuses_a_full_disk_and_leaves_no_probe(small_disk: Path) -> None:
    fill(small_disk)
    with pytest.raises(SnapkitError, match=r"\(No space left on device\): free some space, or choose another"):
        check_writable(small_disk, what="the data folder", instead="choose another --data folder", size_bytes=8000)
    assert [p.name for p in small_disk.iterdir() if p.name.startswith(".")] == []


def test_check_writable_turns_a_failed_flush_into_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no tmpfs can be mounted: the disk fills between the write and the flush to disk."""

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(SnapkitError, match=r"^Cannot write to the clip folder .*\(No space left on device\): free"):
        check_writable(tmp_path / "clips", what="the clip folder", instead="choose another folder", size_bytes=10)
    assert list((tmp_path / "clips").iterdir()) == []


def test_a_write_on_a_full_disk_is_one_os_error_not_a_shower_of_tracebacks(
    small_disk: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from snapkit.audio.io import write_wav

    fill(small_disk)
    with pytest.raises(OSError) as info:
        write_wav(small_disk / "clip.wav", np.zeros(8000, np.float32), 8000)
    assert info.value.errno == errno.ENOSPC
    assert "Exception ignored" not in capfd.readouterr().err  # libsndfile's callbacks are not writing to the disk
    assert [p.name for p in small_disk.iterdir() if not p.name.startswith("filler")] == []


# ---------------------------------------------------------------------------------------------- one writer per log


def test_two_event_logs_on_one_file_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = EventLog(path)
    try:
        with pytest.raises(SnapkitError) as info:
            EventLog(path)
        assert str(info.value) == (
            f"{path} is already being written by another snapkit (process {os.getpid()}); stop that one first, or "
            "choose another --events file."
        )
        other = lock_event_file(tmp_path / "other.jsonl")  # another file is another lock
        assert other.held
        other.release()
    finally:
        first.close()
    second = EventLog(path)  # released on close
    second.close()
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]  # no sidecar left behind


def test_a_second_process_cannot_append_to_the_same_event_log(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from snapkit.detection.sinks import EventLog
                log = EventLog({str(path)!r})
                print("holding", flush=True)
                sys.stdin.readline()
                log.close()
                """
            ),
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(SnapkitError, match=rf"^{path} is already being written by another snapkit \(process "):
            EventLog(path)
        assert str(holder.pid) in (tmp_path / ".events.csv.lock").read_text()
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=60)
    EventLog(path).close()  # the holder has let go


def test_a_lock_whose_sidecar_was_removed_meanwhile_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder removes its sidecar as it lets go. One who opened the old sidecar just before must not think it
    holds the lock (a third writer, opening the new sidecar, would get it too)."""
    import snapkit.files as files

    def busy(pid: str) -> str:
        return f"busy {pid}"

    def unwritable(err: OSError) -> str:
        return "unwritable"

    holder = FileLock(tmp_path / "events.csv")
    holder.acquire(busy=busy, unwritable=unwritable)
    real_flock = files.fcntl.flock
    calls: list[int] = []

    def holder_lets_go_first(fd: int, operation: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            holder.release()  # between our open() of its sidecar and our flock()
        real_flock(fd, operation)

    monkeypatch.setattr(files.fcntl, "flock", holder_lets_go_first)
    second = FileLock(tmp_path / "events.csv")
    second.acquire(busy=busy, unwritable=unwritable)
    assert len(calls) == 2  # the first lock was on a removed file, so it was taken again
    monkeypatch.setattr(files.fcntl, "flock", real_flock)
    with pytest.raises(SnapkitError, match=f"^busy {os.getpid()}$"):
        FileLock(tmp_path / "events.csv").acquire(busy=busy, unwritable=unwritable)
    second.release()


# ---------------------------------------------------------------------------------------------- record

RATE = 8_000
RECORD_BLOCK = 400  # 50 ms


class RecordMic:
    """Replaces ``MicrophoneSource`` in ``snapkit record``: a steady tone, logged block by block per take, and a hook
    called as each take begins (another program filling the disk, a folder being removed)."""

    takes: list[list[np.ndarray]] = []  # noqa: RUF012 (reset by the fixture)
    on_take: Callable[[int], None] | None = None

    def __init__(self, device: str | None = None, sample_rate_hz: int | None = None) -> None:
        self.device = types.SimpleNamespace(index=0, name="Fake Mic")
        self.sample_rate_hz = RATE
        self.overflows = self.dropped = 0
        self._position = 0

    def __enter__(self) -> RecordMic:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def discard_pending(self) -> None:
        pass

    def blocks(self) -> Iterator[np.ndarray]:
        self.takes.append([])
        if RecordMic.on_take is not None:
            RecordMic.on_take(len(self.takes))
        while True:
            t = (self._position + np.arange(RECORD_BLOCK)) / RATE
            self._position += RECORD_BLOCK
            block = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            self.takes[-1].append(block)
            yield block


@pytest.fixture
def mic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[RecordMic]:
    RecordMic.takes = []
    RecordMic.on_take = None
    monkeypatch.setattr(record_cli, "MicrophoneSource", RecordMic)
    monkeypatch.setattr(record_cli, "_can_ask", lambda: False)  # as from a script; tests that answer say so
    monkeypatch.setenv(store.RESCUE_DIR_ENV, str(tmp_path / "rescue"))
    return RecordMic


def record(capsys: pytest.CaptureFixture[str], data: Path, clips: int = 2) -> Run:
    return run(capsys, "record", "clap", "--data", data, "--clip-s", "0.2", "--countdown-s", "0", "--clips", str(clips))


def take_audio(number: int) -> np.ndarray:
    """The samples of take ``number`` (1-based), as the microphone delivered them."""
    return np.concatenate(RecordMic.takes[number - 1])[: round(0.2 * RATE)]


def test_record_refuses_a_read_only_data_folder_before_recording(
    mic: type[RecordMic], read_only_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = record(capsys, read_only_dir)
    assert result.code == 2
    assert one_sentence_error(result) == (
        f"Cannot write to the data folder {read_only_dir / 'clap'} (Read-only file system): remount that disk "
        "writable, or choose another --data folder."
    )
    assert mic.takes == []  # nobody was asked to perform a sound that could not be kept


def test_record_refuses_a_full_disk_before_recording(
    mic: type[RecordMic], small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(small_disk)
    result = record(capsys, small_disk / "data")
    assert result.code == 2
    assert one_sentence_error(result) == (
        f"Cannot write to the data folder {small_disk / 'data' / 'clap'} (No space left on device): free some space, "
        "or choose another --data folder."
    )
    assert mic.takes == []


def test_record_keeps_a_take_the_full_disk_refused_in_the_rescue_folder(
    mic: type[RecordMic], small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = small_disk / "data"
    mic.on_take = lambda number: fill(small_disk) if number == 2 else None  # the disk fills during take 2
    result = record(capsys, data, clips=3)
    assert result.code == 2
    (first,) = (data / "clap").iterdir()
    (rescued,) = (tmp_path / "rescue" / "clap").iterdir()
    assert one_sentence_error(result) == (
        f"Could not save the take in {data / 'clap'} (No space left on device), so it was kept as {rescued}: free "
        f"some space, then move it into {data / 'clap'} and record the rest."
    )
    assert len(mic.takes) == 2  # stopped after the refused take: the next would be refused too
    saved, rate = sf.read(rescued, dtype="float32")
    assert rate == RATE and np.allclose(saved, take_audio(2), atol=1 / 32_000)  # the very take, not a later one
    assert np.allclose(sf.read(first, dtype="float32")[0], take_audio(1), atol=1 / 32_000)
    assert [p.name for p in (data / "clap").iterdir() if p.name.startswith(".")] == []  # no half-written file


def test_record_asks_to_try_again_and_saves_the_take_once_space_is_freed(
    mic: type[RecordMic], small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = small_disk / "data"
    fillers: list[Path] = []
    mic.on_take = lambda number: fillers.append(fill(small_disk)) if number == 1 else None
    asked: list[str] = []
    real_ask = record_cli._ask_try_again

    def user_frees_space_then_answers(error: OSError, folder: Path) -> bool:
        asked.append(error.strerror or "")
        if len(asked) == 2:  # the first time they answer before deleting anything: refused again
            fillers.pop().unlink()
        return real_ask(error, folder)

    monkeypatch.setattr(record_cli, "_can_ask", lambda: True)
    monkeypatch.setattr(record_cli, "_ask_try_again", user_frees_space_then_answers)
    app = typer.Typer()
    app.callback()(lambda: None)
    record_cli.register(app)
    result = CliRunner().invoke(
        app,
        ["record", "clap", "--data", str(data), "--clip-s", "0.2", "--countdown-s", "0", "--clips", "1"],
        input="y\ny\n",
    )
    assert result.exit_code == 0, result.output
    assert asked == ["No space left on device", "No space left on device"]
    assert "It is kept in memory: free some space, then answer y to try again" in " ".join(result.output.split())
    (saved,) = (data / "clap").iterdir()
    assert np.allclose(sf.read(saved, dtype="float32")[0], take_audio(1), atol=1 / 32_000)
    assert not (tmp_path / "rescue").exists()


@pytest.mark.parametrize("answer", ["n\n", ""], ids=["no", "end-of-input"])
def test_record_rescues_the_take_when_the_user_declines_to_retry(
    mic: type[RecordMic], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """Where no tmpfs can be mounted: the write layer refuses as a read-only disk would. Answering no, or no answer
    at all (end of input, as Ctrl-C at the question), keeps the take in the rescue folder."""

    def read_only(path: Path, audio: np.ndarray, rate: int) -> Path:
        if Path(path).is_relative_to(tmp_path / "data"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_write(path, audio, rate)

    real_write = store.write_wav
    monkeypatch.setattr(store, "write_wav", read_only)
    monkeypatch.setattr(record_cli, "_can_ask", lambda: True)
    monkeypatch.setattr(record_cli, "check_writable", lambda *a, **k: None)  # it would see the real, writable disk
    app = typer.Typer()
    app.callback()(lambda: None)
    record_cli.register(app)
    args = ["record", "clap", "--data", str(tmp_path / "data"), "--clip-s", "0.2", "--countdown-s", "0"]
    result = CliRunner().invoke(app, args, input=answer)
    assert result.exit_code == 1 and isinstance(result.exception, store.TakeRescued)  # main() makes it exit 2
    rescued = result.exception.path
    assert rescued is not None and rescued.parent == tmp_path / "rescue" / "clap"
    assert "remount that disk writable, then move it into" in str(result.exception)
    assert np.allclose(sf.read(rescued, dtype="float32")[0], take_audio(1), atol=1 / 32_000)


def test_record_continuous_rescues_a_refused_clip_and_stops(
    mic: type[RecordMic], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Back-to-back clips: no question while the microphone runs on, so a refused clip goes straight to rescue."""
    real_write = store.write_wav
    saved: list[Path] = []

    def full_after_the_first(path: Path, audio: np.ndarray, rate: int) -> Path:
        if Path(path).is_relative_to(tmp_path / "data") and saved:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = real_write(path, audio, rate)
        saved.append(written)
        return written

    monkeypatch.setattr(store, "write_wav", full_after_the_first)
    result = run(capsys, "record", "clap", "--data", tmp_path / "data", "--clip-s", "0.2", "--continuous")
    assert result.code == 2
    first, rescued = saved
    assert first.parent == tmp_path / "data" / "clap" and rescued.parent == tmp_path / "rescue" / "clap"
    assert one_sentence_error(result) == (
        f"Could not save the take in {tmp_path / 'data' / 'clap'} (No space left on device), so it was kept as "
        f"{rescued}: free some space, then move it into {tmp_path / 'data' / 'clap'} and record the rest."
    )
    stream = np.concatenate(mic.takes[0])
    assert np.allclose(sf.read(rescued, dtype="float32")[0], stream[1600:3200], atol=1 / 32_000)  # the 2nd clip


def test_save_take_tries_again_as_often_as_asked_and_never_overwrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[Path] = []
    real_write = store.write_wav

    def fails_twice(path: Path, audio: np.ndarray, rate: int) -> Path:
        attempts.append(Path(path))
        if len(attempts) <= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, audio, rate)

    monkeypatch.setattr(store, "write_wav", fails_twice)
    audio = np.linspace(-0.5, 0.5, 800, dtype=np.float32)
    asked: list[Path] = []
    path = store.save_take(tmp_path, "clap", audio, RATE, try_again=lambda err, folder: asked.append(folder) or True)
    assert asked == [tmp_path / "clap"] * 2 and attempts == [path] * 3  # the same new name each time
    assert np.allclose(sf.read(path, dtype="float32")[0], audio, atol=1 / 32_000)


def test_a_take_no_folder_will_take_is_reported_as_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(path: Path, audio: np.ndarray, rate: int) -> Path:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(store, "write_wav", refused)
    monkeypatch.setenv(store.RESCUE_DIR_ENV, str(tmp_path / "rescue"))
    with pytest.raises(store.TakeRescued) as info:
        store.save_take(tmp_path / "data", "clap", np.zeros(10, np.float32), RATE)
    assert info.value.path is None
    assert str(info.value) == (
        f"Could not save the take in {tmp_path / 'data' / 'clap'} (Read-only file system) nor in a rescue folder "
        f"({tmp_path / 'rescue'}), so it is lost: remount that disk writable before recording again."
    )


def test_record_recreates_a_class_folder_removed_while_recording(
    mic: type[RecordMic], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"

    def remove_folder(number: int) -> None:
        if number == 2:
            for clip in (data / "clap").iterdir():
                clip.rename(tmp_path / clip.name)  # the user moves the first clip away, and the folder with it
            (data / "clap").rmdir()

    mic.on_take = remove_folder
    result = record(capsys, data)
    assert result.code == 0, result.text
    (second,) = (data / "clap").iterdir()
    assert np.allclose(sf.read(second, dtype="float32")[0], take_audio(2), atol=1 / 32_000)


# ---------------------------------------------------------------------------------------------- train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "data"
    make_dataset(root, classes=("beep", "scratch"), clips_per_class=3, background_clips=3, seconds=0.5, seed=1)
    return root


def left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


BAD_OPTIONS = [
    (["--pooling", "mean"], "--pooling 'mean' is unknown; choose one of max, attention, linear_softmax."),
    (["--backbone", "resnet"], "--backbone 'resnet' is unknown; choose one of convnet, sfx-cnn9, panns-cnn6, "),
    (["--accelerator", "quantum"], "--accelerator 'quantum' is unknown; choose one of cpu, gpu, mps or auto."),
    (["--precision", "7"], "--precision '7' is unknown; choose one of "),
    (["--strategy", "sideways"], "--strategy 'sideways' is unknown; choose auto, ddp, ddp_spawn, fsdp or another"),
    (["--devices", "two"], "--devices 'two' is not a device choice; give a count such as 2, a list of GPU numbers"),
    (["--devices", "0"], "--devices 0 trains on nothing; give a count of at least 1, a list such as 0,1, or auto."),
    (["--devices", "0,1"], "Lightning cannot train with --accelerator cpu --devices 0,1 --strategy auto on this"),
    (["--head-hidden", "-1"], "Invalid value for '--head-hidden'"),
    (["--epochs", "0"], "Invalid value for '--epochs'"),
    (["--clip-s", "0.05"], "Invalid value for '--clip-s'"),
    (["--num-nodes", "0"], "Invalid value for '--num-nodes'"),
    (["--max-minutes", "-1"], "Invalid value for '--max-minutes'"),
    (["--max-false-alarms-per-hour", "-2"], "--max-false-alarms-per-hour must be more than 0 false alarms an hour"),
    (["--background-label", "../up"], "--background-label: Label '../up' contains '/'; a label is a plain folder"),
    (["--weights", "/nowhere/cnn9.pth"], "--weights /nowhere/cnn9.pth: no such file; give the path of the"),
]


@pytest.mark.parametrize(("args", "words"), BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_train_refuses_a_bad_option_before_the_plan(
    args: list[str], words: str, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "run"
    result = run(capsys, "train", "--data", tiny_data, "--out", out, *args)
    assert result.code == 2
    assert words in result.err, result.err
    assert "Traceback" not in result.text and "plan" not in result.out
    assert not (tmp_path / "runs").exists()


def test_the_installed_command_refuses_a_bad_option_in_one_line(tiny_data: Path, tmp_path: Path) -> None:
    """The same through `python -m snapkit`, as a user runs it: stderr is the one line, nothing else."""
    result = run_cli("train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--precision", "half")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: --precision 'half' is unknown; choose one of ")
    assert not (tmp_path / "run").exists()


def test_train_on_a_gpu_that_is_not_there_is_one_sentence(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for accelerator in ("gpu", "cuda"):
        result = run(capsys, "train", "--data", tiny_data, "--out", tmp_path / "run", "--accelerator", accelerator)
        assert result.code == 2
        assert one_sentence_error(result) == (
            f"--accelerator {accelerator}: this machine has no GPU that PyTorch can use; train on the processor with "
            "--accelerator cpu (the default)."
        )
    with pytest.raises(SnapkitError, match=r"^--accelerator mps: this machine has no Apple GPU \(MPS\)"):
        check_trainer_options(TrainerOptions(accelerator="mps"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ({"batch_size": 0}, "The batch size must be a whole number of at least 1, not 0."),
        ({"learning_rate": 0.0}, "The learning rate must be more than 0, not 0.0."),
        ({"weight_decay": -1.0}, "The weight decay must be 0 or more, not -1.0."),
        ({"epochs": 0}, "--epochs must be a whole number of at least 1, not 0."),
        ({"clip_s": 0.0}, "--clip-s must be more than 0 seconds, not 0.0."),
        ({"head_hidden": -3}, "--head-hidden must be 0 (a linear head) or a number of units, not -3."),
        ({"pooling": "mean"}, "--pooling 'mean' is unknown; choose one of max, attention, linear_softmax."),
    ],
)
def test_train_settings_refuse_what_cannot_train(setting: dict[str, object], words: str) -> None:
    """The library's settings: what the CLI cannot reach (batch size, learning rate) is checked as well."""
    with pytest.raises(SnapkitError) as info:
        TrainSettings(**setting)  # type: ignore[arg-type]
    assert str(info.value) == words


def test_train_refuses_a_read_only_runs_folder_before_the_plan(
    tiny_data: Path, read_only_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "train", "--data", tiny_data, "--out", read_only_dir / "run")
    assert result.code == 2
    assert one_sentence_error(result) == (
        f"Cannot write to the runs folder {read_only_dir} (Read-only file system): remount that disk writable, or "
        "choose another --out."
    )
    assert "plan" not in result.out


def test_train_refuses_a_missing_data_folder_and_a_used_run_folder(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert result.code == 2 and not (tmp_path / "run").exists()
    assert one_sentence_error(result) == (
        f"Data folder {tmp_path / 'nowhere'} does not exist; record clips with `snapkit record LABEL` first."
    )
    (tmp_path / "used" / "tensorboard").mkdir(parents=True)
    result = run(capsys, "train", "--data", tiny_data, "--out", tmp_path / "used")
    assert result.code == 2 and "plan" not in result.out
    assert one_sentence_error(result) == (
        f"The run folder {tmp_path / 'used'} already holds files; choose another --out (or empty it) so this run's "
        "results are not mixed with others."
    )


def test_ctrl_c_while_lightning_trains_stops_with_a_sentence_and_leaves_no_run(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lightning catches Ctrl-C itself and calls sys.exit(1), ignoring SIGINT from then on: snapkit must still say
    "Stopped", exit 130, leave nothing behind, and answer the next Ctrl-C."""
    from snapkit.training.module import SoundEventModule

    def pressed(self: SoundEventModule, batch: object, batch_idx: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SoundEventModule, "training_step", pressed)
    out = tmp_path / "runs" / "run"
    result = run(
        capsys, "train", "--data", tiny_data, "--out", out, "--epochs", "1", "--no-estimate", "--max-minutes", "1"
    )
    assert result.code == 130, result.text
    assert "plan" in result.out  # it had started
    assert (
        f"Stopped: training was interrupted (Ctrl-C) before it finished; no model was saved and nothing was written "
        f"to {out}." in result.out
    )
    assert "Traceback" not in result.text
    assert left_in(tmp_path / "runs") == []  # neither the run nor its hidden work folder
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_after_the_fits_leaves_no_half_written_run(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C once TensorBoard logs exist (between fitting and saving): the work folder goes with it."""
    seen: list[list[str]] = []

    def fitted_then_pressed(inputs: object, config: object, backbone: object, tb_dir: Path, *rest: object) -> None:
        (tb_dir / "final").mkdir(parents=True)
        (tb_dir / "final" / "events.out.tfevents.1").write_bytes(b"logged")
        seen.append(left_in(tb_dir.parent))
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_fit_all", fitted_then_pressed)
    out = tmp_path / "runs" / "run"
    result = run(capsys, "train", "--data", tiny_data, "--out", out, "--no-estimate")
    assert result.code == 130 and "Stopped: training was interrupted (Ctrl-C)" in result.out
    assert seen == [[INCOMPLETE_MARKER, "tensorboard"]]  # it was written into the marked work folder...
    assert left_in(tmp_path / "runs") == []  # ...which is gone


def test_a_disk_too_small_for_the_model_names_the_run_and_leaves_nothing(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """150 KiB takes the logs and the plot but not the 138 KB model: the save fails for real."""
    with mounted_tmpfs(tmp_path / "disk", "size=150k") as disk:
        out = disk / "run"
        result = run(
            capsys, "train", "--data", tiny_data, "--out", out, "--epochs", "1", "--no-estimate", "--max-minutes", "1"
        )
        assert left_in(disk) == []
    assert result.code == 2, result.text
    assert one_sentence_error(result) == (
        f"Could not write the model file {out / 'model.snapkit'} (No space left on device); check that its folder "
        "is writable and has space."
    )


def test_train_on_a_full_disk_is_refused_before_the_plan(
    tiny_data: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(small_disk)
    result = run(capsys, "train", "--data", tiny_data, "--out", small_disk / "run", "--no-estimate")
    assert result.code == 2 and "plan" not in result.out
    assert one_sentence_error(result) == (
        f"Cannot write to the runs folder {small_disk} (No space left on device): free some space, or choose "
        "another --out."
    )
    assert [p.name for p in small_disk.iterdir() if not p.name.startswith("filler")] == []


def test_a_run_folder_that_cannot_be_created_is_one_sentence(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runs folder took the probe, then refuses the work folder (the disk filled in between)."""
    plan = train_module.plan_training(tiny_data, tmp_path / "run", TrainSettings(estimate=False), measure_speed=False)
    real_mkdir = Path.mkdir

    def full(self: Path, *args: object, **kwargs: object) -> None:
        if ".incomplete-" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", full)
    with pytest.raises(SnapkitError) as info:
        train_module.run_training(plan, log=lambda line: None)
    assert str(info.value) == (
        f"Cannot create the run folder {tmp_path / 'run'} (No space left on device): free some space, or choose "
        "another --out."
    )
    assert left_in(tmp_path) == []


def test_a_clip_deleted_after_the_plan_stops_training_before_it_starts(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    make_dataset(data, classes=("beep", "scratch"), clips_per_class=3, background_clips=3, seconds=0.5, seed=1)
    real_plan = train_module.plan_training
    fits: list[object] = []

    def plan_then_delete(*args: object, **kwargs: object) -> train_module.TrainPlan:
        plan = real_plan(*args, **kwargs)  # type: ignore[arg-type]
        (data / "beep" / "beep-001.wav").unlink()  # the user tidies up while the plan is on screen
        return plan

    monkeypatch.setattr(train_module, "plan_training", plan_then_delete)
    monkeypatch.setattr(train_module, "_fit_all", lambda *a: fits.append(a))
    result = run(capsys, "train", "--data", data, "--out", tmp_path / "run", "--no-estimate")
    assert result.code == 2 and fits == []
    assert one_sentence_error(result) == (
        f"1 clip(s) could not be read any more after training was planned (first: {data / 'beep' / 'beep-001.wav'}: "
        "no such file; check the path); nothing was trained, so run `snapkit train` again."
    )
    assert not (tmp_path / "run").exists() and left_in(tmp_path) == ["data"]


def test_a_run_killed_before_it_finished_is_never_taken_for_a_model(tmp_path: Path) -> None:
    """What a SIGKILL can leave: the hidden work folder, with its marker and even a complete model file."""
    from snapkit.models.bundle import load_model
    from snapkit.ui.workbench import Workbench

    work = tmp_path / "runs" / ".run.incomplete-123-abcdef"
    work.mkdir(parents=True)
    (work / INCOMPLETE_MARKER).write_text("not finished\n")
    (work / "model.snapkit").write_bytes(b"a model file")
    with pytest.raises(SnapkitError) as info:
        load_model(work / "model.snapkit")
    assert str(info.value) == (
        f"{work / 'model.snapkit'} belongs to a training run that did not finish ({work / INCOMPLETE_MARKER} is "
        "beside it); use a finished run, or train again."
    )
    renamed = tmp_path / "runs" / "renamed"  # a user renamed the work folder: the marker still says it
    work.rename(renamed)
    assert Workbench(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs").models() == []
    (renamed / INCOMPLETE_MARKER).unlink()
    assert Workbench(data_dir=tmp_path / "data", runs_dir=tmp_path / "runs").models() == ["renamed"]


# ---------------------------------------------------------------------------------------------- detect


def detect_args(wav: Path, *extra: str | Path) -> list[str | Path]:
    return ["detect", "model.snapkit", wav, "--chunk-s", str(BLOCK_S), *extra]


def test_ctrl_c_in_detect_keeps_every_event_and_closes_the_open_one(
    engine: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C 1.7 s into the recording: the first knock is finished, the clap is going on."""
    real_push = BlockDetector.push

    def pressed_at_1_7_s(self: BlockDetector, chunk: np.ndarray) -> list[EventUpdate]:
        if self.samples >= round(1.7 * self.sample_rate_hz):
            raise KeyboardInterrupt
        return real_push(self, chunk)

    monkeypatch.setattr(BlockDetector, "push", pressed_at_1_7_s)
    events = tmp_path / "events.csv"
    result = run(capsys, *detect_args(engine, "--events", events))
    assert result.code == 130, result.text
    found = [(e.label, e.onset_s, e.offset_s) for _, e in read_events(events)]
    assert found == [("knock", 0.501, 1.001), ("clap", 1.601, 1.7)]  # the clap closed where reading stopped
    assert "real-time factor" in result.out  # the summary of what was read
    assert (
        f"Stopped (Ctrl-C) at 1.7 s of {engine} (file 1 of 1); its events until then are in {events}; an event "
        "still going on was closed there." in result.out
    )
    assert not (tmp_path / ".events.csv.lock").exists()


def test_ctrl_c_landing_inside_the_detector_loses_no_event(
    engine: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real SIGINT sent from inside the push that ends the first knock: that push's updates are kept."""
    real_push = BlockDetector.push
    sent: list[bool] = []

    def push_and_press(self: BlockDetector, chunk: np.ndarray) -> list[EventUpdate]:
        updates = real_push(self, chunk)
        if any(u.kind == "end" for u in updates) and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)  # lands here, mid-push, as Ctrl-C can
        return updates

    monkeypatch.setattr(BlockDetector, "push", push_and_press)
    events = tmp_path / "events.jsonl"
    result = run(capsys, *detect_args(engine, "--events", events))
    assert result.code == 130, result.text
    assert [(e.label, e.onset_s, e.offset_s) for _, e in read_events(events)] == [("knock", 0.501, 1.001)]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("command", ["detect", "listen"])
def test_an_event_file_another_snapkit_writes_is_refused(
    command: str,
    engine: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = tmp_path / "events.csv"
    other = EventLog(events)  # another snapkit listen, appending to it
    before = events.read_text()
    try:
        args = detect_args(engine, "--events", events) if command == "detect" else ["listen", "m", "--events", events]
        result = run(capsys, *args)
    finally:
        other.close()
    assert result.code == 2
    assert one_sentence_error(result) == (
        f"{events} is already being written by another snapkit (process {os.getpid()}); stop that one first, or "
        "choose another --events file."
    )
    assert BlockDetector.instances == [] and events.read_text() == before  # not a line of its own


def test_detect_refuses_an_event_file_on_a_read_only_disk_before_any_work(
    engine: Path,  # noqa: F811 (the fixture imported above)
    read_only_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(capsys, *detect_args(engine, "--events", read_only_dir / "events.csv"))
    assert result.code == 2 and BlockDetector.instances == []
    assert one_sentence_error(result) == (
        f"Cannot write the event file {read_only_dir / 'events.csv'} (Read-only file system): remount that disk "
        "writable, or choose another --events file."
    )


def test_detect_save_clips_on_a_read_only_disk_is_refused_before_any_work(
    engine: Path,  # noqa: F811 (the fixture imported above)
    read_only_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(capsys, *detect_args(engine, "--save-clips", read_only_dir))
    assert result.code == 2 and "real-time factor" not in result.out
    assert one_sentence_error(result) == (
        f"Cannot write to the clip folder {read_only_dir} (Read-only file system): remount that disk writable, or "
        "choose another folder."
    )


def test_detect_on_a_disk_that_fills_up_says_so_and_keeps_the_old_event_file(
    engine: Path,  # noqa: F811 (the fixture imported above)
    small_disk: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = small_disk / "events.json"
    events.write_text("[]\n")
    real_push = BlockDetector.push
    filled: list[Path] = []

    def push_while_the_disk_fills(self: BlockDetector, chunk: np.ndarray) -> list[EventUpdate]:
        if not filled:
            filled.append(fill(small_disk))
        return real_push(self, chunk)

    monkeypatch.setattr(BlockDetector, "push", push_while_the_disk_fills)
    result = run(capsys, *detect_args(engine, "--events", events))
    assert result.code == 2
    assert one_sentence_error(result) == (
        f"Could not write {events} (No space left on device); check that its folder is writable and has space."
    )
    assert "knock" in result.out  # the events were shown before the file was refused
    assert events.read_text() == "[]\n"


def test_detect_input_missing_or_removed_while_read_is_one_sentence(
    engine: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "gone.wav"
    result = run(capsys, *detect_args(missing))
    assert result.code == 2 and f"skipped: {missing}: no such file; check the path." in result.out
    from snapkit.audio.sources import FileSource

    real_blocks = FileSource.blocks

    def removed_as_reading_starts(self: FileSource) -> Iterator[np.ndarray]:
        self.path.unlink()
        yield from real_blocks(self)

    monkeypatch.setattr(FileSource, "blocks", removed_as_reading_starts)
    result = run(capsys, *detect_args(engine))
    assert result.code == 2 and "Traceback" not in result.text
    assert (
        f"skipped: {engine} was removed or moved while it was being read (0.0 s in); put it back and run detect on "
        "it again." in result.out
    )


# ---------------------------------------------------------------------------------------------- data, import, calibrate


def test_data_on_a_missing_folder_and_a_class_removed_mid_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetError, match=r"^Data folder .*nowhere does not exist; record clips"):
        scan_dataset(tmp_path / "nowhere")
    data = tmp_path / "data"
    make_dataset(data, classes=("beep", "scratch"), clips_per_class=1, background_clips=1, seconds=0.5, seed=1)
    import snapkit.dataset.scan as scan

    real_read = scan._read_clip

    def read_and_remove_scratch(path: Path, label: str) -> object:
        if (data / "scratch").exists():
            for clip in (data / "scratch").iterdir():
                clip.unlink()
            (data / "scratch").rmdir()
        return real_read(path, label)

    monkeypatch.setattr(scan, "_read_clip", read_and_remove_scratch)
    assert scan_dataset(data).labels == ["background", "beep"]


def test_import_into_a_read_only_or_full_data_folder(
    small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "long.wav"
    rng = np.random.default_rng(3)
    sf.write(source, (rng.standard_normal(8 * RATE) * 0.3).astype(np.float32), RATE)
    data = small_disk / "data"
    common = ("import", source, "--label", "background", "--data", data, "--clip-s", "1", "--hop-s", "1")
    filler = fill(small_disk)
    result = run(capsys, *common)
    assert result.code == 2
    assert one_sentence_error(result) == (
        f"Cannot write to the data folder {data / 'background'} (No space left on device): free some space, or "
        "choose another --data folder."
    )
    filler.unlink()
    (small_disk / "almost").write_bytes(b"\0" * (256 - 72) * 1024)  # room for the 64 KiB probe, then 4 clips of 8
    result = run(capsys, *common)
    assert result.code == 2
    message = one_sentence_error(result)
    assert message.startswith(f"Could not save a clip of {source} into {data / 'background'} (No space left on ")
    assert message.endswith("clip(s) were saved before it, and the files you gave are unchanged.")
    saved = len(list((data / "background").iterdir()))
    assert f"; {saved} clip(s) were saved before it" in message and 0 < saved < 8
    assert source.exists()


def test_calibrate_refuses_a_missing_dataset_and_a_read_only_model_folder_before_scoring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from snapkit.models.bundle import ModelBundle
    from snapkit.models.calibration import default_calibration
    from snapkit.models.classifier import SoundClassifier
    from snapkit.models.config import ModelConfig

    config = ModelConfig(backbone="convnet", labels=("beep",), clip_s=0.5)
    bundle = ModelBundle(model=SoundClassifier(config), config=config, calibration=default_calibration(("beep",)))
    result = run(capsys, "calibrate", bundle.save(tmp_path / "model.snapkit"), "--data", tmp_path / "nowhere")
    assert result.code == 2
    assert one_sentence_error(result) == (
        f"The dataset folder {tmp_path / 'nowhere'} does not exist; give the folder the model was trained on with "
        "--data DIR."
    )
    with mounted_tmpfs(tmp_path / "run", "size=2m") as run_dir:
        bundle.save(run_dir / "model.snapkit")
        remount_read_only(run_dir)
        result = run(capsys, "calibrate", run_dir / "model.snapkit", "--data", tmp_path / "data")
    assert result.code == 2
    assert one_sentence_error(result) == (
        f"Cannot write to the model's folder {run_dir} (Read-only file system): remount that disk writable, or "
        "write the calibrated model elsewhere with --out."
    )


def test_an_os_error_no_command_turned_into_a_sentence_is_still_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import snapkit.cli.data as data_cli

    def unreadable(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "data" / "beep"))

    monkeypatch.setattr(data_cli, "scan_dataset", unreadable)
    result = run(capsys, "data", "--data", tmp_path / "data")
    assert result.code == 2
    assert one_sentence_error(result) == (
        f"{tmp_path / 'data' / 'beep'}: Permission denied; check its permissions, then try again."
    )
