"""``jepa plan``: goal-reaching evaluation of a world model with MPC, beside two baselines.

Everything that decides what a success rate means comes from a named protocol
(:mod:`jepa.planning.protocols`: layout distribution, how goals are drawn, step budget, success
rule, episodes); the report records its name and every parameter, and any parameter changed
from the command line. Start and goal of every episode are drawn from the *evaluation* seed
(never from the training data); a start that already passes the success test is redrawn.
Three agents run from the same start toward the same goal:

* ``world_model``: the planner on the world model's latent energy (the method);
* ``perfect_model``: the same planner on the environment's true dynamics and ``goal_distance``
  (batched ``dynamics`` in Two Rooms; the simulator replaying every sample from the current
  physics state in Push-T, where ``oracle_samples`` / ``oracle_iterations`` may cap its budget
  because each sample is a real simulation): the ceiling that tells a planner failure from a
  model failure;
* ``random``: random actions (a random walk with momentum, the data-collection policy
  :class:`jepa.envs.policies.RandomWalkPolicy`, run online).

Reported per agent: success rate with its 95% Wilson interval, the rate of episodes that passed
the test at any step, mean steps to the first success, median / p95 seconds per replan, and the
success rate on other-room episodes. ``DIR/plan.json`` holds it all; ``DIR/plan.gif`` shows
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
from jepa.planning.protocols import (
    PROTOCOLS,
    Protocol,
    default_protocol,
    get_protocol,
    wilson_interval,
)
from jepa.planning.samplers import make_planner


@dataclass
class PlanConfig:
    planner: str = "mppi"
    horizon: int = 12
    samples: int = 256
    iterations: int = 6
    execute: int = 1  # planner steps executed per replan
    frameskip: int = 5  # environment steps per planner step (the world model's frameskip)
    max_steps: int | None = None  # None: the protocol's budget
    distance: str = "l2"
    reduce: str = "sum"
    temperature: float = 0.1
    elites: int = 32
    init_std: float | None = None
    replan_every: int | None = None  # env steps executed per replan (None: execute * frameskip)
    oracle_samples: int | None = None  # perfect-model planner samples (None: ``samples``)
    oracle_iterations: int | None = None  # perfect-model planner iterations (None: ``iterations``)


def episode_starts(env: Env, episodes: int, seed: int, protocol: Protocol | None = None,
                   max_redraws: int = 100) -> list[dict[str, Any]]:
    """``reset`` options (start state, goal, layout, ...) of every evaluation episode, drawn from ``seed`` only.

    Goals follow ``protocol.goals`` (default: even episodes in the other room, odd anywhere). A
    start that already passes the success test against its goal is redrawn (a new start, goal
    and layout from the next sub-seed), so no episode is won before the agent moves.
    """
    out = []
    for i in range(episodes):
        for attempt in range(max_redraws):
            env.reset(seed=seed * 100_003 + i + attempt * 1_000_000_007)
            env.sample_goal(other_room=(protocol or PROTOCOLS["first-contact"]).other_room(i))
            if not env.is_success():
                break
        else:
            raise RuntimeError(f"episode_starts: episode {i} passed the success test at its start {max_redraws} times")
        out.append(env.episode_options())
    return out


def dataset_starts(env: Env, manifest: str | Path, episodes: int, seed: int, protocol: Protocol) -> list[dict[str, Any]]:
    """Episodes whose start is a recorded state of a trajectory in ``manifest`` and whose goal is
    the state ``protocol.goal_offset`` steps later (recorded, or the recorded actions replayed).

    Rows (trajectory, step t) with ``t + goal_offset`` inside the trajectory are drawn uniformly
    without replacement from ``seed``; a row whose start already passes the success test is
    skipped. The trajectory files need ``states`` (``jepa data collect`` writes them).
    """
    from data_pipelines.trajectories import read_trajectory_manifest

    off = protocol.goal_offset
    trajs = []
    for ep in read_trajectory_manifest(manifest):
        with np.load(ep.trajectory) as z:
            if "states" not in z:
                raise ValueError(f"{ep.trajectory}: protocol {protocol.name} needs recorded states; this file has "
                                 f"only {sorted(z.files)}")
            trajs.append({k: np.asarray(z[k]) for k in z.files})
    rows = [(i, t) for i, z in enumerate(trajs) for t in range(len(z["states"]) - off)]
    if len(rows) < episodes:
        raise ValueError(f"{manifest}: {len(rows)} (trajectory, step) rows with a goal {off} steps ahead; "
                         f"protocol {protocol.name} needs {episodes} episodes (collect longer or more trajectories)")
    order = np.random.default_rng([seed, off]).permutation(len(rows))
    out: list[dict[str, Any]] = []
    for k in order:
        i, t = rows[int(k)]
        z = trajs[i]
        setting = env.options_from_arrays({n: a for n, a in z.items() if n not in ("states", "actions")})
        start = np.asarray(z["states"][t], np.float64)
        if protocol.goal_source == "recorded":
            goal = np.asarray(z["states"][t + off], np.float64)
        else:  # replay the recorded actions from the recorded start
            env.reset(options=setting | {"state": start})
            for a in z["actions"][t : t + off]:
                env.step(np.asarray(a, np.float64))
            goal = np.asarray(env.info()["state"], np.float64)
        env.reset(options=setting | {"state": start, "goal": goal})
        if env.is_success():
            continue
        out.append(env.episode_options())
        if len(out) == episodes:
            return out
    raise ValueError(f"{manifest}: fewer than {episodes} rows whose start does not already reach its goal")


def check_held_out(trajectories: str | Path, train_manifest: str | Path | None) -> None:
    """Raise if any evaluation trajectory is in the model's training manifest."""
    if not train_manifest or not Path(train_manifest).is_file():
        return
    from data_pipelines.trajectories import read_trajectory_manifest

    train = {Path(e.trajectory).resolve() for e in read_trajectory_manifest(train_manifest)}
    seen = [e.trajectory for e in read_trajectory_manifest(trajectories) if Path(e.trajectory).resolve() in train]
    if seen:
        raise ValueError(f"{trajectories}: {len(seen)} evaluation trajectories (e.g. {seen[0]}) are in the world "
                         f"model's training manifest {train_manifest}; evaluate on held-out ones (its val.csv, or a "
                         f"collection with another seed)")


