"""On-disk cache of frozen-backbone features for every view of every clip, so re-training a head after adding a few
clips embeds only those clips.

Layout: ``<root>/<backbone>/<settings-hash>/<content-hash>.npz``, one file a clip holding all its views ``[views,
frames, dim]`` float32 and, for each view, the content hashes of the background clips it heard. The content hash is
the sha256 of the file's bytes, so a renamed or moved file is still a hit and an edited one is not. The settings
hash covers what else decides the numbers: backbone, front-end config, the waveform augmentation settings, the clip
length, the seed and a format version. Each view's randomness is seeded from ``(seed, content hash, view index)``,
so a view recomputed later is the view that was stored.

float32, not float16: a clip's views take a few hundred kB for the released backbones (frames are 0.1-0.3 s
apart), so halving that is not worth features that differ from what the backbone gave.

The background clips mixed into views are not part of the key: adding one background clip (say, after
``snapkit mine``) would otherwise make every clip a miss. A cached view is then a valid augmented view, though not
the one the current background pool would give. Each view records which background clips it heard, so
cross-validation can leave out the views that heard a clip of the test fold.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import get_worker_info

from snapkit.features.config import FrontEndConfig
from snapkit.files import cache_root, replace_atomically, write_atomically
from snapkit.progress import progress_bar
from snapkit.training.augment import AugmentConfig, augment_waveform, fit_to_length
from snapkit.training.data import ClipSet

# Bump when what a cached file holds changes meaning, so old files are never read as new ones.
_FORMAT_VERSION = 3  # 2: augmentation places sounds by their noise-relative span; 3: views record their backgrounds
# A view hears at most two background clips (the filler around a shifted sound, and the mixed-in background).
_HEARD_SLOTS = 2
_READ_CHUNK_BYTES = 1 << 20

FeaturesFn = Callable[[torch.Tensor], torch.Tensor]


def default_cache_root() -> Path:
    """``embeddings`` in snapkit's per-user cache folder (``$SNAPKIT_CACHE_DIR`` when set)."""
    return cache_root() / "embeddings"


def file_content_hash(path: Path) -> str:
    """sha256 hex digest of the bytes of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def clip_content_hash(clipset: ClipSet, index: int) -> str:
    """Cache key of clip ``index``: its file's content hash, or for generated clips the hash of the samples."""
    if clipset.generated[index]:
        return hashlib.sha256(b"generated\0" + np.ascontiguousarray(clipset.waveforms[index]).tobytes()).hexdigest()
    return file_content_hash(clipset.paths[index])


@dataclass(frozen=True)
class Views:
    """Every view of one clip: ``features`` ``[views, frames, dim]`` float32 (view 0 clean) and, per view, the
    content hashes of the background clips mixed into it (``heard[v]``, empty for view 0)."""

    features: np.ndarray
    heard: tuple[frozenset[str], ...]

    def __len__(self) -> int:
        return len(self.features)

    def first(self, n: int) -> Views:
        return Views(self.features[:n], self.heard[:n])

    def then(self, more: Views) -> Views:
        return Views(np.concatenate([self.features, more.features]), self.heard + more.heard)


@dataclass(frozen=True)
class CacheStats:
    """How many clips came from the cache and how many went through the backbone."""

    hits: int
    misses: int

    def __str__(self) -> str:
        return f"embedded {self.misses} new clip{'s' if self.misses != 1 else ''}, {self.hits} from cache"


