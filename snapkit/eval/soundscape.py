"""Long test soundscapes: recordings of the target sounds planted over background recordings at known times and
signal-to-noise ratios, with the ground truth a detector is scored against (:mod:`snapkit.eval.scoring`).

Built from a user's own clips (``DATA/<label>/*.wav``, ideally ones the model never trained on, see
:func:`split_for_soundscapes`), so a detector is measured on real sounds in real rooms; :mod:`snapkit.eval.synth`
makes generated streams instead. How a soundscape is put together:

- **Background bed.** The background clips one after another, each pass through them in a new random order,
  joined by equal-power crossfades (``sin``/``cos`` fades: two unrelated recordings keep their level through the
  join, and nothing clicks), looped as often as the length needs.
- **Ground truth from the clip itself.** A clip holds its sound somewhere inside its own recorded quiet. The event
  is the clip's first to last *active* frame (:func:`event_span`): 5 ms frames that rise at least 6 dB above the
  clip's own noise, measured frequency by frequency so that room rumble and hum do not drown a snap, and within
  20 dB of the loudest frame. One clip gives one event; pauses inside it (the gaps of a beeping pattern) belong to
  the event.
- **Placing.** An event copies its clip's span plus up to ``pad_s`` of the clip either side, faded in and out over
  that padding, so the clip's own room sound neither starts nor stops with a step. Events are at least
  ``min_gap_s`` apart (one's offset to the next one's onset) and at least half that from the ends, at random times.
- **SNR** is ``10·log10(P_sound / P_background)``: ``P_sound`` is the active power of the clip's span (10 ms frames
  within 20 dB of its loudest, :func:`snapkit.audio.levels.active_power`, the rule of :mod:`snapkit.eval.synth` and of
  training augmentation, so "0 dB" means the same in all three), ``P_background`` the mean power of the bed under
  the event and ``local_s`` either side. An event that would push the mix past full scale is turned down, and its
  ``snr_db`` records the SNR actually used.

A recording cannot give a cleaner sound than it holds: the clip's own background comes along with its sound, and
at an SNR above the clip's own it is a faint extra layer under the event.

All randomness comes from ``seed``, in separate streams for the bed, the classes, the clips, the SNRs and the
times. The same seed with another ``snr_db`` thus gives the same events at the same times over the same bed, only
louder or quieter: soundscapes at several SNRs are paired, and differences between them are the SNR's doing.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from snapkit.audio.levels import active_power
from snapkit.audio.levels import sound_span as event_span
from snapkit.dataset.labels import DEFAULT_BACKGROUND_LABEL
from snapkit.detection.events import Event
from snapkit.errors import DatasetError, SnapkitError
from snapkit.files import replace_atomically

DEFAULT_EVENTS_PER_MINUTE = 10.0
DEFAULT_MIN_GAP_S = 1.0
DEFAULT_CROSSFADE_S = 0.1
DEFAULT_PAD_S = 0.05
DEFAULT_LOCAL_S = 0.25
# Largest absolute sample an event may push the mix to (16-bit WAV clips at 1.0).
MAX_PEAK = 0.99

# Independent random streams under one seed (SeedSequence spawn keys).
_KEY_BED, _KEY_LABELS, _KEY_CLIPS, _KEY_SNR, _KEY_TIMES = range(5)


@dataclass(frozen=True, eq=False)
class SoundClip:
    """A recording to plant (a target sound) or to lay the bed with (background): mono float ``audio``
    ``[samples]`` at the soundscape's rate, its ``label``, and a ``name`` (e.g. its file) for reports.

    ``span_n`` (samples ``[start, end)``) sets where the sound is when the caller knows better than the clip's
    envelope (:func:`event_span`), e.g. a weakly labelled clip whose sound fills it, so that it has no quiet part to
    measure its noise against; None: found from the envelope."""

    audio: np.ndarray
    label: str
    name: str = ""
    span_n: tuple[int, int] | None = None


@dataclass(frozen=True)
class PlacedEvent:
    """One planted event: its label, ``onset_s``/``offset_s`` in seconds from the soundscape's start (the clip's
    first and last active frame, see :func:`event_span`), the SNR actually used in dB, and the clip it came from."""

    label: str
    onset_s: float
    offset_s: float
    snr_db: float
    source: str

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s

    def to_event(self) -> Event:
        """The reference :class:`Event` for scoring (scores 1.0)."""
        return Event(self.label, self.onset_s, self.offset_s, peak_score=1.0, mean_score=1.0)


def split_for_soundscapes(labels: Sequence[str], held_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, held_idx)``: about ``held_fraction`` of every class's clips (at least one) held out for
    soundscapes, the rest to train on, background included (sorted indices into ``labels``).

    Raises:
        SnapkitError: ``held_fraction`` is not between 0 and 1.
        DatasetError: a class has a single clip, so it cannot give both (the message names it).
    """
    # Imported here: snapkit.training pulls in torch, which building a soundscape does not need.
    from snapkit.training.data import stratified_split

    if not 0.0 < held_fraction < 1.0:
        raise SnapkitError(f"The held-out fraction must be between 0 and 1 (exclusive), got {held_fraction}.")
    train_idx, held_idx = stratified_split(labels, held_fraction, seed)
    labels = list(labels)
    for label in sorted(set(labels)):
        if not any(labels[i] == label for i in held_idx):
            raise DatasetError(
                f"Class {label!r} has a single clip, and soundscapes need one held out besides those trained on; "
                f"record at least 2 (`snapkit record {label}`)."
            )
    return train_idx, held_idx


