"""Labelled recordings as the experiments read them: a class-folder dataset, or a set described by a metadata CSV.

    from experiments.realsets import read_set, LabelledClip
    clips = read_set(Path("../shared/sounds/kitchen20"))          # metadata.csv found inside, groups auto-detected
    clips = read_set(Path("data"))                               # DATA/<label>/*.wav, every file its own group

A metadata set is a folder holding ``metadata.csv`` with a column naming each file (relative to the folder) and
one naming its label. Real collections cut several clips from one source recording; those clips are near-copies,
so an honest split keeps every source recording on one side. That source is the clip's *group*: taken from
``group_column`` when given, else from the first of :data:`GROUP_COLUMNS` present, else the file itself.

Nothing here knows any particular collection: the column names are options with common defaults.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snapkit.errors import DatasetError

METADATA_FILE = "metadata.csv"
# Columns that name the source recording, in order of preference, when no --group-column is given.
GROUP_COLUMNS = ("source_id", "fsID", "source", "group", "recording")
# A truthy value in this column drops the clip (a set may mark nearly silent clips it kept for completeness).
SKIP_COLUMNS = ("near_silent",)


@dataclass(frozen=True)
class LabelledClip:
    """One clip of a labelled set.

    Attributes:
        path: the audio file.
        label: its class.
        group: its source recording; clips sharing a group are never split between training and test.
    """

    path: Path
    label: str
    group: str


def read_set(
    root: Path,
    *,
    label_column: str = "label",
    file_column: str = "file",
    group_column: str | None = None,
    keep_flagged: bool = False,
) -> list[LabelledClip]:
    """Every clip of the set at ``root``, sorted by (label, path).

    ``root/metadata.csv`` makes it a metadata set (see module docs); otherwise ``root`` is a class-folder dataset
    read with :func:`snapkit.dataset.scan.scan_dataset` (each file its own group). Rows flagged in one of
    :data:`SKIP_COLUMNS` are left out unless ``keep_flagged``.

    Raises:
        DatasetError: ``root`` is missing, the CSV lacks a named column, or the set holds no clips.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; give a class-folder dataset or a folder with {METADATA_FILE}.")
    meta = root / METADATA_FILE
    if meta.is_file():
        clips = _read_metadata(meta, label_column, file_column, group_column, keep_flagged)
    else:
        from snapkit.dataset.scan import scan_dataset

        clips = [LabelledClip(c.path, c.label, str(c.path)) for c in scan_dataset(root).readable]
    if not clips:
        raise DatasetError(f"{root} holds no labelled clips.")
    return sorted(clips, key=lambda c: (c.label, str(c.path)))


def _read_metadata(
    meta: Path, label_column: str, file_column: str, group_column: str | None, keep_flagged: bool
) -> list[LabelledClip]:
    with open(meta, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0]) if rows else set()
    for name, column in (("--label-column", label_column), ("file", file_column)):
        if rows and column not in columns:
            raise DatasetError(
                f"{meta} has no {column!r} column ({name}); its columns are {', '.join(sorted(columns))}."
            )
    if group_column is not None and rows and group_column not in columns:
        raise DatasetError(f"{meta} has no {group_column!r} column (--group-column); choose one of {sorted(columns)}.")
    group = group_column or next((c for c in GROUP_COLUMNS if c in columns), None)
    skips = [c for c in SKIP_COLUMNS if c in columns]
    out = []
    for row in rows:
        if not keep_flagged and any(row[c].strip() not in ("", "0", "false", "False") for c in skips):
            continue
        path = meta.parent / row[file_column]
        out.append(LabelledClip(path, row[label_column], f"{row[label_column]}/{row[group]}" if group else str(path)))
    return out


def by_label(clips: Iterable[LabelledClip]) -> dict[str, list[LabelledClip]]:
    """``{label: clips}``, labels sorted, clips in the given order."""
    out: dict[str, list[LabelledClip]] = {}
    for clip in clips:
        out.setdefault(clip.label, []).append(clip)
    return dict(sorted(out.items()))


def grouped_order(clips: Sequence[LabelledClip], rng: np.random.Generator) -> list[list[LabelledClip]]:
    """The clips' groups in a random order, each group's clips in a random order: ``[[clip, ...], ...]``."""
    groups: dict[str, list[LabelledClip]] = {}
    for clip in clips:
        groups.setdefault(clip.group, []).append(clip)
    names = sorted(groups)
    order = [names[i] for i in rng.permutation(len(names))]
    return [[groups[g][i] for i in rng.permutation(len(groups[g]))] for g in order]


def split_by_group(
    clips: Sequence[LabelledClip], shots: int, rng: np.random.Generator
) -> tuple[list[LabelledClip], list[LabelledClip]]:
    """``(train, test)``: ``shots`` training clips, each from a different source recording where there are enough
    of them, and as test every clip of the groups not used for training (so no test clip shares a source with a
    training clip). With fewer groups than ``shots`` the first groups give several training clips each.

    The draw is nested in ``shots``: for one generator state, a larger K keeps the smaller K's training clips.
    """
    ordered = grouped_order(clips, rng)
    train: list[LabelledClip] = []
    used = 0
    # Round-robin over groups: clip 0 of every group, then clip 1 of every group, ... so K clips come from as
    # many sources as possible and the K = 1 pick is a prefix of the K = 5 pick.
    depth = 0
    while len(train) < shots and any(len(g) > depth for g in ordered):
        for index, group in enumerate(ordered):
            if len(train) == shots:
                break
            if len(group) > depth:
                train.append(group[depth])
                used = max(used, index + 1)
        depth += 1
    test = [clip for group in ordered[used:] for clip in group]
    return train, test


def label_paths(clips: Mapping[str, Sequence[LabelledClip]]) -> dict[str, list[Path]]:
    """``{label: [path, ...]}`` of a :func:`by_label` mapping."""
    return {label: [c.path for c in group] for label, group in clips.items()}
