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
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's generated data and results.")] = Path(
        "runs/demo"
    ),
    clips_per_class: Annotated[int, typer.Option("--clips", min=3, help="Generated clips per class.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the generated sounds.")] = 0,
) -> None:
    """Generate a small example dataset of synthetic sounds and show what snapkit makes of it."""
    from snapkit.synth import make_dataset

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
    print_report(result.report, result.thresholds)
    console.print(f"  trained in {result.seconds:.0f} s; model: {result.bundle_path}")


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
