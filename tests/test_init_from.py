"""``model.init_args.init_from``: a pretraining run that starts from our checkpoints, encoder
files and V-JEPA 2 weights (encoder, EMA target, predictor), through a real Trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_pretrain import SIZE, Clips, tiny, trainer
from torch.utils.data import DataLoader

from jepa.hub import export_encoder, load_encoder
from jepa.methods.vjepa import VideoJEPA

FROZEN = dict(lr=0.0, start_lr=0.0, final_lr=0.0, ema_momentum=(1.0, 1.0))  # one step changes no weight


def fit_one_step(m: VideoJEPA, tmp_path: Path) -> VideoJEPA:
    trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(m, DataLoader(Clips(2), batch_size=2))
    return m


def trained(tmp_path: Path, **kw: object) -> tuple[VideoJEPA, Path]:
    m = tiny(**kw)
    t = trainer(tmp_path / "first", max_steps=3, limit_val_batches=0)
    t.fit(m, DataLoader(Clips(4), batch_size=2))
    path = tmp_path / "first.ckpt"
    t.save_checkpoint(path)
    return m, path


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_a_pretraining_checkpoint_gives_encoder_target_and_predictor(tmp_path: Path) -> None:
    first, path = trained(tmp_path)
    assert not same(first.encoder, first.target_encoder.encoder)  # three different sets of weights
    fresh = tiny(**FROZEN)
    assert not same(fresh.encoder, first.encoder)
    m = fit_one_step(tiny(init_from=str(path), **FROZEN), tmp_path / "second")
    assert same(m.encoder, first.encoder) and same(m.predictor, first.predictor)
    assert same(m.target_encoder.encoder, first.target_encoder.encoder)
    assert m.global_step == 1  # a new run: the step count starts afresh


def test_an_encoder_file_starts_both_encoders_and_a_fresh_predictor(tmp_path: Path) -> None:
    first, path = trained(tmp_path)
    enc_file = export_encoder(path, tmp_path / "enc.safetensors")
    m = fit_one_step(tiny(init_from=str(enc_file), **FROZEN), tmp_path / "second")
    assert same(m.encoder, first.target_encoder.encoder) and same(m.target_encoder.encoder, first.target_encoder.encoder)
    assert not same(m.predictor, first.predictor)


def test_a_different_architecture_is_named_in_one_line(tmp_path: Path) -> None:
    _, path = trained(tmp_path)
    m = tiny(init_from=str(path), patch_size=16, **FROZEN)
    with pytest.raises(ValueError, match=r"init_from: .* patch_size 8; the recipe builds patch_size 16"):
        fit_one_step(m, tmp_path / "second")
    m = tiny(init_from=str(path), predictor_embed_dim=32, **FROZEN)
    with pytest.raises(ValueError, match="predictor in .* does not fit the recipe's.*predictor_embed_dim"):
        fit_one_step(m, tmp_path / "third")
    with pytest.raises(ValueError, match="init_from: .*nothing.ckpt does not exist.*init_from null"):
        fit_one_step(tiny(init_from=str(tmp_path / "nothing.ckpt")), tmp_path / "fourth")


def test_loading_a_run_built_with_init_from_needs_no_init_file(tmp_path: Path) -> None:
    _, path = trained(tmp_path)
    m = fit_one_step(tiny(init_from=str(path), **FROZEN), tmp_path / "second")
    t = trainer(tmp_path / "third", max_steps=1, limit_val_batches=0)
    t.fit(m, DataLoader(Clips(2), batch_size=2))
    saved = tmp_path / "second.ckpt"
    t.save_checkpoint(saved)
    path.unlink()  # the file it started from is gone: export and reload still work
    assert same(VideoJEPA.load_from_checkpoint(saved).encoder, m.encoder)
    assert load_encoder(saved).embed_dim == m.encoder.embed_dim


def test_vjepa2_reference_weights_with_its_rope_layout(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the [hf] extra (transformers) is not installed")
    from test_convert_vjepa2 import hf_model, reference_file

    model = hf_model(96, 3, layers=4)  # vit_pico's size: width 96, 4 blocks, 3 heads
    ref = reference_file(model, tmp_path / "vit.pt")
    kw = dict(pos_encoding="rope", init_from=str(ref), **FROZEN)
    with pytest.raises(ValueError, match="rope_layout vjepa2; the recipe builds rope_layout half"):
        fit_one_step(tiny(**kw), tmp_path / "wrong")
    m = fit_one_step(tiny(rope_layout="vjepa2", **kw), tmp_path / "right")
    video = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        theirs = model(pixel_values_videos=video.permute(0, 2, 1, 3, 4), skip_predictor=True).last_hidden_state
        target = m.target_encoder.encoder.eval().forward_features(video)
        context = m.encoder.eval().forward_features(video)
    torch.testing.assert_close(target, theirs, atol=2e-5, rtol=1e-4)  # target_encoder -> the EMA target
    assert (context - theirs).abs().max() > 1e-2  # the file's online encoder -> the context encoder
    t = trainer(tmp_path / "export", max_steps=1, limit_val_batches=0)
    t.fit(m, DataLoader(Clips(2), batch_size=2))
    t.save_checkpoint(tmp_path / "cont.ckpt")
    exported = load_encoder(tmp_path / "cont.ckpt")  # continued pretraining exports V-JEPA 2's positions
    assert exported.config["rope_layout"] == "vjepa2"
    with torch.no_grad():
        torch.testing.assert_close(exported.forward_features(video), m.target_encoder.encoder.forward_features(video))


@pytest.mark.parametrize("source", ["folder", "reference"])
def test_vjepa2_predictor_loads_when_the_recipe_builds_the_same(source: str, tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the [hf] extra (transformers) is not installed")
    from test_convert_vjepa2 import hf_model, our_predictions, predictions, reference_file

    from jepa.methods.init_from import init_modules

    model = hf_model(96, 3, layers=4)  # predictor: width 32, 1 block, 2 heads
    model.save_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" if source == "folder" else reference_file(model, tmp_path / "vit.pt")
    tokens, ctx, tgt, ref = predictions(model, torch.randn(2, 4, 3, 32, 32))
    kw = dict(pos_encoding="rope", rope_layout="vjepa2")
    m = tiny(predictor_embed_dim=32, predictor_depth=1, predictor_num_heads=2, predictor_rope_layout="vjepa2", **kw)
    lines = init_modules(path, m.encoder, m.predictor, m.target_encoder.encoder)
    assert "predictor from" in lines[0] and "from scratch" not in lines[0]
    torch.testing.assert_close(our_predictions(m.predictor.eval(), tokens, ctx, tgt), ref, atol=2e-5, rtol=1e-4)
    other = tiny(predictor_embed_dim=32, predictor_depth=1, predictor_num_heads=2, **kw)  # our rotary layout
    before = {k: v.clone() for k, v in other.predictor.state_dict().items()}
    lines = init_modules(path, other.encoder, other.predictor, other.target_encoder.encoder)
    assert "predictor (the file's has model.init_args.predictor_rope_layout vjepa2: set them to start from it) " \
           "from scratch" in lines[0]
    assert all(torch.equal(before[k], v) for k, v in other.predictor.state_dict().items())
