"""Action-conditioned predictor (block-causal), trajectory data alignment, and the world model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data_pipelines.trajectories import TrajectoryClipDataset
from jepa.envs import TwoRooms
from jepa.envs.collect import collect
from jepa.methods.world_model import ActionConditionedWorldModel, load_world_model
from jepa.models.ac_predictor import ActionConditionedPredictor, block_causal_mask
from jepa.objectives import SIGReg, VICReg, sigreg


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("two_rooms")
    collect("two-rooms", out, episodes=6, steps=24, seed=0, workers=1, val_fraction=0.34)
    return out


def test_block_causal_mask_reference() -> None:
    m = block_causal_mask(3, 2, window=None)
    frame = torch.tensor([0, 0, 1, 1, 2, 2])
    ref = frame[:, None] >= frame[None, :]
    assert torch.equal(m, ref)
    w = block_causal_mask(4, 1, window=2)
    assert torch.equal(w, torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=torch.bool))


@pytest.mark.parametrize("grid", [(1, 1), (2, 2)])
def test_changing_the_future_does_not_change_earlier_predictions(grid: tuple[int, int]) -> None:
    torch.manual_seed(0)
    p = grid[0] * grid[1]
    pred = ActionConditionedPredictor(8, 3, grid, embed_dim=24, depth=2, num_heads=2, residual=False).eval()
    z, a = torch.randn(2, 5, p, 8), torch.randn(2, 5, 3)
    base = pred(z, a)
    z2, a2 = z.clone(), a.clone()
    z2[:, 3] += 5.0  # a later frame
    a2[:, 3] += 5.0  # and the action taken at it
    out = pred(z2, a2)
    torch.testing.assert_close(out[:, :3], base[:, :3])  # predictions of frames 1..3 unchanged
    assert not torch.allclose(out[:, 3], base[:, 3])  # the prediction that may see it does change
    a3 = a.clone()
    a3[:, 1] += 5.0  # the action between frames 1 and 2 changes the prediction of frame 2 on
    out3 = pred(z, a3)
    torch.testing.assert_close(out3[:, :1], base[:, :1])
    assert not torch.allclose(out3[:, 1], base[:, 1])


def test_window_limits_history_and_rollout_matches_forward() -> None:
    torch.manual_seed(0)
    pred = ActionConditionedPredictor(6, 2, embed_dim=24, depth=2, num_heads=2, window=2, residual=True).eval()
    z, a = torch.randn(1, 5, 1, 6), torch.randn(1, 5, 2)
    base = pred(z, a)
    z2 = z.clone()
    z2[:, 0] += 3.0  # outside the window of predictions 2..4
    torch.testing.assert_close(pred(z2, a)[:, 2:], base[:, 2:])
    # Rollout from one frame = feeding each prediction back by hand through forward.
    roll = pred.rollout(z[:, 0], a[:, :3])
    frames = [z[:, 0]]
    for t in range(3):
        ctx = torch.stack(frames[-2:], 1)
        frames.append(pred(ctx, a[:, max(0, t - 1) : t + 1])[:, -1])
    torch.testing.assert_close(roll, torch.stack(frames[1:], 1))
    with pytest.raises(ValueError, match="context_actions"):
        pred.rollout(z[:, :2], a[:, :2])


@pytest.mark.parametrize("window", [1, 2, 3, None])
@pytest.mark.parametrize("grid", [(1, 1), (2, 2)])
def test_rollout_equals_teacher_forcing_for_every_window(window: int | None, grid: tuple[int, int]) -> None:
    """Prediction t from the true frames must be the same whether it comes from one teacher-forced
    pass over the clip (training) or from a rollout step on the last ``window`` frames (planning).
    A trained predictor is needed to tell: an untrained one's output layer is zero."""
    torch.manual_seed(0)
    p = grid[0] * grid[1]
    pred = ActionConditionedPredictor(6, 2, grid, embed_dim=24, depth=3, num_heads=2, window=window).eval()
    torch.nn.init.normal_(pred.out.weight, std=0.5)
    z, a = torch.randn(2, 7, p, 6), torch.randn(2, 7, 2)
    forced = pred(z, a)
    for t in range(7):
        lo = 0 if window is None else max(0, t - window + 1)
        step = pred.rollout(z[:, lo : t + 1], a[:, t : t + 1], context_actions=a[:, lo:t] if t > lo else None)
        torch.testing.assert_close(step[:, 0], forced[:, t], msg=f"prediction {t}")
    if window is not None:  # and nothing before the window reaches it, through any layer
        z2 = z.clone()
        z2[:, 0] += 3.0
        torch.testing.assert_close(pred(z2, a)[:, window:], forced[:, window:])


