"""``snapkit service install``: the systemd unit it renders, where it goes, and the mistakes it refuses.

No systemd is needed: units are written under tmp_path (``XDG_CONFIG_HOME``), and ``systemd-analyze verify`` is
used only where it is installed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from snapkit.cli.app import app
from snapkit.detection.service import (
    ServiceSettings,
    check_unit_name,
    install_unit,
    listen_command,
    render_unit,
    systemd_quote,
    unit_path,
)
from snapkit.errors import SnapkitError
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ConvNet bundle in a folder whose name has a space, as a user's run folder might."""
    import torch

    from snapkit.models import ModelBundle, ModelConfig, SoundClassifier

    torch.manual_seed(0)
    model = SoundClassifier(ModelConfig(backbone="convnet", labels=("beep", "snap")), None).eval()
    return ModelBundle.from_model(model).save(tmp_path_factory.mktemp("runs") / "my garage" / "model.snapkit")


def _install(*args: str, config: Path) -> Result:
    env = {"COLUMNS": "200", "NO_COLOR": "1", "XDG_CONFIG_HOME": str(config)}
    return CliRunner().invoke(app, ["service", "install", *args], prog_name="snapkit", env=env)


def _exec_start(unit: str) -> list[str]:
    line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    # systemd's quoting, for these arguments, reads like a POSIX shell's once %% and $$ are undone.
    return shlex.split(line.removeprefix("ExecStart=").replace("%%", "%").replace("$$", "$"))


def test_the_unit_runs_listen_with_absolute_quoted_paths_and_restarts(tmp_path: Path) -> None:
    model = tmp_path / "runs with space" / "model.snapkit"
    command = listen_command(model, ["--events", str(tmp_path / "my log.csv"), "--threshold", "beep=0.7"])
    settings = ServiceSettings("snapkit-x", command, tmp_path / "work dir", user_unit=True)
    unit = render_unit(settings)
    args = _exec_start(unit)
    assert args[:5] == [os.path.abspath(sys.executable), "-m", "snapkit", "listen", str(model)]
    assert args[5:] == ["--events", str(tmp_path / "my log.csv"), "--threshold", "beep=0.7"]
    assert all(Path(arg).is_absolute() for arg in (args[0], args[4], args[6]))
    for line in ("Restart=on-failure", "RestartSec=10s", "StandardOutput=journal", "StandardError=journal"):
        assert line in unit.splitlines()
    assert f"WorkingDirectory={tmp_path / 'work dir'}" in unit.splitlines()
    assert "WantedBy=default.target" in unit and "User=" not in unit
    system = render_unit(ServiceSettings("snapkit-x", command, tmp_path, user_unit=False, run_as="ann"))
    assert "WantedBy=multi-user.target" in system and "User=ann" in system.splitlines()


@pytest.mark.parametrize(
    ("argument", "quoted"),
    [
        ("/plain/path.snapkit", "/plain/path.snapkit"),
        ("/a b/c", '"/a b/c"'),
        ("50%", "50%%"),
        ("$HOME", "$$HOME"),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("a;b", '"a;b"'),
        ("", '""'),
    ],
)
def test_systemd_quoting(argument: str, quoted: str) -> None:
    assert systemd_quote(argument) == quoted


def test_a_newline_cannot_go_into_a_unit() -> None:
    with pytest.raises(SnapkitError, match="control character"):
        systemd_quote("a\nb")


@pytest.mark.parametrize("name", ["bad name", "a/b", "x@y", "-x", ""])
def test_bad_unit_names_are_one_sentence(name: str) -> None:
    with pytest.raises(SnapkitError, match=r"--name .* cannot name a systemd unit"):
        check_unit_name(name)
    assert check_unit_name("snapkit-garage.service") == "snapkit-garage"


def test_the_user_unit_goes_under_xdg_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert unit_path("s", user_unit=True) == tmp_path / "cfg" / "systemd" / "user" / "s.service"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert unit_path("s", user_unit=True) == tmp_path / ".config" / "systemd" / "user" / "s.service"
    assert unit_path("s", user_unit=False) == Path("/etc/systemd/system/s.service")


