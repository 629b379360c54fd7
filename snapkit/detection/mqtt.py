"""Telling Home Assistant (or anything that speaks MQTT) what is heard: ``snapkit listen --mqtt URL``.

``URL`` is ``mqtt://[user[:password]@]host[:port]/prefix`` (``mqtts://`` for TLS; ports 1883 and 8883 by default);
the password may come from ``SNAPKIT_MQTT_PASSWORD`` instead, so that it sits in no command line or unit file.
With ``<base>`` = ``<prefix>/<device>`` and ``<label>`` a class as a topic level (``topic_level``)::

    <base>/availability   "online" (retained) once connected; "offline" at a clean exit, and as the last will
    <base>/<label>        each event's start and end as JSON: {"event_type": "start" | "end", **the update's record}
    <base>/<label>/active "ON" while the sound lasts, then "OFF" (retained): a binary_sensor's state
    <base>/state          {"active": [labels sounding now], "reported_at": ...} (retained)
    homeassistant/event/snapkit_<device>/<label>/config          Home Assistant discovery (retained): an event
    homeassistant/binary_sensor/snapkit_<device>/<label>/config  entity and a binary_sensor per class, one device

The record after ``event_type`` is ``EventUpdate.to_dict`` (``UPDATE_FIELDS``), the live event log's line: one
writer for an event everywhere. ``event_type`` repeats ``kind`` because Home Assistant's event entity requires it.

Design: ``MqttNotifier`` is one more notifier (``snapkit.detection.notify``). On the runner's sink thread ``notify()``
only turns an update into messages and puts them on the bounded queue (when it is full the oldest message is dropped
and counted). A delivery thread publishes one message at a time with QoS 1 and waits for the broker's
acknowledgement before the next; while the connection is down it waits, and paho's network thread reconnects with
backoff. paho would keep unacknowledged QoS 1 messages over a reconnect by itself, but its queue is unbounded (or,
capped, drops the newest without counting), and a message published just as the connection comes back can overtake
the ones it resends; one message in flight keeps the order and the bound ours, for one round trip per message.

paho-mqtt is imported when a notifier is made, never at import, so ``snapkit --help`` stays fast and snapkit works
without it (``pip install 'snapkit[mqtt]'``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import snapkit
from snapkit.detection.events import EventUpdate, iso_time
from snapkit.detection.notify import Notifier, NotifierStats
from snapkit.detection.sinks import Warn
from snapkit.errors import SnapkitError

PASSWORD_ENV = "SNAPKIT_MQTT_PASSWORD"
DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
DISCOVERY_PREFIX = "homeassistant"
# Messages waiting at most while the broker is away: at 6 messages an event, the last ~160 events.
DEFAULT_MAX_QUEUE = 1000
# How long start() waits for the broker's answer before listening anyway (seconds).
DEFAULT_CONNECT_WAIT_S = 5.0
# paho's reconnect backoff: the first wait, doubled after each failed attempt up to the second (seconds).
DEFAULT_RECONNECT_MIN_S = 1.0
DEFAULT_RECONNECT_MAX_S = 60.0
# How long close() lets queued messages go out before abandoning them (seconds).
DEFAULT_DRAIN_TIMEOUT_S = 5.0
# A dead connection (no answer to pings) is noticed within about 1.5 times this (seconds).
KEEPALIVE_S = 30
# How long close() waits for the broker to acknowledge "offline" (seconds).
_OFFLINE_WAIT_S = 2.0
QOS = 1
ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"
EVENT_TYPES = ("start", "end")
# A topic level snapkit makes (the device; a class, after topic_level): also what Home Assistant takes as a node or
# object id in a discovery topic.
_TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_DEVICE_CHARS = 64
# Topic levels under <prefix>/<device> that are not a class's.
_RESERVED_LEVELS = frozenset({"state", "availability"})
# Connection refusals that trying again cannot cure: MQTT 5 reason codes, which paho also gives for MQTT 3.1.1.
_BAD_CREDENTIALS = frozenset({134, 135})  # bad user name or password, not authorised


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class MqttSettings:
    """Where and as what to publish. ``password`` never appears in ``repr`` or ``url``."""

    host: str
    port: int
    prefix: str  # the topic prefix, without leading or trailing "/"
    device: str  # a topic level: letters, digits, - and _
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The broker URL to show: the password, if any, as ``***``."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = ""
        if self.username is not None:
            user = urllib.parse.quote(self.username, safe="") + (":***" if self.password else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}/{self.prefix}"

    @property
    def where(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"

    @property
    def base_topic(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def availability_topic(self) -> str:
        return f"{self.base_topic}/availability"

    @property
    def state_topic(self) -> str:
        return f"{self.base_topic}/state"

    @property
    def node_id(self) -> str:
        """The device's id in Home Assistant's discovery topics and unique ids."""
        return f"snapkit_{self.device}"

    def event_topic(self, label: str) -> str:
        """Where ``label``'s starts and ends go."""
        return f"{self.base_topic}/{topic_level(label)}"

    def active_topic(self, label: str) -> str:
        """``label``'s ON/OFF state (its binary_sensor)."""
        return f"{self.event_topic(label)}/active"

    def discovery_topic(self, component: str, label: str) -> str:
        """Home Assistant's discovery topic of ``label``'s ``component`` (``event``, ``binary_sensor``)."""
        return f"{DISCOVERY_PREFIX}/{component}/{self.node_id}/{topic_level(label)}/config"


