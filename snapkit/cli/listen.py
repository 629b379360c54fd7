"""``snapkit listen``: run a trained model on the microphone and report events as they happen.

torch and the model loader are imported inside the command, so ``snapkit --help`` stays fast.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from snapkit.audio.sources import MicrophoneSource, ReconnectingMicrophone
from snapkit.cli.options import (
    DeviceOption,
    HopOption,
    MinLevelOption,
    SampleRateOption,
    SensitivityOption,
    ThresholdOption,
    detector_settings,
    thresholds_for,
)
from snapkit.cli.ui import DetectorMode, ModeOption, console, level_bar
from snapkit.detection.live import LiveStatus, LiveSummary, run_live
from snapkit.detection.mqtt import PASSWORD_ENV, MqttNotifier, mqtt_model_name, parse_mqtt_url
from snapkit.detection.notify import DEFAULT_COOLDOWN_S, ExecNotifier, Notifier, WebhookNotifier
from snapkit.detection.outputs import FORMATS_TEXT
from snapkit.detection.sinks import ClipSaver, EventLog, EventPrinter, Sink, print_warning
from snapkit.detection.textlog import DEFAULT_LOG_MAX_MB, close_log_file, logger, open_log_file
from snapkit.errors import SnapkitError

if TYPE_CHECKING:
    from snapkit.detection.detector import Detector
    from snapkit.detection.group import DetectorGroup

PROBABILITY_BAR_WIDTH = 24
# Saved clips' paths listen keeps (its count of them is whole): enough for any view, bounded for months of listening.
RECENT_CLIPS = 100
EVENTS_HELP = (
    f"Append every event start and end to this file as it happens, in the format its extension names: {FORMATS_TEXT}, "
    "as for `snapkit detect --events`; .tsv (the DCASE layout) gets finished events only. A .json list is rewritten "
    "whole each time: for long sessions .jsonl is cheaper."
)
MODEL_HELP = "A trained model bundle (runs/NAME/model.snapkit)."
# Spelled once here, shared with `snapkit service install`, which passes them on to listen.
EventsOption = Annotated[Path | None, typer.Option("--events", help=EVENTS_HELP)]
SaveClipsOption = Annotated[
    Path | None, typer.Option("--save-clips", help="Save each event's audio as a WAV file into this folder.")
]
LogOption = Annotated[
    Path | None,
    typer.Option(
        "--log",
        help="Also write what listen prints (settings, events, warnings, the device going and coming back) to this "
        "file, with the time; it rotates by size (see --log-max-mb), keeping 3 old ones as FILE.1 ... FILE.3.",
    ),
]
LogMaxOption = Annotated[
    float, typer.Option("--log-max-mb", help="Size in megabytes at which the --log file is rotated.")
]
MqttOption = Annotated[
    str | None,
    typer.Option(
        "--mqtt",
        metavar="URL",
        # "\\[": help is rich markup, where "[user@]" would read as a style tag and vanish.
        help="Publish each event's start and end, each class's ON/OFF and Home Assistant discovery to this MQTT "
        f"broker: mqtt://\\[user@]host\\[:port]/prefix (mqtts:// for TLS). The password is best given in "
        f"{PASSWORD_ENV}.",
    ),
]
MqttDeviceOption = Annotated[
    str | None,
    typer.Option(
        "--mqtt-device",
        metavar="NAME",
        help="This listener's name in the MQTT topics and in Home Assistant (default: the machine's host name).",
    ),
]


def listen(
    model: Annotated[
        list[Path],
        typer.Argument(
            help=MODEL_HELP + " Several listen on one microphone at once; those trained on the same pretrained "
            "backbone (e.g. sfx-cnn9) share it, so each more costs only its small head.",
        ),
    ],
    device: DeviceOption = None,
    samplerate: SampleRateOption = None,
    events: EventsOption = None,
    save_clips: SaveClipsOption = None,
    pre_roll: Annotated[
        float,
        typer.Option("--pre-roll-s", "--pre-roll", min=0.0, help="Seconds of audio kept before each saved event."),
    ] = 1.0,
    post_roll: Annotated[
        float,
        typer.Option("--post-roll-s", "--post-roll", min=0.0, help="Seconds of audio kept after each saved event."),
    ] = 1.0,
    notify: Annotated[
        str | None,
        typer.Option("--notify", help="POST each finished event as JSON to this http(s) URL (a webhook)."),
    ] = None,
    exec_command: Annotated[
        str | None,
        typer.Option(
            "--exec",
            help="Run this command for each finished event, with SNAPKIT_LABEL, SNAPKIT_ONSET_TIME, SNAPKIT_CLIP, "
            "... set in its environment (no shell).",
        ),
    ] = None,
    mqtt: MqttOption = None,
    mqtt_device: MqttDeviceOption = None,
    cooldown: Annotated[
        float,
        typer.Option(
            "--cooldown-s",
            "--cooldown",
            min=0.0,
            help="Seconds after a notified event before the same sound is notified again.",
        ),
    ] = DEFAULT_COOLDOWN_S,
    duration: Annotated[
        float | None,
        typer.Option("--duration-s", "--duration", min=0.0, help="Stop after this many seconds (default: Ctrl-C)."),
    ] = None,
    hop: HopOption = None,
    min_level_dbfs: MinLevelOption = None,
    mode: ModeOption = DetectorMode.auto,
    sensitivity: SensitivityOption = "normal",
    threshold: ThresholdOption = None,
    threads: Annotated[
        int,
        typer.Option("--threads", min=1, help="CPU threads for the model (raise it if a large model falls behind)."),
    ] = 1,
    log: LogOption = None,
    log_max_mb: LogMaxOption = DEFAULT_LOG_MAX_MB,
) -> None:
    """Listen to the microphone and report each detected sound with its time; Ctrl-C stops.

    Events can also be logged to a file, saved as clips, and sent to a webhook, a command or an MQTT broker (Home
    Assistant). When stdout is not a terminal, one plain line is printed per finished event instead of the live view.
    If the microphone goes away (unplugged, sound server restarted), listen says so, keeps its outputs open and
    tries again, waiting 1, 2, 5, 10, 30, then 60 s between tries, until it is back.
    """
    # Checked before the model loads: a mistyped URL should not cost the wait for torch.
    mqtt_settings = None if mqtt is None else parse_mqtt_url(mqtt, mqtt_device)
    if mqtt is None and mqtt_device is not None:
        raise SnapkitError("--mqtt-device names this listener for --mqtt; give --mqtt URL as well.")
    models = model
    import torch

    from snapkit.detection.detector import Detector
    from snapkit.models.bundle import load_model

    # One small window per hop gains little from intra-op threads, and torch's idle OpenMP workers spin: with the
    # default pool, listening used 2.3x the CPU of a single thread for the same events (measured on 2 cores).
    torch.set_num_threads(threads)
    bundles = [load_model(model) for model in models]
    chosen = [
        detector_settings(b, mode.value, hop, sensitivity, thresholds_for(b, threshold, bundles), min_level_dbfs)
        for b in bundles
    ]
    thresholds_why = "; ".join(dict.fromkeys(part for _, why in chosen for part in why.split("; ")))
    interactive = console.is_terminal
    with contextlib.ExitStack() as stack:
        # Everything a user can get wrong (log extension, URL, command, device) is checked before listening starts;
        # the stack closes whatever was opened if a later check fails.
        sinks: list[Sink] = []
        notifiers: list[Notifier] = []
        if log is not None:
            stack.callback(close_log_file, open_log_file(log, log_max_mb))
            sinks.append(EventPrinter(write=logger().info))
        if events is not None:
            sinks.append(_closing(stack, EventLog(events)))
        if notify is not None:
            notifiers.append(_closing(stack, WebhookNotifier(notify, cooldown_s=cooldown)))
        if exec_command is not None:
            notifiers.append(_closing(stack, ExecNotifier(exec_command, cooldown_s=cooldown)))
        # Resolving the device opens nothing yet: the stream starts only once the detector is ready, so stream
        # second 0 is the moment listening really begins.
        mic = ReconnectingMicrophone(device, samplerate, log=print_warning, open_mic=MicrophoneSource)
        detector: Detector | DetectorGroup
        if len(bundles) == 1:
            detector = Detector(bundles[0], chosen[0][0], sample_rate_hz=mic.sample_rate_hz)
        else:
            from snapkit.detection.group import build_detector

            settings = [s for s, _ in chosen]
            detector = build_detector(
                bundles, settings, sample_rate_hz=mic.sample_rate_hz, names=[str(m) for m in models]
            )
        if mqtt_settings is not None:
            model_name = "+".join(mqtt_model_name(model) for model in models)
            publisher = MqttNotifier(mqtt_settings, detector.labels, model_name=model_name)
            notifiers.append(_closing(stack, publisher))
            # Connected now, before the microphone opens: refused credentials stop here, an absent broker warns.
            publisher.start()
        saver = None
        if save_clips is not None:
            saver = _closing(
                stack,
                ClipSaver(save_clips, pre_roll, post_roll, sample_rate_hz=mic.sample_rate_hz, keep_paths=RECENT_CLIPS),
            )
        if interactive:
            sinks.append(EventPrinter(write=lambda line: console.print(line, highlight=False, markup=False)))
        else:
            sinks.append(EventPrinter())
        thresholds = detector.thresholds
        _print_settings(models, detector, thresholds, thresholds_why, mic, threads, events, save_clips, notifiers)
        stack.enter_context(mic)
        # Stream second 0 is when the first sample was captured, not when the device was asked to start.
        wall_time = datetime.fromtimestamp(mic.first_sample_wall_time_s()).astimezone()
        logger().info(f"The input is live since {wall_time.isoformat(timespec='milliseconds')}.")
        if interactive:
            with Live(console=console, auto_refresh=False, transient=True) as live:
                # The main thread draws; rich's own refresh thread is off so no widget is touched from elsewhere.
                summary = run_live(
                    detector,
                    mic,
                    sinks,
                    notifiers,
                    clip_saver=saver,
                    duration_s=duration,
                    on_status=lambda status: live.update(_render(status, thresholds), refresh=True),
                    wall_time=wall_time,
                )
        else:
            summary = run_live(
                detector, mic, sinks, notifiers, clip_saver=saver, duration_s=duration, wall_time=wall_time
            )
        _print_summary(summary, events, save_clips)  # inside: the --log file gets it too


def _closing(stack: contextlib.ExitStack, thing: Any) -> Any:
    stack.callback(thing.close)
    return thing


def _print_settings(
    models: list[Path],
    detector: Detector | DetectorGroup,
    thresholds: dict[str, tuple[float, float]],
    thresholds_why: str,
    mic: ReconnectingMicrophone,
    threads: int,
    events: Path | None,
    save_clips: Path | None,
    notifiers: list[Notifier],
) -> None:
    classes = ", ".join(f"{label} (on {on:.2f} / off {off:.2f})" for label, (on, off) in thresholds.items())
    names = ", ".join(map(str, models))
    lines = [
        f"Listening with {names}: {len(detector.labels)} class(es): {classes} ({thresholds_why}).",
        f"Device {mic.device.index} ({mic.device.name}) at {mic.sample_rate_hz} Hz on {threads} CPU thread(s); "
        f"{detector.describe()}.",
    ]
    if events is not None:
        lines.append(f"Events are appended to {events}.")
    if save_clips is not None:
        lines.append(f"Clips are saved into {save_clips}/.")
    lines += [notifier.describe() for notifier in notifiers]
    lines.append("Ctrl-C stops; the event in progress is closed and written.")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
        logger().info(line)


def _probability_bar(probability: float, on_threshold: float, width: int = PROBABILITY_BAR_WIDTH) -> Text:
    """A 0..1 bar, red once the probability reaches the class's on-threshold."""
    filled = round(min(1.0, max(0.0, probability)) * width)
    bar = Text("█" * filled, style="bold red" if probability >= on_threshold else "cyan")
    bar.append("─" * (width - filled), style="grey39")
    bar.append(f" {probability:4.2f}")
    return bar


