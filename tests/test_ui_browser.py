"""The workbench end to end: `snapkit ui` started as a user starts it, its pages driven in Debian's headless Chromium.

Record uses Chromium's fake microphone fed from a WAV made here; the saved clip must correlate with it. Screenshots
of each page go to $SNAPKIT_UI_SCREENSHOTS (default: the test's temporary folder), never into git.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from snapkit.audio.io import load_audio, write_wav
from snapkit.audio.resample import resample
from tests.conftest import skip_or_fail
from tests.ui_helpers import make_data, make_events

pytestmark = pytest.mark.e2e
FAKE_MIC_RATE_HZ = 48_000
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """``snapkit ui`` in a subprocess; ``address`` is the one it printed (with its token)."""

    def __init__(self, data: Path, runs: Path, events: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300", "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
        port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "snapkit",
                "ui",
                "--data",
                str(data),
                "--runs",
                str(runs),
                "--events",
                str(events),
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        printed = ""
        deadline = time.monotonic() + 60
        while "Open http" not in printed and time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            printed += line
        found = re.search(r"Open (http://\S+)", printed)
        assert found, printed
        self.address = found[1]
        self.base = self.address.split("?")[0]
        while time.monotonic() < deadline:  # the address is printed just before uvicorn binds
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SNAPKIT_UI_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def chromium_path() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    skip_or_fail("Chromium is not installed (apt install chromium)")
    raise AssertionError  # unreachable: skip_or_fail raises


@pytest.fixture
def fake_mic_wav(tmp_path: Path) -> Path:
    """3 s of seeded noise at 48 kHz: any 2 s of it correlates with one place in it only."""
    audio = np.random.default_rng(5).normal(0, 0.2, 3 * FAKE_MIC_RATE_HZ).astype(np.float32)
    return write_wav(tmp_path / "fake-mic.wav", audio, FAKE_MIC_RATE_HZ)


@pytest.fixture
def browser(chromium_path: str, fake_mic_wav: Path) -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path,
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={fake_mic_wav}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(make_data(tmp_path, clips_per_class=3), tmp_path / "runs", make_events(tmp_path))
    try:
        yield running
    finally:
        running.stop()


def open_page(browser: object, server: Server, hash_: str) -> object:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    context.grant_permissions(["microphone"], origin=server.base.rstrip("/"))
    page = context.new_page()
    page.goto(server.address)  # with the token: it becomes a cookie and leaves the address
    assert "token" not in page.url
    page.goto(server.base + hash_)
    page.wait_for_selector("#changes button")
    return page


def best_correlation(clip: np.ndarray, source: np.ndarray) -> float:
    """The highest normalised correlation of ``clip`` with any stretch of ``source`` played in a loop."""
    looped = np.concatenate([source, source, source])[: len(source) + len(clip)]
    size = 1 << int(np.ceil(np.log2(len(looped) + len(clip))))
    corr = np.fft.irfft(np.fft.rfft(looped, size) * np.conj(np.fft.rfft(clip, size)), size)[: len(source)]
    energy = np.convolve(looped**2, np.ones(len(clip)), mode="valid")[: len(source)]
    return float(np.max(corr / np.sqrt(energy * np.sum(clip**2) + 1e-12)))


def test_record_in_the_browser_saves_the_microphone_clip(
    browser: object, server: Server, tmp_path: Path, fake_mic_wav: Path, shots: Path
) -> None:
    page = open_page(browser, server, "#record")
    page.fill("#record-label", "hiss")
    page.fill("#record-seconds", "2")
    page.fill("#record-countdown", "1")
    page.click("#record-button")
    page.wait_for_selector("#recorded li.saved", timeout=30_000)
    page.screenshot(path=str(shots / "record.png"))
    saved = list((tmp_path / "data" / "hiss").glob("hiss-*.wav"))
    assert len(saved) == 1 and re.fullmatch(r"hiss-\d{8}-\d{6}-[0-9a-f]{8}\.wav", saved[0].name)
    clip, rate = load_audio(saved[0])
    assert abs(len(clip) / rate - 2.0) < 0.01
    source, source_rate = load_audio(fake_mic_wav)
    if rate != source_rate:
        source = resample(source, source_rate, rate)
    assert best_correlation(clip, source) > 0.9


def test_review_wrong_another_class_and_undo_in_the_browser(
    browser: object, server: Server, tmp_path: Path, shots: Path
) -> None:
    data, events = tmp_path / "data", tmp_path / "events"
    (tmp_path / "runs" / "earlier").mkdir(parents=True)
    (tmp_path / "runs" / "earlier" / "model.snapkit").write_bytes(b"")  # "the last training", for the count
    page = open_page(browser, server, "#review")
    assert "0 change(s) since the last training" in page.inner_text("#changes")
    page.wait_for_selector(".card[data-path='kitchen-0012.50s-whistle.wav']")
    page.wait_for_load_state("networkidle")  # the spectrograms
    page.screenshot(path=str(shots / "review.png"), full_page=True)
    wrong = "beep-20261206-101700-000-2.wav"
    page.click(f".card[data-path='{wrong}'] button.wrong")
    page.wait_for_selector(f".card[data-path='{wrong}']", state="detached")
    assert (data / "background" / wrong).exists() and not (events / wrong).exists()
    other = "kitchen-0012.50s-whistle.wav"
    page.select_option(f".card[data-path='{other}'] select", "beep")
    page.click(f".card[data-path='{other}'] button.other")
    page.wait_for_selector(f".card[data-path='{other}']", state="detached")
    assert (data / "beep" / other).exists() and not (events / other).exists()
    assert "2 change(s)" in page.inner_text("#changes")
    page.click("#undo")
    page.wait_for_selector(f".card[data-path='{other}']")
    assert (events / other).exists() and not (data / "beep" / other).exists()
    assert (data / "background" / wrong).exists()
    page.goto(server.base + "#dataset")
    page.wait_for_selector(".class-block .card")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(shots / "dataset.png"))


def test_train_from_the_page_shows_the_result(browser: object, server: Server, shots: Path) -> None:
    page = open_page(browser, server, "#train")
    page.wait_for_selector("#train-backbone option[value=convnet]", state="attached")
    page.fill("#train-epochs", "1")
    page.fill("#train-minutes", "2")
    page.click("#train-button")
    page.wait_for_selector("#train-log:not(:empty)", timeout=60_000)
    assert "one training at a time" in page.inner_text("#train-state")
    page.wait_for_selector("#per-class", timeout=240_000)
    page.screenshot(path=str(shots / "train.png"), full_page=True)
    table = page.inner_text("#per-class")
    assert "beep" in table and "whistle" in table and "background" in table
    assert page.locator(".confusion").count() == 1
    assert "Trained" in page.inner_text("#train-state")
    # The new model is offered to the live detector at once.
    page.click("nav a[data-page=listen]")
    page.wait_for_selector("#listen-model option", state="attached")
    assert page.locator("#listen-model option").first.get_attribute("value").endswith("-convnet")
    assert "No trained model" not in page.inner_text("#listen-state")
    page.screenshot(path=str(shots / "listen.png"))
