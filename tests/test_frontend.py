"""The log-mel front end against librosa references written from each model's original code."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from snapkit.errors import SnapkitError
from snapkit.features import (
    PANNS,
    PRESETS,
    SFX_CNN9,
    SNAPKIT,
    FrontEndConfig,
    LogMel,
    get_preset,
    mel_filterbank,
)

librosa = pytest.importorskip("librosa")

DURATION_S = 0.5


# --- Test signals: seeded, realistic, and without long runs of exact zeros. ------------------------------


def make_signals(sample_rate_hz: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Float64 test waveforms of ``DURATION_S`` seconds at ``sample_rate_hz``."""
    rng = np.random.default_rng(seed)
    n = int(DURATION_S * sample_rate_hz)
    t = np.arange(n) / sample_rate_hz
    # Exponential sweep from 50 Hz to 45 % of the sample rate: every band gets its turn, the rest is leakage.
    f0, f1 = 50.0, 0.45 * sample_rate_hz
    k = math.log(f1 / f0) / t[-1]
    chirp = 0.5 * np.sin(2 * np.pi * f0 * np.expm1(k * t) / k)
    noise = 0.1 * rng.standard_normal(n)
    # Clicks every 50 ms over a faint noise floor, so no frame is exactly silent.
    clicks = 1e-3 * rng.standard_normal(n)
    clicks[:: sample_rate_hz // 20] += 0.9
    tones = sum(
        amp * np.sin(2 * np.pi * f * t + phase)
        for amp, f, phase in [
            (0.3, 440.0, 0.1),
            (0.2, 1234.5, 1.0),
            (0.1, 3000.0, 2.0),
            (0.05, 0.3 * sample_rate_hz, 0.5),
        ]
    )
    return {"chirp": chirp, "noise": noise, "clicks": clicks, "tones": tones}


# --- Independent references, from the original projects' code (not from our config). --------------------


def panns_reference(y: np.ndarray) -> np.ndarray:
    """PANNs (audioset_tagging_cnn models.py + torchlibrosa Spectrogram/LogmelFilterBank) -> [frames, 64]."""
    # torchlibrosa Spectrogram(power=2.0) -> [freqs, frames]
    stft = librosa.stft(y, n_fft=1024, hop_length=320, win_length=1024, window="hann", center=True, pad_mode="reflect")
    spec = np.abs(stft) ** 2
    # LogmelFilterBank.melW -> [freqs, mels]
    mel_w = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    mel = spec.T @ mel_w
    ref, amin = 1.0, 1e-10
    return 10.0 * np.log10(np.clip(mel, amin, np.inf)) - 10.0 * np.log10(np.maximum(amin, ref))


def sfx_cnn9_reference(y: np.ndarray) -> np.ndarray:
    """aisfx spectrogram_librosa.compute_spectrogram + spectrogram_normalize('original') -> [frames, 96]."""
    f_norm = np.max(np.abs(y))
    if f_norm == 0:
        f_norm = 1
    y = y / f_norm
    spec = librosa.feature.melspectrogram(
        y=y,
        sr=44100,
        n_mels=96,
        norm=1.0,
        fmin=0.0,
        fmax=22050.0,
        htk=True,
        power=2.0,
        hop_length=1024,
        win_length=2048,
        # librosa 0.9.2's default (pinned by aisfx), spelled out in case the default ever moves.
        pad_mode="constant",
    )
    spec = np.log10(spec * 10000.0 + 1)
    mn, mx = 0, 9.457798957824707
    return ((spec - mn) / (mx - mn)).T


def snapkit_reference(y: np.ndarray) -> np.ndarray:
    """snapkit's own front end: 16 kHz, 32 ms hann windows every 10 ms, 64 Slaney bands 50-8000 Hz, dB."""
    spec = librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=512, hop_length=160, n_mels=64, fmin=50.0, fmax=8000.0, pad_mode="reflect"
    )
    return librosa.power_to_db(spec, ref=1.0, amin=1e-10, top_db=None).T


REFERENCES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "panns": panns_reference,
    "sfx-cnn9": sfx_cnn9_reference,
    "snapkit": snapkit_reference,
}
SIGNALS = ("chirp", "noise", "clicks", "tones")


