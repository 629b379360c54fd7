"""Random changes to training clips, so a handful of recordings teach a sound rather than those recordings.

Two stages:

- **Waveform** (:func:`augment_waveform`): where the sound sits in the clip window, its gain, and a background
  mixed in at a random signal-to-noise ratio. Runs in the data loader for the ConvNet, and once per cached view
  for heads on a frozen backbone (the backbone is too slow to run on every step).
- **Features** (:class:`SpecAugment`): bands and frame spans of ``[batch, frames, features]`` masked inside the
  model, in training mode only.

The *active part* of a sound is its 10 ms frames within 20 dB of its loudest frame, the rule
``snapkit.eval.synth.active_power`` uses to plant events, so "mixed at 0 dB" means the same in synthetic data and in
augmentation: a 50 ms snap mixed at 0 dB is as loud as the background while it sounds, not 16 dB quieter as a
whole-clip SNR would make it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import torch

from snapkit.audio.levels import ACTIVE_FRAME_S, active_power, frame_powers, sound_span
from snapkit.errors import SnapkitError
from snapkit.files import jsonable

# A clip's noise floor is the power of its quietest frames: this percentile of its 10 ms frame powers.
NOISE_FLOOR_PERCENTILE = 10.0
# Windows holding at least this share of the loudest window's energy hold the same sound (see loudest_offset).
_SAME_SOUND_ENERGY = 0.95

NoiseColor = Literal["pink", "white"]


@dataclass(frozen=True)
class AugmentConfig:
    """How training clips are varied. Saved beside a trained model, so it records how the model was taught.

    Attributes:
        enabled: Master switch; off means every clip is used as recorded (its loudest window).
        time_shift: Move the sound to a random place inside the clip window (kept whole, never wrapped round).
        gain_db: Range of a random gain (dB), drawn uniformly.
        mix_background_prob: Chance (0-1) that a view gets a background clip mixed in.
        mix_snr_db: Range of the mixing SNR (dB), measured on the clip's active part.
        spec_freq_masks: Feature bands masked per example by SpecAugment.
        spec_freq_width: Widest such band (feature bins: mel bands for the ConvNet).
        spec_time_masks: Frame spans masked per example by SpecAugment.
        spec_time_width_frac: Widest such span, as a fraction of the frames.
        views_per_clip: Views cached per clip for heads on a frozen backbone: one clean, the rest augmented.
        mix_generated_noise: Mix generated pink or white noise when there are no background clips to mix. Heads
            on a frozen backbone train without it: on real kitchen20 recordings (20 classes, 5 clips each) it cost
            the sfx-cnn9 head 0.07 accuracy (0.53 against 0.60 without augmentation).
    """

    enabled: bool = True
    time_shift: bool = True
    gain_db: tuple[float, float] = (-6.0, 6.0)
    mix_background_prob: float = 0.6
    mix_snr_db: tuple[float, float] = (0.0, 20.0)
    spec_freq_masks: int = 2
    spec_freq_width: int = 8
    spec_time_masks: int = 2
    spec_time_width_frac: float = 0.05
    # 2: the clip head reads only the clean view (snapkit.training.headfit.HeadFitSettings.clip_views) and the frame
    # head the rest; each view costs a backbone pass when a clip is first embedded (about 16 s for 250 clips of 5 s
    # with sfx-cnn9 on 2 cores), so 8 made a cold run of 250 clips take two minutes of embedding.
    views_per_clip: int = 4
    mix_generated_noise: bool = True

    def __post_init__(self) -> None:
        for name in ("gain_db", "mix_snr_db"):
            low, high = getattr(self, name)
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise SnapkitError(f"Augmentation setting {name} must be a (low, high) pair in dB with low <= high.")
        if not 0.0 <= self.mix_background_prob <= 1.0:
            raise SnapkitError("Augmentation setting mix_background_prob must be between 0 and 1.")
        for name in ("spec_freq_masks", "spec_freq_width", "spec_time_masks"):
            if getattr(self, name) < 0:
                raise SnapkitError(f"Augmentation setting {name} must be 0 or more.")
        if not 0.0 <= self.spec_time_width_frac <= 1.0:
            raise SnapkitError("Augmentation setting spec_time_width_frac must be between 0 and 1.")
        if self.views_per_clip < 1:
            raise SnapkitError("Augmentation setting views_per_clip must be at least 1.")

    def describe(self) -> list[str]:
        """Short lines for the training plan printout: what is on, with units."""
        if not self.enabled:
            return ["off (every clip used as recorded)"]
        lines = ["time shift (sound moved inside the clip window, kept whole)" if self.time_shift else "no time shift"]
        low, high = self.gain_db
        lines.append(f"gain {low:+g} to {high:+g} dB" if (low, high) != (0.0, 0.0) else "no gain change")
        if self.mix_background_prob > 0:
            low, high = self.mix_snr_db
            source = "" if self.mix_generated_noise else " (your background clips only, none without them)"
            lines.append(
                f"background mixed into {self.mix_background_prob:.0%} of views at {low:g} to {high:g} dB SNR "
                f"(on the sound's active part){source}"
            )
        else:
            lines.append("no background mixing")
        masks = []
        if self.spec_freq_masks and self.spec_freq_width:
            masks.append(f"{self.spec_freq_masks} band masks of up to {self.spec_freq_width} bins")
        if self.spec_time_masks and self.spec_time_width_frac > 0:
            masks.append(f"{self.spec_time_masks} time masks of up to {self.spec_time_width_frac:.0%} of the frames")
        lines.append("SpecAugment " + " and ".join(masks) if masks else "no SpecAugment")
        lines.append(f"{self.views_per_clip} cached views per clip for backbone heads (1 clean)")
        return lines

    def view_settings(self) -> dict[str, Any]:
        """The settings that change a cached view's waveform (the embedding cache keys on these).

        SpecAugment acts later, on features, and ``views_per_clip`` only says how many views are kept: view ``k``
        is the same whatever the count, so a longer list of views extends a shorter one.
        """
        names = ("enabled", "time_shift", "gain_db", "mix_background_prob", "mix_snr_db")
        settings = {name: jsonable(getattr(self, name)) for name in names}
        if not self.mix_generated_noise:  # only when off, so the keys of views cached before it existed still hold
            settings["mix_generated_noise"] = False
        return settings

    def to_dict(self) -> dict[str, Any]:
        return {key: jsonable(value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AugmentConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SnapkitError(
                f"Unknown augmentation settings {', '.join(unknown)}; this model may need a newer snapkit."
            )
        # JSON turns tuples into lists; the dataclass is frozen and hashable only with tuples.
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# ----------------------------------------------------------------------------------------------------
# Levels


def active_span(audio: np.ndarray, sample_rate_hz: int) -> tuple[int, int]:
    """Samples ``[start, end)`` of the sound in ``audio`` (:func:`snapkit.audio.levels.sound_span`: frames that rise
    above the clip's own noise, frequency by frequency); the whole clip if silent.

    Plain frame energy within 20 dB of the loudest frame marked nearly every generated 2 s clip as sound from end to
    end (median span 2.0 s for snaps), so random placement could hardly move a sound.
    """
    try:
        return sound_span(audio, sample_rate_hz)
    except ValueError:
        return 0, len(audio)


def noise_floor_rms(audio: np.ndarray, sample_rate_hz: int) -> float:
    """RMS amplitude of the quietest frames of ``audio`` (its ``NOISE_FLOOR_PERCENTILE`` frame power)."""
    powers = frame_powers(audio, sample_rate_hz)
    return float(np.sqrt(np.percentile(powers, NOISE_FLOOR_PERCENTILE))) if len(powers) else 0.0


# ----------------------------------------------------------------------------------------------------
# Fitting a clip to the model's window


def loudest_offset(audio: np.ndarray, window_samples: int) -> int:
    """Start of the ``window_samples`` window of ``audio`` ``[samples]`` that holds the most energy.

    A clip recorded after a countdown may hold its sound anywhere, so the loudest window, not the centre, is the
    one that holds the sound. Every window containing a short sound is nearly as loud as the loudest, so among the
    run of windows around the loudest that hold at least 95 % of its energy, the one whose centre is nearest the
    energy centroid of the audio those windows span is taken: the sound lands near the middle rather than at an
    edge. Silence gives the centred window; 0 when the clip fits.
    """
    n = len(audio)
    if n <= window_samples:
        return 0
    cumulative = np.concatenate(([0.0], np.cumsum(np.square(audio, dtype=np.float64))))
    energy = cumulative[window_samples:] - cumulative[: n - window_samples + 1]  # [n - window + 1]
    best = int(np.argmax(energy))
    if energy[best] <= 0:
        return (n - window_samples) // 2
    loud = energy >= _SAME_SOUND_ENERGY * energy[best]
    start = best
    while start > 0 and loud[start - 1]:
        start -= 1
    end = best
    while end + 1 < len(loud) and loud[end + 1]:
        end += 1
    power = np.square(audio[start : end + window_samples], dtype=np.float64)
    centroid = start + float(np.dot(np.arange(len(power)), power) / power.sum())
    return int(min(max(round(centroid - window_samples / 2), start), end))


def fit_to_length(clip: np.ndarray, clip_samples: int, offset: int | None = None) -> np.ndarray:
    """``clip`` ``[samples]`` cropped or zero-padded to ``[clip_samples]`` float32 (a new array).

    Args:
        clip: mono audio.
        clip_samples: output length.
        offset: for a longer clip, the first sample kept; for a shorter one, where its first sample goes. ``None``
            (evaluation) keeps the loudest window of a longer clip (:func:`loudest_offset`) and centres a
            shorter one. Out-of-range offsets are clamped.
    """
    clip = np.asarray(clip, dtype=np.float32)
    n = len(clip)
    if n >= clip_samples:
        start = loudest_offset(clip, clip_samples) if offset is None else min(max(offset, 0), n - clip_samples)
        return clip[start : start + clip_samples].copy()
    place = (clip_samples - n) // 2 if offset is None else min(max(offset, 0), clip_samples - n)
    out = np.zeros(clip_samples, dtype=np.float32)
    out[place : place + n] = clip
    return out


# ----------------------------------------------------------------------------------------------------
# Noise and mixing


def generate_noise(rng: np.random.Generator, num_samples: int, color: NoiseColor = "pink") -> np.ndarray:
    """Gaussian noise of unit RMS, ``[num_samples]`` float32: white (flat) or pink (-3 dB/octave, no DC)."""
    white = rng.standard_normal(num_samples)
    if color == "pink" and num_samples > 2:
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(num_samples)
        scale = np.zeros_like(freqs)
        scale[1:] = 1.0 / np.sqrt(freqs[1:])
        noise = np.fft.irfft(spectrum * scale, n=num_samples)
    elif color in ("pink", "white"):
        noise = white
    else:
        raise ValueError(f"Unknown noise color {color!r}; use 'pink' or 'white'.")
    rms = float(np.sqrt(np.mean(noise**2))) if num_samples else 0.0
    return (noise / rms if rms > 0 else noise).astype(np.float32)


def mix_at_snr(target: np.ndarray, background: np.ndarray, snr_db: float, sample_rate_hz: int) -> np.ndarray:
    """``target + g * background`` (both ``[samples]``, same length) with ``g`` set so that the active power of
    ``target`` over the mean power of ``g * background`` is ``snr_db`` dB. A silent target gets the background at
    its own level; a silent background changes nothing. Float32 out, not clipped."""
    if len(target) != len(background):
        raise ValueError(f"target and background lengths differ: {len(target)} != {len(background)}")
    target = np.asarray(target, dtype=np.float32)
    background_power = float(np.mean(np.square(background, dtype=np.float64))) if len(background) else 0.0
    if background_power <= 0:
        return target.copy()
    target_power = active_power(target, sample_rate_hz)
    gain = math.sqrt(target_power / (background_power * 10 ** (snr_db / 10))) if target_power > 0 else 1.0
    return (target + gain * np.asarray(background, dtype=np.float32)).astype(np.float32)


def _is_same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and np.may_share_memory(a, b))


def _background_segment(
    rng: np.random.Generator, pool: Sequence[np.ndarray], num_samples: int
) -> tuple[np.ndarray, int]:
    """``([num_samples], k)``: a stretch of clip ``k`` of ``pool`` at a random offset (looped if shorter: backgrounds
    are steady sounds), or generated pink or white noise of unit RMS and ``k = -1`` when ``pool`` is empty."""
    if not pool:
        color: NoiseColor = "pink" if rng.random() < 0.5 else "white"
        return generate_noise(rng, num_samples, color), -1
    k = int(rng.integers(len(pool)))
    background = np.asarray(pool[k], dtype=np.float32)
    if len(background) >= num_samples:
        start = int(rng.integers(len(background) - num_samples + 1))
        return background[start : start + num_samples], k
    start = int(rng.integers(len(background)))
    return np.tile(background, num_samples // len(background) + 2)[start : start + num_samples], k


def _place_randomly(
    clip: np.ndarray,
    rng: np.random.Generator,
    clip_samples: int,
    sample_rate_hz: int,
    pool: Sequence[np.ndarray],
    used: list[int] | None = None,
) -> np.ndarray:
    """``clip`` at a random position in a ``[clip_samples]`` window, its active span kept whole (or, for a sound
    longer than the window, its loudest frame); nothing wraps round.

    The part of the window the clip does not cover is filled with background at the clip's own noise floor, not
    zeros: digital silence never comes out of a microphone, and a model could learn that it means "no sound".
    """
    n = len(clip)
    start, end = active_span(clip, sample_rate_hz)
    if end - start > clip_samples:
        frame = max(1, round(ACTIVE_FRAME_S * sample_rate_hz))
        loudest = int(np.argmax(frame_powers(clip, sample_rate_hz)))
        start, end = loudest * frame, min(n, (loudest + 1) * frame)
    # ``position`` is where clip[0] lands in the window; negative positions crop the clip's start.
    low, high = -start, clip_samples - end
    if low > high:
        return fit_to_length(clip, clip_samples)
    position = int(rng.integers(low, high + 1))
    source = max(0, -position)
    dest = max(0, position)
    count = min(n - source, clip_samples - dest)
    out = np.zeros(clip_samples, dtype=np.float32)
    out[dest : dest + count] = clip[source : source + count]
    floor = noise_floor_rms(clip, sample_rate_hz)
    if floor > 0 and (dest > 0 or dest + count < clip_samples):
        filler, k = _background_segment(rng, pool, clip_samples)
        if used is not None and k >= 0:
            used.append(k)
        filler_rms = float(np.sqrt(np.mean(np.square(filler, dtype=np.float64))))
        if filler_rms > 0:
            filler = filler * np.float32(floor / filler_rms)
            out[:dest] = filler[:dest]
            out[dest + count :] = filler[dest + count :]
    return out


def augment_waveform(
    clip: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    clip_samples: int,
    backgrounds: Sequence[np.ndarray],
    *,
    sample_rate_hz: int,
    used: list[int] | None = None,
) -> np.ndarray:
    """One random training view of ``clip``: placed, gained and maybe mixed with background -> ``[clip_samples]``
    float32.

    Steps, each drawn from ``rng`` (so a seed gives the same view): time shift (:func:`_place_randomly`) or, with
    ``time_shift`` off, the loudest window; a gain from ``cfg.gain_db``; with probability
    ``cfg.mix_background_prob`` a random stretch of a random ``backgrounds`` clip (or, with
    ``cfg.mix_generated_noise``, generated pink/white noise when there is none) mixed at an SNR from
    ``cfg.mix_snr_db``, measured on the clip's active part after the gain. If the result would clip, it is scaled
    down to peak 1.0 (the SNR is kept).

    Args:
        clip: mono audio ``[samples]`` at ``sample_rate_hz``.
        rng: source of all randomness.
        cfg: augmentation settings; ``enabled=False`` gives :func:`fit_to_length` (loudest window).
        clip_samples: output length.
        backgrounds: background clips ``[samples_i]`` to mix from. ``clip`` itself (the same array) is never
            mixed into itself, so callers may pass every background clip, ``clip`` included.
        sample_rate_hz: rate of ``clip``; sets the 10 ms frames that find the active part.
        used: when given, the indices into ``backgrounds`` of every clip this view took audio from are appended
            (so cross-validation can leave out views that heard a held-out background clip).
    """
    kept = [k for k, b in enumerate(backgrounds) if len(b) and not _is_same_array(b, clip)]
    pool = [backgrounds[k] for k in kept]
    heard: list[int] = []
    clip = np.asarray(clip, dtype=np.float32)
    if not cfg.enabled:
        return fit_to_length(clip, clip_samples)
    if cfg.time_shift:
        out = _place_randomly(clip, rng, clip_samples, sample_rate_hz, pool, heard)
    else:
        out = fit_to_length(clip, clip_samples)
    out *= np.float32(10 ** (rng.uniform(*cfg.gain_db) / 20))
    if rng.random() < cfg.mix_background_prob and (pool or cfg.mix_generated_noise):
        segment, k = _background_segment(rng, pool, clip_samples)
        if k >= 0:
            heard.append(k)
        out = mix_at_snr(out, segment, float(rng.uniform(*cfg.mix_snr_db)), sample_rate_hz)
    peak = float(np.max(np.abs(out))) if len(out) else 0.0
    if peak > 1.0:
        out /= np.float32(peak)
    if used is not None:
        used.extend(kept[k] for k in heard)
    return out.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------------
# SpecAugment


class SpecAugment(torch.nn.Module):
    """SpecAugment masks (Park et al. 2019) on features ``[batch, frames, features]``, in training mode only.

    Each example gets ``freq_masks`` bands of ``0..freq_width`` feature bins and ``time_masks`` spans of
    ``0..round(time_width_frac * frames)`` frames (widths and positions drawn per example and mask), set to that
    example's mean: the inputs are log-scale (dB), where zero is a loud level, not silence. For the ConvNet the
    features are mel bands; on a backbone's frames the band masks drop feature channels.
    """

    def __init__(
        self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width_frac: float = 0.05
    ) -> None:
        super().__init__()
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width_frac = time_width_frac

    @classmethod
    def from_config(cls, cfg: AugmentConfig) -> SpecAugment:
        if not cfg.enabled:
            return cls(0, 0, 0, 0.0)
        return cls(cfg.spec_freq_masks, cfg.spec_freq_width, cfg.spec_time_masks, cfg.spec_time_width_frac)

    def forward(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``features`` ``[batch, frames, features]`` -> same shape; unchanged (the same tensor) in eval mode.

        ``generator`` (a CPU generator) makes the masks reproducible, e.g. in tests.
        """
        if not self.training:
            return features
        batch, frames, dims = features.shape
        time_width = min(frames, round(self.time_width_frac * frames))
        band = _band_masks(batch, dims, self.freq_masks, min(self.freq_width, dims), generator)  # [batch, dims]
        span = _band_masks(batch, frames, self.time_masks, time_width, generator)  # [batch, frames]
        mask = (span[:, :, None] | band[:, None, :]).to(features.device)
        if not mask.any():
            return features
        mean = features.mean(dim=(1, 2), keepdim=True).detach()
        return torch.where(mask, mean.expand_as(features), features)

    def extra_repr(self) -> str:
        return (
            f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, time_masks={self.time_masks}, "
            f"time_width_frac={self.time_width_frac}"
        )


def _band_masks(batch: int, size: int, count: int, max_width: int, generator: torch.Generator | None) -> torch.Tensor:
    """``[batch, size]`` bool: per row, ``count`` runs of ``0..max_width`` consecutive True at random places."""
    if count <= 0 or max_width <= 0 or size <= 0:
        return torch.zeros(batch, size, dtype=torch.bool)
    widths = torch.randint(0, max_width + 1, (batch, count), generator=generator)
    starts = (torch.rand(batch, count, generator=generator) * (size - widths + 1)).long()
    positions = torch.arange(size)
    inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])  # [batch, count, size]
    return inside.any(dim=1)
