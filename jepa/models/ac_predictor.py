"""Action-conditioned predictor: a block-causal transformer over time (V-JEPA 2-AC style).

Input latents ``z [B, T, P, D]`` (P tokens per frame: 1 for a vector latent, h*w for a grid) and
actions ``a [B, T, A]``, where action t moves frame t to frame t + 1. Every token of frame t gets
the embedding of action t added, so a token "knows" the action about to be taken. Attention is
block-causal: a token of frame t sees all tokens of frames ``<= t`` and nothing later, so output t
(the prediction of frame t + 1) depends only on frames and actions ``<= t``. With ``window`` = W,
output t depends on frames ``t - W + 1 .. t`` only, through every layer: each prediction runs on
its own slice of W frames (a per-layer sliding mask would let the reach grow by W - 1 frames per
layer, and teacher forcing would then see further back than a rollout can). Positions are rotary
(``rope_3d`` over (t, row, col)): relative in time, so a rollout longer than the training clips,
or a window that slides, sees the same geometry it was trained on.

``rollout(z0, actions)`` feeds predictions back autoregressively; with ``window`` set each step
runs on at most ``window`` frames, so a step costs the same at step 1 and step 100, and its output
equals teacher forcing (``forward``) on the same frames.
"""

from __future__ import annotations

import torch
from torch import nn

from jepa.models.blocks import BlockStack, init_weights
from jepa.models.pos_embed import rope_3d


def block_causal_mask(frames: int, tokens_per_frame: int, window: int | None, device: torch.device | None = None) -> torch.Tensor:
    """Boolean ``[N, N]`` (True = may attend) for N = frames * tokens_per_frame, frame-major."""
    f = torch.arange(frames, device=device).repeat_interleave(tokens_per_frame)
    age = f[:, None] - f[None, :]  # query frame - key frame
    allowed = age >= 0
    if window is not None:
        allowed &= age < window
    return allowed


