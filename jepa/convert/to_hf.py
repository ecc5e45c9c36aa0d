"""Our encoders (and predictors) out to Hugging Face ``transformers``: a ``VJEPA2Model`` folder.

    jepa export outputs/my_run --out my_model --format transformers

    from transformers import AutoModel
    model = AutoModel.from_pretrained("my_model")
    feats = model(video, skip_predictor=True).last_hidden_state   # video [B, T, C, H, W]

``transformers`` has one V-JEPA architecture, ``VJEPA2Model``, and an encoder fits it only when it
is V-JEPA 2's kind of ViT: one Conv3d patchify (no convolutional stem), square clips, pre-norm
blocks with a GELU MLP and a final LayerNorm (ours always are), and V-JEPA 2's exact 3D RoPE
(``pos_encoding="rope"`` with ``rope_layout="vjepa2"``; the ``vjepa2_*`` presets have it, any other
preset gets it by setting both keys). Encoders with added sin-cos positions or our "half" RoPE
layout compute something ``VJEPA2Model`` cannot express, and are refused with the reason.

The predictor goes out too when it has the same positions (``predictor_rope_layout: vjepa2``);
its single mask token becomes ``pred_num_mask_tokens = 1``, so ``VJEPA2Model``'s default mask
index picks it. Without one (an encoder file, or a predictor in our layout) the folder holds the
encoder only, its ``config.json`` describes a one-block predictor, and ``from_pretrained`` says
that those weights are newly initialised: use ``skip_predictor=True``.

Next to ``config.json`` and ``model.safetensors`` goes a ``VJEPA2VideoProcessor`` configuration
with the clip size and normalisation the encoder was trained with, so ``AutoVideoProcessor``
prepares clips as our evaluation transform does (resize the short side to crop / 0.875, centre
crop, normalise; the interpolation may differ in the last digits). The weights
are the inverse of ``jepa.convert.vjepa2``'s mapping (query and key rows back to V-JEPA 2's
interleaved rotary pairs), so ``jepa.convert.vjepa2.load_hf_folder`` reads the folder back
exactly; both directions are tested against ``VJEPA2Model`` itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from jepa.convert.vjepa2 import ENCODER_PREFIX, PREDICTOR_PREFIX, _rope_rows

LAYER_NORM_EPS = 1e-6  # ours, everywhere (VJEPA2Config's default too)


def hf_incompatibility(config: dict[str, Any]) -> list[str]:
    """Why an encoder (``VideoViT.config``) cannot be a ``VJEPA2Model`` encoder; [] if it can."""
    reasons = []
    pos, layout = config.get("pos_encoding", "sincos"), config.get("rope_layout", "half")
    if pos != "rope" or layout != "vjepa2":
        what = "sin-cos positions" if pos != "rope" else f"RoPE in our {layout!r} layout"
        reasons.append(f"it has {what}, and VJEPA2Model knows only V-JEPA 2's 3D RoPE (train with "
                       "model.init_args.pos_encoding rope and rope_layout vjepa2, or a vjepa2_* preset)")
    if config.get("conv_stem", False):
        reasons.append("it has a convolutional stem; VJEPA2Model patchifies with one Conv3d")
    t, h, w = config.get("input_size", (16, 224, 224))
    if h != w:
        reasons.append(f"its input is {h}x{w}; VJEPA2Model takes square clips (crop_size)")
    return reasons


def predictor_incompatibility(pconfig: dict[str, Any] | None, config: dict[str, Any]) -> str:
    """Why a predictor (``MaskedPredictor.config``) cannot go out with the encoder; '' if it can."""
    if pconfig is None:
        return "there is no predictor"
    if pconfig.get("pos_encoding") != "rope" or pconfig.get("rope_layout", "half") != "vjepa2":
        return ("the predictor's positions are not V-JEPA 2's RoPE (train with "
                "model.init_args.predictor_rope_layout vjepa2 to export it)")
    if bool(pconfig.get("qkv_bias", True)) != bool(config.get("qkv_bias", True)):
        return "encoder and predictor differ in qkv_bias; VJEPA2Config has one flag for both"
    if int(pconfig["embed_dim"]) != int(config["embed_dim"]):
        return "the predictor's output width is not the encoder's"
    return ""


def hf_config_kwargs(config: dict[str, Any], pconfig: dict[str, Any] | None) -> dict[str, Any]:
    """``VJEPA2Config`` arguments for an encoder and (when it goes out) its predictor. Without a
    predictor, a one-block predictor of the encoder's width is described (``VJEPA2Model`` always
    builds one)."""
    t, h, _ = config["input_size"]
    kw: dict[str, Any] = dict(
        patch_size=int(config["patch_size"]), crop_size=int(h), frames_per_clip=int(t),
        tubelet_size=int(config["tubelet_size"]), hidden_size=int(config["embed_dim"]),
        in_chans=int(config.get("in_chans", 3)), num_attention_heads=int(config["num_heads"]),
        num_hidden_layers=int(config["depth"]), mlp_ratio=float(config["mlp_ratio"]),
        qkv_bias=bool(config.get("qkv_bias", True)), layer_norm_eps=LAYER_NORM_EPS, hidden_act="gelu",
        drop_path_rate=0.0, pred_num_mask_tokens=1,
    )
    if pconfig is not None:
        kw.update(pred_hidden_size=int(pconfig["predictor_embed_dim"]), pred_num_hidden_layers=int(pconfig["depth"]),
                  pred_num_attention_heads=int(pconfig["num_heads"]), pred_mlp_ratio=float(pconfig["mlp_ratio"]))
    else:
        kw.update(pred_hidden_size=kw["hidden_size"], pred_num_hidden_layers=1,
                  pred_num_attention_heads=kw["num_attention_heads"], pred_mlp_ratio=kw["mlp_ratio"])
    return kw


def _blocks_to_hf(sd: dict[str, torch.Tensor], depth: int, dim: int, heads: int, qkv_bias: bool,
                  prefix: str) -> dict[str, torch.Tensor]:
    """Our ``blocks.blocks.i.*`` -> ``{prefix}layer.i.*``, query and key rows back to V-JEPA 2's
    rotary order (the inverse of ``jepa.convert.vjepa2._blocks_from_hf``)."""
    rows = _rope_rows(dim, heads)

    def unorder(x: torch.Tensor) -> torch.Tensor:
        y = torch.empty_like(x)
        y[rows] = x  # ours[j] = theirs[rows[j]]
        return y

    out: dict[str, torch.Tensor] = {}
    for i in range(depth):
        src, dst = f"blocks.blocks.{i}.", f"{prefix}layer.{i}."
        for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
            for p in ("weight", "bias"):
                out[dst + f"{name}.{p}"] = sd[src + f"{name}.{p}"]
        for p in ("weight", "bias"):
            out[dst + f"attention.proj.{p}"] = sd[src + f"attn.proj.{p}"]
        params = ("weight", "bias") if qkv_bias else ("weight",)
        for p in params:
            q, k, v = sd[src + f"attn.qkv.{p}"].chunk(3, dim=0)
            out[dst + f"attention.query.{p}"] = unorder(q)
            out[dst + f"attention.key.{p}"] = unorder(k)
            out[dst + f"attention.value.{p}"] = v
    return out


def encoder_state_dict_to_hf(sd: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A ``VideoViT`` state dict as ``VJEPA2Model``'s ``encoder.*`` weights."""
    e = ENCODER_PREFIX
    out = {
        f"{e}embeddings.patch_embeddings.proj.weight": sd["patch_embed.proj.weight"],
        f"{e}embeddings.patch_embeddings.proj.bias": sd["patch_embed.proj.bias"],
        f"{e}layernorm.weight": sd["norm.weight"],
        f"{e}layernorm.bias": sd["norm.bias"],
    }
    out.update(_blocks_to_hf(sd, int(config["depth"]), int(config["embed_dim"]), int(config["num_heads"]),
                             bool(config.get("qkv_bias", True)), e))
    return out