@dataclass(frozen=True)
class _Piece:
    """One clip laid in the stream: ``clip`` (an index) from stream sample ``start_n`` on, ``length_n`` samples,
    faded in over its first ``fade_in_n`` and out over its last ``fade_out_n`` samples, times ``gain``."""

    start_n: int
    clip: int
    first_n: int  # first sample of the clip used
    length_n: int
    fade_in_n: int
    fade_out_n: int
    gain: float = 1.0

    @property
    def end_n(self) -> int:
        return self.start_n + self.length_n


def _fade_window(piece: _Piece, a: int, b: int) -> np.ndarray:
    """Gain ``[b - a]`` of ``piece`` over its own samples ``a..b``: equal-power ``sin`` in, ``cos`` out, 1 between.

    A ``cos`` fade-out over the same samples as the next piece's ``sin`` fade-in keeps ``sin² + cos² = 1``: the
    power of two unrelated recordings stays level through a crossfade.
    """
    index = np.arange(a, b, dtype=np.float64)
    window = np.ones(b - a)
    if piece.fade_in_n:
        head = index < piece.fade_in_n
        window[head] = np.sin(0.5 * np.pi * (index[head] + 0.5) / piece.fade_in_n)
    if piece.fade_out_n:
        tail_start = piece.length_n - piece.fade_out_n
        tail = index >= tail_start
        window[tail] = np.cos(0.5 * np.pi * (index[tail] - tail_start + 0.5) / piece.fade_out_n)
    return window


def _add_pieces(
    out: np.ndarray, start_n: int, pieces: Sequence[_Piece], starts: Sequence[int], clips: Sequence[np.ndarray]
) -> None:
    """Add to ``out`` (stream samples ``start_n..start_n + len(out)``) every piece overlapping it, in place.

    ``starts`` are the pieces' ``start_n`` (sorted); pieces may overlap only their neighbours, so the search can
    begin one piece before the last one starting at or before ``start_n``.
    """
    end_n = start_n + len(out)
    k = max(0, bisect.bisect_right(starts, start_n) - 2)
    while k < len(pieces) and pieces[k].start_n < end_n:
        piece = pieces[k]
        a, b = max(start_n, piece.start_n), min(end_n, piece.end_n)
        if a < b:
            local_a, local_b = a - piece.start_n, b - piece.start_n
            audio = clips[piece.clip][piece.first_n + local_a : piece.first_n + local_b]
            out[a - start_n : b - start_n] += piece.gain * _fade_window(piece, local_a, local_b) * audio
        k += 1


