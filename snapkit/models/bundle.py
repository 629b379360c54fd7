"""The model bundle: one self-contained file holding a trained classifier and everything needed to run it.

The file is a ``torch.save`` of a plain dict::

    format           "snapkit-model"
    format_version   4 (3: no operating curves; 2: thresholds and class profiles as loose dicts; 1: before the clip
                     head; all still read)
    snapkit_version  the snapkit version that wrote it, e.g. "0.1.0"
    model_config     ModelConfig.to_dict()
    frontend_config  FrontEndConfig.to_dict() of the front end the model uses (checked on load)
    calibration      {label: ClassCalibration.to_dict()}: per class the detector's on/off thresholds and the band
                     and pauses training measured, and the false-alarm curve calibrate measured
                     (snapkit.models.calibration)
    training         free dict of plain JSON-able values (metrics, dataset summary, settings); may be empty
    state_dict       the WHOLE model's tensors, frozen backbone included

Because the backbone's weights are inside, a bundle loads offline with nothing else: about 20 MB with sfx-cnn9,
PANNs Cnn6 or Cnn10, about 330 MB with Cnn14, and about 0.1 MB with the ConvNet.

Everything stored is a tensor, str, int, float, bool, None, list or dict, so :func:`load_model` reads it with
``torch.load(weights_only=True)``: opening a bundle can never run code, even one from a stranger.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import snapkit
from snapkit.errors import SnapkitError
from snapkit.files import INCOMPLETE_MARKER, replace_atomically
from snapkit.models.backbones.registry import backbone_architecture
from snapkit.models.calibration import (
    Calibration,
    ClassCalibration,
    check_calibration,
    default_calibration,
    from_legacy,
)
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import CONVNET, ModelConfig

FORMAT = "snapkit-model"
FORMAT_VERSION = 4


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain JSON-able data (tuples -> lists, numpy/torch scalars -> Python numbers), or
    ValueError naming where the first unsupported value is."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ValueError(f"{where} must have string keys, got {list(value)!r}.")
        return {key: _plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    # A metric straight from torchmetrics or numpy: a one-element number is fine, as a Python number.
    item = getattr(value, "item", None)
    size = getattr(value, "size", None)
    numel = value.numel() if isinstance(value, torch.Tensor) else size
    if callable(item) and numel == 1:
        return _plain(item(), where)
    raise ValueError(
        f"{where} is a {type(value).__name__}; training info must be plain numbers, strings, lists and dicts."
    )


@dataclass
class ModelBundle:
    """A trained classifier with its detection thresholds and training record.

    Attributes:
        model: The classifier (eval mode after :func:`load_model`).
        config: Its settings (must equal ``model.config``).
        calibration: per target class its :class:`ClassCalibration`; None: the uncalibrated defaults.
        training: Plain JSON-able record of how it was trained (metrics, dataset summary, settings).
        snapkit_version: The snapkit version that wrote it.
        path: The file it was loaded from or last saved to, if any.
    """

    model: SoundClassifier
    config: ModelConfig
    calibration: Calibration | None = None
    training: dict[str, Any] = field(default_factory=dict)
    snapkit_version: str = field(default_factory=lambda: snapkit.__version__)
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.config != self.model.config:
            raise ValueError("The bundle's config differs from its model's config; pass config=model.config.")
        self.calibration = check_calibration(
            default_calibration(self.config.labels) if self.calibration is None else self.calibration,
            self.config.labels,
        )
        if self.training is None:
            self.training = {}
        if not isinstance(self.training, dict):
            raise ValueError(f"training must be a dict of plain values, got a {type(self.training).__name__}.")
        self.training = _plain(self.training, "training")

    @classmethod
    def from_model(
        cls,
        model: SoundClassifier,
        calibration: Calibration | None = None,
        training: dict[str, Any] | None = None,
    ) -> ModelBundle:
        """A bundle for ``model`` with its own config."""
        return cls(model=model, config=model.config, calibration=calibration, training=dict(training or {}))

    @property
    def labels(self) -> tuple[str, ...]:
        """Target classes, in output order."""
        return self.config.labels

    def calibrated(self, label: str) -> ClassCalibration:
        """The calibration of target class ``label``."""
        assert self.calibration is not None  # filled by __post_init__
        return self.calibration[label]

    def to_dict(self) -> dict[str, Any]:
        """The dict saved to the file (tensors are the model's own, on CPU)."""
        assert self.calibration is not None  # filled by __post_init__
        # Both are checked again here: either may have been edited since the bundle was made.
        state = {key: tensor.detach().cpu() for key, tensor in self.model.state_dict().items()}
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "snapkit_version": snapkit.__version__,
            "model_config": self.config.to_dict(),
            "frontend_config": self.model.frontend_config.to_dict(),
            "calibration": {
                label: entry.to_dict() for label, entry in check_calibration(self.calibration, self.labels).items()
            },
            "training": _plain(self.training, "training"),
            "state_dict": state,
        }

    def save(self, path: Path | str, *, overwrite: bool = False) -> Path:
        """Write the bundle to ``path`` atomically (a temporary file beside it, then a rename), so a crash or
        Ctrl-C never leaves a half-written model; returns the path and sets ``self.path``.

        Raises:
            SnapkitError: ``path`` exists and ``overwrite`` is False, or its folder cannot be written.
        """
        path = Path(path)
        if path.is_dir():
            raise SnapkitError(f"{path} is a folder; give a file name for the model, e.g. {path / 'model.snapkit'}.")
        if path.exists() and not overwrite:
            raise SnapkitError(f"The model file {path} already exists; choose another name or allow overwriting it.")
        contents = self.to_dict()
        with replace_atomically(path, what="the model file") as temp, open(temp, "xb") as file:
            torch.save(contents, file)
            file.flush()
            os.fsync(file.fileno())
        self.path = path
        return path