def redact_url(url: str) -> str:
    """``url`` with the password (anything between the user's ``:`` and the last ``@``) shown as ``***``.

    Works on text that does not parse, so error messages about a bad URL never show its password either; a URL
    with an ``@`` after the host may lose more than the password, never less."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def default_device() -> str:
    """This machine's name as a topic level: the host name before its first dot, lower case, other characters
    than letters, digits, - and _ as ``-`` (``snapkit`` if nothing is left)."""
    host = socket.gethostname().split(".")[0].lower()
    return re.sub(r"[^a-z0-9_-]+", "-", host).strip("-")[:_MAX_DEVICE_CHARS] or "snapkit"


def check_device(name: str) -> str:
    """``name`` unchanged when it can be the device's topic level; SnapkitError naming ``--mqtt-device`` if not."""
    if not _TOPIC_LEVEL.match(name) or len(name) > _MAX_DEVICE_CHARS:
        raise SnapkitError(
            f"--mqtt-device {name!r} cannot be an MQTT topic level; use up to {_MAX_DEVICE_CHARS} letters, digits, "
            "- and _, e.g. garage."
        )
    return name


def topic_level(label: str) -> str:
    """A class as a topic level (and a Home Assistant object id): letters, digits, - and _ kept, anything else
    ``_`` (``dog bark`` -> ``dog_bark``). The payload carries the label itself."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", label)


def check_labels(labels: Iterable[str]) -> dict[str, str]:
    """Each label's topic level; SnapkitError when two share one or one is a level snapkit keeps for itself."""
    levels: dict[str, str] = {}
    for label in labels:
        level = topic_level(label)
        if level in _RESERVED_LEVELS:
            raise SnapkitError(
                f"The class {label!r} cannot be published with --mqtt: <prefix>/<device>/{level} is its live "
                f"{level}; rename the class and train again."
            )
        other = next((known for known, known_level in levels.items() if known_level == level), None)
        if other is not None:
            raise SnapkitError(
                f"The classes {other!r} and {label!r} would share the MQTT topic level {level!r} (--mqtt keeps "
                "letters, digits, - and _); rename one and train again."
            )
        levels[label] = level
    return levels