def _render(status: LiveStatus, thresholds: dict[str, tuple[float, float]]) -> Group:
    header = Text("● LISTENING ", style="bold green")
    header.append(f"{status.position_s:8.1f} s   input ")
    header.append_text(level_bar(status.level_dbfs))
    classes = Table.grid(padding=(0, 2))
    for label, probability in status.probabilities.items():
        on = thresholds.get(label, (1.0, 1.0))[0]
        classes.add_row(Text(label, style="bold"), _probability_bar(probability, on), Text(f"on {on:.2f}", "grey50"))
    recent = Table.grid(padding=(0, 2))
    for event in reversed(status.recent_events):
        when = event.onset_time.strftime("%H:%M:%S.%f")[:-3]
        length = "ongoing" if event.offset_s is None else f"{event.offset_s - event.onset_s:.2f} s"
        recent.add_row(when, Text(event.label, style="bold"), length, f"peak {event.peak_score:.2f}")
    footer = Text(
        f"events {status.events}   clips {status.clips_saved}   overflows {status.overflows}   "
        f"dropped blocks {status.dropped}" + (f"   lost {status.lost_s:.1f} s" if status.lost_s else ""),
        style="yellow" if status.overflows or status.dropped or status.lost_s else "grey50",
    )
    for stats in status.notifiers:
        trouble = stats.failed or stats.dropped
        footer.append(
            f"   {stats.name}: sent {stats.sent} failed {stats.failed} dropped {stats.dropped}"
            + (f" cooldown {stats.suppressed}" if stats.suppressed else ""),
            style="yellow" if trouble else "grey50",
        )
    if status.sink_failures:
        footer.append(f"   output failures {status.sink_failures}", style="yellow")
    parts: list[Any] = [header, classes]
    if status.recent_events:
        parts += [Text("recent events", style="underline"), recent]
    parts.append(footer)
    return Group(*parts)


