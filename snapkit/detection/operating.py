"""Choosing each class's threshold for a false-alarm budget, on background audio, with the streaming detector.

What people trust for always-on listening picks its operating point on hours of ordinary audio (openWakeWord: the
best recall at no more than 0.5 false accepts an hour; Edge Impulse's performance calibration). So does this:

1. The detector (the one ``detect`` and ``listen`` run) scores every background recording once; its decided timeline
   ``[cells, classes]`` is kept.
2. Per class and per candidate on-threshold, the real :class:`~snapkit.detection.tracker.EventTracker` counts the
   events that timeline would raise: false alarms per hour of background.
3. Each of the class's clips is mixed (at its own level) into a stretch of that background and scored the same way;
   a clip is detected at a threshold when the tracker starts an event of its class over the clip.
4. The budget is shared equally by the classes. Each class gets the threshold with the highest detection rate
   whose false alarms stay within its share; among equals, the one nearest the threshold calibrated on clips
   (:meth:`OperatingCurve.index_for_rate`).

Too little background cannot show a rate as low as the budget (ten minutes show 6 an hour at the least). Then the
threshold is only ever raised above the one calibrated on clips, never lowered, and the result says what to record.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from snapkit.detection.detector import Detector, DetectorSettings
from snapkit.detection.tracker import EventTracker
from snapkit.errors import SnapkitError
from snapkit.models.calibration import OFF_FRACTION, Calibration, OperatingCurve, check_budget

DEFAULT_MAX_FALSE_ALARMS_PER_HOUR = 1.0
# Under this much background the measured rates are too coarse to move thresholds down (see the module docstring).
MIN_BACKGROUND_S = 600.0
# Candidate on-thresholds: even steps in log-odds from 0.05 to 0.998.
THRESHOLD_GRID = tuple(sorted({round(1 / (1 + math.exp(-x)), 4) for x in np.linspace(-3.0, 6.0, 46)}))
# Background around each clip when measuring its detection, and how far outside the clip an onset may fall.
CONTEXT_S = 2.0
ONSET_TOLERANCE_S = 0.5
# Under this detection rate at the chosen threshold, the result says the budget costs the class its sound.
WEAK_DETECTION_RATE = 0.5
# Model runs over background audio in stream mode (see _Scorer).
STREAM_HOP_S = 10.0


@dataclass(frozen=True)
class BudgetRow:
    """One class's outcome: its threshold and the rates measured there."""

    label: str
    threshold: float
    previous_threshold: float
    false_alarms_per_hour: float
    detection_rate: float
    clips: int


@dataclass(frozen=True)
class BudgetResult:
    """The new calibration, a row per class, the background it rests on and anything the user should know."""

    calibration: Calibration
    rows: list[BudgetRow]
    background_s: float
    max_false_alarms_per_hour: float
    notes: list[str] = field(default_factory=list)

    @property
    def supported(self) -> bool:
        """Whether there was enough background to move thresholds freely (see ``MIN_BACKGROUND_S``)."""
        return self.background_s >= MIN_BACKGROUND_S

    def table(self) -> list[dict[str, float | str | int]]:
        """Rows for printing or JSON: class, threshold, false alarms per hour, detection rate, hours of background."""
        return [
            {
                "class": row.label,
                "threshold": row.threshold,
                "was": row.previous_threshold,
                "false_alarms_per_hour": row.false_alarms_per_hour,
                "detection_rate": row.detection_rate,
                "clips": row.clips,
                "background_hours": self.background_s / 3600.0,
            }
            for row in self.rows
        ]


def event_onsets(
    trace: np.ndarray, on: float, off: float, *, min_event_cells: int, min_gap_cells: int, confirm_gap_cells: int
) -> list[int]:
    """Onset cells of the events the detector's tracker raises on one class's decided probabilities ``[cells]``.

    Exactly :class:`EventTracker`'s answer, faster: a stretch below ``off`` longer than any gap the tracker waits out
    ends whatever was open and starts nothing, so it is cut to that length before the tracker steps through.
    """
    trace = np.asarray(trace, dtype=float).reshape(-1)
    quiet = max(min_gap_cells, confirm_gap_cells) + 2
    below = trace < off
    # Keep cells that are not below off, and the first `quiet` cells of every run below off.
    run_start = np.ones(len(trace), dtype=bool)
    run_start[1:] = ~below[:-1] | ~below[1:]
    starts = np.maximum.accumulate(np.where(run_start, np.arange(len(trace)), 0))
    keep = ~below | (np.arange(len(trace)) - starts < quiet)
    kept_index = np.flatnonzero(keep)
    tracker = EventTracker(
        np.array([on]),
        np.array([min(off, on)]),
        min_event_cells=min_event_cells,
        min_gap_cells=min_gap_cells,
        confirm_gap_cells=confirm_gap_cells,
    )
    edges = tracker.push(trace[keep].reshape(-1, 1)) + tracker.flush()
    return [int(kept_index[e.onset_cell]) for e in edges if e.kind == "start"]