def parse_mqtt_url(url: str, device: str | None = None, environ: Mapping[str, str] | None = None) -> MqttSettings:
    """The settings ``--mqtt URL`` (and ``--mqtt-device``) ask for, checked before anything connects.

    The password is the URL's (percent-encoded) or else ``SNAPKIT_MQTT_PASSWORD`` from ``environ`` (default: the
    process environment). Raises SnapkitError, one sentence naming the option, with the password never shown.
    """
    environ = os.environ if environ is None else environ
    shown = redact_url(url)
    form = "mqtt://[user@]host[:port]/prefix (mqtts:// for TLS)"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise SnapkitError(f"--mqtt {shown!r} is not an mqtt:// or mqtts:// URL; give the broker as {form}.")
    if "#" in url:
        raise SnapkitError(
            f"--mqtt {shown!r} holds a '#', a topic wildcard that ends a URL; write it as %23 in a password, "
            f"or give the password in {PASSWORD_ENV}."
        )
    if parts.query:
        raise SnapkitError(f"--mqtt {shown!r} has a ?query, which snapkit does not use; give the broker as {form}.")
    try:
        port = parts.port
    except ValueError:
        raise SnapkitError(
            f"--mqtt {shown!r} has a port that is not a number from 1 to 65535; fix or drop it."
        ) from None
    if not parts.hostname:
        raise SnapkitError(f"--mqtt {shown!r} names no broker host; give it as {form}.")
    try:
        parts.hostname.encode("idna")  # what the lookup does first: "a..b" or a 64-letter label fail here
    except UnicodeError:
        raise SnapkitError(
            f"--mqtt {shown!r}: {parts.hostname!r} is not a host name; check the broker's name."
        ) from None
    prefix = urllib.parse.unquote(parts.path).strip("/")
    if not prefix:
        raise SnapkitError(
            f"--mqtt {shown!r} has no topic prefix; end the URL with one, e.g. {shown.rstrip('/')}/snapkit."
        )
    if any(char in prefix for char in "+#\0"):
        raise SnapkitError(f"--mqtt {shown!r}: the topic prefix {prefix!r} cannot hold + or #; use a plain name.")
    tls = parts.scheme == "mqtts"
    username = None if parts.username is None else urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password) if parts.password else None
    from_env = environ.get(PASSWORD_ENV) or None
    if password is None and from_env is not None:
        if not username:
            raise SnapkitError(
                f"{PASSWORD_ENV} is set but --mqtt {shown!r} names no user; give the user as mqtt://USER@host/prefix."
            )
        password = from_env
    return MqttSettings(
        host=parts.hostname,
        port=port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
        prefix=prefix,
        device=default_device() if device is None else check_device(device),
        tls=tls,
        username=username or None,
        password=password,
    )


# ---------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class MqttMessage:
    """One publish: ``payload`` text on ``topic``, kept by the broker for new subscribers when ``retain``."""

    topic: str
    payload: str
    retain: bool = False


def event_payload(update: EventUpdate, wall_time: datetime) -> dict[str, Any]:
    """What ``<base>/<label>`` carries: ``event_type`` (Home Assistant's name for ``kind``), then the update's record
    (``EventUpdate.to_dict``, keys ``UPDATE_FIELDS``). ``wall_time`` is the wall-clock time of stream second 0."""
    return {"event_type": update.kind, **update.to_dict(wall_time)}


def state_payload(active: Iterable[str], reported_at: str | None) -> dict[str, Any]:
    """What ``<base>/state`` carries: the labels sounding now, sorted, and when that was known (ISO time)."""
    return {"active": sorted(active), "reported_at": reported_at}


def discovery_messages(
    settings: MqttSettings, labels: Iterable[str], model_name: str | None = None
) -> list[MqttMessage]:
    """Home Assistant's discovery configs (retained JSON): per label an ``event`` entity on the label's topic with
    event types start and end, and a ``binary_sensor`` (device class sound) on its ``/active`` topic; all of one
    device, available while ``<base>/availability`` says online."""
    device = {
        "identifiers": [settings.node_id],
        "name": f"snapkit {settings.device}",
        "manufacturer": "snapkit",
        "model": model_name or "snapkit listen",
        "sw_version": snapkit.__version__,
    }
    common = {
        "availability_topic": settings.availability_topic,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": QOS,
        "device": device,
        "origin": {"name": "snapkit", "sw_version": snapkit.__version__},
    }
    messages = []
    for label in labels:
        unique = f"{settings.node_id}_{topic_level(label)}"
        event = {
            "name": label,
            "unique_id": f"{unique}_event",
            "state_topic": settings.event_topic(label),
            "event_types": list(EVENT_TYPES),
            **common,
        }
        sound = {
            "name": label,
            "unique_id": f"{unique}_sound",
            "state_topic": settings.active_topic(label),
            "payload_on": ON,
            "payload_off": OFF,
            "device_class": "sound",
            **common,
        }
        messages.append(MqttMessage(settings.discovery_topic("event", label), json.dumps(event), retain=True))
        messages.append(MqttMessage(settings.discovery_topic("binary_sensor", label), json.dumps(sound), retain=True))
    return messages


