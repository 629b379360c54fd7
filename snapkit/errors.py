"""Errors a user can cause. The CLI prints their message as one sentence and exits, never a traceback."""

from __future__ import annotations


class SnapkitError(Exception):
    """A problem the user can fix: the message names the file or setting and says what to do."""


class AudioFileError(SnapkitError):
    """An audio file that cannot be read (not audio, empty, truncated, missing)."""


class LabelError(SnapkitError):
    """A class label that cannot be a plain folder name."""


class DeviceError(SnapkitError):
    """An audio device that does not exist or cannot be opened."""


class WeightsError(SnapkitError):
    """Pretrained weights that are missing, corrupt, or cannot be downloaded."""


class DatasetError(SnapkitError):
    """A dataset folder that cannot be trained or evaluated on as it is."""
