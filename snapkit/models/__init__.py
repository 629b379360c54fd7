"""Models: frozen pretrained backbones, snapkit's own ConvNet, the trainable classifier, its bundle and export.

Names are imported on first use (PEP 562), so importing one submodule (e.g. ``snapkit.models.weights``) does not
pay for the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SoundClassifier": "snapkit.models.classifier",
    "ModelConfig": "snapkit.models.config",
    "ModelBundle": "snapkit.models.bundle",
    "load_model": "snapkit.models.bundle",
    "export_model": "snapkit.models.export",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        # Also how ``from snapkit.models import panns`` falls through to importing the submodule.
        raise AttributeError(f"module 'snapkit.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
