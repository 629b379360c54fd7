"""Augmentation, clip loading, checks, splits, balanced sampling and the embedding cache, on seeded test audio."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from snapkit.dataset.scan import scan_dataset
from snapkit.errors import DatasetError
from snapkit.features.config import SNAPKIT
from snapkit.files import CACHE_DIR_ENV
from snapkit.training.augment import (
    AugmentConfig,
    SpecAugment,
    active_power,
    augment_waveform,
    fit_to_length,
    generate_noise,
    loudest_offset,
)
from snapkit.training.cache import (
    EmbeddingCache,
    FeatureDataset,
    compute_views,
    default_cache_root,
)
from snapkit.training.data import (
    ClipSet,
    WaveformDataset,
    balanced_sampler,
    check_trainable,
    load_clipset,
    stratified_folds,
    stratified_split,
)

RATE = 8_000
CLIP_S = 0.5
CLIP_SAMPLES = round(RATE * CLIP_S)


def snap_clip(rng: np.random.Generator, seconds: float = 2.0, at_s: float = 1.0, rate: int = RATE) -> np.ndarray:
    """Quiet noise floor (about -60 dBFS) with a 50 ms noise burst (peak about 0.5) at ``at_s``."""
    clip = (generate_noise(rng, round(seconds * rate), "pink") * 1e-3).astype(np.float32)
    start, length = round(at_s * rate), round(0.05 * rate)
    clip[start : start + length] += 0.2 * rng.standard_normal(length).astype(np.float32)
    return clip


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, subtype="PCM_16")
    return path


def make_data(root: Path, counts: dict[str, int], seed: int = 0, seconds: float = 1.0) -> Path:
    """``root/<label>/<label>-<i>.wav``: bursts at label-dependent places, pink noise for background."""
    rng = np.random.default_rng(seed)
    for j, (label, count) in enumerate(sorted(counts.items())):
        for i in range(count):
            if label == "background":
                audio = generate_noise(rng, round(seconds * RATE), "pink") * 0.01
            else:
                audio = snap_clip(rng, seconds, at_s=0.1 + 0.15 * j)
            write_wav(root / label / f"{label}-{i}.wav", audio)
    return root


# ----------------------------------------------------------------------------------------------------
# Waveform augmentation


@pytest.mark.parametrize("seconds", [0.3, CLIP_S, 2.0])
def test_augmentation_keeps_length_and_dtype_and_is_seeded(seconds: float) -> None:
    rng = np.random.default_rng(1)
    clip = snap_clip(rng, seconds, at_s=seconds / 3)
    backgrounds = [generate_noise(rng, 3 * RATE) * 0.01]
    cfg = AugmentConfig(mix_background_prob=0.5)

    def view(seed: int) -> np.ndarray:
        return augment_waveform(clip, np.random.default_rng(seed), cfg, CLIP_SAMPLES, backgrounds, sample_rate_hz=RATE)

    first = view(7)
    assert first.shape == (CLIP_SAMPLES,) and first.dtype == np.float32
    assert np.array_equal(first, view(7))
    assert not np.array_equal(first, view(8))
    assert np.max(np.abs(first)) <= 1.0
    off = augment_waveform(
        clip, np.random.default_rng(7), AugmentConfig(enabled=False), CLIP_SAMPLES, backgrounds, sample_rate_hz=RATE
    )
    assert np.array_equal(off, fit_to_length(clip, CLIP_SAMPLES))


def test_time_shift_keeps_the_sound_whole() -> None:
    clip = snap_clip(np.random.default_rng(2), seconds=CLIP_S, at_s=0.2)
    cfg = AugmentConfig(gain_db=(0.0, 0.0), mix_background_prob=0.0)
    peak_energy = float(np.sum(clip.astype(np.float64) ** 2))
    starts = []
    for seed in range(30):
        out = augment_waveform(clip, np.random.default_rng(seed), cfg, CLIP_SAMPLES, [], sample_rate_hz=RATE)
        assert float(np.sum(out.astype(np.float64) ** 2)) == pytest.approx(peak_energy, rel=0.02)
        starts.append(int(np.argmax(np.abs(out) > 0.05)))
    assert max(starts) - min(starts) > 0.2 * RATE  # the burst really moves about


def test_gain_stays_in_range() -> None:
    clip = (0.1 * np.sin(2 * np.pi * 440 * np.arange(CLIP_SAMPLES) / RATE)).astype(np.float32)
    cfg = AugmentConfig(time_shift=False, gain_db=(-6.0, 6.0), mix_background_prob=0.0)
    gains = []
    for seed in range(200):
        out = augment_waveform(clip, np.random.default_rng(seed), cfg, CLIP_SAMPLES, [], sample_rate_hz=RATE)
        ratio = float(np.dot(out, clip) / np.dot(clip, clip))
        assert np.allclose(out, ratio * clip, atol=1e-6)
        gains.append(20 * np.log10(ratio))
    assert -6.0 - 1e-4 <= min(gains) < -5.0 and 5.0 < max(gains) <= 6.0 + 1e-4


@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_background_mix_hits_the_snr_on_the_active_part(snr_db: float) -> None:
    rng = np.random.default_rng(3)
    clip = snap_clip(rng, seconds=CLIP_S, at_s=0.2)
    background = generate_noise(rng, 2 * RATE, "white") * 0.05
    cfg = AugmentConfig(time_shift=False, gain_db=(0.0, 0.0), mix_background_prob=1.0, mix_snr_db=(snr_db, snr_db))
    out = augment_waveform(clip, rng, cfg, CLIP_SAMPLES, [background], sample_rate_hz=RATE)
    added = out.astype(np.float64) - clip
    measured = 10 * np.log10(active_power(clip, RATE) / np.mean(added**2))
    assert measured == pytest.approx(snr_db, abs=0.05)
    whole_clip = 10 * np.log10(np.mean(clip.astype(np.float64) ** 2) / np.mean(added**2))
    assert whole_clip < snr_db - 8  # a short snap: the whole-clip SNR would have buried it


def test_active_power_matches_synth() -> None:
    synth = pytest.importorskip("snapkit.eval.synth")
    clip = snap_clip(np.random.default_rng(4), seconds=1.3, at_s=0.6)
    assert active_power(clip, RATE) == pytest.approx(synth.active_power(clip, RATE), rel=1e-9)


def test_a_background_clip_is_never_mixed_with_itself() -> None:
    # A DC "background": mixed with itself, the added part would be constant.
    clip = np.full(CLIP_SAMPLES, 0.1, dtype=np.float32)
    other = (0.05 * np.sin(2 * np.pi * 300 * np.arange(CLIP_SAMPLES) / RATE)).astype(np.float32)
    cfg = AugmentConfig(time_shift=False, gain_db=(0.0, 0.0), mix_background_prob=1.0)
    for pool in ([clip], [clip, other]):
        for seed in range(10):
            out = augment_waveform(clip, np.random.default_rng(seed), cfg, CLIP_SAMPLES, pool, sample_rate_hz=RATE)
            assert np.std(out - clip) > 1e-4


def test_fit_to_length_picks_the_loudest_window() -> None:
    clip = snap_clip(np.random.default_rng(5), seconds=3.0, at_s=2.3)
    window = RATE  # 1 s
    out = fit_to_length(clip, window)
    start = loudest_offset(clip, window)
    assert np.array_equal(out, clip[start : start + window])
    burst = slice(round(2.3 * RATE), round(2.35 * RATE))
    assert start <= burst.start and burst.stop <= start + window
    assert abs((start + window / 2) - 2.325 * RATE) < 0.1 * RATE  # the burst lands near the middle
    energies = [np.sum(clip[s : s + window].astype(np.float64) ** 2) for s in range(0, len(clip) - window, 80)]
    assert np.sum(out.astype(np.float64) ** 2) >= 0.95 * max(energies)
    short = fit_to_length(np.ones(100, np.float32), 400)
    assert short.shape == (400,) and np.flatnonzero(short)[[0, -1]].tolist() == [150, 249]
    assert np.flatnonzero(fit_to_length(np.ones(100, np.float32), 400, offset=10))[0] == 10
    assert np.array_equal(fit_to_length(clip, window, offset=0), clip[:window])


# ----------------------------------------------------------------------------------------------------
# SpecAugment


def _runs(flags: np.ndarray) -> list[int]:
    """Lengths of the runs of True in ``flags``."""
    edges = np.diff(np.concatenate(([0], flags.astype(int), [0])))
    return (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).tolist()


def test_spec_augment_masks_in_training_only_with_the_right_widths() -> None:
    features = torch.randn(64, 100, 40)
    spec = SpecAugment(freq_masks=1, freq_width=8, time_masks=1, time_width_frac=0.1)
    assert spec.eval()(features) is features
    spec.train()
    out = spec(features, generator=torch.Generator().manual_seed(0))
    again = spec(features, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again) and out.shape == features.shape
    means = features.mean(dim=(1, 2))
    band_runs, span_runs = [], []
    for b in range(len(features)):
        changed = (out[b] != features[b]).numpy()
        assert torch.all(out[b][torch.from_numpy(changed)] == means[b])
        band_runs += _runs(changed.all(axis=0))
        span_runs += _runs(changed.all(axis=1))
    assert band_runs and max(band_runs) <= 8 and max(band_runs) >= 6
    assert span_runs and max(span_runs) <= 10 and max(span_runs) >= 8
    two = SpecAugment(2, 8, 2, 0.05).train()(features, generator=torch.Generator().manual_seed(1))
    for b in range(len(features)):
        changed = (two[b] != features[b]).numpy()
        assert changed.all(axis=0).sum() <= 16 and len(_runs(changed.all(axis=0))) <= 2
        assert changed.all(axis=1).sum() <= 10 and len(_runs(changed.all(axis=1))) <= 2


def test_augment_config_round_trips_and_describes_itself() -> None:
    cfg = AugmentConfig(gain_db=(-3.0, 3.0), views_per_clip=4)
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    text = " ".join(cfg.describe())
    assert "dB" in text and "4 cached views" in text
    assert AugmentConfig(enabled=False).describe() == ["off (every clip used as recorded)"]
    off = SpecAugment.from_config(AugmentConfig(enabled=False)).train()
    features = torch.randn(2, 10, 8)
    assert torch.equal(off(features), features)


# ----------------------------------------------------------------------------------------------------
# Clip sets, checks, splits, sampling


def _clipset(labels: list[str]) -> ClipSet:
    rng = np.random.default_rng(0)
    return ClipSet(
        paths=[Path(f"{label}-{i}.wav") for i, label in enumerate(labels)],
        labels=labels,
        waveforms=[snap_clip(rng, CLIP_S, 0.2) for _ in labels],
        sample_rate_hz=RATE,
        classes=tuple(sorted(set(labels) - {"background"})),
    )


def test_clipset_targets_and_subset() -> None:
    clips = _clipset(["snap", "background", "knock", "snap"])
    assert clips.classes == ("knock", "snap")
    assert clips.targets().tolist() == [[0, 1], [0, 0], [1, 0], [0, 1]]
    assert clips.targets().dtype == np.float32
    sub = clips.subset([1, 2])
    assert sub.classes == clips.classes and sub.labels == ["background", "knock"]
    assert sub.waveforms[0] is clips.waveforms[1]
    assert len(clips.backgrounds()) == 1 and clips.backgrounds(exclude=1) == []


def test_stratified_folds_cover_every_clip_once_and_keep_classes() -> None:
    labels = np.array(["a"] * 7 + ["b"] * 5 + ["background"] * 9)
    folds = stratified_folds(labels, 5, seed=0)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(labels)))
    for train, test in folds:
        assert not set(train) & set(test) and len(train) + len(test) == len(labels)
        assert set(labels[test]) == set(labels) and set(labels[train]) == set(labels)
    sizes = [len(test) for _, test in folds]
    assert max(sizes) - min(sizes) <= 1
    assert len(stratified_folds(["a"] * 3 + ["b"] * 10, 5, seed=0)) == 3  # capped by the smallest class
    with_single = stratified_folds(["a"] * 4 + ["b"] * 4 + ["c"], 4, seed=0)
    assert len(with_single) == 4 and sorted(np.concatenate([t for _, t in with_single]).tolist()) == list(range(9))
    same_seed = [[t.tolist() for _, t in stratified_folds(labels, 5, seed=3)] for _ in range(2)]
    assert same_seed[0] == same_seed[1]


def test_stratified_split_holds_out_each_class() -> None:
    labels = np.array(["a"] * 10 + ["b"] * 3 + ["c"])
    train, val = stratified_split(labels, 0.2, seed=0)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(labels)))
    assert Counter(labels[val].tolist()) == {"a": 2, "b": 1}
    assert "c" in set(labels[train])


def test_balanced_sampler_draws_classes_equally() -> None:
    labels = ["a"] * 2 + ["b"] * 10 + ["background"] * 30
    sampler = balanced_sampler(labels, num_samples=10_000, seed=0)
    draws = Counter(labels[i] for i in sampler)
    expected = 10_000 / 3
    chi_square = sum((n - expected) ** 2 / expected for n in draws.values())
    assert set(draws) == {"a", "b", "background"}
    assert chi_square < 13.8  # 2 degrees of freedom, p = 0.001
    assert list(balanced_sampler(labels, 50, seed=1)) == list(balanced_sampler(labels, 50, seed=1))


def test_check_trainable_errors_and_warnings(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="holds no audio clips") as err:
        check_trainable(scan_dataset(empty))
    assert str(empty) in str(err.value) and str(err.value).endswith(".")

    single = make_data(tmp_path / "single", {"snap": 3})
    with pytest.raises(DatasetError, match="nothing to tell it apart"):
        check_trainable(scan_dataset(single))

    only_background = make_data(tmp_path / "bg", {"background": 3})
    with pytest.raises(DatasetError, match="only 'background'"):
        check_trainable(scan_dataset(only_background))

    unreadable = tmp_path / "bad"
    (unreadable / "snap").mkdir(parents=True)
    (unreadable / "snap" / "x.wav").write_bytes(b"not audio")
    with pytest.raises(DatasetError, match="can be read"):
        check_trainable(scan_dataset(unreadable))

    assert check_trainable(scan_dataset(make_data(tmp_path / "ok", {"snap": 3, "background": 3}))) == []

    root = make_data(tmp_path / "warn", {"snap": 1, "knock": 3})
    (root / "empty_class").mkdir()
    warnings = check_trainable(scan_dataset(root))
    assert any("'snap' has a single clip" in w and "cross-validation" in w for w in warnings)
    assert any("'empty_class'" in w and "left out" in w for w in warnings)
    assert any("no 'background' class" in w and "generated noise" in w for w in warnings)


def test_load_clipset_resamples_skips_unreadable_and_stands_in_for_background(tmp_path: Path) -> None:
    root = make_data(tmp_path / "data", {"snap": 3, "knock": 2})
    write_wav(root / "knock" / "fast.wav", snap_clip(np.random.default_rng(9), 1.0, 0.5, rate=16_000), 16_000)
    (root / "knock" / "broken.wav").write_bytes(b"RIFF nonsense")
    clips = load_clipset(scan_dataset(root), RATE, progress=False)
    real = [i for i, g in enumerate(clips.generated) if not g]
    assert len(real) == 6 and all(len(clips.waveforms[i]) == RATE for i in real)
    assert clips.classes == ("knock", "snap")
    stand_ins = [i for i, g in enumerate(clips.generated) if g]
    assert len(stand_ins) == 5 and {clips.labels[i] for i in stand_ins} == {"background"}
    assert all(w.dtype == np.float32 for w in clips.waveforms)
    assert not clips.targets()[stand_ins].any()
    plain = load_clipset(scan_dataset(root), RATE, progress=False, stand_in_background=False)
    assert "background" not in plain.labels


def test_waveform_dataset_is_reproducible_and_varies_repeat_draws() -> None:
    clips = _clipset(["snap", "snap", "background", "knock"])
    cfg = AugmentConfig()
    a = WaveformDataset(clips, CLIP_SAMPLES, train=True, augment=cfg, seed=3)
    b = WaveformDataset(clips, CLIP_SAMPLES, train=True, augment=cfg, seed=3)
    first, target = a[0]
    assert first.shape == (CLIP_SAMPLES,) and first.dtype == torch.float32 and target.tolist() == [0.0, 1.0]
    assert torch.equal(first, b[0][0])
    assert not torch.equal(a[0][0], first)  # second draw of the same clip, another view
    a.set_epoch(1)
    assert not torch.equal(a[0][0], first)
    evaluation = WaveformDataset(clips, CLIP_SAMPLES, train=False)
    assert np.array_equal(evaluation[2][0].numpy(), fit_to_length(clips.waveforms[2], CLIP_SAMPLES))
    assert evaluation[2][1].tolist() == [0.0, 0.0]


# ----------------------------------------------------------------------------------------------------
# Embedding cache


class CountingFeatures:
    """Stand-in backbone: log power in 4 bands of 50 ms frames, ``[batch, samples] -> [batch, frames, 4]``."""

    def __init__(self) -> None:
        self.calls = 0
        self.waveforms = 0

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.waveforms += waveform.shape[0]
        frames = waveform.unfold(1, 400, 400)  # [batch, frames, 400]
        power = torch.fft.rfft(frames).abs().square()
        bands = torch.stack([band.mean(-1) for band in power.tensor_split(4, dim=-1)], dim=-1)
        return torch.log10(bands + 1e-10)


def _embed(root: Path, cache_root: Path, cfg: AugmentConfig, views: int = 4) -> tuple[list[torch.Tensor], object, int]:
    clips = load_clipset(scan_dataset(root), RATE, progress=False)
    features = CountingFeatures()
    cache = EmbeddingCache(cache_root, "fake", SNAPKIT, cfg, CLIP_SAMPLES)
    out, _, stats = compute_views(clips, features, cache, views_per_clip=views, seed=0, batch_size=5, progress=False)
    return [torch.from_numpy(v.features) for v in out], stats, features.waveforms


def test_embedding_cache_hits_misses_and_content_keys(tmp_path: Path) -> None:
    root = make_data(tmp_path / "data", {"snap": 3, "knock": 2, "background": 2})
    cache_root = tmp_path / "cache"
    cfg = AugmentConfig()

    first, stats, embedded = _embed(root, cache_root, cfg)
    assert (stats.hits, stats.misses) == (0, 7) and embedded == 7 * 4
    assert str(stats) == "embedded 7 new clips, 0 from cache"
    assert all(v.shape == (4, CLIP_SAMPLES // 400, 4) and v.dtype == torch.float32 for v in first)
    assert len(list(cache_root.glob("fake/*/*.npz"))) == 7

    second, stats, embedded = _embed(root, cache_root, cfg)
    assert (stats.hits, stats.misses, embedded) == (7, 0, 0)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))

    fresh, _, _ = _embed(root, tmp_path / "other-cache", cfg)  # the same views are recomputed identically
    assert all(torch.equal(a, b) for a, b in zip(first, fresh, strict=True))

    write_wav(root / "snap" / "new.wav", snap_clip(np.random.default_rng(42), 1.0, 0.3))
    _, stats, embedded = _embed(root, cache_root, cfg)
    assert (stats.hits, stats.misses, embedded) == (7, 1, 4)

    (root / "knock" / "knock-0.wav").rename(root / "knock" / "renamed.wav")
    _, stats, embedded = _embed(root, cache_root, cfg)
    assert (stats.hits, stats.misses, embedded) == (8, 0, 0)

    more, stats, embedded = _embed(root, cache_root, cfg, views=6)  # only the two extra views are computed
    assert (stats.misses, embedded) == (8, 8 * 2)
    again, stats, _ = _embed(root, cache_root, cfg, views=4)
    assert stats.misses == 0 and all(torch.equal(m[:4], a) for m, a in zip(more, again, strict=True))

    _, stats, embedded = _embed(root, cache_root, AugmentConfig(gain_db=(-3.0, 3.0)))
    assert (stats.hits, stats.misses, embedded) == (0, 8, 8 * 4)
    _, stats, _ = _embed(root, cache_root, AugmentConfig(spec_freq_masks=5))  # features-only setting: still hits
    assert stats.misses == 0


def test_views_record_the_backgrounds_they_heard(tmp_path: Path) -> None:
    """Each view names the background clips mixed into it, and the names survive the cache: what cross-validation
    needs to keep a fold's test backgrounds out of its training."""
    root = make_data(tmp_path / "data", {"snap": 3, "background": 3})
    clips = load_clipset(scan_dataset(root), RATE, progress=False)
    cache = EmbeddingCache(tmp_path / "cache", "fake", SNAPKIT, AugmentConfig(mix_background_prob=1.0), CLIP_SAMPLES)
    views, hashes, _ = compute_views(clips, CountingFeatures(), cache, views_per_clip=6, progress=False)
    background_hashes = {hashes[i] for i in clips.background_indices()}
    for i, clip_views in enumerate(views):
        assert clip_views.heard[0] == frozenset()  # view 0 is the clean clip
        assert all(h and h <= background_hashes - {hashes[i]} for h in clip_views.heard[1:])
    again, _, stats = compute_views(clips, CountingFeatures(), cache, views_per_clip=6, progress=False)
    assert stats.misses == 0 and [v.heard for v in again] == [v.heard for v in views]
    # Restricted to one background clip, every augmented view heard exactly that clip.
    only = clips.background_indices()[0]
    cache = EmbeddingCache(tmp_path / "cache2", "fake", SNAPKIT, AugmentConfig(mix_background_prob=1.0), CLIP_SAMPLES)
    views, hashes, _ = compute_views(clips, CountingFeatures(), cache, views_per_clip=4, backgrounds=[only])
    snap = clips.labels.index("snap")
    assert all(h == {hashes[only]} for h in views[snap].heard[1:])


