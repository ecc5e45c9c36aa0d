"""``jepa bench probe``: probe heads trained one after another vs as one batched run, same features.

Both run the whole probe protocol of ``jepa probe`` (``jepa.probe.select.run_head`` with the
default head configs: the learning-rate x weight-decay grid on held-out training videos, then the
chosen point once per seed) on the same features in the same process, timed side by side, and
report both selected accuracies (they agree within float tolerance).

The features have the quickstart's shapes (1600 training and 400 validation videos, 2 views,
256 tokens of width 192 from vit_micro on 8 x 64 x 64 clips; the linear head reads their mean)
and carry a planted signal: 8 classes that a linear read-out of the mean token separates, with
noise, so accuracies are meaningful. Use ``--seeds`` and ``--heads`` as in ``jepa probe``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from jepa.probe.run import DEFAULT_HEADS
from jepa.probe.select import run_head


def planted_features(videos: int, views: int, tokens: int, dim: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``[videos, views, tokens, dim]`` and labels whose class shifts a few tokens along a class direction."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(classes, dim, generator=torch.Generator().manual_seed(1234))
    y = torch.randint(0, classes, (videos,), generator=g)
    x = torch.randn(videos, views, tokens, dim, generator=g)
    x[:, :, : tokens // 8] += 0.5 * directions[y][:, None, None]
    return x, y


def run_probe_benchmark(
    heads: Sequence[str] = ("linear", "attentive"), seeds: int = 3, videos: int = 1600, val_videos: int = 400,
    views: int = 2, tokens: int = 256, dim: int = 192, classes: int = 8, print_fn: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    x, y = planted_features(videos, views, tokens, dim, classes, seed=0)
    xv, yv = planted_features(val_videos, views, tokens, dim, classes, seed=1)
    results: dict[str, dict[str, float]] = {}
    for name in heads:
        cfg = DEFAULT_HEADS[name]
        feats, feats_v = (x, xv) if name == "attentive" else (x.mean(2), xv.mean(2))
        row: dict[str, float] = {}
        for batched in (False, True):
            start = time.perf_counter()
            res = run_head(cfg, feats, y, feats_v, yv, "classification", classes, seeds=list(range(seeds)),
                           batched=batched)
            key = "batched" if batched else "sequential"
            row[f"{key}_s"] = time.perf_counter() - start
            row[f"{key}_top1"] = float(res["mean"])  # type: ignore[arg-type]
        row["speedup"] = row["sequential_s"] / row["batched_s"]
        results[name] = row
    grid = {n: len(DEFAULT_HEADS[n].lrs) * len(DEFAULT_HEADS[n].weight_decays) for n in heads}
    print_fn(f"jepa bench probe: {videos} training / {val_videos} validation videos x {views} views, {tokens} tokens "
             f"of width {dim}; default head configs, {seeds} seeds; torch threads {torch.get_num_threads()}")
    print_fn("| head | heads trained | sequential s | batched s | speedup | top-1 sequential / batched |")
    print_fn("|---|---|---|---|---|---|")
    for name, r in results.items():
        print_fn(f"| {name} | {grid[name]} grid + {seeds} seeds | {r['sequential_s']:.1f} | {r['batched_s']:.1f} | "
                 f"{r['speedup']:.1f}x | {r['sequential_top1']:.1f} / {r['batched_top1']:.1f} |")
    return results
