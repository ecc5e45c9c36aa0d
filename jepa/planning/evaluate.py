"""``jepa plan``: goal-reaching evaluation of a world model with MPC, beside two baselines.

For each of ``episodes`` episodes, start and goal are drawn from the *evaluation* seed (never
from the training data); even-numbered episodes put the goal in the other room, odd ones
anywhere, so at least half need the door (Push-T: goals are the end of a random walk that moves
the block; see ``jepa.envs.pusht``). Three agents run from the same start toward the same goal:

* ``world_model``: the planner on the world model's latent energy (the method);
* ``perfect_model``: the same planner on the environment's true dynamics and state distance
  (environments with a batched ``dynamics``; skipped with a note for the others);
* ``random``: random actions (a random walk with momentum, the data-collection policy).

Reported per agent: success rate, mean steps to success, median / p95 seconds per replan, and
the success rate on other-room episodes. ``DIR/plan.json`` holds it all; ``DIR/plan.gif`` shows
a few world-model episodes (agent, goal marker); ``DIR/trajectories.png`` draws every
world-model path over the arena.
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

from jepa.envs.collect import make_env
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


def episode_starts(env: Any, episodes: int, seed: int) -> list[dict[str, Any]]:
    """Start state, goal and layout of every evaluation episode, drawn from ``seed`` only."""
    out = []
    for i in range(episodes):
        env.reset(seed=seed * 100_003 + i)
        env.sample_goal(other_room=True if i % 2 == 0 else None)
        spec = {"state": env.state.copy(), "goal": env.goal.copy()}
        if getattr(env, "layout", None) is not None:
            spec["layout"] = dict(vars(env.layout))
        out.append(spec)
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


def random_policy(env: Any, seed: int, momentum: float = 0.9, noise: float = 0.4):
    rng = np.random.default_rng(seed)
    scale = float(np.max(np.abs(env.action_high)))
    v = np.zeros(2)

    def act(obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        nonlocal v
        v = np.clip(momentum * v + noise * scale * rng.normal(size=2), env.action_low, env.action_high)
        return v

    return act


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
    max_norm = getattr(getattr(env, "config", None), "max_action_norm", None)
    device = next(world_model.parameters()).device if world_model is not None else torch.device("cpu")
    all_results: dict[str, list[EpisodeResult]] = {}
    timings: dict[str, float] = {}
    for agent in agents:
        if agent == "world_model" and world_model is None:
            continue
        if agent == "perfect_model" and not hasattr(env, "dynamics"):
            print(f"note: {env_name} has no batched true dynamics; the perfect-model check is skipped")
            continue
        t0 = time.perf_counter()
        results = []
        for i, st in enumerate(starts):
            env.reset(options=st)
            keep = agent == "world_model" and i < gif_episodes
            if agent == "random":
                res = run_episode(env, act=random_policy(env, seed * 7919 + i), max_steps=cfg.max_steps, keep_frames=keep)
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
        "success_radius": getattr(getattr(env, "config", None), "success_radius", None),
        "success": _success_rule(env),
        "planner": vars(cfg).copy(),
    }
    for agent, results in all_results.items():
        report[agent] = summarise(results) | {"wall_seconds": timings[agent]}
    if "world_model" in report:  # the method's figures at the top level, as scripts expect
        for k in ("success_rate", "mean_steps_to_success", "replan_seconds_median", "replan_seconds_p95"):
            report[k] = report["world_model"][k]
    return report, all_results


def _success_rule(env: Any) -> str:
    c = getattr(env, "config", None)
    if hasattr(c, "success_radius"):
        return f"agent within {c.success_radius} px of the goal"
    if hasattr(c, "position_tolerance"):
        return (f"DINO-WM: ||(agent, block) xy - goal|| < {c.position_tolerance:g} and block angle within "
                f"{c.angle_tolerance:.4f} rad")
    return "environment-defined"


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


def _goal_marker(frame: np.ndarray, goal: np.ndarray, env: Any) -> np.ndarray:
    """Two Rooms: a green ring at the goal on a copy of ``frame``; otherwise the goal image beside it."""
    if not hasattr(env.config, "success_radius"):
        return np.concatenate([frame, np.full_like(frame[:, :2], 255), env.render_state(goal)], axis=1)
    out = frame.copy()
    s = env.config.obs_size / env.config.size
    yy, xx = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    cx, cy = (goal[0] + 0.5) * s - 0.5, (goal[1] + 0.5) * s - 0.5
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    r = env.config.success_radius * s
    out[(d > r - 0.7) & (d < r + 0.7)] = (40, 220, 60)
    return out


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
                img = Image.fromarray(_goal_marker(f, r.goal, env))
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
        if getattr(env, "layout", None) is not None:  # Two Rooms: the agent's paths over the arena
            lay, size = env.layout, env.config.size
            ax.add_patch(plt.Rectangle((lay.wall_lo, -0.5), lay.wall_width, lay.door_lo + 0.5, color="0.6"))
            ax.add_patch(plt.Rectangle((lay.wall_lo, lay.door_hi), lay.wall_width, size - 0.5 - lay.door_hi, color="0.6"))
            xy, lim, what = slice(0, 2), (-0.5, size - 0.5), "agent"
        else:  # Push-T: the block's paths over the table
            xy, lim, what = slice(2, 4), (0.0, 512.0), "block"
        for r in wm:
            c = "tab:green" if r.success else "tab:red"
            ax.plot(r.states[:, xy][:, 0], r.states[:, xy][:, 1], color=c, lw=0.8, alpha=0.8)
            ax.plot(*r.states[0, xy], "o", color=c, ms=3)
            ax.plot(*r.goal[xy], "*", color="k", ms=5)
        ax.set_xlim(*lim)
        ax.set_ylim(lim[1], lim[0])
        ax.set_aspect("equal")
        ax.set_title(f"world-model MPC ({what}): {100 * rate:.0f}% success (green), start o, goal *", fontsize=9)
        fig.tight_layout()
        paths["png"] = out / "trajectories.png"
        fig.savefig(paths["png"], dpi=120)
        plt.close(fig)
    return paths
