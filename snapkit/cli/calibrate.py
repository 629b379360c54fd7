"""``snapkit calibrate``: choose each class's threshold for a false-alarm budget on background audio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from snapkit.cli.options import DataReadOption
from snapkit.cli.ui import console, frame_table
from snapkit.detection.operating import DEFAULT_MAX_FALSE_ALARMS_PER_HOUR

BudgetOption = Annotated[
    float,
    typer.Option(
        "--max-false-alarms-per-hour",
        help="False alarms an hour you accept in total over background audio; shared equally by the classes.",
    ),
]


def calibrate(
    model: Annotated[Path, typer.Argument(help="A trained model bundle (runs/NAME/model.snapkit).")],
    audio: Annotated[
        list[Path] | None,
        typer.Argument(help="Long recordings of the place with none of the sounds (any length; WAV, FLAC, ...)."),
    ] = None,
    data_dir: DataReadOption = None,
    budget: BudgetOption = DEFAULT_MAX_FALSE_ALARMS_PER_HOUR,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the calibrated bundle here (default: update MODEL in place)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON instead.")] = False,
) -> None:
    """Measure false alarms per hour on background audio and detection on the dataset's clips, and set each
    class's threshold to the best detection within the budget.

    Background audio: the dataset's background clips (DATA/background/, any length) and AUDIO. Writes the bundle,
    calibration.png (the curves) beside it, and the curves to its run's TensorBoard folder.
    """
    import dataclasses

    from snapkit.dataset.scan import scan_dataset
    from snapkit.detection.operating import calibrate_to_budget, calibration_audio, write_curve_png
    from snapkit.errors import SnapkitError
    from snapkit.files import check_writable
    from snapkit.models.bundle import load_model
    from snapkit.models.calibration import check_budget
    from snapkit.progress import progress_bar

    check_budget(budget)  # before anything is read
    bundle = load_model(model)
    model_path = bundle.path or model
    # The result is written at the end, beside the model: a folder that cannot take it should fail now, not after
    # minutes of scoring.
    check_writable(
        (out or model_path).parent, what="the model's folder", instead="write the calibrated model elsewhere with --out"
    )
    data = data_dir or Path(str(bundle.training.get("data_dir") or "data"))
    if not data.is_dir():
        raise SnapkitError(
            f"The dataset folder {data} does not exist; give the folder the model was trained on with --data DIR."
        )
    dataset = scan_dataset(data, background_label=bundle.config.background_label)
    rate = bundle.model.sample_rate_hz
    backgrounds, clips, notes = calibration_audio(dataset, rate, bundle.config.labels, audio or [])
    for note in notes:
        console.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    seconds = sum(len(b) for b in backgrounds) / rate
    if not as_json:
        console.print(
            f"calibrating {model_path} for {budget:g} false alarm(s) an hour: {seconds / 60:.1f} min of background, "
            f"{sum(len(c) for c in clips.values())} clips of {len(clips)} classes from {data}",
            highlight=False,
            soft_wrap=True,
        )
    with progress_bar("Scoring audio", len(backgrounds) + sum(len(c) for c in clips.values()), True) as advance:
        result = calibrate_to_budget(
            bundle, backgrounds, clips, max_false_alarms_per_hour=budget, progress=lambda _done, _total: advance(1)
        )
    target = out or model_path
    training = dict(bundle.training)
    training["false_alarm_budget"] = {"max_false_alarms_per_hour": budget, "table": result.table()}
    calibrated = dataclasses.replace(bundle, calibration=result.calibration, training=training)
    calibrated.save(target, overwrite=True)
    png = write_curve_png(result.calibration, target.parent / "calibration.png")
    _log_to_tensorboard(target.parent / "tensorboard" / "calibration", result.calibration)
    if as_json:
        print(json.dumps({"table": result.table(), "notes": result.notes, "bundle": str(target)}, indent=2))
        return
    print_budget_table(result.table())
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    console.print(f"bundle: {target}\ncurves: {png}", highlight=False, soft_wrap=True)


def print_budget_table(rows: list[dict]) -> None:
    """The per-class table of a false-alarm calibration."""
    frame = pd.DataFrame(rows).rename(
        columns={
            "false_alarms_per_hour": "false alarms/h",
            "detection_rate": "detected",
            "background_hours": "background h",
        }
    )
    console.print(
        frame_table(
            frame,
            title="Thresholds for the false-alarm budget",
            formats={
                "threshold": ".3f",
                "was": ".3f",
                "false alarms/h": ".2f",
                "detected": ".2f",
                "background h": ".2f",
            },
        )
    )


def _log_to_tensorboard(folder: Path, calibration: dict) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from snapkit.detection.operating import log_curves

    writer = SummaryWriter(log_dir=str(folder))
    try:
        log_curves(writer, calibration)
    finally:
        writer.close()


def register(app: typer.Typer) -> None:
    app.command(help="Set each class's threshold for a false-alarm budget on background audio (table, PNG).")(calibrate)
