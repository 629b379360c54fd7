"""Frozen pretrained backbones: waveform -> feature frames that a small trained head reads.

- ``base``: the :class:`~snapkit.models.backbones.base.FrameEmbedder` interface and what implementations share;
- one module per family (``sfx_cnn9``, ``panns``), each importing ``base`` and nothing above it;
- ``registry``: name -> spec, the one place a backbone is added; ``load_backbone`` and ``backbone_architecture``.
"""
