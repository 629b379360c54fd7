"""Few-shot quality: N-way K-shot episodes comparing snapkit's models with plain baselines on frozen embeddings.

    SNAPKIT_WEIGHTS_DIR=../shared/models python experiments/fewshot.py [DATA_DIR] [--shots 1 2 5 10]
        [--ways N] [--episodes E] [--backbones convnet sfx-cnn9 ...] [--quick]

DATA_DIR is any class-folder dataset (``DATA_DIR/<label>/*.wav``, ideally with a ``background`` class). Without it
a dataset is generated with ``snapkit.eval.synth.make_dataset`` (6 sound classes + background).

Episodes. Episode ``e`` draws, with its own generator seeded ``(--seed, e)``, ``--ways`` target classes (default:
all of them) and one random order of the clips of every drawn class and of the background class, which is always
part of the episode as the "nothing to report" outcome (so an episode has N + 1 outcomes). A K-shot episode
trains on the first K clips of each order (background too: K background clips) and tests on all the remaining
clips of those classes. The draw does not depend on K, so the K = 2 training set contains the K = 1 one, and every
method sees exactly the same clips in an episode: comparisons between methods are paired. A dataset without a
background class gives N-way episodes; snapkit then trains with its generated stand-in background as usual.

Methods, per backbone whose pretrained weights resolve offline (others are skipped with a note):
  * the snapkit ConvNet trained from scratch (backbone ``convnet``);
  * every head ``snapkit train`` offers on a frozen backbone: the linear head (``--head-hidden 0``) and the MLP
    head (one hidden layer, ``--mlp-hidden`` units), with the library's default pooling unless ``--pooling``;
  * two plain baselines on the backbone's clip embedding (``embed()`` of the whole clip, computed once per clip):
    logistic regression on standardised embeddings (sklearn, C = 1), and nearest class mean (Euclidean distance to
    each class's mean of the standardised embeddings; the scaler is fitted on the episode's training clips only).

snapkit models are trained through the library (``plan_training`` + ``run_training``) on a temporary class folder
of symlinks to the episode's training clips, with snapkit's defaults: what ``snapkit train`` gives a user,
cross-validation (under 10 clips a class), calibrated thresholds and its printed estimate included (``--no-cv``
trains the final model only, faster, with default thresholds). ``--clip-s`` and ``--no-augment`` change the
training clip length and switch augmentation off, for experiments. Test clips are scored with
``clip_probabilities`` and labelled with ``decide`` of the loaded bundle, as ``snapkit predict`` does. Each run
gets a private feature cache (``SNAPKIT_CACHE_DIR``), so no cached augmented view made in one episode (which can
have another episode's test background mixed in) is reused in another, and head times include embedding their
views. Real-recording sets (a folder with ``metadata.csv``) are split by source recording (``--group-column``).

Statistics: per method and K, accuracy and macro F1 (over the outcomes present in the test clips, as
``snapkit evaluate``) are averaged over episodes with a 95 % Student-t interval (mean +- t * sd / sqrt(episodes)).
Episodes share clips, so they are not independent and the intervals are somewhat optimistic. A second table gives
the paired difference in accuracy of every method against one reference method, over the same episodes.
Train time is wall time of ``run_training`` (snapkit models) or of scaler + fit (baselines, which exclude the
one-off embedding of every clip; that time is listed separately).

Writes ``fewshot.md``, ``fewshot.json`` and ``fewshot.png`` into ``--out`` (default experiments/results/fewshot/).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

if not __package__:  # run as `python experiments/fewshot.py`: make the repository importable for experiments.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.realsets import LabelledClip, by_label, label_paths, read_set, split_by_group
from snapkit.errors import DatasetError, SnapkitError, WeightsError
from snapkit.models.backbones.registry import BACKBONES

CLASSES = ("beep", "smoke_alarm", "snap", "scratch", "chirp", "knock")
BACKGROUND_LABEL = "background"
CONVNET = "convnet"
DEFAULT_SHOTS = (1, 2, 5, 10)
DEFAULT_BACKBONES = (CONVNET, "sfx-cnn9")
DEFAULT_EPISODES = 5
QUICK_SHOTS = (1, 5)
QUICK_EPISODES = 3
DEFAULT_MLP_HIDDEN = 128
CLIP_S = 2.0
CONFIDENCE = 0.95
# Generated datasets get this many clips per class beyond the largest K, so the largest K still tests on some.
GENERATED_TEST_CLIPS = 10
RESULTS_DIR = Path(__file__).resolve().parent / "results" / "fewshot"
# Rough seconds per snapkit run on the project's 2-core machine (one thread, the other core busy), for the
# up-front estimate only: the ConvNet's 60 epochs draw max(clips, 32) views each (measured 60-95 s at 7-35 clips);
# an sfx-cnn9 head spends most of its time embedding 8 views a clip (measured 8 s at 7 clips, 25-45 s at 35).
_CONVNET_S = (15.0, 1.5)  # base, per max(train clips, 32)
_HEAD_S = (3.0, 0.9)  # base, per train clip


# ----------------------------------------------------------------------------------------------------
# Episodes


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot episode.

    Attributes:
        index: episode number (its seed is ``(seed, index)``).
        shots: K, training clips per outcome.
        classes: outcomes, sorted, background included when the dataset has one.
        train: outcome -> its K training clips.
        test: outcome -> its remaining clips (at least one).
    """

    index: int
    shots: int
    classes: tuple[str, ...]
    train: dict[str, tuple[Path, ...]]
    test: dict[str, tuple[Path, ...]]

    def train_items(self) -> list[tuple[Path, str]]:
        """``(path, label)`` of every training clip, class by class."""
        return [(path, label) for label in self.classes for path in self.train[label]]

    def test_items(self) -> list[tuple[Path, str]]:
        """``(path, label)`` of every test clip, class by class."""
        return [(path, label) for label in self.classes for path in self.test[label]]