class EmbeddingCache:
    """Views of clips' features on disk, for one backbone, front end, augmentation and clip length.

    Args:
        root: cache folder (``default_cache_root()`` when None).
        backbone_name: registry name of the backbone; the first folder level.
        frontend_config: the backbone's front end.
        augment: augmentation settings; only :meth:`AugmentConfig.view_settings` enter the key.
        clip_samples: samples a view holds (clip length at the front end's rate).
    """

    def __init__(
        self,
        root: Path | None,
        backbone_name: str,
        frontend_config: FrontEndConfig,
        augment: AugmentConfig,
        clip_samples: int,
    ) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self.backbone_name = backbone_name
        self.frontend_config = frontend_config
        self.augment = augment
        self.clip_samples = clip_samples

    @classmethod
    def default(
        cls, backbone_name: str, frontend_config: FrontEndConfig, augment: AugmentConfig, clip_samples: int
    ) -> EmbeddingCache:
        """The cache in :func:`default_cache_root`."""
        return cls(None, backbone_name, frontend_config, augment, clip_samples)

    def settings(self, seed: int = 0) -> dict[str, object]:
        """Everything besides the clip's content that decides the cached numbers. The backbone's name stands for
        its weights: every weights file snapkit loads verifies against that backbone's one release."""
        return {
            "format": _FORMAT_VERSION,
            "backbone": self.backbone_name,
            "frontend": self.frontend_config.to_dict(),
            "augment": self.augment.view_settings(),
            "clip_samples": self.clip_samples,
            "seed": seed,
        }

    def directory(self, seed: int = 0) -> Path:
        """``root/<backbone>/<settings-hash>``."""
        text = json.dumps(self.settings(seed), sort_keys=True)
        settings_hash = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self.root / self.backbone_name.replace(os.sep, "_") / settings_hash

    def path(self, content_hash: str, seed: int = 0) -> Path:
        return self.directory(seed) / f"{content_hash}.npz"

    def stored_views(self, content_hash: str, seed: int = 0) -> int:
        """How many views of a clip the cache holds (0: none, or unreadable), read from the array's header only."""
        import zipfile

        try:
            with zipfile.ZipFile(self.path(content_hash, seed)) as archive, archive.open("features.npy") as member:
                major, _minor = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, _ = read_header(member)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return 0
        return int(shape[0]) if len(shape) == 3 else 0

    def load(self, content_hash: str, seed: int = 0) -> Views | None:
        """All stored views of a clip, or None (absent or unreadable)."""
        path = self.path(content_hash, seed)
        try:
            with np.load(path, allow_pickle=False) as stored:
                features, heard = stored["features"], stored["heard"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, KeyError):
            # A damaged entry is only a cache miss; it is rewritten when the clip is embedded again.
            return None
        if (
            features.ndim != 3
            or features.dtype != np.float32
            or not len(features)
            or heard.shape
            != (
                len(features),
                _HEARD_SLOTS,
            )
        ):
            return None
        return Views(features, tuple(frozenset(str(h) for h in row if h) for row in heard))

    def save(self, content_hash: str, views: Views, seed: int = 0) -> Path:
        """Store a clip's views, atomically (a reader sees the old file or the new)."""
        directory = self.directory(seed)
        directory.mkdir(parents=True, exist_ok=True)
        settings_file = directory / "settings.json"
        if not settings_file.exists():
            write_atomically(settings_file, json.dumps(self.settings(seed), indent=2, sort_keys=True))
        heard = np.full((len(views), _HEARD_SLOTS), "", dtype="<U64")
        for v, hashes in enumerate(views.heard):
            for slot, h in enumerate(sorted(hashes)[:_HEARD_SLOTS]):
                heard[v, slot] = h
        path = self.path(content_hash, seed)
        with replace_atomically(path, what="the embedding cache file") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, features=np.ascontiguousarray(views.features, dtype=np.float32), heard=heard)
        return path


def view_waveform(
    clipset: ClipSet,
    index: int,
    view: int,
    content_hash: str,
    augment: AugmentConfig,
    clip_samples: int,
    backgrounds: Sequence[np.ndarray],
    seed: int,
    used: list[int] | None = None,
) -> np.ndarray:
    """Waveform ``[clip_samples]`` of view ``view`` of clip ``index``: view 0 is the clean loudest window, the
    others :func:`augment_waveform` seeded from ``(seed, content hash, view)``. ``used`` collects the indices into
    ``backgrounds`` the view took audio from."""
    clip = clipset.waveforms[index]
    if view == 0:
        return fit_to_length(clip, clip_samples)
    rng = np.random.default_rng([seed, int(content_hash, 16), view])
    return augment_waveform(
        clip, rng, augment, clip_samples, backgrounds, sample_rate_hz=clipset.sample_rate_hz, used=used
    )