class _Scorer:
    """Decided timelines of the detector over whole recordings (one fresh detector per recording)."""

    def __init__(self, bundle: object, settings: DetectorSettings | None) -> None:
        self.bundle = bundle
        self.settings = settings or DetectorSettings()
        probe = Detector(bundle, self.settings)
        if probe.streaming:
            # In stream mode each output frame is computed once whatever the hop (the timeline is the same to float
            # rounding), and a long hop saves the per-run overhead: 7x faster for the ConvNet.
            self.settings = replace(self.settings, hop_s=max(self.settings.hop_s, STREAM_HOP_S))
        self.labels = probe.labels
        self.rate_hz = probe.model_rate_hz
        self.grid_s = self.settings.grid_s
        self.min_event_cells = probe.tracker.min_event_cells
        self.min_gap_cells = [int(v) for v in probe.tracker.min_gap_cells]
        self.confirm_gap_cells = probe.tracker.confirm_gap_cells

    def timeline(self, audio: np.ndarray) -> np.ndarray:
        """``[cells, classes]`` for ``audio`` ``[samples]`` at the model's rate."""
        detector = Detector(self.bundle, self.settings, keep_timeline=True)
        detector.push(np.asarray(audio, dtype=np.float32))
        detector.flush()
        return detector.timeline()[1]

    def onsets(self, trace: np.ndarray, c: int, on: float) -> list[int]:
        return event_onsets(
            trace[:, c],
            on,
            round(on * OFF_FRACTION, 4),
            min_event_cells=self.min_event_cells,
            min_gap_cells=self.min_gap_cells[c],
            confirm_gap_cells=self.confirm_gap_cells,
        )


