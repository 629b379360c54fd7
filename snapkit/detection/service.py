"""Leave ``snapkit listen`` running: a systemd unit that starts it at boot (or login) and restarts it on failure.

:func:`render_unit` is a pure function of :class:`ServiceSettings`; :func:`install_unit` writes its text through
the project's atomic writer and never replaces an existing unit unless asked. Output goes to the journal, which is
the service's log: ``snapkit listen`` writes no log file of its own to rotate.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from snapkit.errors import SnapkitError
from snapkit.files import write_atomically

# Seconds systemd waits before restarting a failed listener: long enough that an unplugged microphone does not
# spin the CPU or trip systemd's default start limit (5 starts in 10 s), short enough to come back soon after.
RESTART_S = 10
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_ENV_DIR = Path("/etc/snapkit")
# What systemd accepts in a unit name, less '@' (template units) and '\\' (its own escape character).
_UNIT_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
_MAX_UNIT_NAME = 255 - len(".service")
# An argument that needs no quotes in ExecStart= ('%' and '$' are still doubled: specifiers, variables).
_PLAIN_ARGUMENT = re.compile(r"^[A-Za-z0-9_@%+=:,./$-]+$")


@dataclass(frozen=True)
class ServiceSettings:
    """What a snapkit service unit holds.

    Attributes:
        name: the unit's name, without ``.service``.
        command: the full command line (absolute executable first), one string per argument, unquoted.
        working_dir: the absolute folder the command runs in.
        user_unit: True for a per-user unit (``systemctl --user``), False for a system one.
        run_as: the account a system unit runs as (``User=``); None: root. Ignored for a user unit.
        restart_s: seconds before a failed listener is started again.
        environment_file: a file of ``NAME=value`` lines the unit reads if it exists (``EnvironmentFile=-``): where
            secrets such as ``SNAPKIT_MQTT_PASSWORD`` go, never into the unit, which every local user can read.
    """

    name: str
    command: tuple[str, ...]
    working_dir: Path
    user_unit: bool
    run_as: str | None = None
    restart_s: float = RESTART_S
    environment_file: Path | None = None


def listen_command(models: Path | Sequence[Path], listen_args: list[str]) -> tuple[str, ...]:
    """``python -m snapkit listen MODEL... ARGS`` with this interpreter and the models' absolute paths.

    The interpreter, not a ``snapkit`` script, so the unit runs the same install (venv included) as this command;
    its path is not resolved, since resolving a venv's python symlink would leave the venv.
    """
    paths = [models] if isinstance(models, Path | str) else list(models)
    return (os.path.abspath(sys.executable), "-m", "snapkit", "listen", *map(os.path.abspath, paths), *listen_args)


def systemd_quote(argument: str) -> str:
    """One ExecStart= argument as systemd reads it back: ``%`` and ``$`` doubled (specifiers and variables),
    anything with spaces, quotes, backslashes or ``;`` in double quotes with C-style escapes."""
    text = _escape_specifiers(argument).replace("$", "$$")
    if _PLAIN_ARGUMENT.match(argument):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape_specifiers(text: str) -> str:
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise SnapkitError(
            f"{text!r} holds a control character, which a line of a systemd unit cannot carry; rename it."
        )
    return text.replace("%", "%%")


def check_unit_name(name: str) -> str:
    """``name`` without a ``.service`` suffix; SnapkitError naming ``--name`` when systemd cannot take it."""
    bare = name.removesuffix(".service")
    if not _UNIT_NAME.match(bare) or bare.startswith("-") or len(bare) > _MAX_UNIT_NAME:
        raise SnapkitError(
            f"--name {name!r} cannot name a systemd unit; use letters, digits and - _ . : only, e.g. snapkit-garage."
        )
    return bare


def default_unit_name(model: Path) -> str:
    """``snapkit-<run folder>`` for ``runs/NAME/model.snapkit``, else ``snapkit-<file stem>``."""
    model = Path(os.path.abspath(model))
    word = model.parent.name if model.stem == "model" and model.parent.name else model.stem
    return check_unit_name("snapkit-" + (re.sub(r"[^A-Za-z0-9_.:-]+", "-", word).strip("-") or "listen"))


def unit_path(name: str, user_unit: bool) -> Path:
    """Where systemd looks for the unit: ``$XDG_CONFIG_HOME/systemd/user`` (default ``~/.config``) for a user
    unit, ``/etc/systemd/system`` for a system one."""
    if not user_unit:
        return SYSTEM_UNIT_DIR / f"{name}.service"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user" / f"{name}.service"


def environment_path(name: str, user_unit: bool) -> Path:
    """Where the unit's secrets go: ``$XDG_CONFIG_HOME/snapkit/<name>.env`` (default ``~/.config``) for a user unit,
    ``/etc/snapkit/<name>.env`` for a system one (systemd reads it as root, before ``User=`` applies)."""
    if not user_unit:
        return SYSTEM_ENV_DIR / f"{name}.env"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "snapkit" / f"{name}.env"


def render_unit(settings: ServiceSettings) -> str:
    """The unit file's text for ``settings``."""
    exec_start = " ".join(systemd_quote(argument) for argument in settings.command)
    lines = [
        "[Unit]",
        f"Description=snapkit listen ({settings.name})",
    ]
    if not settings.user_unit:
        lines.append("After=sound.target")
    lines += [
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        # Taken whole (no quotes), but specifiers are expanded in it.
        f"WorkingDirectory={_escape_specifiers(str(settings.working_dir))}",
    ]
    if not settings.user_unit and settings.run_as:
        lines.append(f"User={settings.run_as}")
    lines += [
        # Python buffers a pipe's output; the journal should see each line as it is printed.
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if settings.environment_file is not None:
        # "-": a missing file is no error (the broker may need no password). Taken whole, specifiers expanded.
        lines.append(f"EnvironmentFile=-{_escape_specifiers(str(settings.environment_file))}")
    lines += [
        # SIGINT is listen's Ctrl-C: the event in progress is closed and written before it exits.
        "KillSignal=SIGINT",
        "Restart=on-failure",
        f"RestartSec={settings.restart_s:g}s",
        "StandardOutput=journal",
        "StandardError=journal",
        "",
        "[Install]",
        f"WantedBy={'default.target' if settings.user_unit else 'multi-user.target'}",
        "",
    ]
    return "\n".join(lines)


def install_unit(settings: ServiceSettings, path: Path, *, force: bool = False) -> Path:
    """Write the unit for ``settings`` to ``path`` whole or not at all; an existing unit only with ``force``.

    Raises:
        SnapkitError: the unit exists and ``force`` is False, or its folder cannot be written (one sentence; for
            a system unit it suggests sudo or ``--user``).
    """
    if path.exists() and not force:
        raise SnapkitError(f"The unit {path} already exists; give --force to replace it, or choose another --name.")
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        what = "check the folder's owner and permissions" if settings.user_unit else "run it with sudo, or give --user"
        raise SnapkitError(f"You cannot write into {path.parent}, where the unit goes; {what}.")
    return write_atomically(path, render_unit(settings), what="the systemd unit")


def enable_instructions(name: str, user_unit: bool) -> list[str]:
    """The commands that start the installed unit now and at every boot (or login), and follow its log."""
    flag = " --user" if user_unit else ""
    lines = [
        f"systemctl{flag} daemon-reload && systemctl{flag} enable --now {name}",
        f"journalctl{flag} -u {name} -f",
    ]
    if user_unit:
        lines.append("loginctl enable-linger $USER")
    return lines
