"""Options several commands share, spelled once so that every command speaks the same vocabulary.

Names carry their unit (``--clip-s``, ``--hop-s``, ``--sample-rate-hz``, ``--silence-dbfs``); an old spelling stays
as a second name that parses but is never shown (``snapkit.cli.help.DEPRECATED_OPTION_NAMES``). The dataset folder
is ``--data DIR`` everywhere; ``train``, ``evaluate`` and ``data`` still take it as a hidden positional argument, the
form they had before, so old commands keep working.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_DATA_DIR = Path("data")

# record and import write into the folder, so it has a default like every other command's.
DataOption = Annotated[Path, typer.Option("--data", help="Dataset folder; clips go to DATA/LABEL/.")]
# train and data read it; None means "not given", so a positional form given as well can be told apart.
DataReadOption = Annotated[
    Path | None,
    typer.Option("--data", help=f"Dataset folder with one folder per class (default: {DEFAULT_DATA_DIR})."),
]
LegacyDataArgument = Annotated[
    Path | None,
    typer.Argument(hidden=True, metavar="DATA_DIR", help="The dataset folder, as --data gives it (older form)."),
]

DeviceOption = Annotated[
    str | None,
    typer.Option("--device", "-d", help="Input device number or (part of its) name; see `snapkit devices`."),
]
SampleRateOption = Annotated[
    int | None,
    typer.Option("--sample-rate-hz", "--samplerate", help="Input rate in Hz (default: the device's own rate)."),
]
HopOption = Annotated[
    float | None,
    typer.Option(
        "--hop-s",
        "--hop",
        min=0.01,
        help="Seconds of audio between two runs of the model (smaller: sooner, more CPU; default: the detector's, "
        "printed at start).",
    ),
]


def data_folder(option: Path | None, positional: Path | None, default: Path | None = DEFAULT_DATA_DIR) -> Path:
    """The dataset folder from ``--data`` or the older positional form; ``default`` when neither is given
    (None: the folder is required)."""
    if option is not None and positional is not None and option != positional:
        raise typer.BadParameter(
            f"the dataset folder was given twice ({positional} and --data {option}); give it once, as --data DIR.",
            param_hint="'--data'",
        )
    folder = option or positional or default
    if folder is None:
        raise typer.BadParameter("missing; give the labelled dataset folder, as --data DIR.", param_hint="'--data'")
    return folder


MinLevelOption = Annotated[
    float | None,
    typer.Option(
        "--min-level-dbfs",
        help="Quiet gate: while the input stays below this level (dBFS, e.g. -60) the model is not run, saving CPU "
        "in a quiet room; sounds above it are detected as without the gate (models that run in windows).",
    ),
]
SensitivityOption = Annotated[
    str,
    typer.Option(
        "--sensitivity",
        help="low, normal or high, or a total number of false alarms per hour (e.g. 0.5): a point on the "
        "false-alarm curve `snapkit calibrate` measured (without one, low/high move every threshold).",
    ),
]
ThresholdOption = Annotated[
    list[str] | None,
    typer.Option(
        "--threshold",
        metavar="LABEL=VALUE",
        help="Set a class's on-threshold (a probability, 0-1), e.g. --threshold dog_bark=0.7; repeat for more.",
    ),
]


def detector_settings(
    bundle: Any,
    mode: str,
    hop_s: float | None,
    sensitivity: str,
    thresholds: list[str] | None,
    min_level_dbfs: float | None = None,
) -> tuple[Any, str]:
    """The ``DetectorSettings`` the options ask for, and a line saying which thresholds are in force and why.

    Raises ``typer.BadParameter`` (one sentence naming the option) for a bad ``--sensitivity`` or ``--threshold``.
    """
    from snapkit.detection.detector import DetectorSettings
    from snapkit.models.calibration import parse_sensitivity, parse_threshold_overrides, run_time_thresholds

    try:
        point = parse_sensitivity(sensitivity)
        overrides = parse_threshold_overrides(thresholds or [], bundle.config.labels)
        on, off = run_time_thresholds(bundle.calibration, point, overrides)
    except ValueError as error:
        hint = "'--threshold'" if str(error).startswith("--threshold") else "'--sensitivity'"
        raise typer.BadParameter(str(error).split(": ", 1)[-1], param_hint=hint) from None
    settings = DetectorSettings(mode=mode, on_thresholds=on, off_thresholds=off)  # type: ignore[arg-type]
    if hop_s is not None:
        settings = dataclasses.replace(settings, hop_s=hop_s)
    if min_level_dbfs is not None:
        settings = dataclasses.replace(settings, min_level_dbfs=min_level_dbfs)
    why = []
    curves = [entry.curve for entry in bundle.calibration.values() if entry.curve is not None]
    if curves:
        budget = sum(curve.budget_per_hour for curve in curves)
        minutes = curves[0].background_s / 60
        why.append(f"calibrated for {budget:g} false alarm(s) an hour on {minutes:.0f} min of background")
    else:
        why.append("calibrated on clips only (run `snapkit calibrate` for a false-alarm budget)")
    if point != "normal":
        why.append(f"sensitivity {point}")
    if overrides:
        why.append("set by --threshold: " + ", ".join(sorted(overrides)))
    return settings, "; ".join(why)


def thresholds_for(bundle: Any, thresholds: list[str] | None, bundles: list[Any]) -> list[str] | None:
    """The --threshold entries for ``bundle``: with several models each entry goes to the one with its class (an
    entry no model has is left to the first, whose check names the classes)."""
    if thresholds is None or len(bundles) == 1:
        return thresholds
    mine = []
    for text in thresholds:
        label = text.partition("=")[0].strip()
        owner = next((b for b in bundles if label in b.config.labels), bundles[0])
        if owner is bundle:
            mine.append(text)
    return mine
