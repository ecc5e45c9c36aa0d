"""Regularisers as parts: SIGReg against references written from LeJEPA's equations (values,
quadrature, gradients), VICReg / SIGReg objects (groups, specs, expander), and both exact under a
2-rank gloo process group (values and gradients equal to one process over the whole batch)."""

from __future__ import annotations

import math
import os

import pytest
import torch
from gloo import run_gloo

from jepa.objectives import (
    SIGReg,
    VICReg,
    build_regularizer,
    epps_pulley,
    epps_pulley_quadrature,
    random_directions,
    sigreg,
    vicreg_terms,
)

# ----------------------------------------------------------------------------- references


def ref_ecf(x: torch.Tensor, t: float) -> complex:
    """phi_N(t) = 1/N sum_j exp(i t x_j), in complex128."""
    return complex(torch.exp(1j * t * x.to(torch.complex128)).mean())


def ref_ep_integral(x: torch.Tensor, lo: float = -12.0, hi: float = 12.0, points: int = 24001) -> float:
    """N * integral |phi_N(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt, by a dense trapezoid over [lo, hi]
    (the integrand is negligible outside)."""
    t = torch.linspace(lo, hi, points, dtype=torch.float64)
    ecf = torch.exp(1j * t[:, None] * x.double()[None, :]).mean(1)
    integrand = (ecf - torch.exp(-t**2 / 2)).abs() ** 2 * torch.exp(-t**2 / 2)
    return float(x.shape[0] * torch.trapezoid(integrand, t))


def ref_ep_closed_form(x: torch.Tensor) -> float:
    """The same integral in closed form (Epps & Pulley 1983, Gaussian weight):
    sqrt(2 pi)/N sum_jk exp(-(x_j - x_k)^2/2) - 2 sqrt(pi) sum_j exp(-x_j^2/4) + N sqrt(2 pi/3)."""
    x = x.double()
    n = x.shape[0]
    pair = torch.exp(-((x[:, None] - x[None, :]) ** 2) / 2).sum()
    return float(math.sqrt(2 * math.pi) / n * pair - 2 * math.sqrt(math.pi) * torch.exp(-(x**2) / 4).sum()
                 + n * math.sqrt(2 * math.pi / 3))


def ref_sigreg(z: torch.Tensor, a: torch.Tensor, knots: int = 17, t_max: float = 3.0) -> torch.Tensor:
    """LeJEPA's SIGReg written out: mean over directions of N * sum_k w_k |phi_N(t_k) - phi(t_k)|^2,
    w_k = 2 x trapezoid weight x exp(-t_k^2/2) on [0, t_max]; complex arithmetic, float64."""
    dt = t_max / (knots - 1)
    stats = []
    for m in range(a.shape[1]):
        x = z.double() @ a[:, m].double()
        n = x.shape[0]
        total = 0.0
        for k in range(knots):
            t = k * dt
            trap = dt / 2 if k in (0, knots - 1) else dt
            ecf = torch.exp(1j * t * x.to(torch.complex128)).mean()
            total = total + 2 * trap * math.exp(-t * t / 2) * (ecf - math.exp(-t * t / 2)).abs() ** 2
        stats.append(n * total)
    return torch.stack(stats).mean()