def compute_views(
    clipset: ClipSet,
    features_fn: FeaturesFn,
    cache: EmbeddingCache,
    *,
    views_per_clip: int,
    backgrounds: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[list[Views], list[str], CacheStats]:
    """Features of every view of every clip, from the cache or through ``features_fn``.

    Args:
        clipset: the clips, at the rate ``features_fn`` takes.
        features_fn: waveform ``[batch, cache.clip_samples]`` -> features ``[batch, frames, dim]``; run under
            ``torch.no_grad`` on the clips missing from the cache only, ``batch_size`` views at a time.
        cache: where views are kept; its augmentation settings make the views.
        views_per_clip: views a clip (1 when ``cache.augment.enabled`` is off: they would all be the same).
        backgrounds: indices of the clips of ``clipset`` mixed into views; by default its background clips. A
            clip is never mixed with itself.
        seed: seeds every view (and is part of the cache key).
        batch_size: views per ``features_fn`` call.
        progress: draw a transient progress bar while embedding.

    Returns:
        ``(views, hashes, stats)``: per clip its :class:`Views` (``views_per_clip`` of them, view 0 clean), per clip
        its content hash (what ``Views.heard`` names), and how many clips were hits and misses. A clip with fewer
        stored views than asked for is a miss whose stored views are kept and only the rest computed.
    """
    n_views = views_per_clip if cache.augment.enabled else 1
    hashes = [clip_content_hash(clipset, i) for i in range(len(clipset))]
    pool_indices = list(clipset.background_indices() if backgrounds is None else backgrounds)
    views: list[Views | None] = [None] * len(clipset)
    stored: dict[int, Views | None] = {}
    for i, content_hash in enumerate(hashes):
        found = cache.load(content_hash, seed)
        if found is not None and len(found) >= n_views:
            views[i] = found.first(n_views)
        else:
            stored[i] = found
    jobs = [(i, v) for i, found in stored.items() for v in range(0 if found is None else len(found), n_views)]
    pending: dict[int, list[tuple[np.ndarray, frozenset[str]]]] = {i: [] for i in stored}

    with progress_bar("Embedding clips", len(jobs), progress and bool(jobs)) as advance:
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start : start + batch_size]
            waves, heard = [], []
            for i, v in batch:
                pool = [j for j in pool_indices if j != i]  # a clip is never mixed with itself
                used: list[int] = []
                waves.append(
                    view_waveform(
                        clipset,
                        i,
                        v,
                        hashes[i],
                        cache.augment,
                        cache.clip_samples,
                        [clipset.waveforms[j] for j in pool],
                        seed,
                        used,
                    )
                )
                heard.append(frozenset(hashes[pool[k]] for k in used))
            with torch.no_grad():
                features = features_fn(torch.from_numpy(np.stack(waves))).detach().to("cpu", torch.float32).numpy()
            for (i, _v), frames, sources in zip(batch, features, heard, strict=True):
                pending[i].append((frames, sources))
                done = stored[i]
                if (0 if done is None else len(done)) + len(pending[i]) == n_views:
                    # Saved as soon as a clip is complete, so an interrupted run keeps what it embedded.
                    items = pending.pop(i)
                    new = Views(np.stack([f for f, _ in items]), tuple(h for _, h in items))
                    full = new if done is None else done.then(new)
                    cache.save(hashes[i], full, seed)
                    views[i] = full
            advance(len(batch))
    out = [v for v in views if v is not None]
    return out, hashes, CacheStats(hits=len(clipset) - len(stored), misses=len(stored))


class FeatureDataset(TorchDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Items ``(features [frames, dim], target [classes])`` from cached views.

    ``train=True`` picks a random view at each access, from a torch generator seeded from ``(seed, epoch, worker
    id)`` (call :meth:`set_epoch` every epoch); ``train=False`` always gives view 0, the clean clip.

    Args:
        views: per clip ``[views, frames, dim]``.
        targets: ``[clips, classes]``.
        train: pick random views or not.
        seed: base seed.
        allowed: per clip the view indices training may pick (None: all), e.g. leaving out the views that heard a
            background clip of the test fold.
    """

    def __init__(
        self,
        views: Sequence[torch.Tensor],
        targets: np.ndarray | torch.Tensor,
        train: bool,
        *,
        seed: int = 0,
        allowed: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if len(views) != len(targets):
            raise ValueError(f"{len(views)} clips of views but {len(targets)} targets.")
        if allowed is not None and (len(allowed) != len(views) or any(not len(a) for a in allowed)):
            raise ValueError("allowed needs a non-empty list of view indices for every clip.")
        self.allowed = None if allowed is None else [list(a) for a in allowed]
        self.views = list(views)
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.train = train
        self.seed = seed
        self.epoch = 0
        self._generator: torch.Generator | None = None
        self._generator_worker = -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._generator = None

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clip_views = self.views[index]
        view = 0
        choices = self.allowed[index] if self.allowed is not None else range(len(clip_views))
        if self.train and len(choices) > 1:
            view = choices[int(torch.randint(len(choices), (1,), generator=self._worker_generator()))]
        return clip_views[view], self.targets[index]

    def _worker_generator(self) -> torch.Generator:
        worker = get_worker_info()
        worker_id = worker.id if worker else 0
        if self._generator is None or self._generator_worker != worker_id:
            state = np.random.SeedSequence([self.seed, self.epoch, worker_id]).generate_state(1, np.uint64)[0]
            self._generator = torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
            self._generator_worker = worker_id
        return self._generator

    def __getstate__(self) -> dict[str, object]:
        # Loader workers started by spawn get a pickled copy; they make their own generator.
        state = dict(self.__dict__)
        state["_generator"] = None
        return state