def summarise(results: Sequence[EpisodeResult]) -> dict[str, Any]:
    ok = [r for r in results if r.success]
    replans = [t for r in results for t in r.replan_seconds]
    cross = [r for r in results if r.start_room != r.goal_room]
    reached = [r for r in results if r.first_success_step is not None]
    lo, hi = wilson_interval(len(ok), len(results))
    return {
        "episodes": len(results),
        "success_rate": len(ok) / max(len(results), 1),
        "successes": len(ok),
        "episode_success": [bool(r.success) for r in results],  # in episode order: compare agents / models episode by episode
        "success_ci95": [lo, hi],
        "reached_any_time_rate": len(reached) / max(len(results), 1),
        "mean_steps_to_success": (float(np.mean([r.first_success_step for r in ok if r.first_success_step is not None]))
                                  if ok and any(r.first_success_step is not None for r in ok) else None),
        "replan_seconds_median": float(np.median(replans)) if replans else None,
        "replan_seconds_p95": float(np.percentile(replans, 95)) if replans else None,
        "replans": len(replans),
        "other_room_episodes": len(cross),
        "other_room_success_rate": (sum(r.success for r in cross) / len(cross)) if cross else None,
    }


def resolve_protocol(env_name: str, protocol: Protocol | str | None) -> Protocol:
    """The protocol to run: by name, as given, or the environment's default (a generic one if it has none)."""
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    if protocol is None:
        protocol = default_protocol(env_name) or Protocol(
            name=f"{env_name}-first-contact", env=env_name, goals="env", until="success",
            description=f"{env_name}: the environment's own goals, stop at the first success")
    if protocol.env != env_name:
        raise ValueError(f"protocol {protocol.name!r} is for the {protocol.env!r} environment, not {env_name!r}")
    return protocol


