"""Detection timing on long soundscapes: event and segment F1, onset/offset errors, false alarms per hour.

    SNAPKIT_WEIGHTS_DIR=../shared/models python experiments/timing.py [DATA_DIR] [--minutes 5] [--snr 0 6 12]

    SNAPKIT_WEIGHTS_DIR=../shared/models python experiments/timing.py --set ../shared/sounds/urban \
        ../shared/sounds/kitchen20 ../shared/sounds/baby_cry --ambience-files ../shared/sounds/background/*.flac \
        --backbone sfx-cnn9

DATA_DIR is any class-folder dataset (``DATA_DIR/<label>/*.wav`` with a ``background`` class); without it one is
generated (snapkit.eval.synth).

**Real recordings** (``--set``, labelled sets as experiments/realsets.py reads them: weakly labelled clips, each
with its source recording) are taken as they are. ``--events`` are the classes to detect, ``--ambience`` the room's
ordinary sound, every other class "other sounds" that must not raise an alarm. Every class is split by source
recording (:func:`split_real_sets`): ``--train-clips`` clips of each event and the training-side ambience (as the
``background`` class) are what a user would record, and training is ``snapkit train``'s default path
(cross-validated thresholds and all). The held-out ambience lays the bed (each source recording's clips joined
into one stretch, plus the held-out part of each ``--ambience-files`` recording); the held-out event clips are
planted in it, each at its :func:`reference_span` (its noise-relative envelope, or the whole clip where its sound
fills it); the false-alarm audio is held-out ambience with other sounds planted in it. What happens:

1. Of every class, background included, ``--held-out`` of the clips (at least one) are set aside; a model is
   trained on the rest with snapkit's own training (``--backbone``), as ``snapkit train`` would.
2. For each ``--snr``, a soundscape of ``--minutes`` is built from the held-out clips alone
   (snapkit.eval.soundscape): held-out target clips planted over a bed of held-out background clips at random
   times, at least ``--min-gap-s`` apart. Reference onsets/offsets come from each clip's own energy envelope. The
   soundscapes share the seed, so they hold the same events at the same times and differ only in SNR.
3. Each soundscape is written to WAV and streamed through the detector in 1 s blocks (FileSource, the path of
   ``snapkit detect``); the finished events are scored (snapkit.eval.scoring, checked against sed_eval):
   event-based P/R/F1 with a 200 ms onset collar and an offset collar of max(200 ms, 50 % of the event), onset-only
   F1, segment-based F1 over 1 s segments, and the onset/offset errors of the pairs matched by onset alone (so the
   offset collar does not cut the offset errors off).
4. ``--background-minutes`` of background-only audio from the held-out background clips gives false alarms per
   hour (every detection there is one); with real sets, ``--others-per-minute`` other sounds are planted in it.

If sed_eval is installed, the overall figures are recomputed with it and compared. Writes ``timing.md``,
``timing.json``, ``timing_events.tsv`` (reference and detected events), ``timing_errors.png`` and
``timing_f1_vs_snr.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

if not __package__:  # run as `python experiments/timing.py`: make the repository importable for experiments.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.realsets import LabelledClip, by_label, grouped_order, read_set, split_by_group
from snapkit.audio.io import audio_info, load_audio
from snapkit.audio.levels import GROUND_TRUTH_FRAME_S, SPAN_NOISE_PERCENTILE, _whitened_envelope
from snapkit.audio.sources import FileSource
from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL
from snapkit.dataset.scan import scan_dataset
from snapkit.detection.detector import Detector, DetectorSettings
from snapkit.detection.events import Event
from snapkit.errors import SnapkitError
from snapkit.eval.scoring import (
    DEFAULT_OFFSET_COLLAR_RATE,
    DEFAULT_OFFSET_COLLAR_S,
    DEFAULT_ONSET_COLLAR_S,
    Counts,
    event_scores,
    false_alarms_per_hour,
    segment_scores,
)
from snapkit.eval.soundscape import SoundClip, event_span, make_soundscape, split_for_soundscapes
from snapkit.eval.synth import make_dataset
from snapkit.models.bundle import ModelBundle, load_model
from snapkit.training.train import BACKBONE_CHOICES, TrainerOptions, TrainSettings, plan_training, run_training

CLASSES = ("beep", "smoke_alarm", "scratch", "snap")
SEGMENT_S = 1.0
CHUNK_S = 1.0
SECONDS_PER_MINUTE = 60.0
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class SnrResult:
    """Everything measured on one soundscape."""

    snr_db: float
    duration_s: float
    reference: list[Event]
    detected: list[Event]
    detect_s: float
    turned_down: int = 0  # events planted below snr_db so as not to clip
    others: Sequence[Event] = ()  # other sounds planted (background-only soundscape): any detection is false


# ---------------------------------------------------------------------------------------------------- set-up


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="?", type=Path, help="class-folder dataset (default: generated)")
    real = parser.add_argument_group("real recordings (instead of DATA_DIR)")
    real.add_argument(
        "--set",
        dest="sets",
        nargs="+",
        action="extend",
        type=Path,
        default=[],
        metavar="FOLDER",
        help="labelled sets (a folder with metadata.csv, or class folders; experiments/realsets.py); several merge",
    )
    real.add_argument("--events", nargs="+", default=list(DEFAULT_EVENTS), metavar="CLASS", help="classes to detect")
    real.add_argument(
        "--ambience",
        nargs="+",
        default=list(DEFAULT_AMBIENCE),
        metavar="CLASS",
        help="classes whose clips are the room's ordinary sound: training-side ones the `background` class, "
        "held-out ones the soundscapes' bed",
    )
    real.add_argument(
        "--ambience-files",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="long ambience recordings: the first --ambience-train-fraction of each to train on, the rest bed",
    )
    real.add_argument(
        "--others",
        nargs="+",
        metavar="CLASS",
        help="other sounds planted in the false-alarm soundscape (default: every class neither event nor ambience)",
    )
    real.add_argument(
        "--train-clips", type=int, default=DEFAULT_TRAIN_CLIPS, help="training clips per event class (a user's few)"
    )
    real.add_argument(
        "--background-train-clips",
        type=int,
        default=DEFAULT_BACKGROUND_TRAIN_CLIPS,
        help="training-side ambience clips in the `background` class (plus the long files' training parts)",
    )
    real.add_argument(
        "--ambience-train-fraction",
        type=float,
        default=DEFAULT_AMBIENCE_TRAIN_FRACTION,
        help="share of each ambience class's source recordings (and of each long file) on the training side",
    )
    real.add_argument(
        "--others-per-minute", type=float, default=4.0, help="other sounds planted per minute of false-alarm audio"
    )
    real.add_argument("--group-column", help="metadata column naming the source recording (default: auto)")
    parser.add_argument(
        "--minutes", type=float, help="length of each soundscape (one per SNR), minutes (default: 5; 8 for real sets)"
    )
    parser.add_argument("--snr", type=float, nargs="+", default=[0.0, 6.0, 12.0], help="SNRs of the soundscapes, dB")
    parser.add_argument(
        "--background-minutes",
        type=float,
        help="background-only audio for false alarms, minutes (default: 10; 30 for real sets, with other sounds)",
    )
    parser.add_argument("--events-per-minute", type=float, default=12.0, help="events planted per minute")
    parser.add_argument("--min-gap-s", type=float, default=1.0, help="least time between two events, seconds")
    parser.add_argument(
        "--held-out", type=float, default=0.3, help="fraction of each class's clips kept out of training (0-1)"
    )
    parser.add_argument("--backbone", default="convnet", choices=BACKBONE_CHOICES, help="model to train")
    parser.add_argument("--weights", type=Path, help="pretrained backbone weights file (default: SNAPKIT_WEIGHTS_DIR)")
    parser.add_argument(
        "--model",
        type=Path,
        help="skip training and use this bundle; it must not have seen the held-out clips (e.g. OUT/files/"
        "model.snapkit of a --keep-files run with the same DATA_DIR, --held-out and --seed)",
    )
    parser.add_argument("--epochs", type=int, help="training epochs (default: the backbone's)")
    parser.add_argument(
        "--hop-s", "--hop", dest="hop", type=float, help="detector hop, seconds (default: the detector's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of generation, split, training and soundscapes")
    parser.add_argument("--classes", nargs="+", default=list(CLASSES), help="sound classes when generating")
    parser.add_argument("--clips", type=int, default=12, help="clips per class when generating")
    parser.add_argument("--background-clips", type=int, default=20, help="background clips when generating")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/timing"), help="results folder")
    parser.add_argument(
        "--keep-files", action="store_true", help="keep the soundscape WAVs and the model in OUT/files/"
    )
    parser.add_argument("--no-sed-eval", action="store_true", help="skip the cross-check against sed_eval")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.sets and args.data_dir is not None:
        parser.error("give either DATA_DIR or --set, not both.")
    if args.minutes is None:
        args.minutes = 8.0 if args.sets else 5.0
    if args.background_minutes is None:
        args.background_minutes = 30.0 if args.sets else 10.0
    if args.minutes <= 0 or args.background_minutes <= 0:
        parser.error("--minutes and --background-minutes must be positive.")
    args.snr = list(dict.fromkeys(args.snr))  # one soundscape per SNR, in the order given
    if not 0 < args.held_out < 1:
        parser.error("--held-out must be between 0 and 1 (exclusive), e.g. 0.3.")
    return args


def command_line() -> str:
    """The command as typed, with SNAPKIT_WEIGHTS_DIR if set (it decides which weights a head uses)."""
    weights = os.environ.get("SNAPKIT_WEIGHTS_DIR")
    prefix = f"SNAPKIT_WEIGHTS_DIR={shlex.quote(weights)} " if weights else ""
    return prefix + shlex.join(["python", *sys.argv])


def machine_info() -> dict[str, object]:
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": memory_gib,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def split_dataset(data_dir: Path, held_out: float, seed: int, train_dir: Path) -> dict[str, list[Path]]:
    """Link the training clips into ``train_dir/<label>/`` and return the held-out clips by label."""
    dataset = scan_dataset(data_dir)
    clips = dataset.readable
    labels = [clip.label for clip in clips]
    if DEFAULT_BACKGROUND_LABEL not in labels:
        raise SnapkitError(
            f"{data_dir} has no {DEFAULT_BACKGROUND_LABEL!r} clips; the soundscapes are laid on held-out background "
            f"recordings, so record some with `snapkit record {DEFAULT_BACKGROUND_LABEL}`."
        )
    train_idx, held_idx = split_for_soundscapes(labels, held_out, seed)
    for i in train_idx:
        target = train_dir / clips[i].label / clips[i].path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.symlink_to(clips[i].path.resolve())
        except OSError:  # filesystems without symbolic links
            shutil.copy2(clips[i].path, target)
    held: dict[str, list[Path]] = {}
    for i in held_idx:
        held.setdefault(clips[i].label, []).append(clips[i].path)
    return held


# ---------------------------------------------------------------------------------------------------- real recordings

# A set of events, ambience and other sounds that reads like a user's: short, distinctive household and street
# sounds to detect; steady machine and water sounds as the room's ordinary sound; every other class of the sets as
# "other sounds" that must not raise an alarm. Names are those of ../shared/sounds; any set's classes can be given.
DEFAULT_EVENTS = ("dog_bark", "car_horn", "siren", "gun_shot", "cupboard", "drawer", "microwave", "baby_cry")
DEFAULT_AMBIENCE = (
    "stove-fan",
    "fridge",
    "dishwasher",
    "boiling-water",
    "water-flowing",
    "air_conditioner",
    "engine_idling",
)
DEFAULT_TRAIN_CLIPS = 10
DEFAULT_BACKGROUND_TRAIN_CLIPS = 24
# Share of every ambience class's source recordings (and of every long ambience file) a user would have recorded
# as their `background` class; the rest, never trained on, lays the soundscapes' bed.
DEFAULT_AMBIENCE_TRAIN_FRACTION = 0.3
# A weakly labelled clip whose envelope rises less than this above its own 20th percentile has no quiet part: its
# sound fills it (a horn cut out of a longer honk), and the envelope's span would be a few loud frames of it.
FILLS_CLIP_CONTRAST_DB = 12.0
# Clips of one source recording are joined into one stretch of bed with this crossfade, so the bed changes source
# every 5-30 s as a room does, not at every 5 s clip.
JOIN_CROSSFADE_S = 0.1
# The training-side part of a long ambience file is cut into clips this long, as a user's recordings would be.
AMBIENCE_PIECE_S = 5.0


@dataclass(frozen=True)
class AudioPiece:
    """Seconds ``start_s``..``end_s`` of a long recording (``end_s`` None: to its end)."""

    path: Path
    start_s: float
    end_s: float | None


@dataclass(frozen=True)
class RealSplit:
    """What a real-recording run trains on and what it tests on; no source recording is on both sides.

    Attributes:
        train: event label -> the K clips a user would record of it.
        background: training-side ambience clips, the user's ``background`` class.
        background_pieces: training-side parts of the long ambience files, cut into clips for training.
        events: event label -> held-out clips, to plant in the soundscapes.
        ambience: held-out ambience clips, the soundscapes' bed.
        ambience_pieces: held-out parts of the long ambience files, bed too.
        others: other label -> its clips (never trained on), planted in the false-alarm soundscape.
    """

    train: dict[str, list[LabelledClip]]
    background: list[LabelledClip]
    background_pieces: list[AudioPiece]
    events: dict[str, list[LabelledClip]]
    ambience: list[LabelledClip]
    ambience_pieces: list[AudioPiece]
    others: dict[str, list[LabelledClip]]


def split_real_sets(
    clips: Sequence[LabelledClip],
    events: Sequence[str],
    ambience: Sequence[str],
    *,
    ambience_files: Sequence[Path] = (),
    train_clips: int = DEFAULT_TRAIN_CLIPS,
    background_clips: int = DEFAULT_BACKGROUND_TRAIN_CLIPS,
    ambience_train_fraction: float = DEFAULT_AMBIENCE_TRAIN_FRACTION,
    others: Sequence[str] | None = None,
    seed: int = 0,
) -> RealSplit:
    """Split labelled real clips by source recording into what to train on and what to test on.

    Each event class gives ``train_clips`` training clips from as many sources as it has
    (:func:`experiments.realsets.split_by_group`) and holds out the clips of every other source. Each ambience
    class gives about ``ambience_train_fraction`` of its sources (at least one, and at least one kept back) to the
    training side, of which ``background_clips`` in all, taken in turn from the classes, become the ``background``
    class; the rest is the bed. A long ambience file is split in time: its first ``ambience_train_fraction`` is
    the training side. ``others`` (default: every class that is neither) are never trained on.

    Raises:
        SnapkitError: a named class is missing, named twice, or has too few sources to split.
    """
    groups = by_label(clips)
    named = [*events, *ambience, *(others or [])]
    missing = [label for label in named if label not in groups]
    if missing:
        raise SnapkitError(f"No clips of {', '.join(missing)} in the sets; their classes are {', '.join(groups)}.")
    doubled = sorted({label for label in named if named.count(label) > 1})
    if doubled:
        raise SnapkitError(f"{', '.join(doubled)} named twice; a class is an event, ambience or other sound, one only.")
    if not events or not (ambience or ambience_files):
        raise SnapkitError("Name at least one event class and some ambience (--ambience or --ambience-files).")
    if not 0 < ambience_train_fraction < 1:
        raise SnapkitError(f"The ambience training share must be between 0 and 1, got {ambience_train_fraction}.")
    rng = np.random.default_rng(seed)
    train, held = {}, {}
    for label in events:
        train[label], held[label] = split_by_group(groups[label], train_clips, rng)
        if not held[label]:
            raise SnapkitError(f"{label!r} has no source recording left to test on after {train_clips} for training.")
    train_side: list[list[LabelledClip]] = []
    bed: list[LabelledClip] = []
    for label in ambience:
        ordered = grouped_order(groups[label], rng)
        if len(ordered) < 2:
            raise SnapkitError(f"Ambience class {label!r} has a single source recording; it cannot be split.")
        cut = min(len(ordered) - 1, max(1, round(ambience_train_fraction * len(ordered))))
        train_side.append([clip for group in ordered[:cut] for clip in group])
        bed += [clip for group in ordered[cut:] for clip in group]
    # In turn from the classes, so a small background class still hears every kind of ambience.
    background = [c for row in itertools.zip_longest(*train_side) for c in row if c is not None][:background_clips]
    other_labels = [label for label in groups if label not in (*events, *ambience)] if others is None else others
    cuts = [(Path(f), ambience_train_fraction * audio_info(f).duration_s) for f in ambience_files]
    return RealSplit(
        train=train,
        background=background,
        background_pieces=[AudioPiece(f, 0.0, cut) for f, cut in cuts],
        events=held,
        ambience=bed,
        ambience_pieces=[AudioPiece(f, cut, None) for f, cut in cuts],
        others={label: list(groups[label]) for label in other_labels},
    )


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.symlink_to(source.resolve())
    except OSError:  # filesystems without symbolic links
        shutil.copy2(source, target)


def write_real_train_folder(split: RealSplit, folder: Path, clip_s: float = AMBIENCE_PIECE_S) -> dict[str, int]:
    """The class folder a user would have: ``folder/<event>/`` with the K training clips of every event (symbolic
    links) and ``folder/background/`` with the training-side ambience clips plus the training-side parts of the long
    ambience files cut into ``clip_s`` WAV clips (at the file's own rate). Returns the clip count per class."""
    counts: dict[str, int] = {}
    for label, clips in split.train.items():
        for i, clip in enumerate(clips):
            _link(clip.path, folder / label / f"{i:03d}_{clip.path.name}")
        counts[label] = len(clips)
    background = folder / DEFAULT_BACKGROUND_LABEL
    for i, clip in enumerate(split.background):
        _link(clip.path, background / f"{i:03d}_{clip.path.name}")
    n = len(split.background)
    for piece in split.background_pieces:
        rate_hz = audio_info(piece.path).sample_rate_hz
        audio, clip_n = load_piece(piece, rate_hz), round(clip_s * rate_hz)
        for k, start in enumerate(range(0, len(audio) - clip_n + 1, clip_n)):
            sf.write(background / f"{n:03d}_{piece.path.stem}_{k:02d}.wav", audio[start : start + clip_n], rate_hz)
            n += 1
    counts[DEFAULT_BACKGROUND_LABEL] = n
    return counts


def load_piece(piece: AudioPiece, rate_hz: int) -> np.ndarray:
    """The samples of ``piece`` at ``rate_hz`` -> float32 ``[samples]``."""
    audio, _ = load_audio(piece.path, rate_hz)
    end = len(audio) if piece.end_s is None else round(piece.end_s * rate_hz)
    return audio[round(piece.start_s * rate_hz) : end]


def reference_span(audio: np.ndarray, rate_hz: int) -> tuple[int, int]:
    """Samples ``[start, end)`` of the sound in a weakly labelled clip ``[samples]``: the span of its
    noise-relative envelope (:func:`snapkit.eval.soundscape.event_span`), or the whole clip when the envelope
    rises less than ``FILLS_CLIP_CONTRAST_DB`` above its own 20th percentile (the sound fills the clip, so the clip
    has no noise of its own to measure it against)."""
    envelope, _ = _whitened_envelope(audio, rate_hz, GROUND_TRUTH_FRAME_S)
    quiet = float(np.percentile(envelope, SPAN_NOISE_PERCENTILE))
    if quiet > 0 and 10 * math.log10(float(envelope.max()) / quiet) < FILLS_CLIP_CONTRAST_DB:
        return 0, len(audio)
    return event_span(audio, rate_hz)


def load_event_clips(clips: dict[str, list[LabelledClip]], rate_hz: int) -> list[SoundClip]:
    """Held-out clips to plant, each with its :func:`reference_span`; silent ones are left out."""
    out = []
    for label, members in clips.items():
        for clip in members:
            audio, _ = load_audio(clip.path, rate_hz)
            try:
                span = reference_span(audio, rate_hz)
            except ValueError:  # silent: nothing to plant
                continue
            out.append(SoundClip(audio, label, f"{clip.path.parent.name}/{clip.path.name}", span))
    return out


def join_audio(pieces: Sequence[np.ndarray], crossfade_n: int) -> np.ndarray:
    """``pieces`` one after another with equal-power crossfades of ``crossfade_n`` samples -> float32 ``[samples]``."""
    out = np.asarray(pieces[0], dtype=np.float32)
    for piece in pieces[1:]:
        fade = min(crossfade_n, len(out) // 2, len(piece) // 2)
        ramp = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / max(fade, 1))
        head = out[len(out) - fade :] * np.cos(0.5 * np.pi * (np.arange(fade) + 0.5) / max(fade, 1))
        out = np.concatenate([out[: len(out) - fade], head + ramp * piece[:fade], piece[fade:]]).astype(np.float32)
    return out


def load_bed(split: RealSplit, rate_hz: int) -> list[SoundClip]:
    """The held-out ambience as bed clips: the clips of one source recording joined in file order (one stretch of
    one room), and the held-out part of every long ambience file."""
    by_group: dict[str, list[LabelledClip]] = {}
    for clip in split.ambience:
        by_group.setdefault(clip.group, []).append(clip)
    out = []
    crossfade_n = round(JOIN_CROSSFADE_S * rate_hz)
    for group, members in sorted(by_group.items()):
        audio = [load_audio(c.path, rate_hz)[0] for c in sorted(members, key=lambda c: str(c.path))]
        out.append(SoundClip(join_audio(audio, crossfade_n), members[0].label, group))
    out += [
        SoundClip(load_piece(p, rate_hz), "ambience", f"{p.path.name}@{p.start_s:.0f}s") for p in split.ambience_pieces
    ]
    return out


def train_model(args: argparse.Namespace, train_dir: Path, run_dir: Path) -> tuple[ModelBundle, dict[str, object]]:
    """Train on ``train_dir`` as ``snapkit train`` would; the bundle and what to report about its training."""
    settings = TrainSettings(backbone=args.backbone, epochs=args.epochs, seed=args.seed)
    plan = plan_training(train_dir, run_dir, settings)
    print("\n".join(plan.describe()), flush=True)
    result = run_training(
        plan,
        weights=args.weights,
        trainer_options=TrainerOptions(progress_bar=False),
        log=lambda message: print(f"  {message}", flush=True),
    )
    print(f"trained in {result.seconds:.0f} s", flush=True)
    bundle = load_model(result.bundle_path)
    return bundle, {"source": "trained on the clips not held out", **bundle_training(bundle)}


def bundle_training(bundle: ModelBundle) -> dict[str, object]:
    """Backbone, training seconds and clip-level estimate, as the bundle records them."""
    info = bundle.training or {}
    report = info.get("report") or {}
    return {
        "backbone": bundle.config.backbone,
        "seconds": info.get("seconds"),
        "estimate": report.get("estimate"),
        "accuracy": report.get("accuracy"),
        "macro_f1": report.get("macro_f1"),
    }


def load_clips(paths: Sequence[Path], label: str, rate_hz: int, root: Path) -> list[SoundClip]:
    clips = []
    for path in paths:
        audio, _ = load_audio(path, rate_hz)
        clips.append(SoundClip(audio, label, str(path.relative_to(root)) if path.is_relative_to(root) else str(path)))
    return clips


def detect_file(bundle: ModelBundle, settings: DetectorSettings, path: Path) -> tuple[list[Event], float]:
    """Finished events of ``path`` streamed through a fresh detector in ``CHUNK_S`` blocks, and the seconds taken."""
    rate = bundle.model.sample_rate_hz
    detector = Detector(bundle, settings, sample_rate_hz=rate)
    events: list[Event] = []
    start = time.perf_counter()
    for block in FileSource(path, rate, block_s=CHUNK_S).blocks():
        events += [u.event for u in detector.push(block) if u.kind == "end"]
    events += [u.event for u in detector.flush() if u.kind == "end"]
    return sorted(events, key=lambda e: (e.onset_s, e.label)), time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------- scoring


def error_stats(errors_s: Sequence[float]) -> dict[str, float]:
    """Median signed error, median and 90th percentile of the absolute error, in ms (NaN without errors)."""
    if not len(errors_s):
        return {"median_ms": math.nan, "abs_median_ms": math.nan, "abs_p90_ms": math.nan, "n": 0}
    errors_ms = 1000.0 * np.asarray(errors_s)
    return {
        "median_ms": float(np.median(errors_ms)),
        "abs_median_ms": float(np.median(np.abs(errors_ms))),
        "abs_p90_ms": float(np.percentile(np.abs(errors_ms), 90)),
        "n": len(errors_ms),
    }


def score(reference: list[Event], detected: list[Event], duration_s: float, labels: Sequence[str]) -> dict:
    """Event (with offsets, and onset only), segment and timing figures of one soundscape (or several pooled)."""
    full = event_scores(reference, detected, labels=labels)
    onset = event_scores(reference, detected, evaluate_offset=False, labels=labels)
    segment = segment_scores(reference, detected, segment_s=SEGMENT_S, duration_s=duration_s, labels=labels)
    return {
        "event": full.per_class,
        "onset_only": onset.per_class,
        "segment": segment.per_class,
        "onset_errors_s": list(onset.onset_errors_s),
        "offset_errors_s": list(onset.offset_errors_s),
        "error_labels": [reference[r].label for r, _ in onset.matching.pairs],
        "unmatched": len(full.matching.false_alarms),
        "duration_s": duration_s,
        "unmatched_per_hour": false_alarms_per_hour(detected, duration_s, reference=reference),
    }


def pooled(per_snr: dict[float, dict], labels: Sequence[str]) -> dict:
    """The counts of every soundscape added up (micro average over all SNRs), errors concatenated."""
    total: dict[str, object] = {}
    for kind in ("event", "onset_only", "segment"):
        total[kind] = {label: sum((f[kind][label] for f in per_snr.values()), Counts(0, 0, 0)) for label in labels}
    for key in ("onset_errors_s", "offset_errors_s", "error_labels"):
        total[key] = [e for f in per_snr.values() for e in f[key]]
    unmatched = sum(f["unmatched"] for f in per_snr.values())
    duration_s = sum(f["duration_s"] for f in per_snr.values())
    total["unmatched_per_hour"] = unmatched * SECONDS_PER_HOUR / duration_s
    return total


def overall(per_class: dict[str, Counts]) -> Counts:
    return sum(per_class.values(), Counts(0, 0, 0))


def sed_eval_check(results: Sequence[SnrResult], labels: Sequence[str]) -> list[dict] | None:
    """Overall event F1 (with offsets and onset only) and segment F1 of each soundscape by sed_eval; None if it is
    not installed."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        # dcase_util (under sed_eval) imports pkg_resources but never calls it on these paths; setuptools >= 81
        # no longer ships it (as in tests/test_scoring.py).
        sys.modules.setdefault("pkg_resources", types.ModuleType("pkg_resources"))
    try:
        import sed_eval
    except ImportError:
        return None

    def as_list(events: Sequence[Event]) -> list[dict[str, object]]:
        return [{"filename": "s.wav", "event_label": e.label, "onset": e.onset_s, "offset": e.offset_s} for e in events]

    rows = []
    for result in results:
        row: dict[str, object] = {"snr_db": result.snr_db}
        for name, evaluate_offset in (("event_f1", True), ("onset_only_f1", False)):
            metrics = sed_eval.sound_event.EventBasedMetrics(
                event_label_list=list(labels),
                t_collar=DEFAULT_ONSET_COLLAR_S,
                percentage_of_length=DEFAULT_OFFSET_COLLAR_RATE,
                evaluate_offset=evaluate_offset,
                empty_system_output_handling="zero_score",
            )
            metrics.evaluate(as_list(result.reference), as_list(result.detected))
            row[name] = float(metrics.results_overall_metrics()["f_measure"]["f_measure"])
        metrics = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=list(labels), time_resolution=SEGMENT_S)
        metrics.evaluate(
            as_list(result.reference), as_list(result.detected), evaluated_length_seconds=result.duration_s
        )
        row["segment_f1"] = float(metrics.results_overall_metrics()["f_measure"]["f_measure"])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------- output


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def snr_name(snr_db: float) -> str:
    return f"{snr_db:g} dB"


def plot_errors(path: Path, per_snr: dict[float, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in (
        (axes[0], "onset_errors_s", "onset error"),
        (axes[1], "offset_errors_s", "offset error"),
    ):
        values = [1000.0 * np.asarray(f[key]) for f in per_snr.values()]
        every = np.concatenate(values) if values else np.zeros(0)
        # Onsets lie within the collar by construction: 5 ms bins across it. Offsets may lie anywhere.
        collar_ms = 1000 * DEFAULT_ONSET_COLLAR_S
        low, high = (float(every.min()), float(every.max())) if len(every) else (-collar_ms, collar_ms)
        if key == "onset_errors_s":
            low, high = -collar_ms, collar_ms
        bins = np.linspace(low, high, 81) if high > low else 20
        for snr_db, errors_ms in zip(per_snr, values, strict=True):
            ax.hist(
                errors_ms, bins=bins, histtype="step", linewidth=1.5, label=f"{snr_name(snr_db)} ({len(errors_ms)})"
            )
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel(f"{title}, detected − reference (ms)")
        ax.set_ylabel("matched events")
        ax.set_title(f"{title} (pairs matched by onset, ±{1000 * DEFAULT_ONSET_COLLAR_S:.0f} ms)")
        ax.legend(title="SNR (matches)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_f1(path: Path, per_snr: dict[float, dict], labels: Sequence[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snrs = list(per_snr)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, name, style in (
        ("event", "event F1 (onset + offset)", "o-"),
        ("onset_only", "event F1 (onset only)", "s-"),
        ("segment", f"segment F1 ({SEGMENT_S:g} s)", "^-"),
    ):
        ax.plot(snrs, [overall(per_snr[s][kind]).f1 for s in snrs], style, linewidth=2, label=name)
    for label in labels:
        ax.plot(snrs, [per_snr[s]["event"][label].f1 for s in snrs], ":", alpha=0.8, label=f"{label} (event)")
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("F1")
    ax.set_ylim(0.0, 1.02)
    ax.set_xticks(snrs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Detection F1 against SNR")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_events(path: Path, results: Sequence[SnrResult], background: SnrResult) -> None:
    lines = ["soundscape\tkind\tlabel\tonset_s\toffset_s\tpeak_score"]
    for result, name in [*((r, f"snr_{r.snr_db:g}dB") for r in results), (background, "background_only")]:
        for kind, events in (("reference", result.reference), ("other", result.others), ("detected", result.detected)):
            lines += [
                f"{name}\t{kind}\t{e.label}\t{e.onset_s:.4f}\t{e.offset_s:.4f}\t{e.peak_score:.3f}" for e in events
            ]
    path.write_text("\n".join(lines) + "\n")


def markdown(context: dict, per_snr: dict[float, dict], total: dict, background: dict, labels: Sequence[str]) -> str:
    c = context
    t = c["training"]
    lines = [
        "# Detection timing on soundscapes (`experiments/timing.py`)",
        "",
        f"    {c['command']}",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in c["machine"].items()),
        "",
        f"Data: {c['data']}. Held out for the soundscapes (never trained on): "
        + ", ".join(f"{label} {n}" for label, n in c["held_out"].items())
        + f" clips; {c['unique_background_s']:.0f} s of distinct background audio.",
        f"Model: {t['backbone']}, {t['source']}; training took {fmt(t['seconds'], '.0f')} s; clip-level estimate "
        f"{t['estimate']}: accuracy {fmt(t['accuracy'])}.",
        f"Soundscapes: {c['minutes']:g} min per SNR, {c['events_per_minute']:g} events/min, at least "
        f"{c['min_gap_s']:g} s apart, same seed (same events and times) at every SNR; "
        f"{c['background_minutes']:g} min of background only. Detector: {c['detector']}, fed {CHUNK_S:g} s blocks "
        f"from WAV; real-time factor {c['rtf']:.3f}."
        + (
            f" {c['turned_down']} events were planted below their SNR so as not to clip (see timing_events.tsv)."
            if c["turned_down"]
            else ""
        ),
        "",
        f"Event-based: onset collar {1000 * DEFAULT_ONSET_COLLAR_S:.0f} ms, offset collar max("
        f"{1000 * DEFAULT_OFFSET_COLLAR_S:.0f} ms, {100 * DEFAULT_OFFSET_COLLAR_RATE:.0f} % of the event); F1 is the "
        f"micro average over classes. Segment-based: {SEGMENT_S:g} s segments. Errors: detected minus reference "
        "(positive = late) over the pairs matched by onset alone; median of the signed error, 90th percentile of "
        "its size. 'FP/h' counts detections matching no reference event (default collars) per hour of soundscape.",
        "",
        "## Per SNR",
        "",
        "| SNR | events | detected | P | R | F1 | onset-only F1 | segment F1 | onset median ms | onset median abs ms "
        "| onset p90 ms | offset median ms | offset p90 ms | FP/h |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, figures in [*((snr_name(s), f) for s, f in per_snr.items()), ("all", total)]:
        event, onset_only, segment = (overall(figures[k]) for k in ("event", "onset_only", "segment"))
        on, off = error_stats(figures["onset_errors_s"]), error_stats(figures["offset_errors_s"])
        fp_h = figures["unmatched_per_hour"]
        lines.append(
            f"| {name} | {event.n_reference} | {event.n_estimated} | {fmt(event.precision)} | {fmt(event.recall)} "
            f"| {fmt(event.f1)} | {fmt(onset_only.f1)} | {fmt(segment.f1)} | {fmt(on['median_ms'], '+.0f')} "
            f"| {fmt(on['abs_median_ms'], '.0f')} | {fmt(on['abs_p90_ms'], '.0f')} | {fmt(off['median_ms'], '+.0f')} "
            f"| {fmt(off['abs_p90_ms'], '.0f')} | {fmt(fp_h, '.0f')} |"
        )
    lines += [
        "",
        "## False alarms on background-only audio",
        "",
        f"{background['count']} detections in {background['minutes']:g} min: **{background['per_hour']:.1f} per hour**"
        + (
            " (" + ", ".join(f"{label} {n}" for label, n in background["per_class"].items() if n) + ")."
            if background["count"]
            else "."
        ),
        "",
        *(
            [
                f"{background['other_sounds']} other sounds (classes never trained on) were planted in it at "
                f"{', '.join(snr_name(s) for s in per_snr)}; detections overlapping one: "
                + (", ".join(f"{label} {n}" for label, n in background["during_other"].items() if n) or "none")
                + f"; on the ambience alone: {background['bed_alone']}.",
                "",
            ]
            if background.get("other_sounds")
            else []
        ),
        "## Per class",
        "",
        "| class | " + " | ".join(f"F1 {snr_name(s)}" for s in per_snr) + " | F1 all | P all | R all "
        "| onset-only F1 all | segment F1 all | onset median ms | onset median abs ms | FA/h background |",
        "|---|" + "---|" * (len(per_snr) + 8),
    ]
    for label in labels:
        per = [per_snr[s]["event"][label].f1 for s in per_snr]
        errors = [e for e, of in zip(total["onset_errors_s"], total["error_labels"], strict=True) if of == label]
        lines.append(
            f"| {label} | "
            + " | ".join(fmt(v) for v in per)
            + f" | {fmt(total['event'][label].f1)} | {fmt(total['event'][label].precision)} "
            f"| {fmt(total['event'][label].recall)} "
            f"| {fmt(total['onset_only'][label].f1)} | {fmt(total['segment'][label].f1)} "
            f"| {fmt(error_stats(errors)['median_ms'], '+.0f')} | {fmt(error_stats(errors)['abs_median_ms'], '.0f')} "
            f"| {background['per_class_per_hour'][label]:.1f} |"
        )
    check = c.get("sed_eval")
    lines += ["", "## Cross-check against sed_eval", ""]
    if check is None:
        lines.append("sed_eval is not installed (or `--no-sed-eval`); `pip install -e '.[dev]'` to run the check.")
    else:
        lines += ["| SNR | event F1 ours / sed_eval | onset-only F1 | segment F1 |", "|---|---|---|---|"]
        for row in check:
            figures = per_snr[row["snr_db"]]
            pairs = [
                f"{fmt(overall(figures[kind]).f1, '.4f')} / {fmt(row[f'{kind}_f1'], '.4f')}"
                for kind in ("event", "onset_only", "segment")
            ]
            lines.append(f"| {snr_name(row['snr_db'])} | " + " | ".join(pairs) + " |")
        lines.append("")
        lines.append("All equal." if c["sed_eval_agrees"] else "**They differ: check snapkit.eval.scoring.**")
    lines += ["", "![errors](timing_errors.png)", "", "![F1 against SNR](timing_f1_vs_snr.png)", ""]
    return "\n".join(lines)


def to_json(figures: dict) -> dict:
    """The JSON-able part of a :func:`score` / :func:`pooled` result."""
    out: dict[str, object] = {}
    for kind in ("event", "onset_only", "segment"):
        per_class = figures[kind]
        out[kind] = {
            "overall": overall(per_class).to_dict(),
            "per_class": {label: counts.to_dict() for label, counts in per_class.items()},
        }
    out["onset_error"] = error_stats(figures["onset_errors_s"])
    out["offset_error"] = error_stats(figures["offset_errors_s"])
    out["unmatched_per_hour"] = figures["unmatched_per_hour"]
    return out


def _nan_to_none(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------- main


def prepare_real(args: argparse.Namespace, train_dir: Path) -> tuple[RealSplit, str]:
    """Read ``--set`` folders, split them (:func:`split_real_sets`), write the training class folder into
    ``train_dir``; the split and a line describing the data."""
    clips = [clip for folder in args.sets for clip in read_set(folder, group_column=args.group_column)]
    split = split_real_sets(
        clips,
        args.events,
        args.ambience,
        ambience_files=args.ambience_files,
        train_clips=args.train_clips,
        background_clips=args.background_train_clips,
        ambience_train_fraction=args.ambience_train_fraction,
        others=args.others,
        seed=args.seed,
    )
    counts = write_real_train_folder(split, train_dir)
    description = (
        f"real recordings from {', '.join(str(f) for f in args.sets)}, split by source recording (seed {args.seed}). "
        f"Trained on: {', '.join(f'{label} {n}' for label, n in counts.items())} clips ({DEFAULT_BACKGROUND_LABEL}: "
        f"training-side clips of {', '.join(args.ambience)}"
        + (
            f" and {AMBIENCE_PIECE_S:g} s pieces of the first {args.ambience_train_fraction:.0%} of "
            f"{', '.join(f.name for f in args.ambience_files)}"
            if args.ambience_files
            else ""
        )
        + f"). Other sounds (never trained on, planted in the false-alarm audio): {', '.join(split.others)}"
    )
    return split, description


def prepare_data(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    """The dataset folder (``args.data_dir``, or one generated into ``tmp``) and a line describing it."""
    if args.data_dir is not None:
        return args.data_dir, str(args.data_dir)
    data_dir = tmp / "data"
    make_dataset(
        data_dir,
        classes=tuple(args.classes),
        clips_per_class=args.clips,
        background_clips=args.background_clips,
        seed=args.seed,
    )
    return data_dir, (
        f"generated (snapkit.eval.synth, seed {args.seed}): {', '.join(args.classes)} x {args.clips} clips, "
        f"{args.background_clips} background clips"
    )


def run_soundscapes(
    args: argparse.Namespace,
    bundle: ModelBundle,
    settings: DetectorSettings,
    targets: list[SoundClip],
    backgrounds: list[SoundClip],
    files: Path,
    others: Sequence[SoundClip] = (),
) -> tuple[list[SnrResult], SnrResult]:
    """Build, write and detect one soundscape per SNR, then the background-only one (``snr_db`` NaN), with
    ``others`` planted in it at ``--others-per-minute`` if given."""
    rate = bundle.model.sample_rate_hz
    results: list[SnrResult] = []
    for snr_db in args.snr:
        scape = make_soundscape(
            targets,
            backgrounds,
            sample_rate_hz=rate,
            duration_s=args.minutes * SECONDS_PER_MINUTE,
            snr_db=snr_db,
            seed=args.seed,
            events_per_minute=args.events_per_minute,
            labels=list(bundle.config.labels),
            min_gap_s=args.min_gap_s,
        )
        path = scape.write(files / f"soundscape_{snr_db:g}dB.wav", overwrite=True)
        detected, seconds = detect_file(bundle, settings, path)
        turned_down = sum(e.snr_db < snr_db - 0.01 for e in scape.events)
        results.append(SnrResult(snr_db, scape.duration_s, scape.reference_events(), detected, seconds, turned_down))
        print(f"{snr_name(snr_db)}: {len(scape.events)} planted, {len(detected)} detected ({seconds:.0f} s)")
    # Every detection here is a false alarm: the bed alone, or with other sounds (never trained on) planted in it.
    quiet = make_soundscape(
        others,
        backgrounds,
        sample_rate_hz=rate,
        duration_s=args.background_minutes * SECONDS_PER_MINUTE,
        snr_db=args.snr,
        seed=args.seed + 1,  # another order of the background clips than under the events
        events_per_minute=args.others_per_minute if others else 0.0,
    )
    path = quiet.write(files / "background_only.wav", overwrite=True)
    detected, seconds = detect_file(bundle, settings, path)
    print(
        f"background only ({len(quiet.events)} other sounds): {len(detected)} detections in "
        f"{args.background_minutes:g} min ({seconds:.0f} s)"
    )
    return results, SnrResult(math.nan, quiet.duration_s, [], detected, seconds, others=quiet.reference_events())


def background_figures(quiet: SnrResult, labels: Sequence[str]) -> dict[str, object]:
    """False alarms on the background-only soundscape: every detection is one."""
    return {
        "minutes": quiet.duration_s / SECONDS_PER_MINUTE,
        "count": len(quiet.detected),
        "per_hour": false_alarms_per_hour(quiet.detected, quiet.duration_s),
        "per_class": {label: sum(e.label == label for e in quiet.detected) for label in labels},
        "per_class_per_hour": {
            label: false_alarms_per_hour([e for e in quiet.detected if e.label == label], quiet.duration_s)
            for label in labels
        },
        "other_sounds": len(quiet.others),
        # Which other sounds set the detector off (a detection overlapping one), and how many alarms were raised
        # by the bed alone.
        "during_other": {
            label: sum(any(_overlap(e, o) for o in quiet.others if o.label == label) for e in quiet.detected)
            for label in sorted({o.label for o in quiet.others})
        },
        "bed_alone": sum(not any(_overlap(e, o) for o in quiet.others) for e in quiet.detected),
    }


def _overlap(a: Event, b: Event) -> bool:
    return a.onset_s < (b.offset_s or b.onset_s) and b.onset_s < (a.offset_s or a.onset_s)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, abs_tol=1e-9)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    settings = DetectorSettings() if args.hop is None else DetectorSettings(hop_s=args.hop)
    print(f"settings: {vars(args)}\ndetector: {settings}", flush=True)
    with tempfile.TemporaryDirectory(prefix="snapkit-timing-") as tmp_name:
        tmp = Path(tmp_name)
        files = args.out / "files" if args.keep_files else tmp / "files"
        files.mkdir(parents=True, exist_ok=True)
        split = None
        if args.sets:
            split, data = prepare_real(args, tmp / "train")
            held = {**split.events, "ambience (bed)": split.ambience, **split.others}
        else:
            data_dir, data = prepare_data(args, tmp)
            held = split_dataset(data_dir, args.held_out, args.seed, tmp / "train")
        if args.model is None:
            bundle, training = train_model(args, tmp / "train", tmp / "run")
        else:
            bundle = load_model(args.model)
            training = {"source": f"loaded from {args.model}", **bundle_training(bundle)}
        if args.keep_files and (args.model is None or args.model.resolve() != (files / "model.snapkit").resolve()):
            bundle.save(files / "model.snapkit", overwrite=True)
        labels = list(bundle.config.labels)
        rate = bundle.model.sample_rate_hz
        if split is not None:
            targets = load_event_clips({label: split.events[label] for label in labels}, rate)
            backgrounds, others = load_bed(split, rate), load_event_clips(split.others, rate)
        else:
            targets = [clip for label in labels for clip in load_clips(held.get(label, []), label, rate, data_dir)]
            backgrounds = load_clips(held[DEFAULT_BACKGROUND_LABEL], DEFAULT_BACKGROUND_LABEL, rate, data_dir)
            others = []
        results, quiet = run_soundscapes(args, bundle, settings, targets, backgrounds, files, others)

    per_snr = {r.snr_db: score(r.reference, r.detected, r.duration_s, labels) for r in results}
    total = pooled(per_snr, labels)
    background = background_figures(quiet, labels)
    audio_s = sum(r.duration_s for r in [*results, quiet])
    context: dict[str, object] = {
        "command": command_line(),
        "machine": machine,
        "data": data,
        "held_out": {label: len(paths) for label, paths in sorted(held.items())},
        "unique_background_s": sum(len(c.audio) for c in backgrounds) / rate,
        "training": training,
        "minutes": args.minutes,
        "events_per_minute": args.events_per_minute,
        "min_gap_s": args.min_gap_s,
        "background_minutes": args.background_minutes,
        "detector": (
            f"{Detector(bundle, settings).describe()}; min gap {settings.min_gap_s:g} s or the class's own pauses, "
            "the bundle's calibrated thresholds"
        ),
        "turned_down": sum(r.turned_down for r in results),
        "rtf": sum(r.detect_s for r in [*results, quiet]) / audio_s,
    }
    check = None if args.no_sed_eval else sed_eval_check(results, labels)
    context["sed_eval"] = check
    if check is not None:
        context["sed_eval_agrees"] = all(
            _same(overall(per_snr[row["snr_db"]][kind]).f1, row[f"{kind}_f1"])
            for row in check
            for kind in ("event", "onset_only", "segment")
        )

    plot_errors(args.out / "timing_errors.png", per_snr)
    plot_f1(args.out / "timing_f1_vs_snr.png", per_snr, labels)
    write_events(args.out / "timing_events.tsv", results, quiet)
    report = {
        **context,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "detector_settings": asdict(settings),
        "per_snr": {f"{s:g}": to_json(f) for s, f in per_snr.items()},
        "all": to_json(total),
        "background_only": background,
        "turned_down_events": {f"{r.snr_db:g}": r.turned_down for r in results},
    }
    (args.out / "timing.json").write_text(json.dumps(_nan_to_none(report), indent=2, default=str))
    text = markdown(context, per_snr, total, background, labels)
    (args.out / "timing.md").write_text(text)
    print(text)
    return report


# A fixed small real-recording check for a quality guard (a test can call it): three event classes, 2 minutes of
# them at 6 dB over held-out ambience and 3 minutes of ambience with other sounds, the sfx-cnn9 head.
CHECK_EVENTS = ("dog_bark", "car_horn", "drawer")
CHECK_AMBIENCE = ("fridge", "stove-fan", "air_conditioner", "engine_idling")
CHECK_OTHERS = ("cutlery", "plates", "children_playing", "street_music")
CHECK_SETS = ("urban", "kitchen20")


def real_detection_check(sounds: Path, out: Path, *, weights: Path | None = None, seed: int = 0) -> dict[str, float]:
    """Run the fixed small real-recording detection check on the sets under ``sounds`` (``CHECK_SETS``), writing
    the usual report into ``out``; returns the 6 dB soundscape's overall event F1, onset-only F1, precision and
    recall, its median absolute onset error in ms, and the false alarms per hour of the ambience with other sounds.
    A few minutes of CPU (sfx-cnn9 weights from ``weights`` or SNAPKIT_WEIGHTS_DIR)."""
    argv = [
        "--set",
        *(str(sounds / name) for name in CHECK_SETS),
        "--events",
        *CHECK_EVENTS,
        "--ambience",
        *CHECK_AMBIENCE,
        "--others",
        *CHECK_OTHERS,
        "--snr",
        "6",
        "--minutes",
        "2",
        "--background-minutes",
        "3",
        "--backbone",
        "sfx-cnn9",
        "--seed",
        str(seed),
        "--no-sed-eval",
        "--out",
        str(out),
        *(["--weights", str(weights)] if weights else []),
    ]
    report = run(parse_args(argv))
    figures = report["per_snr"]["6"]
    return {
        "event_f1": figures["event"]["overall"]["f1"],
        "onset_f1": figures["onset_only"]["overall"]["f1"],
        "precision": figures["event"]["overall"]["precision"],
        "recall": figures["event"]["overall"]["recall"],
        "onset_abs_median_ms": figures["onset_error"]["abs_median_ms"],
        "false_alarms_per_hour": report["background_only"]["per_hour"],
    }


def main() -> None:
    args = parse_args()
    try:
        run(args)
    except SnapkitError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
