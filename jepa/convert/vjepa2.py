"""V-JEPA 2 encoders into ``VideoViT``: from Hugging Face ``transformers`` folders and from the
reference repository's checkpoint files.

A ``VJEPA2Model`` folder (``config.json`` + ``model.safetensors``, as ``save_pretrained`` writes
it and as the hub serves ``facebook/vjepa2-*``), or a checkpoint file of the reference code
(``vitl.pt``, ``vith.pt``, ``vitg.pt``, ``vitg-384.pt``: a dict with ``encoder``,
``target_encoder`` and ``predictor`` state dicts under ``module.backbone.``), becomes a
``VideoViT`` with
V-JEPA 2's architecture: patch 16, tubelet 2, pre-norm blocks, GELU MLP, a final LayerNorm, and
its exact 3D RoPE (``pos_encoding="rope"``, ``rope_layout="vjepa2"``; see ``jepa.models.pos_embed``).

The mapping, per block ``i`` (``encoder.layer.i`` -> ``blocks.blocks.i``):
  attention.query / key / value  -> attn.qkv (concatenated), query and key rows reordered within
                                    each head from V-JEPA 2's interleaved rotary pairs to ours
  attention.proj, norm1, norm2, mlp.fc1, mlp.fc2 -> the same names
plus ``encoder.embeddings.patch_embeddings.proj`` -> ``patch_embed.proj`` and
``encoder.layernorm`` -> ``norm``. The reference files name the same tensors as the reference
code does (``blocks.i.attn.qkv`` holding query, key and value, ``patch_embed``, ``norm``), the
names ``transformers``' own conversion maps from; they are renamed to the ``transformers`` names
first, then mapped as above. A reference file does not store the number of heads or the crop
size: the heads come from the V-JEPA 2 size the widths match (L/H/g) or ``num_heads``, the crop
from ``crop_size`` (256; 384 for ``vitg-384``).

The predictor (``predictor.*`` in a folder; ``predictor_embed``, ``mask_tokens.i``,
``predictor_blocks.i``, ``predictor_norm``, ``predictor_proj`` in a reference file) maps the same
way onto ``MaskedPredictor`` with ``pos_encoding="rope", rope_layout="vjepa2"``:
``embeddings.predictor_embeddings`` -> ``embed``, ``layernorm`` -> ``norm``, ``proj`` -> ``proj``,
blocks as the encoder's. V-JEPA 2 keeps one mask token per mask kind (10 slots, 2 trained); ours
has one and takes the token ``VJEPA2Model`` predicts with by default (``mask_tokens[1]``).
``jepa.methods.init_from`` uses it; ``jepa.convert.to_hf`` writes the way back.

Only ``.safetensors`` folders and ``weights_only`` torch files are read (no code from a file);
equality with ``VJEPA2Model`` is tested on small random configs, for both kinds of source.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from jepa.models.vit import PRESETS, VideoViT

ENCODER_PREFIX = "encoder."
PREDICTOR_PREFIX = "predictor."
# transformers' VJEPA2Model predicts with mask_tokens[1 % n] unless told otherwise (mask_index=1).
MASK_TOKEN_INDEX = 1
# The V-JEPA 2 sizes a reference file's widths identify: (embed_dim, depth) -> heads.
REFERENCE_HEADS = {(PRESETS[n][0], PRESETS[n][1]): PRESETS[n][2] for n in ("vjepa2_vitl", "vjepa2_vith", "vjepa2_vitg")}
REFERENCE_KEYS = ("target_encoder", "encoder")


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


def _rope_rows(dim: int, heads: int) -> torch.Tensor:
    """Rows of a query or key projection in our order, as indices into V-JEPA 2's (per head)."""
    head_dim = dim // heads
    order = rope_channel_order(head_dim)
    return torch.cat([h * head_dim + order for h in range(heads)])


def _blocks_from_hf(sd: dict[str, torch.Tensor], depth: int, dim: int, heads: int, qkv_bias: bool) -> dict[str, torch.Tensor]:
    """``layer.i.*`` (``transformers`` names) -> our ``blocks.blocks.i.*``, query and key rows
    reordered to our rotary layout."""
    rows = _rope_rows(dim, heads)
    out: dict[str, torch.Tensor] = {}
    for i in range(depth):
        src, dst = f"layer.{i}.", f"blocks.blocks.{i}."
        for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
            for p in ("weight", "bias"):
                out[dst + f"{name}.{p}"] = sd[src + f"{name}.{p}"]
        for p in ("weight", "bias"):
            out[dst + f"attn.proj.{p}"] = sd[src + f"attention.proj.{p}"]
        q, k, v = (sd[src + f"attention.{n}.weight"] for n in ("query", "key", "value"))
        out[dst + "attn.qkv.weight"] = torch.cat([q[rows], k[rows], v])
        if qkv_bias:
            qb, kb, vb = (sd[src + f"attention.{n}.bias"] for n in ("query", "key", "value"))
            out[dst + "attn.qkv.bias"] = torch.cat([qb[rows], kb[rows], vb])
    return out


