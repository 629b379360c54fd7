"""Settings of a trainable sound classifier, saved in the model bundle and loaded with it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from snapkit.models.backbones.registry import BACKBONES

CONVNET = "convnet"
POOLINGS: tuple[str, ...] = ("max", "attention", "linear_softmax")


@dataclass(frozen=True)
class ModelConfig:
    """What a :class:`~snapkit.models.classifier.SoundClassifier` is made of.

    Attributes:
        backbone: ``"convnet"`` (snapkit's small ConvNet, trained from scratch on log-mel frames) or one of
            ``BACKBONES`` (a frozen pretrained network with a small trainable head on its frames).
        labels: The target classes, sorted, WITHOUT the background class: one sigmoid output each.
        background_label: The class meaning "nothing to report"; its clips train every output towards 0.
        clip_s: Length of the training clips in seconds (also the fixed input length of exported models).
        pooling: How frame probabilities become one clip probability: ``"max"``, ``"attention"`` or
            ``"linear_softmax"`` (see ``snapkit.models.pooling``).
        head_hidden: 0 for a linear per-frame head; > 0 for one hidden layer of that width (GELU + dropout).
        dropout: Dropout probability in the head (on its input for a linear head, after the hidden layer
            otherwise).
        convnet_channels: Output channels of each ConvNet block (ConvNet only).
        convnet_kernel: Odd kernel size of the ConvNet's convolutions, in frames and mel bins (ConvNet only).
        convnet_future_frames: How many future frames each ConvNet block's time convolution sees (the rest of its
            kernel looks back); None: half the kernel, symmetric. Fewer future frames let the streaming detector
            decide sooner (ConvNet only).
        clip_head: Also learn a clip classifier on the whole input's pooled features (max and standard deviation
            over time): a softmax over the target classes and background, which ``snapkit predict``/``evaluate``
            use to say which sound a clip holds. False in bundles written before it existed (format 1): they
            decide from pooled frame probabilities and thresholds.
    """

    backbone: str
    labels: tuple[str, ...]
    background_label: str = "background"
    clip_s: float = 2.0
    pooling: str = "max"
    head_hidden: int = 0
    dropout: float = 0.1
    convnet_channels: tuple[int, ...] = (8, 16, 32, 64)
    convnet_kernel: int = 7
    convnet_future_frames: int | None = None
    clip_head: bool = False

    def __post_init__(self) -> None:
        # Lists (from JSON or a caller) become tuples, so the config stays hashable and compares equal.
        if isinstance(self.labels, list):
            object.__setattr__(self, "labels", tuple(self.labels))
        if isinstance(self.convnet_channels, list):
            object.__setattr__(self, "convnet_channels", tuple(self.convnet_channels))

        if self.backbone != CONVNET and self.backbone not in BACKBONES:
            raise ValueError(
                f"Unknown backbone {self.backbone!r}: choose {CONVNET!r} or one of {', '.join(BACKBONES)}."
            )
        if not isinstance(self.labels, tuple) or not self.labels:
            raise ValueError("labels must name at least one target class (the background class is not one).")
        if not all(isinstance(label, str) and label for label in self.labels):
            raise ValueError(f"Every label must be a non-empty string, got {self.labels!r}.")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must not repeat a class, got {self.labels!r}.")
        if list(self.labels) != sorted(self.labels):
            # Sorting here silently would reorder the outputs behind the caller's back; the caller's target
            # vectors must use the same order, so make them sort it.
            raise ValueError(f"labels must be sorted, got {self.labels!r}; pass tuple(sorted(labels)).")
        if not self.background_label:
            raise ValueError("background_label must be a non-empty string.")
        if self.background_label in self.labels:
            raise ValueError(
                f"labels must not include the background class {self.background_label!r}: it has no output."
            )
        if not self.clip_s > 0:
            raise ValueError(f"clip_s must be a positive number of seconds, got {self.clip_s}.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}.")
        if isinstance(self.head_hidden, bool) or not isinstance(self.head_hidden, int) or self.head_hidden < 0:
            raise ValueError(f"head_hidden must be 0 (linear head) or a positive width, got {self.head_hidden!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {self.dropout}.")
        if (
            not isinstance(self.convnet_channels, tuple)
            or not self.convnet_channels
            or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in self.convnet_channels)
        ):
            raise ValueError(
                f"convnet_channels must be one or more positive channel counts, got {self.convnet_channels!r}."
            )
        if (
            isinstance(self.convnet_kernel, bool)
            or not isinstance(self.convnet_kernel, int)
            or self.convnet_kernel < 1
            or self.convnet_kernel % 2 == 0
        ):
            # An odd kernel pads equally on both sides, so output frame k stays centred on input frame k.
            raise ValueError(f"convnet_kernel must be an odd positive size, got {self.convnet_kernel!r}.")
        future = self.convnet_future_frames
        if future is not None and (isinstance(future, bool) or not 0 <= future < self.convnet_kernel):
            raise ValueError(f"convnet_future_frames must be between 0 and convnet_kernel - 1, got {future!r}.")

    @property
    def n_classes(self) -> int:
        """Number of outputs (target classes; background has none)."""
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (tuples become lists), safe for JSON and for ``torch.load(weights_only=True)``."""
        values = asdict(self)
        values["labels"] = list(self.labels)
        values["convnet_channels"] = list(self.convnet_channels)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """The config ``to_dict`` produced (lists back to tuples).

        Raises:
            ValueError: unknown or missing keys, or invalid values.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown model settings: {', '.join(unknown)}.")
        values = dict(values)
        for key in ("labels", "convnet_channels"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except TypeError as error:  # a required setting is missing
            raise ValueError(f"Incomplete model settings: {error}.") from error
