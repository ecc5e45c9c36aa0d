"""V-JEPA 2 weights from ``transformers`` into ``VideoViT``: the same features as ``VJEPA2Model``
on the same input (small random configs, no download), through a saved folder and ``jepa convert``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jepa.convert.vjepa2 import load_hf_folder, rope_channel_order

transformers = pytest.importorskip("transformers", reason="the [hf] extra (transformers) is not installed")


def hf_model(hidden: int, heads: int, layers: int = 2) -> torch.nn.Module:
    config = transformers.VJEPA2Config(
        hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers, crop_size=32, patch_size=8,
        frames_per_clip=4, tubelet_size=2, pred_hidden_size=32, pred_num_attention_heads=2, pred_num_hidden_layers=1,
        num_pooler_layers=1,
    )
    torch.manual_seed(0)
    model = transformers.VJEPA2Model(config).eval()
    with torch.no_grad():  # random biases and norms too, so every mapped tensor matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_rope_channel_order_is_a_permutation() -> None:
    for head_dim in (48, 64, 80):
        order = rope_channel_order(head_dim)
        assert sorted(order.tolist()) == list(range(head_dim))


@pytest.mark.parametrize(("hidden", "heads"), [(96, 2), (128, 2), (96, 4)])  # head widths 48, 64 (remainder 4), 24
def test_converted_encoder_matches_vjepa2model(hidden: int, heads: int, tmp_path: Path) -> None:
    model = hf_model(hidden, heads)
    model.save_pretrained(tmp_path / "hf")
    enc = load_hf_folder(tmp_path / "hf")
    video = torch.randn(2, 4, 3, 32, 32)  # transformers: [B, T, C, H, W]
    with torch.no_grad():
        ref = model(pixel_values_videos=video, skip_predictor=True).last_hidden_state
        ours = enc.forward_features(video.permute(0, 2, 1, 3, 4))  # ours: [B, C, T, H, W]
    assert ours.shape == ref.shape == (2, 2 * 4 * 4, hidden)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)


def test_jepa_convert_writes_an_encoder_file(tmp_path: Path, capsys) -> None:
    from jepa.hub import load_encoder
    from jepa.training.cli import main

    model = hf_model(96, 2)
    model.save_pretrained(tmp_path / "hf")
    out = tmp_path / "vjepa2.safetensors"
    assert main(["convert", "vjepa2", str(tmp_path / "hf"), "--out", str(out)]) == 0
    enc = load_encoder(out)
    assert enc.config["rope_layout"] == "vjepa2" and enc.pretrained_cfg["num_frames"] == 4
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc.forward_features(video.permute(0, 2, 1, 3, 4)),
                                   model(pixel_values_videos=video, skip_predictor=True).last_hidden_state,
                                   atol=2e-5, rtol=1e-4)
    assert main(["convert", "vjepa2", str(tmp_path / "hf"), "--out", str(out)]) != 0
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", "vjepa2", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.safetensors")]) != 0
    assert "no such folder or file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["convert", "vjepa2", str(tmp_path / "empty"), "--out", str(tmp_path / "x.safetensors")]) != 0
    assert "no config.json" in capsys.readouterr().err


def test_vjepa2_presets_carry_its_positions_and_check_files(tmp_path: Path) -> None:
    from jepa.hub import create_encoder, save_encoder
    from jepa.models.vit import VideoViT

    enc = VideoViT.from_preset("vjepa2_vitl", embed_dim=96, depth=2, num_heads=2)  # the preset's non-size settings
    assert (enc.patch_size, enc.tubelet_size, enc.pos_encoding, enc.rope_layout) == (16, 2, "rope", "vjepa2")
    small = save_encoder(load_hf_folder_from(hf_model(96, 2), tmp_path), tmp_path / "small.safetensors")
    with pytest.raises(ValueError, match="not 'vjepa2_vitl'"):
        create_encoder("vjepa2_vitl", pretrained=small)


def load_hf_folder_from(model: torch.nn.Module, tmp_path: Path):  # noqa: ANN201
    model.save_pretrained(tmp_path / "hf_small")
    return load_hf_folder(tmp_path / "hf_small")


def reference_file(model: torch.nn.Module, path: Path, online_noise: float = 0.1) -> Path:
    """A checkpoint laid out as the reference V-JEPA 2 code saves one (``module.backbone.`` keys,
    ``blocks.i.attn.qkv`` holding query, key and value), written as the inverse of the renaming in
    ``transformers``' own V-JEPA 2 conversion script. ``encoder`` differs from ``target_encoder``."""
    target: dict[str, torch.Tensor] = {}
    sd = {k[len("encoder."):]: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    for key, val in sd.items():
        key = key.replace("layer.", "blocks.", 1) if key.startswith("layer.") else key
        key = key.replace("embeddings.patch_embeddings.", "patch_embed.").replace("layernorm.", "norm.")
        if ".attention.query." in key:
            kind = key.split(".attention.query.")[1]
            head = key.split(".attention.query.")[0]
            parts = [sd[f"layer.{head.split('.')[1]}.attention.{n}.{kind}"] for n in ("query", "key", "value")]
            target[f"module.backbone.{head}.attn.qkv.{kind}"] = torch.cat(parts)
            continue
        if ".attention.key." in key or ".attention.value." in key:
            continue
        target["module.backbone." + key.replace(".attention.", ".attn.")] = val.clone()
    target["module.backbone.pos_embed"] = torch.zeros(1, 8, int(sd["layernorm.weight"].shape[0]))  # unused with RoPE
    online = {k: v + online_noise * torch.randn_like(v) for k, v in target.items()}
    torch.save({"encoder": online, "target_encoder": target, "predictor": reference_predictor_sd(model),
                "epoch": 3, "lr": 1e-4}, path)
    return path


def reference_predictor_sd(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The predictor as the reference code saves it (``predictor_embed``, ``mask_tokens.i``,
    ``predictor_blocks.i.attn.qkv``, ``predictor_norm``, ``predictor_proj``): the inverse of
    ``transformers``' conversion script's predictor renaming."""
    sd = {k[len("predictor."):]: v for k, v in model.state_dict().items() if k.startswith("predictor.")}
    out: dict[str, torch.Tensor] = {}
    for i, token in enumerate(sd.pop("embeddings.mask_tokens")):
        out[f"module.backbone.mask_tokens.{i}"] = token.clone()  # [1, 1, D] each
    for key, val in sd.items():
        if ".attention.key." in key or ".attention.value." in key:
            continue
        if ".attention.query." in key:
            head, kind = key.split(".attention.query.")
            qkv = torch.cat([sd[f"{head}.attention.{n}.{kind}"] for n in ("query", "key", "value")])
            out[f"module.backbone.{head.replace('layer.', 'predictor_blocks.', 1)}.attn.qkv.{kind}"] = qkv
            continue
        key = key.replace("embeddings.predictor_embeddings.", "predictor_embed.").replace(".attention.", ".attn.")
        key = key.replace("layer.", "predictor_blocks.", 1) if key.startswith("layer.") else key
        key = "predictor_norm." + key[len("layernorm."):] if key.startswith("layernorm.") else key
        key = "predictor_proj." + key[len("proj."):] if key.startswith("proj.") else key
        out["module.backbone." + key] = val.clone()
    out["module.backbone.predictor_pos_embed"] = torch.zeros(1, 8, int(sd["proj.weight"].shape[1]))  # unused with RoPE
    return out


def predictions(model: torch.nn.Module, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``VJEPA2Model``'s predictor output for every other token as context, the rest as targets:
    (its encoder tokens, context ids, target ids, its predictions)."""
    with torch.no_grad():
        tokens = model(pixel_values_videos=video, skip_predictor=True).last_hidden_state
    b, n, _ = tokens.shape
    ctx, tgt = torch.arange(0, n, 2).repeat(b, 1), torch.arange(1, n, 2).repeat(b, 1)
    with torch.no_grad():
        out = model(pixel_values_videos=video, context_mask=[ctx], target_mask=[tgt]).predictor_output.last_hidden_state
    return tokens, ctx, tgt, out


def our_predictions(pred: torch.nn.Module, tokens: torch.Tensor, ctx: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        context = tokens.gather(1, ctx[..., None].expand(-1, -1, tokens.shape[-1]))
        return pred(context, ctx, tgt, (2, 4, 4))


@pytest.mark.parametrize(("hidden", "heads"), [(96, 2), (96, 4)])
def test_converted_predictor_matches_vjepa2model(hidden: int, heads: int, tmp_path: Path) -> None:
    from jepa.convert.vjepa2 import hf_predictor, read_hf_folder, reference_predictor
    from jepa.models.predictor import MaskedPredictor

    model = hf_model(hidden, heads)
    model.save_pretrained(tmp_path / "hf")
    tokens, ctx, tgt, ref = predictions(model, torch.randn(2, 4, 3, 32, 32))
    from_folder = hf_predictor(*read_hf_folder(tmp_path / "hf"))
    torch.save({"target_encoder": {}, "predictor": reference_predictor_sd(model)}, tmp_path / "vit.pt")
    from_file = reference_predictor(torch.load(tmp_path / "vit.pt", weights_only=True), "vit.pt", num_heads=2)
    for pconfig, sd in (from_folder, from_file):
        assert pconfig["rope_layout"] == "vjepa2" and pconfig["predictor_embed_dim"] == 32
        keys = ("predictor_embed_dim", "depth", "num_heads", "mlp_ratio", "pos_encoding", "rope_layout")
        pred = MaskedPredictor(hidden, (2, 4, 4), **{k: pconfig[k] for k in keys}).eval()
        pred.load_state_dict(sd)
        torch.testing.assert_close(our_predictions(pred, tokens, ctx, tgt), ref, atol=2e-5, rtol=1e-4)
        half = MaskedPredictor(hidden, (2, 4, 4), **{**{k: pconfig[k] for k in keys}, "rope_layout": "half"}).eval()
        half.load_state_dict(sd)  # the same weights with our own rotary layout predict something else
        assert (our_predictions(half, tokens, ctx, tgt) - ref).abs().max() > 1e-3


@pytest.mark.parametrize(("hidden", "heads"), [(96, 2), (96, 4)])
def test_reference_checkpoint_matches_vjepa2model(hidden: int, heads: int, tmp_path: Path) -> None:
    from jepa.convert.vjepa2 import load_reference_checkpoint

    model = hf_model(hidden, heads)
    ref_file = reference_file(model, tmp_path / "vit.pt")
    enc = load_reference_checkpoint(ref_file, num_heads=heads, crop_size=32, num_frames=4)
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        ref = model(pixel_values_videos=video, skip_predictor=True).last_hidden_state
        ours = enc.forward_features(video.permute(0, 2, 1, 3, 4))
        online = load_reference_checkpoint(ref_file, which="encoder", num_heads=heads, crop_size=32, num_frames=4)
        other = online.forward_features(video.permute(0, 2, 1, 3, 4))
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)
    assert (other - ref).abs().max() > 1e-2  # the online encoder is another set of weights
    assert enc.config["rope_layout"] == "vjepa2" and enc.meta["data"] == {"num_frames": 4, "crop_size": 32}


def test_jepa_convert_reads_reference_files_and_names_what_is_missing(tmp_path: Path, capsys) -> None:
    from jepa.hub import load_encoder
    from jepa.training.cli import main

    ref_file = reference_file(hf_model(96, 2), tmp_path / "vit.pt")
    out = tmp_path / "enc.safetensors"
    # width 96 / depth 2 is no V-JEPA 2 size: the heads cannot be read off the shapes
    assert main(["convert", "vjepa2", str(ref_file), "--out", str(out)]) != 0
    assert "--num-heads" in capsys.readouterr().err and not out.exists()
    assert main(["convert", "vjepa2", str(ref_file), "--out", str(out), "--num-heads", "2", "--crop-size", "32",
                 "--frames", "4"]) == 0
    assert load_encoder(out).config["num_heads"] == 2
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    assert main(["convert", "vjepa2", str(tmp_path / "other.pt"), "--out", str(tmp_path / "o.safetensors")]) != 0
    assert "not a V-JEPA 2 reference checkpoint" in capsys.readouterr().err
