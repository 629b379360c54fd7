"""How ``--help`` shows snapkit's commands: arguments upper-case in the usage line, no type on a flag.

Typer prints a required argument as ``{label}`` (which reads like a set of choices) and every flag with a
``<bool>`` type, though a flag takes no value. These two classes change only what help prints, not parsing.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# "{model}", "[data_dir]", "{files}..." as typer writes arguments in the usage line.
_USAGE_ARGUMENT = re.compile(r"^(?P<open>[{\[])(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<close>[}\]])(?P<rest>.*)$")


def _plain_flags(params: list[Any]) -> None:
    """No type column for on/off flags: they take no value (``metavar=""`` is what typer prints instead)."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_bool_flag and param.metavar is None:
            param.metavar = ""


def _usage_pieces(pieces: list[str]) -> list[str]:
    """``{model}`` -> ``MODEL``, ``[data_dir]`` -> ``[DATA_DIR]``, ``{files}...`` -> ``FILES...``."""
    out = []
    for piece in pieces:
        match = _USAGE_ARGUMENT.match(piece)
        if match is None:
            out.append(piece)
            continue
        name = match["name"].upper()
        out.append(f"[{name}]{match['rest']}" if match["open"] == "[" else f"{name}{match['rest']}")
    return out


class SnapkitCommand(TyperCommand):
    """A command whose help lists flags without a type and arguments upper-case in the usage line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_flags(self.params)
        # The arguments panel and error messages name an argument as the usage line does.
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar is None and param.name:
                param.metavar = param.name.upper()

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _plain_flags([option])
        return option

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _usage_pieces(super().collect_usage_pieces(ctx))


class SnapkitGroup(TyperGroup):
    """The ``snapkit`` group itself: ``--version`` and ``--help`` without a type."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_flags(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _plain_flags([option])
        return option


def use_snapkit_help(app: typer.Typer) -> None:
    """Make every command registered on ``app`` so far a :class:`SnapkitCommand` (unless it chose its own)."""
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):  # typer fills in TyperCommand when a command names none
            info.cls = SnapkitCommand
