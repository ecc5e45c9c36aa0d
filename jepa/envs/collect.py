"""Trajectory collection: roll out a random-walk-with-momentum policy and write episodes to disk.

``jepa data collect two-rooms --episodes 1000 --steps 100 --out data/two_rooms`` writes::

    DIR/episodes/000000.mp4    steps + 1 frames: the observation before each action and the last one
    DIR/episodes/000000.npz    actions [steps, A] float32 (action t moves frame t to frame t + 1),
                               states [steps + 1, S] float32 (true state per frame: for probing and
                               evaluation, never fed to a model), plus the env's
                               ``episode_arrays()`` (Two Rooms: the layout)
    DIR/manifest.csv           path, trajectory, frames, seed (one row per episode)
    DIR/train.csv, val.csv     a seeded split of the manifest

The policy is :class:`jepa.envs.policies.RandomWalkPolicy` by default (a random walk with
momentum, capped to the environment's action bounds, bouncing off walls), or any
:class:`jepa.envs.policies.Policy` (``PushPolicy``: approach-and-push for Push-T); environments come from
:func:`jepa.envs.registry.make_env`. ``RandomWalkPolicy`` and ``make_env`` are re-exported here.
Deterministic for a seed: episode i depends only on (seed, i), whatever the worker count.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from data_pipelines.writers import map_jobs, prepare_dataset_dir, write_split_manifests, write_video
from jepa.envs.policies import Policy, RandomWalkPolicy
from jepa.envs.registry import make_env

__all__ = ["RandomWalkPolicy", "collect", "make_env"]


def _collect_one(args: tuple[str, int, int, int, str, Policy, dict[str, Any], int]) -> dict[str, Any]:
    env_name, index, seed, steps, out, policy, env_kwargs, fps = args
    rng = np.random.default_rng([seed, index])
    env = make_env(env_name, **env_kwargs)
    frames, actions, states = policy.rollout(env, steps, rng)
    video = f"episodes/{index:06d}.mp4"
    traj = f"episodes/{index:06d}.npz"
    # Near-lossless, every frame a keyframe: positions must survive the codec and any frame seeks fast.
    write_video(Path(out) / video, frames, fps, gop=1, crf=4)
    np.savez(Path(out) / traj, actions=actions, states=states, **env.episode_arrays())
    return {"path": video, "trajectory": traj, "frames": len(frames), "seed": index}


def collect(
    env_name: str,
    out: str | os.PathLike,
    episodes: int,
    steps: int,
    seed: int = 0,
    policy: Policy | None = None,
    env_kwargs: dict[str, Any] | None = None,
    val_fraction: float = 0.1,
    workers: int | None = None,
    fps: int = 10,
    overwrite: bool = False,
) -> Path:
    """Collect ``episodes`` episodes of ``steps`` actions; returns the manifest's path. An existing
    dataset in ``out`` is an error unless ``overwrite`` (then it is replaced whole)."""
    if episodes < 1 or steps < 1:
        raise ValueError(f"collect: episodes and steps must be >= 1, got {episodes} and {steps}")
    make_env(env_name, **(env_kwargs or {}))  # fail early on a bad name or option
    out = Path(out)
    prepare_dataset_dir(out, "episodes", overwrite)
    policy = policy or RandomWalkPolicy()
    jobs = [(env_name, i, seed, steps, str(out), policy, env_kwargs or {}, fps) for i in range(episodes)]
    rows = map_jobs(_collect_one, jobs, workers, min_jobs=4, chunksize=8)
    return write_split_manifests(out, rows, seed, val_fraction)