def check_shots(
    clips: Mapping[str, Sequence[Path]], shots: int, ways: int | None, background_label: str = BACKGROUND_LABEL
) -> int:
    """The number of target classes an episode draws; raises ``DatasetError`` when K-shot episodes cannot be made.

    Every class (background included) needs ``shots + 1`` clips: K to train on and at least one to test on.
    """
    if shots < 1:
        raise DatasetError(f"--shots must be at least 1, got {shots}.")
    targets = sorted(label for label in clips if label != background_label)
    has_background = background_label in clips
    n_ways = len(targets) if ways is None else ways
    least = 1 if has_background else 2
    if not least <= n_ways <= len(targets):
        raise DatasetError(
            f"--ways {n_ways} does not fit a dataset with {len(targets)} target classes"
            f"{'' if has_background else f' and no {background_label!r} class'}; choose {least} to {len(targets)}."
        )
    short = [f"{label!r} has {len(paths)}" for label, paths in sorted(clips.items()) if len(paths) < shots + 1]
    if short:
        raise DatasetError(
            f"{shots}-shot episodes need at least {shots + 1} clips in every class ({shots} to train on, 1 to test "
            f"on), but {', '.join(short)}; lower --shots or record more clips."
        )
    return n_ways


def sample_episode(
    clips: Mapping[str, Sequence[Path]],
    shots: int,
    index: int,
    *,
    ways: int | None = None,
    seed: int = 0,
    background_label: str = BACKGROUND_LABEL,
    groups: Mapping[Path, str] | None = None,
) -> Episode:
    """Episode ``index``: ``ways`` target classes (default all) + background, K = ``shots`` training clips each.

    With ``groups`` (clip path -> source recording) the split is by source: K training clips from as many
    different sources as possible, and as test only clips of sources not trained on (``realsets.split_by_group``),
    so no near-copy of a training clip is tested.

    The classes and the order of every class's clips depend only on ``(seed, index)``, not on ``shots``: the
    training clips are the first K of that order and the test clips the rest, so a larger K keeps the smaller K's
    training clips. ``clips`` maps each label to its clip paths (their order is taken as given, so pass a sorted
    list for results that do not depend on directory order).

    Raises:
        DatasetError: a class has fewer than ``shots + 1`` clips, or ``ways`` does not fit the dataset.
    """
    n_ways = check_shots(clips, shots, ways, background_label)
    rng = np.random.default_rng([seed, index])
    targets = sorted(label for label in clips if label != background_label)
    chosen = sorted(str(c) for c in rng.choice(targets, size=n_ways, replace=False))
    classes = tuple(sorted([*chosen, background_label] if background_label in clips else chosen))
    train: dict[str, tuple[Path, ...]] = {}
    test: dict[str, tuple[Path, ...]] = {}
    for label in classes:
        if groups is None:
            order = [Path(clips[label][i]) for i in rng.permutation(len(clips[label]))]
            train[label], test[label] = tuple(order[:shots]), tuple(order[shots:])
            continue
        members = [LabelledClip(Path(p), label, groups.get(Path(p), str(p))) for p in clips[label]]
        train_clips, test_clips = split_by_group(members, shots, rng)
        if not test_clips:
            raise DatasetError(
                f"{shots}-shot episodes leave no test clip of {label!r} from a source recording not used for"
                " training; lower --shots."
            )
        train[label] = tuple(c.path for c in train_clips)
        test[label] = tuple(c.path for c in test_clips)
    return Episode(index=index, shots=shots, classes=classes, train=train, test=test)


def clips_by_class(data_dir: Path) -> dict[str, list[Path]]:
    """Readable clips of ``data_dir`` per class folder, sorted by path; unreadable files are left out."""
    from snapkit.dataset.scan import scan_dataset

    dataset = scan_dataset(data_dir)
    out: dict[str, list[Path]] = {}
    for clip in dataset.readable:
        out.setdefault(clip.label, []).append(clip.path)
    if not out:
        raise DatasetError(f"{data_dir} holds no readable audio clips in class folders (DATA_DIR/<label>/*.wav).")
    return {label: sorted(paths) for label, paths in sorted(out.items())}


