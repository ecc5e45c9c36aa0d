"""The encoder's timm-shaped surface: forward_features / forward_head, reset_classifier,
forward_intermediates, pretrained_cfg, and classifiers that survive export and load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jepa.hub import create_encoder, load_encoder, save_encoder
from jepa.models.vit import VideoViT


def small() -> VideoViT:
    torch.manual_seed(0)
    return VideoViT.from_preset("vit_pico", patch_size=8, tubelet_size=2, input_size=(4, 32, 32)).eval()


CLIP = torch.randn(2, 3, 4, 32, 32)


def test_features_head_and_classifier() -> None:
    enc = small()
    with torch.no_grad():
        tokens = enc.forward_features(CLIP)
        assert tokens.shape == (2, 2 * 4 * 4, 96)
        torch.testing.assert_close(enc(CLIP), tokens)  # an encoder without a classifier returns tokens
        torch.testing.assert_close(enc.forward_head(tokens, pre_logits=True), tokens.mean(1))
        assert enc.num_classes == 0 and isinstance(enc.get_classifier(), torch.nn.Identity)
        plain_keys = set(enc.state_dict())
        enc.reset_classifier(5)
        logits = enc(CLIP)
        assert logits.shape == (2, 5) and enc.num_classes == 5
        torch.testing.assert_close(logits, enc.get_classifier()(tokens.mean(1)))
        assert enc.config["num_classes"] == 5 and set(enc.state_dict()) - plain_keys == {"head.weight", "head.bias"}
        enc.reset_classifier(0)
        torch.testing.assert_close(enc(CLIP), tokens)
        assert "num_classes" not in enc.config and set(enc.state_dict()) == plain_keys
    with pytest.raises(ValueError, match="global_pool"):
        enc.reset_classifier(3, "token")


def test_forward_intermediates() -> None:
    enc = small()
    with torch.no_grad():
        final, inter = enc.forward_intermediates(CLIP)
        assert len(inter) == 4 and inter[0].shape == (2, 96, 2, 4, 4)  # [B, D, t, h, w]
        torch.testing.assert_close(final, enc.forward_features(CLIP))
        reference = enc.get_intermediate_layers(CLIP, [0, 3], norm=False)
        nlc = enc.forward_intermediates(CLIP, indices=[0, -1], output_fmt="NLC", intermediates_only=True)
        for a, b in zip(nlc, reference, strict=True):
            torch.testing.assert_close(a, b)
        # The token grid layout: token (t, y, x) sits at [:, :, t, y, x].
        torch.testing.assert_close(inter[3][:, :, 1, 2, 3], nlc[1][:, 1 * 16 + 2 * 4 + 3])
        last2 = enc.forward_intermediates(CLIP, indices=2, norm=True, intermediates_only=True, stop_early=True)
        normed = enc.get_intermediate_layers(CLIP, 2, norm=True)
        torch.testing.assert_close(last2[1], normed[1].transpose(1, 2).reshape(2, 96, 2, 4, 4))
    for bad in (99, 0, [4], [-5]):
        with pytest.raises(ValueError, match="out of range|blocks asked"):
            enc.forward_intermediates(CLIP, indices=bad)
    with pytest.raises(ValueError, match="output_fmt"):
        enc.forward_intermediates(CLIP, output_fmt="NHWC")


def test_pretrained_cfg_and_classifiers_survive_export(tmp_path: Path) -> None:
    enc = small()
    cfg = enc.pretrained_cfg
    assert cfg["input_size"] == (3, 4, 32, 32) and cfg["num_frames"] == 4 and len(cfg["mean"]) == 3
    meta = {"source": "run", "data": {"num_frames": 8, "frame_step": 3, "crop_size": 32,
                                      "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    path = save_encoder(enc, tmp_path / "enc.safetensors", meta)
    loaded = load_encoder(path)
    cfg = loaded.pretrained_cfg
    assert cfg["input_size"] == (3, 8, 32, 32) and cfg["frame_step"] == 3 and cfg["mean"] == (0.5, 0.5, 0.5)
    assert loaded.default_cfg == cfg
    # timm's create_model(name, pretrained=..., num_classes=N): the encoder's weights and a new classifier.
    clf = create_encoder("vit_pico", pretrained=path, num_classes=3)
    with torch.no_grad():
        assert clf(CLIP).shape == (2, 3)
        torch.testing.assert_close(clf.forward_features(CLIP), enc.forward_features(CLIP))
        clf.head.weight.normal_()
        again = load_encoder(save_encoder(clf, tmp_path / "clf.safetensors"))
        torch.testing.assert_close(again(CLIP), clf(CLIP))  # the classifier travels with the file