def run(module: LogMel, y: np.ndarray, dtype: torch.dtype = torch.float64) -> np.ndarray:
    with torch.no_grad():
        out = module(torch.from_numpy(y).to(dtype)[None])
    return out[0].double().numpy()


def output_scale(ref: np.ndarray) -> float:
    """Typical size of the outputs (about 100 for dB, about 1 for sfx-cnn9), to scale absolute tolerances."""
    return float(np.abs(ref).max())


def distance_below_peak_db(config: FrontEndConfig, out: np.ndarray) -> np.ndarray:
    """How far (in dB of mel power) each value lies below its example's loudest band and frame."""
    if config.compression == "db":
        return out.max() - out
    mel = np.expm1(out * config.output_divisor * np.log(10.0)) / config.log1p_scale
    return 10.0 * np.log10(mel.max() / np.maximum(mel, 1e-300))


@pytest.fixture(scope="module")
def modules() -> dict[str, LogMel]:
    return {name: LogMel(config) for name, config in PRESETS.items()}


@pytest.fixture(scope="module")
def signals() -> dict[str, dict[str, np.ndarray]]:
    return {name: make_signals(config.sample_rate_hz) for name, config in PRESETS.items()}


# --- Mel filterbank. --------------------------------------------------------------------------------


@pytest.mark.parametrize("htk", [False, True], ids=["slaney-scale", "htk-scale"])
@pytest.mark.parametrize("norm", ["slaney", None, 1.0, 2], ids=["slaney-norm", "no-norm", "l1", "l2"])
@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax"),
    [(32000, 1024, 64, 50.0, 14000.0), (44100, 2048, 96, 0.0, 22050.0), (16000, 400, 40, 20.0, None)],
)
def test_filterbank_matches_librosa(
    htk: bool, norm: str | float | None, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> None:
    scale = "htk" if htk else "slaney"
    ref64 = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm, dtype=np.float64
    ).T
    ours64 = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, scale, norm, dtype=torch.float64)
    assert ours64.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(ours64.numpy(), ref64, rtol=1e-12, atol=1e-12 * ref64.max())

    # The float32 default: librosa rounds to float32 part-way through, so allow a few float32 ulps.
    ours32 = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, scale, norm)
    assert ours32.dtype == torch.float32
    ref32 = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm).T
    np.testing.assert_allclose(ours32.numpy(), ref32, rtol=1e-6, atol=1e-6 * ref32.max())


def test_filterbank_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match="mel scale"):
        mel_filterbank(16000, 512, 64, 0.0, None, "bark", "slaney")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mel norm"):
        mel_filterbank(16000, 512, 64, 0.0, None, "slaney", "area")
    with pytest.raises(ValueError, match="fmin_hz < fmax_hz"):
        mel_filterbank(16000, 512, 64, 9000.0, 8000.0)


# --- Each preset against its original front end. --------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_matches_original_float64(preset: str, signal: str, modules, signals) -> None:
    y = signals[preset][signal]
    ref = REFERENCES[preset](y)
    ours = run(modules[preset], y, torch.float64)
    assert ours.shape == ref.shape
    # Relative agreement on the log values themselves; the tiny atol only matters for log1p values near 0.
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-8 * output_scale(ref))


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_float32_precision(preset: str, signal: str, modules, signals) -> None:
    """float32 FFT round-off is relative to the loudest bins, so quiet bands get looser absolute bounds.

    Bands 100+ dB under the example's peak (only chirps and tones have them) sit at float32's noise floor,
    within ~0.1 dB of the -100 dB amin floor; they are not compared.
    """
    y = signals[preset][signal]
    ref = REFERENCES[preset](y)
    ours = run(modules[preset], y, torch.float32)
    scale = output_scale(ref)
    below_peak = distance_below_peak_db(PRESETS[preset], ref)
    near = below_peak <= 60.0
    np.testing.assert_allclose(ours[near], ref[near], rtol=1e-4, atol=1e-5 * scale)
    audible = below_peak <= 100.0
    np.testing.assert_allclose(ours[audible], ref[audible], rtol=1e-4, atol=5e-4 * scale)


