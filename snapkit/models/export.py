"""Export a trained model to ONNX or TorchScript, for running it without snapkit (or without Python).

The exported graph is the whole :class:`~snapkit.models.classifier.SoundClassifier` forward pass, front end
included: ``waveform [batch, clip_samples]`` (float32 mono in [-1, 1] at the model's sample rate) ->
``frame_probs [batch, frames, classes]`` and ``clip_probs [batch, classes]``. The clip length is fixed (the
bundle's ``clip_s``); the batch axis is dynamic in both formats.

A JSON sidecar written next to the model (``<file>.json``, e.g. ``model.onnx.json``) holds what a program
needs to use the outputs: labels, per-class calibration (thresholds, band, pauses), sample rate, clip length,
frame hop and frame centre times.

Formats, as checked with torch 2.13:

- ``"onnx"``: ``torch.onnx.export(dynamo=True)`` (the ``torch.export``-based exporter, which needs the
  ``onnx`` and ``onnxscript`` packages: ``pip install 'snapkit[export]'``). ``torch.stft`` exports as the
  ONNX ``STFT`` operator (opset >= 17), so no hand-written DFT is needed. Weights are stored inside the one
  ``.onnx`` file (every snapkit model is far below ONNX's 2 GB limit).
- ``"torchscript"``: ``torch.jit.trace``, saved with ``torch.jit.save`` and loaded with ``torch.jit.load``
  (also from C++ libtorch). torch 2.13 marks TorchScript deprecated in favour of ``torch.export`` but still
  traces, saves and runs it; prefer ONNX for anything long-lived.

After exporting, the file is loaded back and run on a test waveform; an export that does not reproduce the
model within 1e-4 raises instead of being left behind (ONNX is checked when ``onnxruntime`` is installed).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import snapkit
from snapkit.errors import SnapkitError
from snapkit.files import replace_atomically
from snapkit.models.bundle import ModelBundle
from snapkit.models.classifier import SoundClassifier

ExportFormat = Literal["onnx", "torchscript"]
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript")
SIDECAR_FORMAT = "snapkit-export"
SIDECAR_FORMAT_VERSION = 2  # 2: "calibration" (per class on, off, band_hz, pause_s) replaced "thresholds"
# ONNX STFT needs opset 17; 18 is what torch 2.13's exporter targets best and onnxruntime >= 1.14 runs.
ONNX_OPSET = 18
INPUT_NAME = "waveform"
OUTPUT_NAMES = ("frame_probs", "clip_probs")
# Largest difference allowed between the exported model and the bundle's on the self-check.
TOLERANCE = 1e-4


def sidecar_path(path: Path | str) -> Path:
    """Where the JSON sidecar of an export at ``path`` goes: the same name plus ``.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def export_model(
    bundle: ModelBundle,
    path: Path | str,
    format: ExportFormat = "onnx",
    *,
    overwrite: bool = False,
) -> Path:
    """Export ``bundle``'s model to ``path`` in ``format``, with a JSON sidecar; returns ``path``.

    Both files are written atomically (temporary file, then rename).

    Args:
        bundle: The trained model, e.g. from ``load_model``.
        path: The file to write (conventionally ``.onnx`` or ``.pt``).
        format: ``"onnx"`` or ``"torchscript"``.
        overwrite: Replace existing files at ``path`` / its sidecar.

    Raises:
        SnapkitError: unknown format, files exist (without ``overwrite``), ONNX packages missing, or the
            folder cannot be written.
        RuntimeError: the exported model does not reproduce the bundle's outputs (a bug; please report it).
    """
    if format not in EXPORT_FORMATS:
        raise SnapkitError(f"Unknown export format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}.")
    path = Path(path)
    sidecar = sidecar_path(path)
    for target in (path, sidecar):
        if target.is_dir():
            raise SnapkitError(f"{target} is a folder; give a file name for the exported model.")
        if target.exists() and not overwrite:
            raise SnapkitError(f"{target} already exists; choose another name or allow overwriting it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SnapkitError(f"Cannot create the folder {path.parent} ({error.strerror}); choose another.") from error

    # A private copy in eval mode: exporting must not touch the bundle's model (its mode, device, weights).
    model = copy.deepcopy(bundle.model).cpu().eval()
    example = _test_waveform(model, batch=2, seed=0)
    check = _test_waveform(model, batch=3, seed=1)  # another batch size proves the batch axis is dynamic
    with torch.no_grad():
        expected = [tensor.numpy() for tensor in model(check)]

    with replace_atomically(path, what=f"the {format} export") as temp:
        if format == "onnx":
            _export_onnx(model, example, temp)
            actual = _run_onnx(temp, check)
        else:
            _export_torchscript(model, example, temp)
            actual = _run_torchscript(temp, check)
        if actual is not None:
            for name, want, got in zip(OUTPUT_NAMES, expected, actual, strict=True):
                difference = float(np.abs(want - got).max()) if want.shape == got.shape else float("inf")
                if not difference <= TOLERANCE:
                    raise RuntimeError(
                        f"The {format} export of {name} differs from the model by {difference:.3g} "
                        f"(allowed {TOLERANCE}); this is a snapkit bug, please report it."
                    )
    with replace_atomically(sidecar) as temp:
        temp.write_text(json.dumps(_sidecar(bundle, model, path, format), indent=2) + "\n", encoding="utf-8")
    return path


def _test_waveform(model: SoundClassifier, batch: int, seed: int) -> torch.Tensor:
    """Seeded noise ``[batch, clip_samples]`` with a louder burst, so every layer sees non-trivial input."""
    generator = torch.Generator().manual_seed(seed)
    waveform = 0.05 * torch.randn(batch, model.clip_samples, generator=generator)
    burst = slice(model.clip_samples // 3, model.clip_samples // 2)
    waveform[:, burst] *= 10.0
    return waveform


def _export_onnx(model: SoundClassifier, example: torch.Tensor, target: Path) -> None:
    try:
        import onnx  # noqa: F401  # the exporter imports them lazily; check first for a clear message
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise SnapkitError(
            f"ONNX export needs the packages onnx and onnxscript ({error.name} is missing); install them with "
            "`pip install 'snapkit[export]'` or export to TorchScript instead."
        ) from error
    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        torch.onnx.export(
            model,
            (example,),
            str(target),
            dynamo=True,
            verbose=False,
            external_data=False,  # one self-contained file
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: batch},),
        )


