"""Every pretrained backbone snapkit knows, by name: the one place a backbone is added.

Adding one: write its :class:`~snapkit.models.backbones.base.FrameEmbedder` in a module of this package (importing
``base`` only) and add one :class:`BackboneSpec` to ``BACKBONES``. Loading, saved bundles, model settings, weights
look-up and ``snapkit train --backbone`` all read the names here.

This module imports neither torch nor the model modules, so that ``snapkit train --help`` can list the names
without paying for them: an entry names its architecture as ``"module:Class"``, imported when it is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from snapkit.errors import SnapkitError
from snapkit.models.weights import WeightsSpec, resolve_weights

if TYPE_CHECKING:  # for annotations only: importing base at run time would import torch
    from snapkit.models.backbones.base import FrameEmbedder

_ZENODO = "https://zenodo.org/record/3987831/files/{}?download=1"


def _zenodo_url(filename: str) -> str:
    # Zenodo's file names contain "=", which must be percent-encoded in the path.
    return _ZENODO.format(filename.replace("=", "%3D"))


@dataclass(frozen=True)
class BackboneSpec:
    """One pretrained backbone.

    Attributes:
        name: What ``--backbone`` takes and a bundle stores; also the built model's ``name`` and ``weights.name``.
        architecture: ``"module:Class"`` of its :class:`FrameEmbedder`, built with random weights by ``Class()``.
        weights: The released weights file and how to check it.
        help: One line for ``snapkit train --help``.
    """

    name: str
    architecture: str
    weights: WeightsSpec
    help: str

    def __post_init__(self) -> None:
        if self.weights.name != self.name:
            raise ValueError(f"Backbone {self.name!r} has the weights of {self.weights.name!r}.")
        if self.architecture.count(":") != 1:
            raise ValueError(
                f"Backbone {self.name!r}: architecture must read 'module:Class', not {self.architecture!r}."
            )

    def factory(self) -> Callable[[], FrameEmbedder]:
        """The architecture's class, its module imported now."""
        module, attribute = self.architecture.split(":")
        factory: Callable[[], FrameEmbedder] = getattr(importlib.import_module(module), attribute)
        return factory

    def build(self) -> FrameEmbedder:
        """The architecture with random weights, not frozen."""
        model = self.factory()()
        if model.name != self.name:
            raise ValueError(
                f"{self.architecture} builds a backbone called {model.name!r}, registered as {self.name!r}."
            )
        return model


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="sfx-cnn9",
            architecture="snapkit.models.backbones.sfx_cnn9:SfxCnn9",
            weights=WeightsSpec(
                name="sfx-cnn9",
                filename="checkpoint.pth",
                url=None,
                sha256="499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5",
                size_bytes=24_900_277,
                how_to_get=(
                    "Run `pip download aisfx==0.1.2 --no-deps` and take aisfx/models/checkpoint.pth out of the wheel "
                    "(it is a zip file); do not install that package."
                ),
                pip_requirement="aisfx==0.1.2",
                wheel_member="aisfx/models/checkpoint.pth",
            ),
            help="sound-effects CNN of Ma & Lerch 2022, learns from a handful of clips",
        ),
        BackboneSpec(
            name="panns-cnn6",
            architecture="snapkit.models.backbones.panns:Cnn6",
            weights=WeightsSpec(
                name="panns-cnn6",
                filename="Cnn6_mAP=0.343.pth",
                url=_zenodo_url("Cnn6_mAP=0.343.pth"),
                md5="e25e26b84585b14c7754c91e48efc9be",
                how_to_get="Download Cnn6_mAP=0.343.pth from Zenodo record 3987831 (PANNs, Kong et al. 2020).",
            ),
            help="PANNs AudioSet CNN, the smallest",
        ),
        BackboneSpec(
            name="panns-cnn10",
            architecture="snapkit.models.backbones.panns:Cnn10",
            weights=WeightsSpec(
                name="panns-cnn10",
                filename="Cnn10_mAP=0.380.pth",
                url=_zenodo_url("Cnn10_mAP=0.380.pth"),
                md5="bfb1f1f9968938fa8ef4012b8471f5f6",
                size_bytes=25_237_595,
                how_to_get="Download Cnn10_mAP=0.380.pth from Zenodo record 3987831 (PANNs, Kong et al. 2020).",
            ),
            help="PANNs AudioSet CNN, mid-sized",
        ),
        BackboneSpec(
            name="panns-cnn14",
            architecture="snapkit.models.backbones.panns:Cnn14",
            weights=WeightsSpec(
                name="panns-cnn14",
                filename="Cnn14_mAP=0.431.pth",
                url=_zenodo_url("Cnn14_mAP=0.431.pth"),
                md5="541141fa2ee191a88f24a3219fff024e",
                how_to_get=(
                    "Download Cnn14_mAP=0.431.pth (about 327 MB) from Zenodo record 3987831 (PANNs, Kong et al.)."
                ),
            ),
            help="PANNs AudioSet CNN, the largest: a 327 MB download, slow on a CPU",
        ),
    )
}


def backbone_spec(name: str) -> BackboneSpec:
    """The registry entry called ``name``.

    Raises:
        SnapkitError: no backbone is called that (the message lists those that are).
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise SnapkitError(f"Unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}.") from None


def backbone_architecture(name: str) -> FrameEmbedder:
    """The backbone called ``name`` with random weights, frozen: the skeleton a saved state dict loads into.

    Used to rebuild a model from a bundle (which carries the backbone's weights itself) and in tests; never
    downloads anything.

    Raises:
        SnapkitError: unknown ``name``.
    """
    return backbone_spec(name).build().freeze()


def load_backbone(
    name: str,
    weights: Path | str | None = None,
    *,
    download: bool = True,
    progress: bool = True,
) -> FrameEmbedder:
    """The pretrained backbone called ``name``, with verified weights loaded, frozen and in eval mode.

    Args:
        name: One of ``BACKBONES``.
        weights: A weights file to use instead of looking in ``$SNAPKIT_WEIGHTS_DIR`` / the user cache.
        download: Whether missing weights may be downloaded.
        progress: Whether to draw a download progress bar.

    Raises:
        SnapkitError: unknown ``name``.
        WeightsError: the weights are missing, do not verify, or cannot be read.
    """
    spec = backbone_spec(name)
    path = resolve_weights(spec.weights, weights, download=download, progress=progress)
    model = spec.build()
    model.load_checkpoint(path)
    return model.freeze()
