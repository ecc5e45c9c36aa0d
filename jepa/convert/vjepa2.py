"""V-JEPA 2 encoders from Hugging Face ``transformers`` checkpoints into ``VideoViT``.

A ``VJEPA2Model`` folder (``config.json`` + ``model.safetensors``, as ``save_pretrained`` writes
it and as the hub serves ``facebook/vjepa2-*``) or its state dict becomes a ``VideoViT`` with
V-JEPA 2's architecture: patch 16, tubelet 2, pre-norm blocks, GELU MLP, a final LayerNorm, and
its exact 3D RoPE (``pos_encoding="rope"``, ``rope_layout="vjepa2"``; see ``jepa.models.pos_embed``).

The mapping, per block ``i`` (``encoder.layer.i`` -> ``blocks.blocks.i``):
  attention.query / key / value  -> attn.qkv (concatenated), query and key rows reordered within
                                    each head from V-JEPA 2's interleaved rotary pairs to ours
  attention.proj, norm1, norm2, mlp.fc1, mlp.fc2 -> the same names
plus ``encoder.embeddings.patch_embeddings.proj`` -> ``patch_embed.proj`` and
``encoder.layernorm`` -> ``norm``. The predictor is not converted yet. Only ``.safetensors``
files are read (no pickle); equality with ``VJEPA2Model`` is tested on a small random config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from jepa.models.vit import VideoViT

ENCODER_PREFIX = "encoder."


def rope_channel_order(head_dim: int) -> torch.Tensor:
    """For one head: the V-JEPA 2 channel that goes to each of our channels (a permutation of
    ``range(head_dim)``): in each axis part of width ``2m``, our ``j`` <- its ``2j`` and our
    ``j + m`` <- its ``2j + 1``; the unrotated remainder stays in place."""
    part = 2 * (head_dim // 6)
    m = part // 2
    order = []
    for a in range(3):
        base = a * part
        order += [base + 2 * j for j in range(m)] + [base + 2 * j + 1 for j in range(m)]
    order += list(range(3 * part, head_dim))
    return torch.tensor(order)


def config_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """``VideoViT`` arguments from a ``VJEPA2Config`` dict."""
    patch = hf.get("patch_size", 16)
    patch = patch[0] if isinstance(patch, list | tuple) else patch
    crop = int(hf.get("crop_size", 256))
    return dict(
        embed_dim=int(hf.get("hidden_size", 1024)), depth=int(hf.get("num_hidden_layers", 24)),
        num_heads=int(hf.get("num_attention_heads", 16)), mlp_ratio=float(hf.get("mlp_ratio", 4.0)),
        patch_size=int(patch), tubelet_size=int(hf.get("tubelet_size", 2)), in_chans=int(hf.get("in_chans", 3)),
        input_size=(int(hf.get("frames_per_clip", 64)), crop, crop), qkv_bias=bool(hf.get("qkv_bias", True)),
        pos_encoding="rope", rope_layout="vjepa2",
    )


def state_dict_from_hf(sd: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Our ``VideoViT`` state dict from a ``VJEPA2Model`` (or ``VJEPA2Encoder``) state dict."""
    sd = {k[len(ENCODER_PREFIX):] if k.startswith(ENCODER_PREFIX) else k: v for k, v in sd.items()}
    d, heads = config["embed_dim"], config["num_heads"]
    head_dim = d // heads
    order = rope_channel_order(head_dim)
    rows = torch.cat([h * head_dim + order for h in range(heads)])  # reorder rows of q and k, per head
    out: dict[str, torch.Tensor] = {
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.proj.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.proj.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    for i in range(config["depth"]):
        src, dst = f"layer.{i}.", f"blocks.blocks.{i}."
        for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
            for p in ("weight", "bias"):
                out[dst + f"{name}.{p}"] = sd[src + f"{name}.{p}"]
        for p in ("weight", "bias"):
            out[dst + f"attn.proj.{p}"] = sd[src + f"attention.proj.{p}"]
        q, k, v = (sd[src + f"attention.{n}.weight"] for n in ("query", "key", "value"))
        out[dst + "attn.qkv.weight"] = torch.cat([q[rows], k[rows], v])
        if config.get("qkv_bias", True):
            qb, kb, vb = (sd[src + f"attention.{n}.bias"] for n in ("query", "key", "value"))
            out[dst + "attn.qkv.bias"] = torch.cat([qb[rows], kb[rows], vb])
    return out


def load_hf_folder(path: str | os.PathLike[str]) -> VideoViT:
    """A ``VideoViT`` from a ``VJEPA2Model`` folder (``config.json`` + ``*.safetensors``)."""
    from safetensors.torch import load_file

    folder = Path(path)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder}: no config.json; expected a folder written by VJEPA2Model.save_pretrained "
                                "(config.json and model.safetensors)")
    hf = json.loads(config_file.read_text())
    if hf.get("model_type") != "vjepa2":
        raise ValueError(f"{config_file}: model_type is {hf.get('model_type')!r}, not 'vjepa2'")
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"{folder}: no .safetensors weights (pickled .bin files are not read)")
    sd: dict[str, torch.Tensor] = {}
    for shard in shards:
        sd.update(load_file(str(shard)))
    config = config_from_hf(hf)
    enc = VideoViT(**config)
    missing, unexpected = enc.load_state_dict(state_dict_from_hf(sd, config), strict=False)
    if missing:
        raise ValueError(f"{folder}: weights missing for {missing[:5]}")
    enc.meta = {"source": str(folder), "converted_from": "transformers VJEPA2Model",
                "data": {"num_frames": int(hf.get("frames_per_clip", 64)), "crop_size": config["input_size"][1]}}
    return enc.eval()
