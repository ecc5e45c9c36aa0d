"""``jepa inspect --world-model``: a sparse dictionary over a world model's frame latents, named
by the true state of the environment.

    jepa inspect --world-model outputs/two_rooms/checkpoints/last.ckpt --env two-rooms \\
        --data data/two_rooms/val.csv --atoms 64 --active 4 --out outputs/two_rooms/inspect

1. Frames of the recorded trajectories in ``data`` (a ``jepa data collect`` manifest; every
   ``frame_stride``-th frame) are encoded by the world model's encoder (``encode``: the latents
   its predictor reads, ``[P, D]`` per frame: one token for a vector latent, ``P`` for a grid),
   and by a randomly initialised twin of that encoder as the baseline.
2. Labels come from the recorded states through the environment (``Env.state_labels``; Two Rooms:
   room, side of the door, distance to the wall, where the layout's wall and door are).
3. *Episodes*, not frames, are split into fit and held-out sets (frames of one episode are near
   copies of each other, so a frame split would score memorised episodes). Everything else is
   :mod:`jepa.inspect.run`'s: a top-k dictionary fitted on the fit frames' tokens; R^2 against
   PCA with as many components; names chosen on fit frames and scored (ROC AUC) on held-out ones;
   the same count for PCA directions and for the random twin's dictionary.
4. A linear read-out of the continuous state (``jepa.inspect.readout``: ridge regression from a
   frame's whole latent to each state coordinate and layout scalar, R^2 on the held-out episodes),
   for the model and the random twin: does the latent hold what the actions move?
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jepa.inspect.dictionary import encode
from jepa.inspect.readout import ridge_readout, state_targets
from jepa.inspect.run import (
    MAX_LABEL_VALUES,
    MIN_CLIPS,
    NAMEABLE_AUC,
    clip_picture,
    dictionary_report,
    label_columns,
    pca_names,
    split_indices,
)


def random_encoder_twin(encoder: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of a world model's frame encoder with every layer freshly initialised (each
    module's own ``reset_parameters``; a ``VideoViT`` backbone is rebuilt from its config)."""
    from jepa.methods.world_model import FrameEncoder
    from jepa.models.vit import VideoViT
    from jepa.probe.run import random_twin

    twin = copy.deepcopy(encoder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(twin, FrameEncoder) and isinstance(twin.backbone, VideoViT):
            twin.backbone = random_twin(twin.backbone, seed)
        else:
            for m in twin.modules():
                reset = getattr(m, "reset_parameters", None)
                if m is not twin and callable(reset):
                    reset()
    return twin.eval()


def read_frames(manifest: str | os.PathLike[str], env: Any, frame_stride: int, max_episodes: int | None
                ) -> tuple[np.ndarray, np.ndarray, dict[str, torch.Tensor], dict[str, list[str]], list[str],
                           dict[str, np.ndarray]]:
    """Every ``frame_stride``-th frame of the first ``max_episodes`` trajectories -> (frames uint8
    ``[M, H, W, 3]``, episode index ``[M]``, labels (column -> int64 ``[M]``), value names, the
    episodes' video paths, continuous state targets (``jepa.inspect.readout.state_targets``:
    column -> float ``[M]``))."""
    from data_pipelines.decoding.pyav import decode_all
    from data_pipelines.trajectories import read_trajectory_manifest

    episodes = read_trajectory_manifest(manifest)[:max_episodes]
    frames, episode, paths = [], [], []
    labels: dict[str, list[np.ndarray]] = {}
    vocab: dict[str, list[str]] = {}
    targets: dict[str, list[np.ndarray]] = {}
    for e, ep in enumerate(episodes):
        with np.load(ep.trajectory) as z:
            if "states" not in z:
                raise ValueError(f"{ep.trajectory}: no recorded states to name atoms by; collect the data with "
                                 "jepa data collect, which records them")
            arrays = {k: np.asarray(z[k]) for k in z.files}
        video = decode_all(ep.video)
        states = arrays.pop("states")
        if len(video) != len(states):
            raise ValueError(f"{ep.video}: {len(video)} frames but {ep.trajectory} records {len(states)} states")
        keep = np.arange(0, len(video), frame_stride)
        frames.append(video[keep])
        episode.append(np.full(len(keep), e))
        paths.append(ep.video)
        for name, (values, names) in env.state_labels(states[keep], arrays).items():
            labels.setdefault(name, []).append(np.asarray(values, np.int64))
            vocab[name] = list(names)
        for name, col in state_targets(states[keep], arrays, getattr(env, "state_names", ())).items():
            targets.setdefault(name, []).append(col)
    label_t = {k: torch.from_numpy(np.concatenate(v)) for k, v in labels.items()}
    target_a = {k: np.concatenate(v) for k, v in targets.items() if len(v) == len(paths)}
    return np.concatenate(frames), np.concatenate(episode), label_t, vocab, paths, target_a


@torch.no_grad()
def encode_frames(encoder: nn.Module, normalise: Any, frames: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """``[M, H, W, 3]`` uint8 -> latents ``[M, P, D]`` (float32, CPU)."""
    out = [encoder(normalise(frames[i:i + batch_size])).float().cpu() for i in range(0, len(frames), batch_size)]
    return torch.cat(out)


def split_episodes(episode: np.ndarray, heldout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame indices of the fit and held-out *episodes*: ``jepa.inspect.run``'s seeded split,
    applied to episodes instead of clips."""
    ids = np.unique(episode)
    if len(ids) < 2:
        raise ValueError(f"{len(ids)} episode(s) are too few to fit on some and hold out others; pass more trajectories")
    _, held_ids = split_indices(len(ids), heldout, seed)
    is_held = torch.from_numpy(np.isin(episode, ids[held_ids.numpy()]))
    return (~is_held).nonzero().squeeze(1), is_held.nonzero().squeeze(1)


def run_inspect_world_model(world_model: str | os.PathLike[str], data: str | os.PathLike[str], env: str = "two-rooms",
                            atoms: int = 64, active: int = 4, out: str | os.PathLike[str] | None = None,
                            heldout: float = 0.3, steps: int = 2000, seed: int = 0,
                            baselines: tuple[str, ...] = ("random_init",), max_tokens: int = 200_000,
                            show: int = 24, clips_per_atom: int = 4, frame_stride: int = 4,
                            max_episodes: int | None = None, batch_size: int = 256, trust: bool = False,
                            env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit, measure and name a dictionary over ``world_model``'s frame latents (see the module notes)."""
    from jepa.envs.registry import make_env
    from jepa.methods.world_model import load_world_model

    if not 0 < heldout < 1:
        raise ValueError(f"--heldout must be in (0, 1), got {heldout}")
    if frame_stride < 1:
        raise ValueError(f"--frame-stride must be >= 1, got {frame_stride}")
    bad = [b for b in baselines if b != "random_init"]
    if bad:
        raise ValueError(f"unknown baseline(s) {bad}; choose random_init")
    wm = load_world_model(str(world_model), trust=trust)
    the_env = make_env(env, **(env_kwargs or {}))
    frames, episode, labels, vocab, paths, targets = read_frames(data, the_env, frame_stride, max_episodes)
    if not label_columns(labels):
        raise ValueError(f"environment {env} gives no state labels with 2-{MAX_LABEL_VALUES} values for {data}; atoms cannot be named")
    tokens = encode_frames(wm.encoder, wm.normalise_frames, frames, batch_size)
    fit, held = split_episodes(episode, heldout, seed)
    dic, rep = dictionary_report(tokens, labels, fit, held, atoms, active, steps, seed, max_tokens)
    result: dict[str, Any] = {
        "encoder": str(world_model), "world_model": str(world_model), "env": env, "data": str(data), "unit": "frames",
        "split_by": "episode", "episodes": len(paths), "frame_stride": frame_stride,
        "clips": int(tokens.shape[0]), "fit_clips": int(fit.numel()), "heldout_clips": int(held.numel()),
        "tokens_per_clip": int(tokens.shape[1]), "dim": int(tokens.shape[2]),
        "labels": sorted(label_columns(labels)), "label_values": vocab, "nameable_auc": NAMEABLE_AUC,
        "min_clips_per_name": MIN_CLIPS, "seed": seed,
        "pretrained": rep["summary"], "pca": pca_names(tokens, labels, fit, held, atoms),
        "state_readout": {"pretrained": ridge_readout(tokens.flatten(1), targets, fit, held)},
    }
    if "random_init" in baselines:
        twin = random_encoder_twin(wm.encoder, seed)
        rtok = encode_frames(twin, wm.normalise_frames, frames, batch_size)
        _, rrep = dictionary_report(rtok, labels, fit, held, atoms, active, steps, seed, max_tokens)
        result["random_init"] = rrep["summary"]
        result["state_readout"]["random_init"] = ridge_readout(rtok.flatten(1), targets, fit, held)
    result["atoms"] = rep["atoms"]
    if out is not None:
        from jepa.inspect.run import write_outputs

        grid = (1, *wm.encoder.grid)

        def picture(top: list[int], atom: int) -> bytes:
            import io

            from PIL import Image

            tiles = []
            for i in top:  # one tile per frame; with a single latent token there is nothing to highlight
                act = encode(dic, tokens[i].float())[:, atom].view(*grid).numpy()
                tiles.append(clip_picture(frames[i][None], act if act.size > 1 else np.zeros_like(act), grid))
            buf = io.BytesIO()
            Image.fromarray(np.concatenate(tiles, 1)).save(buf, format="PNG")
            return buf.getvalue()

        def value_name(col: str, v: int) -> str:
            names = vocab.get(col, [])
            return names[v] if 0 <= v < len(names) else str(v)

        write_outputs(Path(out), result, rep, held, show, clips_per_atom, picture,
                      clip_name=lambda i: f"{paths[int(episode[i])]}#frame{int(i - np.searchsorted(episode, episode[i])) * frame_stride}",
                      value_name=value_name)
        torch.save({"state_dict": dic.state_dict(), "dim": dic.dim, "atoms": dic.atoms, "active": dic.active},
                   Path(out) / "dictionary.pt")
    return result
