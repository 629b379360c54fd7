"""Models: frozen pretrained backbones, snapkit's own ConvNet, the trainable classifier, its bundle and export.

Names are imported on first use (PEP 562), so importing one submodule (e.g. ``snapkit.models.weights``) does not
pay for the others.
"""

from __future__ import annotations

from snapkit._lazy import lazy_exports

_EXPORTS = {
    "SoundClassifier": "snapkit.models.classifier",
    "ModelConfig": "snapkit.models.config",
    "ModelBundle": "snapkit.models.bundle",
    "load_model": "snapkit.models.bundle",
    "export_model": "snapkit.models.export",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports("snapkit.models", _EXPORTS, globals())