def test_collected_actions_sit_between_their_frames(trajectories: Path) -> None:
    env = TwoRooms()
    ds = TrajectoryClipDataset(trajectories / "manifest.csv", num_frames=4, frameskip=3)
    assert ds.action_dim == 6
    z = np.load(trajectories / "episodes" / "000000.npz")
    actions, states = z["actions"], z["states"]
    assert len(states) == len(actions) + 1 == 25
    for t in range(len(actions)):  # action t moves state t to state t + 1
        np.testing.assert_allclose(env.dynamics(states[t].astype(np.float64), actions[t]), states[t + 1], atol=1e-4)
    item = ds[5]
    e, s = item["episode"], item["start"]
    assert (e, s) == (0, 5)
    np.testing.assert_array_equal(item["states"].numpy(), states[[5, 8, 11, 14]])
    np.testing.assert_array_equal(item["actions"].numpy(), actions[5:14].reshape(3, 6))
    # The decoded frame shows the agent where the state says it is (codec and all).
    for i, t in enumerate([5, 8, 11, 14]):
        img = item["video"][i].numpy().astype(float)
        w = np.clip(img[..., 0] - img[..., 2] - 60, 0, None)
        rows, cols = np.mgrid[0:64, 0:64]
        s_ = 64 / 65
        cx = (((cols + 0.5) / s_ - 0.5) * w).sum() / w.sum()
        cy = (((rows + 0.5) / s_ - 0.5) * w).sum() / w.sum()
        assert abs(cx - states[t, 0]) < 1.0 and abs(cy - states[t, 1]) < 1.0


