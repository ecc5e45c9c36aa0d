"""``jepa plan``: goal-reaching evaluation of a world model with MPC, beside two baselines.

For each of ``episodes`` episodes, start and goal are drawn from the *evaluation* seed (never
from the training data); even-numbered episodes put the goal in the other room, odd ones
anywhere, so at least half need the door (Push-T: goals are the end of a random walk that moves
the block; see ``jepa.envs.pusht``). Three agents run from the same start toward the same goal:

* ``world_model``: the planner on the world model's latent energy (the method);
* ``perfect_model``: the same planner on the environment's true dynamics and state distance
  (environments with ``has_true_dynamics``; skipped with a note for the others);
* ``random``: random actions (a random walk with momentum, the data-collection policy
  :class:`jepa.envs.policies.RandomWalkPolicy`, run online).

Reported per agent: success rate, mean steps to success, median / p95 seconds per replan, and
the success rate on other-room episodes. ``DIR/plan.json`` holds it all; ``DIR/plan.gif`` shows
a few world-model episodes (agent, goal marker); ``DIR/trajectories.png`` draws every
world-model path over the arena.

Everything environment-specific comes from the environment (:class:`jepa.envs.base.Env`): the
success test and its description, the goal marker (``goal_picture``), the path plot
(``plot_paths``), rooms, and whether it has true dynamics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jepa.envs.base import Env
from jepa.envs.policies import RandomWalkPolicy
from jepa.envs.registry import make_env
from jepa.planning.mpc import EpisodeResult, LatentCost, TrueDynamicsCost, run_episode
from jepa.planning.samplers import make_planner


@dataclass
class PlanConfig:
    planner: str = "mppi"
    horizon: int = 12
    samples: int = 256
    iterations: int = 6
    execute: int = 1  # planner steps executed per replan
    frameskip: int = 5  # environment steps per planner step (the world model's frameskip)
    max_steps: int = 200
    distance: str = "l2"
    reduce: str = "sum"
    temperature: float = 0.1
    elites: int = 32
    init_std: float | None = None


def episode_starts(env: Env, episodes: int, seed: int) -> list[dict[str, Any]]:
    """``reset`` options (start state, goal, layout, ...) of every evaluation episode, drawn from ``seed`` only."""
    out = []
    for i in range(episodes):
        env.reset(seed=seed * 100_003 + i)
        env.sample_goal(other_room=True if i % 2 == 0 else None)
        out.append(env.episode_options())
    return out


def summarise(results: Sequence[EpisodeResult]) -> dict[str, Any]:
    ok = [r for r in results if r.success]
    replans = [t for r in results for t in r.replan_seconds]
    cross = [r for r in results if r.start_room != r.goal_room]
    return {
        "episodes": len(results),
        "success_rate": len(ok) / max(len(results), 1),
        "successes": len(ok),
        "mean_steps_to_success": float(np.mean([r.steps for r in ok])) if ok else None,
        "replan_seconds_median": float(np.median(replans)) if replans else None,
        "replan_seconds_p95": float(np.percentile(replans, 95)) if replans else None,
        "replans": len(replans),
        "other_room_episodes": len(cross),
        "other_room_success_rate": (sum(r.success for r in cross) / len(cross)) if cross else None,
    }


def evaluate(
    world_model: Any | None,
    env_name: str = "two-rooms",
    episodes: int = 50,
    seed: int = 0,
    cfg: PlanConfig | None = None,
    agents: Sequence[str] = ("world_model", "perfect_model", "random"),
    gif_episodes: int = 4,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, list[EpisodeResult]]]:
    """Run every agent on the same episodes; returns (report, per-agent episode results)."""
    cfg = cfg or PlanConfig()
    env = make_env(env_name, **(env_kwargs or {}))
    starts = episode_starts(env, episodes, seed)
    low, high = env.action_low, env.action_high
    max_norm = env.max_action_norm
    device = next(world_model.parameters()).device if world_model is not None else torch.device("cpu")
    all_results: dict[str, list[EpisodeResult]] = {}
    timings: dict[str, float] = {}
    for agent in agents:
        if agent == "world_model" and world_model is None:
            continue
        if agent == "perfect_model" and not env.has_true_dynamics:
            print(f"note: {env_name} has no batched true dynamics; the perfect-model check is skipped")
            continue
        t0 = time.perf_counter()
        results = []
        for i, st in enumerate(starts):
            env.reset(options=st)
            keep = agent == "world_model" and i < gif_episodes
            if agent == "random":
                act = RandomWalkPolicy().actor(env, np.random.default_rng(seed * 7919 + i))
                res = run_episode(env, act=act, max_steps=cfg.max_steps, keep_frames=keep)
            else:
                planner = make_planner(
                    cfg.planner, horizon=cfg.horizon, action_dim=len(low), samples=cfg.samples,
                    iterations=cfg.iterations, action_low=low.tolist(), action_high=high.tolist(), max_norm=max_norm,
                    init_std=cfg.init_std, seed=seed * 1_000_003 + i, device=device,
                    **({"temperature": cfg.temperature} if cfg.planner == "mppi" else {"elites": cfg.elites}),
                )
                if agent == "world_model":
                    cost: Any = LatentCost(world_model, env.render_goal(), cfg.frameskip, cfg.distance, cfg.reduce)  # type: ignore[arg-type]
                else:
                    cost = TrueDynamicsCost(env, st["goal"], cfg.frameskip, cfg.reduce)  # type: ignore[arg-type]
                res = run_episode(env, planner=planner, cost=cost, max_steps=cfg.max_steps, execute=cfg.execute,
                                  frameskip=cfg.frameskip, keep_frames=keep)
            results.append(res)
            if progress:
                print(f"  {agent:13s} episode {i + 1:3d}/{episodes}: {'success' if res.success else 'fail   '} "
                      f"in {res.steps:3d} steps", flush=True)
        all_results[agent] = results
        timings[agent] = time.perf_counter() - t0
    report: dict[str, Any] = {
        "env": env_name, "episodes": episodes, "seed": seed, "max_steps": cfg.max_steps,
        "success_radius": env.success_parameters().get("success_radius"),
        "success": env.success_rule(),
        "success_parameters": env.success_parameters(),
        "planner": vars(cfg).copy(),
    }
    for agent, results in all_results.items():
        report[agent] = summarise(results) | {"wall_seconds": timings[agent]}
    if "world_model" in report:  # the method's figures at the top level, as scripts expect
        for k in ("success_rate", "mean_steps_to_success", "replan_seconds_median", "replan_seconds_p95"):
            report[k] = report["world_model"][k]
    return report, all_results


def format_table(report: dict[str, Any]) -> str:
    rows = ["| agent | success | other-room success | mean steps to success | replan s (median / p95) |",
            "|---|---|---|---|---|"]
    for agent in ("world_model", "perfect_model", "random"):
        if agent not in report:
            continue
        r = report[agent]
        steps = f"{r['mean_steps_to_success']:.1f}" if r["mean_steps_to_success"] is not None else "-"
        rp = (f"{r['replan_seconds_median']:.4f} / {r['replan_seconds_p95']:.4f}"
              if r["replan_seconds_median"] is not None else "-")
        other = f"{100 * r['other_room_success_rate']:.0f}%" if r["other_room_success_rate"] is not None else "-"
        rows.append(f"| {agent} | {100 * r['success_rate']:.0f}% ({r['successes']}/{r['episodes']}) | {other} | {steps} | {rp} |")
    return "\n".join(rows)


def write_outputs(out: str | Path, report: dict[str, Any], results: dict[str, list[EpisodeResult]], env_name: str = "two-rooms",
                  env_kwargs: dict[str, Any] | None = None) -> dict[str, Path]:
    """``plan.json``, ``plan.md``, ``plan.gif`` (world-model episodes) and ``trajectories.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "plan.json", "md": out / "plan.md"}
    paths["json"].write_text(json.dumps(report, indent=2))
    paths["md"].write_text(format_table(report) + "\n")
    env = make_env(env_name, **(env_kwargs or {}))
    wm = results.get("world_model") or []
    shown = [r for r in wm if r.frames]
    if shown:
        from PIL import Image

        frames = []
        for r in shown:
            for f in r.frames:
                img = Image.fromarray(env.goal_picture(f, r.goal))
                frames.append(img.resize((192 * img.width // img.height, 192), Image.NEAREST))
            frames += [frames[-1]] * 5  # pause at the end of each episode
        paths["gif"] = out / "plan.gif"
        frames[0].save(paths["gif"], save_all=True, append_images=frames[1:], duration=60, loop=0)
    if wm:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5))
        env.reset(seed=0)
        rate = report["world_model"]["success_rate"]
        env.plot_paths(ax, wm)  # Two Rooms: the agent over the arena; Push-T: the block over the table
        ax.set_title(f"world-model MPC ({env.path_subject}): {100 * rate:.0f}% success (green), start o, goal *",
                     fontsize=9)
        fig.tight_layout()
        paths["png"] = out / "trajectories.png"
        fig.savefig(paths["png"], dpi=120)
        plt.close(fig)
    return paths