def _run_onnx(path: Path, waveform: torch.Tensor) -> list[np.ndarray] | None:
    """The ONNX model's outputs on ``waveform`` via onnxruntime, or None when onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return list(session.run(list(OUTPUT_NAMES), {INPUT_NAME: waveform.numpy()}))


def _export_torchscript(model: SoundClassifier, example: torch.Tensor, target: Path) -> None:
    with _quiet():
        with torch.no_grad():
            traced = torch.jit.trace(model, (example,), check_trace=False)
        torch.jit.save(traced, str(target))


def _run_torchscript(path: Path, waveform: torch.Tensor) -> list[np.ndarray]:
    with _quiet():
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return [tensor.numpy() for tensor in loaded(waveform)]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' expected warnings and log noise.

    ``torch.jit`` warns that it is deprecated, and the tracer warns about every shape check in the model
    (``if x.shape[-1] != ...``): those compare fixed sizes (the clip length, the feature width), which is what
    a fixed-length export wants; the batch size is never branched on, and the self-check runs another batch size.
    """
    # The ONNX exporter logs a warning per torchvision operator it cannot register: irrelevant here.
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated.*")
            yield
    finally:
        onnx_logger.setLevel(level)


def _sidecar(bundle: ModelBundle, model: SoundClassifier, path: Path, format: str) -> dict[str, Any]:
    """What a program running the exported file needs to know, as plain JSON values."""
    num_frames = model.num_output_frames(model.clip_samples)
    n_classes = model.n_classes
    info: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_FORMAT_VERSION,
        "snapkit_version": snapkit.__version__,
        "model_file": path.name,
        "model_format": format,
        "labels": list(model.labels),
        "background_label": model.config.background_label,
        "calibration": {label: entry.to_dict() for label, entry in (bundle.calibration or {}).items()},
        "sample_rate_hz": model.sample_rate_hz,
        "clip_s": model.config.clip_s,
        "clip_samples": model.clip_samples,
        "frame_hop_s": model.frame_hop_s,
        "first_frame_centre_s": model.first_frame_centre_s,
        "num_frames": num_frames,
        "frame_times_s": model.frame_times_s(num_frames).tolist(),
        "input": {"name": INPUT_NAME, "shape": ["batch", model.clip_samples], "dtype": "float32"},
        "outputs": [
            {"name": OUTPUT_NAMES[0], "shape": ["batch", num_frames, n_classes], "dtype": "float32"},
            {"name": OUTPUT_NAMES[1], "shape": ["batch", n_classes], "dtype": "float32"},
        ],
        "model_config": model.config.to_dict(),
        "frontend_config": model.frontend_config.to_dict(),
    }
    if format == "onnx":
        info["onnx_opset"] = ONNX_OPSET
    return info
