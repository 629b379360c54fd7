"""The model bundle: one self-contained file holding a trained classifier and everything needed to run it.

The file is a ``torch.save`` of a plain dict::

    format           "snapkit-model"
    format_version   2 (1: before the clip head; still read)
    snapkit_version  the snapkit version that wrote it, e.g. "0.1.0"
    model_config     ModelConfig.to_dict()
    frontend_config  FrontEndConfig.to_dict() of the front end the model uses (checked on load)
    thresholds       {label: {"on": float, "off": float}} detector hysteresis thresholds per class
    training         free dict of plain JSON-able values (metrics, dataset summary, settings); may be empty
    state_dict       the WHOLE model's tensors, frozen backbone included

Because the backbone's weights are inside, a bundle loads offline with nothing else: about 20 MB with sfx-cnn9,
PANNs Cnn6 or Cnn10, about 330 MB with Cnn14, and about 0.1 MB with the ConvNet.

Everything stored is a tensor, str, int, float, bool, None, list or dict, so :func:`load_model` reads it with
``torch.load(weights_only=True)``: opening a bundle can never run code, even one from a stranger.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import snapkit
from snapkit.errors import SnapkitError
from snapkit.models.backbones.registry import backbone_architecture
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import CONVNET, ModelConfig

FORMAT = "snapkit-model"
FORMAT_VERSION = 2
DEFAULT_ON_THRESHOLD = 0.5
DEFAULT_OFF_THRESHOLD = 0.35


def default_thresholds(labels: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``{label: {"on": 0.5, "off": 0.35}}`` for every label."""
    return {label: {"on": DEFAULT_ON_THRESHOLD, "off": DEFAULT_OFF_THRESHOLD} for label in labels}


def _check_thresholds(thresholds: dict[str, dict[str, float]], labels: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """A clean copy of ``thresholds`` (floats), or ValueError: one entry per label with 0 < off <= on < 1."""
    if not isinstance(thresholds, dict) or set(thresholds) != set(labels):
        given = sorted(thresholds) if isinstance(thresholds, dict) else thresholds
        raise ValueError(f"thresholds must have exactly one entry per label {list(labels)}, got {given}.")
    clean: dict[str, dict[str, float]] = {}
    for label in labels:
        entry = thresholds[label]
        try:
            on, off = float(entry["on"]), float(entry["off"])
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"thresholds[{label!r}] must be {{'on': float, 'off': float}}, got {entry!r}.") from None
        # The off threshold is the lower one of the hysteresis: an event starts above `on`, ends below `off`.
        if not 0.0 < off <= on < 1.0:
            raise ValueError(f"thresholds[{label!r}] needs 0 < off <= on < 1, got on={on}, off={off}.")
        clean[label] = {"on": on, "off": off}
    return clean


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
        thresholds: ``{label: {"on": p, "off": p}}`` per target class; None gives 0.5 / 0.35 for every label.
        training: Plain JSON-able record of how it was trained (metrics, dataset summary, settings).
        snapkit_version: The snapkit version that wrote it.
        path: The file it was loaded from or last saved to, if any.
    """

    model: SoundClassifier
    config: ModelConfig
    thresholds: dict[str, dict[str, float]] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    snapkit_version: str = field(default_factory=lambda: snapkit.__version__)
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.config != self.model.config:
            raise ValueError("The bundle's config differs from its model's config; pass config=model.config.")
        self.thresholds = _check_thresholds(
            default_thresholds(self.config.labels) if self.thresholds is None else self.thresholds,
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
        thresholds: dict[str, dict[str, float]] | None = None,
        training: dict[str, Any] | None = None,
    ) -> ModelBundle:
        """A bundle for ``model`` with its own config."""
        return cls(model=model, config=model.config, thresholds=thresholds, training=dict(training or {}))

    @property
    def labels(self) -> tuple[str, ...]:
        """Target classes, in output order."""
        return self.config.labels

    def to_dict(self) -> dict[str, Any]:
        """The dict saved to the file (tensors are the model's own, on CPU)."""
        assert self.thresholds is not None  # filled by __post_init__
        # Both are checked again here: either may have been edited since the bundle was made.
        state = {key: tensor.detach().cpu() for key, tensor in self.model.state_dict().items()}
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "snapkit_version": snapkit.__version__,
            "model_config": self.config.to_dict(),
            "frontend_config": self.model.frontend_config.to_dict(),
            "thresholds": _check_thresholds(self.thresholds, self.config.labels),
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
        temp = temporary_path_beside(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "xb") as file:
                torch.save(contents, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, path)
        except OSError as error:
            raise SnapkitError(
                f"Cannot write the model file {path} ({error.strerror}); check the folder, disk space and permissions."
            ) from error
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()  # only still there if something failed (or Ctrl-C) before the rename
        self.path = path
        return path


def temporary_path_beside(path: Path) -> Path:
    """A fresh hidden name beside ``path`` to write to before renaming.

    Not ``tempfile.mkstemp``: that creates the file with mode 0600, and a model should get the user's usual
    permissions (umask) like any other file they save.
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


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
        thresholds = contents.get("thresholds")
        bundle = ModelBundle(
            model=model,
            config=config,
            thresholds=thresholds,
            training=contents.get("training") or {},
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
