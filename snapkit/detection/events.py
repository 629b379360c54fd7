"""What the detector reports: events with a label, onset/offset in stream seconds, and scores."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Event:
    """A detected sound. Times are seconds from the start of the stream (the file, or when listening began).

    ``offset_s`` is None while the event is still going on (a "start" update).
    ``peak_score``/``mean_score`` are the class probability's maximum and mean over the event.
    """

    label: str
    onset_s: float
    offset_s: float | None
    peak_score: float
    mean_score: float

    @property
    def duration_s(self) -> float | None:
        return None if self.offset_s is None else self.offset_s - self.onset_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EventUpdate:
    """One thing the detector has to say: an event ``"start"``-ed (confirmed, offset unknown yet) or ``"end"``-ed
    (complete: final onset and offset). Every start is followed by exactly one end for the same event, carrying the
    same ``event_id``; the end's onset may be refined and so differ slightly from the start's."""

    kind: Literal["start", "end"]
    event_id: int
    event: Event
    # Stream time (s) at which the detector knew this: the audio pushed so far. For latency measurements.
    reported_at_s: float
