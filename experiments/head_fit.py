"""Ablations of the in-memory head fit (snapkit.training.headfit) on real episodes, against logistic regression.

    SNAPKIT_WEIGHTS_DIR=../shared/models python experiments/head_fit.py ../shared/sounds \
        [--classes 31] [--clips 5] [--views 8] [--c 0.1 1 10] [--frame-views 1 4] [--clip-views 1 8]
        [--iterations 100] [--augment NAME=VALUE ...] [--snr-db 6 0] [--episodes 1]

An episode is drawn as ``train_speed.py`` draws it (its first ``--classes`` classes, ``--clips`` training clips
each, background cut from the household recordings). The views of every training clip are embedded once through
snapkit's cache (``compute_views``, a private cache folder under ``--cache``); then, for each setting, one head is
fitted on all training clips and scored on the test clips as ``snapkit predict`` scores them (clip head decision,
whole clip), clean and mixed with held-out household background at ``--snr-db``. Logistic regression (sklearn,
C = 1) on the clean whole-clip embedding is the reference. Prints accuracy (and the difference to logistic
regression) and fit seconds per setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.train_speed import draw_episode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sounds", type=Path)
    parser.add_argument("--classes", type=int, default=31)
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--views", type=int, nargs="+", default=[8])
    parser.add_argument("--c", type=float, nargs="+", default=[1.0])
    parser.add_argument("--frame-views", type=int, nargs="+", default=[4])
    parser.add_argument("--clip-views", type=int, nargs="+", default=[1])
    parser.add_argument("--iterations", type=int, nargs="+", default=[60], help="at most, of the frame head")
    parser.add_argument(
        "--augment",
        nargs="*",
        default=[],
        help="AugmentConfig settings as NAME=VALUE (JSON values), e.g. mix_snr_db=[5,25]",
    )
    parser.add_argument("--snr-db", type=float, nargs="*", default=[6.0], help="also test clips mixed at these SNRs")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "snapkit-head-fit-cache")
    args = parser.parse_args(argv)

    import os

    os.environ["SNAPKIT_CACHE_DIR"] = str(args.cache)
    from experiments.fewshot import fit_predict_baseline
    from snapkit.dataset.scan import scan_dataset
    from snapkit.models.backbones.registry import load_backbone
    from snapkit.models.classifier import SoundClassifier
    from snapkit.models.config import ModelConfig
    from snapkit.models.predict import probabilities_from_features, window_features
    from snapkit.training.augment import AugmentConfig, fit_to_length
    from snapkit.training.cache import EmbeddingCache, compute_views
    from snapkit.training.data import load_clipset
    from snapkit.training.headfit import HeadFitSettings, ViewStats, fit_head

    backbone = load_backbone("sfx-cnn9")
    rate = backbone.frontend_config.sample_rate_hz
    for episode in range(args.episodes):
        tmp = Path(tempfile.mkdtemp(prefix="snapkit-head-fit-"))
        data, test = tmp / "data", tmp / "test"
        draw_episode(args.sounds, args.classes, args.clips, args.test_per_class, episode, data, test)
        clips = load_clipset(scan_dataset(data), rate, progress=False)
        tests = load_clipset(scan_dataset(test), rate, progress=False)
        classes = clips.classes
        config = ModelConfig(backbone="sfx-cnn9", labels=classes, clip_s=5.0, clip_head=True)
        template = SoundClassifier(config, backbone)
        changes = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.augment)}
        augment = AugmentConfig.from_dict({**AugmentConfig(mix_generated_noise=False).to_dict(), **changes})
        from snapkit.training.augment import mix_at_snr

        # Noisy copies of the test clips: each sound clip mixed with a stretch of held-out background.
        rng = np.random.default_rng(episode)
        ambience = [w for w, label in zip(tests.waveforms, tests.labels, strict=True) if label == "background"]
        conditions = {"clean": tests.waveforms}
        for snr in args.snr_db:
            noisy = []
            for w, label in zip(tests.waveforms, tests.labels, strict=True):
                if label == "background":
                    noisy.append(w)
                    continue
                bg = ambience[int(rng.integers(len(ambience)))]
                bg = np.resize(bg, len(w)).astype(np.float32)
                noisy.append(mix_at_snr(w, bg, snr, rate))
            conditions[f"{snr:g} dB"] = noisy
        features = {name: [window_features(template, w) for w in waves] for name, waves in conditions.items()}
        truth = tests.labels
        # Logistic regression on the clean whole-clip embedding.
        with torch.no_grad():

            def emb(w: np.ndarray, two_s: int = 2 * rate) -> np.ndarray:
                # A clip shorter than 2 s padded to 2 s, as fewshot.py's baseline does.
                w = fit_to_length(w, two_s) if len(w) < two_s else w
                return backbone.embed(torch.as_tensor(w)[None]).numpy()[0]

            train_x = np.stack([emb(w) for w in clips.waveforms])
            lr_acc = {}
            for name, waves in conditions.items():
                test_x = np.stack([emb(w) for w in waves])
                predicted, _ = fit_predict_baseline("logreg", train_x, clips.labels, test_x)
                lr_acc[name] = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
        print(f"episode {episode}: {len(classes)} classes, {len(clips)} training clips, {len(tests)} test clips")
        print("  logistic regression: " + ", ".join(f"{k} {v:.3f}" for k, v in lr_acc.items()))
        for views in args.views:
            cache = EmbeddingCache.default("sfx-cnn9", backbone.frontend_config, augment, template.clip_samples)
            start = time.perf_counter()
            computed, _, _ = compute_views(
                clips, template.features, cache, views_per_clip=views, seed=0, progress=False
            )
            frames = torch.stack([torch.from_numpy(v.features) for v in computed])
            stats = ViewStats.of(frames)
            targets = torch.as_tensor(clips.targets())
            everything = torch.arange(len(clips))
            grid = itertools.product(args.c, args.frame_views, args.clip_views, args.iterations)
            for c, frame_views, clip_views, iterations in grid:
                if True:
                    model = SoundClassifier(config, backbone)
                    start = time.perf_counter()
                    summary = fit_head(
                        model,
                        stats,
                        targets,
                        everything,
                        torch.ones(len(clips), views, dtype=torch.bool),
                        HeadFitSettings(
                            c=c, frame_views=frame_views, clip_views=clip_views, frame_iterations=iterations
                        ),
                    )
                    fit_s = time.perf_counter() - start
                    names = (*classes, clips.background_label)
                    scores = []
                    for name, test_features in features.items():
                        answers = []
                        for feats in test_features:
                            _, decision = probabilities_from_features(model, feats)
                            full = np.append(decision, 1 - decision.sum())
                            answers.append(names[int(np.argmax(full))])
                        acc = float(np.mean([a == t for a, t in zip(answers, truth, strict=True)]))
                        scores.append(f"{name} {acc:.3f} ({acc - lr_acc[name]:+.3f})")
                    print(
                        f"  views {views} c {c:g} frame/clip views {frame_views}/{clip_views}, frame head at most "
                        f"{iterations} iterations: {', '.join(scores)}; fit {fit_s:.2f} s, iterations "
                        f"{summary.clip_iterations}/{summary.frame_iterations}"
                    )


if __name__ == "__main__":
    main()
