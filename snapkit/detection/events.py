"""What the detector reports: events with a label, onset/offset in stream seconds, and scores; and the one record
an event is written as, whatever writes it (event files, the live log, webhooks, commands, MQTT).

The record has one field set (``RECORD_FIELDS``), one rounding, and units in its names:

    label                     the class
    onset_s, offset_s         stream seconds, rounded to the millisecond (offset None while the event goes on)
    peak_score, mean_score    the class probability (0..1), rounded to 4 places (None when unknown)
    onset_time, offset_time   ISO 8601 wall-clock times with milliseconds, None where the wall-clock time of
                              stream second 0 is unknown (``snapkit detect`` on a file)

Outputs add only what their context knows around it: the audio file (``filename``), the update (``kind``,
``event_id``, ``reported_at``), the saved clip (``clip_path``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

RECORD_FIELDS = ("label", "onset_s", "offset_s", "peak_score", "mean_score", "onset_time", "offset_time")
# The fields of an EventUpdate's record: which update, the event's record, and when the detector knew it.
UPDATE_FIELDS = ("kind", "event_id", *RECORD_FIELDS, "reported_at")
# Detector times are on a 10 ms grid or coarser: a millisecond keeps them exact; scores need no more than 4 places.
TIME_DECIMALS = 3
SCORE_DECIMALS = 4
_DECIMALS = {
    "onset_s": TIME_DECIMALS,
    "offset_s": TIME_DECIMALS,
    "peak_score": SCORE_DECIMALS,
    "mean_score": SCORE_DECIMALS,
}


def iso_time(moment: datetime) -> str:
    """``moment`` as ISO 8601 with milliseconds (and the UTC offset when it has one)."""
    return moment.isoformat(timespec="milliseconds")


def wall_clock(wall_time: datetime, stream_s: float) -> datetime:
    """The wall-clock time of stream second ``stream_s`` when stream second 0 was at ``wall_time``."""
    return wall_time + timedelta(seconds=stream_s)


def field_text(name: str, value: Any) -> str:
    """A record field as text (CSV/TSV cells, environment variables): times with 3 decimals and scores with 4, always
    that many (``1.500``, ``0.9100``); None as an empty string; anything else as ``str``."""
    if value is None:
        return ""
    decimals = _DECIMALS.get(name)
    return str(value) if decimals is None else f"{value:.{decimals}f}"


def _score(value: float) -> float | None:
    # NaN means "not known" (an event read from a DCASE file carries no scores); JSON has no NaN, so None.
    return None if math.isnan(value) else round(float(value), SCORE_DECIMALS)


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

    def to_dict(self, wall_time: datetime | None = None) -> dict[str, Any]:
        """The event's record (keys ``RECORD_FIELDS``, see the module docstring): the single form in which every
        snapkit output writes an event. ``wall_time`` is the wall-clock time of stream second 0, when known."""
        onset_s = round(float(self.onset_s), TIME_DECIMALS)
        offset_s = None if self.offset_s is None else round(float(self.offset_s), TIME_DECIMALS)
        # Wall-clock times from the rounded stream times, so a record's two forms of a time never disagree.
        return {
            "label": self.label,
            "onset_s": onset_s,
            "offset_s": offset_s,
            "peak_score": _score(self.peak_score),
            "mean_score": _score(self.mean_score),
            "onset_time": None if wall_time is None else iso_time(wall_clock(wall_time, onset_s)),
            "offset_time": None if wall_time is None or offset_s is None else iso_time(wall_clock(wall_time, offset_s)),
        }


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

    def to_dict(self, wall_time: datetime | None = None) -> dict[str, Any]:
        """``kind``, ``event_id``, the event's record (``Event.to_dict``) and ``reported_at``, the wall-clock time
        the detector knew this (None without ``wall_time``): keys ``UPDATE_FIELDS``."""
        reported_at = None if wall_time is None else iso_time(wall_clock(wall_time, self.reported_at_s))
        record = self.event.to_dict(wall_time)
        return {"kind": self.kind, "event_id": self.event_id, **record, "reported_at": reported_at}
