"""``snapkit devices`` and ``snapkit record``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from snapkit.audio.devices import list_input_devices
from snapkit.audio.levels import peak_dbfs, rms_dbfs
from snapkit.audio.sources import MicrophoneSource
from snapkit.cli.options import DEFAULT_DATA_DIR, DataOption, DeviceOption, SampleRateOption
from snapkit.cli.ui import console, level_bar
from snapkit.dataset.collector import ClipCollector
from snapkit.dataset.importer import is_silent
from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL, validate_label
from snapkit.dataset.scan import DEFAULT_SILENCE_THRESHOLD_DBFS
from snapkit.dataset.store import TryAgain, drops_silent_clips, save_take
from snapkit.errors import SnapkitError
from snapkit.files import check_writable, disk_advice

# After this many silent clips in a row the microphone is probably muted: stop instead of looping forever.
MAX_SILENT_RETRIES = 3
# Bytes of a 16-bit mono WAV file beyond its samples (the header snapkit's writer puts before them).
WAV_HEADER_BYTES = 44

BackgroundOption = Annotated[str, typer.Option("--background-label", help="The class that means 'nothing to report'.")]


def devices() -> None:
    """List microphones and other input devices (number, name, channels, default rate)."""
    table = Table(title="Input devices", title_justify="left")
    for column, justify in [
        ("#", "right"),
        ("name", "left"),
        ("channels", "right"),
        ("default rate (Hz)", "right"),
        ("host API", "left"),
        ("default", "center"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    found = list_input_devices()
    for dev in found:
        table.add_row(
            str(dev.index),
            dev.name,
            str(dev.channels),
            str(dev.default_sample_rate_hz),
            dev.host_api,
            "*" if dev.is_default else "",
        )
    console.print(table)
    if not found:
        console.print("No input devices: plug in a microphone or check your sound settings.")


def record(
    label: Annotated[str, typer.Argument(help="Name of the sound, e.g. 'doorbell'; clips go to DATA/LABEL/.")],
    data: DataOption = DEFAULT_DATA_DIR,
    count: Annotated[int, typer.Option("--clips", "-n", "--count", min=1, help="Number of clips to record.")] = 10,
    seconds: Annotated[
        float, typer.Option("--clip-s", "--seconds", min=0.1, help="Length of each clip, in seconds.")
    ] = 2.0,
    device: DeviceOption = None,
    samplerate: SampleRateOption = None,
    countdown: Annotated[
        float,
        typer.Option("--countdown-s", "--countdown", min=0.0, help="Seconds of countdown before each clip (0: none)."),
    ] = 3.0,
    silence_threshold: Annotated[
        float,
        typer.Option(
            "--silence-dbfs",
            "--silence-threshold",
            help="A clip whose peak is below this level in dBFS counts as silent.",
        ),
    ] = DEFAULT_SILENCE_THRESHOLD_DBFS,
    keep_silent: Annotated[
        bool, typer.Option("--keep-silent", help="Keep silent clips instead of recording them again.")
    ] = False,
    continuous: Annotated[
        bool, typer.Option("--continuous", help="Record clips back to back, without countdown, until Ctrl-C.")
    ] = False,
    background_label: BackgroundOption = DEFAULT_BACKGROUND_LABEL,
) -> None:
    """Record labelled clips from the microphone into DATA/LABEL/.

    Each clip is written only once complete, under a new name; Ctrl-C keeps every finished clip and drops the
    unfinished one. Silent clips are recorded again (background clips may be quiet, so they are kept).

    DATA/LABEL/ is tried (a clip's worth of bytes really written and removed) before anything is recorded. A take
    the disk then refuses stays in memory: at a terminal the user is asked to free space and try again; otherwise,
    or when they decline, it is written to a rescue folder the error names (``snapkit.dataset.store``).
    """
    validate_label(label)
    drop_silent = drops_silent_clips(label, background_label, keep_silent)
    saved: list[Path] = []
    with MicrophoneSource(device=device, sample_rate_hz=samplerate) as mic:
        rate = mic.sample_rate_hz
        # Before the user performs anything: a sound that cannot be kept should never be asked for.
        check_writable(
            data / label,
            what="the data folder",
            instead="choose another --data folder",
            size_bytes=round(seconds * rate) * 2 + WAV_HEADER_BYTES,
        )
        console.print(
            f"Recording {'clips until Ctrl-C' if continuous else f'{count} clip(s)'} of {seconds:g} s of "
            f"[bold]{label}[/] into {data / label}/ from device {mic.device.index} ({mic.device.name}) at {rate} Hz; "
            f"silent below {silence_threshold:g} dBFS{'' if drop_silent else ' (kept)'}. "
            "Ctrl-C stops, finished clips are kept."
        )
        _suggest_background(data, label, background_label)
        collector = ClipCollector(round(seconds * rate))
        try:
            if continuous:
                _record_continuous(mic, collector, data, label, drop_silent, silence_threshold, saved)
            else:
                _record_counted(mic, collector, data, label, count, countdown, drop_silent, silence_threshold, saved)
        except KeyboardInterrupt:
            collector.reset()
            console.print(
                f"\nStopped. Kept {len(saved)} finished clip(s) in {data / label}/; the unfinished one was discarded."
            )
            if mic.overflows or mic.dropped:
                console.print(f"[yellow]Input overflows: {mic.overflows}, dropped blocks: {mic.dropped}.[/]")
            if not continuous:
                raise typer.Exit(130) from None
            return
    console.print(f"Done: {len(saved)} clip(s) in {data / label}/.")
    if mic.overflows or mic.dropped:
        console.print(
            f"[yellow]Input overflows: {mic.overflows}, dropped blocks: {mic.dropped}; some clips may have gaps.[/]"
        )


def _record_counted(
    mic: MicrophoneSource,
    collector: ClipCollector,
    data: Path,
    label: str,
    count: int,
    countdown_s: float,
    drop_silent: bool,
    silence_threshold_dbfs: float,
    saved: list[Path],
) -> None:
    silent_in_a_row = 0
    while len(saved) < count:
        number = len(saved) + 1
        _countdown(countdown_s, f"Clip {number}/{count}")
        mic.discard_pending()
        collector.reset()
        clip = _capture(mic, collector, f"clip {number}/{count}")
        peak, rms = peak_dbfs(clip), rms_dbfs(clip)
        if drop_silent and is_silent(clip, silence_threshold_dbfs):
            silent_in_a_row += 1
            console.print(
                f"  clip {number}: silent (peak {peak:.1f} dBFS < {silence_threshold_dbfs:g}); recording it again."
            )
            if silent_in_a_row >= MAX_SILENT_RETRIES:
                raise SnapkitError(
                    f"{MAX_SILENT_RETRIES} clips in a row were silent: check the microphone is not muted, or lower "
                    "--silence-dbfs, or pass --keep-silent."
                )
            continue
        silent_in_a_row = 0
        path = save_take(data, label, clip, mic.sample_rate_hz, try_again=_asker())
        saved.append(path)
        console.print(f"  saved {path}  peak {peak:.1f} dBFS, RMS {rms:.1f} dBFS")


def _record_continuous(
    mic: MicrophoneSource,
    collector: ClipCollector,
    data: Path,
    label: str,
    drop_silent: bool,
    silence_threshold_dbfs: float,
    saved: list[Path],
) -> None:
    level = float("nan")
    with Live(console=console, refresh_per_second=12, transient=True) as live:
        for block in mic.blocks():
            level = peak_dbfs(block)
            for clip in collector.push(block):
                peak, rms = peak_dbfs(clip), rms_dbfs(clip)
                if drop_silent and is_silent(clip, silence_threshold_dbfs):
                    live.console.print(f"  skipped a silent clip (peak {peak:.1f} dBFS)")
                    continue
                # No question mid-stream: the microphone runs on, so a refused take goes to the rescue folder.
                path = save_take(data, label, clip, mic.sample_rate_hz)
                saved.append(path)
                live.console.print(f"  saved {path}  peak {peak:.1f} dBFS, RMS {rms:.1f} dBFS")
            live.update(_meter(f"clip {len(saved) + 1}", collector.fraction, level, mic))


def _can_ask() -> bool:
    """Whether someone at a terminal can answer a question (not a pipe, a script or a service)."""
    return sys.stdin.isatty()


def _asker() -> TryAgain | None:
    return _ask_try_again if _can_ask() else None


def _ask_try_again(error: OSError, folder: Path) -> bool:
    """At a terminal: the take could not be written; try again once the user has made room (True), or not."""
    console.print(
        f"[red]Could not save the take in {folder} ({error.strerror or error}).[/] It is kept in memory: "
        f"{disk_advice(error)}, then answer y to try again (n keeps it in a rescue folder instead).",
        highlight=False,
        soft_wrap=True,
    )
    try:
        return typer.confirm("Try again?", default=True)
    except typer.Abort:  # Ctrl-C or end of input at the question: rescue the take, do not drop it
        return False


def _capture(mic: MicrophoneSource, collector: ClipCollector, what: str) -> np.ndarray:
    """Pull blocks until ``collector`` completes a clip, showing a live meter; returns ``[samples]``."""
    with Live(console=console, refresh_per_second=12, transient=True) as live:
        for block in mic.blocks():
            clips = collector.push(block)
            live.update(_meter(what, collector.fraction, peak_dbfs(block), mic))
            if clips:
                # Samples past the clip's end belong to no clip in counted mode: the next one follows a countdown.
                collector.reset()
                return clips[0]
    raise SnapkitError("The input stream ended before the clip was complete; check the device.")


def _meter(what: str, fraction: float, level_dbfs: float, mic: MicrophoneSource) -> Text:
    text = Text("● REC ", style="bold red")
    text.append(f"{what} ")
    done = round(fraction * 20)
    text.append("▮" * done + "▯" * (20 - done) + "  ")
    text.append_text(level_bar(level_dbfs))
    if mic.overflows or mic.dropped:
        text.append(f"  overflows {mic.overflows} dropped {mic.dropped}", style="yellow")
    return text


def _countdown(seconds: float, what: str) -> None:
    if seconds <= 0:
        return
    with Live(console=console, refresh_per_second=10, transient=True) as live:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            live.update(
                Text(
                    f"{what}: recording in {left:.0f}…" if left >= 1 else f"{what}: recording in {left:.1f}…",
                    style="bold",
                )
            )
            time.sleep(min(0.1, left))


def _suggest_background(data: Path, label: str, background_label: str) -> None:
    if label == background_label:
        return
    folder = data / background_label
    if not folder.is_dir() or not any(p.suffix.lower() == ".wav" for p in folder.iterdir()):
        console.print(
            f"[cyan]Tip:[/] {data} has no {background_label!r} class yet. Record the room's ordinary sound too "
            f"(`snapkit record {background_label}`) so snapkit learns what to ignore."
        )


def register(app: typer.Typer) -> None:
    app.command(help="List input devices (number, name, channels, default rate in Hz).")(devices)
    app.command(help="Record labelled clips from the microphone into DATA/LABEL/.")(record)