def test_cross_validation_folds_never_hear_their_test_backgrounds(tmp_path: Path) -> None:
    """A head's fold trains only on views that heard none of the fold's held-out background clips."""
    from snapkit.training.inputs import TrainingInputs
    from snapkit.training.train import TrainSettings, plan_training

    root = make_data(tmp_path / "data", {"snap": 4, "background": 4})
    plan = plan_training(root, tmp_path / "run", TrainSettings())
    clips = load_clipset(scan_dataset(root), RATE, progress=False)
    inputs = TrainingInputs.__new__(TrainingInputs)  # only what dataset() reads
    inputs.plan, inputs.clips = plan, clips
    inputs.backgrounds = clips.background_indices()
    inputs.targets = torch.eye(2)[[0 if label == "background" else 1 for label in clips.labels]]
    cache = EmbeddingCache(tmp_path / "cache", "fake", SNAPKIT, AugmentConfig(mix_background_prob=1.0), CLIP_SAMPLES)
    views, inputs.hashes, _ = compute_views(clips, CountingFeatures(), cache, views_per_clip=12, progress=False)
    inputs.views = [torch.from_numpy(v.features) for v in views]
    inputs.heard = [v.heard for v in views]
    test = np.array([inputs.backgrounds[0], clips.labels.index("snap")])
    train = np.array([i for i in range(len(clips)) if i not in test])
    fold = inputs.dataset(train, train=True)
    excluded = inputs.hashes[test[0]]
    assert fold.allowed is not None
    for i, allowed in zip(train, fold.allowed, strict=True):
        assert 0 in allowed and all(excluded not in inputs.heard[i][v] for v in allowed)
    assert sum(len(a) for a in fold.allowed) < len(train) * 12  # some views were left out
    everything = inputs.dataset(np.arange(len(clips)), train=True)
    assert everything.allowed is not None and all(len(a) == 12 for a in everything.allowed)