def predictor_state_dict_to_hf(sd: dict[str, torch.Tensor], pconfig: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A ``MaskedPredictor`` state dict as ``VJEPA2Model``'s ``predictor.*`` weights."""
    p = PREDICTOR_PREFIX
    out = {
        f"{p}embeddings.predictor_embeddings.weight": sd["embed.weight"],
        f"{p}embeddings.predictor_embeddings.bias": sd["embed.bias"],
        f"{p}embeddings.mask_tokens": sd["mask_token"].reshape(1, 1, 1, -1),
        f"{p}layernorm.weight": sd["norm.weight"],
        f"{p}layernorm.bias": sd["norm.bias"],
        f"{p}proj.weight": sd["proj.weight"],
        f"{p}proj.bias": sd["proj.bias"],
    }
    out.update(_blocks_to_hf(sd, int(pconfig["depth"]), int(pconfig["predictor_embed_dim"]),
                             int(pconfig["num_heads"]), bool(pconfig.get("qkv_bias", True)), p))
    return out


def _processor(kw: dict[str, Any], data: dict[str, Any]) -> Any:
    """A ``VJEPA2VideoProcessor`` matching our evaluation transform, or None when this
    ``transformers`` has no video processor."""
    try:
        from transformers import VJEPA2VideoProcessor
    except ImportError:
        return None
    crop = int(kw["crop_size"])
    short = int(round(crop / float(data.get("eval_crop_fraction", 0.875))))
    kwargs: dict[str, Any] = dict(crop_size={"height": crop, "width": crop}, size={"shortest_edge": short})
    if "mean" in data and "std" in data:
        kwargs.update(image_mean=list(data["mean"]), image_std=list(data["std"]))
    return VJEPA2VideoProcessor(**kwargs)


def save_hf_folder(encoder: torch.nn.Module, out: str | os.PathLike[str], predictor: torch.nn.Module | None = None,
                   meta: dict[str, Any] | None = None) -> list[str]:
    """Write ``encoder`` (a ``VideoViT``) and, where it fits, ``predictor`` (a ``MaskedPredictor``)
    as a ``VJEPA2Model`` folder ``out``; returns what was written, one line each. Raises
    ``ValueError`` (one line) for an encoder ``VJEPA2Model`` cannot express."""
    try:
        from safetensors.torch import save_file
        from transformers import VJEPA2Config
    except ImportError as e:
        raise ValueError(f"--format transformers needs the transformers package ({e}); "
                         "pip install 'jepa[hf]' (or transformers>=4.53)") from e
    config = dict(getattr(encoder, "config", {}))
    reasons = hf_incompatibility(config)
    if reasons:
        raise ValueError(f"this encoder cannot be written as a transformers VJEPA2Model: {'; '.join(reasons)}")
    pconfig = dict(getattr(predictor, "config", {})) if predictor is not None else None
    why_not = predictor_incompatibility(pconfig, config)
    kw = hf_config_kwargs(config, None if why_not else pconfig)
    hf_config = VJEPA2Config(**kw)
    hf_config.architectures = ["VJEPA2Model"]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    weights = encoder_state_dict_to_hf(sd, config)
    if predictor is not None and not why_not:
        psd = {k: v.detach().cpu() for k, v in predictor.state_dict().items()}
        weights.update(predictor_state_dict_to_hf(psd, pconfig or {}))
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    hf_config.save_pretrained(str(folder))
    lines = [f"{folder}/config.json, model.safetensors: VJEPA2Model encoder ({kw['num_hidden_layers']} blocks, "
             f"width {kw['hidden_size']}, {kw['frames_per_clip']} x {kw['crop_size']} px clips)"]
    if why_not:
        lines.append(f"predictor not exported: {why_not}; AutoModel.from_pretrained initialises its "
                     "predictor randomly (it says so): call the model with skip_predictor=True")
    else:
        lines.append(f"predictor exported ({kw['pred_num_hidden_layers']} blocks, width {kw['pred_hidden_size']})")
    data = dict((meta or getattr(encoder, "meta", {}) or {}).get("data") or {})
    processor = _processor(kw, data)
    if processor is not None:
        processor.save_pretrained(str(folder))
        lines.append(f"video processor: resize the short side to {processor.size['shortest_edge']}, centre crop "
                     f"{kw['crop_size']}, mean/std "
                     f"{'of training' if 'mean' in data else 'ImageNet (unknown for this encoder)'}")
    return lines


def predictor_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module | None:
    """The ``MaskedPredictor`` of a ``jepa fit`` pretraining checkpoint, built from its
    hyper-parameters and loaded; None when the checkpoint holds none."""
    from jepa.models.predictor import MaskedPredictor, default_predictor_size
    from jepa.models.vit import PRESET_DEFAULTS, PRESETS

    hp = ckpt.get("hyper_parameters") or {}
    sd = {k[len(PREDICTOR_PREFIX):]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith(PREDICTOR_PREFIX)}
    if not sd or hp.get("encoder") not in PRESETS or "input_size" not in hp:
        return None
    d, depth, _, _ = PRESETS[hp["encoder"]]
    width, pdepth, heads = default_predictor_size(d, depth)
    t, h, w = hp["input_size"]
    grid = (t // hp["tubelet_size"], h // hp["patch_size"], w // hp["patch_size"])
    pred = MaskedPredictor(d, grid, predictor_embed_dim=hp.get("predictor_embed_dim") or width,
                           depth=hp.get("predictor_depth") or pdepth, num_heads=hp.get("predictor_num_heads") or heads,
                           pos_encoding=hp.get("pos_encoding")
                           or PRESET_DEFAULTS.get(hp["encoder"], {}).get("pos_encoding", "sincos"),
                           rope_layout=hp.get("predictor_rope_layout") or "half")
    pred.load_state_dict(sd)
    return pred.eval()


def export_hf(source: str | os.PathLike[str], out: str | os.PathLike[str], which: str = "target",
              trust: bool = False) -> list[str]:
    """``jepa export --format transformers``: a ``jepa fit`` checkpoint or run folder (encoder and
    predictor) or an encoder file (encoder only) as a ``VJEPA2Model`` folder."""
    from jepa.hub import FORMAT, _read, latest_checkpoint, load_encoder

    path = latest_checkpoint(source)
    enc = load_encoder(path, which=which, trust=trust)  # type: ignore[arg-type]
    obj = _read(path, trust)
    predictor = predictor_from_checkpoint(obj) if obj.get("format") != FORMAT else None
    return save_hf_folder(enc, out, predictor)
