"""``VideoJEPA``: gradients, overfitting one batch, EMA under accumulation, no-EMA mode, checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from jepa.hub import load_encoder
from jepa.masks import MaskSpec
from jepa.methods.vjepa import VideoJEPA
from jepa.objectives import SIGReg, VICReg, vicreg_terms
from jepa.objectives.targets import TargetEncoder, momentum_at

SIZE = (4, 32, 32)


def tiny(**kw: object) -> VideoJEPA:
    args: dict[str, object] = dict(
        encoder="vit_pico", patch_size=8, tubelet_size=2, input_size=SIZE,
        masks=[MaskSpec(2, (0.2, 0.2)), MaskSpec(1, (0.5, 0.5))], monitor_every=1,
    )
    args.update(kw)
    return VideoJEPA(**args)  # type: ignore[arg-type]


class Clips(Dataset):
    def __init__(self, n: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.video = torch.randn(n, 3, *SIZE, generator=g)

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"video": self.video[i]}


def trainer(tmp_path: Path, **kw: object) -> L.Trainer:
    args: dict[str, object] = dict(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path),
    )
    args.update(kw)
    return L.Trainer(**args)  # type: ignore[arg-type]


def test_no_gradient_reaches_the_target_encoder() -> None:
    torch.manual_seed(0)
    m = tiny(regularizer=VICReg(1.0, 0.1), regularize_on="both")
    loss, terms, _ = m.compute_loss(torch.randn(2, 3, *SIZE))
    loss.backward()
    assert m.target_encoder is not None
    assert all(not p.requires_grad and p.grad is None for p in m.target_encoder.parameters())
    assert all(p.grad is not None for p in m.encoder.parameters())
    assert all(p.grad is not None for p in m.predictor.parameters())
    assert terms["var_loss"] > 0 and terms["cov_loss"] > 0


def test_stopgrad_mode_has_no_ema_copy_and_trains_through_the_context_only() -> None:
    torch.manual_seed(0)
    m = tiny(target="stopgrad", regularizer=VICReg(1.0, 0.04))
    assert m.target_encoder is None
    video = torch.randn(2, 3, *SIZE)
    h = m._targets(video)
    assert not h.requires_grad
    loss, _, _ = m.compute_loss(video)
    loss.backward()
    assert torch.isfinite(loss) and m.encoder.blocks.blocks[0].attn.qkv.weight.grad is not None


def test_online_target_sends_the_prediction_gradient_through_the_targets() -> None:
    """target: online (LeJEPA-style): no stop-gradient anywhere; with the same weights and masks
    the encoder's gradient differs from stopgrad's (which gets none through the targets)."""
    torch.manual_seed(0)
    m = tiny(target="online", regularizer=SIGReg(0.05, num_projections=16), regularize_on="context")
    assert m.target_encoder is None
    video = torch.randn(2, 3, *SIZE)
    assert m._targets(video).requires_grad
    grid = m.encoder.token_grid(SIZE)
    masks = m.sample_masks(2, grid, video.device)
    grads = {}
    for kind in ("online", "stopgrad"):
        m.hparams.target = kind
        m.zero_grad()
        loss, terms, _ = m.compute_loss(video, masks=masks)
        loss.backward()
        assert "sigreg_loss" in terms
        grads[kind] = torch.cat([p.grad.flatten() for p in m.encoder.parameters() if p.grad is not None])
    assert not m._targets(video).requires_grad  # stopgrad now
    assert not torch.allclose(grads["online"], grads["stopgrad"])


def test_legacy_vicreg_keys_build_the_same_regulariser() -> None:
    old = tiny(var_weight=1.0, cov_weight=0.2, vicreg_on="context", vicreg_pool="clip", vicreg_expander=16)
    assert isinstance(old.regularizer, VICReg) and old.regularizer.cov_weight == 0.2
    assert old.hparams.regularize_on == "context" and old.hparams.regularize_pool == "clip"
    assert old.regularizer.expander is not None and old.hparams.var_weight is None
    assert tiny(var_weight=0.0, cov_weight=0.0).regularizer is None
    with pytest.raises(ValueError, match="not both"):
        tiny(var_weight=1.0, regularizer=SIGReg())


@pytest.mark.parametrize("pool", ["tokens", "clip"])
def test_vicreg_pooling_modes_run(pool: str) -> None:
    m = tiny(regularizer=VICReg(1.0, 1.0), regularize_pool=pool)
    _, terms, _ = m.compute_loss(torch.randn(3, 3, *SIZE))
    assert torch.isfinite(terms["var_loss"]) and terms["var_loss"] > 0


def test_vicreg_expander_sits_between_embeddings_and_regularisers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = tiny(regularizer=VICReg(1.0, 0.04, expander=48), regularize_on="context")
    expander = m.regularizer.expander
    assert expander is not None and expander[-1].out_features == 48
    z, mask = torch.randn(2, 10, m.encoder.embed_dim), torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False
    _, got = m.regularize(m._pool(z, mask))
    want = vicreg_terms(expander(z[mask]))
    torch.testing.assert_close(got["var_loss"], want[0])
    torch.testing.assert_close(got["cov_loss"], want[1])
    loss, _, _ = m.compute_loss(torch.randn(2, 3, *SIZE))
    loss.backward()
    assert all(p.grad is not None for p in expander.parameters())
    t = trainer(tmp_path, max_steps=1)
    t.fit(m, DataLoader(Clips(4), batch_size=2))
    trained = {id(p) for g in t.optimizers[0].param_groups for p in g["params"]}
    assert {id(p) for p in expander.parameters()} <= trained  # the optimizer trains it too
    path = tmp_path / "m.ckpt"
    t.save_checkpoint(path)
    enc = load_encoder(path)  # the expander is training machinery, not part of the encoder
    assert not any("expander" in k for k in enc.state_dict())


@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_loss_goes_down_when_overfitting_one_batch(pos: str) -> None:
    torch.manual_seed(0)
    m = tiny(pos_encoding=pos)  # EMA target, not updated here: a fixed regression target
    video = torch.randn(4, 3, *SIZE)
    masks = m.sample_masks(4, m.encoder.token_grid(SIZE), torch.device("cpu"))
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(60):
        loss, _, _ = m.compute_loss(video, masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # rope's mask tokens differ only through attention, which starts near uniform: slower start
    assert losses[-1] < (0.75 if pos == "sincos" else 0.9) * losses[0], losses[::10]
    assert min(losses[-10:]) < min(losses[:10])


def test_ema_updates_once_per_optimizer_step_under_accumulation(tmp_path: Path, monkeypatch) -> None:
    calls: list[float] = []
    original = TargetEncoder.update

    def spy(self: TargetEncoder, online: torch.nn.Module, momentum: float) -> None:
        calls.append(momentum)
        original(self, online, momentum)

    monkeypatch.setattr(TargetEncoder, "update", spy)
    m = tiny(ema_momentum=(0.9, 1.0))
    before = [p.clone() for p in m.target_encoder.parameters()]
    t = trainer(tmp_path, max_steps=3, accumulate_grad_batches=2, limit_val_batches=0)
    t.fit(m, DataLoader(Clips(12), batch_size=2))
    assert t.global_step == 3
    total = t.estimated_stepping_batches
    assert calls == pytest.approx([momentum_at(s, total, 0.9, 1.0) for s in (0, 1, 2)])  # 6 micro-batches, 3 updates
    assert any(not torch.equal(a, b) for a, b in zip(before, m.target_encoder.parameters(), strict=True))


def test_ema_formula_after_one_step(tmp_path: Path) -> None:
    m = tiny(ema_momentum=(0.5, 0.5))
    target0 = {k: v.clone() for k, v in m.target_encoder.encoder.state_dict().items()}
    t = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    t.fit(m, DataLoader(Clips(2), batch_size=2))
    online = m.encoder.state_dict()
    for k, v in m.target_encoder.encoder.state_dict().items():
        torch.testing.assert_close(v, 0.5 * target0[k] + 0.5 * online[k])


def test_checkpoint_round_trip_restores_weights_and_mask_rng(tmp_path: Path) -> None:
    m = tiny()
    t = trainer(tmp_path, max_steps=2, limit_val_batches=0)
    t.fit(m, DataLoader(Clips(4), batch_size=2))
    path = tmp_path / "m.ckpt"
    t.save_checkpoint(path)
    loaded = VideoJEPA.load_from_checkpoint(path)
    for (k, a), b in zip(m.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert torch.equal(torch.load(path, weights_only=False)["mask_generator"], m.mask_generator.get_state())


def test_input_size_comes_from_the_datamodule_when_unset(synth_dir: Path, tmp_path: Path) -> None:
    from data_pipelines.datamodule import VideoDataModule

    dm = VideoDataModule(
        train=str(synth_dir / "train.csv"), num_frames=4, frame_step=2, crop_size=32, batch_size=4,
        num_workers=0,
    )
    m = VideoJEPA(encoder="vit_pico", patch_size=8, monitor_every=1)
    t = trainer(tmp_path, max_steps=2, limit_val_batches=0)
    t.fit(m, datamodule=dm)
    assert m.hparams.input_size == (4, 32, 32) and m.encoder.input_size == (4, 32, 32)
    logged = set(t.logged_metrics)
    for key in ("train/pred_loss", "mask/mask0_target_fraction", "monitor/target_std", "monitor/target_rankme"):
        assert key in logged, key


def test_patch_size_that_does_not_divide_the_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        VideoJEPA(encoder="vit_pico", patch_size=7, input_size=SIZE)


def test_rope_model_exports_a_rope_encoder(tmp_path: Path) -> None:
    """``pos_encoding: rope`` reaches encoder and predictor and survives checkpoint -> load_encoder."""
    m = tiny(pos_encoding="rope")
    assert m.encoder.pos_encoding == "rope" and m.predictor.pos_encoding == "rope"
    t = trainer(tmp_path, max_steps=1)
    t.fit(m, DataLoader(Clips(4), batch_size=2))
    path = tmp_path / "rope.ckpt"
    t.save_checkpoint(path)
    enc = load_encoder(path)
    assert enc.pos_encoding == "rope"
    video = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(enc(video), m.target_encoder.encoder.eval()(video))