def test_feature_dataset_allowed_views() -> None:
    views = [torch.arange(6, dtype=torch.float32)[:, None, None].expand(6, 3, 2)]
    training = FeatureDataset(views, np.eye(1, dtype=np.float32), train=True, seed=0, allowed=[[0, 4]])
    assert {int(training[0][0][0, 0]) for _ in range(40)} == {0, 4}
    with pytest.raises(ValueError, match="allowed"):
        FeatureDataset(views, np.eye(1, dtype=np.float32), train=True, allowed=[[]])


def test_cache_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert default_cache_root() == tmp_path / "embeddings"
    assert EmbeddingCache.default("fake", SNAPKIT, AugmentConfig(), 100).root == tmp_path / "embeddings"


def test_feature_dataset_views() -> None:
    views = [torch.arange(5, dtype=torch.float32)[:, None, None].expand(5, 3, 2) + 10 * i for i in range(3)]
    targets = np.eye(3, dtype=np.float32)
    evaluation = FeatureDataset(views, targets, train=False)
    assert all(torch.equal(evaluation[i][0], views[i][0]) for i in range(3))
    assert evaluation[1][1].tolist() == [0.0, 1.0, 0.0]
    training = FeatureDataset(views, targets, train=True, seed=1)
    picked = [int(training[0][0][0, 0]) for _ in range(40)]
    assert len(set(picked)) > 2
    repeat = FeatureDataset(views, targets, train=True, seed=1)
    assert picked == [int(repeat[0][0][0, 0]) for _ in range(40)]