# ----------------------------------------------------------------------------------------------------
# Statistics


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """``(mean, half_width)`` of a Student-t interval: mean +- t_{(1+c)/2, n-1} * sd / sqrt(n) (sd with n - 1).

    One value gives a NaN half width (no spread to estimate); identical values give 0.
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if not len(x):
        raise ValueError("mean_ci needs at least one value.")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan")
    sem = float(x.std(ddof=1)) / np.sqrt(len(x))
    return mean, float(stats.t.ppf((1 + confidence) / 2, len(x) - 1) * sem)


def lost_share(true: Sequence[str], predicted: Sequence[str], background_label: str = BACKGROUND_LABEL) -> float:
    """Share of the test clips of sound classes (not background) that were labelled background."""
    pairs = [(t, p) for t, p in zip(true, predicted, strict=True) if t != background_label]
    return float(np.mean([p == background_label for _, p in pairs])) if pairs else float("nan")


def score(true: Sequence[str], predicted: Sequence[str]) -> tuple[float, float]:
    """``(accuracy, macro F1)``; F1 is averaged over the labels present in ``true`` (as ``snapkit evaluate``), so a
    predicted label that never occurs (e.g. background when there is none) only costs recall and precision."""
    from sklearn.metrics import f1_score

    t, p = np.asarray(true), np.asarray(predicted)
    present = sorted(set(t.tolist()))
    return float(np.mean(t == p)), float(f1_score(t, p, labels=present, average="macro", zero_division=0))


# ----------------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class Method:
    """A way to learn from an episode: a snapkit model (``kind="snapkit"``) or a baseline on frozen embeddings
    (``"logreg"``, ``"ncm"``)."""

    name: str
    kind: str
    backbone: str
    head_hidden: int = 0

    def estimate_s(self, train_clips: int) -> float:
        """Rough training seconds for ``train_clips`` clips (the up-front estimate only)."""
        if self.kind != "snapkit":
            return 0.1
        if self.backbone == CONVNET:
            return _CONVNET_S[0] + _CONVNET_S[1] * max(train_clips, 32)
        return _HEAD_S[0] + _HEAD_S[1] * train_clips


def available_weights(backbones: Sequence[str]) -> tuple[dict[str, Path | None], list[str]]:
    """``({backbone: weights path (None for the ConvNet)}, notes)`` for the backbones usable offline."""
    from snapkit.models.weights import resolve_weights

    found: dict[str, Path | None] = {}
    notes: list[str] = []
    for name in backbones:
        if name == CONVNET:
            found[name] = None
        elif name not in BACKBONES:
            raise SnapkitError(f"--backbones {name!r} is unknown; choose from {CONVNET}, {', '.join(BACKBONES)}.")
        else:
            try:
                found[name] = resolve_weights(BACKBONES[name].weights, download=False, progress=False)
            except WeightsError as err:
                notes.append(f"skipped {name}: {err}")
    return found, notes


def make_methods(backbones: Sequence[str], heads: Sequence[str], mlp_hidden: int) -> list[Method]:
    """The methods compared, in table order: the ConvNet, then per backbone its heads and the two baselines."""
    methods: list[Method] = []
    for name in backbones:
        if name == CONVNET:
            methods.append(Method("convnet (from scratch)", "snapkit", CONVNET))
            continue
        if "linear" in heads:
            methods.append(Method(f"{name} linear head", "snapkit", name, 0))
        if "mlp" in heads:
            methods.append(Method(f"{name} MLP head ({mlp_hidden})", "snapkit", name, mlp_hidden))
        methods.append(Method(f"{name} embedding + logistic regression", "logreg", name))
        methods.append(Method(f"{name} embedding + nearest class mean", "ncm", name))
    return methods


def clip_embeddings(name: str, weights: Path, paths: Sequence[Path]) -> dict[Path, np.ndarray]:
    """The backbone's embedding of every whole clip (a clip shorter than 2 s padded to 2 s): ``{path: [dim]}``.

    ``embed()`` where the backbone has one (sfx-cnn9: max over time of its frames); otherwise the max over time of
    the frame features ``forward()`` gives. The whole clip, because that is what a plain baseline on weakly
    labelled clips uses (the sound may be anywhere in it); clips go one at a time since their lengths differ.
    """
    import torch

    from snapkit.audio.io import load_audio
    from snapkit.models.backbones.registry import load_backbone
    from snapkit.training.augment import fit_to_length

    backbone = load_backbone(name, weights, download=False, progress=False)
    rate = backbone.frontend_config.sample_rate_hz
    n = round(CLIP_S * rate)
    embed = getattr(backbone, "embed", None)
    out = []
    with torch.no_grad():
        for path in paths:
            wave = load_audio(path, rate)[0]
            chunk = torch.as_tensor(fit_to_length(wave, n) if len(wave) < n else wave)[None]
            out.append((embed(chunk) if callable(embed) else backbone(chunk).amax(dim=1)).numpy())
    vectors = np.concatenate(out).astype(np.float64)
    return dict(zip(paths, vectors, strict=True))


def fit_predict_baseline(
    kind: str, train_x: np.ndarray, train_y: Sequence[str], test_x: np.ndarray
) -> tuple[list[str], float]:
    """``(predicted labels, fit seconds)`` of logistic regression or nearest class mean on standardised vectors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    scaler = StandardScaler().fit(train_x)
    xs, ts = scaler.transform(train_x), scaler.transform(test_x)
    labels = np.asarray(train_y)
    if kind == "logreg":
        predicted = LogisticRegression(max_iter=2000).fit(xs, labels).predict(ts)
    elif kind == "ncm":
        names = sorted(set(labels.tolist()))
        means = np.stack([xs[labels == name].mean(axis=0) for name in names])
        distance = ((ts[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
        predicted = np.asarray(names)[distance.argmin(axis=1)]
    else:
        raise ValueError(f"unknown baseline {kind!r}")
    return [str(p) for p in predicted], time.perf_counter() - start


@contextlib.contextmanager
def private_feature_cache(folder: Path) -> Iterator[None]:
    """Point snapkit's feature cache (``SNAPKIT_CACHE_DIR``) at ``folder`` for the duration."""
    from snapkit.files import CACHE_DIR_ENV

    before = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CACHE_DIR_ENV, None)
        else:
            os.environ[CACHE_DIR_ENV] = before


def write_episode_folder(episode: Episode, folder: Path) -> Path:
    """``folder/<label>/`` holding the episode's training clips (symlinks; copies where links are not allowed)."""
    for path, label in episode.train_items():
        target = folder / label / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.symlink_to(path.resolve())
        except OSError:
            shutil.copy2(path, target)
    return folder


class ClipAudio:
    """Test clips loaded once per sample rate: ``get(path, rate_hz) -> [samples]`` float32."""

    def __init__(self) -> None:
        self._waves: dict[tuple[Path, int], np.ndarray] = {}

    def get(self, path: Path, rate_hz: int) -> np.ndarray:
        from snapkit.audio.io import load_audio

        key = (path, rate_hz)
        if key not in self._waves:
            self._waves[key] = load_audio(path, rate_hz)[0]
        return self._waves[key]


def train_and_test_snapkit(
    method: Method,
    episode: Episode,
    work: Path,
    *,
    weights: Path | None,
    seed: int,
    pooling: str | None,
    with_cv: bool,
    audio: ClipAudio,
    clip_s: float | None = None,
    augment: bool = True,
) -> tuple[list[str], float, float | None]:
    """Train ``method`` on the episode through the library: ``(predicted labels of the test clips, train s, the
    accuracy estimate training printed or None)``."""
    from snapkit.models.bundle import load_model
    from snapkit.models.predict import clip_probabilities, decide
    from snapkit.training.augment import AugmentConfig
    from snapkit.training.train import TrainerOptions, TrainSettings, plan_training, run_training

    data = write_episode_folder(episode, work / "data")
    # The episode's test clips estimate quality here, so by default only the final model is trained.
    settings = TrainSettings(
        backbone=method.backbone,
        head_hidden=method.head_hidden,
        seed=seed,
        pooling=pooling,
        clip_s=clip_s,
        estimate=with_cv,
    )
    plan = plan_training(data, work / "run", settings, AugmentConfig(enabled=augment))
    start = time.perf_counter()
    with private_feature_cache(work / "cache"):
        result = run_training(
            plan, weights=weights, trainer_options=TrainerOptions(progress_bar=False), log=lambda _m: None
        )
    seconds = time.perf_counter() - start
    bundle = load_model(result.bundle_path)
    rate = bundle.model.sample_rate_hz
    predicted = [decide(bundle, clip_probabilities(bundle, audio.get(path, rate))) for path, _ in episode.test_items()]
    estimate = result.report.get("accuracy")
    return predicted, seconds, float(estimate) if isinstance(estimate, int | float) else None


# ----------------------------------------------------------------------------------------------------
# Running


@contextlib.contextmanager
def _stop_on_interrupt(planned: int, runs: list) -> Iterator[None]:
    """Turn Ctrl-C into an early end: the runs finished so far are still summarised and written."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"\ninterrupted: writing the {len(runs)} of {planned} runs that finished", flush=True)


@dataclass
class Run:
    """One method on one episode."""

    method: str
    shots: int
    episode: int
    accuracy: float
    macro_f1: float
    train_s: float
    train_clips: int
    test_clips: int
    labelled_background: float  # share of test clips labelled background
    classes: list[str]
    # Share of test clips of a sound class that were labelled background (the loss the issue caps at 5 %).
    lost_to_background: float = float("nan")
    # The accuracy `snapkit train` estimated (cross-validation or held-out split) before seeing the test clips.
    estimate: float | None = None


def run_all(
    clips: Mapping[str, Sequence[Path]],
    methods: Sequence[Method],
    weights: Mapping[str, Path | None],
    embeddings: Mapping[str, Mapping[Path, np.ndarray]],
    args: argparse.Namespace,
    on_run: Callable[[list[Run]], None],
) -> list[Run]:
    """Every method on every episode, K by K; ``on_run(runs so far)`` after each run (to save partial results)."""
    runs: list[Run] = []
    audio = ClipAudio()
    plans = [(k, e) for k in args.shots for e in range(args.episodes)]
    total_estimate = sum(
        m.estimate_s(len(sample_episode(clips, k, e, ways=args.ways, seed=args.seed, groups=args.groups).train_items()))
        for k, e in plans
        for m in methods
    )
    print(f"{len(plans) * len(methods)} runs, roughly {total_estimate / 60:.0f} min (rough estimate)", flush=True)
    done_estimate, started = 0.0, time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="snapkit-fewshot-") as tmp,
        _stop_on_interrupt(len(plans) * len(methods), runs),
    ):
        for k, e in plans:
            episode = sample_episode(clips, k, e, ways=args.ways, seed=args.seed, groups=args.groups)
            true = [label for _, label in episode.test_items()]
            for i, method in enumerate(methods):
                if method.kind == "snapkit":
                    work = Path(tmp) / f"k{k}-e{e}-m{i}"
                    predicted, seconds, estimate = train_and_test_snapkit(
                        method,
                        episode,
                        work,
                        weights=weights[method.backbone],
                        seed=args.seed * 1000 + e,
                        pooling=args.pooling,
                        with_cv=args.with_cv,
                        audio=audio,
                        clip_s=args.clip_s,
                        augment=args.augment,
                    )
                    shutil.rmtree(work, ignore_errors=True)  # a head's bundle and checkpoints carry the backbone
                else:
                    estimate = None
                    vectors = embeddings[method.backbone]
                    predicted, seconds = fit_predict_baseline(
                        method.kind,
                        np.stack([vectors[p] for p, _ in episode.train_items()]),
                        [label for _, label in episode.train_items()],
                        np.stack([vectors[p] for p, _ in episode.test_items()]),
                    )
                accuracy, macro_f1 = score(true, predicted)
                runs.append(
                    Run(
                        method=method.name,
                        shots=k,
                        episode=e,
                        accuracy=accuracy,
                        macro_f1=macro_f1,
                        labelled_background=float(np.mean([p == BACKGROUND_LABEL for p in predicted])),
                        train_s=seconds,
                        train_clips=len(episode.train_items()),
                        test_clips=len(true),
                        classes=list(episode.classes),
                        lost_to_background=lost_share(true, predicted),
                        estimate=estimate,
                    )
                )
                done_estimate += method.estimate_s(len(episode.train_items()))
                elapsed = time.perf_counter() - started
                left = (total_estimate - done_estimate) * elapsed / max(done_estimate, 1e-9)
                print(
                    f"K={k} episode {e + 1}/{args.episodes} {method.name}: accuracy {accuracy:.3f}, macro F1 "
                    f"{macro_f1:.3f}, train {seconds:.1f} s  [elapsed {elapsed / 60:.1f} min, ~{left / 60:.1f} left]",
                    flush=True,
                )
                on_run(runs)
    return runs


def summarise(runs: Sequence[Run], methods: Sequence[Method], shots: Sequence[int]) -> list[dict[str, object]]:
    """Per method and K: mean and 95 % half width of accuracy and macro F1, episodes, mean train seconds."""
    rows: list[dict[str, object]] = []
    for method in methods:
        for k in shots:
            mine = [r for r in runs if r.method == method.name and r.shots == k]
            if not mine:
                continue
            acc, acc_ci = mean_ci([r.accuracy for r in mine])
            f1, f1_ci = mean_ci([r.macro_f1 for r in mine])
            rows.append(
                {
                    "method": method.name,
                    "shots": k,
                    "accuracy": acc,
                    "accuracy_ci95": acc_ci,
                    "macro_f1": f1,
                    "macro_f1_ci95": f1_ci,
                    "episodes": len(mine),
                    "train_s": float(np.mean([r.train_s for r in mine])),
                    "labelled_background": float(np.mean([r.labelled_background for r in mine])),
                    "lost_to_background": float(np.nanmean([r.lost_to_background for r in mine])),
                    # Estimate minus measured accuracy, per episode, where training made an estimate.
                    "estimate_error": _mean_or_nan([r.estimate - r.accuracy for r in mine if r.estimate is not None]),
                    "estimate_abs_error_max": _max_or_nan(
                        [abs(r.estimate - r.accuracy) for r in mine if r.estimate is not None]
                    ),
                }
            )
    return rows


def _mean_or_nan(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _max_or_nan(values: Sequence[float]) -> float:
    return float(np.max(values)) if len(values) else float("nan")


def paired_differences(runs: Sequence[Run], reference: str, shots: Sequence[int]) -> list[dict[str, object]]:
    """Per method and K: mean and 95 % half width of (accuracy - the reference method's) over shared episodes."""
    ref = {(r.shots, r.episode): r.accuracy for r in runs if r.method == reference}
    rows: list[dict[str, object]] = []
    for name in dict.fromkeys(r.method for r in runs):
        if name == reference:
            continue
        for k in shots:
            mine = [r for r in runs if r.method == name and r.shots == k and (k, r.episode) in ref]
            if not mine:
                continue
            mean, half = mean_ci([r.accuracy - ref[(k, r.episode)] for r in mine])
            rows.append({"method": name, "shots": k, "difference": mean, "ci95": half, "episodes": len(mine)})
    return rows


# ----------------------------------------------------------------------------------------------------
# Output


def _pm(mean: float, half: float, sign: str = "") -> str:
    """``mean ± half`` to 3 decimals (``sign="+"`` to show the sign of a difference)."""
    return f"{mean:{sign}.3f} ± {half:.3f}" if np.isfinite(half) else f"{mean:{sign}.3f} (1 episode)"


def machine_info() -> str:
    import torch

    return (
        f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} thread(s))"
    )


def write_markdown(path: Path, header: Mapping[str, object], rows: Sequence[dict], diffs: Sequence[dict]) -> None:
    """The results as a markdown page: what was run, on what, the table, the paired differences, the notes."""
    lines = [
        "# Few-shot quality (experiments/fewshot.py)",
        "",
        f"Command: `{header['command']}`",
        "",
        f"Machine: {header['machine']}; {header['date']}",
        "",
        f"Data: {header['data']}",
        "",
        f"Episodes: {header['protocol']}",
        "",
        "| method | shots | accuracy (95 % CI) | macro F1 (95 % CI) | episodes | mean train s | labelled background"
        " | sound lost to background | estimate - accuracy (mean, worst) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['shots']} | {_pm(r['accuracy'], r['accuracy_ci95'])} | "
        f"{_pm(r['macro_f1'], r['macro_f1_ci95'])} | {r['episodes']} | {r['train_s']:.1f} | "
        f"{r['labelled_background']:.2f} | {r.get('lost_to_background', float('nan')):.3f} | "
        + (
            f"{r['estimate_error']:+.3f}, {r['estimate_abs_error_max']:.3f} |"
            if np.isfinite(r.get("estimate_error", float("nan")))
            else "- |"
        )
        for r in rows
    ]
    if diffs:
        lines += [
            "",
            f"Paired difference in accuracy against **{header['reference']}** (same episodes; 95 % t-interval):",
            "",
            "| method | shots | accuracy difference (95 % CI) | episodes |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {d['method']} | {d['shots']} | {_pm(d['difference'], d['ci95'], '+')} | {d['episodes']} |"
            for d in diffs
        ]
    lines += ["", "Notes:", ""] + [f"- {note}" for note in header["notes"]]  # type: ignore[union-attr]
    lines += ["", "![accuracy and macro F1 against shots](fewshot.png)"]
    path.write_text("\n".join(lines) + "\n")


def write_plot(path: Path, rows: Sequence[dict], methods: Sequence[Method], title: str) -> None:
    """Accuracy and macro F1 against K per method, with 95 % interval error bars (slightly offset per method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m.name for m in methods if any(r["method"] == m.name for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    for ax, key, label in ((axes[0], "accuracy", "accuracy"), (axes[1], "macro_f1", "macro F1")):
        for i, name in enumerate(names):
            mine = sorted((r for r in rows if r["method"] == name), key=lambda r: r["shots"])
            # Offsets in log space so the error bars of methods at the same K do not hide each other.
            factor = 1.0 + 0.02 * (i - (len(names) - 1) / 2)
            shots = [r["shots"] * factor for r in mine]
            errors = [0.0 if not np.isfinite(r[f"{key}_ci95"]) else r[f"{key}_ci95"] for r in mine]
            ax.errorbar(shots, [r[key] for r in mine], yerr=errors, marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ticks = sorted({int(r["shots"]) for r in rows})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("shots (training clips per class)")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "data_dirs",
        nargs="*",
        type=Path,
        metavar="DATA_DIR",
        help="class-folder datasets or real-recording sets (a folder with metadata.csv); several are merged"
        " (default: generated)",
    )
    parser.add_argument(
        "--group-column",
        default=None,
        help="metadata column naming each clip's source recording; splits keep a source on one side"
        " (default: source_id or fsID when present)",
    )
    parser.add_argument("--label-column", default="label", help="metadata column holding the class")
    parser.add_argument("--only", nargs="+", default=None, metavar="CLASS", help="use only these classes")
    parser.add_argument("--shots", nargs="+", type=int, help=f"K values (default: {' '.join(map(str, DEFAULT_SHOTS))})")
    parser.add_argument("--ways", type=int, default=None, help="target classes per episode (default: all)")
    parser.add_argument("--episodes", type=int, help=f"episodes per K (default: {DEFAULT_EPISODES})")
    parser.add_argument(
        "--backbones",
        nargs="+",
        help=f"convnet and/or frozen backbones ({', '.join(BACKBONES)}); those without weights are skipped"
        f" (default: {' '.join(DEFAULT_BACKBONES)}; with --quick: no convnet)",
    )
    parser.add_argument(
        "--heads",
        nargs="*",
        choices=("linear", "mlp"),
        default=["linear", "mlp"],
        help="snapkit heads to train (none: baselines only)",
    )
    parser.add_argument("--mlp-hidden", type=int, default=DEFAULT_MLP_HIDDEN, help="hidden units of the MLP head")
    parser.add_argument("--pooling", default=None, help="pooling of snapkit models (default: the library's)")
    parser.add_argument(
        "--no-cv",
        dest="with_cv",
        action="store_false",
        help="train the final model only, with default thresholds (faster; not what `snapkit train` gives a user)",
    )
    parser.add_argument(
        "--clip-s", type=float, default=None, help="training clip length of snapkit models, s (default: the library's)"
    )
    parser.add_argument(
        "--no-augment", dest="augment", action="store_false", help="train snapkit models without augmentation"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"--shots {' '.join(map(str, QUICK_SHOTS))} --episodes {QUICK_EPISODES}, no ConvNet (unless given)",
    )
    parser.add_argument("--clips", type=int, help="clips per class when generating (default: largest K + 10)")
    parser.add_argument("--classes", nargs="+", default=list(CLASSES), help="sound classes when generating")
    parser.add_argument("--seed", type=int, default=0, help="seed of generation, episodes and training")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.shots = args.shots or list(QUICK_SHOTS)
        args.episodes = args.episodes or QUICK_EPISODES
        args.backbones = args.backbones or [b for b in DEFAULT_BACKBONES if b != CONVNET]
    args.backbones = args.backbones or list(DEFAULT_BACKBONES)
    args.shots = sorted(set(args.shots or DEFAULT_SHOTS))
    args.episodes = args.episodes or DEFAULT_EPISODES
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
        run(args)
    except SnapkitError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def load_sets(args: argparse.Namespace) -> tuple[dict[str, list[Path]], dict[Path, str]]:
    """``(clips per class, source recording of every clip)`` of the DATA_DIRs (``realsets.read_set``), restricted
    to ``--only``; a class present in two sets is merged."""
    found = [
        clip
        for folder in args.data_dirs
        for clip in read_set(folder, label_column=args.label_column, group_column=args.group_column)
    ]
    if args.only:
        missing = sorted(set(args.only) - {c.label for c in found})
        if missing:
            raise DatasetError(f"--only names classes not in the data: {', '.join(missing)}.")
        found = [c for c in found if c.label in set(args.only)]
    grouped = by_label(found)
    return label_paths(grouped), {c.path: c.group for c in found}


def prepare_data(args: argparse.Namespace, tmp: Path) -> tuple[Path | None, str]:
    """``(generated dataset folder or None, description)``: the DATA_DIRs, or a dataset generated into ``tmp``."""
    if args.data_dirs:
        return None, ", ".join(map(str, args.data_dirs)) + (f" (classes: {', '.join(args.only)})" if args.only else "")
    from snapkit.eval.synth import make_dataset

    per_class = args.clips or max(args.shots) + GENERATED_TEST_CLIPS
    data = tmp / "data"
    make_dataset(
        data, classes=tuple(args.classes), clips_per_class=per_class, background_clips=per_class, seed=args.seed
    )
    note = (
        f"generated by snapkit.eval.synth.make_dataset (seed {args.seed}): {len(args.classes)} sound classes "
        f"({', '.join(args.classes)}) + background, {per_class} clips of {CLIP_S:g} s each"
    )
    return data, note


def embed_all(
    weights: Mapping[str, Path | None], clips: Mapping[str, Sequence[Path]]
) -> tuple[dict[str, dict[Path, np.ndarray]], dict[str, float]]:
    """Clip embeddings of every clip per frozen backbone, and the seconds each backbone took."""
    paths = [p for label_paths in clips.values() for p in label_paths]
    embeddings: dict[str, dict[Path, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for name, path in weights.items():
        if name == CONVNET or path is None:
            continue
        start = time.perf_counter()
        embeddings[name] = clip_embeddings(name, path, paths)
        seconds[name] = time.perf_counter() - start
        print(f"embedded {len(paths)} clips with {name} in {seconds[name]:.1f} s", flush=True)
    return embeddings, seconds


def describe_run(
    args: argparse.Namespace,
    command: str,
    data_note: str,
    clips: Mapping[str, Sequence[Path]],
    methods: Sequence[Method],
    notes: Sequence[str],
    embed_s: Mapping[str, float],
) -> dict[str, object]:
    """What the results page says about the run: command, machine, data, protocol, reference method, notes."""
    n_targets = len([c for c in clips if c != BACKGROUND_LABEL])
    n_ways = check_shots(clips, args.shots[0], args.ways)
    protocol = (
        f"{n_ways}-way (of {n_targets} target classes)"
        + (" + background" if BACKGROUND_LABEL in clips else ", no background class")
        + f", K in {args.shots}, {args.episodes} episodes per K (seed {args.seed}); K clips per outcome to train"
        ", all other clips of the episode's outcomes to test"
    )
    snapkit_note = (
        "trained as `snapkit train` does (k-fold CV where the library uses it, calibrated thresholds)"
        if args.with_cv
        else "final model only (no cross-validation), default 0.5 thresholds"
    )
    embedding_times = ", ".join(f"{n} {s:.1f} s for all clips once" for n, s in embed_s.items()) or "none"
    counts = ", ".join(f"{label} {len(paths)}" for label, paths in clips.items())
    return {
        "command": command,
        "machine": machine_info(),
        "date": datetime.now().isoformat(timespec="seconds"),
        "data": f"{data_note}; clips per class: {counts}",
        "protocol": protocol,
        "reference": next((m.name for m in methods if m.kind == "logreg"), methods[0].name),
        "notes": [
            *notes,
            f"snapkit models: {snapkit_note}; pooling {args.pooling or 'library default'}; test clips labelled with"
            " snapkit.models.predict (clip_probabilities + decide).",
            "Baselines: embedding of the whole clip; logistic regression (C = 1) and nearest class"
            " mean (Euclidean) on embeddings standardised with the episode's training clips. Their train s excludes"
            f" embedding: {embedding_times}.",
            "95 % intervals: Student t over episodes (episodes share clips, so somewhat optimistic).",
            "Macro F1 averages over the outcomes present in an episode's test clips. 'labelled background': share"
            f" of test clips a method called background (the true share is {background_share(clips, args):.2f} on"
            " average); snapkit models say background unless a class clears its threshold.",
        ],
        "methods": [dataclasses.asdict(m) for m in methods],
    }


def background_share(clips: Mapping[str, Sequence[Path]], args: argparse.Namespace) -> float:
    """Mean share of background clips among the test clips of the planned episodes."""
    shares = []
    for k in args.shots:
        for e in range(args.episodes):
            labels = [
                label
                for _, label in sample_episode(
                    clips, k, e, ways=args.ways, seed=args.seed, groups=args.groups
                ).test_items()
            ]
            shares.append(np.mean([label == BACKGROUND_LABEL for label in labels]))
    return float(np.mean(shares))


def write_json(
    path: Path, header: Mapping[str, object], runs: Sequence[Run], methods: Sequence[Method], shots: Sequence[int]
) -> None:
    """Header, summary, paired differences and every run as JSON (rewritten after every run: nothing is lost)."""
    payload = {
        **header,
        "summary": summarise(runs, methods, shots),
        "paired_accuracy_differences": paired_differences(runs, str(header["reference"]), shots),
        "runs": [dataclasses.asdict(r) for r in runs],
    }
    path.write_text(json.dumps(payload, indent=2, default=str))


def run(args: argparse.Namespace) -> None:
    """The whole experiment: check, embed, run the episodes, write fewshot.md/.json/.png into ``args.out``."""
    command = " ".join(
        [f"{k}={shlex.quote(os.environ[k])}" for k in ("SNAPKIT_WEIGHTS_DIR",) if k in os.environ]
        + ["python", *map(shlex.quote, sys.argv)]
    )
    print(f"$ {command}\nmachine: {machine_info()}", flush=True)
    weights, notes = available_weights(args.backbones)
    for note in notes:
        print(f"note: {note}", flush=True)
    if not weights:
        raise SnapkitError("No method can run: none of --backbones is usable; add convnet or set SNAPKIT_WEIGHTS_DIR.")
    methods = make_methods(list(weights), args.heads, args.mlp_hidden)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="snapkit-fewshot-data-") as tmp:
        data, data_note = prepare_data(args, Path(tmp))
        if data is None:
            clips, groups = load_sets(args)
            args.groups = groups if len(set(groups.values())) < len(groups) else None
        else:
            clips, args.groups = clips_by_class(data), None
        for k in args.shots:  # every K checked before anything slow happens
            check_shots(clips, k, args.ways)
        print(f"data: {data_note}\nclips per class: " + ", ".join(f"{c} {len(p)}" for c, p in clips.items()))
        print("methods: " + "; ".join(m.name for m in methods), flush=True)
        embeddings, embed_s = embed_all(weights, clips)
        header = describe_run(args, command, data_note, clips, methods, notes, embed_s)
        json_path = args.out / "fewshot.json"
        runs = run_all(
            clips,
            methods,
            weights,
            embeddings,
            args,
            lambda done: write_json(json_path, header, done, methods, args.shots),
        )
    if not runs:
        print("No run finished; nothing to write.")
        return
    planned = len(args.shots) * args.episodes * len(methods)
    if len(runs) < planned:
        header["notes"] = [*header["notes"], f"Interrupted: {len(runs)} of {planned} runs finished."]  # type: ignore[misc]
    write_json(json_path, header, runs, methods, args.shots)
    rows = summarise(runs, methods, args.shots)
    write_markdown(
        args.out / "fewshot.md", header, rows, paired_differences(runs, str(header["reference"]), args.shots)
    )
    write_plot(args.out / "fewshot.png", rows, methods, f"{header['protocol']}".split(";")[0])
    print((args.out / "fewshot.md").read_text())
    print(f"wrote {args.out / 'fewshot.md'}, fewshot.json, fewshot.png")


if __name__ == "__main__":
    main()
