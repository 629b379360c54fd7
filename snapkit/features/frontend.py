"""The log-mel front end as a torch module: waveform batch in, log-mel frames out."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from snapkit.features.config import FrontEndConfig
from snapkit.features.mel import mel_filterbank

# Periodic ("DFT-even") windows, as librosa/scipy ``get_window(name, n, fftbins=True)`` builds them.
_WINDOWS: dict[str, Callable[..., torch.Tensor]] = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
}
# librosa pad_mode -> torch.nn.functional.pad mode (numpy and torch name "edge" padding differently).
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


class LogMel(torch.nn.Module):
    """Log-mel spectrogram of a batch of mono waveforms, as set by a ``FrontEndConfig``.

    The steps, each matching librosa (and torchlibrosa for PANNs) to floating-point precision:

    1. optionally divide each waveform by its own peak ``max |x|`` (silent waveforms are left as they are);
    2. frame it every ``hop_length`` samples with a periodic ``window`` zero-padded to ``n_fft`` samples; with
       ``center`` the waveform is first padded by ``n_fft // 2`` samples at each end with ``pad_mode``, so
       frame ``t`` is centred on sample ``t * hop_length``;
    3. ``|FFT| ** power`` (power spectrum for ``power=2``), projected on the mel filterbank;
    4. compress: ``"db"`` gives ``10 * log10(max(S, amin))`` in dB (re 1.0), floored at each example's
       maximum minus ``top_db`` when set; ``"log1p"`` gives ``log10(1 + log1p_scale * S)``;
    5. divide by ``output_divisor``.

    Computation runs in the waveform's dtype (float32 or float64; half precision is computed in float32) on
    the waveform's device; the window and filterbank are non-persistent buffers, so ``.to(device)`` moves them
    and they are rebuilt from the config rather than saved in checkpoints.
    """

    window: torch.Tensor
    mel_weights: torch.Tensor

    def __init__(self, config: FrontEndConfig) -> None:
        super().__init__()
        self.config = config
        win_length = config.win_length or config.n_fft
        if not 0 < win_length <= config.n_fft:
            raise ValueError(f"win_length must be between 1 and n_fft={config.n_fft}, got {win_length}.")
        if config.hop_length <= 0:
            raise ValueError(f"hop_length must be a positive number of samples, got {config.hop_length}.")
        if config.window not in _WINDOWS:
            raise ValueError(f"Unsupported window {config.window!r}: use one of {', '.join(sorted(_WINDOWS))}.")
        if config.center and config.pad_mode not in _PAD_MODES:
            raise ValueError(f"Unsupported pad_mode {config.pad_mode!r}: use one of {', '.join(sorted(_PAD_MODES))}.")
        if config.compression not in ("db", "log1p"):
            raise ValueError(f"Unknown compression {config.compression!r}: use 'db' or 'log1p'.")
        if config.top_db is not None and config.top_db < 0:
            raise ValueError(f"top_db must be non-negative or None, got {config.top_db}.")

        # Built and kept in float64 so float64 inputs are exact; forward() casts them to the input's dtype.
        window = _WINDOWS[config.window](win_length, periodic=True, dtype=torch.float64)
        left = (config.n_fft - win_length) // 2  # centred inside the FFT frame, like librosa.util.pad_center
        window = F.pad(window, (left, config.n_fft - win_length - left))
        self.register_buffer("window", window, persistent=False)
        weights = mel_filterbank(
            config.sample_rate_hz,
            config.n_fft,
            config.n_mels,
            config.fmin_hz,
            config.fmax_hz,
            config.mel_scale,
            config.mel_norm,
            dtype=torch.float64,
        )
        self.register_buffer("mel_weights", weights, persistent=False)  # [freqs, mels]

    @property
    def hop_s(self) -> float:
        """Seconds between the centres of two consecutive frames."""
        return self.config.hop_s

    @property
    def n_mels(self) -> int:
        """Number of mel bands, the last dimension of the output."""
        return self.config.n_mels

    def num_frames(self, num_samples: int) -> int:
        """Number of frames ``forward`` returns for waveforms of ``num_samples`` samples."""
        if self.config.center:
            return 1 + num_samples // self.config.hop_length
        return 1 + (num_samples - self.config.n_fft) // self.config.hop_length

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel frames of each waveform.

        Args:
            waveform: ``[batch, samples]`` mono float audio at ``config.sample_rate_hz``, nominally in
                [-1, 1].

        Returns:
            ``[batch, frames, mels]``, ``frames == num_frames(samples)``; dB (re 1.0) divided by
            ``output_divisor`` for ``"db"`` compression, ``log10(1 + log1p_scale * S) / output_divisor``
            for ``"log1p"``.
        """
        cfg = self.config
        if waveform.dim() != 2:
            raise ValueError(
                f"LogMel expects waveforms shaped [batch, samples], got shape {tuple(waveform.shape)}; "
                "add a batch dimension with waveform.unsqueeze(0) for a single clip."
            )
        if not waveform.is_floating_point():
            raise ValueError(
                f"LogMel expects float waveforms in [-1, 1], got dtype {waveform.dtype}; "
                "convert integer PCM to float (e.g. divide int16 by 32768) first."
            )
        num_samples = waveform.shape[-1]
        min_samples = self._min_samples()
        if num_samples < min_samples:
            raise ValueError(
                f"LogMel needs at least {min_samples} samples per waveform with these settings, got {num_samples}."
            )
        if waveform.dtype not in (torch.float32, torch.float64):
            waveform = waveform.float()  # torch.stft has no half-precision CPU kernel

        if cfg.peak_normalize:
            peak = waveform.abs().amax(dim=-1, keepdim=True)
            waveform = waveform / torch.where(peak > 0, peak, torch.ones_like(peak))

        if cfg.center:
            pad = cfg.n_fft // 2
            # F.pad's reflect/replicate modes want a channel dimension: [batch, 1, samples].
            waveform = F.pad(waveform[:, None, :], (pad, pad), mode=_PAD_MODES[cfg.pad_mode])[:, 0, :]
        out = self.from_padded(waveform)
        if cfg.compression == "db" and cfg.top_db is not None:
            # Per example over all its frames and bands, like librosa.power_to_db on one clip.
            floor = out.amax(dim=(1, 2), keepdim=True) - cfg.top_db / cfg.output_divisor
            out = torch.maximum(out, floor)
        return out

    def from_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """Log-mel frames of already padded (and, if configured, peak-normalised) waveforms, without ``top_db``.

        ``padded`` ``[batch, samples]`` float32/64 -> ``[batch, 1 + (samples - n_fft) // hop_length, mels]``.
        Frame ``t`` covers ``padded[:, t * hop_length : t * hop_length + n_fft]``; nothing depends on other
        frames, which is what lets :class:`snapkit.models.streaming.StreamingLogMel` compute a stream in pieces.
        """
        cfg = self.config
        dtype = padded.dtype
        spectrum = torch.stft(
            padded,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            window=self.window.to(dtype),
            center=False,  # any padding was done by the caller, with librosa's pad modes
            return_complex=True,
        )  # [batch, freqs, frames]
        # For power 2, |X|^2 as re^2 + im^2 is exact: no sqrt round trip.
        power = spectrum.real.square() + spectrum.imag.square() if cfg.power == 2.0 else spectrum.abs().pow(cfg.power)
        mel = power.transpose(1, 2) @ self.mel_weights.to(dtype)  # [batch, frames, mels]
        if cfg.compression == "db":
            out = 10.0 * torch.log10(mel.clamp(min=cfg.amin))
        else:
            # log1p keeps full precision for the many quiet bins where log10(1 + x) would round x away.
            out = torch.log1p(cfg.log1p_scale * mel) / math.log(10.0)
        if cfg.output_divisor != 1.0:
            out = out / cfg.output_divisor
        return out

    def _min_samples(self) -> int:
        """Fewest samples a waveform can have: one full frame, or enough to reflect the centring pad."""
        if not self.config.center:
            return self.config.n_fft
        if self.config.pad_mode == "reflect":
            return self.config.n_fft // 2 + 1
        return 1

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"sample_rate_hz={cfg.sample_rate_hz}, n_fft={cfg.n_fft}, hop_length={cfg.hop_length}, "
            f"n_mels={cfg.n_mels}, compression={cfg.compression!r}"
        )
