"""Prediction loss, VICReg variance / covariance terms (single process and 2-rank gloo), RankMe."""

from __future__ import annotations

import math
import os

import pytest
import torch
from gloo import run_gloo

from jepa.objectives import (
    covariance_loss,
    effective_rank,
    prediction_loss,
    variance_loss,
    vicreg_terms,
)

# ----------------------------------------------------------------------------- references


def ref_prediction_loss(pred, target, mask, kind):
    """Mean over valid tokens of the mean over channels of the elementwise distance."""
    diff = pred.double() - target.double()
    if kind == "l1":
        err = diff.abs()
    elif kind == "l2":
        err = diff**2
    else:  # Huber with beta = 1: 0.5 x^2 if |x| < 1 else |x| - 0.5
        err = torch.where(diff.abs() < 1, 0.5 * diff**2, diff.abs() - 0.5)
    b, n, _ = pred.shape
    total, count = 0.0, 0
    for i in range(b):
        for j in range(n):
            if mask is None or mask[i, j]:
                total += float(err[i, j].mean())
                count += 1
    return total / max(count, 1)


def ref_moments(z: torch.Tensor):
    n = z.shape[0]
    mean = z.sum(0) / n
    zc = z - mean
    cov = zc.T @ zc / (n - 1)  # C(Z) = 1/(n-1) sum_i (z_i - zbar)(z_i - zbar)^T
    return zc, cov


