"""A picture of what the detector made of a file: the audio, each class's probability over time, and the events.

Three panels share the time axis: a log spectrogram (or, for files over ``SPECTROGRAM_MAX_S``, the waveform's
min/max envelope), the per-class probability curves with their on thresholds dashed, and one lane per class with the
events as coloured bars. Every panel is reduced to about ``MAX_COLUMNS`` points across, so a 24-hour file costs no
more memory or drawing time than a minute-long one; :class:`AudioOverview` gathers what the top panel needs while
the file streams through the detector, never holding the whole file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from snapkit.detection.events import Event
from snapkit.files import replace_atomically

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Colour = tuple[float, float, float, float]

# Up to 5 minutes the samples are kept for a spectrogram: 38 MB at 32 kHz. Longer files get the envelope only.
SPECTROGRAM_MAX_S = 300.0
# About the figure's width in pixels: finer detail than this cannot be seen, only paid for.
MAX_COLUMNS = 2000
# Time axis in minutes above 10 minutes, in hours above 5 hours, so tick labels stay short.
MINUTES_ABOVE_S = 600.0
HOURS_ABOVE_S = 5 * 3600.0
SPECTROGRAM_WINDOW_S = 0.032
SPECTROGRAM_RANGE_DB = 80.0
# With more events than this, class names on the bars would pile up; the lane labels say it instead.
MAX_EVENT_TEXTS = 40
# Shading every span behind the upper panels turns into a grey wash (and slow drawing) beyond this many events.
MAX_SHADED_EVENTS = 200
FIGURE_WIDTH_IN = 14.0
FIGURE_DPI = 100


class AudioOverview:
    """What the plot shows of a file's audio, gathered block by block.

    Keeps the samples themselves only when the file is at most ``SPECTROGRAM_MAX_S`` long, and always a min/max
    envelope of at most ``MAX_COLUMNS`` bins (bin width fixed from the expected ``duration_s``), so a day-long
    file costs a few kilobytes.
    """

    def __init__(self, sample_rate_hz: int, duration_s: float) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.bin_samples = max(1, math.ceil(duration_s * sample_rate_hz / MAX_COLUMNS))
        self.n_samples = 0
        self._keep_samples = duration_s <= SPECTROGRAM_MAX_S
        self._blocks: list[np.ndarray] = []
        self._mins: list[np.ndarray] = []
        self._maxs: list[np.ndarray] = []
        # The bin being filled: running min/max and count, so a block never has to be joined to earlier ones.
        self._open_min = math.inf
        self._open_max = -math.inf
        self._open_count = 0

    @classmethod
    def from_array(cls, audio: np.ndarray, sample_rate_hz: int) -> AudioOverview:
        """The overview of an in-memory signal ``[samples]``."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        overview = cls(sample_rate_hz, len(audio) / sample_rate_hz)
        overview.push(audio)
        return overview

    def push(self, block: np.ndarray) -> None:
        """Add the next mono block ``[samples]``."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if not len(block):
            return
        self.n_samples += len(block)
        if self._keep_samples:
            self._blocks.append(block.copy())
        # Finish the open bin first, then whole bins at once, then open a new bin with what is left.
        head = block[: self.bin_samples - self._open_count]
        self._open_min = min(self._open_min, float(head.min()))
        self._open_max = max(self._open_max, float(head.max()))
        self._open_count += len(head)
        if self._open_count == self.bin_samples:
            self._close_bin()
        rest = block[len(head) :]
        whole = len(rest) - len(rest) % self.bin_samples
        if whole:
            bins = rest[:whole].reshape(-1, self.bin_samples)
            self._mins.append(bins.min(axis=1))
            self._maxs.append(bins.max(axis=1))
        tail = rest[whole:]
        if len(tail):
            self._open_min, self._open_max, self._open_count = float(tail.min()), float(tail.max()), len(tail)

    def _close_bin(self) -> None:
        self._mins.append(np.array([self._open_min], dtype=np.float32))
        self._maxs.append(np.array([self._open_max], dtype=np.float32))
        self._open_min, self._open_max, self._open_count = math.inf, -math.inf, 0

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    @property
    def samples(self) -> np.ndarray | None:
        """All samples ``[samples]``, or None when the file was too long to keep them."""
        if not self._keep_samples:
            return None
        return np.concatenate(self._blocks) if self._blocks else np.zeros(0, dtype=np.float32)

    def envelope(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(bin start times_s [bins], minima [bins], maxima [bins])`` of the audio so far."""
        mins, maxs = list(self._mins), list(self._maxs)
        if self._open_count:
            mins.append(np.array([self._open_min], dtype=np.float32))
            maxs.append(np.array([self._open_max], dtype=np.float32))
        low = np.concatenate(mins) if mins else np.zeros(0, dtype=np.float32)
        high = np.concatenate(maxs) if maxs else np.zeros(0, dtype=np.float32)
        return np.arange(len(low)) * self.bin_samples / self.sample_rate_hz, low, high


