"""EMA momentum schedule, the EMA target encoder, and the warmup-cosine LR / cosine WD scheduler."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jepa.methods.schedules import WarmupCosineLRWD
from jepa.objectives.targets import TargetEncoder, momentum_at

# ----------------------------------------------------------------------------- momentum


def test_momentum_linear() -> None:
    assert momentum_at(0, 100) == pytest.approx(0.998)
    assert momentum_at(100, 100) == pytest.approx(1.0)
    assert momentum_at(50, 100) == pytest.approx(0.999)
    assert momentum_at(25, 100, 0.99, 1.0) == pytest.approx(0.99 + 0.01 * 0.25)
    assert momentum_at(250, 100) == pytest.approx(1.0)  # clamped past the end
    assert momentum_at(-5, 100) == pytest.approx(0.998)


def test_momentum_cosine() -> None:
    start, end = 0.99, 1.0

    def ref(frac: float) -> float:  # start + (end - start) * (1 - cos(pi f)) / 2
        return start + (end - start) * (1 - math.cos(math.pi * frac)) / 2

    assert momentum_at(0, 80, start, end, "cosine") == pytest.approx(start)
    assert momentum_at(80, 80, start, end, "cosine") == pytest.approx(end)
    assert momentum_at(40, 80, start, end, "cosine") == pytest.approx((start + end) / 2)
    assert momentum_at(20, 80, start, end, "cosine") == pytest.approx(ref(0.25))
    assert momentum_at(20, 80, start, end, "cosine") < momentum_at(20, 80, start, end, "linear")
    assert momentum_at(1000, 80, start, end, "cosine") == pytest.approx(end)
    with pytest.raises(ValueError, match="step"):
        momentum_at(1, 10, kind="step")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- target encoder


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))


def test_target_encoder_update_is_exact_ema() -> None:
    online = small_net()
    target = TargetEncoder(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    online.train()
    online(torch.randn(16, 4))  # moves the BatchNorm running statistics
    before = [p.clone() for p in target.encoder.parameters()]
    src = [p.clone() for p in online.parameters()]
    m = 0.9
    target.update(online, m)
    for old, new, o in zip(before, target.encoder.parameters(), src, strict=True):
        torch.testing.assert_close(new, m * old + (1 - m) * o)
        assert not torch.equal(new, old)
    for p, o in zip(online.parameters(), src, strict=True):
        assert torch.equal(p, o)  # online untouched
    for bt, bs in zip(target.encoder.buffers(), online.buffers(), strict=True):
        assert torch.equal(bt, bs)  # buffers copied
    # m = 1 keeps the target, m = 0 copies the online weights
    keep = [p.clone() for p in target.encoder.parameters()]
    target.update(online, 1.0)
    for a, b in zip(target.encoder.parameters(), keep, strict=True):
        assert torch.equal(a, b)
    target.update(online, 0.0)
    for a, b in zip(target.encoder.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_target_encoder_frozen_and_eval() -> None:
    online = small_net()
    target = TargetEncoder(online)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())  # the copy is independent
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(target.parameters(), online.parameters(), strict=True))
    target.train()
    assert not target.training and not any(m.training for m in target.modules())
    parent = nn.ModuleDict({"online": online, "target": target})
    parent.train()
    assert online.training and not any(m.training for m in target.modules())
    x = torch.randn(5, 4)
    out1, out2 = target(x), target(x)
    assert torch.equal(out1, out2)  # no dropout, running BatchNorm statistics
    assert not out1.requires_grad


def test_target_encoder_mismatch_raises() -> None:
    target = TargetEncoder(small_net())
    with pytest.raises(RuntimeError, match="parameter lists"):
        target.update(nn.Linear(4, 3), 0.5)


# ----------------------------------------------------------------------------- LR / WD schedule


def ref_lr(step: int, total: int, warmup: int, start: float, peak: float, final: float) -> float:
    if step < warmup:
        return start + step / warmup * (peak - start)
    frac = min((step - warmup) / (total - warmup), 1.0)
    return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * frac))


def ref_wd(step: int, total: int, start: float, end: float) -> float:
    frac = min(step / total, 1.0)
    return start + (end - start) * (1 - math.cos(math.pi * frac)) / 2


def make_sched(total: int = 100, warmup: int = 10):
    decay, no_decay, scaled = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW(
        [
            {"params": [decay], "wd_scale": 1.0},
            {"params": [no_decay], "wd_scale": 0.0, "weight_decay": 0.0},
            {"params": [scaled], "wd_scale": 0.5, "lr_scale": 0.1},
        ],
        lr=1.0,
    )
    sched = WarmupCosineLRWD(
        opt, total_steps=total, warmup_steps=warmup, lr=1e-3, start_lr=2e-4, final_lr=1e-6,
        weight_decay=0.04, final_weight_decay=0.4,
    )
    return opt, sched


def advance(opt, sched, n: int) -> None:
    for _ in range(n):
        opt.step()
        sched.step()


def test_lr_wd_schedule_endpoints_and_groups() -> None:
    total, warmup = 100, 10
    opt, sched = make_sched(total, warmup)
    seen = {}
    for step in range(total + 6):
        seen[step] = ([g["lr"] for g in opt.param_groups], [g["weight_decay"] for g in opt.param_groups])
        advance(opt, sched, 1)
    lr = {s: v[0][0] for s, v in seen.items()}
    wd = {s: v[1][0] for s, v in seen.items()}
    assert lr[0] == pytest.approx(2e-4)
    assert lr[5] == pytest.approx((2e-4 + 1e-3) / 2)
    assert lr[warmup] == pytest.approx(1e-3)
    assert max(lr.values()) == pytest.approx(1e-3)
    assert lr[warmup + (total - warmup) // 2] == pytest.approx((1e-3 + 1e-6) / 2)
    assert lr[total] == pytest.approx(1e-6) and lr[total + 5] == pytest.approx(1e-6)
    assert wd[0] == pytest.approx(0.04) and wd[total] == pytest.approx(0.4)
    assert wd[total // 2] == pytest.approx(0.22) and wd[total + 5] == pytest.approx(0.4)
    for step, (lrs, wds) in seen.items():
        assert lrs[0] == pytest.approx(ref_lr(step, total, warmup, 2e-4, 1e-3, 1e-6), rel=1e-9, abs=1e-15)
        assert wds[0] == pytest.approx(ref_wd(step, total, 0.04, 0.4), rel=1e-9)
        assert wds[1] == 0.0  # wd_scale 0 groups never decay
        assert lrs[1] == pytest.approx(lrs[0])
        assert wds[2] == pytest.approx(0.5 * wds[0]) and lrs[2] == pytest.approx(0.1 * lrs[0])
    assert sched.weight_decay == pytest.approx(0.4)


def test_lr_schedule_resumes_from_state_dict() -> None:
    opt, sched = make_sched()
    advance(opt, sched, 37)
    state = sched.state_dict()
    want = [g["lr"] for g in opt.param_groups], [g["weight_decay"] for g in opt.param_groups]
    advance(opt, sched, 5)
    after = [g["lr"] for g in opt.param_groups]

    opt2, sched2 = make_sched()
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 37 and sched2.get_last_lr() == pytest.approx(want[0])
    advance(opt2, sched2, 5)
    assert [g["lr"] for g in opt2.param_groups] == pytest.approx(after)
    assert opt2.param_groups[0]["weight_decay"] == pytest.approx(ref_wd(42, 100, 0.04, 0.4))
