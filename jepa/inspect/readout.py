"""Linear read-out of continuous state from frame latents: how much of the true state (agent
position, the layout's wall and door) a world model's latent holds, judged on held-out episodes.

``ridge_readout(x, targets, fit, held)`` fits one ridge regression per target on the fit rows
(features standardised on the fit rows, the penalty ``alpha`` times the number of fit rows) and
returns R^2 on the held-out rows: ``1 - SS_res / SS_tot`` with ``SS_tot`` about the *held-out*
mean, so a constant prediction scores <= 0 and a perfect one 1. ``state_targets`` turns recorded
states and an episode's scalar arrays (e.g. ``layout_wall_x``) into per-frame target columns.

A low agent R^2 beside a high layout R^2 is the signature of a latent that kept the static scene
and dropped the thing the actions move (``docs/experiments.md``, Two Rooms under ``eb-jepa``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch


def state_targets(states: np.ndarray, arrays: Mapping[str, np.ndarray], names: Sequence[str] | None = None
                  ) -> dict[str, np.ndarray]:
    """Per-frame continuous targets ``name -> [N]``: each state column (named by ``names``, else
    ``state[i]``) and every scalar array of the episode (repeated over its N frames)."""
    s = np.asarray(states, np.float64)
    if s.ndim == 1:
        s = s[:, None]
    out: dict[str, np.ndarray] = {}
    for i in range(s.shape[1]):
        out[names[i] if names is not None and i < len(names) else f"state[{i}]"] = s[:, i]
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.ndim == 0 and np.issubdtype(a.dtype, np.number):
            out[k] = np.full(len(s), float(a))
    return out


def ridge_readout(x: torch.Tensor, targets: Mapping[str, np.ndarray | torch.Tensor], fit: torch.Tensor,
                  held: torch.Tensor, alpha: float = 1e-2) -> dict[str, float]:
    """Held-out R^2 of a ridge regression from ``x [M, F]`` to each target ``[M]``.

    Targets constant on the held-out rows (nothing to explain) are left out."""
    if x.ndim != 2:
        raise ValueError(f"features must be [M, F], got {tuple(x.shape)}")
    xf = x.double()
    mu, sd = xf[fit].mean(0), xf[fit].std(0).clamp_min(1e-8)
    z = (xf - mu) / sd
    zf = torch.cat([z[fit], torch.ones(len(fit), 1, dtype=z.dtype)], 1)
    zh = torch.cat([z[held], torch.ones(len(held), 1, dtype=z.dtype)], 1)
    gram = zf.T @ zf
    reg = alpha * len(fit) * torch.eye(gram.shape[0], dtype=z.dtype)
    reg[-1, -1] = 0.0  # the intercept is not penalised
    out: dict[str, float] = {}
    for name, col in targets.items():
        y = torch.as_tensor(np.asarray(col), dtype=torch.float64)
        yh = y[held]
        ss_tot = float((yh - yh.mean()).pow(2).sum())
        if ss_tot <= 1e-12 * max(1, len(yh)):
            continue
        w = torch.linalg.solve(gram + reg, zf.T @ y[fit])
        ss_res = float((zh @ w - yh).pow(2).sum())
        out[name] = 1.0 - ss_res / ss_tot
    return out
