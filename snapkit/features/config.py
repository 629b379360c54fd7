"""Settings of a log-mel front end, and the named presets each model was trained with."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

MelScale = Literal["slaney", "htk"]
Compression = Literal["db", "log1p"]


@dataclass(frozen=True)
class FrontEndConfig:
    """Everything that decides the numbers a log-mel front end produces.

    The waveform is (optionally) peak-normalised, framed with a ``window`` of ``win_length`` samples every
    ``hop_length`` samples (centred frames, padded with ``pad_mode``), turned into a magnitude spectrum raised
    to ``power``, projected on ``n_mels`` triangular filters between ``fmin_hz`` and ``fmax_hz``, then
    compressed:

    - ``"db"``: ``10*log10(max(S, amin))``, clipped to ``max - top_db`` when ``top_db`` is set;
    - ``"log1p"``: ``log10(1 + log1p_scale * S)``.

    The result is divided by ``output_divisor``.
    """

    sample_rate_hz: int
    n_fft: int
    hop_length: int
    n_mels: int
    fmin_hz: float
    fmax_hz: float | None
    win_length: int | None = None
    window: str = "hann"
    center: bool = True
    pad_mode: str = "reflect"
    mel_scale: MelScale = "slaney"
    # "slaney" (area normalisation, librosa's default), None, or a number p: each filter gets unit l_p norm.
    mel_norm: str | float | None = "slaney"
    power: float = 2.0
    compression: Compression = "db"
    amin: float = 1e-10
    top_db: float | None = None
    log1p_scale: float = 1.0
    output_divisor: float = 1.0
    peak_normalize: bool = False

    @property
    def hop_s(self) -> float:
        """Seconds between two frames."""
        return self.hop_length / self.sample_rate_hz

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FrontEndConfig:
        return cls(**values)


# The official PANNs AudioSet checkpoints (Kong et al. 2020). Sources: qiuqiangkong/audioset_tagging_cnn
# pytorch/models.py (every CnnN builds torchlibrosa's Spectrogram + LogmelFilterBank with window='hann',
# center=True, pad_mode='reflect', ref=1.0, amin=1e-10, top_db=None), utils/config.py (sample_rate = 32000)
# and its runme.sh / README training command (--window_size=1024 --hop_size=320 --mel_bins=64 --fmin=50
# --fmax=14000); qiuqiangkong/torchlibrosa torchlibrosa/stft.py (periodic hann from librosa
# get_window(fftbins=True), n_fft // 2 padding on both sides, power 2, librosa.filters.mel defaults = Slaney
# scale and Slaney area norm, 10*log10(clamp(S, amin))).
PANNS = FrontEndConfig(
    sample_rate_hz=32_000,
    n_fft=1024,
    hop_length=320,
    n_mels=64,
    fmin_hz=50.0,
    fmax_hz=14_000.0,
    window="hann",
    center=True,
    pad_mode="reflect",
    mel_scale="slaney",
    mel_norm="slaney",
    power=2.0,
    compression="db",
    amin=1e-10,
    top_db=None,
)

# sfx-cnn9 (Ma & Lerch, ISMIR 2022, aisfx==0.1.2): see ../shared/models/README.md. This is aisfx's librosa
# front end. Sources in alisonbma/aiSFX: src/aisfx/inference.py (SAMPLE_RATE 44100, SPEC_BLOCK_LENGTH 2048,
# SPEC_HOP_LENGTH 1024, MEL_BINS 96, F_MIN 0, F_MAX 22050); src/aisfx/spectrogram/spectrogram_librosa.py
# (y / max|y| with 0 -> 1, librosa.feature.melspectrogram(norm=1.0, htk=True, power=2.0, win_length=2048) with
# n_fft, window, center and pad_mode left at their defaults: 2048, periodic 'hann', True, and - since librosa
# 0.9.0, changelog #1382 - zero padding 'constant'; pyproject.toml pins librosa==0.9.2; then
# log10(10000 * S + 1)); src/aisfx/preprocessing.py spectrogram_normalize('original'):
# (spec - 0) / 9.457798957824707.
# Caveat: the ISMIR checkpoint itself was trained on Essentia spectrograms (aisfx's default 'essentia' path,
# spectrogram_essentia.py), which differ slightly: no peak normalisation (EasyLoader's default replayGain
# -6 dB plus its +6 dB preamp scales by exactly 1.0), a symmetric hann window, Essentia's own HTK MelBands
# ('warping', 'unit_sum') and FrameCutter framing. aisfx documents its librosa path as "may yield lower
# results".
SFX_CNN9 = FrontEndConfig(
    sample_rate_hz=44_100,
    n_fft=2048,
    hop_length=1024,
    n_mels=96,
    fmin_hz=0.0,
    fmax_hz=22_050.0,
    window="hann",
    center=True,
    pad_mode="constant",
    mel_scale="htk",
    mel_norm=1.0,
    power=2.0,
    compression="log1p",
    log1p_scale=10_000.0,
    output_divisor=9.457798957824707,
    peak_normalize=True,
)

# snapkit's own ConvNet: 16 kHz, 32 ms windows every 10 ms, so events can be timed to about a hundredth
# of a second.
SNAPKIT = FrontEndConfig(
    sample_rate_hz=16_000,
    n_fft=512,
    hop_length=160,
    n_mels=64,
    fmin_hz=50.0,
    fmax_hz=8_000.0,
    center=True,
    pad_mode="reflect",
    mel_scale="slaney",
    mel_norm="slaney",
    power=2.0,
    compression="db",
    amin=1e-10,
    top_db=None,
)

PRESETS: dict[str, FrontEndConfig] = {"panns": PANNS, "sfx-cnn9": SFX_CNN9, "snapkit": SNAPKIT}


def get_preset(name: str) -> FrontEndConfig:
    """The front-end settings called ``name`` (one of ``PRESETS``)."""
    try:
        return PRESETS[name]
    except KeyError:
        from snapkit.errors import SnapkitError

        raise SnapkitError(f"Unknown front-end preset {name!r}: choose one of {', '.join(sorted(PRESETS))}.") from None
