"""``snapkit train``, ``evaluate``, ``predict`` and ``export``. Heavy imports happen inside the commands so that
``snapkit record`` and ``--help`` start instantly."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.panel import Panel
from rich.progress import track

from snapkit.cli.options import DataReadOption, LegacyDataArgument, data_folder
from snapkit.cli.ui import console, err_console, frame_table
from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL
from snapkit.files import jsonable, write_atomically
from snapkit.models.backbones.registry import BACKBONES
from snapkit.models.calibration import Calibration

BACKBONE_HELP = (
    "convnet (trained from scratch), or a frozen pretrained backbone: "
    + "; ".join(f"{spec.name} ({spec.help})" for spec in BACKBONES.values())
    + "."
)
ModelArg = Annotated[Path, typer.Argument(help="A trained model bundle (runs/NAME/model.snapkit).")]


# Lightning's own names (Trainer(accelerator=, devices=, ...)), grouped apart so that --devices (GPUs or processes
# to train on) is not taken for a microphone, which is --device of record and listen.
LIGHTNING_PANEL = "Lightning (training hardware)"


def train(
    data_dir: DataReadOption = None,
    backbone: Annotated[str, typer.Option("--backbone", "-b", help=BACKBONE_HELP)] = "convnet",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder (default: runs/<date-time>-<backbone>).")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            min=1,
            help="Training epochs of one view per clip (heads: 16); default: 30 for heads, and for the ConvNet a "
            "budget of views that grows with the clips, within bounds (the plan shows it).",
        ),
    ] = None,
    max_minutes: Annotated[
        float,
        typer.Option(
            "--max-minutes",
            min=0.0,
            help="Time limit of the whole run in minutes (every fold and the final model); the plan fits the "
            "ConvNet's training into it and training stops there. 0: no limit.",
        ),
    ] = 5.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same data + seed gives the same model.")] = 0,
    weights: Annotated[
        Path | None, typer.Option("--weights", help="Pretrained backbone weights file, for offline use.")
    ] = None,
    clip_seconds: Annotated[
        float | None,
        typer.Option(
            "--clip-s",
            "--clip-seconds",
            min=0.2,
            help="Training window, in seconds (default: 2 for the ConvNet; for a head, the median length of your "
            "sound clips within 2-10 s).",
        ),
    ] = None,
    pooling: Annotated[
        str | None,
        typer.Option(
            "--pooling",
            help="Frame-to-clip pooling: max, attention, linear_softmax (default: max; the detector needs it).",
        ),
    ] = None,
    head_hidden: Annotated[
        int, typer.Option("--head-hidden", min=0, help="Hidden units of the head on a frozen backbone (0: linear).")
    ] = 0,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="Turn all augmentation off.")] = False,
    no_estimate: Annotated[
        bool,
        typer.Option(
            "--no-estimate",
            help="Skip the quality estimate (cross-validation or held-out split): one model on all clips, faster; "
            "thresholds stay at their defaults.",
        ),
    ] = False,
    max_false_alarms: Annotated[
        float,
        typer.Option(
            "--max-false-alarms-per-hour",
            help="With background audio in the dataset, thresholds are chosen for at most this many false alarms an "
            "hour in total (as `snapkit calibrate` does).",
        ),
    ] = 1.0,
    background_label: Annotated[
        str, typer.Option("--background-label", help="The class that means 'nothing to report'.")
    ] = DEFAULT_BACKGROUND_LABEL,
    accelerator: Annotated[
        str,
        typer.Option(
            "--accelerator", help="Lightning accelerator: cpu, gpu, mps, auto.", rich_help_panel=LIGHTNING_PANEL
        ),
    ] = "cpu",
    devices: Annotated[
        str,
        typer.Option(
            "--devices",
            help="Lightning devices to train on (GPUs, or processes on cpu): a count, a list like 0,1, or auto. Not "
            "a microphone.",
            rich_help_panel=LIGHTNING_PANEL,
        ),
    ] = "auto",
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy", help="Lightning strategy, e.g. ddp for several GPUs.", rich_help_panel=LIGHTNING_PANEL
        ),
    ] = "auto",
    num_nodes: Annotated[
        int, typer.Option("--num-nodes", min=1, help="Machines to train on (DDP).", rich_help_panel=LIGHTNING_PANEL)
    ] = 1,
    precision: Annotated[
        str | None,
        typer.Option("--precision", help="Lightning precision, e.g. 16-mixed.", rich_help_panel=LIGHTNING_PANEL),
    ] = None,
    data_arg: LegacyDataArgument = None,
) -> None:
    """Train a model on the dataset folder (--data) and save it as a single bundle, with metrics and TensorBoard
    logs.

    Every option is checked before the plan is printed. The run folder appears only when the run is complete; Ctrl-C
    stops with "Stopped: ..." and exit code 130 (128 + SIGINT, the shell's convention), leaving no run folder.
    """
    from snapkit.errors import SnapkitError
    from snapkit.training.augment import AugmentConfig
    from snapkit.training.train import (
        TrainerOptions,
        TrainSettings,
        check_trainer_options,
        plan_training,
        run_training,
    )

    out = out or Path("runs") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{backbone}"
    settings = TrainSettings(
        backbone=backbone,
        epochs=epochs,
        seed=seed,
        clip_s=clip_seconds,
        pooling=pooling,
        head_hidden=head_hidden,
        background_label=background_label,
        estimate=not no_estimate,
        max_minutes=max_minutes or None,
        max_false_alarms_per_hour=max_false_alarms,
    )
    options = TrainerOptions(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        precision=precision,
        progress_bar=console.is_terminal,
    )
    check_trainer_options(options)
    if weights is not None and not weights.is_file():
        raise SnapkitError(f"--weights {weights}: no such file; give the path of the downloaded weights file.")
    try:
        plan = plan_training(
            data_folder(data_dir, data_arg), out, settings, AugmentConfig(enabled=not no_augment), weights=weights
        )
        console.print(Panel("\n".join(plan.describe()), title="snapkit train: plan", title_align="left"))
        for note in plan.warnings:
            console.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
        result = run_training(plan, weights=weights, trainer_options=options, log=lambda m: console.print(m))
    except KeyboardInterrupt:
        console.print(
            f"\nStopped: training was interrupted (Ctrl-C) before it finished; no model was saved and nothing was "
            f"written to {out}.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    print_report(result.report, result.calibration)
    if "false_alarm_budget" in result.report:
        from snapkit.cli.calibrate import print_budget_table

        print_budget_table(result.report["false_alarm_budget"]["table"])
    for note in result.warnings:
        console.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    console.print(f"\nTrained in {result.seconds:.1f} s.")
    console.print(f"model:       {result.bundle_path}")
    console.print(f"metrics:     {result.metrics_path}")
    console.print(f"TensorBoard: tensorboard --logdir {result.tensorboard_dir}")


def print_report(report: dict, calibration: Calibration | None = None) -> None:
    """The per-class result table, accuracy and macro F1 of a clip-level report."""
    if "per_class" not in report:
        console.print(f"No quality estimate: {report.get('estimate', 'not enough clips')}.")
        return
    rows = []
    for name, figures in report["per_class"].items():
        row = {"class": name, **{k: figures[k] for k in ("precision", "recall", "f1", "support")}}
        if calibration is not None:
            row["threshold"] = calibration[name].on if name in calibration else float("nan")
        rows.append(row)
    title = "Per-class results" + (f" ({report['estimate']})" if "estimate" in report else "")
    console.print(
        frame_table(
            pd.DataFrame(rows),
            title=title,
            formats={"precision": ".2f", "recall": ".2f", "f1": ".2f", "threshold": ".2f"},
        )
    )
    console.print(f"accuracy {report['accuracy']:.3f}   macro F1 {report['macro_f1']:.3f}")
    names = report["classes"]
    matrix = pd.DataFrame(report["confusion_matrix"], columns=[f"→{n}" for n in names])
    matrix.insert(0, "true \\ predicted", names)
    console.print(frame_table(matrix, title="Confusion matrix"))
    if "mistakes" in report:
        print_mistakes(report["mistakes"])


def print_mistakes(mistakes: list[dict[str, object]]) -> None:
    """Each misclassified clip (path, true label, predicted label, score), worst first."""
    if not mistakes:
        console.print("No misclassified clips.")
        return
    frame = pd.DataFrame(mistakes, columns=["path", "true", "predicted", "score"])
    console.print(frame_table(frame, title=f"Misclassified clips ({len(mistakes)})", formats={"score": ".2f"}))
    console.print(
        "Listen to them: fix a wrong label with `snapkit relabel CLIP --label LABEL`, or record more of that sound.",
        highlight=False,
    )


def evaluate(
    model: ModelArg,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Labelled dataset folder (one folder per class) to evaluate on, held out from training; required.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of tables.")] = False,
    report_path: Annotated[Path | None, typer.Option("--report", help="Also write the report to this JSON file.")] = (
        None
    ),
    data_arg: Annotated[
        list[Path] | None,
        typer.Argument(hidden=True, metavar="DATA_DIR", help="The dataset folder, as --data gives it (older form)."),
    ] = None,
) -> None:
    """Accuracy, macro F1 and the confusion matrix of MODEL on a labelled folder (--data)."""
    from snapkit.models.bundle import load_model
    from snapkit.training.evaluate import evaluate_bundle

    legacy = list(data_arg or [])
    if len(legacy) == 2 and legacy[1].suffix.lower() == ".json" and as_json:
        # `evaluate MODEL DATA --json FILE` wrote FILE before --json became the flag it is in `predict`.
        raise typer.BadParameter(
            f"--json now prints the report as JSON; write it to a file with --report {legacy[1]}.",
            param_hint="'--json'",
        )
    if len(legacy) > 1:
        raise typer.BadParameter(
            f"one dataset folder, not {len(legacy)}; give it as --data DIR.", param_hint="'--data'"
        )
    folder = data_folder(data_dir, legacy[0] if legacy else None, default=None)
    bundle = load_model(model)
    report, notes = evaluate_bundle(bundle, folder)
    for note in notes:
        # Warnings go to stderr under --json, so that stdout stays one JSON document.
        (err_console if as_json else console).print(f"[yellow]warning:[/] {note}", highlight=False)
    if as_json:
        print(json.dumps(jsonable(report), indent=2))
    else:
        print_report(report, bundle.calibration)
    if report_path:
        write_atomically(report_path, json.dumps(jsonable(report), indent=2), what="the report")
        (err_console if as_json else console).print(f"report: {report_path}", highlight=False)


def predict(
    model: ModelArg,
    files: Annotated[list[Path], typer.Argument(help="Audio files to label (any length; WAV, FLAC, OGG, MP3).")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many classes to show per file.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Top-k labels and probabilities for each file."""
    from snapkit.errors import SnapkitError
    from snapkit.models.bundle import load_model
    from snapkit.models.predict import predict_file

    bundle = load_model(model)
    results, failed = [], []
    for path in track(files, description="Predicting", console=console, transient=True, disable=len(files) < 5):
        try:
            results.append(predict_file(bundle, path))
        except SnapkitError as err:
            failed.append(str(err))
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "file": str(r.path),
                        "label": r.label,
                        "top": [{"label": k, "probability": round(v, 4)} for k, v in r.top(top_k)],
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        rows = [
            {
                "file": str(r.path),
                "decision": r.label,
                **{f"#{i + 1}": f"{k} {v:.2f}" for i, (k, v) in enumerate(r.top(top_k))},
            }
            for r in results
        ]
        if rows:
            console.print(frame_table(pd.DataFrame(rows).fillna("")))
    for message in failed:
        console.print(f"[red]skipped:[/] {message}", highlight=False, soft_wrap=True)
    if failed and not results:
        raise typer.Exit(2)


def export(
    model: ModelArg,
    format_: Annotated[str, typer.Option("--format", "-f", help="onnx or torchscript.")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: beside MODEL).")] = None,
) -> None:
    """Export MODEL for edge devices (waveform in, frame and clip probabilities out)."""
    from snapkit.models.bundle import load_model
    from snapkit.models.export import export_model

    bundle = load_model(model)
    suffix = {"onnx": ".onnx", "torchscript": ".pt"}.get(format_, f".{format_}")
    target = out or model.with_suffix(suffix)
    written = export_model(bundle, target, format_)
    console.print(f"exported: {written}")


def register(app: typer.Typer) -> None:
    app.command(help="Train a model on a dataset folder; saves a bundle, metrics and TensorBoard logs.")(train)
    app.command(help="Accuracy, macro F1 and confusion matrix of a model on a labelled folder.")(evaluate)
    app.command(help="Top-k labels and probabilities for audio files.")(predict)
    app.command(help="Export a model as ONNX or TorchScript for edge devices.")(export)
