"""Options several commands share, spelled once so that every command speaks the same vocabulary.

Names carry their unit (``--clip-s``, ``--hop-s``, ``--sample-rate-hz``, ``--silence-dbfs``); an old spelling stays
as a second name that parses but is never shown (``snapkit.cli.help.DEPRECATED_OPTION_NAMES``). The dataset folder
is ``--data DIR`` everywhere; ``train``, ``evaluate`` and ``data`` still take it as a hidden positional argument, the
form they had before, so old commands keep working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
