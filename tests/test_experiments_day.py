"""The day-on-one-core experiment (experiments/day_on_one_core.py) runs end to end in --quick: 20 s of real ambience
with real clips through run_live with the event log, clip saving and MQTT to a private mosquitto, and reports
memory, CPU share and the MQTT counts. The long runs and their figures are in experiments/RESULTS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, skip_or_fail

SOUNDS = Path(os.environ.get("SNAPKIT_SOUNDS_DIR", REPO.parent / "shared" / "sounds"))
MOSQUITTO = Path("/usr/sbin/mosquitto")


def test_day_on_one_core_quick(tmp_path: Path) -> None:
    if not (SOUNDS / "urban" / "metadata.csv").is_file() or not (SOUNDS / "background").is_dir():
        skip_or_fail(f"the real recordings are not at {SOUNDS} (set SNAPKIT_SOUNDS_DIR)")
    if not MOSQUITTO.exists():
        skip_or_fail(f"{MOSQUITTO} is missing (apt-get install mosquitto)")
    script = REPO / "experiments" / "day_on_one_core.py"
    done = subprocess.run(
        [sys.executable, str(script), str(SOUNDS), "--quick", "--quiet", "--out", str(tmp_path), "--name", "quick"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "quick.json").read_text())
    assert abs(report["stream_hours"] * 3600 - 20.0) < 0.1
    assert len(report["samples"]) >= 3
    assert all(sample["rss_mb"] > 10 for sample in report["samples"])
    assert 0 < report["real_time_factor_cpu"] < 5
    assert report["planted"] >= 3
    # Every finished event's clip is written, and nothing failed on the way out.
    assert report["clips_saved"] == report["events"]
    assert report["sink_failures"] == 0
    (mqtt,) = report["mqtt"]
    # Each event is at least its start and its end (discovery and "online" are not counted).
    assert mqtt["sent"] >= 2 * report["events"] and mqtt["dropped"] == 0 and mqtt["failed"] == 0
    assert (tmp_path / "quick.md").read_text().startswith("# A day on one core")
    assert not list(tmp_path.glob("quick-*")), "the clips, event log and broker log are removed without --keep"
