"""Reading, resampling and writing audio, and the errors a user sees for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snapkit.audio.io import audio_info, load_audio, to_mono, write_wav
from snapkit.audio.levels import FLOOR_DBFS, peak_dbfs, rms_dbfs
from snapkit.audio.resample import StreamResampler, resample
from snapkit.audio.sources import ArraySource, FileSource
from snapkit.errors import AudioFileError

RATE = 16_000


def tone(freq_hz: float = 440.0, seconds: float = 1.0, rate: int = RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("fmt", "subtype", "tol"),
    [
        ("WAV", "PCM_U8", 1e-2),
        ("WAV", "PCM_16", 1e-4),
        ("WAV", "PCM_24", 1e-6),
        ("WAV", "PCM_32", 1e-6),
        ("WAV", "FLOAT", 1e-7),
        ("WAV", "DOUBLE", 1e-7),
        ("FLAC", "PCM_16", 1e-4),
        ("FLAC", "PCM_24", 1e-6),
    ],
)
def test_every_bit_depth_loads_in_full_scale(tmp_path: Path, fmt: str, subtype: str, tol: float) -> None:
    x = tone()
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, x, RATE, format=fmt, subtype=subtype)
    y, rate = load_audio(path)
    assert rate == RATE and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=tol)


@pytest.mark.parametrize(("fmt", "subtype"), [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_lossy_formats_load(tmp_path: Path, fmt: str, subtype: str) -> None:
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot write {fmt}")
    x = tone(seconds=2.0)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, x, RATE, format=fmt, subtype=subtype)
    y, rate = load_audio(path)
    assert rate == RATE and abs(len(y) - len(x)) < 0.1 * RATE
    assert abs(peak_dbfs(y) - peak_dbfs(x)) < 1.0


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left, right = tone(440), tone(880)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), RATE, subtype="FLOAT")
    y, _ = load_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)
    both, _ = load_audio(tmp_path / "s.wav", mono=False)
    assert both.shape == (len(left), 2)
    np.testing.assert_allclose(to_mono(both), y)


def test_resampling_keeps_frequency_and_duration(tmp_path: Path) -> None:
    sf.write(tmp_path / "t.wav", tone(1000.0, seconds=1.0, rate=44_100), 44_100, subtype="FLOAT")
    y, rate = load_audio(tmp_path / "t.wav", sample_rate_hz=RATE)
    assert rate == RATE and len(y) == RATE
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.argmax(spectrum) * RATE / len(y) == pytest.approx(1000.0, abs=2.0)
    # Content above the new Nyquist is removed, not folded back as an alias.
    alias, _ = load_audio(_write(tmp_path / "hi.wav", tone(12_000.0, rate=44_100), 44_100), sample_rate_hz=RATE)
    assert rms_dbfs(alias) < -60


def test_stream_resampler_matches_whole_signal_resampling() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(44_100 * 2).astype(np.float32) * 0.1
    whole = resample(x, 44_100, RATE)
    for block in (441, 4410, 30_000):
        stream = StreamResampler(44_100, RATE)
        parts = [stream(x[i : i + block], last=i + block >= len(x)) for i in range(0, len(x), block)]
        joined = np.concatenate(parts)
        assert len(joined) == len(whole)
        np.testing.assert_allclose(joined, whole, atol=1e-5)


def test_file_source_streams_the_same_samples_as_load_audio(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((44_100, 2)) * 0.1).astype(np.float32)
    path = _write(tmp_path / "n.wav", x, 44_100, subtype="FLOAT")
    whole, _ = load_audio(path, sample_rate_hz=RATE)
    streamed = np.concatenate(list(FileSource(path, RATE, block_s=0.013).blocks()))
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    assert np.array_equal(np.concatenate(list(ArraySource(whole, RATE, block_s=0.1).blocks())), whole)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_text("this is a shopping list, not audio"), "not an audio file"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
)
def test_bad_files_get_one_sentence_naming_the_file(tmp_path: Path, make, words: str) -> None:
    path = tmp_path / "clip.wav"
    make(path)
    with pytest.raises(AudioFileError, match=words) as err:
        load_audio(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("MP3", "MPEG_LAYER_III")])
def test_truncated_files_are_refused(tmp_path: Path, fmt: str, subtype: str) -> None:
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot write {fmt}")
    rng = np.random.default_rng(2)
    path = _write(
        tmp_path / f"x.{fmt.lower()}",
        (rng.standard_normal(RATE * 2) * 0.1).astype(np.float32),
        RATE,
        fmt=fmt,
        subtype=subtype,
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioFileError, match=str(path)):
        load_audio(path)


def test_header_only_wav_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "zero.wav", np.zeros(0, np.float32), RATE)
    with pytest.raises(AudioFileError, match="no audio samples"):
        audio_info(path)


def test_write_wav_is_16_bit_and_never_overwrites(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a" / "clip.wav", tone(), RATE)
    info = sf.info(path)
    assert (info.subtype, info.samplerate, info.frames) == ("PCM_16", RATE, RATE)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="never overwrites"):
        write_wav(path, tone(880), RATE)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["clip.wav"]


def test_write_wav_crash_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = sf.write

    def crash(handle, *args, **kwargs):
        real_write(handle, *args, **kwargs)
        raise KeyboardInterrupt  # as if Ctrl-C arrived mid-write

    monkeypatch.setattr(sf, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        write_wav(tmp_path / "clip.wav", tone(), RATE)
    assert list(tmp_path.iterdir()) == []


def test_write_clips_out_of_range_values(tmp_path: Path) -> None:
    y, _ = load_audio(write_wav(tmp_path / "loud.wav", tone(amp=3.0), RATE))
    assert np.max(np.abs(y)) <= 1.0


def test_levels() -> None:
    assert peak_dbfs(tone(amp=1.0)) == pytest.approx(0.0, abs=0.01)
    assert rms_dbfs(tone(amp=1.0)) == pytest.approx(-3.01, abs=0.02)
    assert peak_dbfs(np.zeros(10)) == FLOOR_DBFS == rms_dbfs(np.zeros(0))


def _write(path: Path, audio: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> Path:
    sf.write(path, audio, rate, format=fmt, subtype=subtype)
    return path
