"""Telling someone about an event: a webhook POST or a local command, each on its own thread.

A notifier must never slow detection down, whatever the network does. So ``submit()`` only checks the per-label
cooldown and puts the notification on a small bounded queue (when it is full the OLDEST waiting notification is
dropped and counted: the newest event is the one worth telling); a worker thread delivers them one by one, with a
timeout per attempt and retries with exponential backoff. Failures are printed and counted, never raised.

Notifiers act on "end" updates by default: only then is the event complete (final onset and offset, peak and mean
score, and its saved clip), so the message says everything and a single knock is one message, not two. Pass
``on="start"`` to be told as soon as an event is confirmed instead (without offset or clip). A notifier that reports
both, as they happen, overrides ``wants`` and ``notify`` (``snapkit.detection.mqtt``).
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import snapkit
from snapkit.detection.events import EventUpdate, field_text
from snapkit.detection.sinks import Warn, print_warning
from snapkit.errors import SnapkitError

DEFAULT_COOLDOWN_S = 30.0
DEFAULT_MAX_QUEUE = 32
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 0.5
DEFAULT_TIMEOUT_S = 5.0
# How long close() lets queued notifications go out before abandoning them (seconds).
DEFAULT_DRAIN_TIMEOUT_S = 10.0
# HTTP statuses worth retrying besides 5xx: the server asked us to come back later.
_RETRYABLE_HTTP = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Notification:
    """What a notifier says about one event: the event's record (``Event.to_dict``, fields ``RECORD_FIELDS``: times
    ``*_s`` in stream seconds, ``*_time`` ISO wall-clock times, scores probabilities 0..1) and ``clip_path``, the saved
    WAV, or None when no clip was saved."""

    label: str
    onset_s: float
    offset_s: float | None
    peak_score: float | None
    mean_score: float | None
    onset_time: str | None
    offset_time: str | None
    clip_path: str | None = None

    @classmethod
    def from_update(cls, update: EventUpdate, wall_time: datetime, clip_path: Path | str | None = None) -> Notification:
        """The notification of ``update``; ``wall_time`` is the wall-clock time of stream second 0."""
        return cls(**update.event.to_dict(wall_time), clip_path=None if clip_path is None else str(clip_path))

    def to_dict(self) -> dict[str, Any]:
        """The webhook's JSON body: the event's record, then ``clip_path``."""
        return asdict(self)


@dataclass(frozen=True)
class NotifierStats:
    """Counts for the status view and the summary."""

    name: str
    sent: int
    failed: int
    dropped: int  # pushed out of the full queue, oldest first
    suppressed: int  # within the cooldown of the previous notified event of the same label
    pending: int  # waiting in the queue or being delivered


class DeliveryError(Exception):
    """One delivery attempt failed; ``retryable`` is False when trying again cannot help (e.g. HTTP 404)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Notifier:
    """Delivers notifications on its own thread from a bounded queue; subclasses implement ``_deliver``.

    Args:
        cooldown_s: an event whose onset is within this many stream seconds of the last notified event of the
            same label is not notified (counted in ``suppressed``); 0 turns the cooldown off.
        on: which update kind triggers a notification, "end" (complete event, default) or "start".
        max_queue: notifications waiting at most; beyond it the oldest is dropped (counted in ``dropped``).
        retries: further attempts after a failed one, waiting ``backoff_s``, then twice that, and so on.
        timeout_s: limit of one attempt, in seconds.
        drain_timeout_s: how long ``close()`` lets queued notifications go out before abandoning them.
        on_warning: where failures are reported (default: a yellow line on stderr).
    """

    name = "notifier"
    # What one queued item is, for the warning about items abandoned at exit.
    item_name = "notification"
    # Whether an "end" waits for the event's saved clip so that it can carry the clip's path (the runner holds it
    # back until the clip is written, about the post-roll later); a notifier for which timing matters more says False.
    waits_for_clip = True

    def __init__(
        self,
        *,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        on: Literal["start", "end"] = "end",
        max_queue: int = DEFAULT_MAX_QUEUE,
        retries: int = DEFAULT_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
        on_warning: Warn | None = None,
    ) -> None:
        if cooldown_s < 0:
            raise SnapkitError("--cooldown-s must be zero or more seconds.")
        if on not in ("start", "end"):
            raise ValueError(f"on must be 'start' or 'end', got {on!r}")
        if max_queue < 1 or retries < 0 or backoff_s < 0 or timeout_s <= 0:
            raise ValueError("max_queue >= 1, retries >= 0, backoff_s >= 0 and timeout_s > 0 are required")
        self.cooldown_s = float(cooldown_s)
        self.on = on
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.timeout_s = float(timeout_s)
        self.drain_timeout_s = float(drain_timeout_s)
        self._warn = on_warning or print_warning
        # One condition guards the queue, the counters and the cooldown table: submit() runs on the caller's thread,
        # delivery on the worker, and the status view reads the counters from the main thread.
        self._cond = threading.Condition()
        # Notifications here; a subclass that overrides notify() and _run() may queue its own kind of item.
        self._queue: collections.deque[Any] = collections.deque(maxlen=max_queue)
        self._last_onset_s: dict[str, float] = {}
        self._sent = self._failed = self._dropped = self._suppressed = 0
        # Taken off the queue by the worker but given up at exit (counted with what is left in the queue).
        self._abandoned = 0
        self._in_flight = False
        self._closing = False
        # Set when close() gives up waiting: the worker stops retrying and abandons what is queued.
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ caller side

    def start(self) -> Notifier:
        """Start the delivery thread (idempotent; ``submit`` starts it too)."""
        with self._cond:
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(target=self._run, name=f"snapkit-notify-{self.name}", daemon=True)
                self._thread.start()
        return self

    def wants(self, update: EventUpdate) -> bool:
        """Whether ``update`` is the kind this notifier acts on."""
        return update.kind == self.on

    def notify(self, update: EventUpdate, wall_time: datetime, clip_path: Path | str | None = None) -> bool:
        """Queue what this notifier says about ``update`` (one it ``wants``); never blocks. ``wall_time`` is the
        wall-clock time of stream second 0, ``clip_path`` the event's saved clip. By default: its ``Notification``,
        through ``submit`` and the cooldown. Returns whether anything was queued."""
        return self.submit(Notification.from_update(update, wall_time, clip_path))

    def submit(self, notification: Notification) -> bool:
        """Queue ``notification`` unless its label is cooling down; never blocks. Returns whether it was queued."""
        self.start()
        with self._cond:
            if self._closing:
                return False
            last = self._last_onset_s.get(notification.label)
            if last is not None and self.cooldown_s > 0 and notification.onset_s - last < self.cooldown_s:
                self._suppressed += 1
                return False
            self._last_onset_s[notification.label] = notification.onset_s
            self._enqueue_locked(notification)
        return True

    def _enqueue_locked(self, item: object) -> None:
        """Append ``item`` to the queue, the oldest pushed out and counted when it is full; ``_cond`` is held."""
        if len(self._queue) == self._queue.maxlen:
            self._dropped += 1  # the deque's maxlen pushes out the oldest on append
        self._queue.append(item)
        self._cond.notify_all()

    @property
    def target(self) -> str:
        """Where notifications go, for the settings line (a URL, a command); empty when there is nothing to say."""
        return ""

    def describe(self) -> str:
        """The settings line printed when listening starts."""
        return f"Notify ({self.name}) {self.target} on each finished event, {self.cooldown_s:g} s cooldown."

    def stats(self) -> NotifierStats:
        with self._cond:
            return NotifierStats(
                self.name,
                self._sent,
                self._failed,
                self._dropped,
                self._suppressed,
                len(self._queue) + int(self._in_flight),
            )

    def close(self) -> NotifierStats:
        """Let queued notifications go out for up to ``drain_timeout_s``, then stop. Safe to call twice."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(self.drain_timeout_s)
            if thread.is_alive():
                self._abort.set()
                with self._cond:
                    self._cond.notify_all()  # a worker waiting on the condition sees the abort at once
                # The attempt in progress ends within its own timeout; retries and the queue are abandoned.
                thread.join(self.timeout_s + 1.0)
        with self._cond:
            abandoned = len(self._queue) + self._abandoned
            self._queue.clear()
            self._abandoned = 0
        if abandoned:
            self._warn(f"{self.name}: {abandoned} {self.item_name}(s) were still queued at exit and were not sent.")
        return self.stats()

    def __enter__(self) -> Notifier:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ worker side

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()  # sleeps until submit() or close() notifies: no polling
                if not self._queue or self._abort.is_set():
                    return
                notification = self._queue.popleft()
                self._in_flight = True
            try:
                self._deliver_with_retries(notification)
            finally:
                with self._cond:
                    self._in_flight = False

    def _deliver_with_retries(self, notification: Notification) -> None:
        reason = "unknown error"
        tries = 0
        for attempt in range(self.retries + 1):
            if attempt and self._abort.wait(self.backoff_s * 2 ** (attempt - 1)):
                reason += " (gave up at exit)"
                break
            tries += 1
            try:
                self._deliver(notification)
            except DeliveryError as err:
                reason = str(err)
                if not err.retryable:
                    break
            except Exception as err:  # a notifier reports failures, it never raises into snapkit
                reason = f"{type(err).__name__}: {err}"
            else:
                with self._cond:
                    self._sent += 1
                return
        with self._cond:
            self._failed += 1
        self._warn(
            f"{self.name} could not deliver the {notification.label} event at {notification.onset_time} "
            f"after {tries} attempt(s): {reason}"
        )

    def _deliver(self, notification: Notification) -> None:
        """One attempt, within ``timeout_s``; raises ``DeliveryError`` (or anything else) on failure."""
        raise NotImplementedError


class WebhookNotifier(Notifier):
    """POSTs each notification as JSON to ``url``::

        {"label", "onset_s", "offset_s", "peak_score", "mean_score", "onset_time", "offset_time", "clip_path"}

    A 2xx answer is success; 5xx, 408/425/429 and network errors are retried; other 4xx are not (they would fail
    again). Proxies from the usual environment variables apply.
    """

    name = "webhook"

    @property
    def target(self) -> str:
        return self.url

    def __init__(self, url: str, **kwargs: Any) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SnapkitError(f"--notify {url!r} is not an http:// or https:// URL; give the webhook's full address.")
        super().__init__(**kwargs)
        self.url = url

    def _deliver(self, notification: Notification) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(notification.to_dict()).encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": f"snapkit/{snapkit.__version__}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read(65536)  # read (some of) the body so the server sees a well-behaved client
        except urllib.error.HTTPError as err:
            retryable = err.code >= 500 or err.code in _RETRYABLE_HTTP
            raise DeliveryError(f"HTTP {err.code} {err.reason}", retryable=retryable) from None
        except urllib.error.URLError as err:
            raise DeliveryError(f"{err.reason}") from None
        except (TimeoutError, OSError) as err:
            raise DeliveryError(f"{type(err).__name__}: {err or 'timed out'}") from None


class ExecNotifier(Notifier):
    """Runs ``command`` (split like a shell would, but run without one) once per notification, with::

        SNAPKIT_LABEL, SNAPKIT_ONSET_S, SNAPKIT_OFFSET_S, SNAPKIT_SCORE (peak), SNAPKIT_MEAN_SCORE,
        SNAPKIT_ONSET_TIME, SNAPKIT_OFFSET_TIME, SNAPKIT_CLIP (empty when no clip was saved)

    in its environment. Exit status 0 is success; a non-zero status or running past ``timeout_s`` (the command is
    then killed) is a failed attempt. Its output is captured, so it never garbles the live view.
    """

    name = "exec"

    @property
    def target(self) -> str:
        return self.command

    def __init__(self, command: str, **kwargs: Any) -> None:
        try:
            args = shlex.split(command)
        except ValueError as err:
            raise SnapkitError(f"--exec {command!r} cannot be split into words ({err}); check its quotes.") from None
        if not args:
            raise SnapkitError("--exec was given an empty command; give the program to run.")
        if shutil.which(args[0]) is None:
            raise SnapkitError(f"--exec program {args[0]!r} was not found; give its full path or check PATH.")
        kwargs.setdefault("timeout_s", 10.0)
        super().__init__(**kwargs)
        self.command = command
        self.args = args

    @staticmethod
    def environment(notification: Notification) -> dict[str, str]:
        """The ``SNAPKIT_*`` variables describing ``notification`` (added to the inherited environment)."""
        return {
            "SNAPKIT_LABEL": notification.label,
            # The same text as a CSV cell of the record (field_text): one rounding everywhere.
            "SNAPKIT_ONSET_S": field_text("onset_s", notification.onset_s),
            "SNAPKIT_OFFSET_S": field_text("offset_s", notification.offset_s),
            "SNAPKIT_SCORE": field_text("peak_score", notification.peak_score),
            "SNAPKIT_MEAN_SCORE": field_text("mean_score", notification.mean_score),
            "SNAPKIT_ONSET_TIME": notification.onset_time or "",
            "SNAPKIT_OFFSET_TIME": notification.offset_time or "",
            "SNAPKIT_CLIP": notification.clip_path or "",
        }

    def _deliver(self, notification: Notification) -> None:
        try:
            result = subprocess.run(
                self.args,
                env={**os.environ, **self.environment(notification)},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DeliveryError(f"{self.args[0]} ran longer than {self.timeout_s:g} s and was stopped") from None
        except OSError as err:
            raise DeliveryError(f"{self.args[0]} could not be started: {err}", retryable=False) from None
        if result.returncode != 0:
            last_line = (result.stderr.strip().splitlines() or [""])[-1][:200]
            raise DeliveryError(
                f"{self.args[0]} exited with status {result.returncode}" + (f": {last_line}" if last_line else "")
            )
