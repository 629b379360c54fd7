"""The `snapkit` command as a whole: --version, how help reads, and errors that name the right file."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner, Result

import snapkit
from snapkit.cli import app as app_module
from snapkit.cli.app import app
from tests.conftest import run_cli

COMMANDS = (
    "devices",
    "record",
    "data",
    "import",
    "train",
    "evaluate",
    "predict",
    "export",
    "detect",
    "listen",
    "mine",
    "relabel",
    "demo",
)


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), prog_name="snapkit", env={"COLUMNS": "200", "NO_COLOR": "1"})


def test_version_comes_from_the_package_metadata() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"snapkit {metadata.version('snapkit')}"


def test_version_falls_back_to_the_module_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(app_module.metadata, "version", not_installed)
    result = _invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"snapkit {snapkit.__version__}"


def test_the_top_level_help_lists_version_and_every_command() -> None:
    result = _invoke("--help")
    assert result.exit_code == 0, result.output
    assert "--version" in result.output and "<bool>" not in result.output
    for command in COMMANDS:
        assert f" {command} " in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_bool_type_and_plain_argument_names(command: str) -> None:
    result = _invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output  # a flag takes no value
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage  # `{label}` reads like a set of choices


def test_usage_names_arguments_in_capitals() -> None:
    assert "Usage: snapkit detect [OPTIONS] MODEL FILES..." in _invoke("detect", "--help").output
    assert "Usage: snapkit record [OPTIONS] LABEL" in _invoke("record", "--help").output
    # The dataset folder is --data; its older positional form still parses but is not shown.
    train_usage = next(line for line in _invoke("train", "--help").output.splitlines() if "Usage:" in line)
    assert train_usage.strip() == "Usage: snapkit train [OPTIONS]"
    missing = _invoke("detect")
    assert missing.exit_code == 2 and "Missing argument 'MODEL'" in missing.output


def test_flags_still_parse(tmp_path: Path) -> None:
    """Help is all that changed: a flag is still a flag."""
    result = _invoke("train", str(tmp_path / "nowhere"), "--no-augment", "--no-estimate")
    assert result.exit_code != 0 and "No such option" not in result.output


def test_a_folder_given_as_model_names_model_snapkit(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16_000, dtype=np.float32), 16_000)
    result = run_cli("detect", str(run), str(wav))
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "is a folder" in message and str(run / "model.snapkit") in message
    assert ".pt" not in message and "Traceback" not in message


def test_every_out_option_has_the_short_form() -> None:
    for command in ("train", "export", "demo"):
        out = [line for line in _invoke(command, "--help").output.splitlines() if "--out" in line]
        assert out and "-o" in out[0].replace("--out", ""), (command, out)