def _import_paho() -> Any:
    try:
        import paho.mqtt.client as paho_client
    except ImportError:
        raise SnapkitError("--mqtt needs the paho-mqtt package; install it with pip install 'snapkit[mqtt]'.") from None
    return paho_client


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


# ---------------------------------------------------------------------------------------------- the notifier


class MqttNotifier(Notifier):
    """Publishes every start and end, each class's ON/OFF and the live state, with Home Assistant discovery; see
    the module docstring for the topics and the design.

    Call ``start()`` before listening (``run_live`` does): it connects and waits up to ``connect_wait_s`` for the
    broker. A broker that refuses the user name or password is a SnapkitError; one that does not answer is a warning,
    and listening goes on while paho keeps trying (``reconnect_min_s`` doubling up to ``reconnect_max_s``) and
    messages wait in the queue (``max_queue`` at most, the oldest dropped and counted). ``close()`` lets the queue
    drain for up to ``drain_timeout_s``, publishes "offline" and disconnects.

    The counts (``stats()``) are in messages, not events: ``sent`` is what the broker acknowledged.
    """

    name = "mqtt"
    item_name = "message"
    # The binary_sensor must go OFF when the sound ends, not a post-roll later when the clip is written.
    waits_for_clip = False

    def __init__(
        self,
        settings: MqttSettings,
        labels: Iterable[str],
        *,
        model_name: str | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        connect_wait_s: float = DEFAULT_CONNECT_WAIT_S,
        reconnect_min_s: float = DEFAULT_RECONNECT_MIN_S,
        reconnect_max_s: float = DEFAULT_RECONNECT_MAX_S,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
        on_warning: Warn | None = None,
    ) -> None:
        paho_client = _import_paho()
        # No cooldown: Home Assistant needs every start and its end. Delivery is retried until acknowledged.
        super().__init__(cooldown_s=0.0, max_queue=max_queue, drain_timeout_s=drain_timeout_s, on_warning=on_warning)
        self.settings = settings
        self.labels = tuple(labels)
        check_labels(self.labels)
        self.model_name = model_name
        self.connect_wait_s = float(connect_wait_s)
        self._client = self._make_client(paho_client, reconnect_min_s, reconnect_max_s)
        # Guarded by self._cond, like the queue: written by paho's network thread (callbacks), read by the
        # delivery thread and start()/close().
        self._connected = False
        self._answered = False  # the broker accepted or refused a connection
        self._refusal: tuple[int, str] | None = None  # the latest refusal: reason code and text
        self._birth_due = False  # connected again: discovery and "online" go out before anything else
        self._born = False  # the first birth (with every class OFF) is out
        self._started_up = False  # start() has said how the first connection went
        self._lost_warned = False  # the user has been told the broker is away (once per outage)
        self._client_started = False
        self._client_stopped = False
        self._acked: set[int] = set()  # message ids the broker acknowledged, claimed by the delivery thread
        # Which events of each label are going on: the sink thread's alone (notify), so no lock.
        self._active: dict[str, set[int]] = {}

    def _make_client(self, paho_client: Any, reconnect_min_s: float, reconnect_max_s: float) -> Any:
        settings = self.settings
        client = paho_client.Client(
            paho_client.CallbackAPIVersion.VERSION2,
            # The pid keeps two listeners on one machine from taking turns kicking each other off the broker.
            client_id=f"snapkit-{settings.device}-{os.getpid()}",
            clean_session=True,
            protocol=paho_client.MQTTv311,
        )
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            client.tls_set()  # the system's certificate authorities; the broker's name is checked
        client.will_set(settings.availability_topic, OFFLINE, qos=QOS, retain=True)
        client.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        client.connect_timeout = self.connect_wait_s
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    # ------------------------------------------------------------------ caller side

    @property
    def target(self) -> str:
        return self.settings.url

    def describe(self) -> str:
        return (
            f"MQTT {self.settings.url} as device {self.settings.device!r}: each event's start and end on "
            f"{self.settings.base_topic}/<class>, Home Assistant discovery under {DISCOVERY_PREFIX}/."
        )

    def wants(self, update: EventUpdate) -> bool:
        return True  # starts and ends, as they happen

    def start(self) -> MqttNotifier:
        """Connect (once; later calls return at once) and start the delivery thread; see the class docstring."""
        with self._cond:
            first = not self._client_started and not self._closing
            self._client_started = True
        if first:
            self._connect()
        super().start()
        return self

    def _connect(self) -> None:
        settings, client = self.settings, self._client
        failure = None
        try:
            # The first attempt here rather than on paho's thread, so that the reason it failed can be told.
            client.connect(settings.host, settings.port, keepalive=KEEPALIVE_S)
        except OSError as err:  # refused, unknown host, timed out, TLS (ssl.SSLError is an OSError)
            failure = _reason(err)
            client.connect_async(settings.host, settings.port, keepalive=KEEPALIVE_S)  # paho's thread retries it
        client.loop_start()
        with self._cond:
            if failure is None:
                self._cond.wait_for(lambda: self._answered, self.connect_wait_s)
            connected, refusal = self._connected, self._refusal
            # From here on the callbacks report losses and returns; until here this method does.
            self._started_up = True
            self._lost_warned = not connected
        if connected:
            return
        if refusal is not None and refusal[0] in _BAD_CREDENTIALS:
            self._stop_client()
            who = f"user {settings.username!r}" if settings.username else "anonymous clients"
            raise SnapkitError(
                f"The MQTT broker {settings.where} refused {who} ({refusal[1]}); check the user and password in "
                f"--mqtt or {PASSWORD_ENV}."
            )
        why = failure or (refusal[1] if refusal else f"no answer in {self.connect_wait_s:g} s")
        self._warn(
            f"mqtt: the broker {settings.where} cannot be reached ({why}); listening anyway, events are queued and "
            "sent once it answers."
        )

    def notify(self, update: EventUpdate, wall_time: datetime, clip_path: Path | str | None = None) -> bool:
        """Queue the update's messages: its event on the label's topic and, when the label goes ON or OFF, the
        binary_sensor's state and the live state. Sink thread only. Never blocks."""
        self.start()
        messages = self._messages(update, wall_time)
        with self._cond:
            if self._closing:
                return False
            for message in messages:
                self._enqueue_locked(message)
        return True

    def _messages(self, update: EventUpdate, wall_time: datetime) -> list[MqttMessage]:
        label = update.event.label
        payload = event_payload(update, wall_time)
        messages = [MqttMessage(self.settings.event_topic(label), json.dumps(payload))]
        going_on = self._active.setdefault(label, set())
        was_on = bool(going_on)
        if update.kind == "start":
            going_on.add(update.event_id)
        else:
            going_on.discard(update.event_id)
        if bool(going_on) != was_on:
            active = [name for name, ids in self._active.items() if ids]
            state = state_payload(active, payload["reported_at"])
            messages.append(MqttMessage(self.settings.active_topic(label), ON if going_on else OFF, retain=True))
            messages.append(MqttMessage(self.settings.state_topic, json.dumps(state), retain=True))
        return messages

    def close(self) -> NotifierStats:
        """Let queued messages go out for up to ``drain_timeout_s``, publish "offline", disconnect. Safe twice."""
        super().close()
        self._stop_client()
        return self.stats()

    def _stop_client(self) -> None:
        with self._cond:
            if not self._client_started or self._client_stopped:
                return
            self._client_stopped = True
            connected = self._connected
        if connected:
            info = self._client.publish(self.settings.availability_topic, OFFLINE, qos=QOS, retain=True)
            # RuntimeError: the connection went at this very moment; the last will says offline instead.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(_OFFLINE_WAIT_S)
        self._client.disconnect()
        self._client.loop_stop()

    # ------------------------------------------------------------------ paho's network thread

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        refused = bool(reason_code.is_failure)
        with self._cond:
            self._answered = True
            if refused:
                self._refusal = (int(reason_code.value), str(reason_code))
                warn = self._started_up and not self._lost_warned  # once per outage, not at every retry
                self._lost_warned = True
            else:
                self._connected = True
                self._refusal = None
                self._birth_due = True
                warn = self._started_up and self._lost_warned
                self._lost_warned = False
                waiting = len(self._queue) + int(self._in_flight)
            self._cond.notify_all()
        if warn and refused:
            self._warn(f"mqtt: the broker {self.settings.where} refused the connection ({reason_code}); retrying.")
        elif warn:
            self._warn(f"mqtt: connected to {self.settings.where}; {waiting} queued message(s) follow.")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            warn = was_connected and self._started_up and not self._client_stopped and not self._lost_warned
            self._lost_warned = self._lost_warned or warn
            self._cond.notify_all()
        if warn:
            self._warn(
                f"mqtt: lost the connection to {self.settings.where} ({reason_code}); reconnecting, events are queued."
            )

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        # Called with paho's own locks held: take only ours, and the delivery thread never calls paho under it.
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    # ------------------------------------------------------------------ delivery thread

    def _run(self) -> None:
        while True:
            with self._cond:
                # A message leaves the queue only to be sent: while the broker is away the queue holds all that
                # waits, so its bound is exact and what is left at exit is counted there.
                self._cond.wait_for(self._work_ready)
                if self._abort.is_set():
                    return
                birth: list[MqttMessage] = []
                message: MqttMessage | None = None
                if self._birth_ready():
                    self._birth_due = False
                    birth = self._birth_messages(first=not self._born)
                    self._born = True
                elif self._queue and self._connected:
                    message = self._queue.popleft()
                    self._in_flight = True
                else:
                    return  # closing, and everything went out
            if message is None:
                if any(self._publish(each) is False for each in birth):
                    return  # close() gave up
                continue
            delivered = self._publish(message)
            with self._cond:
                self._in_flight = False
                if delivered:
                    self._sent += 1
                elif delivered is False:
                    self._abandoned += 1
            if delivered is False:
                return

    def _work_ready(self) -> bool:
        return (
            self._abort.is_set()
            or self._birth_ready()
            or bool(self._queue and self._connected)
            or (self._closing and not self._queue)
        )

    def _birth_ready(self) -> bool:
        return self._birth_due and self._connected

    def _birth_messages(self, *, first: bool) -> list[MqttMessage]:
        """What goes out on each connection before anything queued: discovery and "online"; on the first one also
        every class OFF and an empty live state (the queue then brings what happened before it)."""
        settings = self.settings
        messages = [*discovery_messages(settings, self.labels, self.model_name)]
        messages.append(MqttMessage(settings.availability_topic, ONLINE, retain=True))
        if first:
            messages += [MqttMessage(settings.active_topic(label), OFF, retain=True) for label in self.labels]
            now = iso_time(datetime.now().astimezone())
            messages.append(MqttMessage(settings.state_topic, json.dumps(state_payload([], now)), retain=True))
        return messages

    def _publish(self, message: MqttMessage) -> bool | None:
        """Publish ``message`` once connected and wait for the broker's acknowledgement, through disconnects (paho
        sends it again on reconnect). True: acknowledged; False: close() gave up first; None: paho refused it
        (counted and warned as failed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._connected or self._abort.is_set())
            if self._abort.is_set():
                return False
            self._acked.clear()  # one message in flight: nothing older can still be acknowledged
        try:
            info = self._client.publish(message.topic, message.payload, qos=QOS, retain=message.retain)
        except Exception as err:  # a bad topic or payload; never let the delivery thread die
            with self._cond:
                self._failed += 1
            self._warn(f"mqtt could not publish on {message.topic}: {type(err).__name__}: {err}")
            return None
        # rc is "no connection" when the connection dropped just now: paho keeps the message and sends it on
        # reconnect, so it is waited for like any other.
        with self._cond:
            self._cond.wait_for(lambda: info.mid in self._acked or self._abort.is_set())
            acknowledged = info.mid in self._acked
            self._acked.discard(info.mid)
        return acknowledged


def mqtt_model_name(model: Path) -> str:
    """How the device block names a model: the run folder for ``runs/NAME/model.snapkit``, else the file stem."""
    model = Path(os.path.abspath(model))
    return model.parent.name if model.stem == "model" and model.parent.name else model.stem