def calibrate_to_budget(
    bundle: object,
    backgrounds: Sequence[np.ndarray],
    clips: Mapping[str, Sequence[np.ndarray]],
    *,
    max_false_alarms_per_hour: float = DEFAULT_MAX_FALSE_ALARMS_PER_HOUR,
    settings: DetectorSettings | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> BudgetResult:
    """Per-class thresholds for a total false-alarm budget, measured with the streaming detector.

    Args:
        bundle: the trained model bundle (its calibration supplies bands, pauses and the clip-calibrated thresholds).
        backgrounds: recordings holding none of the target sounds, ``[samples]`` each at the model's rate.
        clips: per class label its clips ``[samples]`` at the model's rate (classes without clips get a detection
            rate of NaN and keep the false-alarm criterion alone).
        max_false_alarms_per_hour: the total budget, shared equally by the classes.
        settings: detector settings (``detect``'s defaults when None).
        seed: picks the background stretch each clip is mixed into.
        progress: called with ``(done, total)`` recordings scored.

    Returns:
        The bundle's calibration with each class's new ``on``/``off`` and its :class:`OperatingCurve`.
    """
    check_budget(max_false_alarms_per_hour)
    backgrounds = [np.asarray(b, dtype=np.float32).reshape(-1) for b in backgrounds if len(b)]
    if not backgrounds:
        raise SnapkitError(
            "There is no background audio to count false alarms on; record some (`snapkit record background "
            "--continuous`) or give long recordings of the room without the target sounds."
        )
    scorer = _Scorer(bundle, settings)
    labels = scorer.labels
    rate = scorer.rate_hz
    background_s = sum(len(b) for b in backgrounds) / rate
    hours = background_s / 3600.0
    share = max_false_alarms_per_hour / max(1, len(labels))
    rng = np.random.default_rng(seed)
    mixes: dict[str, list[np.ndarray]] = {
        label: [_mix_into(np.asarray(c, dtype=np.float32), backgrounds, rng, rate) for c in clips.get(label, [])]
        for label in labels
    }
    total = len(backgrounds) + sum(len(m) for m in mixes.values())
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    background_traces = []
    for audio in backgrounds:
        background_traces.append(scorer.timeline(audio))
        advance()
    context_cells = round(CONTEXT_S / scorer.grid_s)
    tolerance_cells = round(ONSET_TOLERANCE_S / scorer.grid_s)

    calibration: Calibration = dict(bundle.calibration)  # type: ignore[attr-defined]
    rows: list[BudgetRow] = []
    for c, label in enumerate(labels):
        clip_traces = []
        for mix, clip_samples in mixes[label]:
            clip_traces.append((scorer.timeline(mix), math.ceil(clip_samples / rate / scorer.grid_s)))
            advance()

        def false_alarms(on: float, c: int = c) -> float:
            return sum(len(scorer.onsets(trace, c, on)) for trace in background_traces) / hours

        def detection(on: float, c: int = c, clip_traces: list = clip_traces) -> float:
            if not clip_traces:
                return 0.0
            low, high = context_cells - tolerance_cells, context_cells + tolerance_cells
            return float(
                np.mean([any(low <= t <= high + n for t in scorer.onsets(trace, c, on)) for trace, n in clip_traces])
            )

        curve = OperatingCurve(
            thresholds=THRESHOLD_GRID,
            false_alarms_per_hour=tuple(false_alarms(t) for t in THRESHOLD_GRID),
            detection_rate=tuple(detection(t) for t in THRESHOLD_GRID),
            background_s=background_s,
            clips=len(clip_traces),
            budget_per_hour=share,
        )
        previous = calibration[label]
        chosen = curve.thresholds[curve.index_for_rate(share, prefer=previous.on)]
        if background_s < MIN_BACKGROUND_S:
            chosen = max(chosen, previous.on)  # too little evidence to lower it
        calibration[label] = replace(previous, on=chosen, off=round(chosen * OFF_FRACTION, 4), curve=curve)
        on_grid = chosen in curve.thresholds
        i = curve.thresholds.index(chosen) if on_grid else 0
        rows.append(
            BudgetRow(
                label=label,
                threshold=chosen,
                previous_threshold=previous.on,
                false_alarms_per_hour=curve.false_alarms_per_hour[i] if on_grid else false_alarms(chosen),
                detection_rate=(curve.detection_rate[i] if on_grid else detection(chosen))
                if clip_traces
                else float("nan"),
                clips=len(clip_traces),
            )
        )
    notes = []
    if background_s < MIN_BACKGROUND_S:
        notes.append(
            f"Only {background_s / 60:.1f} minutes of background audio: it can show false-alarm rates down to "
            f"{3600 / background_s:.0f} an hour, not {max_false_alarms_per_hour:g}, so thresholds were only raised. "
            f"Record at least {MIN_BACKGROUND_S / 60:.0f} minutes of the room with none of the sounds (`snapkit "
            "record background --continuous`) or give long recordings, then calibrate again."
        )
    elif share * hours < 1:
        notes.append(
            f"{background_s / 60:.0f} minutes of background show rates down to {1 / hours:.1f} an hour; the budget of "
            f"{share:.2g} per class an hour rests on no false alarm seen. More background makes it surer."
        )
    over = [row.label for row in rows if row.false_alarms_per_hour > share + 1e-9]
    if over:
        notes.append(
            f"{', '.join(over)} raised more false alarms than the budget even at the highest threshold; mine the "
            "background for hard negatives (`snapkit mine`) and retrain."
        )
    weak = [row for row in rows if row.clips and row.label not in over and row.detection_rate < WEAK_DETECTION_RATE]
    if weak:
        notes.append(
            "Within the budget "
            + ", ".join(
                f"{row.label} detects {row.detection_rate:.0%} of its clips (threshold {row.threshold:.2f})"
                for row in weak
            )
            + ": the background sets it off. Mine that audio for hard negatives (`snapkit mine`) and retrain, or "
            "accept more false alarms (--max-false-alarms-per-hour)."
        )
    return BudgetResult(calibration, rows, background_s, max_false_alarms_per_hour, notes)


def _mix_into(
    clip: np.ndarray, backgrounds: Sequence[np.ndarray], rng: np.random.Generator, rate: int
) -> tuple[np.ndarray, int]:
    """``(audio, clip samples)``: ``clip`` added at its own level to a random background stretch, ``CONTEXT_S``
    of background before and after it."""
    context = round(CONTEXT_S * rate)
    n = len(clip) + 2 * context
    source = backgrounds[int(rng.integers(len(backgrounds)))]
    if len(source) >= n:
        start = int(rng.integers(len(source) - n + 1))
        stretch = source[start : start + n].copy()
    else:
        stretch = np.tile(source, n // len(source) + 1)[:n].copy()
    stretch[context : context + len(clip)] += clip
    peak = float(np.max(np.abs(stretch))) if n else 0.0
    if peak > 1.0:
        stretch /= np.float32(peak)
    return stretch, len(clip)


def calibration_audio(
    dataset: object, rate_hz: int, labels: Sequence[str], extra: Sequence[Path] = (), *, progress: bool = True
) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]], list[str]]:
    """What :func:`calibrate_to_budget` runs on, from a scanned dataset and extra recordings, at ``rate_hz``:
    ``(backgrounds, clips per label, notes)``. Backgrounds are the dataset's background clips (any length) and every
    file of ``extra``; unreadable extra files are skipped with a note."""
    from snapkit.audio.io import load_audio
    from snapkit.errors import AudioFileError
    from snapkit.training.data import load_clipset

    clipset = load_clipset(dataset, rate_hz, progress=progress, stand_in_background=False)  # type: ignore[arg-type]
    background_label = dataset.background_label  # type: ignore[attr-defined]
    backgrounds = [w for w, label in zip(clipset.waveforms, clipset.labels, strict=True) if label == background_label]
    clips = {
        label: [w for w, own in zip(clipset.waveforms, clipset.labels, strict=True) if own == label] for label in labels
    }
    notes = list(clipset.skipped)
    for path in extra:
        try:
            backgrounds.append(load_audio(path, rate_hz)[0])
        except AudioFileError as error:
            notes.append(f"skipped {path}: {error}")
    return backgrounds, clips, notes


