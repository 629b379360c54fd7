"""How ``--help`` shows snapkit's commands: arguments upper-case in the usage line, no type on a flag, and only
the current spelling of each option.

Typer prints a required argument as ``{label}`` (which reads like a set of choices) and every flag with a
``<bool>`` type, though a flag takes no value. Options renamed so that they carry their unit keep their old
spelling as a second name (``typer.Option("--clip-s", "--seconds")``), which still parses so old scripts run;
``DEPRECATED_OPTION_NAMES`` lists those spellings; help and error messages leave them out, as help leaves out
hidden arguments. These classes change only what is printed, not parsing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import typer
from typer._click.exceptions import BadParameter, NoSuchOption
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# "{model}", "[data_dir]", "{files}..." as typer writes arguments in the usage line.
_USAGE_ARGUMENT = re.compile(r"^(?P<open>[{\[])(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<close>[}\]])(?P<rest>.*)$")


# Old spellings, still accepted, never shown: each is the second name of the option that replaced it.
DEPRECATED_OPTION_NAMES = frozenset(
    {
        "--seconds",  # record, import: --clip-s
        "--clip-seconds",  # train: --clip-s
        "--hop",  # import, detect, listen: --hop-s
        "--pre-roll",  # listen: --pre-roll-s
        "--post-roll",  # listen: --post-roll-s
        "--cooldown",  # listen: --cooldown-s
        "--duration",  # listen: --duration-s
        "--countdown",  # record: --countdown-s
        "--samplerate",  # record, listen: --sample-rate-hz
        "--silence-threshold",  # record, import, data: --silence-dbfs
        "--count",  # record: --clips
    }
)


@contextlib.contextmanager
def _current_names_only(params: list[Any]) -> Iterator[None]:
    """While help is drawn, options list only their current names (parsing reads ``opts`` again afterwards)."""
    saved = [(param, param.opts, param.secondary_opts) for param in params if isinstance(param, TyperOption)]
    try:
        for param, opts, secondary in saved:
            param.opts = [name for name in opts if name not in DEPRECATED_OPTION_NAMES]
            param.secondary_opts = [name for name in secondary if name not in DEPRECATED_OPTION_NAMES]
        yield
    finally:
        for param, opts, secondary in saved:
            param.opts, param.secondary_opts = opts, secondary


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
    """A command whose help lists flags without a type, options by their current names only, and visible arguments
    upper-case in the usage line."""

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
        # As click's, but a hidden argument (an old positional form kept for scripts) stays out of the usage line.
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not getattr(param, "hidden", False):
                pieces.extend(param.get_usage_pieces(ctx))
        return _usage_pieces(pieces)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _current_names_only(self.get_params(ctx)):
            super().format_help(ctx, formatter)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # Errors name options as help does: "Invalid value for '--clip-s'", not "'--clip-s' / '--seconds'".
        try:
            return super().parse_args(ctx, args)
        except NoSuchOption as err:
            err.possibilities = [name for name in err.possibilities or () if name not in DEPRECATED_OPTION_NAMES]
            raise
        except BadParameter as err:
            if err.param_hint is None and isinstance(err.param, TyperOption):
                current = [name for name in err.param.opts if name not in DEPRECATED_OPTION_NAMES]
                err.param_hint = current or None
            raise


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
