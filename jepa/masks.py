"""Multiblock 3D masks (V-JEPA): which tokens the context encoder sees and which are predicted.

For one mask set, a block size is drawn once per batch (spatial scale and aspect ratio, and a
temporal extent; V-JEPA's blocks span the whole clip), then ``num_blocks`` positions per
clip. The target set of a clip is the union of its blocks; the context is every other token.
V-JEPA's defaults are two mask sets per batch: short-range (8 blocks of 15% of each frame)
and long-range (2 blocks of 70%).

Clips of one batch get different token counts. The reference implementation truncates every
clip to the batch minimum by dropping indices from the *end* of its sorted list, i.e.
late frames and low rows, which biases training against them. Here nothing is dropped:
index lists are padded to the batch maximum and carry a validity mask (``*_mask``); padded
entries are excluded as attention keys and from the loss. Every token of a clip is either
context or target, exactly once.

Sampling is vectorised: block corners come from a CPU ``torch.Generator`` (tiny, and
reproducible across devices), the masks themselves are built on the training device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from data_pipelines.resumable import mix_seed


@dataclass
class MaskSpec:
    """One mask set.

    Attributes:
        num_blocks: blocks per clip; their union is the prediction target.
        spatial_scale: (min, max) fraction of a frame's tokens one block covers.
        temporal_scale: (min, max) fraction of the clip's time steps a block spans. With
            ``spatial_scale`` 1 a block is a run of whole frames (a temporal mask: the missing
            time steps are predicted from the others); a block never covers the whole clip.
        aspect_ratio: (min, max) height/width of a block.
    """

    num_blocks: int = 8
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)


SHORT_RANGE = MaskSpec(8, (0.15, 0.15))
LONG_RANGE = MaskSpec(2, (0.7, 0.7))


@dataclass
class MaskSet:
    """Padded token index lists for a batch; ids index the flattened t-major token grid."""

    context_ids: torch.Tensor  # [B, Nc] long
    context_mask: torch.Tensor  # [B, Nc] bool, True = real token
    target_ids: torch.Tensor  # [B, Nt] long
    target_mask: torch.Tensor  # [B, Nt] bool

    @property
    def context_fraction(self) -> float:
        n = self.context_mask.sum() + self.target_mask.sum()
        return float(self.context_mask.sum() / n)

    @property
    def target_fraction(self) -> float:
        n = self.context_mask.sum() + self.target_mask.sum()
        return float(self.target_mask.sum() / n)

    @property
    def padding_fraction(self) -> float:
        """Padded share of the context and target lists (compute spent on padding)."""
        total = self.context_mask.numel() + self.target_mask.numel()
        return 1.0 - float(self.context_mask.sum() + self.target_mask.sum()) / total


def mask_to_ids(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, N] bool -> (ids [B, M], valid [B, M]) of the True positions in ascending order, M = max count."""
    counts = mask.sum(1)
    m = int(counts.max()) if mask.numel() else 0
    # a stable sort on "not selected" puts the selected positions first, in index order
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices[:, :m]
    valid = torch.arange(m, device=mask.device)[None, :] < counts[:, None]
    return order, valid


