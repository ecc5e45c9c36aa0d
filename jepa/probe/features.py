"""Frozen-encoder features for probing: multi-view clips in, pooled vectors and token grids out,
cached on disk.

One decoding pass feeds every model being probed (the pretrained encoder, its random-init twin
and the raw-pixel baseline): each batch is decoded once, cropped into every view, and handed to
each model whose features are not cached yet. A ``FeatureSet`` holds, per video,

  pooled  float32 ``[n, V, D]``      mean over tokens (the linear probe's input)
  tokens  float16 ``[n, V, N, D]``   the full token grid (the attentive probe's input), optional
  labels  ``{column: [n]}``          the manifest's label columns
  index   int64 ``[n]``             the manifest row each video came from

where ``V = views * crops`` (``views`` evenly spaced clips per video, each in ``crops`` spatial
crops, V-JEPA's multi-view protocol). The cache key hashes the model weights and config, the
manifest bytes and every video's size and mtime, and the clip spec, so any change to the encoder,
the data or the transform makes a new entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from data_pipelines.batching import collate_clips
from data_pipelines.dataset import VideoClipDataset
from data_pipelines.transforms import crop_resize_normalize
from jepa.clips import ClipSpec, crop_boxes

log = logging.getLogger(__name__)

CACHE_VERSION = 1


class PixelFeatures(nn.Module):
    """Raw-pixel baseline: the normalised clip, area-downsampled to 2x2 pixels per encoder patch
    and one frame per tubelet, cut into tokens on the encoder's grid.

    Each token also carries sinusoidal codes of its (time, row, column) position (``positions``
    frequencies per axis): without them an attentive head sees a bag of colours and cannot read
    where or when anything is (motion direction, for one), so it would not be a fair baseline.
    Tokens are ``3 * cells**2 + 6 * positions`` wide (48 by default), probed with
    ``attentive_heads`` heads. The pooled vector (linear probes) is the whole downsampled clip,
    pixels only (the usual raw-pixel linear baseline), not a mean."""

    def __init__(self, patch_size: int, tubelet_size: int, cells: int = 2, positions: int = 6, attentive_heads: int = 4) -> None:
        super().__init__()
        if patch_size % cells:
            raise ValueError(f"patch_size {patch_size} is not divisible by cells {cells}")
        self.patch_size, self.tubelet_size, self.cells, self.positions = patch_size, tubelet_size, cells, positions
        self.pixel_dims = 3 * cells * cells
        self.attentive_heads = attentive_heads
        self.config = {"pixels": True, "patch_size": patch_size, "tubelet_size": tubelet_size, "cells": cells,
                       "positions": positions}

    def position_codes(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """[t*h*w, 6 * positions]: sin and cos of pi * 2^k * coordinate (in [0, 1]) for each axis."""
        axes = [torch.linspace(0, 1, n) if n > 1 else torch.zeros(1) for n in grid]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)  # [N, 3]
        freqs = math.pi * 2.0 ** torch.arange(self.positions)
        angles = (coords[:, :, None] * freqs).reshape(len(coords), -1)
        return torch.cat([angles.sin(), angles.cos()], -1)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        k = self.patch_size // self.cells
        x = F.avg_pool3d(video, (self.tubelet_size, k, k))  # [B, C, t, h*cells, w*cells]
        gt, gh, gw = x.shape[2], x.shape[3] // self.cells, x.shape[4] // self.cells
        x = x.view(b, c, gt, gh, self.cells, gw, self.cells).permute(0, 2, 3, 5, 1, 4, 6)
        x = x.reshape(b, gt * gh * gw, c * self.cells * self.cells)
        if not self.positions:
            return x
        pos = self.position_codes((gt, gh, gw)).to(x)
        return torch.cat([x, pos.expand(b, -1, -1)], -1)

    def pool_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """[..., N, D] tokens -> the flattened pixels [..., N * pixel_dims] (no position codes)."""
        return tokens[..., : self.pixel_dims].flatten(-2)


@dataclass
class FeatureSet:
    pooled: torch.Tensor  # [n, V, D] float32
    labels: dict[str, torch.Tensor]
    index: torch.Tensor  # [n]
    tokens: torch.Tensor | None = None  # [n, V, N, D] float16
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.pooled.shape[0]

    def state(self) -> dict[str, Any]:
        return {"pooled": self.pooled, "labels": self.labels, "index": self.index, "tokens": self.tokens, "meta": self.meta}


def weights_digest(model: nn.Module) -> str:
    """sha256 of a model's config and every parameter and buffer (name, shape, dtype, bytes)."""
    h = hashlib.sha256(json.dumps(getattr(model, "config", {}), sort_keys=True, default=str).encode())
    h.update(type(model).__name__.encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def data_digest(dataset: VideoClipDataset) -> str:
    """sha256 of the manifest (paths and labels) and every video's size and mtime."""
    src = dataset.source
    h = hashlib.sha256(src.origin.encode())
    origin = Path(src.origin)
    if origin.is_file():
        h.update(origin.read_bytes())
    for p in src.paths:
        try:
            st = os.stat(p)
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{p}:missing".encode())
    for name, values in sorted(src.labels.items()):
        h.update(name.encode())
        h.update(values.tobytes())
    return h.hexdigest()


def cache_key(model_digest: str, data: str, spec: ClipSpec, layer: int, tokens: bool) -> str:
    payload = json.dumps(
        {"v": CACHE_VERSION, "model": model_digest, "data": data, "spec": asdict(spec), "layer": layer, "tokens": tokens},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class FeatureCache:
    """Feature sets on disk, one ``<key>.pt`` file each, written atomically."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> FeatureSet | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            return FeatureSet(**torch.load(p, map_location="cpu", weights_only=True))
        except Exception as e:  # a truncated entry is recomputed, not trusted
            log.warning("ignoring unreadable feature cache entry %s (%s)", p, e)
            return None

    def save(self, key: str, fs: FeatureSet) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        p = self.path(key)
        tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
        torch.save(fs.state(), tmp)
        os.replace(tmp, p)
        return p


def _encode(model: nn.Module, video: torch.Tensor, layer: int) -> torch.Tensor:
    if layer == -1 or isinstance(model, PixelFeatures):
        return model.forward_features(video)
    return model.get_intermediate_layers(video, [layer])[0]  # type: ignore[operator]


@torch.no_grad()
def extract_features(
    models: Mapping[str, nn.Module],
    dataset: VideoClipDataset,
    spec: ClipSpec,
    cache: FeatureCache | None = None,
    keep_tokens: bool = False,
    layer: int = -1,
    batch_size: int = 16,
    num_workers: int = 2,
    device: str | torch.device = "cpu",
    desc: str = "features",
    progress: bool = True,
) -> dict[str, FeatureSet]:
    """Features of every model in ``models`` (name -> frozen module) on ``dataset``.

    Cached sets are loaded; the rest are computed in one decoding pass and saved. Each model
    runs in eval mode under ``no_grad`` (its ``requires_grad`` flags are left alone).
    """
    if dataset.sampler.clips_per_video != spec.views or dataset.sampler.mode != "uniform":
        raise ValueError("the dataset's sampler must draw spec.views uniform clips per video (use probe_dataset)")
    data = data_digest(dataset)
    keys = {name: cache_key(weights_digest(m), data, spec, layer, keep_tokens) for name, m in models.items()}
    out: dict[str, FeatureSet] = {}
    for name, key in keys.items():
        hit = cache.load(key) if cache is not None else None
        if hit is not None:
            log.info("feature cache hit for %s: %s", name, cache.path(key))  # type: ignore[union-attr]
            hit.meta["cache"] = "hit"
            out[name] = hit
    todo = {n: m for n, m in models.items() if n not in out}
    if not todo:
        return out
    was_training = {n: m.training for n, m in todo.items()}
    for m in todo.values():
        m.eval().to(device)
    pooled: dict[str, list[torch.Tensor]] = {n: [] for n in todo}
    tokens: dict[str, list[torch.Tensor]] = {n: [] for n in todo}
    labels: dict[str, list[torch.Tensor]] = {n: [] for n in dataset.label_names}
    index: list[torch.Tensor] = []
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_clips)
    k = spec.views
    try:
        for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
            video, size = batch["video"], batch["frame_size"].double()
            b = video.shape[0] // k
            views = [
                crop_resize_normalize(video, box, (spec.size, spec.size), None, spec.mean, spec.std).to(device)
                for box in crop_boxes(size, spec)
            ]  # crops x [B*K, C, T, s, s]
            for name, m in todo.items():
                toks = torch.stack([_encode(m, v, layer) for v in views], 1)  # [B*K, crops, N, D]
                toks = toks.reshape(b, k * spec.crops, *toks.shape[2:]).float().cpu()
                pool = getattr(m, "pool_tokens", None)
                pooled[name].append(pool(toks) if pool is not None else toks.mean(2))
                if keep_tokens:
                    tokens[name].append(toks.half())
            for col in labels:
                labels[col].append(batch[col][::k])
            index.append(batch["index"][::k])
            dataset.release(batch)
    finally:
        for n, m in todo.items():
            m.train(was_training[n])
    if dataset.skip_count:
        log.warning("%s: %d bad videos skipped and replaced while extracting features: %s",
                    dataset.source.origin, dataset.skip_count, list(dataset.skipped_files())[:5])
    lab = {c: torch.cat(v) for c, v in labels.items()}
    idx = torch.cat(index)
    for name in todo:
        meta = {"model": name, "manifest": dataset.source.origin, "spec": asdict(spec), "layer": layer,
                "skipped": dataset.skip_count, "cache": "miss"}
        fs = FeatureSet(torch.cat(pooled[name]), lab, idx, torch.cat(tokens[name]) if keep_tokens else None, meta)
        if cache is not None:
            cache.save(keys[name], fs)
        out[name] = fs
    return out


def probe_dataset(
    manifest: str | os.PathLike[str],
    spec: ClipSpec,
    vocab: Mapping[str, Sequence[str]] | None = None,
    bad_files: str = "skip",
) -> VideoClipDataset:
    """The dataset ``extract_features`` reads: ``spec.views`` evenly spaced clips per video."""
    return VideoClipDataset(manifest, spec.sampler(), bad_files=bad_files, vocab=vocab)  # type: ignore[arg-type]


