"""snapkit: teach a computer to recognise your own sounds from a handful of clips, then let it listen.

The public API, for notebooks and scripts::

    from snapkit import load_audio, LogMel, scan_dataset, load_model

Names are imported on first use (PEP 562), so ``import snapkit`` and the CLI's quick commands do not pay for torch.
"""

from __future__ import annotations

import logging

from snapkit._lazy import lazy_exports

__version__ = "0.1.0"

# A library's loggers stay quiet unless the application asks (``listen --log`` adds a file); without this, Python's
# last-resort handler would print every warning a second time on stderr.
logging.getLogger("snapkit").addHandler(logging.NullHandler())

_EXPORTS = {
    "load_audio": "snapkit.audio.io",
    "write_wav": "snapkit.audio.io",
    "ArraySource": "snapkit.audio.sources",
    "FileSource": "snapkit.audio.sources",
    "MicrophoneSource": "snapkit.audio.sources",
    "list_input_devices": "snapkit.audio.devices",
    "FrontEndConfig": "snapkit.features.config",
    "LogMel": "snapkit.features.frontend",
    "scan_dataset": "snapkit.dataset.scan",
    "find_problems": "snapkit.dataset.scan",
    "import_files": "snapkit.dataset.importer",
    "relabel_clips": "snapkit.dataset.relabel",
    "undo_last": "snapkit.dataset.relabel",
    "mine_files": "snapkit.detection.mine",
    "load_backbone": "snapkit.models.backbones.registry",
    "ModelConfig": "snapkit.models.config",
    "SoundClassifier": "snapkit.models.classifier",
    "ModelBundle": "snapkit.models.bundle",
    "load_model": "snapkit.models.bundle",
    "predict_file": "snapkit.models.predict",
    "TrainSettings": "snapkit.training.train",
    "plan_training": "snapkit.training.train",
    "run_training": "snapkit.training.train",
    "AugmentConfig": "snapkit.training.augment",
    "SnapkitError": "snapkit.errors",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports("snapkit", _EXPORTS, globals())
