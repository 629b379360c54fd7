"""Shared terminal output: one console, tables, and the live level meter."""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console()
err_console = Console(stderr=True)

METER_FLOOR_DBFS = -60.0


def level_bar(level_dbfs: float, width: int = 30) -> Text:
    """A horizontal meter from ``METER_FLOOR_DBFS`` to 0 dBFS: green, yellow above -12, red above -3 (clipping)."""
    fraction = 0.0 if math.isnan(level_dbfs) else min(1.0, max(0.0, 1 - level_dbfs / METER_FLOOR_DBFS))
    filled = round(fraction * width)
    style = "red" if level_dbfs > -3 else "yellow" if level_dbfs > -12 else "green"
    bar = Text("█" * filled, style=style)
    bar.append("─" * (width - filled), style="grey39")
    bar.append(f" {level_dbfs:6.1f} dBFS")
    return bar


def frame_table(frame: pd.DataFrame, title: str | None = None, formats: dict[str, str] | None = None) -> Table:
    """A rich table of ``frame``; ``formats`` maps column -> format spec (e.g. ``".1f"``)."""
    formats = formats or {}
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left")
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            if isinstance(value, float) and math.isnan(value):
                cells.append("-")
            elif column in formats:
                cells.append(format(value, formats[column]))
            else:
                cells.append(str(value))
        table.add_row(*cells)
    return table


class DetectorMode(str, Enum):
    """``--mode`` of ``detect`` and ``listen`` (see ``DetectorSettings.mode``)."""

    auto = "auto"
    stream = "stream"
    window = "window"


ModeOption = Annotated[
    DetectorMode,
    typer.Option(
        "--mode",
        help="stream: each model frame computed once (fast; auto picks it when the model allows); window: a "
        "clip-length window every hop, overlapping outputs averaged.",
    ),
]
