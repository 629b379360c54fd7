"""Does `snapkit import` keep the sound and drop the room? Long recordings built from real clips over real room tone.

    python experiments/import_activity.py [SOUNDS_DIR] --clips 6 --clip-s 2 --hop-s 1

SOUNDS_DIR holds sets with a ``metadata.csv`` (``file`` and ``label`` columns), as ``../shared/sounds`` does, and a
``background/`` folder of long room-tone recordings. For each chosen class, ``--clips`` of its clips are cut to their
sound (``snapkit.audio.levels.sound_span`` plus a short margin) and laid at their own level over one long room-tone
recording, 2-8 s of plain room between them: what a user gets recording "20 s of knocking" in a room. The file is
imported twice, with today's rule (``--activity-db 0``: silence only) and with the noise-floor rule, and every
written clip is judged against where the sounds were planted: *sound* (overlaps a planted sound by at least 0.1 s or
half of it), *room* (overlaps none) or *edge* (a sliver). Steady classes are also imported as one long file with no
room at all, where every clip is sound and nothing should be dropped.

Writes ``experiments/results/import_activity/import_activity.{md,json}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snapkit.audio.io import load_audio, write_wav
from snapkit.audio.levels import DEFAULT_ACTIVITY_DB, sound_span
from snapkit.dataset.importer import import_files
from snapkit.dataset.scan import find_problems, scan_dataset

SOUNDS = Path(__file__).resolve().parents[2] / "shared" / "sounds"
# Short, separate sounds a user records several times in a row, and sounds that last (recorded with no room between).
EVENT_CLASSES = (
    "kitchen20/chopping",
    "kitchen20/cupboard",
    "kitchen20/cutlery",
    "kitchen20/drawer",
    "kitchen20/plates",
    "kitchen20/book",
    "urban/dog_bark",
    "urban/car_horn",
    "urban/gun_shot",
    "urban/siren",
)
STEADY_CLASSES = ("kitchen20/blender", "kitchen20/water-flowing", "urban/air_conditioner", "urban/engine_idling")
ROOMS = ("running_tap", "exercise_bike", "doing_the_dishes")
MARGIN_S = 0.1
FADE_S = 0.01
GAP_S = (2.0, 8.0)
# A written clip "holds the sound" when it overlaps a planted sound by this much (or half the sound, if shorter).
SOUND_OVERLAP_S = 0.1


@dataclass
class Built:
    audio: np.ndarray
    spans_s: list[tuple[float, float]]  # planted sounds, (start, end) in seconds


def class_files(sounds: Path, set_and_label: str) -> list[Path]:
    """Files of one class of a metadata set, skipping rows the set flags as nearly silent."""
    set_name, label = set_and_label.split("/")
    with open(sounds / set_name / "metadata.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] == label and r.get("near_silent", "0") != "1"]
    return [sounds / set_name / r["file"] for r in rows]


def faded(audio: np.ndarray, rate_hz: int) -> np.ndarray:
    n = min(len(audio) // 2, round(FADE_S * rate_hz))
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    out = audio.copy()
    out[:n] *= ramp
    out[len(out) - n :] *= ramp[::-1]
    return out


def build_recording(files: list[Path], room: np.ndarray, rate_hz: int, rng: np.random.Generator) -> Built:
    """Each file's sound (its span plus ``MARGIN_S``) over one stretch of ``room``, gaps of ``GAP_S`` between."""
    pieces, spans_s, pos = [], [], round(rng.uniform(*GAP_S) * rate_hz)
    for path in files:
        clip, _ = load_audio(path, sample_rate_hz=rate_hz)
        start, end = sound_span(clip, rate_hz)
        margin = round(MARGIN_S * rate_hz)
        lo, hi = max(0, start - margin), min(len(clip), end + margin)
        pieces.append((pos, faded(clip[lo:hi], rate_hz)))
        spans_s.append(((pos + start - lo) / rate_hz, (pos + end - lo) / rate_hz))
        pos += hi - lo + round(rng.uniform(*GAP_S) * rate_hz)
    offset = int(rng.integers(0, max(1, len(room) - pos)))
    bed = np.resize(np.roll(room, -offset), pos)  # loops the room if the recording is longer than it
    for at, piece in pieces:
        bed[at : at + len(piece)] += piece
    return Built(bed.astype(np.float32), spans_s)


def judge(start_s: float, seconds: float, spans_s: list[tuple[float, float]]) -> str:
    """'sound', 'room' or 'edge' for a clip from ``start_s`` lasting ``seconds``."""
    overlaps = [(min(start_s + seconds, e) - max(start_s, s), e - s) for s, e in spans_s]
    if any(o >= min(SOUND_OVERLAP_S, length / 2) for o, length in overlaps):
        return "sound"
    return "edge" if any(o > 0 for o, _ in overlaps) else "room"


def clip_start_s(path: Path) -> float:
    match = re.search(r"-(\d+\.\d\d)s-", path.name)
    if match is None:
        raise ValueError(f"{path.name} does not carry its start time")
    return float(match.group(1))


def run_import(wav: Path, data: Path, label: str, activity_db: float, seconds: float, hop_s: float) -> list[Path]:
    return import_files([wav], data, label, seconds=seconds, hop_s=hop_s, activity_db=activity_db).written


