"""Triangular mel filterbanks, numerically identical to ``librosa.filters.mel``, without needing librosa."""

from __future__ import annotations

import math

import torch

from snapkit.features.config import MelScale

# Slaney's Auditory Toolbox scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above it.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz: torch.Tensor, mel_scale: MelScale = "slaney") -> torch.Tensor:
    """Frequencies in Hz to mels on the Slaney (librosa's default) or HTK scale."""
    if mel_scale == "htk":
        return 2595.0 * torch.log10(1.0 + hz / 700.0)
    if mel_scale != "slaney":
        raise ValueError(f"Unknown mel scale {mel_scale!r}: use 'slaney' or 'htk'.")
    linear = hz / _SLANEY_HZ_PER_MEL
    # clamp keeps log() finite on the linear branch, whose value torch.where discards anyway.
    log = _SLANEY_BREAK_MEL + torch.log(hz.clamp(min=_SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return torch.where(hz >= _SLANEY_BREAK_HZ, log, linear)


def mel_to_hz(mel: torch.Tensor, mel_scale: MelScale = "slaney") -> torch.Tensor:
    """Mels on the Slaney or HTK scale to frequencies in Hz (the inverse of ``hz_to_mel``)."""
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if mel_scale != "slaney":
        raise ValueError(f"Unknown mel scale {mel_scale!r}: use 'slaney' or 'htk'.")
    linear = mel * _SLANEY_HZ_PER_MEL
    log = _SLANEY_BREAK_HZ * torch.exp(_SLANEY_LOG_STEP * (mel - _SLANEY_BREAK_MEL))
    return torch.where(mel >= _SLANEY_BREAK_MEL, log, linear)


def mel_filterbank(
    sample_rate_hz: int,
    n_fft: int,
    n_mels: int,
    fmin_hz: float = 0.0,
    fmax_hz: float | None = None,
    mel_scale: MelScale = "slaney",
    mel_norm: str | float | None = "slaney",
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Weights of ``n_mels`` triangular filters over the ``n_fft // 2 + 1`` bins of a one-sided spectrum.

    Same construction as ``librosa.filters.mel``: band edges equally spaced in mels between ``fmin_hz`` and
    ``fmax_hz`` (Nyquist when None), triangles drawn in Hz, then normalised by ``mel_norm``:

    - ``"slaney"``: each triangle scaled by ``2 / bandwidth_hz`` (constant area, librosa's default);
    - ``None``: peak 1, no scaling;
    - a number ``p`` (``math.inf`` allowed): each filter scaled to unit l_p norm (``norm=p`` in librosa).

    Computed in float64 and returned as ``dtype``.

    Returns:
        Tensor ``[n_fft // 2 + 1, n_mels]``, so ``power_spectrum [..., freqs] @ weights -> [..., mels]``.
    """
    if fmax_hz is None:
        fmax_hz = sample_rate_hz / 2.0
    if not 0.0 <= fmin_hz < fmax_hz:
        raise ValueError(f"Mel filters need 0 <= fmin_hz < fmax_hz, got fmin_hz={fmin_hz}, fmax_hz={fmax_hz}.")
    f64 = torch.float64
    fft_hz = torch.linspace(0.0, sample_rate_hz / 2.0, n_fft // 2 + 1, dtype=f64)
    mel_edges = torch.linspace(
        float(hz_to_mel(torch.tensor(fmin_hz, dtype=f64), mel_scale)),
        float(hz_to_mel(torch.tensor(fmax_hz, dtype=f64), mel_scale)),
        n_mels + 2,
        dtype=f64,
    )
    edges_hz = mel_to_hz(mel_edges, mel_scale)  # [n_mels + 2]: lower edge, centre, upper edge of each filter

    widths = torch.diff(edges_hz)  # [n_mels + 1]
    ramps = edges_hz[:, None] - fft_hz[None, :]  # [n_mels + 2, freqs]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)  # [n_mels, freqs]

    if isinstance(mel_norm, str):
        if mel_norm != "slaney":
            raise ValueError(f"Unknown mel norm {mel_norm!r}: use 'slaney', None or a number p > 0.")
        weights = weights * (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    elif mel_norm is not None:
        p = float(mel_norm)
        if not p > 0:
            raise ValueError(f"A numeric mel norm must be a number p > 0 (or math.inf), got {mel_norm!r}.")
        lengths = weights.amax(dim=1) if math.isinf(p) else weights.pow(p).sum(dim=1).pow(1.0 / p)
        # librosa leaves (near-)empty filters as they are instead of dividing by ~0.
        lengths = torch.where(lengths < torch.finfo(f64).tiny, torch.ones_like(lengths), lengths)
        weights = weights / lengths[:, None]

    return weights.T.contiguous().to(dtype)
