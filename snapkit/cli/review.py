"""``snapkit mine`` and ``snapkit relabel``: turning the detector's mistakes into training data.

Thin commands over :mod:`snapkit.detection.mine` and :mod:`snapkit.dataset.relabel`; heavy imports (torch) happen
inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from snapkit.cli.options import DEFAULT_DATA_DIR, DataOption
from snapkit.cli.ui import console, frame_table
from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL
from snapkit.errors import SnapkitError

# Fewer minutes of audio than this give a false-alarm rate per hour too rough to act on.
ROUGH_RATE_BELOW_S = 600.0


def mine(
    model: Annotated[Path, typer.Argument(help="A trained model bundle (runs/NAME/model.snapkit).")],
    audio: Annotated[
        list[Path], typer.Argument(help="Recordings that hold none of the model's sounds (any length and format).")
    ],
    data_dir: DataOption = DEFAULT_DATA_DIR,
    label: Annotated[
        str, typer.Option("--label", help="Class folder the false alarms are saved into (not one of the model's).")
    ] = DEFAULT_BACKGROUND_LABEL,
) -> None:
    """Save every detection in AUDIO (recordings without your sounds, so each one is a false alarm) as a training
    clip of --label, the model's window around it, named <file stem>-<onset s>s-<class it was taken for>.wav."""
    from snapkit.detection.detector import Detector
    from snapkit.detection.mine import mine_files, mine_target
    from snapkit.models.bundle import load_model

    bundle = load_model(model)
    rate_hz = bundle.model.sample_rate_hz
    detector = Detector(bundle, sample_rate_hz=rate_hz)
    target = mine_target(data_dir, label, detector.labels)  # a bad label is refused before any audio is read
    window_s = float(bundle.config.clip_s)
    thresholds = ", ".join(f"{c} (on {on:.2f})" for c, (on, _) in detector.thresholds.items())
    console.print(
        f"model {model}: {thresholds}; {detector.describe()}. Each detection is a false alarm: its {window_s:g} s "
        f"window is saved into {target}/.",
        highlight=False,
        soft_wrap=True,
    )

    def report_file(path: Path, events: int) -> None:
        console.print(f"{path}: {events} false alarm(s)", highlight=False)

    try:
        result = mine_files(
            detector, audio, data_dir, label, sample_rate_hz=rate_hz, window_s=window_s, on_file=report_file
        )
    except KeyboardInterrupt:
        console.print("\nInterrupted; the clips saved so far stay (each is whole).")
        raise typer.Exit(130) from None
    for message in result.skipped:
        console.print(f"[red]skipped:[/] {message}", highlight=False, soft_wrap=True)
    if not result.files:
        raise typer.Exit(2)
    rows = [
        {"class": c, "false alarms": result.counts[c], "per hour": result.per_hour(c)}
        for c in [*result.labels, *sorted(set(result.counts) - set(result.labels))]
    ]
    console.print(frame_table(pd.DataFrame(rows), title="False alarms per class", formats={"per hour": ".1f"}))
    minutes = result.audio_s / 60
    console.print(
        f"{result.total} false alarm(s) in {minutes:.1f} min of audio from {result.files} file(s); "
        f"{len(result.clips)} clip(s) saved in {target}/.",
        highlight=False,
        soft_wrap=True,
    )
    if result.failures:
        console.print(
            f"[yellow]warning:[/] {result.failures} clip(s) could not be written (see above); check that {target} is "
            "writable and has space.",
            highlight=False,
            soft_wrap=True,
        )
    if result.audio_s < ROUGH_RATE_BELOW_S:
        console.print(
            f"[yellow]note:[/] {minutes:.1f} min is too little for a reliable rate per hour; mine an hour or more.",
            highlight=False,
        )
    if result.clips:
        console.print(f"Listen to them, then retrain: snapkit train --data {data_dir}", highlight=False)


def relabel(
    clips: Annotated[
        list[Path] | None,
        typer.Argument(help="Saved event clips (from listen/detect --save-clips or mine) to move into the dataset."),
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="The class the clips really are.")] = None,
    background: Annotated[
        bool, typer.Option("--background", help=f"The clips are '{DEFAULT_BACKGROUND_LABEL}' (false alarms).")
    ] = False,
    data_dir: DataOption = DEFAULT_DATA_DIR,
    undo: Annotated[
        bool, typer.Option("--undo", help="Move the last relabelled batch back where it came from.")
    ] = False,
) -> None:
    """Move CLIPS into DATA/LABEL/ (never replacing a clip; a taken name gets -2), logged so --undo can move them
    back."""
    from snapkit.dataset.relabel import log_path, relabel_clips, undo_last

    if undo:
        if clips or label is not None or background:
            raise SnapkitError("--undo takes no clips and no label; it moves the last batch back. Run it alone.")
        batch = undo_last(data_dir)
        for move in batch.moves:
            console.print(f"{move.source} -> {move.target}", highlight=False, soft_wrap=True)
        console.print(f"Undid the relabelling of {len(batch.moves)} clip(s) as {batch.label}.", highlight=False)
        return
    if (label is None) == (not background):
        raise SnapkitError("Say which class the clips are: give --label LABEL or --background (one of them).")
    batch = relabel_clips(clips or [], data_dir, label if label is not None else DEFAULT_BACKGROUND_LABEL)
    for move in batch.moves:
        console.print(f"{move.source} -> {move.target}", highlight=False, soft_wrap=True)
    console.print(
        f"Moved {len(batch.moves)} clip(s) into {data_dir / batch.label}/ (logged in {log_path(data_dir)}; "
        "`snapkit relabel --undo` moves them back).",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command(help="Save a model's false alarms on recordings without your sounds as background training clips.")(
        mine
    )
    app.command(help="Move saved event clips into the dataset under their real label; --undo moves them back.")(relabel)
