"""Multiblock 3D masks: index lists, coverage, block sizes, determinism and spatial uniformity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jepa.masks import (
    LONG_RANGE,
    SHORT_RANGE,
    MaskSet,
    MaskSpec,
    MultiBlockMaskSampler,
    mask_to_ids,
)

GRID = (8, 14, 14)  # V-JEPA: 16 frames / tubelet 2, 224 / 16


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def valid_ids(ids: torch.Tensor, mask: torch.Tensor, b: int) -> list[int]:
    return ids[b][mask[b]].tolist()


# ----------------------------------------------------------------------------- mask_to_ids


def test_mask_to_ids_matches_nonzero() -> None:
    g = gen(1)
    mask = torch.rand(5, 37, generator=g) < torch.tensor([0.1, 0.5, 0.9, 0.0, 1.0])[:, None]
    ids, valid = mask_to_ids(mask)
    counts = [int(r.sum()) for r in mask]
    assert ids.shape == valid.shape == (5, max(counts))
    assert ids.dtype == torch.long and valid.dtype == torch.bool
    for b in range(5):
        want = [i for i in range(37) if mask[b, i]]
        assert valid[b].tolist() == [j < counts[b] for j in range(max(counts))]
        assert ids[b, : counts[b]].tolist() == want
        assert all(0 <= i < 37 for i in ids[b].tolist())  # padding still indexes real tokens


def test_mask_to_ids_edge_cases() -> None:
    ids, valid = mask_to_ids(torch.zeros(2, 6, dtype=torch.bool))
    assert ids.shape == valid.shape == (2, 0)
    ids, valid = mask_to_ids(torch.tensor([[False, True, False, True]]))
    assert ids.tolist() == [[1, 3]] and valid.all()


# ----------------------------------------------------------------------------- partition


def check_partition(ms: MaskSet, n_tokens: int, min_context: int = 0) -> None:
    b = ms.context_ids.shape[0]
    assert ms.context_ids.shape == ms.context_mask.shape and ms.target_ids.shape == ms.target_mask.shape
    for i in range(b):
        ctx, tgt = valid_ids(ms.context_ids, ms.context_mask, i), valid_ids(ms.target_ids, ms.target_mask, i)
        assert len(set(ctx)) == len(ctx) and len(set(tgt)) == len(tgt)  # no duplicates
        assert not set(ctx) & set(tgt)
        assert sorted(ctx + tgt) == list(range(n_tokens))  # every token exactly once
        assert ctx == sorted(ctx) and tgt == sorted(tgt)
        assert len(ctx) >= min_context and len(tgt) > 0
    # lists are padded to the batch maximum, not further
    assert int(ms.context_mask.sum(1).max()) == ms.context_mask.shape[1]
    assert int(ms.target_mask.sum(1).max()) == ms.target_mask.shape[1]


@pytest.mark.parametrize(
    "spec",
    [SHORT_RANGE, LONG_RANGE, MaskSpec(3, (0.1, 0.4), (0.3, 0.8), (0.5, 2.0))],
    ids=["short", "long", "partial_time"],
)
def test_every_token_exactly_once(spec: MaskSpec) -> None:
    sampler = MultiBlockMaskSampler(spec, min_context=4)
    g = gen(0)
    for _ in range(5):
        ms = sampler(6, GRID, g)
        check_partition(ms, math.prod(GRID), min_context=4)


def test_fractions_match_counts() -> None:
    ms = MultiBlockMaskSampler(SHORT_RANGE)(7, GRID, gen(2))
    n_ctx, n_tgt = int(ms.context_mask.sum()), int(ms.target_mask.sum())
    assert n_ctx + n_tgt == 7 * math.prod(GRID)
    assert ms.context_fraction == pytest.approx(n_ctx / (n_ctx + n_tgt))
    assert ms.target_fraction == pytest.approx(n_tgt / (n_ctx + n_tgt))
    assert ms.context_fraction + ms.target_fraction == pytest.approx(1.0)
    total = ms.context_mask.numel() + ms.target_mask.numel()
    assert ms.padding_fraction == pytest.approx(1 - (n_ctx + n_tgt) / total)


# ----------------------------------------------------------------------------- block size


@pytest.mark.parametrize("scale", [0.15, 0.4, 0.7])
def test_single_full_time_block_covers_spatial_scale(scale: float) -> None:
    t, h, w = GRID
    ar_lo, ar_hi = 0.75, 1.5
    sampler = MultiBlockMaskSampler(MaskSpec(1, (scale, scale), (1.0, 1.0), (ar_lo, ar_hi)), min_context=0)
    area = scale * h * w
    # |round(a) round(b) - ab| <= (a + b) / 2 + 1/4 with a = sqrt(area ar), b = sqrt(area / ar)
    worst = max(math.sqrt(area * r) + math.sqrt(area / r) for r in (ar_lo, ar_hi))
    tol = (worst / 2 + 0.25) / (h * w)
    g = gen(3)
    for _ in range(10):
        target = sampler.target_mask(4, GRID, g).reshape(4, t, h, w)
        for clip in target:
            frac = float(clip.float().mean())
            assert abs(frac - scale) <= tol
            # one box spanning every time step: all frames identical, a full rectangle
            assert (clip == clip[0]).all()
            rows, cols = clip[0].any(1).nonzero(), clip[0].any(0).nonzero()
            bh, bw = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
            assert int(clip[0].sum()) == bh * bw
            # h = round(sqrt(area ar)), w = round(sqrt(area / ar)) for one ar in the range
            lo = max(ar_lo, (bh - 0.5) ** 2 / area, area / (bw + 0.5) ** 2)
            hi = min(ar_hi, (bh + 0.5) ** 2 / area, area / (bw - 0.5) ** 2)
            assert lo <= hi, (bh, bw, area)
        assert float(target.float().mean()) == pytest.approx(float(target[0].float().mean()))  # one size per batch


def test_temporal_scale_gives_block_length() -> None:
    t = GRID[0]
    sampler = MultiBlockMaskSampler(MaskSpec(1, (0.2, 0.2), (0.5, 0.5), (1.0, 1.0)), min_context=0)
    target = sampler.target_mask(8, GRID, gen(4)).reshape(8, *GRID)
    for clip in target:
        steps = clip.flatten(1).any(1).nonzero().flatten().tolist()
        assert len(steps) == round(0.5 * t) and steps == list(range(steps[0], steps[0] + len(steps)))


def test_temporal_mask_is_whole_frames_and_never_the_whole_clip() -> None:
    """spatial_scale 1: runs of whole frames are targets, the other time steps are the context;
    a run that would round up to the whole clip (0.75 of 2 steps) keeps one step as context."""
    for grid, tscale, steps in (((4, 8, 8), 0.5, 2), ((4, 8, 8), 0.75, 3), ((2, 4, 4), 0.75, 1), ((1, 4, 4), 1.0, 1)):
        sampler = MultiBlockMaskSampler(MaskSpec(1, (1.0, 1.0), (tscale, tscale), (1.0, 1.0)), min_context=4)
        ms = sampler(16, grid, gen(1))
        check_partition(ms, math.prod(grid), min_context=1)
        target = torch.zeros(16, math.prod(grid), dtype=torch.bool)
        target.scatter_(1, ms.target_ids, ms.target_mask)
        per_step = target.reshape(16, grid[0], -1)
        if grid[0] > 1:  # whole frames: each time step is all target or all context
            assert bool((per_step.all(2) | ~per_step.any(2)).all())
            assert per_step.all(2).sum(1).tolist() == [steps] * 16
        assert int(ms.context_mask.sum(1).min()) >= 1


# ----------------------------------------------------------------------------- min_context, determinism, device


def test_min_context_respected() -> None:
    grid = (2, 6, 6)
    sampler = MultiBlockMaskSampler(MaskSpec(4, (0.5, 0.5), (1.0, 1.0), (0.75, 1.5)), min_context=20)
    g = gen(5)
    for _ in range(10):
        ms = sampler(8, grid, g)
        assert int(ms.context_mask.sum(1).min()) >= 20
        check_partition(ms, math.prod(grid), min_context=20)


def test_min_context_impossible_raises() -> None:
    # 16 blocks of 2x2 on a 4x4 frame practically never leave 10 tokens uncovered
    sampler = MultiBlockMaskSampler(MaskSpec(16, (0.25, 0.25), (1.0, 1.0), (1.0, 1.0)), min_context=10)
    with pytest.raises(RuntimeError, match="context tokens"):
        sampler(4, (1, 4, 4), gen(0))


def test_deterministic_for_seed_and_device_argument() -> None:
    sampler = MultiBlockMaskSampler(SHORT_RANGE)
    a = sampler(4, GRID, gen(7))
    b = sampler(4, GRID, gen(7), device="cpu")
    c = sampler(4, GRID, gen(7), device=torch.device("cpu"))
    d = sampler(4, GRID, gen(8))
    for x in (b, c):
        for f in ("context_ids", "context_mask", "target_ids", "target_mask"):
            assert torch.equal(getattr(a, f), getattr(x, f))
            assert getattr(x, f).device.type == "cpu"
    assert not torch.equal(a.target_mask.sum(1), d.target_mask.sum(1)) or not torch.equal(a.target_ids, d.target_ids)


# ----------------------------------------------------------------------------- uniformity


def histograms(sampler, grid, batches: int, batch: int, seed: int) -> dict[str, np.ndarray]:
    """How often each time step / row / column occurs among the *valid* context and target ids."""
    t, h, w = grid
    out = {f"{k}_{a}": np.zeros(n) for k in ("ctx", "tgt") for a, n in (("t", t), ("r", h), ("c", w))}
    g = gen(seed)
    for _ in range(batches):
        ms = sampler(batch, grid, g)
        for k, ids, mask in (("ctx", ms.context_ids, ms.context_mask), ("tgt", ms.target_ids, ms.target_mask)):
            v = ids[mask].numpy()
            out[f"{k}_t"] += np.bincount(v // (h * w), minlength=t)
            out[f"{k}_r"] += np.bincount((v // w) % h, minlength=h)
            out[f"{k}_c"] += np.bincount(v % w, minlength=w)
    return out


def test_no_truncation_over_time() -> None:
    """Nothing is dropped from the end of the id lists: every frame is complete in every clip."""
    t, h, w = GRID
    n = 4 * 8
    hist = histograms(MultiBlockMaskSampler(SHORT_RANGE), GRID, 4, 8, seed=11)
    np.testing.assert_array_equal(hist["ctx_t"] + hist["tgt_t"], n * h * w)
    np.testing.assert_array_equal(hist["ctx_r"] + hist["tgt_r"], n * t * w)
    np.testing.assert_array_equal(hist["ctx_c"] + hist["tgt_c"], n * t * h)
    # full-temporal blocks: every time step is a target equally often (exactly)
    np.testing.assert_array_equal(hist["tgt_t"], np.full(t, hist["tgt_t"][0]))


def test_no_spatial_bias_rows_and_columns() -> None:
    """Targets hit the bottom rows / right columns as often as the top rows / left columns."""
    grid = (2, 14, 14)  # same frame as GRID, fewer time steps (all identical with full-time blocks)
    t, h, w = grid
    n = 32 * 32  # 32 block sizes x 32 clips
    hist = histograms(MultiBlockMaskSampler(SHORT_RANGE), grid, 32, 32, seed=11)
    row_freq = hist["tgt_r"] / (n * t * w)
    col_freq = hist["tgt_c"] / (n * t * h)
    np.testing.assert_allclose(row_freq, row_freq[::-1], atol=0.05)
    np.testing.assert_allclose(col_freq, col_freq[::-1], atol=0.05)
    assert abs(row_freq[-3:].mean() - row_freq[:3].mean()) < 0.03
    assert abs(col_freq[-3:].mean() - col_freq[:3].mean()) < 0.03
    assert row_freq[-1] > 0.15 and col_freq[-1] > 0.15  # the last row / column do get predicted


def test_partial_time_blocks_symmetric_in_time() -> None:
    grid = (8, 6, 6)
    t, h, w = grid
    spec = MaskSpec(2, (0.3, 0.3), (0.25, 0.5), (0.75, 1.5))
    hist = histograms(MultiBlockMaskSampler(spec), grid, 64, 16, seed=12)
    freq = hist["tgt_t"] / (64 * 16 * h * w)
    # uniform start times: first and last frames are targets equally often (edges less than the middle)
    np.testing.assert_allclose(freq, freq[::-1], atol=0.04)
    assert freq[-1] > 0.05 and freq[0] > 0.05


# ----------------------------------------------------------------------------- V-JEPA defaults


def monte_carlo_union(spec: MaskSpec, grid: tuple[int, int, int], n: int, seed: int) -> float:
    """Expected target fraction of full-clip blocks, sampled independently of the sampler:
    scale and log-aspect uniform, block h = round(sqrt(s hw ar)), w = round(sqrt(s hw / ar)),
    top-left corners uniform over the positions where the block fits."""
    _, h, w = grid
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(n):
        s = rng.uniform(*spec.spatial_scale)
        ar = math.exp(rng.uniform(math.log(spec.aspect_ratio[0]), math.log(spec.aspect_ratio[1])))
        bh = min(h, max(1, round(math.sqrt(s * h * w * ar))))
        bw = min(w, max(1, round(math.sqrt(s * h * w / ar))))
        cover = np.zeros((h, w), bool)
        for _ in range(spec.num_blocks):
            y, x = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
            cover[y : y + bh, x : x + bw] = True
        total += cover.mean()
    return total / n


def test_vjepa_default_target_fractions() -> None:
    g = gen(13)
    means = {}
    for name, spec in (("short", SHORT_RANGE), ("long", LONG_RANGE)):
        sampler = MultiBlockMaskSampler(spec, min_context=4)
        fr = [sampler(8, GRID, g).target_fraction for _ in range(24)]
        means[name] = float(np.mean(fr))
        expected = monte_carlo_union(spec, GRID, 1000, seed=0)
        assert means[name] == pytest.approx(expected, abs=0.04), (name, means[name], expected)
        assert means[name] > spec.spatial_scale[1]  # a union of several blocks
        assert means[name] < min(1.0, spec.num_blocks * spec.spatial_scale[1])
    assert means["long"] > means["short"]
    assert 0.55 < means["short"] < 0.8 and 0.75 < means["long"] < 0.92
