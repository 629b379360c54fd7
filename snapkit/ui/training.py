"""One ``snapkit train`` at a time, run in a background thread of the workbench, its progress kept as lines.

The run is the library's own (:func:`plan_training` then :func:`run_training`, with the plain progress lines
``snapkit train`` prints when there is no terminal); the page reads the lines as server-sent events and, at the end,
the run's ``metrics.json``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from snapkit.errors import SnapkitError
from snapkit.ui.workbench import TrainingBusy


@dataclass(frozen=True)
class TrainRequest:
    """What the train page asks for (the options of ``snapkit train`` it offers)."""

    backbone: str = "convnet"
    epochs: int | None = None
    max_minutes: float = 5.0
    estimate: bool = True
    seed: int = 0


@dataclass
class TrainingJob:
    """The one training of the workbench: its state, progress lines and result.

    ``state`` is "idle", "running", "done" or "failed". Lines only grow, so a reader keeps its own position.
    """

    data_dir: Path
    runs_dir: Path
    state: str = "idle"
    run: str | None = None
    lines: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self, request: TrainRequest) -> str:
        """Start training in the background; returns the run's name. ``TrainingBusy`` while one runs."""
        from snapkit.training.train import BACKBONE_CHOICES

        if request.backbone not in BACKBONE_CHOICES:
            raise SnapkitError(
                f"Backbone {request.backbone!r} is unknown; choose one of {', '.join(BACKBONE_CHOICES)}."
            )
        with self._lock:
            if self.state == "running":
                raise TrainingBusy(f"A training ({self.run}) is running; wait for it to finish, one at a time.")
            self.run = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{request.backbone}"
            self.state, self.lines, self.result, self.error = "running", [], None, None
            self._thread = threading.Thread(target=self._train, args=(request, self.run), daemon=True)
            self._thread.start()
            return self.run

    def wait(self, timeout_s: float | None = None) -> None:
        """Until the running training ends (tests, and a clean shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def status(self, since: int = 0) -> dict[str, Any]:
        """State, run name, the lines from ``since`` on, and the result or error once finished."""
        with self._lock:
            return {
                "state": self.state,
                "run": self.run,
                "lines": self.lines[since:],
                "next": len(self.lines),
                "result": self.result,
                "error": self.error,
            }

    def _log(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def _train(self, request: TrainRequest, run: str) -> None:
        from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

        start = time.monotonic()
        try:
            settings = TrainSettings(
                backbone=request.backbone,
                epochs=request.epochs,
                max_minutes=request.max_minutes,
                estimate=request.estimate,
                seed=request.seed,
            )
            plan = plan_training(self.data_dir, self.runs_dir / run, settings)
            for line in plan.describe():
                self._log(line)
            for note in plan.warnings:
                self._log(f"warning: {note}")
            result = run_training(plan, trainer_options=TrainerOptions(progress_bar=False), log=self._log)
            metrics = json.loads(result.metrics_path.read_text(encoding="utf-8"))
            for note in result.warnings:
                self._log(f"warning: {note}")
            self._log(f"saved {result.bundle_path} in {time.monotonic() - start:.0f} s")
            with self._lock:
                self.result = {
                    "run": run,
                    "metrics": metrics,
                    "curve": (result.bundle_path.parent / "calibration.png").exists(),
                }
                self.state = "done"
        except SnapkitError as err:
            self._finish_failed(str(err))
        except Exception as err:  # a bug must still end the run visibly, not leave the page waiting forever
            self._finish_failed(f"Training stopped with an unexpected error ({type(err).__name__}: {err}).")

    def _finish_failed(self, message: str) -> None:
        with self._lock:
            self.error, self.state = message, "failed"
            self.lines.append(f"error: {message}")