def test_install_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    settings = ServiceSettings("s", ("/bin/true",), tmp_path, user_unit=True)
    path = install_unit(settings, tmp_path / "u" / "s.service")
    path.write_text("mine")
    with pytest.raises(SnapkitError, match=r"s\.service already exists; give --force"):
        install_unit(settings, path)
    assert path.read_text() == "mine"
    install_unit(settings, path, force=True)
    assert path.read_text() == render_unit(settings)


def test_a_system_folder_you_cannot_write_suggests_sudo_or_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests may run as root, for whom every folder is writable, so the permission answer is what is replaced.
    monkeypatch.setattr("snapkit.detection.service.os.access", lambda path, mode: False)
    settings = ServiceSettings("s", ("/bin/true",), tmp_path, user_unit=False)
    with pytest.raises(SnapkitError, match=r"You cannot write into .*; run it with sudo, or give --user\.$"):
        install_unit(settings, tmp_path / "s.service")
    assert not (tmp_path / "s.service").exists()


def test_cli_dry_run_prints_the_unit_and_writes_nothing(model_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    result = _install(str(model_file), "--user", "--dry-run", "--save-clips", "clips dir", config=config)
    assert result.exit_code == 0, result.output
    target = config / "systemd" / "user" / "snapkit-my-garage.service"
    assert f"Would write {target}:" in result.output
    assert "[Service]" in result.output and "--save-clips" in result.output
    assert not config.exists()


def test_cli_installs_a_user_unit_and_says_how_to_start_it(model_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    args = [str(model_file), "--user", "--name", "garage", "--events", str(tmp_path / "ev.jsonl")]
    args += ["--device", "USB Mic", "--sensitivity", "high", "--threshold", "beep=0.7", "--threshold", "snap=0.6"]
    args += ["--min-level-dbfs", "-55"]
    result = _install(*args, config=config)
    assert result.exit_code == 0, result.output
    unit = (config / "systemd" / "user" / "garage.service").read_text()
    passed = _exec_start(unit)[5:]
    assert passed == [
        "--device",
        "USB Mic",
        "--events",
        str(tmp_path / "ev.jsonl"),
        "--sensitivity",
        "high",
        "--threshold",
        "beep=0.7",
        "--threshold",
        "snap=0.6",
        "--min-level-dbfs",
        "-55",
    ]
    text = " ".join(result.output.split())
    assert "systemctl --user daemon-reload && systemctl --user enable --now garage" in text
    assert "journalctl --user -u garage -f" in text and "loginctl enable-linger $USER" in text
    again = _install(*args, config=config)
    # in-process the SnapkitError is raised; `main` turns it into the sentence and exit 2 (see the end-to-end test)
    assert isinstance(again.exception, SnapkitError) and "already exists; give --force" in str(again.exception)
    assert _install(*args, "--force", config=config).exit_code == 0


def test_cli_passes_mqtt_through_and_the_password_is_read_from_an_environment_file(
    model_file: Path, tmp_path: Path
) -> None:
    config = tmp_path / "cfg"
    url = "mqtts://ha@homeassistant.local/snapkit"
    args = [str(model_file), "--user", "--name", "garage", "--mqtt", url, "--mqtt-device", "garage-pi"]
    result = _install(*args, config=config)
    assert result.exit_code == 0, result.output
    unit = (config / "systemd" / "user" / "garage.service").read_text()
    assert _exec_start(unit)[-4:] == ["--mqtt", url, "--mqtt-device", "garage-pi"]
    env_file = config / "snapkit" / "garage.env"
    assert f"EnvironmentFile=-{env_file}" in unit.splitlines()
    text = " ".join(result.output.split())
    assert f"put SNAPKIT_MQTT_PASSWORD=... into {env_file} (chmod 600)" in text
    # Without a user there is no password to read: no environment file.
    result = _install(str(model_file), "--user", "--mqtt", "mqtt://broker/snapkit", "--dry-run", config=config)
    assert result.exit_code == 0, result.output
    assert "--mqtt mqtt://broker/snapkit" in result.output and "EnvironmentFile" not in result.output


def test_a_password_in_the_mqtt_url_never_goes_into_a_unit(model_file: Path, tmp_path: Path) -> None:
    url = "mqtt://ha:pw-in-url@broker/snapkit"
    result = _install(str(model_file), "--user", "--name", "garage", "--mqtt", url, config=tmp_path)
    assert isinstance(result.exception, SnapkitError)
    message = str(result.exception)
    assert message.startswith("--mqtt mqtt://ha:***@broker:1883/snapkit holds a password")
    assert "pw-in-url" not in message
    assert f"put SNAPKIT_MQTT_PASSWORD=... into {tmp_path / 'snapkit' / 'garage.env'} (chmod 600)" in message
    assert not (tmp_path / "systemd").exists()
    bad_device = _install(str(model_file), "--user", "--mqtt", "mqtt://b/s", "--mqtt-device", "a b", config=tmp_path)
    assert isinstance(bad_device.exception, SnapkitError) and "--mqtt-device 'a b'" in str(bad_device.exception)


def test_listens_own_checks_refuse_a_bad_threshold_before_anything_is_written(model_file: Path, tmp_path: Path) -> None:
    result = _install(str(model_file), "--user", "--threshold", "cat=0.5", config=tmp_path)
    assert result.exit_code == 2 and "no class 'cat'" in result.output
    assert not (tmp_path / "systemd").exists()


def test_several_models_and_a_rotating_log_go_into_one_unit(model_file: Path, tmp_path: Path) -> None:
    import torch

    from snapkit.models import ModelBundle, ModelConfig, SoundClassifier

    other = ModelBundle.from_model(SoundClassifier(ModelConfig(backbone="convnet", labels=("kettle",)), None).eval())
    other_file = other.save(tmp_path / "kettle" / "model.snapkit")
    torch.manual_seed(0)
    result = _install(str(model_file), str(other_file), "--user", "--dry-run", "--threshold", "kettle=0.7",
                      "--log", "listen.log", "--log-max-mb", "5", config=tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    args = _exec_start(result.output.split("\n", 1)[1])
    listen_at = args.index("listen")
    assert args[listen_at + 1 : listen_at + 3] == [str(model_file), str(other_file)]
    assert args[args.index("--log") + 1] == str(Path("listen.log").resolve()) and "--log-max-mb" in args
    assert args[args.index("--threshold") + 1] == "kettle=0.7"  # the second model's class: accepted
    clash = _install(str(model_file), str(model_file), "--user", "--dry-run", config=tmp_path)
    assert isinstance(clash.exception, SnapkitError) and "both detect 'beep'" in str(clash.exception)


def test_end_to_end_a_missing_model_and_an_unwritable_folder_are_one_sentence(model_file: Path, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    missing = run_cli("service", "install", str(tmp_path / "nope.snapkit"), "--user", env=env)
    assert missing.returncode == 2, missing.stderr
    message = " ".join(missing.stderr.split())
    assert "no model file at" in message and "nope.snapkit" in message and "Traceback" not in message
    assert message.count(". ") == 0 and message.endswith(".")
    # The config "folder" is a file: the unit's folder cannot be made, as when it is not writable.
    (tmp_path / "blocked").write_text("")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "blocked")
    blocked = run_cli("service", "install", str(model_file), "--user", env=env)
    assert blocked.returncode == 2, blocked.stderr
    message = " ".join(blocked.stderr.split())
    assert "Could not write the systemd unit" in message and "check that its folder is writable" in message
    assert "Traceback" not in message


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    work = tmp_path / "work dir"
    work.mkdir()
    model = tmp_path / "my runs" / "model.snapkit"
    command = listen_command(model, ["--events", str(tmp_path / "a 50% log.csv"), "--device", "$x"])
    path = install_unit(
        ServiceSettings("snapkit-verify", command, work, user_unit=False), tmp_path / "snapkit-verify.service"
    )
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    # Without a booted systemd (a container) verify may complain about the manager; never about this unit's lines.
    complaints = [line for line in result.stderr.splitlines() if "snapkit-verify.service" in line]
    assert not complaints, result.stderr