def state_dict_from_hf(sd: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Our ``VideoViT`` state dict from a ``VJEPA2Model`` (or ``VJEPA2Encoder``) state dict."""
    sd = {k[len(ENCODER_PREFIX):] if k.startswith(ENCODER_PREFIX) else k: v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.proj.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.proj.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    out.update(_blocks_from_hf(sd, config["depth"], config["embed_dim"], config["num_heads"],
                               config.get("qkv_bias", True)))
    return out


def predictor_config_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """``MaskedPredictor`` architecture (plus ``qkv_bias``) from a ``VJEPA2Config`` dict."""
    return dict(
        embed_dim=int(hf.get("hidden_size", 1024)), predictor_embed_dim=int(hf.get("pred_hidden_size", 384)),
        depth=int(hf.get("pred_num_hidden_layers", 12)), num_heads=int(hf.get("pred_num_attention_heads", 12)),
        mlp_ratio=float(hf.get("pred_mlp_ratio", 4.0)), pos_encoding="rope", rope_layout="vjepa2",
        qkv_bias=bool(hf.get("qkv_bias", True)),
    )


def predictor_state_dict_from_hf(sd: dict[str, torch.Tensor], pconfig: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Our ``MaskedPredictor`` state dict from ``VJEPA2Model``'s ``predictor.*`` weights (the
    prefix may be there or not). V-JEPA 2 keeps one mask token per mask kind; ours has one, and it
    takes the token ``VJEPA2Model`` predicts with by default (index ``MASK_TOKEN_INDEX`` mod their
    number)."""
    sd = {k[len(PREDICTOR_PREFIX):] if k.startswith(PREDICTOR_PREFIX) else k: v for k, v in sd.items()}
    tokens = sd["embeddings.mask_tokens"]  # [n, 1, 1, Dp]
    out: dict[str, torch.Tensor] = {
        "embed.weight": sd["embeddings.predictor_embeddings.weight"],
        "embed.bias": sd["embeddings.predictor_embeddings.bias"],
        "mask_token": tokens[MASK_TOKEN_INDEX % tokens.shape[0]].reshape(1, 1, -1),
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
        "proj.weight": sd["proj.weight"],
        "proj.bias": sd["proj.bias"],
    }
    out.update(_blocks_from_hf(sd, pconfig["depth"], pconfig["predictor_embed_dim"], pconfig["num_heads"],
                               pconfig.get("qkv_bias", True)))
    return out


def read_hf_folder(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A ``VJEPA2Model`` folder's config dict and weights (``config.json`` + ``*.safetensors``)."""
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
    return hf, sd


def hf_predictor(hf: dict[str, Any], sd: dict[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The predictor of a ``VJEPA2Model`` folder (its architecture and our state dict), or None if
    the folder holds no predictor weights."""
    if not any(k.startswith(PREDICTOR_PREFIX) for k in sd):
        return None
    pconfig = predictor_config_from_hf(hf)
    return pconfig, predictor_state_dict_from_hf(sd, pconfig)


def load_hf_folder(path: str | os.PathLike[str]) -> VideoViT:
    """A ``VideoViT`` from a ``VJEPA2Model`` folder (``config.json`` + ``*.safetensors``)."""
    return hf_encoder(*read_hf_folder(path), source=str(path))


def hf_encoder(hf: dict[str, Any], sd: dict[str, torch.Tensor], source: str) -> VideoViT:
    """The encoder of a ``VJEPA2Model`` folder that :func:`read_hf_folder` read."""
    config = config_from_hf(hf)
    enc = VideoViT(**config)
    missing, unexpected = enc.load_state_dict(state_dict_from_hf(sd, config), strict=False)
    if missing:
        raise ValueError(f"{source}: weights missing for {missing[:5]}")
    enc.meta = {"source": source, "converted_from": "transformers VJEPA2Model",
                "data": {"num_frames": int(hf.get("frames_per_clip", 64)), "crop_size": config["input_size"][1]}}
    return enc.eval()


def _clean_reference_key(key: str) -> str:
    for prefix in ("module.", "backbone."):
        key = key.replace(prefix, "")
    return key


def _put_attention(out: dict[str, torch.Tensor], key: str, val: torch.Tensor) -> None:
    """A reference block tensor under its ``transformers`` name(s): ``attn.qkv`` splits into
    ``attention.query / key / value``; other ``attn.`` names become ``attention.``."""
    if ".attn.qkv." in key:
        head, tail = key.split(".attn.qkv.")
        for name, part in zip(("query", "key", "value"), val.chunk(3, dim=0), strict=True):
            out[f"{head}.attention.{name}.{tail}"] = part
        return
    out[key.replace(".attn.", ".attention.")] = val


def hf_names_from_reference(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A reference encoder state dict (``module.backbone.blocks.0.attn.qkv.weight``, ...) under the
    ``transformers`` names (``layer.0.attention.query.weight``, ...); ``pos_embed`` (unused with
    RoPE) is dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, val in sd.items():
        key = _clean_reference_key(key)
        if key == "pos_embed":
            continue
        if key.startswith("blocks."):
            key = "layer." + key[len("blocks."):]
        key = key.replace("patch_embed.", "embeddings.patch_embeddings.")
        if key.startswith("norm."):
            key = "layernorm." + key[len("norm."):]
        _put_attention(out, key, val)
    return out


def hf_predictor_names_from_reference(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A reference predictor state dict (``module.backbone.predictor_blocks.0.attn.qkv.weight``,
    ``mask_tokens.0``, ...) under the ``transformers`` names of ``VJEPA2Predictor`` (without the
    ``predictor.`` prefix); ``predictor_pos_embed`` (unused with RoPE) is dropped."""
    renames = (("predictor_embed.", "embeddings.predictor_embeddings."), ("predictor_blocks.", "layer."),
               ("predictor_norm.", "layernorm."), ("predictor_proj.", "proj."))
    out: dict[str, torch.Tensor] = {}
    tokens: dict[int, torch.Tensor] = {}
    for key, val in sd.items():
        key = _clean_reference_key(key)
        if key == "predictor_pos_embed":
            continue
        if key.startswith("mask_tokens."):
            tokens[int(key.split(".")[1])] = val.reshape(1, 1, -1)
            continue
        for old, new in renames:
            if key.startswith(old):
                key = new + key[len(old):]
        _put_attention(out, key, val)
    if tokens:
        out["embeddings.mask_tokens"] = torch.stack([tokens[i] for i in sorted(tokens)])
    return out


def reference_predictor(obj: dict[str, Any], source: str,
                        num_heads: int | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The predictor of a reference checkpoint (its architecture and our state dict), or None if
    the file has none or one this converter does not know (V-JEPA 2.1, AC). Its heads are V-JEPA
    2's 12 for its 384-wide predictors, else ``num_heads`` (the files do not store them)."""
    if not isinstance(obj.get("predictor"), dict):
        return None
    sd = hf_predictor_names_from_reference(obj["predictor"])
    needed = ("embeddings.predictor_embeddings.weight", "embeddings.mask_tokens", "layer.0.mlp.fc1.weight", "proj.weight")
    if any(k not in sd for k in needed):
        return None
    w = sd["embeddings.predictor_embeddings.weight"]  # [Dp, D]
    width = int(w.shape[0])
    heads = 12 if width == 384 else num_heads
    if heads is None:
        return None
    pconfig = dict(
        embed_dim=int(w.shape[1]), predictor_embed_dim=width,
        depth=len({k.split(".")[1] for k in sd if k.startswith("layer.")}), num_heads=int(heads),
        mlp_ratio=sd["layer.0.mlp.fc1.weight"].shape[0] / width, pos_encoding="rope", rope_layout="vjepa2",
        qkv_bias="layer.0.attention.query.bias" in sd,
    )
    return pconfig, predictor_state_dict_from_hf(sd, pconfig)


def config_from_reference(sd: dict[str, torch.Tensor], source: str, num_heads: int | None = None,
                          crop_size: int = 256, num_frames: int = 64) -> dict[str, Any]:
    """``VideoViT`` arguments read off a (renamed) reference state dict's shapes."""
    if "embeddings.patch_embeddings.proj.weight" not in sd or "layer.0.mlp.fc1.weight" not in sd:
        raise ValueError(f"{source}: not a V-JEPA 2 encoder (no patch_embed / blocks.0.mlp weights); "
                         "pass a V-JEPA 2 checkpoint such as vitl.pt, or a transformers VJEPA2Model folder")
    w = sd["embeddings.patch_embeddings.proj.weight"]  # [D, C, tubelet, patch, patch]
    d = int(w.shape[0])
    depth = len({k.split(".")[1] for k in sd if k.startswith("layer.")})
    heads = num_heads or REFERENCE_HEADS.get((d, depth))
    if heads is None:
        raise ValueError(f"{source}: an encoder of width {d} and depth {depth} is not a V-JEPA 2 size "
                         "(L, H or g); pass its number of heads (--num-heads)")
    return dict(
        embed_dim=d, depth=depth, num_heads=int(heads), mlp_ratio=sd["layer.0.mlp.fc1.weight"].shape[0] / d,
        patch_size=int(w.shape[-1]), tubelet_size=int(w.shape[2]), in_chans=int(w.shape[1]),
        input_size=(int(num_frames), int(crop_size), int(crop_size)), qkv_bias="layer.0.attention.query.bias" in sd,
        pos_encoding="rope", rope_layout="vjepa2",
    )


def read_reference(path: str | os.PathLike[str], trust: bool = False) -> dict[str, Any]:
    """A reference V-JEPA 2 checkpoint file as a dict (``weights_only`` unless ``trust``)."""
    from jepa.safe_load import describe_file, torch_load

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such V-JEPA 2 checkpoint file")
    try:
        obj = torch_load(p, trust=trust)
    except Exception as e:
        if isinstance(e, ValueError):  # UnsafeFileError: already one line naming the file
            raise
        raise ValueError(f"{p} is not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict) or not any(isinstance(obj.get(k), dict) for k in REFERENCE_KEYS):
        what = describe_file(obj) if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise ValueError(f"{p} is not a V-JEPA 2 reference checkpoint (no 'target_encoder' or 'encoder' state dict): "
                         f"it is {what}")
    return obj


def reference_heads(obj: dict[str, Any], num_heads: int | None = None) -> int | None:
    """The heads of a reference checkpoint's encoders: V-JEPA 2's for its L/H/g sizes, else
    ``num_heads`` (None if that is not given either)."""
    key = next(k for k in REFERENCE_KEYS if isinstance(obj.get(k), dict))
    names = {_clean_reference_key(k): v for k, v in obj[key].items()}
    w = names.get("patch_embed.proj.weight")
    depth = len({k.split(".")[1] for k in names if k.startswith("blocks.")})
    known = REFERENCE_HEADS.get((int(w.shape[0]), depth)) if w is not None else None
    return known or num_heads


def reference_encoder(obj: dict[str, Any], source: str, which: str = "target_encoder", num_heads: int | None = None,
                      crop_size: int = 256, num_frames: int = 64) -> VideoViT:
    """One encoder (``target_encoder`` or ``encoder``; the other if the file lacks it) of a
    checkpoint :func:`read_reference` returned. ``num_heads`` is needed only for sizes other than
    V-JEPA 2's L, H and g."""
    if which not in REFERENCE_KEYS:
        raise ValueError(f"which must be one of {', '.join(REFERENCE_KEYS)}, got {which!r}")
    key = which if isinstance(obj.get(which), dict) else next(k for k in REFERENCE_KEYS if isinstance(obj.get(k), dict))
    sd = hf_names_from_reference(obj[key])
    config = config_from_reference(sd, source, num_heads, crop_size, num_frames)
    enc = VideoViT(**config)
    missing, unexpected = enc.load_state_dict(state_dict_from_hf(sd, config), strict=False)
    if missing or unexpected:
        raise ValueError(f"{source}: its {key} does not map onto a V-JEPA 2 encoder (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}); V-JEPA 2.1 and AC checkpoints are not supported yet")
    enc.meta = {"source": source, "converted_from": f"V-JEPA 2 reference checkpoint ({key})",
                "data": {"num_frames": int(num_frames), "crop_size": int(crop_size)}}
    return enc.eval()


def load_reference_checkpoint(path: str | os.PathLike[str], which: str = "target_encoder", num_heads: int | None = None,
                              crop_size: int = 256, num_frames: int = 64, trust: bool = False) -> VideoViT:
    """A ``VideoViT`` from a reference V-JEPA 2 checkpoint file: the ``target_encoder`` (what the
    reference hub loads) or the online ``encoder``. Read with ``weights_only`` unless ``trust``."""
    return reference_encoder(read_reference(path, trust), str(path), which, num_heads, crop_size, num_frames)


def load_vjepa2(path: str | os.PathLike[str], **kwargs: Any) -> VideoViT:
    """A V-JEPA 2 encoder from a ``transformers`` folder or a reference checkpoint file."""
    p = Path(path)
    if p.is_dir():
        return load_hf_folder(p)
    return load_reference_checkpoint(p, **kwargs)
