"""`snapkit listen --mqtt`: events, live state and Home Assistant discovery on a real broker.

Each test module run starts Debian's mosquitto on free 127.0.0.1 ports (one broker open to anyone, with persistence
so that it can be restarted mid-run, and one that wants a password) and subscribes with paho. Listening is driven
through ``run_live`` with the fake detector of ``tests/test_listen.py`` (events at exact, known times) and one test
runs the real CLI on the PulseAudio virtual microphone.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from snapkit.audio.sources import ArraySource
from snapkit.detection.events import UPDATE_FIELDS, EventUpdate
from snapkit.detection.live import run_live
from snapkit.detection.mqtt import (
    PASSWORD_ENV,
    MqttNotifier,
    MqttSettings,
    check_labels,
    default_device,
    parse_mqtt_url,
    redact_url,
)
from snapkit.detection.notify import Notifier
from snapkit.detection.sinks import ClipSaver, EventLog
from snapkit.errors import SnapkitError
from tests.conftest import REPO, VirtualMic, skip_or_fail
from tests.test_listen import BLOCK_S, RATE, FakeDetector, planted

mqtt = pytest.importorskip("paho.mqtt.client")

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
USER, PASSWORD = "snapkit", "s3cret-Pw"
# Fast retries, so that a broker coming back is noticed within a fraction of a second.
FAST = {"connect_wait_s": 2.0, "reconnect_min_s": 0.1, "reconnect_max_s": 0.2}


# ---------------------------------------------------------------------------------------------- broker and client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Broker:
    """A mosquitto on 127.0.0.1:``port`` with ``extra`` config lines; ``stop()`` and ``start()`` again on the same
    port (SIGTERM: with persistence on, sessions and retained messages are saved and come back)."""

    def __init__(self, folder: Path, extra: list[str]) -> None:
        assert MOSQUITTO is not None
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        # `user`: when the tests run as root, stay root rather than switch to a `mosquitto` account.
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}", *extra]
        self.config.write_text("\n".join(lines) + "\n")
        self.log = folder / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.02)
        pytest.fail(f"mosquitto did not open port {self.port}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
        self.process = None


def _broker(tmp_path_factory: pytest.TempPathFactory, name: str, extra: list[str]) -> Iterator[Broker]:
    if MOSQUITTO is None:
        skip_or_fail("the mosquitto broker is not installed (apt install mosquitto)")
    broker = Broker(tmp_path_factory.mktemp(name), extra)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Open to anyone; persistence, so that a subscriber's session and queued messages survive a restart."""
    folder = tmp_path_factory.mktemp("persist")
    yield from _broker(
        tmp_path_factory, "broker", ["allow_anonymous true", "persistence true", f"persistence_location {folder}/"]
    )


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Wants user ``USER`` with ``PASSWORD``."""
    if shutil.which("mosquitto_passwd") is None:
        skip_or_fail("mosquitto_passwd is not installed (apt install mosquitto)")
    passwords = tmp_path_factory.mktemp("auth") / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), USER, PASSWORD], check=True, capture_output=True)
    yield from _broker(tmp_path_factory, "auth-broker", ["allow_anonymous false", f"password_file {passwords}"])


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Path]]:
    """Speaks TLS only, with a certificate for 127.0.0.1 from a certificate authority made here; yields the broker
    and the authority's certificate."""
    if shutil.which("openssl") is None:
        skip_or_fail("openssl is not installed (apt install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sign = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "san.ext"]
    for command in (
        ["req", "-x509", *ec, "-days", "1", "-subj", "/CN=snapkit test CA", "-keyout", "ca.key", "-out", "ca.crt"],
        ["req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"],
        ["x509", "-req", "-in", "server.csr", *sign, "-out", "server.crt"],
    ):
        subprocess.run(["openssl", *command], cwd=folder, check=True, capture_output=True)
    extra = ["allow_anonymous true", *(f"{key} {folder / name}" for key, name in TLS_FILES.items())]
    for broker in _broker(tmp_path_factory, "tls-broker", extra):
        yield broker, folder / "ca.crt"


TLS_FILES = {"cafile": "ca.crt", "certfile": "server.crt", "keyfile": "server.key"}


@dataclass(frozen=True)
class Received:
    topic: str
    payload: str
    retain: bool


class Subscriber:
    """A paho subscriber keeping every message it gets. With ``client_id`` its session is persistent (clean
    session off, QoS 1): what is published while it is away is kept for it by the broker, and a message is
    acknowledged before it is kept, so that after ``close()`` the broker owes it nothing it has already seen."""

    def __init__(
        self,
        port: int,
        topics: list[str],
        client_id: str | None = None,
        auth: tuple[str, str] | None = None,
        tls_ca: Path | None = None,
    ) -> None:
        self.received: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or "",
            clean_session=client_id is None,
            manual_ack=True,
        )
        if auth is not None:
            self.client.username_pw_set(*auth)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.reconnect_delay_set(0.1, 0.2)
        self.topics = topics
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "the subscription was not acknowledged"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if flags.session_present:
            self._subscribed.set()  # the broker kept the subscriptions (and resubscribing would resend retained)
        else:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        # The acknowledgement is queued before anyone can see the message and disconnect: never redelivered.
        client.ack(message.mid, message.qos)
        with self._cond:
            self.received.append(Received(message.topic, message.payload.decode(), bool(message.retain)))
            self._cond.notify_all()

    def wait_for(self, done: Callable[[list[Received]], bool], timeout_s: float = 15.0) -> list[Received]:
        """What has been received once ``done`` says so; fails the test after ``timeout_s``."""
        with self._cond:
            assert self._cond.wait_for(lambda: done(self.received), timeout_s), self.received
            return list(self.received)

    def on(self, topic: str) -> list[str]:
        """The payloads published on ``topic`` while subscribed (not the retained copies a resubscription gets)."""
        with self._cond:
            return [m.payload for m in self.received if m.topic == topic and not m.retain]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def topics_of(settings: MqttSettings) -> list[str]:
    return [f"{settings.base_topic}/#", f"homeassistant/+/{settings.node_id}/+/config"]


