"""``jepa bench plan``: seconds per replan, at the reference planner settings and at the recipe's.

Reference settings (EB-JEPA's Two Rooms planner): horizon 90, 200 samples, 20 iterations, one
action executed per replan, on a world model of similar size to EB-JEPA's (~2.2M parameters, a
conv encoder sized to match); then the recipe's own model and planner settings. Only our planner
runs here, so the table makes no speed claim against another system: such a claim needs both
timed in the same run on the same machine. Each figure is the
median over ``--replans`` timed replans after one warm-up, with the start and goal encoded inside
the timed region (as in a real MPC step, the goal once per episode is excluded).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jepa.envs import TwoRooms
from jepa.planning.mpc import LatentCost
from jepa.planning.samplers import MPPI

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "world_model" / "two_rooms.yaml"
REFERENCE_SIZED_MODEL: dict[str, Any] = dict(  # ~2.2M parameters, most in the encoder, as EB-JEPA's
    latent_dim=112, conv_widths=(64, 128, 256), predictor_embed_dim=64, predictor_depth=2, predictor_num_heads=2,
    predictor_window=1, action_dim=2,
)
RECIPE_PLANNER: dict[str, Any] = dict(horizon=12, samples=256, iterations=6)
REFERENCE_PLANNER: dict[str, Any] = dict(horizon=90, samples=200, iterations=20)


def time_replans(wm: Any, planner_kw: dict[str, Any], frameskip: int, replans: int, device: str) -> list[float]:
    env = TwoRooms()
    obs, info = env.reset(seed=0)
    goal = env.sample_goal(other_room=True)
    cost = LatentCost(wm, env.render_goal(), frameskip)
    del goal
    times = []
    for i in range(replans + 1):
        planner = MPPI(action_low=-2.5, action_high=2.5, max_norm=2.5, seed=i, device=device, **planner_kw)
        t0 = time.perf_counter()
        cost.reset(obs, info)
        planner.plan(cost)
        if i > 0:  # the first one warms up allocators and kernels
            times.append(time.perf_counter() - t0)
    return times


def recipe_model() -> tuple[dict[str, Any], int]:
    """The Two Rooms recipe's model arguments and frameskip, read from its YAML."""
    import yaml

    cfg = yaml.safe_load(RECIPE.read_text())
    kwargs = dict(cfg["model"]["init_args"])
    skip = int(cfg["data"]["init_args"].get("frameskip", 1))
    kwargs["action_dim"] = 2 * skip
    return kwargs, skip


def build(kwargs: dict[str, Any], device: str) -> Any:
    from jepa.methods.world_model import ActionConditionedWorldModel

    return ActionConditionedWorldModel(**kwargs).to(device).eval()


def main(args: argparse.Namespace) -> int:
    from jepa.methods.world_model import load_world_model

    torch.manual_seed(0)
    np.random.seed(0)
    rows = []
    ref = build(REFERENCE_SIZED_MODEL, args.device)
    n_ref = sum(p.numel() for p in ref.parameters())
    t_ref = time_replans(ref, REFERENCE_PLANNER, 1, max(1, args.replans // 2), args.device)
    rows.append(("reference settings (H=90, 200 samples, 20 it)", n_ref, statistics.median(t_ref)))
    if args.world_model:
        from jepa.hub import latest_checkpoint

        wm = load_world_model(str(latest_checkpoint(args.world_model)), map_location=args.device)
    else:
        kwargs, skip = recipe_model()
        wm = build(kwargs, args.device)
        wm.frameskip_buf.fill_(skip)
    skip = wm.frameskip
    t_rec = time_replans(wm, RECIPE_PLANNER, skip, args.replans, args.device)
    n_rec = sum(p.numel() for p in wm.parameters())
    rows.append((f"recipe settings (H={RECIPE_PLANNER['horizon']}, {RECIPE_PLANNER['samples']} samples, "
                 f"{RECIPE_PLANNER['iterations']} it, frameskip {skip})", n_rec, statistics.median(t_rec)))
    print(f"torch threads: {torch.get_num_threads()}, device: {args.device}")
    print("| setting | model parameters | median s / replan |")
    print("|---|---|---|")
    for name, n, t in rows:
        print(f"| {name} | {n / 1e6:.2f}M | {t:.3f} |")
    return 0
