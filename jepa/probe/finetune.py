"""End-to-end fine-tuning: the encoder and an attentive head trained together on a labelled
manifest, with layer-wise learning-rate decay (``jepa finetune``).

    jepa finetune --encoder outputs/quickstart/encoder.pt --train data/moving_shapes/train.csv \\
        --val data/moving_shapes/val.csv --target direction --epochs 3 --out outputs/quickstart/finetune

The frozen probes (``jepa probe``) measure what the encoder already holds; fine-tuning measures
how good a starting point it is. The recipe follows the BEiT / MAE / V-JEPA fine-tuning recipes,
scaled to small data:

- **Layer-wise LR decay**: block ``i`` of a depth-``L`` encoder learns at
  ``lr * layer_decay ** (L - i)``, the patch embedding at ``lr * layer_decay ** (L + 1)``, the final
  norm and the head at ``lr``: early layers, which hold the most general features, move least.
- AdamW, linear warmup then cosine decay, weight decay on weights only (not on biases, norms,
  the head's query), label smoothing, stochastic depth in the encoder (``drop_path``).
- Augmentation: a random resized crop per clip (area ``scale``), no horizontal flip by default
  (a flip turns a left-moving object into a right-moving one: label noise for motion targets).
- Evaluation as the probes: ``views`` evenly spaced clips per video, centre crop, logits averaged.

Heads, clips and normalisation are the attentive probe's and the encoder's own
(``jepa.clips.clip_spec_for``), so the fine-tuned figure sits beside the frozen one with the same
inputs. ``seeds`` repeats the whole run with other head initialisations and data orders; the
report gives the mean and spread. Classification targets only.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from data_pipelines.dataset import VideoClipDataset, collate_clips
from data_pipelines.sampling import ClipSampler
from data_pipelines.transforms import RandomResizedCropVideo, crop_resize_normalize
from jepa.clips import ClipSpec, clip_spec_for, crop_boxes
from jepa.models.vit import VideoViT
from jepa.probe.heads import AttentiveHead

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """Fine-tuning settings (defaults: a-priori choices from the MAE / V-JEPA recipes, not tuned
    on any split)."""

    epochs: int = 3
    batch_size: int = 16
    lr: float = 2e-4  # the head's and the last block's; earlier blocks get layer_decay powers of it
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    drop_path: float = 0.1
    scale: tuple[float, float] = (0.5, 1.0)
    hflip_prob: float = 0.0
    views: int = 2

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
                  "layer_decay": 0 < self.layer_decay <= 1, "weight_decay": self.weight_decay >= 0,
                  "warmup_fraction": 0 <= self.warmup_fraction < 1, "views": self.views >= 1,
                  "label_smoothing": 0 <= self.label_smoothing < 1, "drop_path": 0 <= self.drop_path < 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"finetune: {bad[0]} = {getattr(self, bad[0])} is out of range")


def layer_id(name: str, depth: int) -> int:
    """Depth of an encoder parameter for LR decay: 0 for the patch embedding, ``i + 1`` for block
    ``i``, ``depth + 1`` for everything after the blocks (final norm, classifier)."""
    if name.startswith(("patch_embed", "pos_embed")):
        return 0
    if name.startswith("blocks.blocks."):
        return int(name.split(".")[2]) + 1
    return depth + 1


def param_groups(encoder: VideoViT, head: nn.Module, lr: float, layer_decay: float,
                 weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: one per (depth, decay or not), each with ``lr_scale = layer_decay ** (depth + 1 - id)``
    (the head at scale 1). Biases, norms and 1-d parameters get no weight decay."""
    depth = len(encoder.blocks.blocks)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}

    def add(name: str, p: nn.Parameter, lid: int) -> None:
        if not p.requires_grad:
            return
        decay = p.ndim > 1 and not name.endswith(".bias") and "query" not in name
        key = (lid, decay)
        if key not in groups:
            scale = layer_decay ** (depth + 1 - lid)
            groups[key] = {"params": [], "lr_scale": scale, "lr": lr * scale,
                           "weight_decay": weight_decay if decay else 0.0, "layer": lid}
        groups[key]["params"].append(p)

    for name, p in encoder.named_parameters():
        add(name, p, layer_id(name, depth))
    for name, p in head.named_parameters():
        add(name, p, depth + 1)
    return [groups[k] for k in sorted(groups)]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup to 1, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class FineTuned(nn.Module):
    """Encoder + attentive head: clips ``[B, C, T, H, W]`` -> logits ``[B, classes]``."""

    def __init__(self, encoder: VideoViT, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = AttentiveHead(encoder.embed_dim, num_classes)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.forward_features(video))