def evaluate(
    world_model: Any | None,
    env_name: str = "two-rooms",
    episodes: int | None = None,
    seed: int = 0,
    cfg: PlanConfig | None = None,
    agents: Sequence[str] = ("world_model", "perfect_model", "random"),
    gif_episodes: int = 4,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    protocol: Protocol | str | None = None,
    trajectories: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, list[EpisodeResult]]]:
    """Run every agent on the same episodes of ``protocol``; returns (report, per-agent episode results).

    ``episodes``, ``cfg.max_steps`` and ``env_kwargs`` default to the protocol's; a value that
    differs is recorded under ``report["protocol"]["modified"]``. Protocols that draw goals from
    recorded trajectories (``swm``) need ``trajectories``: a held-out trajectory manifest.
    """
    cfg = cfg or PlanConfig()
    proto = resolve_protocol(env_name, protocol)
    episodes = proto.episodes if episodes is None else episodes
    max_steps = proto.max_steps if cfg.max_steps is None else cfg.max_steps
    modified = {k: v for k, v, ref in (("episodes", episodes, proto.episodes), ("max_steps", max_steps, proto.max_steps))
                if v != ref}
    if env_kwargs:
        modified["env_kwargs"] = env_kwargs
    env = make_env(env_name, **(proto.env_kwargs | (env_kwargs or {})))
    if proto.needs_trajectories:
        if trajectories is None:
            raise ValueError(f"protocol {proto.name} draws starts and goals from recorded trajectories: pass "
                             "--trajectories MANIFEST (held-out, e.g. the val.csv of jepa data collect)")
        starts = dataset_starts(env, trajectories, episodes, seed, proto)
    else:
        starts = episode_starts(env, episodes, seed, proto)
    low, high = env.action_low, env.action_high
    max_norm = env.max_action_norm
    device = next(world_model.parameters()).device if world_model is not None else torch.device("cpu")
    all_results: dict[str, list[EpisodeResult]] = {}
    timings: dict[str, float] = {}
    for agent in agents:
        if agent == "world_model" and world_model is None:
            continue
        if agent == "perfect_model" and not (env.has_true_dynamics or env.has_simulator):
            print(f"note: {env_name} has neither true dynamics nor a simulator; the perfect-model check is skipped")
            continue
        oracle = agent == "perfect_model"
        samples = (cfg.oracle_samples or cfg.samples) if oracle else cfg.samples
        iterations = (cfg.oracle_iterations or cfg.iterations) if oracle else cfg.iterations
        t0 = time.perf_counter()
        results = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(starts), desc=f"{agent:13s}", unit="episode", dynamic_ncols=True)
        for i, st in enumerate(starts):
            env.reset(options=st)
            keep = agent == "world_model" and i < gif_episodes
            if agent == "random":
                act = RandomWalkPolicy().actor(env, np.random.default_rng(seed * 7919 + i))
                res = run_episode(env, act=act, max_steps=max_steps, keep_frames=keep, until=proto.until)
            else:
                planner = make_planner(
                    cfg.planner, horizon=cfg.horizon, action_dim=len(low), samples=samples,
                    iterations=iterations, action_low=low.tolist(), action_high=high.tolist(), max_norm=max_norm,
                    init_std=cfg.init_std, seed=seed * 1_000_003 + i, device=device,
                    **({"temperature": cfg.temperature} if cfg.planner == "mppi" else {"elites": cfg.elites}),
                )
                if agent == "world_model":
                    cost: Any = LatentCost(world_model, env.render_goal(), cfg.frameskip, cfg.distance, cfg.reduce)  # type: ignore[arg-type]
                else:
                    cost = TrueDynamicsCost(env, st["goal"], cfg.frameskip, cfg.reduce)  # type: ignore[arg-type]
                res = run_episode(env, planner=planner, cost=cost, max_steps=max_steps, execute=cfg.execute,
                                  frameskip=cfg.frameskip, keep_frames=keep, until=proto.until,
                                  replan_every=cfg.replan_every)
            res.setting = st
            results.append(res)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
        if bar is not None:
            bar.close()
        all_results[agent] = results
        timings[agent] = time.perf_counter() - t0
    described = proto.describe() | {"episodes": episodes, "max_steps": max_steps, "evaluation_seed": seed}
    if proto.needs_trajectories:
        described["trajectories"] = str(trajectories)
    if modified:
        described["modified"] = modified
    report: dict[str, Any] = {
        "protocol": described,
        "protocol_name": proto.name + (" (modified)" if modified else ""),
        "env": env_name, "episodes": episodes, "seed": seed, "max_steps": max_steps,
        "success_radius": env.success_parameters().get("success_radius"),
        "success": env.success_rule(),
        "success_parameters": env.success_parameters(),
        "planner": vars(cfg).copy() | {"max_steps": max_steps},
    }
    for agent, results in all_results.items():
        report[agent] = summarise(results) | {"wall_seconds": timings[agent]}
    if "world_model" in report:  # the method's figures at the top level, as scripts expect
        for k in ("success_rate", "success_ci95", "mean_steps_to_success", "replan_seconds_median", "replan_seconds_p95"):
            report[k] = report["world_model"][k]
    return report, all_results


