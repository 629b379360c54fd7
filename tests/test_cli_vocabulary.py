"""One option vocabulary across the commands: units in the names, --data for the dataset, --json a flag.

The old spellings (``--seconds``, ``--hop``, ``--samplerate``, a positional dataset folder, ...) still parse so old
scripts run, but help shows only the current names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner, Result

from snapkit.cli.app import app
from snapkit.cli.help import DEPRECATED_OPTION_NAMES

COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]

# A number an option measures carries its unit at the end of its name.
UNIT_SUFFIXES = ("-s", "-ms", "-hz", "-db", "-dbfs", "-minutes", "-per-hour", "-mb")
# Words in an option's help that say the number it takes is measured in a unit.
UNIT_WORDS = re.compile(r"\b(seconds?|ms|Hz|dB|dBFS|minutes?)\b")


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), prog_name="snapkit", env={"COLUMNS": "200", "NO_COLOR": "1"})


def _options(command: str) -> list:
    return [p for p in COMMANDS[command].params if p.param_type_name == "option"]


def measures_a_quantity(option: typer.core.TyperOption) -> bool:
    """A float is always a measurement (a length, a rate, a level); an integer is one when its help names a unit
    (``--sample-rate-hz``: "Input rate in Hz")."""
    kind = option.bare_type()
    return kind == "float" or (kind == "int" and UNIT_WORDS.search(option.help or "") is not None)


def lacks_unit(name: str, option: typer.core.TyperOption) -> bool:
    return measures_a_quantity(option) and not name.lower().endswith(UNIT_SUFFIXES)


def _shown_name(option: typer.core.TyperOption) -> str:
    return next(n for n in option.opts if n.startswith("--") and n not in DEPRECATED_OPTION_NAMES)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_measured_option_names_its_unit(command: str) -> None:
    missing = [_shown_name(o) for o in _options(command) if lacks_unit(_shown_name(o), o)]
    assert not missing, f"{command}: {missing} take a measured number; end the name with one of {UNIT_SUFFIXES}"


def test_the_unit_check_catches_the_old_names() -> None:
    """The check above is real: run on each option's old spelling, it flags every one of them but --count (a
    number of clips, which has no unit; it became --clips for one word across record and demo)."""
    flagged, kept = set(), set()
    for command in COMMANDS:
        for option in _options(command):
            for name in set(option.opts) & DEPRECATED_OPTION_NAMES:
                (flagged if lacks_unit(name, option) else kept).add(name)
    assert flagged == DEPRECATED_OPTION_NAMES - {"--count"}
    assert kept == {"--count"}


def test_every_old_name_is_the_second_name_of_a_current_option() -> None:
    """No stale entry in the deprecated list, and no option left with only an old name to show."""
    used = set()
    for command in COMMANDS:
        for option in _options(command):
            used |= set(option.opts) & DEPRECATED_OPTION_NAMES
            assert any(n.startswith("--") and n not in DEPRECATED_OPTION_NAMES for n in option.opts), option.opts
    assert used == DEPRECATED_OPTION_NAMES


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_only_the_current_names(command: str) -> None:
    result = _invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert not _names_an_old_spelling(result.output), command
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "DATA_DIR" not in usage  # the positional dataset folder is the hidden, older form of --data


def _names_an_old_spelling(text: str) -> bool:
    return any(re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) for name in DEPRECATED_OPTION_NAMES)


def test_errors_name_the_current_option_even_when_the_old_one_was_typed() -> None:
    bad = _invoke("import", "x.wav", "--label", "a", "--seconds", "0")
    assert bad.exit_code == 2 and "Invalid value for '--clip-s'" in bad.output
    assert not _names_an_old_spelling(bad.output), bad.output
    typo = _invoke("import", "x.wav", "--label", "a", "--hop-sec", "1")
    assert typo.exit_code == 2 and "--hop-s" in typo.output
    assert not _names_an_old_spelling(typo.output), typo.output


def test_help_shows_the_new_names() -> None:
    shown = {command: _invoke(command, "--help").output for command in ("record", "import", "listen", "train")}
    for name in ("--clips", "--clip-s", "--sample-rate-hz", "--countdown-s", "--silence-dbfs", "--data"):
        assert name in shown["record"], name
    for name in ("--clip-s", "--hop-s", "--silence-dbfs"):
        assert name in shown["import"], name
    for name in ("--pre-roll-s", "--post-roll-s", "--cooldown-s", "--duration-s", "--hop-s", "--sample-rate-hz"):
        assert name in shown["listen"], name
    assert "--clip-s" in shown["train"] and "--data" in shown["train"]
    # Lightning's --devices sits in its own panel and says it is not a microphone (record/listen's --device).
    assert "Lightning (training hardware)" in shown["train"] and "Not a microphone" in " ".join(shown["train"].split())


def test_old_spellings_still_parse_to_the_same_settings() -> None:
    record = COMMANDS["record"]
    old = record.make_context(
        "record",
        [
            "x",
            "--count",
            "2",
            "--seconds",
            "1.5",
            "--samplerate",
            "8000",
            "--countdown",
            "0",
            "--silence-threshold",
            "-50",
        ],
    )
    new = record.make_context(
        "record",
        ["x", "-n", "2", "--clip-s", "1.5", "--sample-rate-hz", "8000", "--countdown-s", "0", "--silence-dbfs", "-50"],
    )
    assert old.params == new.params
    assert old.params["count"] == 2 and old.params["seconds"] == 1.5 and old.params["samplerate"] == 8000
    listen = COMMANDS["listen"]
    old_names = ["--pre-roll", "0.5", "--post-roll", "2", "--cooldown", "5", "--duration", "9", "--hop", "0.3"]
    new_names = [
        "--pre-roll-s",
        "0.5",
        "--post-roll-s",
        "2",
        "--cooldown-s",
        "5",
        "--duration-s",
        "9",
        "--hop-s",
        "0.3",
    ]
    assert (
        listen.make_context("listen", ["m", *old_names]).params
        == listen.make_context("listen", ["m", *new_names]).params
    )


def test_import_runs_with_the_old_spellings(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wav = tmp_path / "long.wav"
    sf.write(wav, (0.3 * rng.standard_normal(16_000 * 4)).astype(np.float32), 16_000)
    data = tmp_path / "data"
    args = ["--label", "hiss", "--data", str(data), "--seconds", "1", "--hop", "1", "--silence-threshold", "-60"]
    result = _invoke("import", str(wav), *args, "--activity-db", "0")
    assert result.exit_code == 0, result.output
    clips = sorted((data / "hiss").glob("*.wav"))
    assert len(clips) == 4 and all(sf.info(c).frames == 16_000 for c in clips)


def test_the_dataset_folder_is_data_or_the_older_positional_form(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for command in ("data", "train"):
        for args in (["--data", str(missing)], [str(missing)]):
            result = CliRunner().invoke(app, [command, *args], prog_name="snapkit")
            assert result.exit_code != 0 and "No such option" not in result.output
            assert isinstance(result.exception, Exception) and str(missing) in str(result.exception), result.output
    twice = _invoke("data", str(tmp_path / "a"), "--data", str(tmp_path / "b"))
    assert twice.exit_code == 2 and "given twice" in twice.output


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An untrained ConvNet bundle and a tiny labelled folder: enough for evaluate to write a report."""
    import torch

    from snapkit.eval.synth import make_dataset
    from snapkit.models import ModelBundle, ModelConfig, SoundClassifier

    root = tmp_path_factory.mktemp("evaluate")
    torch.manual_seed(0)
    model = SoundClassifier(ModelConfig(backbone="convnet", labels=("beep", "snap")), None).eval()
    bundle = ModelBundle.from_model(model).save(root / "model.snapkit")
    make_dataset(root / "data", classes=("beep", "snap"), clips_per_class=2, background_clips=2, seed=0)
    return bundle, root / "data"


