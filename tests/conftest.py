"""Shared fixtures: a real PortAudio input through a PulseAudio null sink, and helpers to run the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO.parent / "shared" / "models"


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C must reach the tests that press it. A shell that starts the suite in the background (``make test &``,
    nohup) hands it SIGINT ignored, which Python and every command the tests start then keep: the Ctrl-C tests would
    fail for how the suite was started, not for what snapkit does."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip locally, but fail in CI, where everything a test needs is installed by .ci/run."""
    if in_ci():
        pytest.fail(f"{reason} (CI installs this in .ci/run, so it must be there)")
    pytest.skip(reason)


@dataclass(frozen=True)
class VirtualMic:
    """A PulseAudio server whose null sink's monitor is the default input: what ``play`` plays, PortAudio hears."""

    env: dict[str, str]

    def play(self, wav: Path) -> subprocess.Popen[bytes]:
        """Start playing ``wav`` into the null sink; returns the running ``paplay``."""
        return subprocess.Popen(["paplay", "--device=virt", str(wav)], env=self.env)


def start_pulseaudio(env: dict[str, str], timeout_s: float = 10.0) -> bool:
    """Start the null-sink PulseAudio server of ``env``'s runtime folder (again, after a test killed it); True once
    it answers, with the sink's monitor as the default input."""
    subprocess.run(
        [
            "pulseaudio",
            "--daemonize=yes",
            "--exit-idle-time=-1",
            "-n",
            "--disable-shm=yes",
            "--load=module-native-protocol-unix",
            "--load=module-null-sink sink_name=virt",
            "--load=module-always-sink",
        ],
        env=env,
        check=False,
        capture_output=True,
    )
    deadline = time.monotonic() + timeout_s
    while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    subprocess.run(["pactl", "set-default-source", "virt.monitor"], env=env, check=False, capture_output=True)
    return True


@pytest.fixture(scope="session")
def virtual_mic() -> Iterator[VirtualMic]:
    for tool in ("pulseaudio", "pactl", "paplay"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (apt install pulseaudio pulseaudio-utils)")
    runtime = tempfile.mkdtemp(prefix="snapkit-pulse-")
    os.chmod(runtime, 0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
    env.pop("PULSE_SERVER", None)
    if not start_pulseaudio(env):
        skip_or_fail("the PulseAudio null-sink server did not start")
    try:
        yield VirtualMic(env=env)
    finally:
        subprocess.run(["pulseaudio", "--kill"], env=env, check=False, capture_output=True)
        shutil.rmtree(runtime, ignore_errors=True)


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    """``python -m snapkit ARGS`` in a subprocess, as a user would run it. The timeout only catches hangs."""
    return subprocess.run(
        [sys.executable, "-m", "snapkit", *args],
        env={**(env or os.environ), "COLUMNS": "200", "NO_COLOR": "1"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.fixture(scope="session")
def detector_bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ConvNet trained once per test session on generated sounds (4 classes x 12 clips + background)."""
    from snapkit.eval.synth import make_dataset
    from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

    reuse = os.environ.get("SNAPKIT_TEST_DETECTOR_BUNDLE")  # for quick local reruns; CI always trains
    if reuse and not os.environ.get("CI"):
        return Path(reuse)
    root = tmp_path_factory.mktemp("detector-model")
    make_dataset(root / "data", classes=DETECTOR_CLASSES, clips_per_class=12, background_clips=12, seed=11)
    # 60 epochs: the model the detector tests were tuned on, and half the CI time of the default views per clip.
    plan = plan_training(root / "data", root / "run", TrainSettings(backbone="convnet", seed=0, epochs=60))
    result = run_training(plan, trainer_options=TrainerOptions(progress_bar=False), log=lambda message: None)
    return result.bundle_path


# Snaps (a 10-20 ms click) are left out: at 6-13 dB SNR their recall varies from 0.3 to 0.6 between training runs
# (measured with experiments-style streams), which would make the F1 >= 0.9 assertion a coin toss; see issue 5.
DETECTOR_CLASSES = ("beep", "smoke_alarm", "scratch")
