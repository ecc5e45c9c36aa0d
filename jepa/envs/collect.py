"""Trajectory collection: roll out a random-walk-with-momentum policy and write episodes to disk.

``jepa data collect two-rooms --episodes 1000 --steps 100 --out data/two_rooms`` writes::

    DIR/episodes/000000.mp4    steps + 1 frames: the observation before each action and the last one
    DIR/episodes/000000.npz    actions [steps, A] float32 (action t moves frame t to frame t + 1),
                               states [steps + 1, S] float32 (true state per frame: for probing and
                               evaluation, never fed to a model), plus the episode's layout
    DIR/manifest.csv           path, trajectory, frames, seed (one row per episode)
    DIR/train.csv, val.csv     a seeded split of the manifest

The policy: ``v_t = momentum * v_{t-1} + noise * max_norm * eps_t`` (eps ~ N(0, I)), action
``a_t = v_t`` capped to the environment's action bounds. High momentum gives long, smooth
sweeps that cross the arena (and its door); noise sets how often the heading changes. With
``bounce`` (default) the velocity reverses along an axis the agent was blocked on (a wall or the
border), so episodes do not spend their steps pressed against a wall.
Deterministic for a seed: episode i depends only on (seed, i), whatever the worker count.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_pipelines.synth import write_split_manifests, write_video
from jepa.envs.two_rooms import TwoRooms, clip_actions

ENVS: dict[str, Callable[..., Any]] = {"two-rooms": TwoRooms.make}


def register_env(name: str, factory: Callable[..., Any]) -> None:
    ENVS[name] = factory


def make_env(name: str, **overrides: Any) -> Any:
    """An environment by its CLI name (``two-rooms``; ``pusht`` with the ``[envs]`` extra)."""
    if name == "pusht" and name not in ENVS:
        from jepa.envs.pusht import PushT  # noqa: F401  (registers itself; needs gym-pusht)
    if name not in ENVS:
        raise ValueError(f"unknown environment {name!r}; expected one of {sorted(ENVS) + ['pusht']}")
    return ENVS[name](**overrides)


@dataclass(frozen=True)
class RandomWalkPolicy:
    """Random walk with momentum in action space, capped to the action bounds."""

    momentum: float = 0.9
    noise: float = 0.4  # std of the per-step kick, as a fraction of the largest action
    bounce: bool = True  # reverse the velocity along an axis the agent could not move along

    def rollout(
        self, env: Any, steps: int, rng: np.random.Generator, reset: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames ``[steps+1, H, W, 3]``, actions ``[steps, A]`` and states ``[steps+1, S]``.

        ``reset=False`` continues from the environment's current state instead of a fresh episode.
        """
        if reset:
            obs, info = env.reset(seed=int(rng.integers(2**31)))
        else:
            obs, info = env.render(), env._info()
        high = np.asarray(env.action_high, dtype=np.float64)
        low = np.asarray(env.action_low, dtype=np.float64)
        scale = float(np.max(np.abs(high)))
        frames, actions, states = [obs], [], [np.asarray(info["state"], np.float32)]
        v = rng.normal(0.0, scale / 2, size=high.shape)
        for _ in range(steps):
            v = self.momentum * v + self.noise * scale * rng.normal(size=high.shape)
            v = np.clip(v, low, high)
            if hasattr(env, "config") and hasattr(env.config, "max_action_norm"):
                v = clip_actions(v, env.config.max_action_norm)
            before = np.asarray(info["state"], np.float64)
            obs, _, _, _, info = env.step(v)
            frames.append(obs)
            actions.append(v.astype(np.float32))
            states.append(np.asarray(info["state"], np.float32))
            if self.bounce:
                if "blocked" in info:  # the environment says which axes were stopped
                    stuck = np.asarray(info["blocked"], bool)
                else:  # the agent's position leads the state: did it move about as far as asked?
                    moved = np.asarray(info["state"], np.float64)[: len(v)] - before[: len(v)]
                    stuck = (np.abs(v) > 0.1 * scale) & (np.abs(moved) < 0.5 * np.abs(v))
                v = np.where(stuck, -v, v)
        return np.stack(frames), np.stack(actions), np.stack(states)


def _collect_one(args: tuple[str, int, int, int, str, RandomWalkPolicy, dict[str, Any], int]) -> dict[str, Any]:
    env_name, index, seed, steps, out, policy, env_kwargs, fps = args
    rng = np.random.default_rng([seed, index])
    env = make_env(env_name, **env_kwargs)
    frames, actions, states = policy.rollout(env, steps, rng)
    video = f"episodes/{index:06d}.mp4"
    traj = f"episodes/{index:06d}.npz"
    # Near-lossless, every frame a keyframe: positions must survive the codec and any frame seeks fast.
    write_video(Path(out) / video, frames, fps, gop=1, crf=4)
    layout = getattr(env, "layout", None)
    extra = {f"layout_{k}": np.float32(v) for k, v in asdict(layout).items()} if layout is not None else {}
    np.savez(Path(out) / traj, actions=actions, states=states, **extra)
    return {"path": video, "trajectory": traj, "frames": len(frames), "seed": index}


def collect(
    env_name: str,
    out: str | os.PathLike,
    episodes: int,
    steps: int,
    seed: int = 0,
    policy: RandomWalkPolicy | None = None,
    env_kwargs: dict[str, Any] | None = None,
    val_fraction: float = 0.1,
    workers: int | None = None,
    fps: int = 10,
) -> Path:
    """Collect ``episodes`` episodes of ``steps`` actions; returns the manifest's path."""
    if episodes < 1 or steps < 1:
        raise ValueError(f"collect: episodes and steps must be >= 1, got {episodes} and {steps}")
    make_env(env_name, **(env_kwargs or {}))  # fail early on a bad name or option
    out = Path(out)
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    policy = policy or RandomWalkPolicy()
    jobs = [(env_name, i, seed, steps, str(out), policy, env_kwargs or {}, fps) for i in range(episodes)]
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1 and episodes > 4:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_collect_one, jobs, chunksize=8))
    else:
        rows = [_collect_one(j) for j in jobs]
    return write_split_manifests(out, rows, seed, val_fraction)