def test_trajectory_errors_name_the_file(tmp_path: Path, trajectories: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        TrajectoryClipDataset(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,trajectory\nmissing.mp4,missing.npz\n")
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        TrajectoryClipDataset(bad)
    with pytest.raises(ValueError, match="frames a clip needs"):
        TrajectoryClipDataset(trajectories / "manifest.csv", num_frames=10, frameskip=5)


def test_world_model_fits_and_its_checkpoint_round_trips(trajectories: Path, tmp_path: Path) -> None:
    import lightning as L

    from data_pipelines.trajectory_datamodule import TrajectoryDataModule

    torch.manual_seed(0)
    dm = TrajectoryDataModule(str(trajectories / "train.csv"), str(trajectories / "val.csv"), num_frames=4,
                              frameskip=2, batch_size=8)
    wm = ActionConditionedWorldModel(latent_dim=16, conv_widths=(8, 16, 16), predictor_embed_dim=32,
                                     predictor_depth=1, predictor_num_heads=2, rollout_steps=2, smooth_weight=0.1,
                                     idm_weight=0.1, lr=3e-3, regularizer=VICReg(1.0, 0.04))
    trainer = L.Trainer(max_steps=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=2, default_root_dir=str(tmp_path))
    trainer.fit(wm, dm)
    assert wm.hparams.action_dim == 4 and wm.frameskip == 2
    mean, std = dm.action_stats()
    np.testing.assert_allclose(wm.action_std.numpy(), std, rtol=1e-5)
    ckpt = tmp_path / "wm.ckpt"
    trainer.save_checkpoint(ckpt)
    again = load_world_model(str(ckpt))
    torch.testing.assert_close(again.action_std, wm.action_std)
    assert again.frameskip == 2
    obs = np.zeros((2, 64, 64, 3), np.uint8)
    wm.eval()
    z0 = wm.encode(obs)
    torch.testing.assert_close(again.encode(obs), z0)
    acts = torch.randn(2, 3, 4)
    torch.testing.assert_close(again.rollout(z0, acts), wm.rollout(z0, acts))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.ckpt"):
        load_world_model(str(junk))


@pytest.mark.parametrize("pos_encoding", ["sincos", "rope"])
def test_frozen_pretrained_encoder_mode(tmp_path: Path, pos_encoding: str) -> None:
    """V-JEPA 2-AC style: a jepa encoder file, frozen; only the predictor trains."""
    from jepa.hub import save_encoder
    from jepa.models.vit import VideoViT

    torch.manual_seed(0)
    vit = VideoViT.from_preset("vit_pico", patch_size=16, tubelet_size=2, input_size=(4, 64, 64), pos_encoding=pos_encoding)
    path = save_encoder(vit, tmp_path / "enc.pt")
    wm = ActionConditionedWorldModel(encoder_checkpoint=str(path), action_dim=2, predictor_embed_dim=32,
                                     predictor_depth=1, predictor_num_heads=2, rollout_steps=2)
    assert wm.encoder.grid == (4, 4) and wm.encoder.latent_dim == vit.embed_dim
    assert not any(p.requires_grad for p in wm.encoder.parameters())
    batch = {"video": torch.randint(0, 255, (2, 3, 64, 64, 3), dtype=torch.uint8), "actions": torch.randn(2, 2, 2)}
    wm.train()
    assert not wm.encoder.training  # stays in eval mode
    loss, terms, z = wm.compute_loss(batch)
    assert z.shape == (2, 3, 16, vit.embed_dim) and "var_loss" not in terms
    loss.backward()
    assert all(p.grad is None for p in wm.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in wm.predictor.parameters())
    # The frozen encoder's latents are the loaded encoder's tokens for the frame repeated per tubelet.
    frame = batch["video"][:1, 0]
    ref = vit.eval().forward_features(wm.normalise_frames(frame)[:, :, None].expand(-1, -1, 2, -1, -1))
    torch.testing.assert_close(wm.encode(frame.numpy()), ref)


def small_wm(**kw: object) -> ActionConditionedWorldModel:
    torch.manual_seed(0)
    args: dict[str, object] = dict(latent_dim=8, conv_widths=(8, 8, 8), predictor_embed_dim=16, predictor_depth=1,
                                   predictor_num_heads=2, rollout_steps=2, action_dim=2, latent_grid=True)
    args.update(kw)
    return ActionConditionedWorldModel(**args)  # type: ignore[arg-type]


def wm_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"video": torch.randint(0, 255, (3, 4, 64, 64, 3), generator=g, dtype=torch.uint8),
            "actions": torch.randn(3, 3, 2, generator=g)}


@pytest.mark.parametrize("target", ["stopgrad", "ema"])
def test_planner_goal_is_in_the_space_the_predictor_outputs(target: str) -> None:
    """With an EMA target the predictor learns to output the target encoder's latents, so the goal
    the planner compares rollouts with must come from that encoder; otherwise from the encoder."""
    from jepa.planning.mpc import LatentCost

    wm = small_wm(target=target).eval()
    if wm.target_encoder is not None:
        with torch.no_grad():  # as after training: the EMA copy has drifted from the online encoder
            for q in wm.target_encoder.encoder.parameters():
                q.add_(0.3 * torch.randn_like(q))
    goal = wm_batch()["video"][0, 0].numpy()
    cost = LatentCost(wm, goal)
    with torch.no_grad():
        frames = wm.normalise_frames(goal)
        space = wm.target_encoder.encoder if target == "ema" else wm.encoder
        torch.testing.assert_close(cost.goal, space(frames)[0])
        if target == "ema":
            assert not torch.allclose(cost.goal, wm.encoder(frames)[0])


@pytest.mark.parametrize("target", ["stopgrad", "online", "ema"])
def test_world_model_target_kinds(target: str) -> None:
    """online: targets carry the gradient (no stop-gradient anywhere); stopgrad: detached; ema:
    a frozen EMA copy. Same weights and batch: online's encoder gradient differs from stopgrad's
    by exactly the gradient that flows through the targets."""
    wm = small_wm(target=target, regularizer=SIGReg(0.1, num_projections=8))
    z, zt = wm._encode_clip(wm_batch()["video"])
    assert zt.requires_grad == (target == "online")
    assert (wm.target_encoder is not None) == (target == "ema")
    if target != "online":
        return
    grads = {}
    for kind in ("online", "stopgrad"):
        wm.hparams.target = kind
        wm.zero_grad()
        wm.compute_loss(wm_batch())[0].backward()
        grads[kind] = torch.cat([p.grad.flatten() for p in wm.encoder.parameters()])
    assert not torch.allclose(grads["online"], grads["stopgrad"])


def test_world_model_regularizer_per_time_step_groups_frames_by_step() -> None:
    wm = small_wm(regularizer=SIGReg(1.0, num_projections=8), regularize_per_step=True, rollout_steps=0)
    batch = wm_batch()
    _, terms, z = wm.compute_loss(batch)
    b, t, p, d = z.shape
    want = sigreg(z.transpose(0, 1).reshape(t, b * p, d), wm.regularizer.directions(d, 0))
    torch.testing.assert_close(terms["sigreg_loss"], want)
    flat = small_wm(regularizer=SIGReg(1.0, num_projections=8), rollout_steps=0)
    _, terms_flat, _ = flat.compute_loss(batch)
    assert not torch.allclose(terms_flat["sigreg_loss"], terms["sigreg_loss"])


def test_world_model_legacy_weights_become_a_vicreg() -> None:
    wm = small_wm(var_weight=10.0, cov_weight=1.0)
    assert isinstance(wm.regularizer, VICReg) and (wm.regularizer.var_weight, wm.regularizer.cov_weight) == (10.0, 1.0)
    assert wm.hparams.regularizer["class_path"] == "jepa.objectives.vicreg.VICReg" and wm.hparams.var_weight is None
    with pytest.raises(ValueError, match="not both"):
        small_wm(var_weight=1.0, regularizer=SIGReg())


@pytest.mark.parametrize("name", ["test_vit", "test_resnet"])
def test_a_frozen_timm_encoder_world_model_fits_and_reloads(name: str, trajectories: Path, tmp_path: Path) -> None:
    """DINO-WM style: any timm image model, frozen, on its own input size and normalisation; random
    weights offline. Its patch tokens (ViT: without the class token; CNN: the last feature map's
    cells) are the latents, and the checkpoint alone rebuilds the model."""
    import lightning as L
    import torch.nn.functional as F

    from data_pipelines.trajectory_datamodule import TrajectoryDataModule

    torch.manual_seed(0)
    dm = TrajectoryDataModule(str(trajectories / "train.csv"), str(trajectories / "val.csv"), num_frames=3,
                              frameskip=2, batch_size=4)
    wm = ActionConditionedWorldModel(encoder=f"timm:{name}", predictor_embed_dim=32, predictor_depth=1,
                                     predictor_num_heads=2, rollout_steps=1, lr=3e-3)
    timm_model = wm.encoder.backbone.model
    assert wm.encoder.grid == ((10, 10) if name == "test_vit" else (5, 5))  # 160 px input, patch 16 / stride 32
    torch.testing.assert_close(wm.pixel_mean.flatten(), torch.tensor([127.5] * 3))  # timm's mean 0.5, not ImageNet's
    before = {k: v.clone() for k, v in timm_model.state_dict().items()}
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(wm, dm)
    assert all(torch.equal(before[k], v) for k, v in timm_model.state_dict().items())  # frozen, BN statistics too
    assert all(not p.requires_grad for p in timm_model.parameters())
    obs = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    wm.eval()
    frames = (torch.from_numpy(obs).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        feats = timm_model.eval().forward_features(F.interpolate(frames, size=(160, 160), mode="bilinear",
                                                                 align_corners=False, antialias=True))
    ref = feats[:, 1:] if feats.ndim == 3 else feats.flatten(2).transpose(1, 2)
    torch.testing.assert_close(wm.encode(obs), ref, atol=1e-4, rtol=1e-4)
    ckpt = tmp_path / "wm.ckpt"
    trainer.save_checkpoint(ckpt)
    again = load_world_model(str(ckpt))
    torch.testing.assert_close(again.encode(obs), wm.encode(obs))
    with pytest.raises(ValueError, match="timm:no_such_net: timm has no model 'no_such_net'"):
        ActionConditionedWorldModel(encoder="timm:no_such_net")


def test_frozen_latent_cache_returns_the_encoders_latents_and_skips_seen_frames(trajectories: Path) -> None:
    """latent_cache_mb: the same losses as without the cache, batch after batch, while the frozen
    encoder runs only on frames it has not seen (a second epoch runs it not at all); a budget
    too small to hold anything changes nothing but the hit count."""
    from data_pipelines.trajectory_datamodule import TrajectoryDataModule

    dm = TrajectoryDataModule(str(trajectories / "train.csv"), str(trajectories / "val.csv"), num_frames=3,
                              frameskip=2, batch_size=4, stride=1)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    kw = dict(encoder="timm:test_vit", predictor_embed_dim=32, predictor_depth=1, predictor_num_heads=2,
              rollout_steps=1, action_dim=dm.action_dim)
    torch.manual_seed(0)
    plain = ActionConditionedWorldModel(**kw)
    cached = ActionConditionedWorldModel(**kw, latent_cache_mb=64)
    tiny = ActionConditionedWorldModel(**kw, latent_cache_mb=1e-6)
    cached.load_state_dict(plain.state_dict())
    tiny.load_state_dict(plain.state_dict())
    calls = {"n": 0}
    cached.encoder.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    frames_seen = set()
    for epoch in range(2):
        for batch in batches[:4]:
            want, _, _ = plain.compute_loss(batch)
            got, _, _ = cached.compute_loss(batch)
            small, _, _ = tiny.compute_loss(batch)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(small, want, rtol=1e-5, atol=1e-6)
            frames_seen |= {cached.latent_cache.key(f) for f in batch["video"].flatten(0, 1)}
        if epoch == 0:
            first = calls["n"]
    assert calls["n"] == first  # the second epoch never ran the encoder
    assert cached.latent_cache.misses == len(frames_seen) < cached.latent_cache.hits
    assert tiny.latent_cache.hits == 0 and not tiny.latent_cache.entries
    assert ActionConditionedWorldModel(encoder="conv", latent_cache_mb=64, action_dim=4).latent_cache is None  # trained encoder
    with pytest.raises(ValueError, match="latent_cache_mb"):
        ActionConditionedWorldModel(encoder="timm:test_vit", latent_cache_mb=-1)


def test_clip_variance_loss_matches_the_formula_and_ignores_what_is_static_within_clips() -> None:
    """Reference written from the definition: per (token, channel), the std of the deviations from
    each clip's own time mean, pooled over clips with T - 1 degrees of freedom each; hinge at 1."""
    from jepa.methods.world_model import clip_variance_loss

    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, 3, 2, generator=g) * torch.tensor([0.3, 2.0])
    zn = z.numpy().astype(np.float64)
    dev = zn - zn.mean(1, keepdims=True)
    var = (dev ** 2).sum((0, 1)) / (5 * 3)
    want = np.maximum(0.0, 1.0 - np.sqrt(var + 1e-4)).mean()
    assert abs(float(clip_variance_loss(z)) - want) < 1e-5
    # A scene that changes from clip to clip but never within one: a batch variance term is
    # satisfied, this one is at its maximum (gamma), and it is 0 for latents that move enough.
    static = torch.randn(8, 1, 1, 4, generator=g).expand(8, 5, 1, 4) * 10
    assert float(clip_variance_loss(static)) == pytest.approx(1.0, abs=1e-2)
    moving = static + torch.randn(8, 5, 1, 4, generator=g) * 3
    assert float(clip_variance_loss(moving)) == 0.0
    wm = small_wm(clip_var_weight=2.0, rollout_steps=0)
    _, terms, z = wm.compute_loss(wm_batch())
    torch.testing.assert_close(terms["clip_var_loss"], clip_variance_loss(z))
    base = small_wm(rollout_steps=0)
    assert "clip_var_loss" not in base.compute_loss(wm_batch())[1]
    torch.testing.assert_close(wm.compute_loss(wm_batch())[0], base.compute_loss(wm_batch())[0] + 2.0 * terms["clip_var_loss"])
    with pytest.raises(ValueError, match=r"model.init_args.clip_var_weight must be >= 0"):
        small_wm(clip_var_weight=-1.0)