class ActionConditionedPredictor(nn.Module):
    """Predict ``z_{t+1}`` from frames and actions ``<= t`` (see the module doc).

    Args:
        latent_dim: D, the width of one latent token.
        action_dim: A, the width of one (frameskip-concatenated) action.
        grid: (h, w) layout of the P tokens per frame (``(1, 1)`` for a vector latent).
        embed_dim, depth, num_heads, mlp_ratio: the transformer.
        window: frames of history each prediction sees (None: all).
        residual: predict the change ``z_{t+1} - z_t`` (added back to z_t) instead of ``z_{t+1}``.
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        grid: tuple[int, int] = (1, 1),
        embed_dim: int = 128,
        depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        window: int | None = None,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self.latent_dim, self.action_dim = latent_dim, action_dim
        self.grid = (int(grid[0]), int(grid[1]))
        self.tokens_per_frame = self.grid[0] * self.grid[1]
        self.window, self.residual = window, residual
        self.head_dim = embed_dim // num_heads
        self.latent_in = nn.Linear(latent_dim, embed_dim)
        self.action_in = nn.Sequential(nn.Linear(action_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
        self.blocks = BlockStack(embed_dim, depth, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.out = nn.Linear(embed_dim, latent_dim)
        self._cache: dict[tuple[int, str], tuple[torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]] = {}
        self.apply(init_weights)
        if residual:  # start as the identity map: z_{t+1} = z_t
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def _tables(self, frames: int, device: torch.device) -> tuple[torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
        """(block-causal mask or None when it allows everything, rotary tables), cached per size."""
        key = (frames, str(device))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        h, w = self.grid
        t = torch.arange(frames, device=device, dtype=torch.float32)
        rr, cc = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        coords = torch.stack(
            [t.repeat_interleave(h * w), rr.flatten().float().repeat(frames), cc.flatten().float().repeat(frames)], dim=-1
        )
        cos, sin = rope_3d(coords, self.head_dim)
        mask: torch.Tensor | None = block_causal_mask(frames, h * w, None, device)
        if bool(mask.all()):
            mask = None
        out = (mask, (cos[None], sin[None]))
        self._cache[key] = out
        return out

    def embed_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Action embeddings ``[B, T, A]`` -> ``[B, T, E]`` (computed once per rollout)."""
        return self.action_in(actions)

    def forward(self, z: torch.Tensor, actions: torch.Tensor, action_emb: torch.Tensor | None = None) -> torch.Tensor:
        """``z [B, T, P, D]``, ``actions [B, T, A]`` -> predictions of frames 1..T ``[B, T, P, D]``.

        ``action_emb`` (from ``embed_actions``) skips embedding the actions again.
        """
        if z.ndim != 4:
            raise ValueError(f"latents must be [B, T, P, D], got shape {tuple(z.shape)}")
        b, t, p, d = z.shape
        if p != self.tokens_per_frame or d != self.latent_dim:
            raise ValueError(f"latents have {p} tokens of width {d}; the predictor expects {self.tokens_per_frame} of {self.latent_dim}")
        if action_emb is None:
            if actions.shape != (b, t, self.action_dim):
                raise ValueError(f"actions must be [B, T, A] = {(b, t, self.action_dim)}, got {tuple(actions.shape)}")
            action_emb = self.action_in(actions)
        w = self.window
        if w is None or t <= w:
            return self._causal(z, action_emb)
        # Outputs 0..W-1 see every earlier frame anyway: one pass. Output t >= W: the last output
        # of a pass over frames t-W+1..t, all such slices batched.
        head = self._causal(z[:, :w], action_emb[:, :w])
        zs = z.unfold(1, w, 1)[:, 1:].permute(0, 1, 4, 2, 3).reshape(-1, w, p, d)  # [B*(T-W), W, P, D]
        es = action_emb.unfold(1, w, 1)[:, 1:].permute(0, 1, 3, 2).reshape(-1, w, action_emb.shape[-1])
        tail = self._causal(zs, es)[:, -1].reshape(b, t - w, p, d)
        return torch.cat([head, tail], dim=1)

    def _causal(self, z: torch.Tensor, action_emb: torch.Tensor) -> torch.Tensor:
        """One block-causal pass: ``z [B, T, P, D]``, embedded actions ``[B, T, E]`` -> ``[B, T, P, D]``."""
        b, t, p, d = z.shape
        x = self.latent_in(z) + action_emb[:, :, None, :]
        x = x.reshape(b, t * p, -1)
        mask, rope = self._tables(t, z.device)
        x, _ = self.blocks(x, attn_mask=mask, rope=rope)
        out = self.out(self.norm(x)).reshape(b, t, p, d)
        return z + out if self.residual else out

    def rollout(self, z: torch.Tensor, actions: torch.Tensor, context_actions: torch.Tensor | None = None) -> torch.Tensor:
        """Autoregressive rollout.

        Args:
            z: the latest frame ``[B, P, D]``, or a history ``[B, T0, P, D]`` ending with it.
            actions: ``[B, H, A]``, the actions to take from the latest frame on.
            context_actions: ``[B, T0 - 1, A]``, the actions between the history frames.

        Returns:
            ``[B, H, P, D]``: the predicted latents after each action.
        """
        if z.ndim == 3:
            z = z[:, None]
        b, t0 = z.shape[:2]
        horizon = actions.shape[1]
        if actions.ndim != 3 or actions.shape[0] != b:
            raise ValueError(f"actions must be [B, H, A] with B = {b}, got {tuple(actions.shape)}")
        if t0 > 1:
            if context_actions is None or context_actions.shape[:2] != (b, t0 - 1):
                raise ValueError(f"a history of {t0} frames needs context_actions [B, {t0 - 1}, A]")
            acts = torch.cat([context_actions, actions], dim=1)
        else:
            acts = actions
        if acts.shape[-1] != self.action_dim:
            raise ValueError(f"actions have width {acts.shape[-1]}; the predictor expects {self.action_dim}")
        emb = self.action_in(acts)  # [B, T0 + H - 1, E], once
        frames = list(z.unbind(1))
        w = self.window or (t0 + horizon)
        outs = []
        for h in range(horizon):
            n = t0 + h  # frames known so far; the next action is acts[:, n - 1]
            lo = max(0, n - w)
            ctx = frames[n - 1][:, None] if n - lo == 1 else torch.stack(frames[lo:n], dim=1)
            nxt = self.forward(ctx, acts[:, lo:n], emb[:, lo:n])[:, -1]
            frames.append(nxt)
            outs.append(nxt)
        return torch.stack(outs, dim=1)