def retained(port: int, settings: MqttSettings, count: int) -> dict[str, Received]:
    """What the broker keeps for a newcomer: the newest retained message of each topic (``count`` expected)."""
    with Subscriber(port, topics_of(settings)) as late:
        messages = late.wait_for(lambda got: len(got) >= count)
    return {m.topic: m for m in messages}


def settings_for(broker: Broker, device: str, user: str = "") -> MqttSettings:
    return parse_mqtt_url(f"mqtt://{user}127.0.0.1:{broker.port}/snapkit-test", device, environ={})


def event_records(
    messages: list[Received], settings: MqttSettings, labels: tuple[str, ...] = FakeDetector.labels
) -> list[dict[str, Any]]:
    """The start/end payloads on the classes' topics, in arrival order."""
    topics = {settings.event_topic(label) for label in labels}
    return [json.loads(m.payload) for m in messages if m.topic in topics]


def log_records(path: Path) -> list[dict[str, Any]]:
    """The event log's lines without ``filename``: the update's record."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [{key: record[key] for key in UPDATE_FIELDS} for record in records]


class ScriptedSource(ArraySource):
    """``audio`` in blocks of ``BLOCK_S``; before block ``i`` runs ``hooks[i]`` on the inference thread, so the
    broker can go away and come back between two blocks of a listening session."""

    def __init__(self, audio: np.ndarray, hooks: dict[int, Callable[[], None]]) -> None:
        super().__init__(audio, RATE, BLOCK_S)
        self.hooks = hooks

    def blocks(self) -> Iterator[np.ndarray]:
        for index, block in enumerate(super().blocks()):
            if index in self.hooks:
                self.hooks[index]()
            yield block


def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def mqtt_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "snapkit-notify-mqtt" or t.name.startswith("paho")]


# Knock 0.2-0.4 s, clap 0.6-0.8 s (blocks 4-7 and 12-15 of 50 ms), then 0.2 s of quiet.
TWO_EVENTS = [(0.2, 0.0), (0.2, 0.5), (0.2, 0.0), (0.2, -0.5), (0.2, 0.0)]


def segments(events: int) -> list[tuple[float, float]]:
    """``events`` alternating knocks and claps of 0.1 s (2 blocks), each followed by 0.1 s of quiet."""
    out = [(0.1, 0.0)]
    for index in range(events):
        out += [(0.1, 0.5 if index % 2 == 0 else -0.5), (0.1, 0.0)]
    return out


# ---------------------------------------------------------------------------------------------- settings


def test_the_url_gives_host_port_tls_prefix_and_user() -> None:
    plain = parse_mqtt_url("mqtt://homeassistant.local/snapkit", "garage", environ={})
    assert (plain.host, plain.port, plain.tls, plain.prefix, plain.device) == (
        "homeassistant.local",
        1883,
        False,
        "snapkit",
        "garage",
    )
    assert plain.username is None and plain.password is None
    tls = parse_mqtt_url("mqtts://ha%40home:p%2Fw%23rd@10.0.0.2:8884/home/snapkit/", "g", environ={})
    assert (tls.port, tls.tls, tls.prefix, tls.username, tls.password) == (
        8884,
        True,
        "home/snapkit",
        "ha@home",
        "p/w#rd",
    )
    assert parse_mqtt_url("mqtts://broker/x", "g", environ={}).port == 8883
    assert tls.event_topic("dog bark") == "home/snapkit/g/dog_bark"
    assert tls.discovery_topic("binary_sensor", "dog bark") == "homeassistant/binary_sensor/snapkit_g/dog_bark/config"
    # Shown and repr'd without the password.
    assert tls.url == "mqtts://ha%40home:***@10.0.0.2:8884/home/snapkit" and "p/w" not in repr(tls)


def test_the_password_can_come_from_the_environment() -> None:
    from_env = parse_mqtt_url("mqtt://ha@broker/snapkit", "g", environ={PASSWORD_ENV: "from-env"})
    assert from_env.password == "from-env" and "from-env" not in from_env.url
    # The URL's own password wins.
    assert parse_mqtt_url("mqtt://ha:url@broker/s", "g", environ={PASSWORD_ENV: "env"}).password == "url"
    with pytest.raises(SnapkitError, match=rf"^{PASSWORD_ENV} is set but --mqtt .* names no user; .*\.$"):
        parse_mqtt_url("mqtt://broker/snapkit", "g", environ={PASSWORD_ENV: "from-env"})


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://ha:pw-123@broker/snapkit", "is not an mqtt:// or mqtts:// URL"),
        ("broker/snapkit", "is not an mqtt:// or mqtts:// URL"),
        ("mqtt:///snapkit", "names no broker host"),
        ("mqtt://ha:pw-123@broker..lan/snapkit", "'broker..lan' is not a host name"),
        ("mqtt://ha:pw-123@broker", "has no topic prefix"),
        ("mqtt://ha:pw-123@broker/", "has no topic prefix"),
        ("mqtt://broker/snap+kit", "cannot hold + or #"),
        ("mqtt://broker/snap%23kit", "cannot hold + or #"),
        ("mqtt://ha:pw-123#x@broker/snapkit", "holds a '#'"),
        ("mqtt://broker/snapkit#", "holds a '#'"),
        ("mqtt://ha:pw-123@broker:http/snapkit", "port that is not a number"),
        ("mqtt://broker:70000/snapkit", "port that is not a number"),
        ("mqtt://broker/snapkit?qos=2", "has a ?query"),
    ],
)
def test_a_bad_url_is_one_sentence_naming_mqtt_without_the_password(url: str, says: str) -> None:
    with pytest.raises(SnapkitError) as caught:
        parse_mqtt_url(url, "g", environ={})
    message = str(caught.value)
    assert message.startswith("--mqtt ") and says in message and message.endswith(".")
    assert "pw-123" not in message


@pytest.mark.parametrize("device", ["my device", "a/b", "x+", "#", "", "é", "x" * 65])
def test_a_bad_device_name_is_one_sentence(device: str) -> None:
    with pytest.raises(SnapkitError, match=r"^--mqtt-device .* cannot be an MQTT topic level; .*e\.g\. garage\.$"):
        parse_mqtt_url("mqtt://broker/snapkit", device, environ={})


def test_the_default_device_is_the_host_name_as_a_topic_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "Living Room Pi.fritz.box")
    assert default_device() == "living-room-pi"
    assert parse_mqtt_url("mqtt://broker/snapkit", environ={}).device == "living-room-pi"
    monkeypatch.setattr(socket, "gethostname", lambda: "...")
    assert default_device() == "snapkit"


def test_redaction_hides_the_password_even_in_urls_that_do_not_parse() -> None:
    assert redact_url("mqtt://u:pw@h/x") == "mqtt://u:***@h/x"
    assert redact_url("mqtt://u:p@w#x@h:1/x") == "mqtt://u:***@h:1/x"
    assert redact_url("mqtt://h/x@y") == "mqtt://h/x@y"  # an @ in the prefix, no user
    assert redact_url("mqtt://h/x") == "mqtt://h/x"


def test_classes_that_would_share_a_topic_are_refused() -> None:
    assert check_labels(["dog bark", "door-bell"]) == {"dog bark": "dog_bark", "door-bell": "door-bell"}
    with pytest.raises(SnapkitError, match=r"'dog bark' and 'dog_bark' would share the MQTT topic level"):
        check_labels(["dog bark", "dog_bark"])
    with pytest.raises(SnapkitError, match=r"The class 'state' cannot be published with --mqtt"):
        check_labels(["knock", "state"])


def test_without_paho_mqtt_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("paho", "paho.mqtt", "paho.mqtt.client"):
        monkeypatch.setitem(sys.modules, name, None)  # what a missing package looks like to import
    with pytest.raises(SnapkitError, match=r"^--mqtt needs the paho-mqtt package; .*pip install 'snapkit\[mqtt\]'\.$"):
        MqttNotifier(parse_mqtt_url("mqtt://broker/snapkit", "g", environ={}), ["knock"])


def test_the_cli_imports_no_paho_until_mqtt_is_used() -> None:
    # listen and service, which take --mqtt (snapkit.cli.app itself is slower to import: calibrate loads torch).
    code = "import sys, snapkit.cli.listen, snapkit.cli.service; print([m for m in sys.modules if 'paho' in m])"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # a check that can fail: test_mqtt.py itself has imported paho


def test_listen_refuses_a_bad_url_before_loading_the_model() -> None:
    import typer
    from typer.testing import CliRunner

    from snapkit.cli import listen as listen_cli

    app = typer.Typer()
    app.callback()(lambda: None)
    listen_cli.register(app)
    # The model does not exist: the URL is refused before anything would notice.
    result = CliRunner().invoke(app, ["listen", "missing.snapkit", "--mqtt", "mqtt://ha:pw-123@broker"])
    assert isinstance(result.exception, SnapkitError) and "has no topic prefix" in str(result.exception)
    assert "pw-123" not in str(result.exception)
    result = CliRunner().invoke(app, ["listen", "missing.snapkit", "--mqtt-device", "garage"])
    assert isinstance(result.exception, SnapkitError) and "give --mqtt URL as well" in str(result.exception)


# ---------------------------------------------------------------------------------------------- on a broker


def test_run_live_publishes_discovery_events_sensors_state_and_availability(broker: Broker, tmp_path: Path) -> None:
    settings = settings_for(broker, "run-live")
    log = EventLog(tmp_path / "events.jsonl")
    warnings: list[str] = []
    with Subscriber(broker.port, topics_of(settings)) as watcher:
        notifier = MqttNotifier(settings, FakeDetector.labels, model_name="garage", on_warning=warnings.append)
        summary = run_live(FakeDetector(), ArraySource(planted(TWO_EVENTS), RATE, BLOCK_S), [log], [notifier])
        got = watcher.wait_for(lambda got: any(m.payload == "offline" for m in got))
    assert warnings == [] and mqtt_threads() == []
    (stats,) = summary.notifiers
    # 4 updates: each an event, a binary_sensor state and the live state.
    assert (stats.name, stats.sent, stats.failed, stats.dropped, stats.pending) == ("mqtt", 12, 0, 0, 0)

    # The start/end payloads are the event log's records, with Home Assistant's event_type = kind.
    records = event_records(got, settings)
    assert [r.pop("event_type") for r in records] == ["start", "end", "start", "end"]
    assert records == log_records(tmp_path / "events.jsonl")
    assert [(r["label"], r["kind"], r["onset_s"], r["offset_s"]) for r in records] == [
        ("knock", "start", 0.2, None),
        ("knock", "end", 0.2, 0.4),
        ("clap", "start", 0.6, None),
        ("clap", "end", 0.6, 0.8),
    ]
    # Each class OFF at first (a stale ON from a crashed run is replaced), ON while it sounds, then OFF.
    assert watcher.on(settings.active_topic("knock")) == ["OFF", "ON", "OFF"]
    assert watcher.on(settings.active_topic("clap")) == ["OFF", "ON", "OFF"]
    states = [json.loads(p)["active"] for p in watcher.on(settings.state_topic)]
    assert states == [[], ["knock"], [], ["clap"], []]
    assert watcher.on(settings.availability_topic) == ["online", "offline"]
    # Discovery came first, before anything it describes.
    assert got[0].topic.startswith("homeassistant/")

    # What Home Assistant finds when it (re)connects: all retained.
    kept = retained(broker.port, settings, count=4 + 2 + 1 + 1)
    assert all(m.retain for m in kept.values())
    assert kept[settings.availability_topic].payload == "offline"
    assert kept[settings.active_topic("knock")].payload == "OFF"
    assert json.loads(kept[settings.state_topic].payload)["active"] == []
    configs = {topic: json.loads(m.payload) for topic, m in kept.items() if topic.startswith("homeassistant/")}
    assert set(configs) == {
        f"homeassistant/{component}/snapkit_run-live/{label}/config"
        for component in ("event", "binary_sensor")
        for label in ("knock", "clap")
    }
    assert len({config["unique_id"] for config in configs.values()}) == 4
    event = configs["homeassistant/event/snapkit_run-live/knock/config"]
    assert event["state_topic"] == "snapkit-test/run-live/knock" and event["event_types"] == ["start", "end"]
    sound = configs["homeassistant/binary_sensor/snapkit_run-live/knock/config"]
    assert sound["state_topic"] == "snapkit-test/run-live/knock/active" and sound["device_class"] == "sound"
    assert (sound["payload_on"], sound["payload_off"]) == ("ON", "OFF")
    for config in configs.values():
        assert config["availability_topic"] == "snapkit-test/run-live/availability"
        assert config["device"]["identifiers"] == ["snapkit_run-live"] and config["device"]["model"] == "garage"


def test_the_last_will_says_offline_when_the_listener_dies(broker: Broker) -> None:
    settings = settings_for(broker, "will")
    script = (
        "import sys, time\n"
        "from snapkit.detection.mqtt import MqttNotifier, parse_mqtt_url\n"
        "MqttNotifier(parse_mqtt_url(sys.argv[1], sys.argv[2]), ['knock']).start()\n"
        "time.sleep(60)\n"
    )
    url = f"mqtt://127.0.0.1:{broker.port}/snapkit-test"
    with Subscriber(broker.port, topics_of(settings)) as watcher:
        listener = subprocess.Popen([sys.executable, "-c", script, url, "will"], cwd=REPO)
        try:
            # The live state is the last of what a listener publishes when it connects.
            assert watcher.wait_for(lambda got: settings.state_topic in {m.topic for m in got}, timeout_s=20)
        finally:
            listener.kill()  # SIGKILL: no clean disconnect, the broker sees the connection drop
            listener.wait(10)
        watcher.wait_for(lambda got: got[-1].payload == "offline")
        assert watcher.on(settings.availability_topic) == ["online", "offline"]
    assert retained(broker.port, settings, count=5)[settings.availability_topic].payload == "offline"


def test_the_right_password_connects_from_the_environment(auth_broker: Broker) -> None:
    settings = parse_mqtt_url(
        f"mqtt://{USER}@127.0.0.1:{auth_broker.port}/snapkit-test", "auth", environ={PASSWORD_ENV: PASSWORD}
    )
    warnings: list[str] = []
    with Subscriber(auth_broker.port, topics_of(settings), auth=(USER, PASSWORD)) as watcher:
        notifier = MqttNotifier(settings, ["knock"], on_warning=warnings.append).start()
        watcher.wait_for(lambda got: "online" in [m.payload for m in got])
        notifier.close()
        watcher.wait_for(lambda got: got[-1].payload == "offline")
        assert watcher.on(settings.availability_topic) == ["online", "offline"]
    assert warnings == [] and PASSWORD not in notifier.target and mqtt_threads() == []


@pytest.mark.parametrize(
    ("user", "refused"), [(f"{USER}:wrong-Pw@", f"refused user '{USER}'"), ("", "refused anonymous clients")]
)
def test_a_refused_password_is_one_sentence_and_stops_trying(auth_broker: Broker, user: str, refused: str) -> None:
    notifier = MqttNotifier(settings_for(auth_broker, "auth", user), ["knock"])
    with pytest.raises(SnapkitError) as caught:
        notifier.start()
    message = str(caught.value)
    assert refused in message and f"--mqtt or {PASSWORD_ENV}." in message and "wrong-Pw" not in message
    assert message.count(". ") == 0 and message.endswith(".")
    notifier.close()
    assert mqtt_threads() == []


def test_mqtts_checks_the_brokers_certificate(tls_broker: tuple[Broker, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    broker, ca = tls_broker
    settings = parse_mqtt_url(f"mqtts://127.0.0.1:{broker.port}/snapkit-test", "tls", environ={})
    # Not signed by an authority the system trusts: a warning naming the reason, and listening goes on.
    warnings: list[str] = []
    untrusted = MqttNotifier(settings, FakeDetector.labels, on_warning=warnings.append, **FAST).start()
    untrusted.close()
    assert len(warnings) == 1 and "cannot be reached ([SSL: CERTIFICATE_VERIFY_FAILED]" in warnings[0]
    # Trusted (OpenSSL reads SSL_CERT_FILE as the system's authorities): events go out over TLS.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    warnings.clear()
    with Subscriber(broker.port, topics_of(settings), tls_ca=ca) as watcher:
        notifier = MqttNotifier(settings, FakeDetector.labels, on_warning=warnings.append)
        run_live(FakeDetector(), ArraySource(planted(TWO_EVENTS), RATE, BLOCK_S), [], [notifier])
        got = watcher.wait_for(lambda got: any(m.payload == "offline" for m in got))
    assert warnings == [] and [r["kind"] for r in event_records(got, settings)] == ["start", "end", "start", "end"]


def test_a_restarted_broker_gets_every_event_in_order(broker: Broker, tmp_path: Path) -> None:
    settings = settings_for(broker, "restart")
    warnings: list[str] = []
    notifier = MqttNotifier(settings, FakeDetector.labels, on_warning=warnings.append, **FAST)
    # A persistent session: what is published while this subscriber is away is kept for it.
    watcher = Subscriber(broker.port, topics_of(settings), client_id="restart-watcher")

    def broker_goes_away() -> None:
        assert wait_until(lambda: notifier.stats().sent == 12)  # the first two events are out
        watcher.wait_for(lambda got: len(event_records(got, settings)) == 4 and got[-1].topic == settings.state_topic)
        watcher.close()
        broker.stop()
        assert wait_until(lambda: any("lost the connection" in w for w in warnings))

    def broker_comes_back() -> None:
        assert wait_until(lambda: notifier.stats().pending == 18)  # events 3 to 5 wait in the queue
        broker.start()

    # 6 events; the broker is away from block 9 to block 21: events 3, 4 and 5 happen while it is.
    source = ScriptedSource(planted(segments(6)), {9: broker_goes_away, 21: broker_comes_back})
    log = EventLog(tmp_path / "events.jsonl")
    summary = run_live(FakeDetector(), source, [log], [notifier])
    expected = log_records(tmp_path / "events.jsonl")
    assert len(expected) == 12
    with Subscriber(broker.port, topics_of(settings), client_id="restart-watcher") as back:
        back.wait_for(lambda got: len(event_records(got, settings)) == 8 and got[-1].payload == "offline")
    got = [*watcher.received, *back.received]
    records = event_records(got, settings)
    assert [r.pop("event_type") for r in records] == [r["kind"] for r in expected]
    assert records == expected  # all of them, once each, in order
    knock = [m.payload for m in got if m.topic == settings.active_topic("knock") and not m.retain]
    assert knock == ["OFF", "ON", "OFF", "ON", "OFF", "ON", "OFF"]
    (stats,) = summary.notifiers
    assert (stats.sent, stats.failed, stats.dropped, stats.pending) == (36, 0, 0, 0)
    lost = [w for w in warnings if "lost the connection" in w]
    back_again = [w for w in warnings if "connected to" in w]
    assert len(lost) == 1 and len(back_again) == 1 and len(warnings) == 2, warnings
    assert f"127.0.0.1:{broker.port}" in back_again[0] and "queued message(s) follow" in back_again[0]


def test_an_absent_broker_warns_once_and_a_full_queue_keeps_the_newest(broker: Broker, tmp_path: Path) -> None:
    settings = settings_for(broker, "absent", user="ha:pw-123@")
    # A persistent session made while the broker is there, so it keeps what arrives once the broker is back.
    Subscriber(broker.port, topics_of(settings), client_id="absent-watcher").close()
    broker.stop()
    warnings: list[str] = []
    notifier = MqttNotifier(settings, FakeDetector.labels, max_queue=6, on_warning=warnings.append, **FAST)
    started = time.monotonic()
    notifier.start()
    assert time.monotonic() - started < 1.0  # refused at once: no waiting
    assert len(warnings) == 1 and "cannot be reached" in warnings[0] and "listening anyway" in warnings[0]

    def broker_comes_back() -> None:
        assert wait_until(lambda: notifier.stats().dropped == 18)  # all 4 events are through the queue
        broker.start()
        assert wait_until(lambda: notifier.stats().pending == 0)

    # 4 events while the broker is away: 8 updates, 24 messages; the queue keeps the last 6 (the 4th event's).
    audio = planted(segments(4))
    log = EventLog(tmp_path / "events.jsonl")
    summary = run_live(FakeDetector(), ScriptedSource(audio, {17: broker_comes_back}), [log], [notifier])
    (stats,) = summary.notifiers
    assert (stats.sent, stats.failed, stats.dropped, stats.pending) == (6, 0, 18, 0)
    with Subscriber(broker.port, topics_of(settings), client_id="absent-watcher") as watcher:
        got = watcher.wait_for(lambda got: len(event_records(got, settings)) >= 2 and got[-1].payload == "offline")
    records = event_records(got, settings)
    assert [(r["kind"], r["event_id"]) for r in records] == [("start", 4), ("end", 4)]
    assert all("pw-123" not in w for w in warnings) and any("connected to" in w for w in warnings)


def test_a_queue_left_at_exit_is_reported(tmp_path: Path) -> None:
    settings = parse_mqtt_url(f"mqtt://127.0.0.1:{free_port()}/snapkit-test", "gone", environ={})
    warnings: list[str] = []
    notifier = MqttNotifier(settings, FakeDetector.labels, drain_timeout_s=0.2, on_warning=warnings.append, **FAST)
    summary = run_live(FakeDetector(), ArraySource(planted(TWO_EVENTS), RATE, BLOCK_S), [], [notifier])
    assert summary.notifiers[0].sent == 0 and summary.notifiers[0].dropped == 0
    assert warnings[-1] == "mqtt: 12 message(s) were still queued at exit and were not sent."
    assert mqtt_threads() == []


def test_mqtt_does_not_wait_for_the_clip_while_notifiers_that_carry_it_do(tmp_path: Path) -> None:
    class Seen(Notifier):
        """Records, for each update it is given, how many clips were saved by then."""

        def __init__(self, waits: bool, saver: ClipSaver) -> None:
            super().__init__(cooldown_s=0)
            self.waits_for_clip = waits
            self.saver = saver
            self.seen: list[tuple[str, int]] = []

        def wants(self, update: EventUpdate) -> bool:
            return True

        def notify(self, update: EventUpdate, wall_time: datetime, clip_path: object = None) -> bool:
            self.seen.append((update.kind, self.saver.saved_count))
            return True

    saver = ClipSaver(tmp_path / "clips", post_roll_s=0.5, sample_rate_hz=RATE)
    at_once, with_clip = Seen(False, saver), Seen(True, saver)
    run_live(
        FakeDetector(), ArraySource(planted(TWO_EVENTS), RATE, BLOCK_S), [], [at_once, with_clip], clip_saver=saver
    )
    # The knock's clip is written 0.5 s after it ends, after the clap has started: MQTT said "end" at once.
    assert at_once.seen == [("start", 0), ("end", 0), ("start", 0), ("end", 0)]
    assert with_clip.seen == [("start", 0), ("start", 0), ("end", 1), ("end", 2)]


# ---------------------------------------------------------------------------------------------- the real CLI


@pytest.mark.e2e
def test_listen_cli_publishes_to_home_assistant_and_never_shows_the_password(
    virtual_mic: VirtualMic, auth_broker: Broker, tmp_path: Path
) -> None:
    import torch

    from snapkit.models import ModelBundle, ModelConfig, SoundClassifier

    torch.manual_seed(0)
    model = SoundClassifier(ModelConfig(backbone="convnet", labels=("beep", "snap")), None).eval()
    bundle = ModelBundle.from_model(model).save(tmp_path / "garage" / "model.snapkit")
    settings = parse_mqtt_url(f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{auth_broker.port}/e2e", "cli", environ={})
    log = tmp_path / "events.jsonl"
    # An untrained model says about 0.5 for each class, whatever it hears: low thresholds make each class one
    # event from the first second, closed when the duration ends.
    args = ["listen", str(bundle), "--device", "pulse", "--sample-rate-hz", "16000", "--duration-s", "1.5"]
    args += ["--threshold", "beep=0.05", "--threshold", "snap=0.05", "--events", str(log)]
    args += ["--mqtt", f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{auth_broker.port}/e2e", "--mqtt-device", "cli"]
    with Subscriber(auth_broker.port, topics_of(settings), auth=(USER, PASSWORD)) as watcher:
        result = subprocess.run(
            [sys.executable, "-m", "snapkit", *args],
            env={**virtual_mic.env, "COLUMNS": "200", "NO_COLOR": "1"},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        got = watcher.wait_for(lambda got: bool(got) and got[-1].payload == "offline")
    output = result.stdout + result.stderr
    assert PASSWORD not in output
    assert f"MQTT mqtt://{USER}:***@127.0.0.1:{auth_broker.port}/e2e as device 'cli'" in output
    assert "mqtt: " in output and " sent, 0 failed, 0 dropped" in output
    configs = [m for m in got if m.topic.startswith("homeassistant/")]
    assert {m.topic for m in configs} == {
        f"homeassistant/{component}/snapkit_cli/{label}/config"
        for component in ("event", "binary_sensor")
        for label in ("beep", "snap")
    }
    assert all(json.loads(m.payload)["device"]["model"] == "garage" for m in configs)
    records = event_records(got, settings, ("beep", "snap"))
    assert [r.pop("event_type") for r in records] == [r["kind"] for r in records]
    assert records == log_records(log) and {r["kind"] for r in records} == {"start", "end"}
    assert watcher.on(settings.availability_topic) == ["online", "offline"]
