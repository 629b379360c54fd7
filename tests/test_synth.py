"""Tests of snapkit.eval.synth: seeded sounds, clips, datasets and streams with planted events."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snapkit.eval import synth

SR = 16_000
ALL_LABELS = (*synth.SOUND_CLASSES, synth.BACKGROUND_LABEL)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------- generators


@pytest.mark.parametrize("label", sorted(synth.SOUND_CLASSES))
def test_generator_is_seeded_and_trimmed(label: str) -> None:
    gen = synth.SOUND_CLASSES[label]
    a, b, c = gen(_rng(7), SR), gen(_rng(7), SR), gen(_rng(8), SR)
    assert a.dtype == np.float32 and a.ndim == 1 and len(a) > 0
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    assert 0.0 < np.max(np.abs(a)) < 1.0
    # Trimmed to the sound: the first and last samples belong to it.
    assert a[0] != 0.0 and a[-1] != 0.0
    assert np.all(np.isfinite(a))


@pytest.mark.parametrize("label", sorted(synth.SOUND_CLASSES))
def test_generator_respects_max_seconds(label: str) -> None:
    gen = synth.SOUND_CLASSES[label]
    for seed in range(5):
        x = gen(_rng(seed), SR, max_seconds=0.3)
        assert 0 < len(x) <= int(0.3 * SR)
        assert x[0] != 0.0 and x[-1] != 0.0


def test_generators_vary_within_a_class() -> None:
    lengths = {len(synth.beep_pattern(_rng(s), SR)) for s in range(10)}
    assert len(lengths) > 5


def test_smoke_alarm_is_t3_pattern() -> None:
    x = synth.smoke_alarm(_rng(3), SR)
    assert 2.2 < len(x) / SR < 2.8  # three ~0.5 s pulses with two ~0.5 s gaps
    frame = SR // 100
    on = np.abs(x[: len(x) // frame * frame]).reshape(-1, frame).max(axis=1) > 0.01
    rises = np.count_nonzero(np.diff(on.astype(int)) == 1) + int(on[0])
    assert rises == 3


def test_active_power_ignores_silent_gaps() -> None:
    tone = np.sin(2 * np.pi * 1000 * np.arange(SR // 10) / SR)
    gapped = np.concatenate([tone, np.zeros(SR), tone])
    assert synth.active_power(gapped, SR) == pytest.approx(0.5, rel=0.02)
    assert synth.active_power(np.zeros(100), SR) == 0.0


def test_background_is_seeded_and_quiet() -> None:
    a = synth.background(_rng(1), SR, seconds=3.0)
    np.testing.assert_array_equal(a, synth.background(_rng(1), SR, seconds=3.0))
    assert not np.array_equal(a, synth.background(_rng(2), SR, seconds=3.0))
    assert a.shape == (3 * SR,) and a.dtype == np.float32
    assert 0 < np.sqrt(np.mean(a.astype(np.float64) ** 2)) < 0.05


def test_speech_uses_espeak_ng() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    x = synth.speech(_rng(0), SR, text="hello")
    assert x.dtype == np.float32 and 0.1 < len(x) / SR < 3.0
    assert 0 < np.max(np.abs(x)) < 1.0


def test_speech_without_espeak_ng_raises_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth.shutil, "which", lambda _name: None)
    with pytest.raises(RuntimeError, match="espeak-ng"):
        synth.speech(_rng(0), SR)


# ---------------------------------------------------------------------------------------------- clips


@pytest.mark.parametrize("label", ALL_LABELS)
def test_make_clip_shape_dtype_peak_and_seed(label: str) -> None:
    a = synth.make_clip(label, _rng(11), seconds=2.0, sample_rate_hz=SR)
    b = synth.make_clip(label, _rng(11), seconds=2.0, sample_rate_hz=SR)
    c = synth.make_clip(label, _rng(12), seconds=2.0, sample_rate_hz=SR)
    assert a.shape == (2 * SR,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.max(np.abs(a)) < 1.0


def test_make_clip_never_clips_at_high_snr() -> None:
    for seed in range(8):
        for label in synth.SOUND_CLASSES:
            assert np.max(np.abs(synth.make_clip(label, _rng(seed), snr_db=40.0))) < 1.0


def test_make_clip_rejects_unknown_label() -> None:
    with pytest.raises(ValueError, match="unknown sound class"):
        synth.make_clip("doorbell", _rng(0))


# ---------------------------------------------------------------------------------------------- datasets


def test_make_dataset_writes_expected_files(tmp_path: Path) -> None:
    paths = synth.make_dataset(tmp_path, classes=("beep", "snap"), clips_per_class=3, background_clips=2, seed=4)
    assert list(paths) == ["beep", "snap", "background"]
    assert [p.name for p in paths["beep"]] == ["beep-000.wav", "beep-001.wav", "beep-002.wav"]
    assert [p.relative_to(tmp_path).as_posix() for p in paths["background"]] == [
        "background/background-000.wav",
        "background/background-001.wav",
    ]
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(tmp_path).as_posix() for ps in paths.values() for p in ps)
    for p in paths["snap"]:
        info = sf.info(p)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 1, 2 * SR, "PCM_16")
    # Same seed, other folder: same audio; a clip does not depend on which other classes are made.
    other = synth.make_dataset(tmp_path / "again", classes=("snap",), clips_per_class=1, background_clips=0, seed=4)
    np.testing.assert_array_equal(sf.read(other["snap"][0])[0], sf.read(paths["snap"][0])[0])


def test_make_dataset_never_overwrites(tmp_path: Path) -> None:
    mine = tmp_path / "beep" / "beep-001.wav"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own recording")
    with pytest.raises(FileExistsError, match=r"beep-001\.wav"):
        synth.make_dataset(tmp_path, classes=("beep",), clips_per_class=3, background_clips=1)
    assert mine.read_bytes() == b"my own recording"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["beep-001.wav"]  # nothing else written

    synth.make_dataset(tmp_path / "fresh", classes=("beep",), clips_per_class=1, background_clips=0)
    with pytest.raises(FileExistsError):
        synth.make_dataset(tmp_path / "fresh", classes=("beep",), clips_per_class=1, background_clips=0)


def test_make_dataset_rejects_bad_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        synth.make_dataset(tmp_path, classes=("doorbell",))
    with pytest.raises(ValueError):
        synth.make_dataset(tmp_path, classes=("background",))
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- streams

CLASSES = tuple(synth.SOUND_CLASSES)


def _stream(seed: int = 5, **kwargs: object) -> tuple[np.ndarray, list[synth.PlantedEvent]]:
    args: dict[str, object] = {"duration_s": 75.0, "classes": CLASSES, "events_per_minute": 12.0, "block_s": 20.0}
    args.update(kwargs)
    return synth.make_stream(seed, **args)  # type: ignore[arg-type]


def test_make_stream_is_seeded() -> None:
    a, ev_a = _stream(5)
    b, ev_b = _stream(5)
    c, ev_c = _stream(6)
    assert a.shape == (75 * SR,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert ev_a == ev_b
    assert not np.array_equal(a, c) and ev_a != ev_c
    d, ev_d = synth.make_stream(_rng(3), duration_s=10.0, classes=CLASSES)
    e, ev_e = synth.make_stream(_rng(3), duration_s=10.0, classes=CLASSES)
    np.testing.assert_array_equal(d, e)
    assert ev_d == ev_e


def test_stream_events_sorted_inside_and_apart() -> None:
    audio, events = _stream(5, min_gap_s=1.5)
    assert len(events) >= 5
    assert all(e.label in CLASSES for e in events)
    assert len({e.label for e in events}) >= 3
    duration = len(audio) / SR
    for e in events:
        assert 0.0 < e.onset_s < e.offset_s < duration
    for first, second in itertools.pairwise(events):
        assert second.onset_s - first.offset_s >= 1.5 - 1e-9
    assert np.max(np.abs(audio)) < 1.0


def test_planted_events_are_sample_accurate() -> None:
    quiet, events = _stream(9, background=False)
    noisy, noisy_events = _stream(9)
    assert events == noisy_events  # the ambience does not move or rescale the events
    mask = np.zeros(len(quiet), dtype=bool)
    for e in events:
        on, off = round(e.onset_s * SR), round(e.offset_s * SR)
        assert on == e.onset_s * SR and off == e.offset_s * SR  # whole samples
        assert quiet[on] != 0.0 and quiet[off - 1] != 0.0
        assert quiet[on - 1] == 0.0 and quiet[off] == 0.0
        mask[on:off] = True
    assert not np.any(quiet[~mask])
    # The noisy stream is the quiet one plus an event-free ambience.
    ambience = noisy.astype(np.float64) - quiet
    no_events, none = _stream(9, events_per_minute=0.0)
    assert none == []
    np.testing.assert_allclose(ambience, no_events, atol=1e-6)


def test_planted_snr_is_the_one_recorded() -> None:
    quiet, events = _stream(9, background=False, snr_db=(6.0, 20.0))
    ambience, _ = _stream(9, events_per_minute=0.0)
    for e in events:
        on, off = round(e.onset_s * SR), round(e.offset_s * SR)
        sound = quiet[on:off].astype(np.float64)
        bg = ambience[on:off].astype(np.float64)
        measured = 10 * np.log10(synth.active_power(sound, SR) / np.mean(bg**2))
        assert measured == pytest.approx(e.snr_db, abs=0.05)
        assert 6.0 - 1e-6 <= e.snr_db <= 20.0 + 1e-6


def test_stream_energy_rises_at_each_onset() -> None:
    audio, events = _stream(13, snr_db=20.0)
    x = audio.astype(np.float64)
    win = SR // 100  # 10 ms
    for e in events:
        on = round(e.onset_s * SR)
        before = np.mean(x[on - win : on] ** 2)
        after = np.mean(x[on : on + win] ** 2)
        assert after > 4 * before, e


def test_background_has_no_click_at_block_boundaries() -> None:
    audio, _ = _stream(2, events_per_minute=0.0, block_s=5.0, duration_s=60.0)
    x = audio.astype(np.float64)
    boundaries = np.arange(5 * SR, len(x), 5 * SR)
    # A click: a sample-to-sample step, or a jump of the 4 ms mean level, no larger than they ever are elsewhere.
    step = np.abs(np.diff(x))
    assert np.all(step[boundaries - 1] <= np.percentile(step, 99.9))
    w = 64
    cumsum = np.concatenate([[0.0], np.cumsum(x)])
    mean = (cumsum[w:] - cumsum[:-w]) / w  # mean[i] = mean of x[i : i + w]
    jump = np.abs(mean[w:] - mean[:-w])  # jump[j]: the w samples after j + w vs the w samples before
    assert np.all(jump[boundaries - w] <= np.percentile(jump, 99.9))


@pytest.mark.parametrize("chunk_s", [0.7, 20.0, 33.0])
def test_iter_stream_chunks_concatenate_to_make_stream(chunk_s: float) -> None:
    audio, events = _stream(21, duration_s=65.3)
    chunks = list(
        synth.iter_stream(21, duration_s=65.3, classes=CLASSES, events_per_minute=12.0, block_s=20.0, chunk_s=chunk_s)
    )
    chunk_n = round(chunk_s * SR)
    assert all(len(c.audio) == chunk_n for c in chunks[:-1]) and 0 < len(chunks[-1].audio) <= chunk_n
    assert [c.start_sample for c in chunks] == [i * chunk_n for i in range(len(chunks))]
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks]), audio)
    assert [e for c in chunks for e in c.events] == events
    for c in chunks:
        assert all(c.start_s <= e.onset_s < c.end_s for e in c.events)


def test_iter_stream_checks_arguments_immediately() -> None:
    with pytest.raises(ValueError):
        synth.iter_stream(0, duration_s=-1.0, classes=CLASSES)
    with pytest.raises(ValueError, match="unknown sound class"):
        synth.iter_stream(0, duration_s=10.0, classes=("doorbell",))
    with pytest.raises(ValueError):
        synth.iter_stream(0, duration_s=10.0, classes=(), events_per_minute=1.0)


# ---------------------------------------------------------------------------------------------- classes differ


def _features(x: np.ndarray) -> np.ndarray:
    """Spectral shape while active, per-band peak above the noise floor, and on/off rhythm of a clip."""
    n_fft, hop = 1024, 256
    n_frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    power = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=1)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1 / SR)
    edges = np.geomspace(250, 7500, 33)  # 32 bands
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(1) for lo, hi in itertools.pairwise(edges)], 1)
    log_power = 10 * np.log10(bands + 1e-12)
    total = 10 * np.log10(bands.sum(1) + 1e-12)
    active = total >= total.max() - 10
    shape = log_power[active].mean(0) - log_power[active].mean()
    peak = log_power.max(0) - np.percentile(log_power, 10, axis=0)
    onsets = np.count_nonzero(np.diff(active.astype(int)) == 1) + int(active[0])
    rhythm = [active.mean(), np.log1p(onsets), np.log(active.sum() / onsets)]
    return np.concatenate([shape, peak, rhythm])


def test_classes_are_distinguishable() -> None:
    labels = ALL_LABELS

    def dataset(seed: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        rng = _rng(seed)
        feats = [
            _features(synth.make_clip(label, rng, snr_db=(12.0, 25.0)).astype(np.float64))
            for label in labels
            for _ in range(per_class)
        ]
        return np.array(feats), np.repeat(np.arange(len(labels)), per_class)

    x_train, y_train = dataset(100, 12)
    x_test, y_test = dataset(200, 12)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-9
    # Standardise; the 3 rhythm numbers weigh as much as the 64 spectral ones together.
    weight = np.ones(x_train.shape[1])
    weight[64:] = np.sqrt(64 / 3)
    x_train, x_test = (x_train - mean) / std * weight, (x_test - mean) / std * weight
    centroids = np.stack([x_train[y_train == k].mean(0) for k in range(len(labels))])
    predicted = np.argmin(((x_test[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = float(np.mean(predicted == y_test))
    assert accuracy > 0.9, accuracy