def flagged_names(data: Path) -> set[str]:
    """Names of the clips ``snapkit data`` says look like background."""
    text = "\n".join(p.message for p in find_problems(scan_dataset(data)) if "look like background" in p.message)
    return set(re.findall(r"[\w.-]+\.wav", text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sounds", nargs="?", type=Path, default=SOUNDS, help="folder of real recordings")
    parser.add_argument("--events", nargs="+", default=list(EVENT_CLASSES), help="SET/label of separate sounds")
    parser.add_argument("--steady", nargs="+", default=list(STEADY_CLASSES), help="SET/label of lasting sounds")
    parser.add_argument("--rooms", nargs="+", default=list(ROOMS), help="room-tone files in SOUNDS/background")
    parser.add_argument("--clips", type=int, default=6, help="sounds in each recording")
    # The names of `snapkit import`; the old spellings still parse.
    parser.add_argument("--clip-s", "--seconds", dest="seconds", type=float, default=2.0, help="clip length, s")
    parser.add_argument("--hop-s", "--hop", dest="hop", type=float, default=1.0, help="clip hop, s")
    parser.add_argument("--activity-db", type=float, default=DEFAULT_ACTIVITY_DB, help="the new rule's dB")
    parser.add_argument("--no-scan", action="store_true", help="skip `snapkit data` over the real sets as they are")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/import_activity"), help="results")
    args = parser.parse_args()
    rate_hz = 16_000
    rng = np.random.default_rng(args.seed)
    rooms = {n: load_audio(args.sounds / "background" / f"{n}.flac", sample_rate_hz=rate_hz)[0] for n in args.rooms}
    rules = {"silence only (before)": 0.0, f"noise floor +{args.activity_db:g} dB": args.activity_db}
    kinds = ("sound", "edge", "room")
    counts = {(rule, room): dict.fromkeys(kinds, 0) for rule in rules for room in rooms}
    # `snapkit data` on the old import's clips: flagged as background-like / all, per kind, with and without a
    # background class recorded in the same room.
    flags = {(with_bg, kind): [0, 0] for with_bg in (True, False) for kind in kinds}
    steady = {rule: [0, 0] for rule in rules}  # clips kept, clips in all
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for i, name in enumerate(args.events):
            files = list(rng.choice(class_files(args.sounds, name), size=args.clips, replace=False))
            room = args.rooms[i % len(args.rooms)]
            built = build_recording(files, rooms[room], rate_hz, rng)
            wav = write_wav(tmp / f"rec{i}.wav", built.audio, rate_hz)
            for rule, activity_db in rules.items():
                data = tmp / f"data{i}-{activity_db:g}"
                written = run_import(wav, data, "x", activity_db, args.seconds, args.hop)
                kind_of = {p.name: judge(clip_start_s(p), args.seconds, built.spans_s) for p in written}
                for kind in kind_of.values():
                    counts[rule, room][kind] += 1
                if activity_db > 0:
                    continue
                for with_bg in (False, True):
                    if with_bg:
                        bg = write_wav(tmp / f"room{i}.wav", rooms[room][: 30 * rate_hz], rate_hz)
                        run_import(bg, data, "background", 0.0, args.seconds, args.hop)
                    flagged = flagged_names(data)
                    for clip_name, kind in kind_of.items():
                        flags[with_bg, kind][0] += clip_name in flagged
                        flags[with_bg, kind][1] += 1
        for i, name in enumerate(args.steady):
            files = list(rng.choice(class_files(args.sounds, name), size=args.clips, replace=False))
            audio = np.concatenate([load_audio(f, sample_rate_hz=rate_hz)[0] for f in files])
            wav = write_wav(tmp / f"steady{i}.wav", audio, rate_hz)
            total = len(run_import(wav, tmp / f"steady{i}-all", "x", 0.0, args.seconds, args.hop))
            for rule, activity_db in rules.items():
                steady[rule][0] += len(
                    run_import(wav, tmp / f"s{i}-{activity_db:g}", "x", activity_db, args.seconds, args.hop)
                )
                steady[rule][1] += total
    real_flags = {}
    if not args.no_scan:
        for set_name in ("kitchen20", "urban"):
            dataset = scan_dataset(args.sounds / set_name)
            text = "\n".join(p.message for p in find_problems(dataset) if "look like background" in p.message)
            real_flags[set_name] = (len(set(re.findall(r"[\w.-]+\.flac", text))), len(dataset.readable))
    lines = [
        f"{len(args.events)} recordings of {args.clips} real sounds over room tone; {args.seconds:g} s clips every "
        f"{args.hop:g} s. Clips written by `snapkit import`, judged against where the sounds were planted:",
        "",
        "| rule | room | holds the sound | edge | room tone only | share room tone only |",
        "|---|---|---|---|---|---|",
    ]
    for (rule, room), c in counts.items():
        share = c["room"] / max(1, sum(c.values()))
        lines.append(f"| {rule} | {room} | {c['sound']} | {c['edge']} | {c['room']} | {share:.2f} |")
    for rule, (kept, total) in steady.items():
        lines.append(f"| {rule} | none ({len(args.steady)} steady sounds, back to back) | {kept} of {total} | | | |")
    lines += [
        "",
        "`snapkit data` on the clips the old rule kept: clips warned about as background-like / clips.",
        "",
        "| background class | holds the sound | edge | room tone only |",
        "|---|---|---|---|",
    ]
    for with_bg in (True, False):
        cells = " | ".join(f"{flags[with_bg, k][0]} / {flags[with_bg, k][1]}" for k in kinds)
        lines.append(f"| {'recorded in the same room' if with_bg else 'none'} | {cells} |")
    for set_name, (n_flagged, n_clips) in real_flags.items():
        lines.append(
            f"\n`snapkit data --data {args.sounds / set_name}` (real clips as they are): {n_flagged} of {n_clips} "
            "clips warned about as background-like."
        )
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "import_activity.md").write_text(text + "\n")
    payload = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "clips": {f"{rule} | {room}": c for (rule, room), c in counts.items()},
        "steady_kept_of": steady,
        "data_flags": {f"background={w} | {k}": v for (w, k), v in flags.items()},
        "real_sets_flagged_of": real_flags,
    }
    (args.out / "import_activity.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