def format_protocol(report: dict[str, Any]) -> str:
    """One line naming the protocol and its parameters (the header of ``plan.md``)."""
    p = report.get("protocol")
    if not p:
        return ""
    line = (f"Protocol `{report['protocol_name']}`: {p['description']}. Episodes {p['episodes']}, budget "
            f"{p['max_steps']} steps, success judged on the {p['success_judged_on']}, evaluation seed "
            f"{p['evaluation_seed']}.")
    if p.get("modified"):
        line += f" Changed from the protocol: {p['modified']}."
    return line


def format_table(report: dict[str, Any]) -> str:
    header = format_protocol(report)
    rows = ([header, ""] if header else []) + [
        "| agent | success (95% CI) | passed at any step | other-room success | mean steps to first success "
        "| replan s (median / p95) |",
        "|---|---|---|---|---|---|"]
    for agent in ("world_model", "perfect_model", "random"):
        if agent not in report:
            continue
        r = report[agent]
        steps = f"{r['mean_steps_to_success']:.1f}" if r["mean_steps_to_success"] is not None else "-"
        rp = (f"{r['replan_seconds_median']:.4f} / {r['replan_seconds_p95']:.4f}"
              if r["replan_seconds_median"] is not None else "-")
        other = f"{100 * r['other_room_success_rate']:.0f}%" if r["other_room_success_rate"] is not None else "-"
        lo, hi = r["success_ci95"]
        rows.append(f"| {agent} | {100 * r['success_rate']:.0f}% ({r['successes']}/{r['episodes']}; "
                    f"{100 * lo:.0f}-{100 * hi:.0f}) | {100 * r['reached_any_time_rate']:.0f}% | {other} | {steps} | {rp} |")
    return "\n".join(rows)


def write_outputs(out: str | Path, report: dict[str, Any], results: dict[str, list[EpisodeResult]], env_name: str = "two-rooms",
                  env_kwargs: dict[str, Any] | None = None) -> dict[str, Path]:
    """``plan.json``, ``plan.md``, ``plan.gif`` (world-model episodes) and ``trajectories.png``."""
    if env_kwargs is None and report.get("protocol"):
        env_kwargs = report["protocol"]["env_kwargs"] | report["protocol"].get("modified", {}).get("env_kwargs", {})
    return _write_outputs(out, report, results, env_name, env_kwargs)


def _write_outputs(out: str | Path, report: dict[str, Any], results: dict[str, list[EpisodeResult]], env_name: str,
                   env_kwargs: dict[str, Any] | None) -> dict[str, Path]:
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

        rate = report["world_model"]["success_rate"]
        title = f"world-model MPC ({env.path_subject}): {100 * rate:.0f}% success (green), start o, goal *"
        layouts = {repr(r.setting.get("layout")) for r in wm}
        if len(layouts) > 1:  # a layout per episode: one panel each (the first 12), on its own arena
            shown_eps = wm[:12]
            cols = min(4, len(shown_eps))
            rows = -(-len(shown_eps) // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows + 0.4), squeeze=False)
            for ax, r in zip(axes.flat, shown_eps, strict=False):
                env.reset(options={k: v for k, v in r.setting.items() if k != "goal"})
                env.plot_paths(ax, [r])
                ax.set_xticks([])
                ax.set_yticks([])
            for ax in list(axes.flat)[len(shown_eps):]:
                ax.axis("off")
            fig.suptitle(title, fontsize=9)
        else:
            fig, ax = plt.subplots(figsize=(5, 5))
            env.reset(seed=0, options={k: v for k, v in wm[0].setting.items() if k != "goal"} if wm[0].setting else None)
            env.plot_paths(ax, wm)  # Two Rooms: the agent over the arena; Push-T: the block over the table
            ax.set_title(title, fontsize=9)
        fig.tight_layout()
        paths["png"] = out / "trajectories.png"
        fig.savefig(paths["png"], dpi=120)
        plt.close(fig)
    return paths