def _unreadable(path: Path, detail: str) -> SnapkitError:
    return SnapkitError(
        f"The file {path} is not a readable snapkit model ({detail}); train a new one with `snapkit train` or "
        "use the model file it wrote."
    )


def load_model(path: Path | str) -> ModelBundle:
    """Load a bundle written by :meth:`ModelBundle.save`: the model is on CPU, in eval mode, ready to run.

    Only ``torch.load(..., weights_only=True)`` is used: a file holding anything but tensors and plain values
    is refused before any of it runs.

    Raises:
        SnapkitError: the file is missing, is not a snapkit model, is corrupt, or was written by a newer
            snapkit (the message names the file and what to do).
    """
    path = Path(path)
    if not path.exists():
        raise SnapkitError(f"There is no model file at {path}; check the path, or train one with `snapkit train`.")
    if path.is_dir():
        raise SnapkitError(
            f"{path} is a folder, not a model file; give the model.snapkit file that `snapkit train` wrote, "
            f"such as {path / 'model.snapkit'}."
        )
    if (path.parent / INCOMPLETE_MARKER).exists():
        raise SnapkitError(
            f"{path} belongs to a training run that did not finish ({path.parent / INCOMPLETE_MARKER} is beside "
            "it); use a finished run, or train again."
        )
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refuses any object that is not a tensor or plain value: a foreign or malicious file.
        raise _unreadable(path, "it holds objects other than tensors and plain values, so it was not opened") from error
    except Exception as error:  # arbitrary bytes make the unpickler fail in arbitrary ways (IndexError, ...)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise _unreadable(path, f"it is damaged or not a PyTorch file: {first}") from error

    if not isinstance(contents, dict) or contents.get("format") != FORMAT:
        raise _unreadable(path, f"no {FORMAT!r} marker")
    version = contents.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _unreadable(path, "its format version is missing")
    if version > FORMAT_VERSION:
        raise SnapkitError(
            f"The model file {path} was written by a newer snapkit ({contents.get('snapkit_version', '?')}, "
            f"bundle format {version}; this snapkit {snapkit.__version__} reads format {FORMAT_VERSION}); "
            "upgrade snapkit to use it."
        )
    try:
        config = ModelConfig.from_dict(contents["model_config"])
        model = SoundClassifier(config, None if config.backbone == CONVNET else backbone_architecture(config.backbone))
        _check_frontend(model, contents["frontend_config"])
        _load_weights(model, contents["state_dict"])
        model.eval()
        training = contents.get("training") or {}
        if version >= 3:
            calibration = {label: ClassCalibration.from_dict(entry) for label, entry in contents["calibration"].items()}
        else:  # thresholds and class profiles were loose dicts
            profiles = training.pop("class_profiles", None) if isinstance(training, dict) else None
            calibration = from_legacy(contents.get("thresholds"), profiles, config.labels)
        bundle = ModelBundle(
            model=model,
            config=config,
            calibration=calibration,
            training=training,
            snapkit_version=str(contents.get("snapkit_version", "unknown")),
            path=path,
        )
    except SnapkitError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        detail = f"missing entry {error}" if isinstance(error, KeyError) else str(error).strip().splitlines()[0]
        raise _unreadable(path, detail.rstrip(".")) from error
    return bundle


def _load_weights(model: SoundClassifier, state: Any) -> None:
    """Load ``state`` into ``model``, or ValueError saying which tensors do not fit its settings."""
    if not isinstance(state, dict):
        raise ValueError("its state_dict is not a dict")
    expected = model.state_dict()
    problems = {
        "missing": [key for key in expected if key not in state],
        "unexpected": [key for key in state if key not in expected],
        "wrong shape": [
            key
            for key, tensor in expected.items()
            if key in state and (not isinstance(state[key], torch.Tensor) or state[key].shape != tensor.shape)
        ],
    }
    if any(problems.values()):
        details = "; ".join(
            f"{kind}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}" for kind, keys in problems.items() if keys
        )
        raise ValueError(f"its weights do not fit its settings ({details})")
    model.load_state_dict(state, strict=True)


def _check_frontend(model: SoundClassifier, saved: Any) -> None:
    """ValueError unless ``saved`` (a front-end dict) is the front end this snapkit builds for ``model``.

    A model learnt on one set of log-mel numbers is wrong on any other; this catches a bundle from a snapkit
    whose presets changed.
    """
    expected = model.frontend_config.to_dict()
    if not isinstance(saved, dict):
        raise ValueError("its frontend_config is not a dict")
    differing = sorted(key for key in expected.keys() | saved.keys() if not _same(expected.get(key), saved.get(key)))
    if differing:
        raise ValueError(
            f"its front end differs from the one {model.config.backbone} uses in this snapkit ({', '.join(differing)})"
        )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b
