"""Soundscapes for timing experiments: ground truth from each clip's own envelope, placement, SNR, bed, seeds."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snapkit.audio.levels import GROUND_TRUTH_FRAME_S, active_power
from snapkit.errors import DatasetError, SnapkitError
from snapkit.eval import synth
from snapkit.eval.soundscape import (
    MAX_PEAK,
    SoundClip,
    event_span,
    make_soundscape,
    split_for_soundscapes,
)

RATE = 16_000
CLIP_S = 2.0


def tone_clip(
    seed: int, onset_s: float, duration_s: float, *, freq_hz: float = 1000.0, noise_rms: float = 1e-4
) -> np.ndarray:
    """A 2 s clip: a 0.5-amplitude tone from ``onset_s`` for ``duration_s`` in faint seeded noise -> [samples]."""
    rng = np.random.default_rng(seed)
    audio = noise_rms * rng.standard_normal(round(CLIP_S * RATE))
    start, end = round(onset_s * RATE), round((onset_s + duration_s) * RATE)
    audio[start:end] += 0.5 * np.sin(2 * np.pi * freq_hz * np.arange(end - start) / RATE)
    return audio.astype(np.float32)


def noise_clip(seed: int, rms: float = 0.01, seconds: float = CLIP_S) -> np.ndarray:
    return (rms * np.random.default_rng(seed).standard_normal(round(seconds * RATE))).astype(np.float32)


TARGETS = [
    SoundClip(tone_clip(1, 0.503, 0.3), "beep", "beep-1"),
    SoundClip(tone_clip(2, 1.2, 0.4, freq_hz=1500.0), "beep", "beep-2"),
    SoundClip(tone_clip(3, 0.2, 0.05, freq_hz=3000.0), "snap", "snap-1"),
]
BACKGROUNDS = [SoundClip(noise_clip(10 + k), "background", f"bg-{k}") for k in range(3)]


def build(**kwargs: object):
    settings = {"sample_rate_hz": RATE, "duration_s": 60.0, "snr_db": [0.0, 6.0, 12.0], "seed": 7}
    settings.update(kwargs)
    return make_soundscape(TARGETS, BACKGROUNDS, **settings)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- ground truth


# A frame's window spans two frames, so a loud sound is seen up to about a frame early (or late at its end).
EDGE_TOLERANCE_S = 1.25 * GROUND_TRUTH_FRAME_S


def test_span_of_a_tone_in_its_clips_quiet_is_exact_to_a_frame() -> None:
    start, end = event_span(tone_clip(0, 0.503, 0.3), RATE)
    assert abs(start / RATE - 0.503) <= EDGE_TOLERANCE_S
    assert abs(end / RATE - 0.803) <= EDGE_TOLERANCE_S


@pytest.mark.parametrize("seed", range(5))
def test_a_snap_in_room_rumble_and_hum_is_found(seed: int) -> None:
    # Generated room sound (pink/brown noise, mains hum, faint drones and thuds) swings by more than a 10 dB snap
    # adds to the plain frame power; measured against the room's own spectrum, the snap stands out.
    rng = np.random.default_rng(seed)
    room = synth.background(rng, RATE, seconds=CLIP_S)
    snap = synth.finger_snap(rng, RATE)
    at = round(0.8 * RATE)
    gain = np.sqrt(np.mean(np.square(room[at : at + len(snap)])) * 10 ** (10 / 10) / active_power(snap, RATE))
    room[at : at + len(snap)] += gain * snap
    start, end = event_span(room, RATE)
    assert abs(start - at) / RATE <= EDGE_TOLERANCE_S
    assert at + 0.5 * len(snap) <= end <= at + len(snap) + EDGE_TOLERANCE_S * RATE


def test_the_noise_of_a_noisy_recording_is_not_taken_for_sound() -> None:
    # Noise 17 dB under the tone: within 20 dB of the loudest frame, so only the noise-floor margin keeps it out.
    start, end = event_span(tone_clip(0, 0.7, 0.5, noise_rms=0.05), RATE)
    assert abs(start / RATE - 0.7) <= 0.01 and abs(end / RATE - 1.2) <= 0.01


def test_a_sound_filling_its_clip_is_all_event() -> None:
    assert event_span(tone_clip(0, 0.0, CLIP_S), RATE) == (0, round(CLIP_S * RATE))


def test_a_silent_clip_has_no_span_and_cannot_be_planted() -> None:
    with pytest.raises(ValueError, match="silent"):
        event_span(np.zeros(RATE, np.float32), RATE)
    silent = SoundClip(np.zeros(RATE, np.float32), "beep", "quiet.wav")
    with pytest.raises(SnapkitError, match=r"quiet\.wav is silent"):
        make_soundscape([silent], BACKGROUNDS, sample_rate_hz=RATE, duration_s=30.0, snr_db=6.0)


def test_reference_onsets_are_where_the_tones_start_in_the_stream() -> None:
    scape = build(snr_db=12.0)
    alone = scape.render(0, scape.n_samples, background=False)
    for event in scape.events:
        around = np.arange(round((event.onset_s - 0.1) * RATE), round((event.offset_s + 0.1) * RATE))
        loud = around[np.abs(alone[around]) > 0.2 * np.abs(alone[around]).max()]
        assert abs(loud[0] / RATE - event.onset_s) <= EDGE_TOLERANCE_S
        assert abs((loud[-1] + 1) / RATE - event.offset_s) <= EDGE_TOLERANCE_S


# ---------------------------------------------------------------------------------------------------- placement


def test_events_are_apart_inside_the_stream_and_balanced() -> None:
    scape = build(events_per_minute=12.0, min_gap_s=1.0)
    events = scape.events
    assert len(events) == 12
    assert events[0].onset_s >= 0.5 and events[-1].offset_s <= scape.duration_s - 0.5
    for before, after in itertools.pairwise(events):
        assert after.onset_s - before.offset_s >= 1.0 - 1e-9
    assert Counter(e.label for e in events) == {"beep": 6, "snap": 6}
    assert Counter(e.source for e in events if e.label == "beep") == {"beep-1": 3, "beep-2": 3}
    assert Counter(e.snr_db for e in events) == {0.0: 4, 6.0: 4, 12.0: 4}


def test_snr_is_what_was_asked_measured_on_the_mix() -> None:
    scape = build(events_per_minute=15.0)
    mix = scape.audio()
    alone = scape.render(0, scape.n_samples, background=False)
    bed = mix - alone
    local_n = round(0.25 * RATE)
    for event in scape.events:
        a, b = round(event.onset_s * RATE), round(event.offset_s * RATE)
        measured = 10 * np.log10(active_power(alone[a:b], RATE) / np.mean(np.square(bed[a - local_n : b + local_n])))
        assert measured == pytest.approx(event.snr_db, abs=0.05)
    assert sorted({round(e.snr_db, 6) for e in scape.events}) == [0.0, 6.0, 12.0]


def test_a_too_loud_event_is_turned_down_and_says_so() -> None:
    loud_bed = [SoundClip(noise_clip(20, rms=0.25), "background", "loud")]
    scape = make_soundscape(TARGETS, loud_bed, sample_rate_hz=RATE, duration_s=30.0, snr_db=20.0, seed=1)
    assert float(np.abs(scape.audio()).max()) <= MAX_PEAK + 1e-6
    assert all(e.snr_db < 20.0 for e in scape.events)


def test_bed_keeps_its_level_through_crossfades_and_loops() -> None:
    scape = make_soundscape([], BACKGROUNDS, sample_rate_hz=RATE, duration_s=20.0, snr_db=0.0, events_per_minute=0)
    audio = scape.audio()
    assert scape.events == () and len(audio) == 20 * RATE
    frames = audio.reshape(-1, RATE // 20)  # 50 ms frames: 10 passes over 3 clips, each join crossfaded
    level_db = 10 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1))
    assert np.abs(level_db - 10 * np.log10(0.01**2)).max() < 1.0
    # A join without a fade would step between two unrelated samples; with it the signal stays noise-like.
    assert np.abs(np.diff(audio)).max() < 10 * 0.01


def test_blocks_and_the_written_file_are_the_whole_soundscape(tmp_path: Path) -> None:
    scape = build(duration_s=20.0)
    whole = scape.audio()
    np.testing.assert_array_equal(np.concatenate(list(scape.blocks(0.37))), whole)
    path = scape.write(tmp_path / "scape.wav")
    written, rate = sf.read(path, dtype="float32")
    assert rate == RATE and len(written) == len(whole)
    assert np.abs(written - whole).max() < 1e-4  # 16-bit quantisation
    with pytest.raises(FileExistsError):
        scape.write(path)
    scape.write(path, overwrite=True)
    assert not list(tmp_path.glob(".*.part"))


# ---------------------------------------------------------------------------------------------------- seeds


def test_the_same_seed_gives_the_same_soundscape_and_other_snrs_are_paired() -> None:
    first, again = build(seed=3), build(seed=3)
    np.testing.assert_array_equal(first.audio(), again.audio())
    assert first.events == again.events
    other = build(seed=4)
    assert [e.onset_s for e in other.events] != [e.onset_s for e in first.events]
    quiet, loud = build(seed=3, snr_db=0.0), build(seed=3, snr_db=12.0)
    assert [(e.label, e.onset_s, e.source) for e in quiet.events] == [
        (e.label, e.onset_s, e.source) for e in loud.events
    ]
    bed_quiet = quiet.audio() - quiet.render(0, quiet.n_samples, background=False)
    bed_loud = loud.audio() - loud.render(0, loud.n_samples, background=False)
    np.testing.assert_allclose(bed_quiet, bed_loud, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- errors


def test_a_class_without_clips_is_named() -> None:
    with pytest.raises(SnapkitError, match="No clip of class 'knock'"):
        build(labels=["beep", "knock"])


def test_more_events_than_fit_is_refused() -> None:
    with pytest.raises(SnapkitError, match="do not fit"):
        build(duration_s=10.0, events_per_minute=60.0)


def test_no_background_is_refused() -> None:
    with pytest.raises(SnapkitError, match="background"):
        make_soundscape(TARGETS, [], sample_rate_hz=RATE, duration_s=10.0, snr_db=0.0)


def test_split_holds_out_some_of_every_class() -> None:
    labels = ["beep"] * 12 + ["snap"] * 4 + ["background"] * 10
    train_idx, held_idx = split_for_soundscapes(labels, 0.3, seed=0)
    assert not set(train_idx) & set(held_idx) and len(train_idx) + len(held_idx) == len(labels)
    held = Counter(labels[i] for i in held_idx)
    assert held == {"beep": 4, "snap": 1, "background": 3}
    np.testing.assert_array_equal(split_for_soundscapes(labels, 0.3, seed=0)[1], held_idx)


def test_a_class_with_one_clip_cannot_be_held_out() -> None:
    with pytest.raises(DatasetError, match="Class 'snap' has a single clip"):
        split_for_soundscapes(["beep", "beep", "snap", "background", "background"], 0.3, seed=0)
    with pytest.raises(SnapkitError, match="between 0 and 1"):
        split_for_soundscapes(["beep", "beep"], 1.0, seed=0)
