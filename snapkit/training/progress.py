"""Plain progress lines for training, for logs and pipes where a terminal progress bar shows nothing useful.

``fold 2/5  epoch 12/30  loss 0.41  elapsed 1:05  ~2:10 left``: one line at most every ``every_s`` seconds and
at the end of every fit, so a log file of a long run says how far it got and how long it still needs. The time
left is for the whole run (every fold and the final model), from the views drawn so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning as L

# A line every 10 s: a 5-minute run writes about 30, and a stalled run shows within seconds.
DEFAULT_EVERY_S = 10.0


def format_clock(seconds: float) -> str:
    """``"1:05"``, ``"12:00"``, ``"1:02:03"``: elapsed or remaining time in a progress line."""
    minutes, secs = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RunProgress:
    """Progress of a whole training run: views drawn of all planned, and the time since the start.

    Args:
        total_views: views every fit of the run draws together.
        log: where lines go (``print``, a rich console, a logger).
        every_s: least seconds between two lines of one fit (its last epoch always gets one).
        clock: monotonic seconds; replaced in tests.
    """

    def __init__(
        self,
        total_views: int,
        log: Callable[[str], None],
        *,
        every_s: float = DEFAULT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_views = max(1, total_views)
        self.log = log
        self.every_s = every_s
        self.clock = clock
        self.start_s = clock()
        self.done_views = 0
        self._last_line_s: float | None = None

    def advance(self, views: int) -> None:
        self.done_views += views

    def line(self, name: str, epoch: int, epochs: int, loss: float | None) -> str:
        """The progress line after ``epoch`` (1-based) of ``epochs`` of the fit called ``name``."""
        elapsed = self.clock() - self.start_s
        parts = [name, f"epoch {epoch}/{epochs}"]
        if loss is not None:
            parts.append(f"loss {loss:.2f}")
        parts.append(f"elapsed {format_clock(elapsed)}")
        if 0 < self.done_views < self.total_views:
            left = elapsed * (self.total_views - self.done_views) / self.done_views
            parts.append(f"~{format_clock(left)} left")
        return "  ".join(parts)

    def epoch_done(self, name: str, epoch: int, epochs: int, loss: float | None) -> None:
        """Log a line if ``every_s`` passed since the last one, or if this was the fit's last epoch."""
        now = self.clock()
        if epoch < epochs and self._last_line_s is not None and now - self._last_line_s < self.every_s:
            return
        self._last_line_s = now
        self.log(self.line(name, epoch, epochs, loss))

    def callback(self, name: str, views_per_epoch: int) -> L.Callback:
        """A Lightning callback that reports each epoch of the fit called ``name`` here."""
        return _EpochLines(self, name, views_per_epoch)


class _EpochLines(L.Callback):
    def __init__(self, run: RunProgress, name: str, views_per_epoch: int) -> None:
        self.run, self.name, self.views_per_epoch = run, name, views_per_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.run.advance(self.views_per_epoch)
        loss = trainer.callback_metrics.get("train/loss")
        self.run.epoch_done(
            self.name, trainer.current_epoch + 1, trainer.max_epochs or 0, float(loss) if loss is not None else None
        )
