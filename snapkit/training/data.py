"""From class folders to training batches: checks, loading, splits, class-balanced sampling, waveform datasets.

No background class
-------------------
``background`` means "nothing to report". A dataset without it can still train when it has two or more sound
classes, but then nothing would ever teach the model what an ordinary moment sounds like, and every noise would
look like one of the sounds. So :func:`check_trainable` warns, and :func:`load_clipset` adds generated stand-in
background clips (pink and white noise at the level of the recorded clips' quiet parts), which are both the
negative class and the noise mixed into views. They are a poor likeness of a real room; the warning says to record
one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import WeightedRandomSampler, get_worker_info

from snapkit.audio.io import load_audio
from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL
from snapkit.dataset.scan import Dataset
from snapkit.errors import AudioFileError, DatasetError
from snapkit.progress import progress_bar
from snapkit.training.augment import AugmentConfig, augment_waveform, fit_to_length, generate_noise, noise_floor_rms

# Loading fewer files than this is quick enough that a progress bar would only flash.
_PROGRESS_MIN_FILES = 50
# Stand-in background: as many clips as a typical class, within these bounds; level spread around the floor.
_STAND_IN_CLIPS = (5, 20)
_STAND_IN_LEVEL_SPREAD_DB = 6.0
# Level of stand-in noise when the recorded clips have a digitally silent floor (synthetic or gated audio).
_STAND_IN_FALLBACK_DBFS = -60.0


@dataclass
class ClipSet:
    """Clips loaded into memory for training, in a fixed order.

    Attributes:
        paths: one a clip; stand-in clips (see ``generated``) have a descriptive non-file path.
        labels: one a clip, background included.
        waveforms: one a clip, float32 ``[samples]`` at ``sample_rate_hz`` (lengths may differ).
        sample_rate_hz: rate of every waveform.
        classes: target classes, sorted: every label except ``background_label``.
        background_label: the "nothing to report" label; its rows of :meth:`targets` are all zero.
        generated: one a clip, True for stand-in background noise made by snapkit (no file).
        skipped: messages for files that failed to load here although the scan had read them.
    """

    paths: list[Path]
    labels: list[str]
    waveforms: list[np.ndarray]
    sample_rate_hz: int
    classes: tuple[str, ...]
    background_label: str = DEFAULT_BACKGROUND_LABEL
    generated: list[bool] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.generated:
            self.generated = [False] * len(self.paths)
        if not len(self.paths) == len(self.labels) == len(self.waveforms) == len(self.generated):
            raise ValueError("ClipSet needs one path, label, waveform and generated flag per clip.")

    def __len__(self) -> int:
        return len(self.paths)

    def targets(self) -> np.ndarray:
        """Multi-hot targets ``[clips, classes]`` float32; background (and unknown labels) rows are all zero."""
        out = np.zeros((len(self), len(self.classes)), dtype=np.float32)
        column = {label: i for i, label in enumerate(self.classes)}
        for row, label in enumerate(self.labels):
            if label in column:
                out[row, column[label]] = 1.0
        return out

    def subset(self, indices: Sequence[int] | np.ndarray) -> ClipSet:
        """The clips at ``indices`` (same waveform arrays, not copies); ``classes`` is kept as is."""
        idx = [int(i) for i in indices]
        return ClipSet(
            paths=[self.paths[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            waveforms=[self.waveforms[i] for i in idx],
            sample_rate_hz=self.sample_rate_hz,
            classes=self.classes,
            background_label=self.background_label,
            generated=[self.generated[i] for i in idx],
        )

    def background_indices(self) -> list[int]:
        return [i for i, label in enumerate(self.labels) if label == self.background_label]

    def backgrounds(self, exclude: int | None = None) -> list[np.ndarray]:
        """Waveforms of the background clips, leaving out clip ``exclude`` (a clip is never mixed with itself)."""
        return [self.waveforms[i] for i in self.background_indices() if i != exclude]

    def counts(self) -> dict[str, int]:
        """Clips per label, background included."""
        return dict(Counter(self.labels))


# ----------------------------------------------------------------------------------------------------
# Checks and loading


def check_trainable(dataset: Dataset) -> list[str]:
    """Warnings about ``dataset`` as a training set; raises ``DatasetError`` when it cannot be trained on.

    Errors: no readable clip; no sound class (only background); a single sound class and no background (nothing
    to tell it apart from). Warnings: a class folder without readable clips (left out), a class with one clip
    (used, but cross-validation needs two), no background class (generated noise stands in, see module docs).
    """
    root, background = dataset.root, dataset.background_label
    readable = dataset.readable
    if not dataset.clips:
        raise DatasetError(
            f"{root} holds no audio clips; record some with `snapkit record LABEL` (one folder per sound) "
            f"and `snapkit record {background}`."
        )
    if not readable:
        raise DatasetError(
            f"None of the {len(dataset.clips)} audio files in {root} can be read; run `snapkit data` to see why, "
            "then fix or delete them."
        )
    counts = Counter(clip.label for clip in readable)
    targets = sorted(label for label in counts if label != background)
    has_background = background in counts
    if not targets:
        raise DatasetError(
            f"{root} holds only {background!r} clips; record at least one sound to recognise with "
            "`snapkit record LABEL`."
        )
    if len(targets) == 1 and not has_background:
        raise DatasetError(
            f"{root} holds one class ({targets[0]!r}) and no {background!r} class, so there is nothing to tell it "
            f"apart from; record your room's ordinary sound with `snapkit record {background}` (or a second sound)."
        )
    warnings: list[str] = [f"skipped: {clip.error}" for clip in dataset.clips if clip.error is not None]
    unusable = set(dataset.empty_classes) | ({clip.label for clip in dataset.clips} - set(counts))
    for label in sorted(unusable):
        warnings.append(
            f"class {label!r} ({root / label}) has no readable clips and is left out; record some or remove it."
        )
    for label in sorted(counts):
        if counts[label] == 1:
            warnings.append(
                f"class {label!r} has a single clip: it is trained on, but cross-validation needs at least 2; "
                f"record more with `snapkit record {label}`."
            )
    if not has_background:
        warnings.append(
            f"no {background!r} class in {root}: generated noise stands in for 'nothing to report'; record your "
            f"room's ordinary sound with `snapkit record {background}` so the model learns what to ignore."
        )
    return warnings


def load_clipset(
    dataset: Dataset,
    sample_rate_hz: int,
    *,
    progress: bool = True,
    stand_in_background: bool = True,
    seed: int = 0,
) -> ClipSet:
    """Every readable clip of ``dataset``, resampled to ``sample_rate_hz``, in scan order.

    Clips the scan found unreadable are skipped (the caller has reported them); a file that fails now is skipped
    with its message in ``ClipSet.skipped``. Without a background class and with ``stand_in_background``,
    generated noise clips are added as background (:func:`add_stand_in_background`, seeded by ``seed``).
    A rich progress bar is drawn when ``progress`` and there are many files.
    """
    readable = dataset.readable
    paths: list[Path] = []
    labels: list[str] = []
    waveforms: list[np.ndarray] = []
    skipped: list[str] = []
    with progress_bar("Loading clips", len(readable), progress and len(readable) >= _PROGRESS_MIN_FILES) as advance:
        for clip in readable:
            try:
                audio, _ = load_audio(clip.path, sample_rate_hz)
            except AudioFileError as err:
                skipped.append(str(err))
            else:
                paths.append(clip.path)
                labels.append(clip.label)
                waveforms.append(audio)
            advance(1)
    background = dataset.background_label
    clipset = ClipSet(
        paths=paths,
        labels=labels,
        waveforms=waveforms,
        sample_rate_hz=sample_rate_hz,
        classes=tuple(sorted({label for label in labels if label != background})),
        background_label=background,
        skipped=skipped,
    )
    if stand_in_background and clipset.classes and background not in labels:
        clipset = add_stand_in_background(clipset, seed=seed)
    return clipset


def add_stand_in_background(clipset: ClipSet, *, count: int | None = None, seed: int = 0) -> ClipSet:
    """``clipset`` plus ``count`` generated background clips (alternately pink and white noise).

    Each is as long as the median clip, at the median noise floor of the recorded clips (their quietest 10 ms
    frames) give or take 6 dB, so "nothing" sounds like the quiet between sounds. ``count`` defaults to the
    median class size, kept within 5-20.
    """
    if count is None:
        sizes = list(Counter(clipset.labels).values()) or [0]
        count = int(np.clip(round(float(np.median(sizes))), *_STAND_IN_CLIPS))
    rate = clipset.sample_rate_hz
    lengths = [len(w) for w in clipset.waveforms] or [rate]
    length = int(np.median(lengths))
    floors = [noise_floor_rms(w, rate) for w in clipset.waveforms]
    floor = float(np.median(floors)) if floors else 0.0
    if floor <= 0:
        floor = 10 ** (_STAND_IN_FALLBACK_DBFS / 20)
    paths, waveforms = list(clipset.paths), list(clipset.waveforms)
    for k in range(count):
        rng = np.random.default_rng([seed, k])
        color = "pink" if k % 2 == 0 else "white"
        level = floor * 10 ** (rng.uniform(-_STAND_IN_LEVEL_SPREAD_DB, _STAND_IN_LEVEL_SPREAD_DB) / 20)
        waveforms.append(generate_noise(rng, length, color) * np.float32(level))
        paths.append(Path(f"<generated {color} noise {k + 1}>"))
    return ClipSet(
        paths=paths,
        labels=list(clipset.labels) + [clipset.background_label] * count,
        waveforms=waveforms,
        sample_rate_hz=rate,
        classes=clipset.classes,
        background_label=clipset.background_label,
        generated=list(clipset.generated) + [True] * count,
        skipped=list(clipset.skipped),
    )


# ----------------------------------------------------------------------------------------------------
# Datasets and sampling


class WaveformDataset(TorchDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Items ``(waveform [clip_samples] float32, target [classes] float32)`` for training on raw audio.

    ``train=True`` gives a fresh :func:`augment_waveform` view at every access; its generator is seeded from
    ``(seed, epoch, index, worker id, how often this index was drawn)``, so a run is reproducible for a given seed
    and number of loader workers, and a clip drawn twice in an epoch (class-balanced sampling draws small classes
    several times) gets two different views. Call :meth:`set_epoch` at the start of every epoch.
    ``train=False`` gives the deterministic loudest window (:func:`fit_to_length`).

    Args:
        clipset: the clips.
        clip_samples: window length the model takes.
        train: augment or not.
        augment: augmentation settings (defaults to ``AugmentConfig()``).
        backgrounds: clips to mix in; by default the background clips of ``clipset``. A clip is never mixed with
            itself either way.
        seed: base seed.
    """

    def __init__(
        self,
        clipset: ClipSet,
        clip_samples: int,
        *,
        train: bool,
        augment: AugmentConfig | None = None,
        backgrounds: Sequence[np.ndarray] | None = None,
        seed: int = 0,
    ) -> None:
        self.clipset = clipset
        self.clip_samples = clip_samples
        self.train = train
        self.augment = augment or AugmentConfig()
        self.backgrounds = list(backgrounds) if backgrounds is not None else None
        self.seed = seed
        self.epoch = 0
        self._targets = torch.from_numpy(clipset.targets())
        self._draws: Counter[int] = Counter()

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch``: the views drawn from now on depend on it."""
        self.epoch = epoch
        self._draws.clear()

    def __len__(self) -> int:
        return len(self.clipset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        wave = self.clipset.waveforms[index]
        if self.train and self.augment.enabled:
            worker = get_worker_info()
            draw = self._draws[index]
            self._draws[index] += 1
            rng = np.random.default_rng([self.seed, self.epoch, index, worker.id if worker else 0, draw])
            pool = self.backgrounds if self.backgrounds is not None else self.clipset.backgrounds(exclude=index)
            out = augment_waveform(
                wave, rng, self.augment, self.clip_samples, pool, sample_rate_hz=self.clipset.sample_rate_hz
            )
        else:
            out = fit_to_length(wave, self.clip_samples)
        return torch.from_numpy(out), self._targets[index]


def balanced_sampler(labels: Sequence[str], num_samples: int, seed: int) -> WeightedRandomSampler:
    """Draws ``num_samples`` indices (with replacement) so that every label, background included, comes up equally
    often whatever its clip count. Seeded: the same seed gives the same sequence of epochs."""
    if not len(labels):
        raise ValueError("balanced_sampler needs at least one label.")
    counts = Counter(labels)
    weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, num_samples, replacement=True, generator=generator)


def stratified_folds(labels: Sequence[str] | np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k``-fold cross-validation splits ``[(train_idx, test_idx), ...]`` that keep every class in every fold.

    ``k`` is capped by the smallest class that has at least two clips (and is at least 2), so each such class has
    a clip in every test fold. A class with a single clip is tested in one fold only (and cannot be learnt
    there). Every clip is in exactly one test fold; each class is shuffled with ``seed`` and dealt round the folds,
    each class starting where the previous one stopped, so folds stay the same size.
    """
    labels = np.asarray(labels)
    if len(labels) < 2:
        raise ValueError("Cross-validation needs at least two clips.")
    counts = Counter(labels.tolist())
    several = [n for n in counts.values() if n >= 2]
    k = max(2, min(k, min(several) if several else 2, len(labels)))
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    next_fold = 0
    for label in sorted(counts):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        fold_of[members] = (next_fold + np.arange(len(members))) % k
        next_fold = (next_fold + len(members)) % k
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


def stratified_split(
    labels: Sequence[str] | np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)`` holding out about ``val_fraction`` of every class (sorted indices).

    A class with two or more clips gives at least one and keeps at least one for training; a single-clip class
    stays in training.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        n = len(members)
        n_val = 0 if n < 2 or val_fraction == 0 else min(n - 1, max(1, round(n * val_fraction)))
        held.append(members[:n_val])
    val = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val
