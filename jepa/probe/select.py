"""The probe protocol: choose hyper-parameters on held-out *training* videos, then train once per seed.

Every point of the learning-rate x weight-decay grid is trained on part of the training videos
and scored on the rest (``holdout``); the best point is then trained on all training videos and
scored on the evaluation split, which is never used for any choice. With
``HeadConfig.select_per_seed`` (the default) each seed makes its own choice with its own initial
weights and batch order, so the seeds are independent replicates of the whole protocol and their
spread includes the choice (a head that trains well at one learning rate for one initialisation
and diverges for another is not judged by seed 0 alone). All grid points and seeds are one
batched run (``jepa.probe.batched``); ``batched=False`` trains them one after another (same
results within float tolerance).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from jepa.probe.batched import Member, train_heads
from jepa.probe.train import (
    HeadConfig,
    Standardizer,
    Task,
    _mean,
    _std,
    predict,
    primary_metric,
    score,
    split_holdout,
    train_head,
)


def _train(
    cfg: HeadConfig, x: torch.Tensor, y: torch.Tensor, task: Task, num_out: int, members: list[Member],
    device: str | torch.device, batched: bool,
) -> list[tuple[nn.Module, Standardizer]]:
    if batched:
        return train_heads(cfg, x, y, task, num_out, members, device)
    return [train_head(cfg, x, y, task, num_out, m.lr, m.weight_decay, m.seed, device) for m in members]


def select_hparams(
    cfg: HeadConfig, x: torch.Tensor, y: torch.Tensor, task: Task, num_out: int, device: str | torch.device = "cpu",
    batched: bool = True, seeds: Sequence[int] = (0,),
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Best (lr, weight_decay) for each seed on a held-out part of the training set (the seed sets
    the head's initial weights and batch order, in selection as in the final training), and
    every trial's score. All seeds' grids are one batched run."""
    fit, hold = split_holdout(len(x), cfg.holdout)
    metric = primary_metric(task)
    grid = [Member(lr, wd, s) for s in seeds for lr, wd in itertools.product(cfg.lrs, cfg.weight_decays)]
    trials = []
    for m, (head, scaler) in zip(grid, _train(cfg, x[fit], y[fit], task, num_out, grid, device, batched), strict=True):
        sc = score(predict(head, x[hold], device=device), y[hold], task, scaler)[metric]
        trials.append({"seed": m.seed, "lr": m.lr, "weight_decay": m.weight_decay, metric: sc})
    best = []
    for s in seeds:
        mine = [t for t in trials if t["seed"] == s]
        top = max(mine, key=lambda t: -math.inf if math.isnan(t[metric]) else t[metric])
        best.append({"lr": top["lr"], "weight_decay": top["weight_decay"]})
    return best, trials


def _summary(runs: list[dict[str, float]], task: Task) -> dict[str, object]:
    metrics = {k: [r[k] for r in runs] for k in runs[0]}
    summary = {k: {"mean": _mean(v), "std": _std(v), "values": v} for k, v in metrics.items()}
    metric = primary_metric(task)
    return {"mean": summary[metric]["mean"], "std": summary[metric]["std"], "metrics": summary}


def run_head(
    cfg: HeadConfig,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    task: Task,
    num_out: int,
    seeds: Sequence[int],
    device: str | torch.device = "cpu",
    batched: bool = True,
    test_x: torch.Tensor | None = None,
    test_y: torch.Tensor | None = None,
) -> dict[str, object]:
    """Choose hyper-parameters on the training set, then train once per seed and score on val
    (and on test when given: the same trained heads, scored under ``"test"``)."""
    seeds = list(seeds)
    if cfg.select_per_seed:  # every seed is a whole replicate of the protocol: its own choice, then training
        hps, trials = select_hparams(cfg, train_x, train_y, task, num_out, device, batched, seeds)
    else:  # one choice (made with seed 0's heads) shared by every seed
        one, trials = select_hparams(cfg, train_x, train_y, task, num_out, device, batched, (0,))
        hps = one * len(seeds)
    members = [Member(hp["lr"], hp["weight_decay"], seed) for hp, seed in zip(hps, seeds, strict=True)]
    heads = _train(cfg, train_x, train_y, task, num_out, members, device, batched)
    out = _summary([score(predict(head, val_x, device=device), val_y, task, scaler) for head, scaler in heads], task)
    if test_x is not None and test_y is not None:
        out["test"] = _summary([score(predict(head, test_x, device=device), test_y, task, scaler) for head, scaler in heads], task)
    return {**out, "hparams": hps[0], "hparams_per_seed": hps, "trials": trials}
