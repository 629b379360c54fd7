"""The listen log: what `snapkit listen` prints (settings, events, warnings, the device going and coming back, the
summary), also appended to a file that rotates by size, for a detector left running for months.

Everything goes through the ``snapkit`` logger: :func:`snapkit.detection.sinks.print_warning` logs each warning
there as well as printing it, so sinks, notifiers and the microphone need not know about the file.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from snapkit.errors import SnapkitError

LOGGER_NAME = "snapkit"
DEFAULT_LOG_MAX_MB = 10.0
DEFAULT_LOG_BACKUPS = 3
_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def logger() -> logging.Logger:
    """The one logger every part of a listening session writes its lines to."""
    return logging.getLogger(LOGGER_NAME)


def open_log_file(
    path: Path, max_mb: float = DEFAULT_LOG_MAX_MB, backups: int = DEFAULT_LOG_BACKUPS
) -> logging.Handler:
    """Append the ``snapkit`` logger's lines to ``path``; once it passes ``max_mb`` megabytes it becomes ``path.1``
    (the older ones ``path.2`` ... ``path.<backups>``, the oldest dropped) and a new one starts. Returns the
    handler; pass it to :func:`close_log_file` at the end."""
    if max_mb <= 0:
        raise SnapkitError(f"--log-max-mb must be above 0, not {max_mb:g}.")
    if not path.parent.is_dir():
        raise SnapkitError(f"--log {path}: the folder {path.parent} does not exist; create it or choose another file.")
    try:
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=round(max_mb * 1_000_000), backupCount=backups, encoding="utf-8"
        )
    except OSError as err:
        raise SnapkitError(f"--log {path} cannot be written ({err.strerror or err}); choose another file.") from None
    handler.setFormatter(logging.Formatter(_FORMAT))
    log = logger()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def close_log_file(handler: logging.Handler) -> None:
    logger().removeHandler(handler)
    handler.close()