def _with_drop_path(encoder: VideoViT, rate: float) -> VideoViT:
    """A trainable copy of ``encoder`` with stochastic depth ``rate``."""
    config = {**encoder.config, "drop_path_rate": rate}
    if "rope_layout" not in config and getattr(encoder, "rope_layout", "half") != "half":
        config["rope_layout"] = encoder.rope_layout
    fresh = VideoViT(**config)
    fresh.load_state_dict(encoder.state_dict())
    fresh.meta = copy.deepcopy(getattr(encoder, "meta", {}))
    return fresh


@torch.no_grad()
def evaluate(model: FineTuned, dataset: VideoClipDataset, spec: ClipSpec, target: str, batch_size: int,
             num_workers: int, device: torch.device) -> dict[str, float]:
    """Top-1 (and top-5 with more than 5 classes) over videos, logits averaged over views."""
    model.eval()
    k = spec.views
    correct1 = correct5 = total = 0
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_clips)
    for batch in loader:
        video, size = batch["video"], batch["frame_size"].double()
        logits = 0
        for box in crop_boxes(size, spec):
            clips = crop_resize_normalize(video, box, (spec.size, spec.size), None, spec.mean, spec.std).to(device)
            logits = logits + model(clips).float().cpu()
        b = video.shape[0] // k
        logits = logits.view(b, k, -1).mean(1)  # type: ignore[union-attr]
        y = batch[target][::k].long()
        dataset.release(batch)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(1).sum())
        total += b
    out = {"top1": 100.0 * correct1 / max(1, total), "videos": float(total)}
    if logits.shape[1] > 5:  # type: ignore[union-attr]
        out["top5"] = 100.0 * correct5 / max(1, total)
    return out


