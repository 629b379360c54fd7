"""One live detector of the workbench: ``snapkit listen``'s engine (:func:`run_live`) on this machine's microphone,
run in a background thread, its newest :class:`LiveStatus` kept for the page.

The run is the library's: the same ``Detector`` and ``run_live`` as ``snapkit listen``, and finished events are saved
as clips by the same ``ClipSaver`` into the first ``--events`` folder, so the review page lists them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapkit.errors import SnapkitError
from snapkit.ui.workbench import finite

# What the page gets: a source that is started with ``with`` and gives blocks (the microphone; an array in tests).
SourceFactory = Callable[[], Any]
# The page offers the newest this many clips to play.
RECENT_CLIPS = 10


def microphone() -> Any:
    """The default input device at its own rate, as ``snapkit listen`` opens it without ``--device``."""
    from snapkit.audio.sources import MicrophoneSource

    return MicrophoneSource()


@dataclass
class ListenJob:
    """The workbench's live detector: ``state`` "idle", "running", "stopped" or "failed"."""

    clips_dir: Path | None
    source_factory: SourceFactory = microphone
    state: str = "idle"
    model: str | None = None
    status: dict[str, Any] | None = None
    error: str | None = None
    _saver: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self, model_path: Path, name: str) -> None:
        """Load the model and start listening; a second start while one listens attaches to it (no new detector)."""
        with self._lock:
            if self.state == "running":
                if self.model != name:
                    raise SnapkitError(f"The detector of {self.model} is listening; stop it before starting another.")
                return
            from snapkit.detection.detector import Detector
            from snapkit.models.bundle import load_model

            bundle = load_model(model_path)
            source = self.source_factory()
            detector = Detector(bundle, sample_rate_hz=source.sample_rate_hz)
            self._stop = threading.Event()
            self.state, self.model, self.status, self.error, self._saver = "running", name, None, None, None
            self._thread = threading.Thread(target=self._listen, args=(detector, source), daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop listening (the clips of finished events stay)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": self.state,
                "model": self.model,
                "status": self.status,
                "error": self.error,
                "clips": [] if self._saver is None else [Path(p).name for p in list(self._saver.saved)[-RECENT_CLIPS:]],
            }

    def _listen(self, detector: Any, source: Any) -> None:
        from snapkit.detection.live import run_live
        from snapkit.detection.sinks import ClipSaver

        saver = None
        try:
            if self.clips_dir is not None:
                saver = ClipSaver(self.clips_dir, sample_rate_hz=source.sample_rate_hz, keep_paths=RECENT_CLIPS)
                self._saver = saver
            with source:
                run_live(detector, source, clip_saver=saver, stop_event=self._stop, on_status=self._on_status)
            with self._lock:
                self.state = "stopped"
        except SnapkitError as err:
            with self._lock:
                self.state, self.error = "failed", str(err)
        except Exception as err:  # a device that vanished must end the run visibly, not leave the page waiting
            with self._lock:
                self.state, self.error = "failed", f"Listening stopped ({type(err).__name__}: {err})."

    def _on_status(self, status: Any) -> None:
        events = [
            {
                "label": e.label,
                "onset_s": e.onset_s,
                "offset_s": e.offset_s,
                "peak_score": e.peak_score,
                "time": e.onset_time.isoformat(timespec="milliseconds"),
            }
            for e in status.recent_events
        ]
        snapshot = {
            "position_s": status.position_s,
            "level_dbfs": status.level_dbfs,
            "probabilities": status.probabilities,
            "events": events,
            "event_count": status.events,
            "dropped": status.dropped,
        }
        with self._lock:
            self.status = finite(snapshot)
