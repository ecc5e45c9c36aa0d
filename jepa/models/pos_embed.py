"""Fixed 3D sine-cosine position embeddings for a (T, H, W) token grid.

The embedding width is split in three: a third each for the time, row and column
coordinate (each third is half sines, half cosines, MAE/V-JEPA style); any remainder is
zero. Because the embedding is a function of the coordinate, a grid that differs from the
training grid is handled by evaluating it at fractional training-grid coordinates
(``coord = i * train_size / new_size``): the same thing as interpolating the table, without
resampling artefacts, and identical to the table at the training grid.
"""

from __future__ import annotations

import torch


def sincos_1d(dim: int, pos: torch.Tensor, temperature: float = 10000.0) -> torch.Tensor:
    """Sine-cosine embedding of positions ``pos`` [N] into ``dim`` (even) channels -> [N, dim]."""
    if dim % 2:
        raise ValueError(f"sincos_1d needs an even dim, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0)
    omega = 1.0 / temperature**omega  # [dim/2]
    out = pos.to(torch.float64)[:, None] * omega[None, :]  # [N, dim/2]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_3d(
    dim: int,
    grid: tuple[int, int, int],
    train_grid: tuple[int, int, int] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Position embeddings for a ``grid`` = (t, h, w) of tokens, flattened t-major -> [t*h*w, dim].

    Args:
        dim: embedding width.
        grid: token grid of the input.
        train_grid: grid the model was trained on; when it differs from ``grid`` the
            coordinates are rescaled onto it (interpolation).
        device: where to build the table.
    """
    train_grid = train_grid or grid
    part = 2 * (dim // 6)  # even width per axis
    axes = []
    for size, train_size in zip(grid, train_grid, strict=True):
        coord = torch.arange(size, dtype=torch.float64, device=device) * (train_size / size)
        axes.append(coord)
    t, h, w = torch.meshgrid(*axes, indexing="ij")
    emb = torch.cat(
        [sincos_1d(part, t.reshape(-1)), sincos_1d(part, h.reshape(-1)), sincos_1d(part, w.reshape(-1))],
        dim=1,
    )
    if emb.shape[1] < dim:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], dim - emb.shape[1])], dim=1)
    return emb.float()