def ref_variance(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """v(Z) = 1/d sum_j max(0, gamma - sqrt(Var(z_j) + eps)), unbiased variance."""
    n, d = z.shape
    zc, _ = ref_moments(z)
    var = (zc**2).sum(0) / (n - 1)
    return torch.clamp(gamma - torch.sqrt(var + eps), min=0).sum() / d


def ref_covariance(z: torch.Tensor) -> torch.Tensor:
    """c(Z) = 1/d sum_{i != j} C(Z)_ij^2."""
    d = z.shape[1]
    _, cov = ref_moments(z)
    off = cov * (1 - torch.eye(d, dtype=z.dtype))
    return (off**2).sum() / d


def embeddings(n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Rows with per-dimension stds straddling gamma = 1 and some correlated dimensions."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 6, generator=g, dtype=torch.float64) * torch.tensor([0.2, 0.5, 0.9, 1.5, 3.0, 0.05], dtype=torch.float64)
    z[:, 1] += 0.7 * z[:, 0]
    z[:, 4] -= 0.3 * z[:, 3]
    return (z + 0.4).to(dtype)


# ----------------------------------------------------------------------------- prediction loss


@pytest.mark.parametrize("kind", ["l1", "l2", "smooth_l1"])
def test_prediction_loss_matches_manual(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    pred = 2 * torch.randn(3, 5, 4, generator=g)  # |diff| on both sides of the Huber knee
    target = torch.randn(3, 5, 4, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    padded = pred.clone()
    padded[~mask] = 1e6  # padded entries must not matter
    got = prediction_loss(padded, target, mask, kind)
    assert float(got) == pytest.approx(ref_prediction_loss(pred, target, mask, kind), rel=1e-5)
    unmasked = prediction_loss(pred, target, None, kind)
    assert float(unmasked) == pytest.approx(ref_prediction_loss(pred, target, None, kind), rel=1e-5)


def test_prediction_loss_edge_cases() -> None:
    pred = torch.randn(2, 3, 4, requires_grad=True)
    target = torch.randn(2, 3, 4)
    empty = prediction_loss(pred, target, torch.zeros(2, 3, dtype=torch.bool))
    assert float(empty.detach()) == 0.0
    empty.backward()
    assert torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match="huber"):
        prediction_loss(pred, target, None, "huber")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- VICReg


def test_vicreg_values_match_paper_equations() -> None:
    z = embeddings(40)
    v_ref, c_ref = ref_variance(z), ref_covariance(z)
    assert 0 < float(v_ref) < 1 and float(c_ref) > 0.01  # both terms are active on this data
    torch.testing.assert_close(variance_loss(z), v_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(covariance_loss(z), c_ref, rtol=1e-10, atol=1e-12)
    v, c = vicreg_terms(z)
    torch.testing.assert_close(v, v_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c, c_ref, rtol=1e-10, atol=1e-12)
    # gamma / eps are honoured
    torch.testing.assert_close(variance_loss(z, gamma=2.0, eps=0.1), ref_variance(z, 2.0, 0.1))
    torch.testing.assert_close(vicreg_terms(z, gamma=2.0, eps=0.1)[0], ref_variance(z, 2.0, 0.1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_vicreg_low_precision_inputs_computed_in_fp32(dtype) -> None:
    z = embeddings(40, dtype=dtype)
    v, c = vicreg_terms(z)
    assert v.dtype == c.dtype == torch.float32
    z64 = z.double()
    torch.testing.assert_close(v.double(), ref_variance(z64), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c.double(), ref_covariance(z64), rtol=1e-5, atol=1e-6)


def test_vicreg_variance_zero_when_spread() -> None:
    z = embeddings(40)[:, 3:5].clone().requires_grad_(True)  # stds 1.5 and 3 > gamma
    v = variance_loss(z)
    assert float(v.detach()) == 0.0
    v.backward()
    assert float(z.grad.abs().max()) == 0.0


def test_vicreg_gradients_match_reference() -> None:
    z = embeddings(25, seed=1)
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    v, c = vicreg_terms(a)
    (v + 0.3 * c).backward()
    (ref_variance(b) + 0.3 * ref_covariance(b)).backward()
    assert float(a.grad.abs().max()) > 0
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)
    for fn, ref in ((variance_loss, ref_variance), (covariance_loss, ref_covariance)):
        a.grad = b.grad = None
        fn(a).backward()
        ref(b).backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)


def test_vicreg_gradcheck() -> None:
    z = embeddings(7, seed=2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: vicreg_terms(x), (z,))
    assert torch.autograd.gradcheck(variance_loss, (z,))
    assert torch.autograd.gradcheck(covariance_loss, (z,))


# ----------------------------------------------------------------------------- RankMe


def test_effective_rank_known_matrices() -> None:
    d = 8
    assert effective_rank(torch.eye(d)) == pytest.approx(d, rel=1e-4)
    assert effective_rank(5 * torch.eye(d)) == pytest.approx(d, rel=1e-4)  # scale invariant
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(20, 1, generator=g), torch.randn(1, d, generator=g)
    assert effective_rank(u @ v) == pytest.approx(1.0, abs=1e-3)
    # singular values (2, 1, 1): p = (1/2, 1/4, 1/4), exp(H) = exp(1.5 ln 2) = 2^1.5
    q, _ = torch.linalg.qr(torch.randn(10, 3, generator=g, dtype=torch.float64))
    r, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    m = q @ torch.diag(torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)) @ r.T
    assert effective_rank(m) == pytest.approx(2**1.5, rel=1e-4)
    assert effective_rank(torch.randn(200, 6, generator=g)) > 5.0


# ----------------------------------------------------------------------------- 2-rank gloo


def _ddp_worker(rank: int, shards: list[torch.Tensor], out_dir: str) -> None:
    z = shards[rank].clone().requires_grad_(True)
    v, c = vicreg_terms(z)
    (v + 0.3 * c).backward()
    out = {"v": v.detach(), "c": c.detach(), "grad": z.grad.clone()}
    out["v_only"] = variance_loss(z).detach()
    out["c_only"] = covariance_loss(z).detach()
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))


def test_vicreg_two_rank_gloo_matches_concatenation(tmp_path) -> None:
    world = 2
    full = embeddings(17, seed=3)
    shards = [full[:5].clone(), full[5:].clone()]  # different row counts per rank
    run_gloo(_ddp_worker, world, shards, str(tmp_path))
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]

    z = full.clone().requires_grad_(True)
    v_ref, c_ref = ref_variance(z), ref_covariance(z)
    (v_ref + 0.3 * c_ref).backward()
    ref_grads = [z.grad[:5], z.grad[5:]]
    for r in range(world):
        for key, want in (("v", v_ref), ("v_only", v_ref), ("c", c_ref), ("c_only", c_ref)):
            torch.testing.assert_close(res[r][key], want.detach(), rtol=1e-10, atol=1e-12, msg=f"rank {r} {key}")
        # The all_reduce backward sums the (identical) upstream gradients of both ranks, so each
        # rank's gradient w.r.t. its own rows is world * d(global loss)/d(its rows); DDP's
        # 1/world averaging of parameter gradients then yields exactly the global gradient.
        torch.testing.assert_close(res[r]["grad"], world * ref_grads[r], rtol=1e-9, atol=1e-12, msg=f"rank {r}")
    assert math.isclose(float(res[0]["v"]), float(res[1]["v"]))
