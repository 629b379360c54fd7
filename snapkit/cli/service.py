"""``snapkit service install``: write a systemd unit that keeps ``snapkit listen`` running, logging to the journal.

The listen options it passes on are listen's own (imported, not spelled again), and they are checked here with
listen's own loader and threshold rules, so a mistake shows now rather than as a service restarting forever.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer

from snapkit.cli.help import SnapkitGroup, use_snapkit_help
from snapkit.cli.listen import (
    MODEL_HELP,
    EventsOption,
    LogMaxOption,
    LogOption,
    MqttDeviceOption,
    MqttOption,
    SaveClipsOption,
)
from snapkit.cli.options import (
    DeviceOption,
    MinLevelOption,
    SensitivityOption,
    ThresholdOption,
    detector_settings,
    thresholds_for,
)
from snapkit.cli.ui import DetectorMode, console
from snapkit.detection.mqtt import PASSWORD_ENV, parse_mqtt_url
from snapkit.detection.service import (
    ServiceSettings,
    check_unit_name,
    default_unit_name,
    enable_instructions,
    environment_path,
    install_unit,
    listen_command,
    render_unit,
    unit_path,
)
from snapkit.detection.textlog import DEFAULT_LOG_MAX_MB
from snapkit.errors import SnapkitError

service_app = typer.Typer(
    name="service",
    help="Leave `snapkit listen` running as a systemd service (restarted on failure, logged to the journal).",
    no_args_is_help=True,
    cls=SnapkitGroup,
)


def install(
    model: Annotated[list[Path], typer.Argument(help=MODEL_HELP)],
    device: DeviceOption = None,
    events: EventsOption = None,
    save_clips: SaveClipsOption = None,
    sensitivity: SensitivityOption = "normal",
    threshold: ThresholdOption = None,
    min_level_dbfs: MinLevelOption = None,
    mqtt: MqttOption = None,
    mqtt_device: MqttDeviceOption = None,
    log: LogOption = None,
    log_max_mb: LogMaxOption = DEFAULT_LOG_MAX_MB,
    user: Annotated[
        bool,
        typer.Option(
            "--user",
            help="A per-user service in ~/.config/systemd/user (no root needed; it can use the desktop's sound "
            "server) instead of a system one in /etc/systemd/system.",
        ),
    ] = False,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The unit's name (default: snapkit-<run folder>, e.g. snapkit-garage)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the unit and where it would go; write nothing.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a unit of the same name.")] = False,
) -> None:
    """Write a systemd unit that runs `snapkit listen MODEL...` with these options, restarts it on failure and logs to
    the journal, then print how to start it."""
    from snapkit.detection.group import check_distinct_labels
    from snapkit.detection.outputs import event_format
    from snapkit.models.bundle import load_model

    unit_name = check_unit_name(name) if name is not None else default_unit_name(model[0])
    env_file = _check_mqtt(mqtt, mqtt_device, environment_path(unit_name, user))
    if log_max_mb <= 0:
        raise SnapkitError(f"--log-max-mb must be above 0, not {log_max_mb:g}.")
    # listen's own checks, so a bad path or threshold fails here and not in a restart loop.
    bundles = [load_model(path) for path in model]
    check_distinct_labels(bundles, [str(path) for path in model])
    for bundle in bundles:
        detector_settings(
            bundle,
            DetectorMode.auto.value,
            None,
            sensitivity,
            thresholds_for(bundle, threshold, bundles),
            min_level_dbfs,
        )
    if events is not None:
        event_format(events)
    settings = ServiceSettings(
        name=unit_name,
        command=listen_command(
            model,
            _listen_args(device, events, save_clips, sensitivity, threshold, min_level_dbfs, mqtt, mqtt_device)
            + _log_args(log, log_max_mb),
        ),
        working_dir=Path.cwd(),
        user_unit=user,
        run_as=None if user else _invoking_user(),
        environment_file=env_file,
    )
    path = unit_path(unit_name, user)
    password_hint = (
        f"If the broker needs a password, put {PASSWORD_ENV}=... into {env_file} (chmod 600); the unit reads it."
    )
    if dry_run:
        console.print(f"Would write {path}:", highlight=False, markup=False, soft_wrap=True)
        typer.echo(render_unit(settings), nl=False)
        if env_file is not None:
            console.print(password_hint, highlight=False, markup=False, soft_wrap=True)
        return
    install_unit(settings, path, force=force)
    start, watch, *linger = enable_instructions(unit_name, user)
    lines = [
        f"Wrote {path}. Start it now and at every boot with:",
        f"  {start}",
        "Watch what it hears with:",
        f"  {watch}",
    ]
    if linger:
        lines.append(
            f"A user service runs only while you are logged in; to run it from boot without a login: {linger[0]}"
        )
    if env_file is not None:
        lines.append(password_hint)
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _check_mqtt(mqtt: str | None, mqtt_device: str | None, env_file: Path) -> Path | None:
    """Check ``--mqtt`` and ``--mqtt-device`` as listen will; the environment file the unit reads when the broker
    is given with a user (whose password goes there), else None. A password in the URL is refused: the unit, and
    the command line it starts, can be read by every local user."""
    if mqtt is None:
        if mqtt_device is not None:
            raise SnapkitError("--mqtt-device names this listener for --mqtt; give --mqtt URL as well.")
        return None
    # The installing shell's SNAPKIT_MQTT_PASSWORD is not the service's: only the URL is checked here.
    settings = parse_mqtt_url(mqtt, mqtt_device, environ={})
    if settings.password is not None:
        raise SnapkitError(
            f"--mqtt {settings.url} holds a password, which would be readable by every user in the unit; drop it "
            f"from the URL and put {PASSWORD_ENV}=... into {env_file} (chmod 600), which the unit reads."
        )
    return env_file if settings.username is not None else None


def _log_args(log: Path | None, log_max_mb: float) -> list[str]:
    """``--log`` (absolute) and its size, when given: a file log beside the journal, rotated by size."""
    if log is None:
        return []
    return ["--log", os.path.abspath(log), "--log-max-mb", f"{log_max_mb:g}"]


def _listen_args(
    device: str | None,
    events: Path | None,
    save_clips: Path | None,
    sensitivity: str,
    thresholds: list[str] | None,
    min_level_dbfs: float | None = None,
    mqtt: str | None = None,
    mqtt_device: str | None = None,
) -> list[str]:
    """The listen options as arguments, paths made absolute (the unit must not depend on where it was made)."""
    args: list[str] = []
    if device is not None:
        args += ["--device", device]
    if events is not None:
        args += ["--events", os.path.abspath(events)]
    if save_clips is not None:
        args += ["--save-clips", os.path.abspath(save_clips)]
    args += ["--sensitivity", sensitivity]
    for threshold in thresholds or []:
        args += ["--threshold", threshold]
    if min_level_dbfs is not None:
        args += ["--min-level-dbfs", f"{min_level_dbfs:g}"]
    if mqtt is not None:
        args += ["--mqtt", mqtt]
    if mqtt_device is not None:
        args += ["--mqtt-device", mqtt_device]
    return args


def _invoking_user() -> str | None:
    """Who a system service should run as: the user behind ``sudo``, else the current one; None for root."""
    who = os.environ.get("SUDO_USER") or getpass.getuser()
    return None if who == "root" else who


service_app.command(help="Write a systemd unit that keeps `snapkit listen MODEL` running (--dry-run: print it).")(
    install
)
use_snapkit_help(service_app)


def register(app: typer.Typer) -> None:
    app.add_typer(service_app)