def cloud(n: int, d: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.tensor([0.3, 1.0, 2.0, 0.7, 1.2], dtype=torch.float64)[:d]
    return z + 0.5


# ----------------------------------------------------------------------------- SIGReg maths


def test_closed_form_and_dense_integral_agree() -> None:
    """The two references check each other (a wrong one would not match the other)."""
    for x in (torch.randn(40, generator=torch.Generator().manual_seed(1), dtype=torch.float64),
              torch.full((10,), 0.3, dtype=torch.float64), cloud(30)[:, 2]):
        assert ref_ep_integral(x) == pytest.approx(ref_ep_closed_form(x), rel=1e-6)


def test_quadrature_approximates_the_integral_over_the_real_line() -> None:
    g = torch.Generator().manual_seed(0)
    for x in (torch.randn(64, generator=g, dtype=torch.float64), 0.2 * torch.randn(64, generator=g, dtype=torch.float64) + 1,
              torch.zeros(32, dtype=torch.float64)):
        exact = ref_ep_closed_form(x)
        t, w = epps_pulley_quadrature(17, 3.0, torch.float64)  # LeJEPA's default: ~2% truncation
        assert float(epps_pulley(x[:, None], t, w)[0]) == pytest.approx(exact, rel=0.03)
        t, w = epps_pulley_quadrature(801, 10.0, torch.float64)  # a fine grid: the integral itself
        assert float(epps_pulley(x[:, None], t, w)[0]) == pytest.approx(exact, rel=1e-6)


def test_sigreg_matches_the_written_out_statistic_values_and_gradients() -> None:
    z = cloud(23).requires_grad_(True)
    a = random_directions(5, 7, seed=3, step=11).double()
    got = sigreg(z, a)
    z_ref = z.detach().clone().requires_grad_(True)
    want = ref_sigreg(z_ref, a)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    got.backward()
    want.backward()
    torch.testing.assert_close(z.grad, z_ref.grad, rtol=1e-8, atol=1e-10)
    assert torch.autograd.gradcheck(lambda x: sigreg(x, a), (cloud(9).requires_grad_(True),))


def test_sigreg_is_small_for_a_standard_gaussian_and_large_for_collapse() -> None:
    g = torch.Generator().manual_seed(0)
    a = random_directions(8, 64, seed=0, step=0).double()
    gauss = float(sigreg(torch.randn(512, 8, generator=g, dtype=torch.float64), a))
    collapsed = float(sigreg(torch.zeros(512, 8, dtype=torch.float64), a))
    shrunk = float(sigreg(0.1 * torch.randn(512, 8, generator=g, dtype=torch.float64), a))
    # E[EP] under H0 is integral (1 - phi(t)^2) w(t) dt = sqrt(2 pi) - sqrt(2 pi / 3) ~ 1.06, whatever N
    assert gauss < 2.0 < 0.1 * shrunk and shrunk < collapsed
    # collapse: phi_N = 1 everywhere, so EP = N * sum_k w_k (1 - phi(t_k))^2
    t, w = epps_pulley_quadrature(17, 3.0, torch.float64)
    assert collapsed == pytest.approx(512 * float(((1 - torch.exp(-t**2 / 2)) ** 2 * w).sum()), rel=1e-9)


def test_minimising_sigreg_spreads_a_collapsed_cloud_to_unit_variance() -> None:
    g = torch.Generator().manual_seed(0)
    z = (0.01 * torch.randn(256, 4, generator=g)).requires_grad_(True)
    reg = SIGReg(weight=1.0, num_projections=64)
    opt = torch.optim.Adam([z], lr=0.05)
    for step in range(300):
        opt.zero_grad()
        reg(z, step=step)[0].backward()
        opt.step()
    std = z.detach().std(0)
    assert torch.all((std > 0.8) & (std < 1.2)), std
    assert z.detach().mean(0).abs().max() < 0.2


def test_directions_depend_on_seed_and_step_only() -> None:
    a = random_directions(16, 32, seed=1, step=5)
    torch.testing.assert_close(a, random_directions(16, 32, seed=1, step=5))
    assert not torch.allclose(a, random_directions(16, 32, seed=1, step=6))
    assert not torch.allclose(a, random_directions(16, 32, seed=2, step=5))
    torch.testing.assert_close(a.norm(dim=0), torch.ones(32))
    reg = SIGReg(num_projections=32, seed=1)
    torch.testing.assert_close(reg.directions(16, 5), a)


# ----------------------------------------------------------------------------- the objects


def test_groups_are_averaged_per_group() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 20, 5, generator=g, dtype=torch.float64) * torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)[:, None, None]
    for reg in (VICReg(1.0, 0.3), SIGReg(1.0, num_projections=16)):
        total, terms = reg(z, step=2)
        per = [reg(z[i], step=2) for i in range(3)]
        torch.testing.assert_close(total, torch.stack([p[0] for p in per]).mean())
        for k in terms:
            torch.testing.assert_close(terms[k], torch.stack([p[1][k] for p in per]).mean())


