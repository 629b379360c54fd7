"""Several models on one stream (issue 13, item 2): heads on one backbone share its frames; the rest run side by side.

The backbone is sfx-cnn9's architecture with random weights (no download, no weights file): what is tested is that
stacking changes nothing but the cost. The heads are random too, and the thresholds are set from their own outputs
so that the stream gives events to compare.
"""

from __future__ import annotations

import copy
import csv
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from snapkit.detection.detector import Detector, DetectorSettings
from snapkit.detection.group import DetectorGroup, build_detector
from snapkit.errors import SnapkitError
from snapkit.models.backbones.registry import backbone_architecture
from snapkit.models.bundle import ModelBundle
from snapkit.models.classifier import SoundClassifier
from snapkit.models.config import ModelConfig
from snapkit.models.stack import HeadStack, can_share_backbone, stack_bundles

RATE = 44_100  # sfx-cnn9's


@pytest.fixture(scope="module")
def backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return backbone_architecture("sfx-cnn9")


def head_bundle(backbone: torch.nn.Module, labels: tuple[str, ...], seed: int) -> ModelBundle:
    torch.manual_seed(seed)
    # Each bundle holds its own copy of the backbone, as two bundles loaded from two files do.
    model = SoundClassifier(ModelConfig(backbone="sfx-cnn9", labels=labels), copy.deepcopy(backbone)).eval()
    return ModelBundle.from_model(model)


def stream(seconds: float = 5.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, 0.01, round(seconds * RATE)).astype(np.float32)
    t = np.arange(round(0.8 * RATE)) / RATE
    for start_s, hz in [(1.5, 900.0), (4.0, 2500.0), (6.0, 400.0)]:  # a few tones, so the heads' outputs move
        a = round(start_s * RATE)
        piece = audio[a : a + len(t)]  # cut short (or empty) past the end of a short stream
        piece += 0.3 * np.sin(2 * np.pi * hz * t[: len(piece)]).astype(np.float32)
    return audio


def middling_thresholds(bundles: list[ModelBundle], audio: np.ndarray) -> dict[str, float]:
    """Per class an on-threshold its random head crosses on ``audio`` now and then (the 80th percentile)."""
    out = {}
    for bundle in bundles:
        with torch.inference_mode():
            probs = bundle.model(torch.from_numpy(audio[None]))[0][0].numpy()
        out.update({label: float(np.percentile(probs[:, c], 80)) for c, label in enumerate(bundle.labels)})
    return out


def key(update: object) -> tuple:
    e = update.event  # type: ignore[attr-defined]
    return (update.kind, e.label, e.onset_s, e.offset_s if e.offset_s is not None else -1.0, e.peak_score)  # type: ignore[attr-defined]


def run(detector: Detector | DetectorGroup, audio: np.ndarray, chunk_s: float = 0.3) -> list:
    n = round(chunk_s * detector.sample_rate_hz)
    updates = []
    for i in range(0, len(audio), n):
        updates += detector.push(audio[i : i + n])
    return updates + detector.flush()


def test_a_head_stack_gives_every_members_own_outputs(backbone: torch.nn.Module) -> None:
    bundles = [head_bundle(backbone, ("a", "b"), 1), head_bundle(backbone, ("c",), 2), head_bundle(backbone, ("d",), 3)]
    audio = torch.from_numpy(stream(3.0)[None])
    with torch.inference_mode():
        alone = [b.model(audio) for b in bundles]
        stack = HeadStack([b.model for b in bundles])
        frames, clips = stack(audio)
    assert stack.labels == ("a", "b", "c", "d") and stack.backbone_runs == 1
    torch.testing.assert_close(frames, torch.cat([f for f, _ in alone], dim=-1))
    torch.testing.assert_close(clips, torch.cat([c for _, c in alone], dim=-1))
    # One backbone in memory: every member now holds the first one's.
    assert all(m.backbone is stack.backbone for m in stack.members)


def test_stacked_heads_find_exactly_what_each_finds_alone_and_run_the_backbone_once_per_window(
    backbone: torch.nn.Module,
) -> None:
    bundles = [head_bundle(backbone, (f"sound{k}",), 10 + k) for k in range(3)]
    audio = stream()
    on = middling_thresholds(bundles, audio)
    off = {k: v * 0.8 for k, v in on.items()}
    settings = [DetectorSettings(hop_s=0.5, on_thresholds=on, off_thresholds=off)] * 3
    alone = sorted(key(u) for b, s in zip(bundles, settings, strict=True) for u in run(Detector(b, s), audio))
    detector = build_detector(bundles, settings)
    assert isinstance(detector, Detector)  # all three became one stacked detector
    together = run(detector, audio)
    assert len(alone) >= 4, "the thresholds must give events for the comparison to mean anything"
    assert sorted(key(u) for u in together) == alone
    ids = [u.event_id for u in together if u.kind == "start"]
    assert len(ids) == len(set(ids))
    scorer = detector.scorer
    assert scorer.model.backbone_runs == scorer.windows_run  # type: ignore[union-attr]  # once per window, not 3x


