"""Trajectories (frames as video + actions [+ state]) -> clips with aligned actions.

A trajectory manifest (``jepa data collect`` writes one) is a CSV with a ``path`` column (the
episode's video, ``F`` frames) and a ``trajectory`` column (an ``.npz`` with ``actions [F-1, A]``,
where action t moves frame t to frame t + 1, and optionally ``states [F, S]``). Paths are relative
to the manifest's folder or absolute.

A clip of ``num_frames`` frames with ``frameskip`` k starts at frame s and holds frames
``s, s+k, ..., s+(T-1)k``. Its action i moves clip frame i to clip frame i + 1: the k environment
actions ``a[s+ik : s+(i+1)k]`` concatenated (``[T-1, k*A]``, the frameskip convention of DINO-WM),
so a planner over clip actions executes k environment actions per model step.

Item (a dict): ``video`` uint8 ``[T, H, W, 3]``, ``actions`` float32 ``[T-1, k*A]``, ``states``
float32 ``[T, S]`` (zeros when the file has none), ``episode`` and ``start`` (int).

``preload=True`` (the default) decodes every episode once at construction into one uint8 array
(small-image datasets fit easily: 1,000 episodes of 101 frames at 64x64 take 1.2 GB), so clips
are slices and a DataLoader needs no workers. Otherwise frames are decoded per clip by seeking.
A file that fails to decode or whose frame count disagrees with its actions raises an error
naming it: trajectories are never silently shortened or dropped.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from data_pipelines.decoding import decode_all, open_video


@dataclass(frozen=True)
class Episode:
    video: str
    trajectory: str


def read_trajectory_manifest(manifest: str | os.PathLike) -> list[Episode]:
    path = Path(manifest)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory manifest not found: {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: trajectory manifest has no rows")
    missing = {"path", "trajectory"} - set(rows[0])
    if missing:
        raise ValueError(f"{path}: trajectory manifest lacks column(s) {sorted(missing)} (has {sorted(rows[0])})")
    root = path.parent

    def resolve(p: str) -> str:
        return p if os.path.isabs(p) else str(root / p)

    episodes = [Episode(resolve(r["path"]), resolve(r["trajectory"])) for r in rows]
    for e in episodes:
        for p in (e.video, e.trajectory):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{path}: file listed in the manifest does not exist: {p}")
    return episodes


def load_trajectory(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(path) as z:
        if "actions" not in z:
            raise ValueError(f"{path}: trajectory file has no 'actions' array (has {sorted(z.files)})")
        actions = np.asarray(z["actions"], np.float32)
        states = np.asarray(z["states"], np.float32) if "states" in z else None
    if actions.ndim != 2:
        raise ValueError(f"{path}: actions must be [steps, action_dim], got shape {actions.shape}")
    return actions, states


class TrajectoryClipDataset(Dataset):
    """Every clip start of every episode, one item each (see the module doc)."""

    def __init__(
        self,
        source: str | os.PathLike | list[Episode],
        num_frames: int = 4,
        frameskip: int = 1,
        preload: bool = True,
        stride: int = 1,
    ) -> None:
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 (a clip needs an action), got {num_frames}")
        if frameskip < 1 or stride < 1:
            raise ValueError(f"frameskip and stride must be >= 1, got {frameskip} and {stride}")
        self.episodes = source if isinstance(source, list) else read_trajectory_manifest(source)
        self.origin = "<list>" if isinstance(source, list) else str(source)
        self.num_frames, self.frameskip, self.preload = num_frames, frameskip, preload
        self.span = (num_frames - 1) * frameskip + 1
        self.actions: list[np.ndarray] = []
        self.states: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        index: list[tuple[int, int]] = []
        for e, ep in enumerate(self.episodes):
            actions, states = load_trajectory(ep.trajectory)
            n = len(actions) + 1
            if states is not None and len(states) != n:
                raise ValueError(f"{ep.trajectory}: {len(states)} states for {len(actions)} actions (expected {n})")
            if preload:
                frames = decode_all(ep.video)
                if len(frames) != n:
                    raise ValueError(f"{ep.video}: {len(frames)} frames but {len(actions)} actions in {ep.trajectory} (expected {n} frames)")
                self.frames.append(frames)
            self.actions.append(actions)
            self.states.append(states if states is not None else np.zeros((n, 0), np.float32))
            index.extend((e, s) for s in range(0, n - self.span + 1, stride))
        if not index:
            raise ValueError(
                f"{self.origin}: no episode has the {self.span} frames a clip needs "
                f"(num_frames={num_frames}, frameskip={frameskip})"
            )
        self.index = np.asarray(index, dtype=np.int64)
        self.action_dim = int(self.actions[0].shape[1]) * frameskip

    def __len__(self) -> int:
        return len(self.index)

    def clip_frames(self, e: int, start: int) -> np.ndarray:
        ids = list(range(start, start + self.span, self.frameskip))
        if self.preload:
            return self.frames[e][ids]
        with open_video(self.episodes[e].video) as reader:
            return reader.get_frames(ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e, s = (int(v) for v in self.index[i])
        k, t = self.frameskip, self.num_frames
        acts = self.actions[e][s : s + (t - 1) * k].reshape(t - 1, -1)
        return {
            "video": torch.from_numpy(np.ascontiguousarray(self.clip_frames(e, s))),
            "actions": torch.from_numpy(np.ascontiguousarray(acts)),
            "states": torch.from_numpy(np.ascontiguousarray(self.states[e][s : s + self.span : k])),
            "episode": e,
            "start": s,
        }

    def action_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and std of clip actions (``[k*A]``) over the whole dataset."""
        a = np.concatenate(self.actions)
        mean, std = a.mean(0), a.std(0) + 1e-6
        return np.tile(mean, self.frameskip), np.tile(std, self.frameskip)
