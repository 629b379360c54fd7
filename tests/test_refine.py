"""Edge refinement, the timeline grid and the stream buffer on made-up arrays: no model."""

from __future__ import annotations

import numpy as np
import pytest

from snapkit.detection.buffer import StreamBuffer
from snapkit.detection.refine import refine_edge
from snapkit.detection.timeline import Timeline, cells_to_cover, first_cell_from

RATE = 16_000
ONSET_S, OFFSET_S = 0.5, 0.8


def burst(*, hum_amplitude: float = 0.0) -> np.ndarray:
    """1 s of quiet seeded noise with a 1 kHz tone from 0.5 to 0.8 s, and optionally a 4 kHz hum throughout."""
    rng = np.random.default_rng(3)
    t = np.arange(RATE) / RATE
    audio = 0.001 * rng.standard_normal(RATE) + hum_amplitude * np.sin(2 * np.pi * 4000 * t)
    on = (t >= ONSET_S) & (t < OFFSET_S)
    audio[on] += 0.5 * np.sin(2 * np.pi * 1000 * t[on])
    return audio.astype(np.float32)


@pytest.mark.parametrize("coarse_s", [0.4, 0.5, 0.6])
def test_an_onset_is_placed_where_the_energy_rises(coarse_s: float) -> None:
    found = refine_edge(burst(), RATE, coarse_s, (50.0, 8000.0), rising=True, search_s=0.15)
    assert abs(found - ONSET_S) <= 0.004  # one 4 ms energy frame


@pytest.mark.parametrize("coarse_s", [0.7, 0.8, 0.9])
def test_an_offset_is_placed_where_the_energy_falls(coarse_s: float) -> None:
    found = refine_edge(burst(), RATE, coarse_s, (50.0, 8000.0), rising=False, search_s=0.15)
    assert abs(found - OFFSET_S) <= 0.008


def test_the_class_band_finds_an_edge_under_louder_sound_elsewhere() -> None:
    audio = burst(hum_amplitude=0.5)  # the whole band rises only 3 dB at the onset: not trusted
    assert refine_edge(audio, RATE, 0.55, (50.0, 8000.0), rising=True, search_s=0.15) == 0.55
    found = refine_edge(audio, RATE, 0.55, (800.0, 1200.0), rising=True, search_s=0.15)
    assert abs(found - ONSET_S) <= 0.004


def test_no_clear_edge_keeps_the_coarse_time() -> None:
    flat = burst()[:4000]  # noise only
    assert refine_edge(flat, RATE, 0.1, (50.0, 8000.0), rising=True, search_s=0.15) == 0.1
    # Less than four energy frames of audio within reach (the stream ends right after the coarse edge).
    assert refine_edge(burst()[:8100], RATE, 0.5, (50.0, 8000.0), rising=True, search_s=0.004) == 0.5


def test_audio_that_starts_later_in_the_stream() -> None:
    """``first_n``: the audio held starts at that stream sample; the answer is in stream time all the same."""
    audio = burst()
    whole = refine_edge(audio, RATE, 0.55, (50.0, 8000.0), rising=True, search_s=0.15)
    assert refine_edge(audio[4000:], RATE, 0.55, (50.0, 8000.0), rising=True, search_s=0.15, first_n=4000) == whole
    # Held audio beginning inside the search range: only what is held is searched.
    late = refine_edge(audio[7000:], RATE, 0.55, (50.0, 8000.0), rising=True, search_s=0.15, first_n=7000)
    assert abs(late - ONSET_S) <= 0.004


def test_timeline_places_frames_on_cells_and_averages_overlaps() -> None:
    grid_n = 160  # 10 ms
    assert first_cell_from(0, grid_n) == 0 and first_cell_from(80, grid_n) == 0 and first_cell_from(81, grid_n) == 1
    assert cells_to_cover(161, grid_n) == 2
    timeline = Timeline(2, grid_n, keep=True)
    timeline.add([(0, 480), (480, 800)], np.array([[1.0, 0.0], [0.0, 1.0]]))  # cells 0-2, then 3-4
    timeline.add([(320, 640)], np.array([[0.5, 0.5]]))  # cells 2-3 again
    values = timeline.decide_until(4)
    np.testing.assert_allclose(values, [[1, 0], [1, 0], [0.75, 0.25], [0.25, 0.75]])
    assert timeline.first_undecided == 4 and list(timeline.latest) == [0.25, 0.75]
    timeline.add([(0, 800)], np.array([[0.0, 0.0]]))  # reaches decided cells 0-3 (left alone) and cell 4
    np.testing.assert_allclose(timeline.decide_until(6), [[0, 0.5], [0, 0]])  # cell 5: no frame, 0
    assert timeline.decide_until(6).shape == (0, 2)
    assert timeline.decided().shape == (6, 2)


def test_buffer_keeps_absolute_sample_indices() -> None:
    buffer = StreamBuffer(min_discard_n=10)
    for start in range(0, 100, 7):
        buffer.append(np.arange(start, min(start + 7, 100), dtype=np.float32))
    assert buffer.end == 100 and buffer.start == 0
    buffer.discard_before(5)  # too few to be worth a copy
    assert buffer.start == 0
    buffer.discard_before(60)
    assert buffer.start == 60 and list(buffer.view(60, 63)) == [60, 61, 62]
    buffer.append(np.arange(100, 103, dtype=np.float32))
    assert list(buffer.view(98, 103)) == [98, 99, 100, 101, 102]
    with pytest.raises(IndexError):
        buffer.view(50, 70)
