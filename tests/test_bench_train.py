"""``jepa bench train``: sane rates on a shrunken quickstart, FLOPs scale with the batch, attention is counted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from jepa import bench_train
from jepa.benchmarks.train import count_flops, load_recipe, parse_overrides, run_train_benchmark

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "quickstart.yaml")
SMALL = ["encoder=vit_pico", "crop_size=32"]


def test_benchmark_reports_positive_rates_and_flops_scale_with_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    r2 = run_train_benchmark(QUICKSTART, steps=2, warmup=1, batch_size=2, overrides=SMALL, print_fn=lines.append)
    for key in ("clips_per_s", "step_s", "flops_per_step", "achieved_flops", "peak_flops", "mfu"):
        assert math.isfinite(r2[key]) and r2[key] > 0, key
    assert 0 < r2["mfu"] < 1.5
    assert r2["batch_size"] == 2 and r2["tokens"] == 4 * 4 * 4
    assert any("MFU" in line for line in lines) and any("vit_pico" in line for line in lines)
    monkeypatch.setattr(bench_train, "matmul_peak", lambda *a, **k: r2["peak_flops"])  # measured once
    r4 = run_train_benchmark(QUICKSTART, steps=1, warmup=0, overrides=[*SMALL, "batch_size=4"], print_fn=lines.append)
    assert r4["batch_size"] == 4
    assert 1.6 <= r4["flops_per_step"] / r2["flops_per_step"] <= 2.4


def test_flop_counter_counts_attention_on_cpu() -> None:
    q, k, v = (torch.randn(2, 3, 64, 32, requires_grad=True) for _ in range(3))
    valid = torch.ones(2, 1, 1, 64, dtype=torch.bool)
    valid[0, ..., -5:] = False
    for mask in (None, valid):
        with count_flops() as fc:
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
        fwd = 2 * (2 * 2 * 3 * 64 * 64 * 32)  # q @ k^T and p @ v
        assert fc.get_total_flops() == fwd + 2.5 * fwd  # backward: 5 matmuls of the same size


def test_overrides_set_model_args_and_input() -> None:
    args, size, batch, clip = load_recipe(
        QUICKSTART, ["encoder=vit_nano", "patch_size=16", "num_frames=16", "crop_size=96", "batch_size=32"]
    )
    assert args["encoder"] == "vit_nano" and args["patch_size"] == 16
    assert size == (16, 96, 96) and batch == 32 and clip == 1.0
    assert load_recipe(QUICKSTART, batch_size=3)[2] == 3
    assert parse_overrides(["masks=[{num_blocks: 1}]"]) == {"masks": [{"num_blocks": 1}]}


def test_unknown_override_key_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'encoder_depth'"):
        run_train_benchmark(QUICKSTART, overrides=["encoder_depth=3"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["vit_tiny"])


def test_build_train_step_applies_a_full_step() -> None:
    """The step tools/step_vs_vjepa2.py times beside V-JEPA 2's: parameters and the EMA move."""
    from jepa.benchmarks.train import build_train_step

    step, model = build_train_step({"encoder": "vit_pico", "patch_size": 16, "tubelet_size": 2, "predictor_depth": 1},
                                   (4, 32, 32), 2)
    assert model.encoder is not None and model.target_encoder is not None
    before = [p.detach().clone() for p in model.encoder.parameters()]
    target_before = next(iter(model.target_encoder.parameters())).detach().clone()
    step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.encoder.parameters(), strict=True))
    assert not torch.equal(target_before, next(iter(model.target_encoder.parameters())))


def test_step_vs_vjepa2_names_a_wrong_checkout(tmp_path: Path) -> None:
    import subprocess
    import sys

    tool = Path(__file__).resolve().parents[1] / "tools" / "step_vs_vjepa2.py"
    r = subprocess.run([sys.executable, str(tool), "--vjepa2", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and str(tmp_path) in r.stderr and "Traceback" not in r.stderr