def test_vicreg_object_is_the_weighted_paper_terms() -> None:
    z = cloud(31)
    total, terms = VICReg(var_weight=2.0, cov_weight=0.5)(z)
    v, c = vicreg_terms(z)
    torch.testing.assert_close(terms["var_loss"], v)
    torch.testing.assert_close(terms["cov_loss"], c)
    torch.testing.assert_close(total, 2.0 * v + 0.5 * c)


def test_specs_round_trip_and_bad_specs_name_the_problem() -> None:
    for reg in (VICReg(1.0, 0.2, expander=16), SIGReg(0.1, num_projections=256, knots=9, seed=4)):
        spec = reg.spec()
        again = build_regularizer(spec)
        assert type(again) is type(reg) and again.spec() == spec
        torch.save(spec, "/dev/null")  # plain data
    assert build_regularizer(None) is None
    with pytest.raises(ValueError, match="not_a_module"):
        build_regularizer({"class_path": "not_a_module.Thing"})
    with pytest.raises(ValueError, match="is not a jepa.objectives.Regularizer"):
        build_regularizer({"class_path": "torch.nn.Linear", "init_args": {"in_features": 1, "out_features": 1}})
    with pytest.raises(ValueError, match="knots"):
        SIGReg(knots=1)


def test_expander_sits_between_rows_and_statistics() -> None:
    reg = SIGReg(1.0, num_projections=8, expander=12)
    reg.setup(5)
    z = cloud(10).float()
    _, terms = reg(z, step=0)
    want = sigreg(reg.expander(z), reg.directions(12, 0))
    torch.testing.assert_close(terms["sigreg_loss"], want)


# ----------------------------------------------------------------------------- 2-rank gloo


def _worker(rank: int, shards: list[torch.Tensor], out_dir: str) -> None:
    out = {}
    for name, reg in regularizers().items():
        z = shards[rank].clone().requires_grad_(True)
        total, _ = reg(z, step=7)
        total.backward()
        out[name] = (total.detach(), z.grad.clone())
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))


def regularizers() -> dict[str, torch.nn.Module]:
    return {"vicreg": VICReg(1.0, 0.3), "sigreg": SIGReg(0.5, num_projections=24, seed=2)}


@pytest.mark.parametrize("grouped", [False, True])
def test_two_rank_gloo_equals_one_process_over_the_global_batch(tmp_path, grouped: bool) -> None:
    world = 2
    full = cloud(17, seed=3)
    if grouped:  # [groups, rows, D]: rows split over ranks, as per-time-step statistics are
        full = torch.stack([full, 0.5 * cloud(17, seed=4)])
        shards = [full[:, :5].clone(), full[:, 5:].clone()]
    else:
        shards = [full[:5].clone(), full[5:].clone()]  # different row counts per rank
    run_gloo(_worker, world, shards, str(tmp_path))
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    for name, reg in regularizers().items():
        z = full.clone().requires_grad_(True)
        total, _ = reg(z, step=7)
        total.backward()
        ref_grads = [z.grad[..., :5, :], z.grad[..., 5:, :]]
        for r in range(world):
            value, grad = res[r][name]
            torch.testing.assert_close(value, total.detach(), rtol=1e-10, atol=1e-12, msg=f"{name} rank {r}")
            # world x d(global loss)/d(own rows): DDP's 1/world averaging gives the global gradient
            torch.testing.assert_close(grad, world * ref_grads[r], rtol=1e-8, atol=1e-11, msg=f"{name} rank {r}")
