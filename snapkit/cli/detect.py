"""``snapkit detect``: run the streaming detector over audio files and report events with onset and offset times.

Files go through the very engine ``snapkit listen`` uses, block by block (``FileSource``), so a day-long recording
never sits in memory and what a file shows holds live. Heavy imports (torch, matplotlib) happen inside the command.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import numpy as np
import pandas as pd
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from snapkit.cli.options import HopOption, MinLevelOption, SensitivityOption, ThresholdOption, detector_settings
from snapkit.cli.ui import DetectorMode, ModeOption, console, frame_table
from snapkit.detection.events import Event
from snapkit.detection.outputs import FORMATS_TEXT
from snapkit.errors import SnapkitError

if TYPE_CHECKING:
    from snapkit.detection.detector import Detector
    from snapkit.detection.plot import AudioOverview
    from snapkit.detection.sinks import ClipSaver

# Files shorter than this finish before a progress bar would be worth drawing.
PROGRESS_MIN_S = 30.0
PLOT_SUFFIX = ".png"

EVENTS_HELP = (
    f"Also write all events to this file, in the format its extension names: {FORMATS_TEXT}, as for `snapkit listen "
    "--events`; .tsv is the DCASE layout (filename, onset, offset, event_label). Times are seconds. Files are named as "
    "given here. An existing file is replaced (event lists are derived data; recordings are never overwritten)."
)
SAVE_CLIPS_HELP = (
    "Save each event's audio (with --pre-roll-s before and --post-roll-s after) as a WAV in this folder, as `snapkit "
    "listen --save-clips` does, named <file stem>-<onset s>s-<label>.wav; an existing clip is never replaced (a new "
    "name gets -2, -3, ...). Review them and move mistakes into the dataset with `snapkit relabel`."
)
PLOT_HELP = (
    "Draw spectrogram, class probabilities and events as a PNG. A folder (existing, or a name without extension) gets "
    "FOLDER/<file stem>.png per file; NAME.png is used as is for one file and becomes NAME-<file stem>.png for "
    "several. Existing plots are replaced."
)


@dataclass
class FileResult:
    """What detecting one file gave: its finished events (by onset), audio length and processing time in seconds."""

    path: Path
    events: list[Event] = field(default_factory=list)
    clips: list[Path] = field(default_factory=list)  # saved with --save-clips
    audio_s: float = 0.0
    processing_s: float = 0.0
    stopped: bool = False  # Ctrl-C came mid-file: events up to ``audio_s``, the open one closed there


def plot_targets(plot: Path, files: list[Path]) -> list[Path]:
    """The PNG path of each of ``files`` for ``--plot PLOT`` (rules in ``PLOT_HELP``).

    Two files with the same stem (``a/x.wav``, ``b/x.wav``) get ``x.png`` and ``x-2.png``, so no plot replaces
    another of the same run.
    """
    is_folder = plot.is_dir() or plot.suffix == ""
    if not is_folder and plot.suffix.lower() != PLOT_SUFFIX:
        raise SnapkitError(f"--plot {plot}: plots are PNG images; give a .png file name or a folder.")
    if not is_folder and len(files) == 1:
        return [plot]
    targets: list[Path] = []
    taken: set[str] = set()
    for path in files:
        stem = path.stem if is_folder else f"{plot.stem}-{path.stem}"
        name, count = stem, 1
        while name.lower() in taken:
            count += 1
            name = f"{stem}-{count}"
        taken.add(name.lower())
        targets.append((plot if is_folder else plot.parent) / f"{name}{PLOT_SUFFIX}")
    return targets


def detect(
    model: Annotated[Path, typer.Argument(help="A trained model bundle (runs/NAME/model.snapkit).")],
    files: Annotated[list[Path], typer.Argument(help="Audio files to scan (any length; WAV, FLAC, OGG, MP3).")],
    events_path: Annotated[Path | None, typer.Option("--events", help=EVENTS_HELP)] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help=PLOT_HELP)] = None,
    hop: HopOption = None,
    min_level_dbfs: MinLevelOption = None,
    mode: ModeOption = DetectorMode.auto,
    sensitivity: SensitivityOption = "normal",
    threshold: ThresholdOption = None,
    chunk_s: Annotated[
        float,
        typer.Option(
            "--chunk-s", min=0.01, help="Seconds of audio read and pushed at a time; events do not depend on it."
        ),
    ] = 1.0,
    save_clips: Annotated[Path | None, typer.Option("--save-clips", help=SAVE_CLIPS_HELP)] = None,
    pre_roll_s: Annotated[
        float, typer.Option("--pre-roll-s", min=0.0, help="Seconds of audio kept before each saved event.")
    ] = 1.0,
    post_roll_s: Annotated[
        float, typer.Option("--post-roll-s", min=0.0, help="Seconds of audio kept after each saved event.")
    ] = 1.0,
) -> None:
    """Find the events of MODEL's classes in FILES, with onset and offset times in seconds."""
    from snapkit.detection.outputs import event_format, lock_event_file

    # Refuse a bad output name, or a file another snapkit is writing, now, not after an hour of audio.
    lock = None
    if events_path is not None:
        event_format(events_path)
        lock = lock_event_file(events_path)
    try:
        _detect(
            model, files, events_path, plot, hop, min_level_dbfs, mode, sensitivity, threshold, chunk_s,
            ClipOptions(save_clips, pre_roll_s, post_roll_s) if save_clips is not None else None,
        )  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


