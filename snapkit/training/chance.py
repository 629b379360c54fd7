"""Is a quality estimate clearly better than answering without listening? The rule that stops a useless model
from reaching a user silently.

The chance level is the accuracy of the best answer that ignores the audio: always the most common class of the
test clips (never below a uniform guess). With few test clips an accuracy a little above that is luck, so a
model counts as having learnt something only when its accuracy clears chance by two binomial standard errors of
that many clips (a coin-flip model gets there about one time in forty) and by a tenth of the way from chance to
perfect (with hundreds of test clips two standard errors shrink to a few points, which no user would call
learning). Below that bar, the model is "near chance".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

# Standard errors an accuracy must clear chance by: one-sided, about 2.3 % of chance-level models pass.
_STANDARD_ERRORS = 2.0
# Least share of the gap between chance and a perfect score that counts as learning.
_MIN_SHARE_OF_GAP = 0.1


@dataclass(frozen=True)
class ChanceCheck:
    """An accuracy set against the chance level of its test clips.

    Attributes:
        accuracy: share of test clips answered right, 0-1.
        chance_accuracy: share of the most common class among them: what always answering it scores.
        clips: number of test clips.
        bar: the accuracy a model must exceed to count as having learnt something (see module docs).
    """

    accuracy: float
    chance_accuracy: float
    clips: int
    bar: float

    @property
    def near_chance(self) -> bool:
        return self.accuracy <= self.bar

    def to_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "near_chance": self.near_chance}


def check_chance(accuracy: float, test_labels: Sequence[str]) -> ChanceCheck:
    """Set ``accuracy`` (0-1) measured on clips labelled ``test_labels`` (background included) against chance."""
    if not test_labels:
        raise ValueError("check_chance needs the labels of at least one test clip.")
    clips = len(test_labels)
    chance = max(Counter(test_labels).values()) / clips
    standard_error = math.sqrt(chance * (1.0 - chance) / clips)
    bar = min(1.0, chance + max(_STANDARD_ERRORS * standard_error, _MIN_SHARE_OF_GAP * (1.0 - chance)))
    return ChanceCheck(accuracy=float(accuracy), chance_accuracy=chance, clips=clips, bar=bar)


def near_chance_sentence(check: ChanceCheck, backbone: str, estimate: str) -> str:
    """The one sentence a user reads when ``check.near_chance``: what happened, and what to do instead."""
    advice = (
        "retrain with `--backbone sfx-cnn9`, a pretrained model that learns from a handful of clips"
        if backbone == "convnet"
        else "check that every class folder holds its own sound, and record more clips of each"
    )
    return (
        f"The model learnt little: its estimated accuracy {check.accuracy:.2f} ({estimate}, {check.clips} clips) "
        f"is not clearly above the {check.chance_accuracy:.2f} of always answering the most common class; {advice}."
    )
