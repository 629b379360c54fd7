"""A day on a small computer: ``snapkit listen``'s live path on one core for hours of real audio, with the event
log, clip saving and MQTT on. What share of a core does listening take, and does its memory grow?

    taskset -c 1 nice python experiments/day_on_one_core.py ../shared/sounds --backbone convnet --hours 24
    taskset -c 1 nice python experiments/day_on_one_core.py ../shared/sounds --backbone sfx-cnn9 --hours 2
    taskset -c 1 nice python experiments/day_on_one_core.py ../shared/sounds --backbone sfx-cnn9 --hours 1 \\
        --min-level-dbfs -50 --room-dbfs -65
    python experiments/day_on_one_core.py ../shared/sounds --quick      # seconds of audio, random weights

The stream: the four real household recordings of ``background/`` looped end to end (at their recorded level, or
turned to ``--room-dbfs`` RMS), with a real held-out clip of a trained class (urban dog_bark, car_horn, siren; its
source recordings not trained on) added at its recorded level every ``--event-every-s`` (+-25 %). It is made block
by block (0.05 s, as the microphone delivers) and never held whole, and fed as fast as the CPU allows (not paced)
through ``run_live`` with a ``Detector`` built as ``snapkit listen`` builds it (``detector_settings``, mode auto,
the bundle's thresholds), an ``EventPrinter`` (stdout), an ``EventLog`` (.jsonl), a ``ClipSaver`` and an
``MqttNotifier`` publishing to a mosquitto this script starts on a free 127.0.0.1 port. One model per process, so
its resident memory is its own.

The model, unless ``--bundle`` is given, is trained once with ``snapkit train`` (``--no-estimate``) on 20 clips of
each class (split by source recording, ``fsID``) plus 5 s cuts of two of the background recordings, and kept in
``--out``. Quality is not what is measured. ``--quick`` uses random weights instead (the same arithmetic).

Every ``--sample-every-min`` of stream time the source records resident memory (/proc VmRSS), the
process's CPU time (all its threads: inference, sinks, MQTT, the main thread's status wake-ups), wall time, and the
MQTT counts. Real-time factor = CPU seconds / stream seconds after warm-up: the share of one core that listening
live takes. Growth = RSS at the end - RSS at the first sample after ``--warmup-min``. ``--tracemalloc`` also
records, at each sample, the Python allocations that grew most since warm-up, by file (slow; to find a leak).

Writes ``experiments/results/day_on_one_core/<name>.json`` and ``.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.realsets import LabelledClip, by_label, read_set, split_by_group  # noqa: E402

CLASSES = ("car_horn", "dog_bark", "siren")  # sorted, as a bundle keeps them
TRAIN_BACKGROUND = ("doing_the_dishes.flac", "running_tap.flac")
BLOCK_S = 0.05  # what the microphone delivers (snapkit.audio.sources.DEFAULT_BLOCK_S)
MOSQUITTO = "/usr/sbin/mosquitto"
MB = 1024 * 1024


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux's /proc; elsewhere the peak so far, from getrusage).

    The recorded runs read psutil's ``memory_info().rss``, the same figure as VmRSS; psutil is not a declared
    dependency, so /proc is read directly."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_cpu_s(pid: int) -> float | None:
    """CPU seconds used so far by another process (the broker), from /proc; None when unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------- the broker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """A private mosquitto on a free 127.0.0.1 port, anonymous, in memory only; stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        config = workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "log_dest stderr\nmax_queued_messages 100000\n"
        )
        # The log goes through stderr into a file opened here: run as root, mosquitto drops to its own user, which
        # may not write in this folder.
        with open(workdir / "mosquitto.log", "wb") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not start on port {self.port}; see {workdir / 'mosquitto.log'}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


# ---------------------------------------------------------------------------------------------- the model


def clips_of(sounds: Path, seed: int, shots: int) -> tuple[dict[str, list[LabelledClip]], list[LabelledClip]]:
    """(training clips per class, held-out clips of all classes): split by source recording (fsID)."""
    rng = np.random.default_rng(seed)
    clips = by_label(c for c in read_set(sounds / "urban") if c.label in CLASSES)
    train, test = {}, []
    for label in CLASSES:
        train[label], held_out = split_by_group(clips[label], shots, rng)
        test += held_out
    return train, test


def train_bundle(sounds: Path, backbone: str, out: Path, seed: int, shots: int, max_minutes: float) -> Path:
    """Train (once; kept in ``out``) a model with ``snapkit train`` through the CLI, as a user would."""
    from snapkit.audio.io import load_audio, write_wav

    run = out / f"train-{backbone}"
    bundle = run / "model.snapkit"
    if bundle.exists():
        return bundle
    out.mkdir(parents=True, exist_ok=True)
    # The training folder holds links to, and cuts of, the shared recordings: outside the repository, never in it.
    scratch = Path(tempfile.gettempdir()) / "snapkit-day-on-one-core"
    scratch.mkdir(exist_ok=True)
    data = scratch / f"data-seed{seed}-{shots}"
    if not data.exists():
        train, _ = clips_of(sounds, seed, shots)
        staging = Path(tempfile.mkdtemp(prefix="data-", dir=scratch))
        for label, clips in train.items():
            (staging / label).mkdir(parents=True)
            for clip in clips:
                (staging / label / clip.path.name).symlink_to(clip.path.resolve())
        (staging / "background").mkdir()
        for name in TRAIN_BACKGROUND:
            bed, rate = load_audio(sounds / "background" / name, 16_000)
            for k in range(len(bed) // (5 * rate)):
                write_wav(
                    staging / "background" / f"{Path(name).stem}-{k}.wav", bed[k * 5 * rate : (k + 1) * 5 * rate], rate
                )
        staging.rename(data)
    command = [sys.executable, "-m", "snapkit", "train", "--data", str(data), "--backbone", backbone, "--out", str(run)]
    command += ["--no-estimate", "--seed", str(seed), "--max-minutes", str(max_minutes)]
    print("+", " ".join(command), flush=True)
    start = time.monotonic()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    print(f"trained in {time.monotonic() - start:.0f} s", flush=True)
    return bundle


def random_bundle(backbone: str) -> Any:
    """The architecture with random weights (for ``--quick``): the same arithmetic, no training."""
    from snapkit.models.backbones.registry import backbone_architecture
    from snapkit.models.bundle import ModelBundle
    from snapkit.models.classifier import SoundClassifier
    from snapkit.models.config import ModelConfig

    config = ModelConfig(backbone=backbone, labels=CLASSES)
    model = SoundClassifier(config, None if backbone == "convnet" else backbone_architecture(backbone))
    return ModelBundle.from_model(model.eval())


# ---------------------------------------------------------------------------------------------- the stream


@dataclass
class Sample:
    stream_h: float
    rss_mb: float
    cpu_s: float
    wall_s: float
    mqtt_sent: int
    mqtt_dropped: int
    mqtt_pending: int
    clips_saved: int
    broker_cpu_s: float | None
    top_growth: list[str] = field(default_factory=list)


class DaySource:
    """Looped real ambience with a real held-out clip mixed in every ``event_every_s`` (+-25 %), served in
    ``BLOCK_S`` blocks up to ``seconds``; records a ``Sample`` at every ``sample_every_s`` of stream time (on the
    inference thread, which pulls the blocks: RSS and CPU time are the process's, so that is as good as anywhere)."""

    def __init__(
        self,
        ambience: np.ndarray,
        events: list[np.ndarray],
        rate_hz: int,
        *,
        seconds: float,
        event_every_s: float,
        sample_every_s: float,
        warmup_s: float,
        seed: int,
        probe: Callable[[float], Sample],
    ) -> None:
        self.sample_rate_hz = rate_hz
        self.ambience = ambience
        self.events = events
        self.total_n = round(seconds * rate_hz)
        self.block_n = round(BLOCK_S * rate_hz)
        self.event_every_n = event_every_s * rate_hz
        self.sample_every_n = round(sample_every_s * rate_hz)
        self.warmup_n = round(warmup_s * rate_hz)
        self.rng = np.random.default_rng(seed)
        self.probe = probe
        self.samples: list[Sample] = []
        self.planted = 0

    def _next_gap_n(self) -> int:
        return int(self.rng.uniform(0.75, 1.25) * self.event_every_n)

    def blocks(self) -> Iterator[np.ndarray]:
        amb_pos = 0
        next_event = self._next_gap_n()
        playing: list[np.ndarray] = []  # the rest of the clips being mixed in
        next_sample = self.warmup_n
        position = 0
        while position < self.total_n:
            n = min(self.block_n, self.total_n - position)
            idx = (amb_pos + np.arange(n)) % len(self.ambience)
            block = self.ambience[idx].copy()
            amb_pos = (amb_pos + n) % len(self.ambience)
            if position <= next_event < position + n:
                clip = self.events[self.rng.integers(len(self.events))]
                playing.append(np.concatenate([np.zeros(next_event - position, np.float32), clip]))
                self.planted += 1
                next_event += self._next_gap_n()
            still = []
            for rest in playing:
                k = min(n, len(rest))
                block[:k] += rest[:k]
                if len(rest) > n:
                    still.append(rest[n:])
            playing = still
            np.clip(block, -1.0, 1.0, out=block)
            position += n
            if position >= next_sample:
                self.samples.append(self.probe(position / self.sample_rate_hz))
                next_sample += self.sample_every_n
            yield block
        if not self.samples or self.samples[-1].stream_h * 3600 < position / self.sample_rate_hz - 1e-6:
            self.samples.append(self.probe(position / self.sample_rate_hz))

    def close(self) -> None:
        pass


def load_stream_parts(
    sounds: Path, rate: int, seed: int, shots: int, room_dbfs: float | None, max_clips: int | None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(the looped ambience, the held-out event clips), at ``rate``."""
    from snapkit.audio.io import load_audio
    from snapkit.audio.levels import rms_dbfs

    beds = [load_audio(path, rate)[0] for path in sorted((sounds / "background").glob("*.flac"))]
    if room_dbfs is not None:
        beds = [bed * np.float32(10 ** ((room_dbfs - rms_dbfs(bed)) / 20)) for bed in beds]
    _, test = clips_of(sounds, seed, shots)
    if max_clips is not None:
        test = test[:: max(1, len(test) // max_clips)][:max_clips]
    events = [load_audio(clip.path, rate)[0].astype(np.float32) for clip in test]
    return np.concatenate(beds).astype(np.float32), events


# ---------------------------------------------------------------------------------------------- the run


def run_day(args: argparse.Namespace) -> dict[str, object]:
    import torch

    torch.set_num_threads(1)
    from snapkit.cli.options import detector_settings
    from snapkit.detection.detector import Detector
    from snapkit.detection.live import run_live
    from snapkit.detection.mqtt import MqttNotifier, parse_mqtt_url
    from snapkit.detection.sinks import ClipSaver, EventLog, EventPrinter
    from snapkit.models.bundle import load_model

    args.out.mkdir(parents=True, exist_ok=True)
    if args.bundle is not None:
        bundle, bundle_from = load_model(args.bundle), str(args.bundle)
    elif args.quick:
        torch.manual_seed(args.seed)
        bundle, bundle_from = random_bundle(args.backbone), "random weights (--quick)"
    else:
        path = train_bundle(args.sounds, args.backbone, args.out, args.seed, args.shots, args.train_minutes)
        bundle, bundle_from = load_model(path), str(path)
    settings, why = detector_settings(bundle, "auto", None, "normal", None, args.min_level_dbfs)
    rate = bundle.model.sample_rate_hz
    ambience, events = load_stream_parts(
        args.sounds, rate, args.seed, args.shots, args.room_dbfs, 6 if args.quick else None
    )
    name = args.name or f"{bundle.config.backbone}-{args.hours:g}h" + (
        "" if args.min_level_dbfs is None else f"-gate{args.min_level_dbfs:g}"
    )
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=args.out))
    broker = Mosquitto(work)
    try:
        detector = Detector(bundle, settings, sample_rate_hz=rate)
        mqtt = MqttNotifier(
            parse_mqtt_url(f"mqtt://127.0.0.1:{broker.port}/snapkit", "dayrun"), detector.labels, model_name=name
        )
        mqtt.start()
        saver = ClipSaver(work / "clips", 1.0, 1.0, sample_rate_hz=rate)
        log = EventLog(work / "events.jsonl")
        printer = EventPrinter(write=(lambda line: None) if args.quiet else None)
        print(f"{name}: {bundle_from}; {detector.describe()}; {why}; MQTT on 127.0.0.1:{broker.port}", flush=True)

        # Warm-up outside the clocked stream (first-call allocations): 10 s of the ambience through a twin detector.
        warm = Detector(bundle, settings, sample_rate_hz=rate)
        warm.push(ambience[: 10 * rate])
        del warm
        if args.tracemalloc:
            tracemalloc.start(1)
        baseline: list[tracemalloc.Snapshot] = []
        clock = {"cpu": time.process_time(), "wall": time.monotonic()}

        def probe(position_s: float) -> Sample:
            stats = mqtt.stats()
            top = []
            if args.tracemalloc:
                snapshot = tracemalloc.take_snapshot()
                if not baseline:
                    baseline.append(snapshot)
                else:
                    diff = snapshot.compare_to(baseline[0], "filename")
                    top = [
                        f"{d.traceback[0].filename}: {d.size_diff / MB:+.2f} MB ({d.count_diff:+d})" for d in diff[:8]
                    ]
            sample = Sample(
                stream_h=position_s / 3600,
                rss_mb=rss_mb(),
                cpu_s=time.process_time() - clock["cpu"],
                wall_s=time.monotonic() - clock["wall"],
                mqtt_sent=stats.sent,
                mqtt_dropped=stats.dropped,
                mqtt_pending=stats.pending,
                clips_saved=saver.saved_count,
                broker_cpu_s=child_cpu_s(broker.process.pid),
                top_growth=top,
            )
            print(
                f"  {sample.stream_h:6.2f} h  RSS {sample.rss_mb:7.1f} MB  CPU {sample.cpu_s:8.1f} s  "
                f"wall {sample.wall_s:8.1f} s  clips {sample.clips_saved}  mqtt sent {sample.mqtt_sent} "
                f"dropped {sample.mqtt_dropped} pending {sample.mqtt_pending}",
                flush=True,
            )
            for line in top[:4]:
                print("      ", line, flush=True)
            return sample

        source = DaySource(
            ambience,
            events,
            rate,
            seconds=args.hours * 3600,
            event_every_s=args.event_every_s,
            sample_every_s=args.sample_every_min * 60,
            warmup_s=args.warmup_min * 60,
            seed=args.seed,
            probe=probe,
        )
        rss_before = rss_mb()
        # A wall-clock limit stops the stream early (the report then says how much was streamed): a shared machine
        # with a deadline must not still be busy after it.
        stop = threading.Event()
        timer = threading.Timer(args.stop_after_min * 60, stop.set) if args.stop_after_min else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        summary = run_live(detector, source, [log, printer], [mqtt], clip_saver=saver, stop_event=stop)
        if timer is not None:
            timer.cancel()
        broker_cpu = child_cpu_s(broker.process.pid)
    finally:
        broker.stop()
    samples = source.samples
    first, last = samples[0], samples[-1]
    stream_s = (last.stream_h - first.stream_h) * 3600
    hours = last.stream_h - first.stream_h
    growth = last.rss_mb - first.rss_mb
    # The slope by least squares over all samples after warm-up: less at the mercy of one sample than end - start.
    slope = (
        float(np.polyfit([s.stream_h for s in samples], [s.rss_mb for s in samples], 1)[0])
        if len(samples) > 2
        else (growth / hours if hours > 0 else 0.0)
    )
    # The same over the second half only: allocator pools and caches fill in the first minutes and then stay, which a
    # slope over a short run would extrapolate as if it went on all day.
    late = [s for s in samples if s.stream_h >= (first.stream_h + last.stream_h) / 2]
    late_slope = (
        float(np.polyfit([s.stream_h for s in late], [s.rss_mb for s in late], 1)[0]) if len(late) > 2 else None
    )
    clip_bytes = sum(p.stat().st_size for p in (work / "clips").glob("*.wav"))
    report: dict[str, object] = {
        "name": name,
        "backbone": bundle.config.backbone,
        "bundle": bundle_from,
        "detector": detector.describe(),
        "min_level_dbfs": args.min_level_dbfs,
        "room_dbfs": args.room_dbfs,
        "stream_hours": summary.seconds / 3600,
        "measured_hours": hours,
        "real_time_factor_cpu": (last.cpu_s - first.cpu_s) / stream_s if stream_s > 0 else None,
        "real_time_factor_wall": (last.wall_s - first.wall_s) / stream_s if stream_s > 0 else None,
        "broker_cpu_s": broker_cpu,
        "rss_before_stream_mb": rss_before,
        "rss_start_mb": first.rss_mb,
        "rss_end_mb": last.rss_mb,
        "rss_peak_mb": max(s.rss_mb for s in samples),
        "peak_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "growth_mb": growth,
        "growth_mb_per_hour": slope,
        "growth_mb_per_24h": slope * 24,
        "growth_mb_per_hour_second_half": late_slope,
        "extrapolated_24h": summary.seconds < 24 * 3600 - 1,
        "stopped_by_wall_limit": summary.interrupted,
        "planted": source.planted,
        "events": summary.events,
        "clips_saved": summary.clips_saved,
        "clips_mb": clip_bytes / MB,
        "events_jsonl_mb": (work / "events.jsonl").stat().st_size / MB if (work / "events.jsonl").exists() else 0.0,
        "sink_failures": summary.sink_failures,
        "mqtt": [vars(stats) for stats in summary.notifiers],
        "samples": [vars(s) for s in samples],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or cpu_model()}, python {platform.python_version()}, "
        f"torch {torch.__version__}, CPU affinity {sorted(os.sched_getaffinity(0))}, torch threads "
        f"{torch.get_num_threads()}",
        "command": " ".join(sys.argv),
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        report["workdir"] = str(work)
    return report


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def markdown(report: dict[str, object]) -> str:
    r = report
    mqtt = r["mqtt"][0] if r["mqtt"] else {}  # type: ignore[index]
    return "\n".join(
        [
            f"# A day on one core: {r['name']}",
            "",
            "| model | audio streamed | RTF (CPU share of a core) | RSS start | RSS end | growth | growth/h | "
            "events (planted) | clips | MQTT sent / dropped |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {r['backbone']}{'' if r['min_level_dbfs'] is None else ', gate ' + str(r['min_level_dbfs'])} | "
            f"{r['stream_hours']:.2f} h | {r['real_time_factor_cpu']:.4f} | {r['rss_start_mb']:.1f} MB | "
            f"{r['rss_end_mb']:.1f} MB | {r['growth_mb']:+.1f} MB | {r['growth_mb_per_hour']:+.2f} MB | "
            f"{r['events']} ({r['planted']}) | {r['clips_saved']} | {mqtt.get('sent')} / {mqtt.get('dropped')} |",
            "",
            f"`{r['command']}`, {r['date']}, {r['machine']}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sounds", type=Path, help="the real recordings (../shared/sounds)")
    parser.add_argument("--backbone", default="convnet", help="convnet or sfx-cnn9 (trained unless --bundle)")
    parser.add_argument("--bundle", type=Path, help="a trained model.snapkit to use instead of training one")
    parser.add_argument("--hours", type=float, default=24.0, help="hours of audio to stream")
    parser.add_argument("--min-level-dbfs", type=float, help="the quiet gate (listen --min-level-dbfs), dBFS")
    parser.add_argument(
        "--room-dbfs", type=float, help="turn the ambience to this RMS level, dBFS (default: as recorded)"
    )
    parser.add_argument("--event-every-s", type=float, default=60.0, help="mean seconds between planted clips")
    parser.add_argument("--sample-every-min", type=float, default=15.0, help="stream minutes between memory samples")
    parser.add_argument("--warmup-min", type=float, default=5.0, help="stream minutes before the first sample")
    parser.add_argument("--shots", type=int, default=20, help="training clips per class")
    parser.add_argument("--train-minutes", type=float, default=3.0, help="snapkit train --max-minutes")
    parser.add_argument("--train-only", action="store_true", help="only train (or find) the model and say where")
    parser.add_argument("--stop-after-min", type=float, help="stop streaming after this many wall-clock minutes")
    parser.add_argument("--tracemalloc", action="store_true", help="record Python allocations by file (slow)")
    parser.add_argument("--quick", action="store_true", help="20 s of audio, random weights: checks the set-up")
    parser.add_argument("--quiet", action="store_true", help="do not print each event")
    parser.add_argument("--keep", action="store_true", help="keep the clips, event log and broker log")
    parser.add_argument("--name", help="name of the result files (default: backbone-hours[-gate])")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "day_on_one_core")
    args = parser.parse_args()
    if args.quick:
        args.hours, args.event_every_s = 20 / 3600, 4.0
        args.sample_every_min, args.warmup_min = 2 / 60, 2 / 60
    if not Path(MOSQUITTO).exists():
        parser.error(f"{MOSQUITTO} is missing: install Debian's mosquitto (apt-get install mosquitto)")
    if args.train_only:
        print(train_bundle(args.sounds, args.backbone, args.out, args.seed, args.shots, args.train_minutes))
        return
    report = run_day(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{report['name']}.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / f"{report['name']}.md").write_text(markdown(report) + "\n")
    print(markdown(report), flush=True)


if __name__ == "__main__":
    main()
