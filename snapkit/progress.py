"""The one progress bar of the library (loading clips, embedding them, downloading weights): a rich bar on stderr
when asked for, nothing otherwise. Plain progress lines for logs are ``snapkit.training.progress.RunProgress``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal


@contextlib.contextmanager
def progress_bar(
    description: str,
    total: int | None,
    enabled: bool,
    *,
    unit: Literal["items", "bytes"] = "items",
    completed: int = 0,
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: ``n`` more items (a transient bar with count and time left) or bytes (a bar that stays,
    with size, speed and time left). ``total`` None: unknown. A no-op when not ``enabled``."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counts: list[ProgressColumn] = (
        [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *counts,
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=unit == "items",
    ) as progress:
        task = progress.add_task(description, total=total, completed=completed)
        yield lambda n: progress.advance(task, n)