def finetune_once(encoder: VideoViT, train_set: VideoClipDataset, evals: dict[str, VideoClipDataset], spec: ClipSpec,
                  target: str, num_classes: int, cfg: FinetuneConfig, seed: int = 0, num_workers: int = 2,
                  device: str | torch.device = "cpu", progress: bool = True) -> tuple[FineTuned, dict[str, Any]]:
    """One fine-tuning run; returns the model and its scores on every ``evals`` split."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model = FineTuned(_with_drop_path(encoder, cfg.drop_path), num_classes).to(device)
    groups = param_groups(model.encoder, model.head, cfg.lr, cfg.layer_decay, cfg.weight_decay)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=gen,
                        num_workers=num_workers, collate_fn=collate_clips)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"--train {train_set.source.origin}: {len(train_set)} videos make no batch of "
                         f"{cfg.batch_size}; lower --batch-size")
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_fraction * total)
    augment = RandomResizedCropVideo(spec.size, cfg.scale, (0.75, 1.35), cfg.hflip_prob, spec.mean, spec.std)
    aug_gen = torch.Generator().manual_seed(seed + 1)
    curve: list[float] = []
    step = 0
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        losses = []
        for batch in tqdm(loader, desc=f"finetune epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False):
            for g in opt.param_groups:
                g["lr"] = cfg.lr * g["lr_scale"] * lr_factor(step, total, warmup)
            video = augment(batch["video"], batch["frame_size"], aug_gen).to(device)
            y = batch[target].long().to(device)
            train_set.release(batch)
            loss = F.cross_entropy(model(video).float(), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        curve.append(sum(losses) / len(losses))
        log.info("finetune seed %d epoch %d: loss %.4f", seed, epoch + 1, curve[-1])
    trained = time.perf_counter() - start
    scores = {name: evaluate(model, ds, spec, target, cfg.batch_size, num_workers, device) for name, ds in evals.items()}
    return model, {"seed": seed, "loss_curve": curve, "train_seconds": trained, "scores": scores}


def _summary(runs: Sequence[dict[str, Any]], split: str) -> dict[str, float]:
    values = [r["scores"][split]["top1"] for r in runs]
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "values": values}  # type: ignore[dict-item]


def run_finetune(encoder_path: str | os.PathLike[str], train: str | os.PathLike[str], val: str | os.PathLike[str],
                 target: str, test: str | os.PathLike[str] | None = None, cfg: FinetuneConfig | None = None,
                 seeds: int = 1, out: str | os.PathLike[str] | None = None, num_workers: int = 2,
                 device: str = "cpu", progress: bool = True, random_init: bool = False) -> dict[str, Any]:
    """Fine-tune ``encoder_path`` on ``target`` ``seeds`` times; report val (and test) top-1.
    ``random_init``: train a freshly initialised twin of the encoder instead (a new one per seed;
    the from-scratch baseline, with the same recipe, clips and budget).

    Writes ``finetune.json`` and ``finetune.md`` under ``out``, and the first seed's fine-tuned
    encoder (``encoder.safetensors``, for ``jepa.load_encoder``) and head (``head.pt``, a plain
    state dict)."""
    from jepa.hub import encoder_meta, latest_checkpoint, load_encoder, save_encoder
    from jepa.probe.report import write_json
    from jepa.probe.run import random_twin

    cfg = cfg or FinetuneConfig()
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    encoder_path = latest_checkpoint(encoder_path)
    enc = load_encoder(encoder_path)
    spec = clip_spec_for(enc, encoder_meta(encoder_path), views=cfg.views)
    sampler = ClipSampler(spec.num_frames, spec.frame_step, fps=spec.fps, clips_per_video=1, mode="random")
    train_set = VideoClipDataset(train, sampler)
    if target not in train_set.label_names:
        raise ValueError(f"--target {target!r} is not a column of {train}; its label columns: {train_set.label_names}")
    if train_set.source.labels[target].dtype.kind == "f":
        raise ValueError(f"--target {target!r} in {train} holds real numbers; fine-tuning takes class labels")
    vocab = train_set.source.vocab
    evals = {"val": VideoClipDataset(val, spec.sampler(), vocab=vocab)}
    if test is not None:
        evals["test"] = VideoClipDataset(test, spec.sampler(), vocab=vocab)
    for name, ds in evals.items():
        if target not in ds.label_names:
            raise ValueError(f"--target {target!r} is not a column of the {name} manifest {ds.source.origin}")
    labels = [train_set.source.labels[target]] + [ds.source.labels[target] for ds in evals.values()]
    num_classes = len(vocab[target]) if target in vocab else int(max(int(v.max()) for v in labels)) + 1
    runs = []
    first: FineTuned | None = None
    for seed in range(seeds):
        start = random_twin(enc, seed).train() if random_init else enc
        model, result = finetune_once(start, train_set, evals, spec, target, num_classes, cfg, seed, num_workers,
                                      device, progress)
        runs.append(result)
        if first is None:
            first = model
    report: dict[str, Any] = {
        "encoder": str(encoder_path), "train": str(train), "val": str(val), "test": None if test is None else str(test),
        "target": target, "num_classes": num_classes, "config": asdict(cfg), "spec": asdict(spec), "seeds": seeds,
        "init": "random" if random_init else "pretrained",
        "runs": runs, "top1": {split: _summary(runs, split) for split in evals},
    }
    rows = [f"| {split} | {s['mean']:.1f} ± {s['std']:.1f} | {', '.join(f'{v:.1f}' for v in s['values'])} |"
            for split, s in report["top1"].items()]
    what = "randomly initialised encoder (from scratch)" if random_init else "fine-tuned encoder"
    report["table"] = "\n".join([f"{what} + attentive head, target {target}, {seeds} seed(s)", "",
                                 "| split | top1 | per seed |", "|---|---|---|", *rows])
    if out is not None:
        folder = Path(out)
        write_json(report, folder / "finetune.json")
        (folder / "finetune.md").write_text(report["table"] + "\n")
        assert first is not None
        first.encoder.meta = {**getattr(enc, "meta", {}), "finetuned": {
            "target": target, "from": "random init" if random_init else str(encoder_path)}}
        save_encoder(first.encoder.cpu(), folder / "encoder.safetensors")
        torch.save({k: v.cpu() for k, v in first.head.state_dict().items()}, folder / "head.pt")
    return report