def test_training_plan_estimate_choices(tmp_path: Path) -> None:
    """Cross-validation under 10 clips per class, a held-out split above, none when asked; bad shares refused."""
    from snapkit.errors import SnapkitError
    from snapkit.eval.synth import make_dataset
    from snapkit.training.train import TrainSettings, plan_training

    make_dataset(tmp_path / "data", classes=("beep",), clips_per_class=4, background_clips=4, seed=0)
    assert plan_training(tmp_path / "data", tmp_path / "run", TrainSettings()).folds == 4
    plan = plan_training(tmp_path / "data", tmp_path / "run", TrainSettings(estimate=False))
    assert plan.folds == 0 and "none" in plan.estimate
    assert plan_training(tmp_path / "data", tmp_path / "run", TrainSettings(cv_below_clips=3)).folds == 1
    with pytest.raises(SnapkitError, match="val_fraction"):
        TrainSettings(val_fraction=0.0)


def test_generated_noise_is_mixed_only_when_allowed() -> None:
    """Without background clips, mix_generated_noise=False leaves a view unmixed (heads); True mixes noise."""
    clip = snap_clip(np.random.default_rng(1), seconds=CLIP_S, at_s=0.2)
    for allowed in (True, False):
        cfg = AugmentConfig(time_shift=False, gain_db=(0.0, 0.0), mix_background_prob=1.0, mix_generated_noise=allowed)
        out = augment_waveform(clip, np.random.default_rng(0), cfg, CLIP_SAMPLES, [], sample_rate_hz=RATE)
        assert np.allclose(out, clip) is not allowed
    # A recorded background clip is still mixed when generated noise is off.
    other = (0.05 * np.sin(2 * np.pi * 300 * np.arange(CLIP_SAMPLES) / RATE)).astype(np.float32)
    cfg = AugmentConfig(time_shift=False, gain_db=(0.0, 0.0), mix_background_prob=1.0, mix_generated_noise=False)
    out = augment_waveform(clip, np.random.default_rng(0), cfg, CLIP_SAMPLES, [other], sample_rate_hz=RATE)
    assert np.std(out - clip) > 1e-4
    assert "mix_generated_noise" in cfg.view_settings() and "mix_generated_noise" not in AugmentConfig().view_settings()