# --- Behaviour. --------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_batch_rows_equal_single_runs(preset: str, modules, signals) -> None:
    module = modules[preset]
    batch = np.stack([signals[preset][name] for name in SIGNALS])
    with torch.no_grad():
        together = module(torch.from_numpy(batch))
    assert together.shape[0] == len(SIGNALS)
    for row, name in enumerate(SIGNALS):
        alone = run(module, signals[preset][name])
        np.testing.assert_allclose(together[row].numpy(), alone, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("num_samples", [1024, 1025, 5000, 16000, 16159, 16160])
def test_num_frames_matches_output(center: bool, num_samples: int) -> None:
    module = LogMel(FrontEndConfig(**{**SNAPKIT.to_dict(), "center": center}))
    out = module(torch.randn(2, num_samples, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, module.num_frames(num_samples), SNAPKIT.n_mels)
    expected = 1 + num_samples // 160 if center else 1 + (num_samples - 512) // 160
    assert module.num_frames(num_samples) == expected


def test_hop_s_and_preset_lookup() -> None:
    assert LogMel(SNAPKIT).hop_s == pytest.approx(0.010)
    assert LogMel(PANNS).hop_s == pytest.approx(0.010)
    assert get_preset("sfx-cnn9") is SFX_CNN9
    with pytest.raises(SnapkitError, match="Unknown front-end preset"):
        get_preset("vggish")


@pytest.mark.parametrize("shape", [(16000,), (1, 1, 16000)])
def test_input_must_be_batch_by_samples(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        LogMel(SNAPKIT)(torch.zeros(shape))


def test_rejects_integer_and_too_short_input() -> None:
    module = LogMel(SNAPKIT)
    with pytest.raises(ValueError, match="float"):
        module(torch.zeros(1, 16000, dtype=torch.int16))
    with pytest.raises(ValueError, match="at least 257 samples"):
        module(torch.randn(1, 100))


def test_top_db_clips_each_example_like_librosa(signals) -> None:
    config = FrontEndConfig(**{**SNAPKIT.to_dict(), "top_db": 40.0})
    loud, quiet = signals["snapkit"]["tones"], 1e-3 * signals["snapkit"]["chirp"]
    with torch.no_grad():
        out = LogMel(config)(torch.from_numpy(np.stack([loud, quiet]))).numpy()
    for row, y in enumerate([loud, quiet]):
        spec = librosa.feature.melspectrogram(
            y=y, sr=16000, n_fft=512, hop_length=160, n_mels=64, fmin=50.0, fmax=8000.0, pad_mode="reflect"
        )
        ref = librosa.power_to_db(spec, ref=1.0, amin=1e-10, top_db=40.0).T
        np.testing.assert_allclose(out[row], ref, rtol=1e-4, atol=1e-6)
        # The floor is 40 dB under this example's own peak, not the batch's, and it is reached.
        assert out[row].min() == pytest.approx(out[row].max() - 40.0)


@pytest.mark.parametrize("signal", ["chirp", "clicks"])
def test_peak_normalisation_makes_output_scale_invariant(signal: str, modules, signals) -> None:
    y = signals["sfx-cnn9"][signal]
    batch = torch.from_numpy(np.stack([y, 0.01 * y, -3.0 * y]))
    with torch.no_grad():
        out = modules["sfx-cnn9"](batch).numpy()
    np.testing.assert_allclose(out[1], out[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out[2], out[0], rtol=1e-10, atol=1e-12)


def test_peak_normalisation_leaves_silence_finite(modules) -> None:
    with torch.no_grad():
        out = modules["sfx-cnn9"](torch.zeros(1, 44100))
    assert torch.equal(out, torch.zeros_like(out))


def test_buffers_follow_module_and_stay_out_of_checkpoints() -> None:
    module = LogMel(PANNS)
    assert module.state_dict() == {}
    assert {name for name, _ in module.named_buffers()} == {"window", "mel_weights"}
    assert module.mel_weights.shape == (PANNS.n_fft // 2 + 1, PANNS.n_mels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(signals) -> None:
    module = LogMel(PANNS)
    y = torch.from_numpy(signals["panns"]["noise"]).float()[None]
    with torch.no_grad():
        cpu = module(y)
        gpu = module.to("cuda")(y.to("cuda")).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-3)