def log_spectrogram(audio: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, float, float]:
    """Power spectrogram in dB of ``audio [samples]``, max-pooled over time to at most ``MAX_COLUMNS`` columns.

    Returns ``(db [freq bins, columns], seconds per column, top frequency in Hz)``. Pooling takes the maximum so a
    short click still shows in a long file. Frames are processed a slice at a time, never all at once.
    """
    n_fft = 2 ** max(6, round(math.log2(SPECTROGRAM_WINDOW_S * sample_rate_hz)))
    hop = n_fft // 2
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    n_frames = 1 + (len(audio) - n_fft) // hop
    group = math.ceil(n_frames / MAX_COLUMNS)
    window = np.hanning(n_fft).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop]
    columns = []
    step = group * max(1, 4096 // group)  # whole groups per slice, about 4096 frames
    for start in range(0, n_frames, step):
        power = np.abs(np.fft.rfft(frames[start : start + step] * window, axis=1)) ** 2
        pad = (-len(power)) % group
        if pad:  # the last, partial group: pad with its own first frame, which cannot change the maximum
            power = np.concatenate([power, np.repeat(power[:1], pad, axis=0)])
        columns.append(power.reshape(-1, group, power.shape[1]).max(axis=1))
    db = 10.0 * np.log10(np.concatenate(columns).T + 1e-12)
    return db, group * hop / sample_rate_hz, sample_rate_hz / 2


def decimate_curves(times_s: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``times_s [N]``, ``probs [N, C]`` reduced to at most ``MAX_COLUMNS`` points by taking each group's maximum,
    so peaks (what crossed a threshold) survive. Returns ``(times_s [M], probs [M, C])``, times of group starts."""
    group = math.ceil(len(times_s) / MAX_COLUMNS)
    if group <= 1:
        return times_s, probs
    pad = (-len(probs)) % group
    padded = np.concatenate([probs, np.repeat(probs[-1:], pad, axis=0)]) if pad else probs
    return times_s[::group], padded.reshape(-1, group, probs.shape[1]).max(axis=1)


def _time_unit(duration_s: float) -> tuple[float, str]:
    if duration_s > HOURS_ABOVE_S:
        return 3600.0, "h"
    if duration_s > MINUTES_ABOVE_S:
        return 60.0, "min"
    return 1.0, "s"


def _colours(n: int) -> list[Colour]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_detection(
    path_png: str | Path,
    audio: np.ndarray | AudioOverview,
    sample_rate_hz: int,
    times_s: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    events: Sequence[Event],
    thresholds: Mapping[str, tuple[float, float]] | None = None,
    *,
    title: str | None = None,
) -> Path:
    """Draw the detection of one file and save it as a PNG (replacing any file there).

    Args:
        path_png: Where to write the PNG.
        audio: The file's mono samples ``[samples]``, or an :class:`AudioOverview` gathered while streaming it.
        sample_rate_hz: Rate of ``audio``.
        times_s: Timeline times ``[N]`` in seconds (the detector's ``timeline()``).
        probs: Class probabilities ``[N, C]``, columns in ``labels`` order.
        labels: The ``C`` class names.
        events: Finished events to draw as bars.
        thresholds: ``{label: (on, off)}`` (``Detector.thresholds``): on thresholds are drawn dashed, off dotted.
        title: Heading, e.g. the file name.

    Returns:
        ``path_png`` as a Path.
    """
    # The Agg canvas is attached to this figure only: no pyplot, no global backend switch, nothing left open,
    # so this works in a worker thread, on a server without a display, and beside a notebook's own backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    overview = audio if isinstance(audio, AudioOverview) else AudioOverview.from_array(audio, sample_rate_hz)
    times_s = np.asarray(times_s, dtype=np.float64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64).reshape(len(times_s), -1)
    if probs.shape[1] != len(labels):
        raise ValueError(f"probs has {probs.shape[1]} columns but there are {len(labels)} labels.")
    lanes = list(labels) + sorted({e.label for e in events} - set(labels))
    colour = dict(zip(lanes, _colours(len(lanes)), strict=True))
    duration_s = max(
        [overview.duration_s, float(times_s[-1]) if len(times_s) else 0.0]
        + [e.offset_s or e.onset_s for e in events]
        + [1e-3]
    )
    scale, unit = _time_unit(duration_s)

    lane_height_in = 0.3 * len(lanes) + 0.4
    fig = Figure(figsize=(FIGURE_WIDTH_IN, 6.0 + lane_height_in), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    audio_ax, curve_ax, event_ax = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [3.0, 2.5, max(0.8, lane_height_in)]}
    )
    if title:
        fig.suptitle(title, fontsize=12, x=0.01, ha="left")

    _draw_audio(audio_ax, overview, scale)
    _draw_curves(curve_ax, times_s, probs, labels, colour, thresholds, scale)
    _draw_events(event_ax, events, lanes, colour, scale, duration_s)
    if len(events) <= MAX_SHADED_EVENTS:
        # Spans shaded behind the curves, so the eye can go from a bar to the rise that made it. Not over the
        # spectrogram: a tint there would change the very colours that show loudness.
        for event in events:
            end_s = event.offset_s if event.offset_s is not None else event.onset_s
            curve_ax.axvspan(event.onset_s / scale, end_s / scale, color=colour[event.label], alpha=0.12, lw=0)
    event_ax.set_xlim(0.0, duration_s / scale)
    event_ax.set_xlabel(f"time ({unit})")

    path = Path(path_png)
    with replace_atomically(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _draw_audio(ax: Axes, overview: AudioOverview, scale: float) -> None:
    """A log spectrogram when the samples were kept, else the min/max envelope."""
    samples = overview.samples
    if samples is not None and len(samples):
        db, column_s, top_hz = log_spectrogram(samples, overview.sample_rate_hz)
        vmax = float(db.max())
        ax.imshow(
            db,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=vmax - SPECTROGRAM_RANGE_DB,
            vmax=vmax,
            extent=(0.0, db.shape[1] * column_s / scale, 0.0, top_hz / 1000.0),
            interpolation="nearest",
        )
        ax.set_ylabel("frequency (kHz)")
        ax.set_title("spectrogram (dB)", fontsize=9, loc="left")
    else:
        starts_s, low, high = overview.envelope()
        ax.fill_between(starts_s / scale, low, high, step="post", color="0.3", lw=0)
        ax.set_ylim(-1.0, 1.0)
        ax.set_ylabel("amplitude")
        ax.set_title("waveform (min/max envelope)", fontsize=9, loc="left")


def _draw_curves(
    ax: Axes,
    times_s: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    colour: Mapping[str, Colour],
    thresholds: Mapping[str, tuple[float, float]] | None,
    scale: float,
) -> None:
    """Probability curves [N, C] with each class's on threshold dashed and off threshold dotted."""
    if len(times_s):
        shown_s, shown = decimate_curves(times_s, probs)
        for i, label in enumerate(labels):
            ax.plot(shown_s / scale, shown[:, i], color=colour[label], lw=1.2, label=label, drawstyle="steps-post")
    else:
        ax.text(0.5, 0.5, "no probability timeline", transform=ax.transAxes, ha="center", va="center", color="0.4")
    # A threshold several classes share is drawn once, in grey; one of a single class in that class's colour.
    for which_end, (key, style) in enumerate((("on", "--"), ("off", ":"))):
        owners: dict[float, list[str]] = {}
        for label in labels:
            entry = (thresholds or {}).get(label)
            if entry is not None:
                owners.setdefault(float(entry[which_end]), []).append(label)
        for value, which in owners.items():
            line_colour = colour[which[0]] if len(which) == 1 else "0.35"
            ax.axhline(value, color=line_colour, ls=style, lw=1.0 if key == "on" else 0.8)
            ax.annotate(
                f"{key} {value:.2f}",
                (1.0, value),
                xycoords=("axes fraction", "data"),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                color=line_colour,
            )
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("probability")
    title = "class probability" + ("  (--- on threshold, ··· off threshold)" if thresholds else "")
    ax.set_title(title, fontsize=9, loc="left")
    if len(times_s) and labels:
        # Above the panel, right of its title: inside it would hide the curves it explains.
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncol=min(len(labels), 8), frameon=False)


def _draw_events(
    ax: Axes,
    events: Sequence[Event],
    lanes: list[str],
    colour: Mapping[str, Colour],
    scale: float,
    duration_s: float,
) -> None:
    """One lane per class; each event a bar, at least 0.2 % of the axis wide so a click is still visible."""
    min_width = 0.002 * duration_s / scale
    for lane, label in enumerate(lanes):
        spans = [
            (e.onset_s / scale, max(((e.offset_s or e.onset_s) - e.onset_s) / scale, min_width))
            for e in events
            if e.label == label
        ]
        if spans:
            ax.broken_barh(spans, (lane - 0.35, 0.7), facecolors=colour[label], edgecolor="black", lw=0.4)
    if len(events) <= MAX_EVENT_TEXTS:
        for event in events:
            ax.text(
                event.onset_s / scale,
                lanes.index(event.label),
                f" {event.label} {event.peak_score:.2f}",
                fontsize=7,
                va="center",
                ha="left",
                clip_on=True,
            )
    ax.set_yticks(range(len(lanes)), lanes)
    ax.set_ylim(len(lanes) - 0.5, -0.5)  # first class on top, as in the legend
    ax.set_title(f"events ({len(events)})", fontsize=9, loc="left")
    ax.grid(axis="x", alpha=0.3)
