"""Planning speed side by side: EB-JEPA's own MPPI planner and ours, in one process, same settings.

    python tools/plan_vs_ebjepa.py --eb-jepa /path/to/eb_jepa [--deps DIR] [--replans 6]

EB-JEPA's code is imported from the checkout you point to (nothing of it is in this repository);
it needs its own dependencies (einops, omegaconf, pandas, imageio, seaborn, opencv, scikit-learn), installed in
this environment or in a folder given by ``--deps`` (appended to ``sys.path``, after ours).

Both sides run EB-JEPA's Two Rooms planner settings (``examples/ac_video_jepa/cfgs/
planning_mppi.yaml``: horizon 90, 200 samples, 20 iterations, one action per replan):
  EB-JEPA  its ``GCAgent`` (``set_goal`` then ``act``) over its Two Rooms world model built as its
           ``examples/ac_video_jepa/main.py`` builds it (Impala encoder, RNN predictor), random
           weights, on a 2 x 65 x 65 observation;
  ours     ``jepa.planning.samplers.MPPI`` over ``LatentCost`` on an ``ActionConditionedWorldModel``
           of comparable size (``jepa.benchmarks.plan.REFERENCE_SIZED_MODEL``), on a Two Rooms frame.
Replans alternate between the two (one warm-up each first); each side's time includes encoding
the current observation, as in a real MPC step. Prints both medians and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn


def ebjepa_agent(root: Path) -> tuple[Any, torch.Tensor, int]:
    """EB-JEPA's planning agent over its Two Rooms world model; returns (agent, observation, parameters)."""
    import yaml
    from eb_jepa.architectures import ImpalaEncoder, RNNPredictor
    from eb_jepa.jepa import JEPA
    from eb_jepa.planning import GCAgent
    from omegaconf import OmegaConf

    train = yaml.safe_load((root / "examples/ac_video_jepa/cfgs/train.yaml").read_text())["model"]
    size = yaml.safe_load((root / "eb_jepa/datasets/two_rooms/data_config.yaml").read_text())["img_size"]
    dobs = train["dobs"]
    encoder = ImpalaEncoder(
        width=1, stack_sizes=(16, train["henc"], train["dstc"]), num_blocks=2, dropout_rate=None,
        layer_norm=False, input_channels=dobs, final_ln=True, mlp_output_dim=512,
        input_shape=(dobs, size, size),
    )
    predictor = RNNPredictor(hidden_size=encoder.mlp_output_dim, final_ln=encoder.final_ln)
    model = JEPA(encoder, nn.Identity(), predictor, None, None).eval()
    plan_cfg = OmegaConf.load(root / "examples/ac_video_jepa/cfgs/planning_mppi.yaml")

    class Identity:  # pixels are fed as they are on both sides
        @staticmethod
        def normalize_state(x: torch.Tensor) -> torch.Tensor:
            return x

    agent = GCAgent(model=model, action_dim=2, plan_cfg=plan_cfg, normalizer=Identity())
    goal = torch.rand(dobs, size, size)
    with torch.no_grad():
        agent.set_goal(goal)
    obs = torch.rand(1, dobs, 1, size, size)
    return agent, obs, sum(p.numel() for p in model.parameters())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eb-jepa", required=True, help="a checkout of facebookresearch/eb_jepa")
    parser.add_argument("--deps", default=None, help="a folder holding EB-JEPA's extra dependencies")
    parser.add_argument("--replans", type=int, default=6, help="timed replans per side (after one warm-up each)")
    args = parser.parse_args()
    root = Path(args.eb_jepa).resolve()
    if not (root / "eb_jepa" / "planning.py").is_file():
        print(f"plan_vs_ebjepa: {root} is not an eb_jepa checkout (no eb_jepa/planning.py)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    if args.deps:
        sys.path.append(str(Path(args.deps).resolve()))
    import logging

    import numpy as np

    from jepa.benchmarks.plan import REFERENCE_PLANNER, REFERENCE_SIZED_MODEL, build
    from jepa.envs import TwoRooms
    from jepa.planning.mpc import LatentCost
    from jepa.planning.samplers import MPPI

    torch.manual_seed(0)
    np.random.seed(0)
    agent, obs, n_theirs = ebjepa_agent(root)
    logging.getLogger("eb_jepa").setLevel(logging.WARNING)
    cfg = agent.plan_cfg.planner
    settings = dict(horizon=int(cfg.plan_length), samples=int(cfg.num_samples), iterations=int(cfg.n_iters))
    if settings != REFERENCE_PLANNER:
        print(f"note: EB-JEPA's settings {settings} differ from ours {REFERENCE_PLANNER}; both run EB-JEPA's")

    wm = build(REFERENCE_SIZED_MODEL, "cpu")
    n_ours = sum(p.numel() for p in wm.parameters())
    env = TwoRooms()
    frame, info = env.reset(seed=0)
    env.sample_goal(other_room=True)
    cost = LatentCost(wm, env.render_goal(), 1)

    def ours(i: int) -> float:
        planner = MPPI(action_low=-2.5, action_high=2.5, max_norm=2.5, seed=i, device="cpu", **settings)
        t0 = time.perf_counter()
        cost.reset(frame, info)
        planner.plan(cost)
        return time.perf_counter() - t0

    def theirs(i: int) -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            agent.act(obs)
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {"eb-jepa": [], "ours": []}
    for i in range(args.replans + 1):  # alternate, so drift in the machine hits both alike
        t_theirs, t_ours = theirs(i), ours(i)
        if i > 0:
            times["eb-jepa"].append(t_theirs)
            times["ours"].append(t_ours)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu; EB-JEPA checkout {root}")
    print(f"settings (EB-JEPA's planning_mppi.yaml): horizon {settings['horizon']}, {settings['samples']} samples, "
          f"{settings['iterations']} iterations, one action per replan; {args.replans} timed replans each, alternating")
    print("| planner | world model | parameters | median s / replan | all replans (s) |")
    print("|---|---|---|---|---|")
    print(f"| EB-JEPA MPPIPlanner (GCAgent.act) | Impala encoder + RNN predictor | {n_theirs / 1e6:.2f}M | "
          f"{med['eb-jepa']:.3f} | {', '.join(f'{t:.2f}' for t in times['eb-jepa'])} |")
    print(f"| jepa MPPI (LatentCost) | conv encoder + AC predictor | {n_ours / 1e6:.2f}M | {med['ours']:.3f} | "
          f"{', '.join(f'{t:.2f}' for t in times['ours'])} |")
    print(f"ours is {med['eb-jepa'] / med['ours']:.1f}x faster per replan (EB-JEPA median / ours, same run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
