"""Training: from class folders to batches (augmentation, loading, splits, embedding cache) and the training run.

Names are imported on first use (PEP 562), so importing a submodule does not pay for the others.
"""

from __future__ import annotations

from snapkit._lazy import lazy_exports

_EXPORTS = {
    "AugmentConfig": "snapkit.training.augment",
    "SpecAugment": "snapkit.training.augment",
    "augment_waveform": "snapkit.training.augment",
    "fit_to_length": "snapkit.training.augment",
    "mix_at_snr": "snapkit.training.augment",
    "active_power": "snapkit.audio.levels",
    "generate_noise": "snapkit.training.augment",
    "ClipSet": "snapkit.training.data",
    "load_clipset": "snapkit.training.data",
    "add_stand_in_background": "snapkit.training.data",
    "check_trainable": "snapkit.training.data",
    "WaveformDataset": "snapkit.training.data",
    "balanced_sampler": "snapkit.training.data",
    "stratified_folds": "snapkit.training.data",
    "stratified_split": "snapkit.training.data",
    "EmbeddingCache": "snapkit.training.cache",
    "CacheStats": "snapkit.training.cache",
    "FeatureDataset": "snapkit.training.cache",
    "compute_views": "snapkit.training.cache",
    "default_cache_root": "snapkit.training.cache",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports("snapkit.training", _EXPORTS, globals())
