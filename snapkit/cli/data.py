"""``snapkit data`` (what is in a dataset, and what is wrong with it) and ``snapkit import``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from snapkit.audio.levels import CLICK_EXTRA_DB, DEFAULT_ACTIVITY_DB, MIN_ACTIVE_S
from snapkit.cli.options import DEFAULT_DATA_DIR, DataOption, DataReadOption, LegacyDataArgument, data_folder
from snapkit.cli.ui import console, frame_table
from snapkit.dataset.importer import import_files
from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL, validate_label
from snapkit.dataset.scan import DEFAULT_SILENCE_THRESHOLD_DBFS, Dataset, find_problems, scan_dataset
from snapkit.files import check_writable

PROBE_BYTES = 1 << 16


def data(
    data_dir: DataReadOption = None,
    silence_threshold: Annotated[
        float,
        typer.Option(
            "--silence-dbfs", "--silence-threshold", help="Clips whose peak is below this level in dBFS are silent."
        ),
    ] = DEFAULT_SILENCE_THRESHOLD_DBFS,
    background_label: Annotated[
        str, typer.Option("--background-label", help="The class that means 'nothing to report'.")
    ] = DEFAULT_BACKGROUND_LABEL,
    data_arg: LegacyDataArgument = None,
) -> None:
    """Summarise a dataset (clips, seconds and sample rates per class) and list its problems."""
    dataset = scan_dataset(data_folder(data_dir, data_arg), background_label=background_label)
    print_dataset(dataset, silence_threshold)


def print_dataset(dataset: Dataset, silence_threshold_dbfs: float = DEFAULT_SILENCE_THRESHOLD_DBFS) -> None:
    """The summary table and problem list of ``dataset``, as ``snapkit data`` shows them."""
    summary = dataset.summary()
    if summary.empty:
        console.print(f"{dataset.root} holds no classes yet; record some with `snapkit record LABEL`.")
        return
    shown = summary.assign(
        label=[
            f"{label} (negative)" if is_bg else label
            for label, is_bg in zip(summary["label"], summary["is_background"], strict=True)
        ]
    ).drop(columns=["is_background"])
    shown = shown.rename(
        columns={
            "label": "class",
            "seconds": "total s",
            "sample_rates_hz": "rates (Hz)",
            "median_rms_dbfs": "median RMS dBFS",
        }
    )
    console.print(
        frame_table(shown, title=f"Dataset {dataset.root}", formats={"total s": ".1f", "median RMS dBFS": ".1f"})
    )
    problems = find_problems(dataset, silence_threshold_dbfs)
    if not problems:
        console.print("[green]No problems found.[/]")
        return
    console.print(f"[bold]{len(problems)} problem(s):[/]")
    for problem in problems:
        style = "red" if problem.severity == "error" else "yellow"
        console.print(f"  [{style}]{problem.severity}[/]: {problem.message}", highlight=False, soft_wrap=True)


def import_(
    files: Annotated[list[Path], typer.Argument(help="Audio files to cut into clips (WAV, FLAC, OGG, MP3).")],
    label: Annotated[str, typer.Option("--label", "-l", help="Class the clips belong to.")],
    data_dir: DataOption = DEFAULT_DATA_DIR,
    seconds: Annotated[
        float, typer.Option("--clip-s", "--seconds", min=0.1, help="Length of each clip, in seconds.")
    ] = 2.0,
    hop: Annotated[
        float, typer.Option("--hop-s", "--hop", min=0.01, help="Seconds from one clip's start to the next.")
    ] = 1.0,
    silence_threshold: Annotated[
        float,
        typer.Option(
            "--silence-dbfs", "--silence-threshold", help="Skip clips whose peak is below this level in dBFS."
        ),
    ] = DEFAULT_SILENCE_THRESHOLD_DBFS,
    activity_db: Annotated[
        float,
        typer.Option(
            "--activity-db",
            min=0.0,
            help=f"dB above the file's own noise floor that {MIN_ACTIVE_S * 1000:.0f} ms of a clip (or a click, "
            f"{CLICK_EXTRA_DB:g} dB more) must reach to count as that sound; room tone only is skipped (0 keeps it).",
        ),
    ] = DEFAULT_ACTIVITY_DB,
    keep_silent: Annotated[
        bool, typer.Option("--keep-silent", help="Keep every stretch, silent or room tone only.")
    ] = False,
    background_label: Annotated[
        str, typer.Option("--background-label", help="The class that means 'nothing to report'; kept whole.")
    ] = DEFAULT_BACKGROUND_LABEL,
) -> None:
    """Cut longer recordings into clips of a class, skipping silent and room-tone-only stretches."""
    validate_label(label)
    # 64 KiB really written: about a 2 s clip at 16 kHz, so a full disk is refused before any file is cut.
    check_writable(
        data_dir / label, what="the data folder", instead="choose another --data folder", size_bytes=PROBE_BYTES
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("Importing", total=len(files))

        def advance(path: Path, written: int) -> None:
            progress.advance(task)

        report = import_files(
            files,
            data_dir,
            label,
            seconds=seconds,
            hop_s=hop,
            silence_threshold_dbfs=silence_threshold,
            activity_db=activity_db,
            keep_silent=keep_silent,
            background_label=background_label,
            on_file=advance,
        )
    skipped = (
        "; every stretch kept (" + ("background is room tone" if label == background_label else "--keep-silent") + ")"
    )
    if report.silence_checked:
        skipped = f"; skipped {report.silent_skipped} silent stretch(es) (peak below {silence_threshold:g} dBFS)"
    if report.room_tone_checked:
        skipped += (
            f" and {report.room_tone_skipped} of room tone only (nothing {activity_db:g} dB above the file's own "
            "noise floor)"
        )
    console.print(
        f"Imported {len(report.written)} clip(s) of {seconds:g} s into {data_dir / label}/ "
        f"from {len(files) - len(report.failed)} file(s){skipped}.",
        highlight=False,
    )
    for path in report.steady_files:
        console.print(
            f"  [yellow]note[/]: {path} has no stretch {activity_db:g} dB above its own noise floor (one steady "
            f"sound, or room tone throughout), so all of it was kept; if it is room tone, import it with "
            f"--label {background_label}.",
            highlight=False,
            soft_wrap=True,
        )
    for reason in report.failed.values():
        console.print(f"  [red]skipped[/] {reason}", highlight=False, soft_wrap=True)
    if report.failed and not report.written:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command(help="Summarise a dataset and list its problems.")(data)
    app.command("import", help="Cut longer recordings into clips of a class.")(import_)
