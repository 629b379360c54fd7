"""``snapkit demo``: the whole loop with no microphone and no download, on generated sounds."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from snapkit.cli.data import print_dataset
from snapkit.cli.ui import console
from snapkit.dataset.scan import scan_dataset

# Marks a folder the demo made, so a re-run may replace it and nothing else is ever deleted.
DEMO_MARKER = ".snapkit-demo"


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's generated data and results.")] = Path(
        "runs/demo"
    ),
    clips_per_class: Annotated[int, typer.Option("--clips", "-n", min=3, help="Generated clips per class.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the generated sounds.")] = 0,
) -> None:
    """Generate a small example dataset of synthetic sounds and show what snapkit makes of it."""
    from snapkit.eval.synth import make_dataset

    data_dir = out / "data"
    _prepare(out)
    console.print(f"[bold]1. Generating an example dataset[/] in {data_dir}/ (seed {seed}) ...")
    make_dataset(data_dir, clips_per_class=clips_per_class, background_clips=clips_per_class, seed=seed)
    print_dataset(scan_dataset(data_dir))

    from snapkit.cli.train import print_report
    from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

    console.print(f"\n[bold]2. Training a ConvNet[/] on it (no download needed) into {out}/ ...")
    plan = plan_training(data_dir, out / "convnet", TrainSettings(backbone="convnet", seed=seed))
    console.print("\n".join(f"  {line}" for line in plan.describe()))
    result = run_training(
        plan, trainer_options=TrainerOptions(progress_bar=console.is_terminal), log=lambda m: console.print(f"  {m}")
    )
    print_report(result.report, result.calibration)
    console.print(f"  trained in {result.seconds:.0f} s; model: {result.bundle_path}")

    _detect_in_a_stream(out, result.bundle_path, seed)


def _detect_in_a_stream(out: Path, bundle_path: Path, seed: int, duration_s: float = 60.0) -> None:
    """Step 3: plant sounds at known times in a generated minute of audio and let the detector find them."""
    import numpy as np

    from snapkit.audio.io import write_wav
    from snapkit.detection.detector import Detector
    from snapkit.eval.synth import make_stream
    from snapkit.models.bundle import load_model

    bundle = load_model(bundle_path)
    audio, planted = make_stream(seed + 1, duration_s=duration_s, classes=bundle.config.labels, snr_db=(10, 20))
    stream = write_wav(out / "stream.wav", audio, 16_000)
    console.print(
        f"\n[bold]3. Detecting[/] in a generated {duration_s:.0f} s stream ({stream}) with "
        f"{len(planted)} planted sounds, fed in 0.5 s chunks as a microphone would ..."
    )
    detector = Detector(bundle, sample_rate_hz=16_000)
    updates = []
    for start in range(0, len(audio), 8_000):
        updates += detector.push(audio[start : start + 8_000])
    found = [u.event for u in updates + detector.flush() if u.kind == "end"]
    rows = []
    for event in found:
        match = min(planted, key=lambda p: abs(p.onset_s - event.onset_s), default=None)
        hit = match is not None and match.label == event.label and abs(match.onset_s - event.onset_s) <= 0.2
        rows.append((event, match if hit else None))
    for event, match in rows:
        where = f"planted at {match.onset_s:7.3f} s" if match else "[yellow]not planted[/]"
        console.print(
            f"  {event.onset_s:7.3f} - {event.offset_s:7.3f} s  {event.label:<12} score {event.peak_score:.2f}"
            f"   ({where})"
        )
    hits = sum(match is not None for _, match in rows)
    errors = [abs(e.onset_s - m.onset_s) * 1000 for e, m in rows if m is not None]
    console.print(
        f"  found {hits} of {len(planted)} planted sounds, {len(found) - hits} false alarm(s); median onset "
        f"error {np.median(errors) if errors else float('nan'):.0f} ms."
    )
    console.print(f"  Try: snapkit detect {bundle_path} {stream} --plot {out / 'stream.png'}")


def _prepare(out: Path) -> None:
    if out.exists():
        if not (out / DEMO_MARKER).exists():
            raise FileExistsError(
                f"{out} exists and was not made by `snapkit demo`; "
                "choose another --out so nothing of yours is replaced."
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / DEMO_MARKER).write_text("made by `snapkit demo`; safe to delete\n")


def register(app: typer.Typer) -> None:
    app.command(help="Run the whole loop on generated sounds (no microphone, no download).")(demo)
