"""Position encodings for a (T, H, W) token grid: fixed 3D sine-cosine embeddings and 3D RoPE.

The embedding width is split in three: a third each for the time, row and column
coordinate (each third is half sines, half cosines, MAE/V-JEPA style); any remainder is
zero. Because the embedding is a function of the coordinate, a grid that differs from the
training grid is handled by evaluating it at fractional training-grid coordinates
(``coord = i * train_size / new_size``): the same thing as interpolating the table, without
resampling artefacts, and identical to the table at the training grid.

Rotary embeddings (RoPE, Su et al. 2021; 3D as in V-JEPA 2) instead rotate queries and keys
inside attention by angles proportional to each token's coordinates, so attention scores
depend on relative offsets only and the token features themselves carry no absolute
position: the same content gives the same features wherever it sits.
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


def grid_coords(
    grid: tuple[int, int, int],
    train_grid: tuple[int, int, int] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(t, h, w) coordinates of a token grid, flattened t-major -> [t*h*w, 3] float32.

    As in ``sincos_3d``, a grid other than ``train_grid`` is mapped onto the training grid's
    coordinate range (``coord = i * train_size / size``).
    """
    train_grid = train_grid or grid
    axes = [
        torch.arange(size, dtype=torch.float32, device=device) * (train_size / size)
        for size, train_size in zip(grid, train_grid, strict=True)
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


ROPE_LAYOUTS: tuple[str, ...] = ("half", "vjepa2")


def rope_3d(
    coords: torch.Tensor, head_dim: int, base: float = 10000.0, layout: str = "half"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position tables for 3D token coordinates (RoFormer, per axis as in V-JEPA 2).

    The head width is split in three equal even parts, one per axis (time, row, column); any
    remainder is left unrotated. Within an axis part of width ``2m``, channel pair
    ``(i, i + m)`` rotates together (``apply_rope``).

    ``layout="half"``: pair ``i`` rotates by ``coord * base ** (-i / m)``.
    ``layout="vjepa2"``: V-JEPA 2's exact rotation, with its channels reordered. V-JEPA 2 rotates
    interleaved pairs ``(2j, 2j + 1)`` and gives channel ``e`` the frequency ``e mod m``, so the two
    channels of pair ``j`` turn at frequencies ``2j mod m`` and ``(2j + 1) mod m``. With its query and
    key channels permuted to the half layout (``jepa.convert.vjepa2`` does it for the weights:
    ``2j -> j``, ``2j + 1 -> j + m``; a dot product is unchanged when both sides are permuted alike),
    these tables give the same attention scores.

    Args:
        coords: [..., N, 3] token coordinates.
        head_dim: attention head width.
        base: frequency base.
        layout: "half" or "vjepa2".

    Returns:
        (cos, sin), each [..., N, head_dim], for ``apply_rope``.
    """
    if layout not in ROPE_LAYOUTS:
        raise ValueError(f"unknown rope layout {layout!r}; choose one of {', '.join(ROPE_LAYOUTS)}")
    part = 2 * (head_dim // 6)
    if part == 0:
        raise ValueError(f"rotary positions need a head width of at least 6, got {head_dim}")
    m = part // 2
    inv_freq = base ** (-torch.arange(m, dtype=torch.float32, device=coords.device) / m)  # [m]
    if layout == "half":
        first, second = inv_freq, inv_freq
    else:
        j = torch.arange(m, device=coords.device)
        first, second = inv_freq[(2 * j) % m], inv_freq[(2 * j + 1) % m]
    rest = head_dim - 3 * part
    cos, sin = [], []
    for a in range(3):
        c = coords[..., a, None].float()
        angle = torch.cat([c * first, c * second], dim=-1)  # [..., N, 2m]
        cos.append(angle.cos())
        sin.append(angle.sin())
    if rest:
        cos.append(coords.new_ones(*coords.shape[:-1], rest, dtype=torch.float32))
        sin.append(coords.new_zeros(*coords.shape[:-1], rest, dtype=torch.float32))
    return torch.cat(cos, dim=-1), torch.cat(sin, dim=-1)


_ROTATIONS: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}  # (head_dim, device) -> (index, sign)


def _rope_rotation(head_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(channel index, sign) such that ``x[..., index] * sign`` is rotate-half within each axis
    part of ``rope_3d``: channel ``i < m`` of a part takes ``-x[i + m]``, channel ``i >= m`` takes
    ``x[i - m]``; the unrotated remainder gets sign 0."""
    key = (head_dim, str(device))
    if key not in _ROTATIONS:
        part = 2 * (head_dim // 6)
        m = part // 2
        index = torch.arange(head_dim)
        sign = torch.zeros(head_dim)
        for a in range(3):
            lo = a * part
            index[lo:lo + m], sign[lo:lo + m] = torch.arange(lo + m, lo + part), -1.0
            index[lo + m:lo + part], sign[lo + m:lo + part] = torch.arange(lo, lo + m), 1.0
        _ROTATIONS[key] = (index.to(device), sign.to(device))
    return _ROTATIONS[key]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., N, head_dim] by tables from ``rope_3d`` (broadcast over heads): within each
    axis part of width ``2m``, channel pair ``(i, i + m)`` turns by its angle. One gather of the
    channels and two products (the sign of rotate-half is folded into the small ``sin`` table)."""
    index, sign = _rope_rotation(x.shape[-1], x.device)
    return x * cos.to(x.dtype) + x.index_select(-1, index) * (sin * sign).to(x.dtype)