def test_a_head_trains_on_clips_as_long_as_the_users_and_never_on_generated_noise(tmp_path: Path) -> None:
    from snapkit.training.train import TrainSettings, auto_clip_s, plan_training

    assert auto_clip_s(False, [5.0, 5.0]) == 2.0  # the ConvNet keeps its 2 s window
    assert auto_clip_s(True, [5.0, 4.9, 5.0]) == 5.0
    assert auto_clip_s(True, [0.3, 0.5]) == 2.0 and auto_clip_s(True, [40.0]) == 10.0
    assert auto_clip_s(True, [3.2, 3.3, 3.4]) == 3.5
    make_data(tmp_path / "data", {"snap": 3, "tap": 3, "background": 2}, seconds=3.0)
    head = plan_training(tmp_path / "data", tmp_path / "run", TrainSettings(backbone="sfx-cnn9"), measure_speed=False)
    assert head.settings.clip_s == 3.0 and not head.augment.mix_generated_noise
    assert "3 s clips" in "\n".join(head.describe())
    convnet = plan_training(tmp_path / "data", tmp_path / "run", TrainSettings(), measure_speed=False)
    assert convnet.settings.clip_s == 2.0 and convnet.augment.mix_generated_noise
    given = plan_training(tmp_path / "data", tmp_path / "run", TrainSettings(backbone="sfx-cnn9", clip_s=1.5))
    assert given.settings.clip_s == 1.5
