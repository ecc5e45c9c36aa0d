"""``jepa finetune``: layer-wise learning-rate decay against its definition, the schedule, and an
end-to-end run on generated videos through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from jepa.hub import load_encoder, save_encoder
from jepa.models.vit import VideoViT
from jepa.probe.finetune import FinetuneConfig, lr_factor, param_groups
from jepa.probe.heads import AttentiveHead
from jepa.training.cli import main

TINY = dict(embed_dim=32, depth=3, num_heads=2, patch_size=8, tubelet_size=2, input_size=(4, 32, 32))


def test_layer_decay_scales_each_depth_as_beit_and_mae_define_it() -> None:
    enc = VideoViT(**TINY)
    head = AttentiveHead(32, 5)
    groups = param_groups(enc, head, lr=1e-3, layer_decay=0.5, weight_decay=0.05)
    scale = {}
    decay = {}
    for g in groups:
        for p in g["params"]:
            scale[id(p)], decay[id(p)] = g["lr_scale"], g["weight_decay"]
    named = dict(enc.named_parameters())
    everything = list(enc.parameters()) + list(head.parameters())
    assert sorted(map(id, everything)) == sorted(scale)  # every parameter exactly once
    depth = 3
    assert scale[id(named["patch_embed.proj.weight"])] == 0.5 ** (depth + 1)
    for i in range(depth):  # block i: lr * decay ** (depth - i)
        assert scale[id(named[f"blocks.blocks.{i}.attn.qkv.weight"])] == 0.5 ** (depth - i)
    assert scale[id(named["norm.weight"])] == 1.0 and all(scale[id(p)] == 1.0 for p in head.parameters())
    assert decay[id(named["blocks.blocks.0.attn.qkv.weight"])] == 0.05
    assert decay[id(named["blocks.blocks.0.attn.qkv.bias"])] == 0.0 and decay[id(named["norm.weight"])] == 0.0
    assert decay[id(head.query)] == 0.0
    assert all(math.isclose(g["lr"], 1e-3 * g["lr_scale"]) for g in groups)


def test_schedule_warms_up_linearly_then_decays_by_cosine() -> None:
    total, warmup = 100, 10
    assert lr_factor(0, total, warmup) == pytest.approx(0.1) and lr_factor(9, total, warmup) == pytest.approx(1.0)
    assert lr_factor(55, total, warmup) == pytest.approx(0.5)  # halfway through the cosine
    assert lr_factor(99, total, warmup) < 0.01
    with pytest.raises(ValueError, match="layer_decay = 1.5 is out of range"):
        FinetuneConfig(layer_decay=1.5)


def test_jepa_finetune_trains_the_encoder_and_reports_val_and_test(synth_dir: Path, tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    enc_file = save_encoder(VideoViT(**TINY).eval(), tmp_path / "enc.pt", meta={"data": {"frame_step": 2}})
    out = tmp_path / "ft"
    args = ["finetune", "--encoder", str(enc_file), "--train", str(synth_dir / "train.csv"), "--val",
            str(synth_dir / "val.csv"), "--test", str(synth_dir / "val.csv"), "--target", "direction",
            "--epochs", "2", "--batch-size", "4", "--seeds", "2", "--out", str(out), "--num-workers", "0",
            "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| val |" in printed and "| test |" in printed
    report = json.loads((out / "finetune.json").read_text())
    assert len(report["runs"]) == 2 and report["num_classes"] == 8
    assert all(0 <= v <= 100 for v in report["top1"]["val"]["values"])
    assert all(len(r["loss_curve"]) == 2 and all(math.isfinite(x) for x in r["loss_curve"]) for r in report["runs"])
    tuned, before = load_encoder(out / "encoder.safetensors"), load_encoder(enc_file)
    for name in ("patch_embed.proj.weight", "blocks.blocks.2.attn.qkv.weight"):  # the encoder itself trained
        assert not torch.equal(tuned.state_dict()[name], before.state_dict()[name])
    assert "query" in torch.load(out / "head.pt", weights_only=True)
    assert main(args) != 0  # never over an earlier run without --overwrite
    assert "already holds a fine-tuning run; pass --overwrite" in capsys.readouterr().err
    bad = ["finetune", "--encoder", str(enc_file), "--train", str(synth_dir / "train.csv"), "--val",
           str(synth_dir / "val.csv"), "--target", "nope", "--num-workers", "0"]
    assert main(bad) != 0
    err = capsys.readouterr().err.strip()
    assert "--target 'nope' is not a column" in err and len(err.splitlines()) == 1


def test_random_init_trains_a_fresh_twin_from_the_same_recipe(synth_dir: Path, tmp_path: Path) -> None:
    from jepa.probe.run import random_twin

    torch.manual_seed(123)  # not the twin's seed: the 'pretrained' weights differ from any seed-0 init
    enc_file = save_encoder(VideoViT(**TINY).eval(), tmp_path / "enc.pt", meta={"data": {"frame_step": 2}})
    out = tmp_path / "scratch"
    assert main(["finetune", "--encoder", str(enc_file), "--train", str(synth_dir / "train.csv"), "--val",
                 str(synth_dir / "val.csv"), "--target", "direction", "--epochs", "1", "--batch-size", "8",
                 "--lr", "1e-12", "--random-init", "--out", str(out), "--num-workers", "0", "--no-progress",
                 "--device", "cpu"]) == 0
    report = json.loads((out / "finetune.json").read_text())
    assert report["init"] == "random" and "from scratch" in (out / "finetune.md").read_text()
    start, pretrained = load_encoder(out / "encoder.safetensors").state_dict(), load_encoder(enc_file)
    fresh = random_twin(pretrained, 0).state_dict()
    name = "blocks.blocks.1.attn.qkv.weight"
    assert torch.allclose(start[name], fresh[name], atol=1e-6)  # at lr ~0: the seed-0 twin it started from
    assert not torch.allclose(start[name], pretrained.state_dict()[name], atol=1e-3)