class MultiBlockMaskSampler:
    """Sample multiblock target masks and their complementary context for a token grid.

    Args:
        spec: block count, scales and aspect ratios.
        min_context: minimum number of context tokens per clip; clips whose blocks cover more
            are redrawn (V-JEPA's ``min_keep``).
    """

    def __init__(self, spec: MaskSpec, min_context: int = 4) -> None:
        self.spec = spec
        self.min_context = min_context

    def block_size(self, grid: tuple[int, int, int], gen: torch.Generator) -> tuple[int, int, int]:
        """One (t, h, w) block size for the batch."""
        t, h, w = grid
        u = torch.rand(3, generator=gen).tolist()
        s = self.spec
        scale = s.spatial_scale[0] + u[0] * (s.spatial_scale[1] - s.spatial_scale[0])
        tscale = s.temporal_scale[0] + u[1] * (s.temporal_scale[1] - s.temporal_scale[0])
        log_ar = math.log(s.aspect_ratio[0]) + u[2] * (math.log(s.aspect_ratio[1]) - math.log(s.aspect_ratio[0]))
        ar = math.exp(log_ar)
        area = scale * h * w
        bh = min(h, max(1, round(math.sqrt(area * ar))))
        bw = min(w, max(1, round(math.sqrt(area / ar))))
        bt = min(t, max(1, round(tscale * t)))
        if (bt, bh, bw) == (t, h, w):  # a block of the whole clip would leave no context
            if t > 1:
                bt -= 1
            elif h > 1:
                bh -= 1
            elif w > 1:
                bw -= 1
        return bt, bh, bw

    def target_mask(
        self,
        batch: int,
        grid: tuple[int, int, int],
        gen: torch.Generator,
        device: torch.device | str = "cpu",
        size: tuple[int, int, int] | None = None,
    ) -> torch.Tensor:
        """Boolean target masks [B, t*h*w] (True = predicted token); ``size`` fixes the block size."""
        t, h, w = grid
        bt, bh, bw = size if size is not None else self.block_size(grid, gen)
        mask = torch.zeros(batch, t, h, w, dtype=torch.bool, device=device)
        todo = torch.arange(batch)
        for _ in range(100):
            n, k = len(todo), self.spec.num_blocks
            t0 = torch.randint(0, t - bt + 1, (n, k, 1, 1, 1), generator=gen).to(device)
            y0 = torch.randint(0, h - bh + 1, (n, k, 1, 1, 1), generator=gen).to(device)
            x0 = torch.randint(0, w - bw + 1, (n, k, 1, 1, 1), generator=gen).to(device)
            tt = torch.arange(t, device=device)[None, None, :, None, None]
            yy = torch.arange(h, device=device)[None, None, None, :, None]
            xx = torch.arange(w, device=device)[None, None, None, None, :]
            inside = (tt >= t0) & (tt < t0 + bt) & (yy >= y0) & (yy < y0 + bh) & (xx >= x0) & (xx < x0 + bw)
            m = inside.any(1)  # [n, t, h, w]: union of the clip's blocks
            mask[todo.to(device)] = m
            ok = (~m).flatten(1).sum(1) >= min(self.min_context, t * h * w - bt * bh * bw)
            todo = todo[~ok.cpu()]
            if len(todo) == 0:
                return mask.flatten(1)
        raise RuntimeError(
            f"could not leave {self.min_context} context tokens with {self.spec} on grid {grid}; "
            "lower num_blocks or spatial_scale"
        )

    def __call__(
        self, batch: int, grid: tuple[int, int, int], gen: torch.Generator, device: torch.device | str = "cpu"
    ) -> MaskSet:
        return mask_set(self.target_mask(batch, grid, gen, device))

    def keyed(
        self, keys: Sequence[int], grid: tuple[int, int, int], batch_seed: int, device: torch.device | str = "cpu"
    ) -> MaskSet:
        """Masks that are a function of each clip's key alone (and of ``batch_seed``, which draws
        the batch's block size): the same clip gets the same mask however the global batch is
        split over processes. One small generator per clip, so slower than ``__call__``."""
        size = self.block_size(grid, torch.Generator().manual_seed(batch_seed))
        rows = [
            self.target_mask(1, grid, torch.Generator().manual_seed(mix_seed(batch_seed, k)), device, size)
            for k in keys
        ]
        return mask_set(torch.cat(rows))


def mask_set(target: torch.Tensor) -> MaskSet:
    """Padded context / target index lists of boolean target masks [B, N]."""
    ctx_ids, ctx_mask = mask_to_ids(~target)
    tgt_ids, tgt_mask = mask_to_ids(target)
    return MaskSet(ctx_ids, ctx_mask, tgt_ids, tgt_mask)