def curve_figure(calibration: Calibration):  # -> matplotlib Figure
    """Per class: false alarms per hour (x, log) against detection rate (y), the chosen point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, entry in calibration.items():
        curve = entry.curve
        if curve is None:
            continue
        floor = 0.5 / max(curve.background_hours, 1e-9)  # where "none seen" is drawn on the log axis
        rates = [max(fa, floor) for fa in curve.false_alarms_per_hour]
        (line,) = ax.plot(rates, curve.detection_rate, marker=".", label=label)
        i = int(np.argmin([abs(t - entry.on) for t in curve.thresholds]))  # the bundle's threshold, or its neighbour
        ax.plot([rates[i]], [curve.detection_rate[i]], "o", ms=10, mfc="none", color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per hour of background (none seen: left edge)")
    ax.set_ylabel("share of the class's clips detected")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("False alarms against detection; circles: the thresholds in the bundle")
    fig.tight_layout()
    return fig


def write_curve_png(calibration: Calibration, path: Path) -> Path:
    """The :func:`curve_figure` as a PNG at ``path`` (written atomically)."""
    import matplotlib.pyplot as plt

    from snapkit.files import replace_atomically

    fig = curve_figure(calibration)
    try:
        with replace_atomically(path, what="the calibration plot") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return path


def log_curves(writer: object, calibration: Calibration, step: int = 0) -> None:
    """The curves to TensorBoard: the figure, and per class false alarms per hour and detection rate against the
    threshold (x: threshold in thousandths, as TensorBoard steps are integers)."""
    writer.add_figure("calibration/false_alarms_vs_detection", curve_figure(calibration), global_step=step)  # type: ignore[attr-defined]
    for label, entry in calibration.items():
        if entry.curve is None:
            continue
        for t, fa, dr in zip(
            entry.curve.thresholds, entry.curve.false_alarms_per_hour, entry.curve.detection_rate, strict=True
        ):
            writer.add_scalar(f"calibration/{label}/false_alarms_per_hour", fa, global_step=round(t * 1000))  # type: ignore[attr-defined]
            writer.add_scalar(f"calibration/{label}/detection_rate", dr, global_step=round(t * 1000))  # type: ignore[attr-defined]
