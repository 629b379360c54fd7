"""Log-mel front ends: the settings each model was trained with, and a torch module that computes them."""

from snapkit.features.config import PANNS, PRESETS, SFX_CNN9, SNAPKIT, FrontEndConfig, get_preset
from snapkit.features.frontend import LogMel
from snapkit.features.mel import mel_filterbank

__all__ = [
    "PANNS",
    "PRESETS",
    "SFX_CNN9",
    "SNAPKIT",
    "FrontEndConfig",
    "LogMel",
    "get_preset",
    "mel_filterbank",
]