class Soundscape:
    """A planned soundscape: rendered on demand, block by block (a day of it never needs to sit in memory).

    Made by :func:`make_soundscape`. ``events`` are the planted events sorted by onset; ``n_samples`` the length at
    ``sample_rate_hz``.
    """

    def __init__(
        self,
        sample_rate_hz: int,
        n_samples: int,
        backgrounds: Sequence[np.ndarray],
        bed: Sequence[_Piece],
        targets: Sequence[np.ndarray],
        placements: Sequence[_Piece],
        events: Sequence[PlacedEvent],
    ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.n_samples = n_samples
        self.events = tuple(events)
        self._backgrounds = list(backgrounds)
        self._bed = list(bed)
        self._bed_starts = [p.start_n for p in self._bed]
        self._targets = list(targets)
        self._placements = list(placements)
        self._placement_starts = [p.start_n for p in self._placements]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    def reference_events(self) -> list[Event]:
        """The planted events as reference :class:`Event` objects, for :mod:`snapkit.eval.scoring`."""
        return [event.to_event() for event in self.events]

    def render(self, start_n: int, end_n: int, *, background: bool = True) -> np.ndarray:
        """Samples ``start_n..end_n`` (clamped to the soundscape) -> float32 ``[samples]``, not clipped.

        ``background=False`` leaves the bed out: the planted events alone, exactly as they are in the mix.
        """
        start_n, end_n = max(0, start_n), min(self.n_samples, end_n)
        out = np.zeros(max(0, end_n - start_n))
        if background:
            _add_pieces(out, start_n, self._bed, self._bed_starts, self._backgrounds)
        _add_pieces(out, start_n, self._placements, self._placement_starts, self._targets)
        return out.astype(np.float32)

    def audio(self) -> np.ndarray:
        """The whole soundscape, float32 ``[n_samples]``."""
        return self.render(0, self.n_samples)

    def blocks(self, block_s: float = 1.0) -> Iterator[np.ndarray]:
        """The soundscape in consecutive float32 blocks of ``block_s`` seconds (the last may be shorter)."""
        if not block_s > 0:
            raise ValueError(f"block_s must be a positive number of seconds, got {block_s}.")
        block_n = max(1, round(block_s * self.sample_rate_hz))
        for start in range(0, self.n_samples, block_n):
            yield self.render(start, start + block_n)

    def write(self, path: str | Path, *, overwrite: bool = False, block_s: float = 60.0) -> Path:
        """Write the soundscape to ``path`` as 16-bit mono WAV, block by block; returns ``path``.

        The file appears complete or not at all (written under a temporary name, then renamed). An existing file
        is replaced only with ``overwrite`` (it could be a recording). Samples beyond full scale are clipped.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; choose another name or pass overwrite=True to replace it.")
        with (
            replace_atomically(path) as tmp,
            sf.SoundFile(tmp, "w", samplerate=self.sample_rate_hz, channels=1, subtype="PCM_16", format="WAV") as f,
        ):
            for block in self.blocks(block_s):
                f.write(np.clip(block, -1.0, 1.0))
        return path


def _rng(seed: int, key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def _check_clips(clips: Sequence[SoundClip], what: str) -> list[np.ndarray]:
    """The clips' audio as float32 ``[samples]`` arrays, or a clear error for one that is not mono or empty."""
    arrays = []
    for clip in clips:
        audio = np.asarray(clip.audio, dtype=np.float32)
        name = clip.name or f"a {what} clip of class {clip.label!r}"
        if audio.ndim != 1:
            raise SnapkitError(f"{name} has shape {audio.shape}; soundscapes take mono audio [samples].")
        if not len(audio):
            raise SnapkitError(f"{name} holds no samples; delete it or record it again.")
        arrays.append(audio)
    return arrays


def _lay_bed(lengths: Sequence[int], n_samples: int, crossfade_n: int, rng: np.random.Generator) -> list[_Piece]:
    """Background clips of ``lengths`` one after another, crossfaded, in passes of fresh random order, until
    ``n_samples`` are covered. A crossfade is at most half of either clip, so fades never overlap in a clip."""
    pieces: list[_Piece] = []
    order: list[int] = []
    end = 0
    while end < n_samples:
        if not order:
            order = [int(k) for k in rng.permutation(len(lengths))]
            if len(order) > 1 and pieces and order[0] == pieces[-1].clip:
                order[0], order[1] = order[1], order[0]  # no clip twice in a row across passes
        clip = order.pop(0)
        length = lengths[clip]
        if pieces:
            previous = pieces[-1]
            fade = min(crossfade_n, length // 2, previous.length_n // 2)
            pieces[-1] = _Piece(previous.start_n, previous.clip, 0, previous.length_n, previous.fade_in_n, fade)
        else:
            fade = 0  # the stream starts with the first clip at full level
        start = end - fade
        pieces.append(_Piece(start, clip, 0, length, fade, 0))
        end = start + length
    return pieces


def _balanced(rng: np.random.Generator, values: Sequence, count: int) -> list:
    """``count`` items of ``values``, each as often as possible (cycled), in random order."""
    if not count:
        return []
    cycled = [values[i % len(values)] for i in range(count)]
    return [cycled[int(i)] for i in rng.permutation(count)]


def _choose_clips(targets: Sequence[SoundClip], labels: Sequence[str], count: int, seed: int) -> list[int]:
    """Indices into ``targets`` of the clip each of ``count`` events plays, in time order: the classes of ``labels``
    take turns (:func:`_balanced`), and each class's clips too (all of them before any again)."""
    if count and not labels:
        raise SnapkitError("No target clips to plant; give some, or set events_per_minute=0 for background only.")
    by_label: dict[str, list[int]] = {label: [] for label in labels}
    for index, clip in enumerate(targets):
        if clip.label in by_label:
            by_label[clip.label].append(index)
    for label, members in by_label.items():
        if count and not members:
            raise SnapkitError(
                f"No clip of class {label!r} to plant in the soundscape; give at least one (held-out) clip of every "
                "class, or leave the class out of labels."
            )
    clip_rng = _rng(seed, _KEY_CLIPS)
    queues: dict[str, list[int]] = {label: [] for label in labels}
    chosen: list[int] = []
    for label in _balanced(_rng(seed, _KEY_LABELS), labels, count):
        if not queues[label]:
            queues[label] = [by_label[label][int(i)] for i in clip_rng.permutation(len(by_label[label]))]
        chosen.append(queues[label].pop(0))
    return chosen


def make_soundscape(
    targets: Sequence[SoundClip],
    backgrounds: Sequence[SoundClip],
    *,
    sample_rate_hz: int,
    duration_s: float,
    snr_db: float | Sequence[float],
    seed: int = 0,
    events_per_minute: float = DEFAULT_EVENTS_PER_MINUTE,
    labels: Sequence[str] | None = None,
    min_gap_s: float = DEFAULT_MIN_GAP_S,
    crossfade_s: float = DEFAULT_CROSSFADE_S,
    pad_s: float = DEFAULT_PAD_S,
    local_s: float = DEFAULT_LOCAL_S,
) -> Soundscape:
    """Plan a soundscape of ``targets`` planted over a bed of ``backgrounds`` (see the module docstring).

    ``round(events_per_minute * duration_s / 60)`` events are planted, the classes taking turns as evenly as the
    count allows, each class's clips likewise (every clip used before any is used again), in random order at
    random times. Nothing is rendered yet: see :meth:`Soundscape.write` and :meth:`Soundscape.blocks`.

    Args:
        targets: Clips of the sounds to plant, at ``sample_rate_hz``. May be empty for a background-only
            soundscape (``events_per_minute=0``).
        backgrounds: Clips to lay the bed with, at ``sample_rate_hz``; at least one.
        sample_rate_hz: Rate of all clips and of the soundscape.
        duration_s: Length of the soundscape, in seconds.
        snr_db: The SNR of every event, in dB, or a list that the events take in turns (as evenly as the count
            allows), e.g. ``[0, 6, 12]``.
        seed: Source of all randomness; the same seed gives the same soundscape.
        events_per_minute: Mean number of events per minute of soundscape.
        labels: Classes to plant (default: every label of ``targets``); each needs at least one clip.
        min_gap_s: Least time from one event's offset to the next one's onset, and twice the least time from either
            end of the soundscape to an event, in seconds.
        crossfade_s: Length of the crossfade between two background clips, in seconds.
        pad_s: Clip audio kept either side of an event's span and faded over, in seconds (at most ``min_gap_s / 2``).
        local_s: The background's power for the SNR is measured under the event and this many seconds either side.

    Raises:
        SnapkitError: an argument that cannot work (the message says which and what to do), a silent clip,
            no clip of a class in ``labels``, or more events than fit.
    """
    rate = int(sample_rate_hz)
    if rate <= 0:
        raise SnapkitError(f"The soundscape's sample rate must be a positive number of Hz, got {sample_rate_hz}.")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise SnapkitError(f"The soundscape's duration must be a positive number of seconds, got {duration_s}.")
    for name, value in (
        ("events_per_minute", events_per_minute),
        ("min_gap_s", min_gap_s),
        ("crossfade_s", crossfade_s),
        ("pad_s", pad_s),
        ("local_s", local_s),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise SnapkitError(f"Soundscape setting {name} must be a number >= 0, got {value}.")
    snrs = [float(snr_db)] if isinstance(snr_db, int | float) else [float(s) for s in snr_db]
    if not snrs or not all(math.isfinite(s) for s in snrs):
        raise SnapkitError(f"snr_db must be a number of dB or a non-empty list of them, got {snr_db!r}.")
    if not backgrounds:
        raise SnapkitError(
            "No background clip to lay the soundscape's bed with; record your room's ordinary sound with "
            f"`snapkit record {DEFAULT_BACKGROUND_LABEL}`."
        )
    target_audio = _check_clips(targets, "target")
    background_audio = _check_clips(backgrounds, "background")
    n_samples = max(1, round(duration_s * rate))
    bed = _lay_bed([len(a) for a in background_audio], n_samples, round(crossfade_s * rate), _rng(seed, _KEY_BED))
    bed_starts = [p.start_n for p in bed]

    def bed_audio(a: int, b: int) -> np.ndarray:
        out = np.zeros(max(0, min(b, n_samples) - max(a, 0)))
        _add_pieces(out, max(a, 0), bed, bed_starts, background_audio)
        return out

    labels = sorted({clip.label for clip in targets}) if labels is None else list(labels)
    count = round(events_per_minute * duration_s / 60.0)
    chosen = _choose_clips(targets, labels, count, seed)
    event_snrs = _balanced(_rng(seed, _KEY_SNR), snrs, count)

    spans: dict[int, tuple[int, int]] = {}
    powers: dict[int, float] = {}
    for index in sorted(set(chosen)):
        name = targets[index].name or f"a clip of class {targets[index].label!r}"
        audio = target_audio[index]
        given = targets[index].span_n
        if given is not None and not 0 <= given[0] < given[1] <= len(audio):
            raise SnapkitError(
                f"{name} is given the span {given}; give samples [start, end) within its {len(audio)} samples."
            )
        try:
            spans[index] = event_span(audio, rate) if given is None else (int(given[0]), int(given[1]))
        except ValueError:
            raise SnapkitError(
                f"{name} is silent, so it has no sound to plant; delete it or record it again."
            ) from None
        powers[index] = active_power(audio[slice(*spans[index])], rate)
        if not powers[index] > 0:
            raise SnapkitError(f"{name} is silent over its given span {given}; give a span that holds its sound.")

    gap_n = round(min_gap_s * rate)
    margin_n = (gap_n + 1) // 2
    pad_n = min(round(pad_s * rate), gap_n // 2)
    lengths = [spans[i][1] - spans[i][0] for i in chosen]
    slack = n_samples - 2 * margin_n - sum(lengths) - max(0, count - 1) * gap_n
    if slack < 0:
        raise SnapkitError(
            f"{count} events ({sum(lengths) / rate:.1f} s of sound, {min_gap_s:g} s apart) do not fit in "
            f"{duration_s:g} s; lower events_per_minute or make the soundscape longer."
        )
    shifts = np.sort(_rng(seed, _KEY_TIMES).integers(0, slack + 1, size=count))

    placements: list[_Piece] = []
    events: list[PlacedEvent] = []
    position = margin_n
    local_n = round(local_s * rate)
    for k, index in enumerate(chosen):
        span_start, span_end = spans[index]
        onset = position + int(shifts[k])
        length = span_end - span_start
        position += length + gap_n
        audio = target_audio[index]
        pad_in, pad_out = min(pad_n, span_start), min(pad_n, len(audio) - span_end)
        piece = _Piece(onset - pad_in, index, span_start - pad_in, length + pad_in + pad_out, pad_in, pad_out)
        local = bed_audio(onset - local_n, onset + length + local_n)
        background_power = float(np.mean(np.square(local))) if len(local) else 0.0
        if background_power > 0:
            snr = event_snrs[k]
            gain = math.sqrt(background_power * 10 ** (snr / 10) / powers[index])
            safe_gain = _peak_safe_gain(piece, audio, bed_audio(piece.start_n, piece.end_n))
            if safe_gain < gain:
                gain, snr = safe_gain, 10 * math.log10(safe_gain**2 * powers[index] / background_power)
        else:  # digital silence under the event: no SNR to set, the clip keeps its own level
            gain, snr = 1.0, math.inf
        placements.append(_Piece(piece.start_n, index, piece.first_n, piece.length_n, pad_in, pad_out, gain))
        events.append(
            PlacedEvent(targets[index].label, onset / rate, (onset + length) / rate, snr, targets[index].name)
        )

    return Soundscape(rate, n_samples, background_audio, bed, target_audio, placements, events)


def _peak_safe_gain(piece: _Piece, audio: np.ndarray, bed: np.ndarray) -> float:
    """The largest gain ``g`` for which ``bed + g * (faded clip)`` stays within ``MAX_PEAK`` everywhere; ``inf`` if
    any gain does, or if the bed alone is already louder (no gain can help there, so none is imposed).

    Per sample, ``|b + g·c| <= M`` holds for ``0 <= g <= (M - sign(c)·b) / |c|``; the smallest bound wins.
    """
    clip = _fade_window(piece, 0, piece.length_n) * audio[piece.first_n : piece.first_n + piece.length_n]
    loud = np.abs(clip) > 0
    if not loud.any():
        return math.inf
    bounds = (MAX_PEAK - np.sign(clip[loud]) * bed[loud]) / np.abs(clip[loud])
    limit = float(bounds.min())
    return limit if limit > 0 else math.inf