def _detect(
    model: Path,
    files: list[Path],
    events_path: Path | None,
    plot: Path | None,
    hop: float | None,
    min_level_dbfs: float | None,
    mode: DetectorMode,
    sensitivity: str,
    threshold: list[str] | None,
    chunk_s: float,
    clips: ClipOptions | None,
) -> None:
    """The command once its event file is claimed: every file through one detector, then the summary and files.

    Ctrl-C ends the file being read there (its open event closed at that moment) and skips the rest; the summary
    and the event file then hold everything found until the interrupt, and the exit code is 130."""
    from snapkit.detection.detector import Detector
    from snapkit.detection.outputs import write_events
    from snapkit.models.bundle import load_model

    targets = plot_targets(plot, files) if plot is not None else []
    bundle = load_model(model)
    rate_hz = bundle.model.sample_rate_hz
    settings, thresholds_why = detector_settings(bundle, mode.value, hop, sensitivity, threshold, min_level_dbfs)
    detector = Detector(bundle, settings, sample_rate_hz=rate_hz, keep_timeline=plot is not None)
    if clips is not None:
        clips.saver(files[0], rate_hz)  # refuse a bad folder now, not after an hour of audio
    on_off = ", ".join(f"{label} {on:.2f}/{off:.2f}" for label, (on, off) in detector.thresholds.items())
    console.print(
        f"model {model} ({', '.join(detector.labels)}) at {rate_hz} Hz; {detector.describe()}; "
        f"reading {chunk_s} s at a time"
        + (
            f"; clips into {clips.folder}/ ({clips.pre_roll_s:g} s before, {clips.post_roll_s:g} s after)"
            if clips
            else ""
        )
        + f"\nthresholds on/off: {on_off} ({thresholds_why})",
        highlight=False,
        soft_wrap=True,
    )

    results: list[FileResult] = []
    failed: list[str] = []
    stopped = False
    try:
        for index, path in enumerate(files):
            detector.reset()  # one detector for all files: nothing of one file may leak into the next
            try:
                result, overview = _detect_file(
                    detector, path, rate_hz, chunk_s, keep_audio=plot is not None, clips=clips
                )
            except SnapkitError as err:
                failed.append(str(err))
                console.print(f"[red]skipped:[/] {err}", highlight=False, soft_wrap=True)
                continue
            results.append(result)
            _print_file(result)
            if result.stopped:
                stopped = True
                break
            if plot is not None:
                # A plot that cannot be written costs that picture only, not the events of this or later files.
                try:
                    written = _plot_file(targets[index], detector, overview, result)
                except SnapkitError as err:
                    console.print(f"[yellow]no plot:[/] {err}", highlight=False, soft_wrap=True)
                else:
                    console.print(f"plot: {written}", highlight=False)
    except KeyboardInterrupt:  # between files (printing, plotting): every file read so far is whole
        stopped = True

    if results:
        _print_summary(results, detector.labels)
        if clips is not None:
            console.print(f"clips: {sum(len(r.clips) for r in results)} saved in {clips.folder}/", highlight=False)
        if events_path is not None:
            write_events(events_path, [(str(r.path), e) for r in results for e in r.events])
            console.print(f"events: {events_path}", highlight=False)
    if stopped:
        console.print(_stopped_sentence(results, len(files), events_path), highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    if failed and not results:
        raise typer.Exit(2)


def _stopped_sentence(results: list[FileResult], files: int, events_path: Path | None) -> str:
    """What Ctrl-C left: where reading stopped, and that what was found until then is kept."""
    kept = f"; its events until then are in {events_path}" if events_path is not None and results else ""
    last = results[-1] if results else None
    if last is not None and last.stopped:
        where = f"at {last.audio_s:.1f} s of {last.path} (file {len(results)} of {files})"
    else:
        where = f"after {len(results)} of {files} file(s)"
    return f"Stopped (Ctrl-C) {where}{kept}; an event still going on was closed there."


@dataclass(frozen=True)
class ClipOptions:
    """``--save-clips`` and its rolls: where each event's audio goes, and how much around it (seconds)."""

    folder: Path
    pre_roll_s: float
    post_roll_s: float

    def saver(self, source: Path, rate_hz: int) -> ClipSaver:
        """The listen command's clip saver, naming clips after ``source`` and the event's time in it."""
        from snapkit.detection.sinks import ClipSaver, file_time_name

        return ClipSaver(
            self.folder, self.pre_roll_s, self.post_roll_s, sample_rate_hz=rate_hz, clip_name=file_time_name(source)
        )


def _detect_file(
    detector: Detector,
    path: Path,
    rate_hz: int,
    chunk_s: float,
    *,
    keep_audio: bool,
    clips: ClipOptions | None = None,
) -> tuple[FileResult, AudioOverview | None]:
    """Stream ``path`` through ``detector``; returns its :class:`FileResult` and, if ``keep_audio``, the
    ``AudioOverview`` the plot needs (else None). With ``clips``, each event's audio is saved as ``listen`` saves it
    (the same :class:`ClipSaver`, fed the same blocks). Raises ``SnapkitError`` for a file that cannot be read."""
    import soundfile as sf

    from snapkit.audio.sources import FileSource
    from snapkit.detection.plot import AudioOverview

    source = FileSource(path, rate_hz, block_s=chunk_s)
    overview = AudioOverview(rate_hz, source.duration_s) if keep_audio else None
    saver = clips.saver(path, rate_hz) if clips is not None else None
    result = FileResult(path)
    samples = 0
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s of audio"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=source.duration_s < PROGRESS_MIN_S,
    ) as progress:
        task = progress.add_task(path.name, total=source.duration_s)
        blocks = source.blocks()
        try:
            with _ctrl_c_between_blocks() as pressed:
                while not pressed():
                    # Only reading is guarded: a decoding error names the file, a detector error stays a bug to see.
                    try:
                        block = next(blocks, None)
                    except (sf.SoundFileError, RuntimeError, OSError) as err:
                        raise _unreadable_past(path, samples / rate_hz, err) from None
                    if block is None:
                        break
                    updates = detector.push(block)
                    samples += len(block)  # counted once pushed: a Ctrl-C inside push stops before this block
                    result.events += [u.event for u in updates if u.kind == "end"]
                    if saver is not None:
                        saver.take(block, updates)
                    if overview is not None:
                        overview.push(block)
                    progress.update(task, completed=samples / rate_hz)
                if pressed():
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            # Ctrl-C: this file ends here, as if its audio stopped, so what was found so far is kept and the event
            # going on is closed at this moment (flush below); the caller reads no further files.
            result.stopped = True
        updates = detector.flush()
        result.events += [u.event for u in updates if u.kind == "end"]
        if saver is not None:
            saver.take(np.zeros(0, np.float32), updates)
            saver.finish()
            result.clips = list(saver.saved)
    result.processing_s = time.perf_counter() - started
    result.audio_s = samples / rate_hz
    result.events.sort(key=lambda e: (e.onset_s, e.label))
    return result, overview