def test_models_that_cannot_share_run_side_by_side_with_ids_unique_across_them(
    backbone: torch.nn.Module, detector_bundle_path: Path
) -> None:
    from snapkit.models.bundle import load_model

    convnet = load_model(detector_bundle_path)  # streams at 16 kHz: its own detector
    heads = [head_bundle(backbone, ("x",), 21), head_bundle(backbone, ("y",), 22)]
    assert can_share_backbone(heads[0], heads[1]) and not can_share_backbone(heads[0], convnet)
    audio16 = stream()[::2].copy()  # 16 kHz: the ConvNet's rate; the heads' detector resamples
    on = middling_thresholds(heads, stream())
    head_settings = DetectorSettings(hop_s=0.5, on_thresholds=on)
    group = build_detector([heads[0], convnet, heads[1]], [head_settings, DetectorSettings(), head_settings],
                           sample_rate_hz=16_000)  # fmt: skip
    assert isinstance(group, DetectorGroup) and len(group.members) == 2
    assert set(group.labels) == {"x", "y", *convnet.labels}
    updates = run(group, audio16)
    starts = [u.event_id for u in updates if u.kind == "start"]
    ends = [u.event_id for u in updates if u.kind == "end"]
    assert starts and len(starts) == len(set(starts)) and sorted(starts) == sorted(ends)
    assert [u.reported_at_s for u in updates] == sorted(u.reported_at_s for u in updates)


def test_two_models_with_the_same_class_name_are_refused_in_one_sentence(backbone: torch.nn.Module) -> None:
    bundles = [head_bundle(backbone, ("doorbell",), 1), head_bundle(backbone, ("doorbell", "kettle"), 2)]
    with pytest.raises(SnapkitError, match=r"^kitchen\.snapkit and hall\.snapkit both detect 'doorbell'"):
        build_detector(bundles, [DetectorSettings()] * 2, names=["kitchen.snapkit", "hall.snapkit"])


def test_different_backbone_weights_are_not_shared(backbone: torch.nn.Module) -> None:
    a = head_bundle(backbone, ("a",), 1)
    b = head_bundle(backbone, ("b",), 2)
    with torch.no_grad():
        next(b.model.backbone.parameters()).add_(0.01)  # type: ignore[union-attr]
    assert not can_share_backbone(a, b)
    with pytest.raises(ValueError, match="share"):
        stack_bundles([a, b])


def test_listen_takes_several_models(
    backbone: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real command (the microphone faked): two head bundles share one detector and both report."""
    import snapkit.cli.listen as listen_cli
    from snapkit.cli.app import app

    audio = stream()
    paths = []
    for k, label in enumerate(("kettle", "doorbell")):
        bundle = head_bundle(backbone, (label,), 30 + k)
        paths.append(bundle.save(tmp_path / f"{label}.snapkit"))
    thresholds = middling_thresholds([head_bundle(backbone, ("kettle",), 30), head_bundle(backbone, ("doorbell",), 31)],
                                     audio)  # fmt: skip

    class Mic:
        def __init__(self, device: object = None, sample_rate_hz: int | None = None, block_s: float = 0.05) -> None:
            self.device = types.SimpleNamespace(index=1, name="Fake")
            self.sample_rate_hz = sample_rate_hz or RATE
            self.overflows = self.dropped = self.lost_n = 0

        def start(self) -> Mic:
            return self

        def first_sample_wall_time_s(self, timeout_s: float = 15.0) -> float:
            return 1.7e9

        def blocks(self):
            n = round(0.05 * RATE)
            for i in range(0, len(audio), n):
                yield audio[i : i + n]

        def close(self) -> None:
            pass

    monkeypatch.setattr(listen_cli, "MicrophoneSource", Mic)
    args = ["listen", *map(str, paths), "--sample-rate-hz", str(RATE), "--events", str(tmp_path / "ev.csv"),
            "--hop-s", "0.5"]  # fmt: skip
    for label, on in thresholds.items():
        args += ["--threshold", f"{label}={on:.4f}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Listening with" in result.output and "kettle" in result.output and "doorbell" in result.output
    assert "2 class(es): kettle" in result.output and "windows of 2 s" in result.output  # one stacked detector
    with (tmp_path / "ev.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {row["label"] for row in rows} <= {"kettle", "doorbell"}, result.output