def _print_summary(summary: LiveSummary, events: Path | None, save_clips: Path | None) -> None:
    how = "Stopped" if summary.interrupted else "Done"
    text = f"{how} after {summary.seconds:.1f} s: {summary.events} event(s)"
    if save_clips is not None:
        text += f", {summary.clips_saved} clip(s) in {save_clips}/"
    if events is not None:
        text += f", logged to {events}"
    _say(text + ".")
    trouble = summary.overflows or summary.dropped or summary.lost_s
    input_line = f"Input overflows: {summary.overflows}, dropped blocks: {summary.dropped}"
    if summary.lost_s:
        input_line += f", {summary.lost_s:.2f} s of input lost (event times after it are kept true)"
    if summary.reconnects:
        input_line += f", the device came back {summary.reconnects} time(s)"
    _say(input_line + ("; events in those gaps may be missed." if trouble else "."), "yellow" if trouble else None)
    for stats in summary.notifiers:
        _say(
            f"{stats.name}: {stats.sent} sent, {stats.failed} failed, {stats.dropped} dropped (queue full)"
            + (f", {stats.suppressed} within the cooldown." if stats.suppressed else "."),
            "yellow" if stats.failed or stats.dropped else None,
        )
    if summary.sink_failures:
        _say(f"{summary.sink_failures} log or clip write(s) failed; see the warnings above.", "yellow")


def _say(line: str, style: str | None = None) -> None:
    """A line for the user, and for the --log file when there is one."""
    console.print(line, style=style, highlight=False, markup=False, soft_wrap=True)
    logger().info(line)


def register(app: typer.Typer) -> None:
    app.command(help="Listen to the microphone and report your sounds as they happen (log, clips, notifications).")(
        listen
    )