@contextlib.contextmanager
def _ctrl_c_between_blocks() -> Iterator[Callable[[], bool]]:
    """While a file is read, a first Ctrl-C only raises a flag (yielded: has Ctrl-C been pressed?) that the loop
    checks between blocks, so it never lands inside ``detector.push``, where the updates of that push (an event's
    end) would be lost. A second Ctrl-C interrupts at once. Only the main thread can catch signals; elsewhere the
    flag is never raised and Ctrl-C behaves as usual."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed.is_set
        return

    def on_ctrl_c(signum: int, frame: FrameType | None) -> None:
        if pressed.is_set():
            raise KeyboardInterrupt
        pressed.set()

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield pressed.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def _unreadable_past(path: Path, position_s: float, err: Exception) -> SnapkitError:
    """The sentence for a file that stopped being readable ``position_s`` seconds in."""
    if not path.exists():
        return SnapkitError(
            f"{path} was removed or moved while it was being read ({position_s:.1f} s in); put it back and run "
            "detect on it again."
        )
    return SnapkitError(f"{path} could not be decoded past {position_s:.1f} s ({err}); it may be damaged.")


def _print_file(result: FileResult) -> None:
    if not result.events:
        console.print(f"{result.path}: no events in {result.audio_s:.1f} s of audio.", highlight=False)
        return
    rows = [
        {
            "file": result.path.name,
            "label": e.label,
            "onset s": e.onset_s,
            "offset s": e.offset_s,
            "duration s": e.duration_s,
            "peak score": e.peak_score,
        }
        for e in result.events
    ]
    formats = {"onset s": ".2f", "offset s": ".2f", "duration s": ".2f", "peak score": ".2f"}
    # The full path heads the table: a narrow terminal would cut it short in a column.
    console.print(frame_table(pd.DataFrame(rows), title=str(result.path), formats=formats))


def _plot_file(
    target: Path,
    detector: Detector,
    overview: AudioOverview | None,
    result: FileResult,
) -> Path:
    from snapkit.detection.plot import plot_detection

    assert overview is not None  # kept whenever --plot is given
    times_s, probs = detector.timeline()
    return plot_detection(
        target,
        overview,
        overview.sample_rate_hz,
        times_s,
        probs,
        detector.labels,
        result.events,
        detector.thresholds,
        title=str(result.path),
    )


def _print_summary(results: list[FileResult], labels: tuple[str, ...]) -> None:
    """Events per class over all files, then audio length, processing time and real-time factor."""
    counts = Counter(e.label for r in results for e in r.events)
    audio_s = sum(r.audio_s for r in results)
    processing_s = sum(r.processing_s for r in results)
    per_hour = 3600.0 / audio_s if audio_s else float("nan")
    rows = [
        {"class": label, "events": counts[label], "per hour": counts[label] * per_hour}
        for label in [*labels, *sorted(set(counts) - set(labels))]
    ]
    console.print(frame_table(pd.DataFrame(rows), title="Events per class", formats={"per hour": ".1f"}))
    # Real-time factor: processing time over audio time; below 1 is faster than the audio plays.
    factor = processing_s / audio_s if audio_s else float("nan")
    speed = f" ({1 / factor:.1f}x faster than real time)" if 0 < factor < 1 else ""
    console.print(
        f"{len(results)} file(s), {audio_s:.1f} s of audio processed in {processing_s:.1f} s: "
        f"real-time factor {factor:.3f}{speed}.",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command(help="Find events of a model's classes in audio files, with onset/offset times; CSV/TSV/JSON(L), PNG.")(
        detect
    )