def test_evaluate_json_prints_the_report_and_report_writes_it(untrained: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, data = untrained
    printed = CliRunner().invoke(app, ["evaluate", str(bundle), "--data", str(data), "--json"], prog_name="snapkit")
    assert printed.exit_code == 0, printed.output
    report = json.loads(printed.stdout)
    assert report["clips"] == 6 and set(report["per_class"]) == {"beep", "snap", "background"}

    target = tmp_path / "report.json"
    written = _invoke("evaluate", str(bundle), str(data), "--report", str(target))  # the older positional form
    assert written.exit_code == 0, written.output
    assert json.loads(target.read_text()) == report and "Confusion matrix" in written.output


def test_evaluate_says_what_to_do_when_the_old_json_path_or_the_folder_is_missing(
    untrained: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, data = untrained
    old = _invoke("evaluate", str(bundle), str(data), "--json", str(tmp_path / "ev.json"))
    assert old.exit_code == 2 and f"--report {tmp_path / 'ev.json'}" in " ".join(old.output.split())
    assert not (tmp_path / "ev.json").exists()
    missing = _invoke("evaluate", str(bundle))
    assert missing.exit_code == 2 and "--data DIR" in missing.output


def test_service_install_speaks_listens_vocabulary() -> None:
    """``service install`` is a sub-command, so the per-command checks above do not reach it: its options name their
    units, and those it passes on to listen are listen's own (same names, same help)."""
    install = COMMANDS["service"].commands["install"]
    options = [p for p in install.params if p.param_type_name == "option"]
    assert not [_shown_name(o) for o in options if lacks_unit(_shown_name(o), o)]
    listen = {_shown_name(o): o.help for o in _options("listen")}
    passed = {"--device", "--events", "--save-clips", "--sensitivity", "--threshold"}
    assert {_shown_name(o): o.help for o in options if _shown_name(o) in passed} == {n: listen[n] for n in passed}
    result = _invoke("service", "install", "--help")
    assert result.exit_code == 0 and not _names_an_old_spelling(result.output), result.output
