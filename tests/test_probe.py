"""Frozen-encoder probes: heads, metrics, hyper-parameter selection, the feature cache, and
``jepa probe`` end to end on generated videos with a tiny encoder."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from jepa.hub import encoder_meta, save_encoder
from jepa.models.vit import VideoViT
from jepa.probe.features import (
    ClipSpec,
    FeatureCache,
    PixelFeatures,
    crop_boxes,
    extract_features,
    probe_dataset,
)
from jepa.probe.heads import AttentiveHead, LinearHead
from jepa.probe.run import random_twin, run_probe
from jepa.probe.select import run_head
from jepa.probe.train import HeadConfig, Standardizer, score, split_holdout
from jepa.training.cli import main

TINY = dict(embed_dim=32, depth=2, num_heads=2, patch_size=8, tubelet_size=2, input_size=(4, 32, 32))
SPEC = ClipSpec(num_frames=4, frame_step=2, size=32, views=2)
FAST = {
    "linear": HeadConfig("linear", lrs=(1e-2,), weight_decays=(1e-4, 1e-2), epochs=5, batch_size=16),
    "attentive": HeadConfig("attentive", lrs=(3e-3,), weight_decays=(1e-2,), epochs=3, batch_size=16),
}


# ----------------------------------------------------------------------------------------- heads


def test_attentive_pool_matches_textbook_attention() -> None:
    torch.manual_seed(0)
    head = AttentiveHead(48, 5, num_heads=3).double()
    with torch.no_grad():  # non-trivial biases and norms, so every term of the identity is exercised
        for p in head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    tokens = torch.randn(4, 37, 48, dtype=torch.float64)
    torch.testing.assert_close(head.pool(tokens), head.pool_reference(tokens), rtol=1e-10, atol=1e-10)
    out = head(tokens)
    assert out.shape == (4, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in head.parameters())


def _clusters(n: int, dim: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + 0.5 * torch.randn(n, dim, generator=g), y


def test_linear_head_separates_clusters() -> None:
    x, y = _clusters(400, 16, 6, seed=0)
    xv, yv = _clusters(200, 16, 6, seed=1)
    cfg = HeadConfig("linear", lrs=(1e-2,), weight_decays=(1e-4,), epochs=20, batch_size=64)
    res = run_head(cfg, x[:, None] + 5.0, y, xv[:, None] + 5.0, yv, "classification", 6, seeds=[0, 1])
    assert res["mean"] > 98.0, res
    assert "top5" in res["metrics"] and res["metrics"]["top5"]["mean"] == 100.0
    assert isinstance(LinearHead(16, 6).norm, torch.nn.BatchNorm1d) and not LinearHead(16, 6).norm.affine


def test_attentive_head_finds_the_informative_token() -> None:
    """The class lives in one token among noise tokens; a mean pool dilutes it, attention does not."""
    def make(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 4, (n,), generator=g)
        tokens = torch.randn(n, 1, 24, 16, generator=g)
        tokens[:, 0, 0, :4] = 4 * torch.nn.functional.one_hot(y, 4).float()  # marker token
        tokens[:, 0, 0, 4] = 10.0  # flags the marker so a query can find it
        return tokens, y

    (xt, yt), (xv, yv) = make(512, 0), make(256, 1)
    cfg = HeadConfig("attentive", lrs=(3e-3,), weight_decays=(1e-2,), epochs=15, batch_size=32, warmup_epochs=1)
    res = run_head(cfg, xt, yt, xv, yv, "classification", 4, seeds=[0])
    assert res["mean"] > 95.0, res


# ---------------------------------------------------------------------------------- metrics


def test_regression_metrics_match_their_definitions() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, generator=g) * 3 + 1
    outputs = torch.randn(50, 3, 1, generator=g)  # 3 views, standardised units
    scaler = Standardizer(mean=1.0, std=3.0)
    got = score(outputs, y, "regression", scaler)
    pred = [sum(float(outputs[i, v, 0]) for v in range(3)) / 3 * 3.0 + 1.0 for i in range(50)]
    ys = [float(v) for v in y]
    mse = sum((p - t) ** 2 for p, t in zip(pred, ys, strict=True)) / 50
    ybar = sum(ys) / 50
    r2 = 1 - sum((p - t) ** 2 for p, t in zip(pred, ys, strict=True)) / sum((t - ybar) ** 2 for t in ys)
    assert got["mse"] == pytest.approx(mse, rel=1e-5) and got["r2"] == pytest.approx(r2, rel=1e-5)


def test_linear_regression_recovers_a_linear_target() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, generator=g)
    x, xv = torch.randn(400, 2, 8, generator=g), torch.randn(100, 2, 8, generator=g)
    y, yv = x[:, 0] @ w * 5 + 100, xv[:, 0] @ w * 5 + 100  # far from zero mean, large scale
    x[:, 1], xv[:, 1] = x[:, 0], xv[:, 0]
    cfg = HeadConfig("linear", lrs=(1e-2,), weight_decays=(1e-4,), epochs=40, batch_size=64)
    res = run_head(cfg, x, y, xv, yv, "regression", 1, seeds=[0])
    assert res["mean"] > 0.98 and res["metrics"]["mse"]["mean"] < 0.05 * float(yv.var()), res


def test_views_are_averaged_in_probability() -> None:
    """Video 0: view A confidently right, view B mildly wrong -> right after averaging."""
    outputs = torch.tensor([[[5.0, 0.0], [0.0, 0.5]], [[0.0, 3.0], [0.0, 3.0]]])
    res = score(outputs, torch.tensor([0, 1]), "classification", Standardizer())
    assert res["top1"] == 100.0 and res["top1_single_view"] == 75.0
    assert "top5" not in res  # only 2 classes


def test_hparams_are_chosen_without_the_validation_set() -> None:
    fit, hold = split_holdout(100, 0.2)
    assert len(hold) == 20 and not set(fit.tolist()) & set(hold.tolist()) and len(fit) + len(hold) == 100
    x, y = _clusters(200, 8, 3, seed=0)
    xv, yv = _clusters(60, 8, 3, seed=1)
    cfg = HeadConfig("linear", lrs=(1e-3, 1e-1), weight_decays=(1e-4, 0.5), epochs=3, batch_size=32)
    a = run_head(cfg, x[:, None], y, xv[:, None], yv, "classification", 3, seeds=[0])
    b = run_head(cfg, x[:, None], y, xv[:, None], (yv + 1) % 3, "classification", 3, seeds=[0])
    assert a["hparams"] == b["hparams"] and a["trials"] == b["trials"]
    assert len(a["trials"]) == 4 and b["mean"] < 50 < a["mean"]
    # a test split is only scored: same choice, same val scores, and the same heads' test scores
    c = run_head(cfg, x[:, None], y, xv[:, None], yv, "classification", 3, seeds=[0],
                 test_x=xv[:, None], test_y=(yv + 1) % 3)
    assert c["hparams"] == a["hparams"] and c["mean"] == a["mean"]
    assert c["test"]["mean"] == b["mean"] and "test" not in a


# --------------------------------------------------------------------------------- features


def test_pixel_features_and_crop_boxes() -> None:
    px = PixelFeatures(patch_size=8, tubelet_size=2)
    video = torch.arange(2 * 3 * 4 * 16 * 16, dtype=torch.float32).view(2, 3, 4, 16, 16)
    tokens = px.forward_features(video)
    assert tokens.shape == (2, 2 * 2 * 2, 3 * 4 + 6 * 6)  # 2x2 cells x 3 channels, then position codes
    # token 0 = tubelet 0, patch (0, 0): channel-0 value of its top-left 4x4 cell, averaged over 2 frames
    torch.testing.assert_close(tokens[0, 0, 0], video[0, 0, :2, :4, :4].mean())
    torch.testing.assert_close(tokens[1, :, 12:], px.position_codes((2, 2, 2)))
    assert len({tuple(r.tolist()) for r in tokens[0, :, 12:]}) == 8  # every token's position is distinct
    assert px.pool_tokens(tokens[:, None]).shape == (2, 1, 8 * 12)  # linear baseline: pixels only
    boxes = crop_boxes(torch.tensor([[48, 64]]), ClipSpec(size=32, crops=3, crop_fraction=0.5))
    assert [b[0].tolist() for b in boxes] == [[0, 0, 24, 24], [20, 12, 44, 36], [40, 24, 64, 48]]


def _moving_dot_clips(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips [n, 3, 4, 8, 32] of a dot one 4x4 cell large that jumps one 8-px patch per tubelet,
    left (label 0) or right (1), from a random cell of a random patch."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    video = torch.zeros(n, 3, 4, 8, 32)
    for i in range(n):
        row = int(torch.randint(0, 2, (1,), generator=g)) * 4
        cell = int(torch.randint(0, 2, (1,), generator=g)) * 4
        patch = int(torch.randint(0, 3, (1,), generator=g)) + (0 if y[i] else 1)  # room to move
        for t in range(2):
            x = 8 * (patch + (t if y[i] else -t)) + cell
            video[i, :, 2 * t: 2 * t + 2, row: row + 4, x: x + 4] = 1.0
    return video, y


def test_pixel_baseline_reads_motion_with_positions() -> None:
    """Without position codes a left and a right motion give the attentive pixel baseline the
    same bag of tokens, so no head could tell them apart; with them an attentive head learns it."""
    right, left = torch.zeros(1, 3, 4, 8, 32), torch.zeros(1, 3, 4, 8, 32)
    right[..., :2, 0:4, 8:12] = right[..., 2:, 0:4, 16:20] = 1.0
    left[..., :2, 0:4, 16:20] = left[..., 2:, 0:4, 8:12] = 1.0
    for positions, same in ((0, True), (6, False)):
        px = PixelFeatures(patch_size=8, tubelet_size=2, positions=positions)
        bags = [sorted(map(tuple, px.forward_features(v)[0].tolist())) for v in (right, left)]
        assert (bags[0] == bags[1]) is same
    px = PixelFeatures(patch_size=8, tubelet_size=2)
    videos, y = _moving_dot_clips(256, 0)
    videos_v, yv = _moving_dot_clips(128, 1)
    x, xv = px.forward_features(videos)[:, None], px.forward_features(videos_v)[:, None]
    cfg = HeadConfig("attentive", lrs=(1e-2,), weight_decays=(1e-2,), epochs=40, batch_size=32, num_heads=4, warmup_epochs=2)
    assert run_head(cfg, x, y, xv, yv, "classification", 2, seeds=[0])["mean"] > 90


def _tiny_encoder(seed: int = 0) -> VideoViT:
    torch.manual_seed(seed)
    return VideoViT(**TINY).eval()


def test_features_are_cached_and_invalidated(synth_dir: Path, tmp_path: Path) -> None:
    enc = _tiny_encoder()
    for p in enc.parameters():
        p.requires_grad_(True)
    enc.train()  # extraction must use eval mode and restore the flag
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    ds = probe_dataset(synth_dir / "train.csv", SPEC)
    cache = FeatureCache(tmp_path / "cache")
    kw = dict(cache=cache, keep_tokens=True, num_workers=0, batch_size=4, progress=False)
    first = extract_features({"enc": enc}, ds, SPEC, **kw)["enc"]
    n = len(ds.source.paths)
    assert first.pooled.shape == (n, 2, 32) and first.tokens.shape == (n, 2, 2 * 4 * 4, 32)
    assert first.tokens.dtype == torch.float16 and first.meta["cache"] == "miss"
    assert first.labels["direction"].tolist() == ds.source.labels["direction"].tolist()
    assert enc.training and all(p.grad is None for p in enc.parameters())
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k
    torch.testing.assert_close(first.pooled, first.tokens.float().mean(2), atol=2e-3, rtol=0)
    assert not torch.allclose(first.pooled[:, 0], first.pooled[:, 1])  # two different clips per video

    again = extract_features({"enc": enc}, ds, SPEC, **kw)["enc"]
    assert again.meta["cache"] == "hit" and torch.equal(again.pooled, first.pooled)
    assert len(list(cache.root.glob("*.pt"))) == 1

    with torch.no_grad():
        enc.norm.weight[0] += 1e-3  # any weight change means new features
    changed = extract_features({"enc": enc}, ds, SPEC, **kw)["enc"]
    assert changed.meta["cache"] == "miss" and not torch.equal(changed.pooled, first.pooled)
    other_spec = replace(SPEC, frame_step=1)  # so does another transform
    ds1 = probe_dataset(synth_dir / "train.csv", other_spec)
    assert extract_features({"enc": enc}, ds1, other_spec, **kw)["enc"].meta["cache"] == "miss"
    assert len(list(cache.root.glob("*.pt"))) == 3

    entry = next(iter(sorted(cache.root.glob("*.pt"))))
    entry.write_bytes(b"truncated")  # an unreadable entry is recomputed, not trusted
    for fs in (extract_features({"enc": enc}, d, s, **kw)["enc"] for d, s in ((ds, SPEC), (ds1, other_spec))):
        assert fs.pooled.isfinite().all()


def test_random_twin_is_a_fresh_same_shape_encoder() -> None:
    enc = _tiny_encoder(5)
    twin = random_twin(enc)
    assert twin.config == enc.config and not twin.training
    assert not torch.equal(twin.patch_embed.proj.weight, enc.patch_embed.proj.weight)
    torch.testing.assert_close(random_twin(enc).state_dict(), twin.state_dict(), rtol=0, atol=0)  # seeded


# ------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_encoder_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("enc") / "tiny.pt"
    return save_encoder(_tiny_encoder(), path, meta={"data": {"frame_step": 2, "mean": [0.5] * 3, "std": [0.25] * 3}})


def test_run_probe_reports_all_models_and_heads(synth_dir: Path, tiny_encoder_file: Path, tmp_path: Path) -> None:
    assert encoder_meta(tiny_encoder_file)["data"]["frame_step"] == 2
    out = tmp_path / "probe"
    report = run_probe(
        tiny_encoder_file, synth_dir / "train.csv", synth_dir / "val.csv", ["direction", "speed_px"],
        heads=["linear", "attentive"], seeds=2, out=out, cache_dir=tmp_path / "cache", num_workers=0,
        batch_size=4, head_configs=FAST, progress=False,
    )
    data = json.loads((out / "probe.json").read_text())
    assert [(p["target"], p["head"], p["metric"]) for p in data["probes"]] == [
        ("direction", "linear", "top1"), ("direction", "attentive", "top1"),
        ("speed_px", "linear", "r2"), ("speed_px", "attentive", "r2"),
    ]
    assert data["spec"]["mean"] == [0.5] * 3 and data["spec"]["views"] == 2  # clip settings from the file
    for p in data["probes"]:
        assert set(p["results"]) == {"pretrained", "random_init", "pixels"}
        for r in p["results"].values():
            assert len(r["metrics"][p["metric"]]["values"]) == 2 and math.isfinite(r["mean"]) and r["std"] >= 0
        assert p["margin"]["pixels"] == pytest.approx(p["results"]["pretrained"]["mean"] - p["results"]["pixels"]["mean"])
        if p["metric"] == "r2":
            assert "mse" in p["results"]["pretrained"]["metrics"]
    assert data["cache"] == {"pretrained": "miss", "random_init": "miss", "pixels": "miss"}
    assert (out / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "probe.md").read_text()
    assert table == report["table"] + "\n" and table.count("\n| direction |") == 2 and "vs random" in table

    again = run_probe(
        tiny_encoder_file, synth_dir / "train.csv", synth_dir / "val.csv", ["direction"], heads=["linear"],
        seeds=1, cache_dir=tmp_path / "cache", num_workers=0, batch_size=4, head_configs=FAST, progress=False,
        baselines=["pixels"], test=synth_dir / "val.csv", out=tmp_path / "with_test",
    )
    # linear-only features (no tokens) are a separate, smaller cache entry
    assert set(again["probes"][0]["results"]) == {"pretrained", "pixels"} and again["cache"]["pretrained"] == "miss"
    # --test: the same heads scored on a second manifest (here val again, so the scores agree)
    entry = again["probes"][0]
    assert entry["test"]["videos"] == entry["val_videos"]
    for name, r in entry["results"].items():
        assert entry["test"]["results"][name]["mean"] == r["mean"] and "test" not in r
    md = (tmp_path / "with_test" / "probe.md").read_text()
    assert "Scored on val" in md and "Scored on test" in md and md.count("| direction | linear |") == 2


def test_probe_cli_and_its_errors(synth_dir: Path, tiny_encoder_file: Path, tmp_path: Path, capsys) -> None:
    args = ["probe", "--encoder", str(tiny_encoder_file), "--train", str(synth_dir / "train.csv"),
            "--val", str(synth_dir / "val.csv"), "--num-workers", "0", "--seeds", "1", "--no-progress",
            "--cache-dir", str(tmp_path / "cache"), "--linear-epochs", "2"]
    assert main([*args, "--target", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "train.csv" in err and "direction" in err
    assert main([*args, "--target", "shape", "--encoder", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main([*args, "--target", "shape", "--baselines", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "| shape | linear | top1 |" in out and (tmp_path / "o" / "probe.json").is_file()


def test_read_clips_is_the_probe_transform(synth_dir: Path, tiny_encoder_file: Path, tmp_path: Path) -> None:
    """``jepa.read_clips`` + ``forward_features`` gives the features ``jepa probe`` caches."""
    import jepa

    enc = jepa.load_encoder(tiny_encoder_file)
    assert enc.meta["data"]["mean"] == [0.5] * 3
    spec = replace(SPEC, crops=3, mean=(0.5,) * 3, std=(0.25,) * 3)  # what the file's meta implies
    ds = probe_dataset(synth_dir / "val.csv", spec)
    fs = extract_features({"enc": enc}, ds, spec, num_workers=0, batch_size=4, progress=False)["enc"]
    clips = jepa.read_clips(ds.source.paths[2], enc, views=2, crops=3)
    assert clips.shape == (6, 3, 4, 32, 32)
    with torch.no_grad():
        pooled = enc.forward_features(clips).mean(1)
    torch.testing.assert_close(pooled, fs.pooled[2], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["linear", "attentive"])
@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_batched_heads_equal_heads_trained_alone(kind: str, task: str, optimizer: str) -> None:
    """Every member of one batched run (its own lr, weight decay, seed, init, batch order and
    normalisation statistics) ends where training it alone ends."""
    from jepa.probe.batched import Member, train_heads
    from jepa.probe.train import predict, train_head

    torch.manual_seed(0)
    x = torch.randn(96, 2, 32) if kind == "linear" else torch.randn(96, 2, 6, 32)
    y = torch.randint(0, 4, (96,)) if task == "classification" else torch.randn(96)
    out = 4 if task == "classification" else 1
    cfg = HeadConfig(kind=kind, optimizer=optimizer, epochs=4, batch_size=32, warmup_epochs=1)  # type: ignore[arg-type]
    for members in ([Member(1e-3, 1e-4, 0), Member(1e-2, 1e-1, 0)],  # a grid: one batch order for all
                    [Member(1e-2, 1e-2, 1), Member(3e-3, 0.0, 2), Member(3e-3, 0.0, 0)],  # seeds: one order each
                    [Member(1e-3, 0.0, 2), Member(1e-2, 1e-2, 1), Member(3e-3, 1e-1, 2)]):  # grids per seed, interleaved
        for (head, _), m in zip(train_heads(cfg, x, y, task, out, members), members, strict=True):  # type: ignore[arg-type]
            alone, _ = train_head(cfg, x, y, task, out, m.lr, m.weight_decay, m.seed)  # type: ignore[arg-type]
            torch.testing.assert_close(predict(head, x), predict(alone, x), atol=1e-4, rtol=1e-4)
            if kind == "linear":
                torch.testing.assert_close(head.norm.running_var, alone.norm.running_var)


def test_batched_probe_protocol_matches_the_sequential_one() -> None:
    torch.manual_seed(0)
    x, xv = torch.randn(80, 2, 4, 16), torch.randn(40, 2, 4, 16)
    w = torch.randn(16)
    y, yv = (x.mean((1, 2)) @ w > 0).long(), (xv.mean((1, 2)) @ w > 0).long()
    cfg = HeadConfig(kind="attentive", epochs=3, batch_size=32)
    a = run_head(cfg, x, y, xv, yv, "classification", 2, seeds=[0, 1, 2], batched=True)
    b = run_head(cfg, x, y, xv, yv, "classification", 2, seeds=[0, 1, 2], batched=False)
    assert a["hparams"] == b["hparams"]
    assert [t["top1"] for t in a["trials"]] == pytest.approx([t["top1"] for t in b["trials"]], abs=1e-6)
    assert a["metrics"]["top1"]["values"] == pytest.approx(b["metrics"]["top1"]["values"], abs=1e-6)


def test_each_seed_is_a_whole_replicate_of_the_protocol() -> None:
    """Per-seed selection: seeds [0, 1, 2] together give what three single-seed runs give (each
    seed chooses with its own heads), and a seed may choose differently from seed 0; the old
    shared choice is still available."""
    torch.manual_seed(0)
    x, xv = torch.randn(120, 1, 16), torch.randn(60, 1, 16)
    w = torch.randn(16)
    y, yv = (x[:, 0] @ w > 0).long(), (xv[:, 0] @ w > 0).long()
    cfg = HeadConfig("linear", lrs=(1e-4, 1e-2, 3e-1), weight_decays=(1e-4, 0.3), epochs=4, batch_size=16)
    seeds = [0, 1, 2, 3, 4, 5]
    together = run_head(cfg, x, y, xv, yv, "classification", 2, seeds=seeds)
    alone = [run_head(cfg, x, y, xv, yv, "classification", 2, seeds=[s]) for s in seeds]
    assert together["hparams_per_seed"] == [a["hparams"] for a in alone]
    assert together["metrics"]["top1"]["values"] == pytest.approx([a["mean"] for a in alone], abs=1e-4)
    assert len(together["trials"]) == 6 * len(seeds) and {t["seed"] for t in together["trials"]} == set(seeds)
    assert len({tuple(h.values()) for h in together["hparams_per_seed"]}) > 1  # the choice depends on the seed
    shared = run_head(replace(cfg, select_per_seed=False), x, y, xv, yv, "classification", 2, seeds=seeds)
    assert shared["hparams_per_seed"] == [alone[0]["hparams"]] * len(seeds) and len(shared["trials"]) == 6


def test_bench_probe_runs_both_ways_and_agrees() -> None:
    from jepa.benchmarks.probe import run_probe_benchmark

    lines: list[str] = []
    res = run_probe_benchmark(heads=["linear"], seeds=2, videos=64, val_videos=32, tokens=8, dim=16,
                              print_fn=lines.append)
    r = res["linear"]
    assert r["sequential_s"] > 0 and r["batched_s"] > 0
    assert r["batched_top1"] == pytest.approx(r["sequential_top1"], abs=1e-6)
    assert any("| linear | 6 grid + 2 seeds |" in line for line in lines)
