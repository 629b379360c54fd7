"""Class labels are plain folder names under the data folder."""

from __future__ import annotations

from snapkit.errors import LabelError

# The class that means "nothing to report": every command treats it as the negative class.
DEFAULT_BACKGROUND_LABEL = "background"

_FORBIDDEN = set('/\\:*?"<>|\0')


def validate_label(label: str) -> str:
    """``label`` unchanged if it can be a folder name under ``data/``; ``LabelError`` otherwise."""
    if label is None or not label.strip():
        raise LabelError("The label is empty; give the sound a name, e.g. `snapkit record doorbell`.")
    if label != label.strip():
        raise LabelError(f"Label {label!r} starts or ends with spaces; remove them.")
    bad = sorted(c for c in set(label) if c in _FORBIDDEN or ord(c) < 32)
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise LabelError(
            f"Label {label!r} contains {shown}; a label is a plain folder name (letters, digits, - and _)."
        )
    if label in (".", "..") or label.startswith("."):
        raise LabelError(f"Label {label!r} cannot start with a dot; use a plain name such as 'doorbell'.")
    if len(label) > 100:
        raise LabelError(f"Label {label[:20]!r}... is {len(label)} characters long; keep it under 100.")
    return label
