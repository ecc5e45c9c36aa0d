"""Starting a pretraining run from weights someone already trained (``model.init_args.init_from``).

    jepa fit --config configs/pretrain/continue_vjepa2_vitl.yaml --model.init_args.init_from vitl.pt

``init_from`` names any of:

- a ``jepa fit`` pretraining checkpoint or run folder: context encoder, EMA target encoder and
  predictor (the optimiser, schedules and step count start afresh; use ``--ckpt_path`` to
  *resume* a run instead);
- an encoder file from ``jepa export`` (``.pt`` or ``.safetensors``);
- V-JEPA 2's weights: a ``transformers`` ``VJEPA2Model`` folder, or a reference checkpoint file
  (``vitl.pt``, ...; its online ``encoder`` becomes the context encoder and its
  ``target_encoder`` the EMA target).

Parts the file does not hold start from the model's own initialisation: the predictor for
encoder files, the target encoder as a copy of the loaded context encoder. V-JEPA 2's predictor
loads when the recipe builds the same one (``predictor_embed_dim 384``, ``predictor_depth 12``,
``predictor_num_heads 12``, ``predictor_rope_layout vjepa2``, as in
``configs/pretrain/continue_vjepa2_vitl.yaml``); otherwise it starts fresh and the printed line
names the settings that would load it. The file's encoder must have the architecture the recipe
builds (width, depth, heads, patching, positions); the positions depend on no clip size, so a
different ``input_size`` is fine. Everything is read without running code from the file.

The weights are loaded in ``setup("fit")``, before Lightning restores a ``--ckpt_path``; a
resumed run therefore ends up with its checkpoint's weights, whatever ``init_from`` says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

# What must agree between the file's encoder and the one the recipe builds.
ARCH_KEYS = ("embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size", "tubelet_size", "in_chans", "conv_stem",
             "qkv_bias", "pos_encoding", "rope_layout")
ARCH_DEFAULTS = {"in_chans": 3, "conv_stem": False, "qkv_bias": True, "pos_encoding": "sincos", "rope_layout": "half"}
KEY = "model.init_args.init_from"


class InitFromError(ValueError):
    """``init_from`` names nothing usable; the message (one line) says what and what would work."""


@dataclass
class InitWeights:
    """Weights to start from: the context encoder's, and where the file has them the target
    encoder's and the predictor's (state dicts without prefixes)."""

    source: str
    kind: str
    encoder_config: dict[str, Any]
    encoder: dict[str, torch.Tensor]
    target: dict[str, torch.Tensor] | None = None
    predictor: dict[str, torch.Tensor] | None = None
    # V-JEPA 2 weights only: the predictor's architecture; it loads when the recipe builds the same
    predictor_config: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _strip(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def read_init(path: str | os.PathLike[str], num_heads: int | None = None, trust: bool = False,
              predictor_heads: int | None = None) -> InitWeights:
    """The weights ``path`` holds (see the module doc); one-line errors for anything else.
    ``num_heads`` / ``predictor_heads``: the recipe's, for V-JEPA 2 reference files of sizes other
    than V-JEPA 2's own (the files do not store them)."""
    from jepa.convert.vjepa2 import (
        hf_encoder,
        hf_predictor,
        read_hf_folder,
        reference_encoder,
        reference_heads,
        reference_predictor,
    )
    from jepa.hub import FORMAT, _encoder_from_checkpoint, _read, latest_checkpoint
    from jepa.safe_load import describe_file

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{KEY}: {p} does not exist; pass a jepa fit checkpoint or run folder, an encoder "
                                "file from jepa export, or V-JEPA 2 weights (a transformers folder or vitl.pt); "
                                "resuming with --ckpt_path needs none of them: add --model.init_args.init_from null")
    if p.is_dir() and (p / "config.json").is_file():
        hf, sd = read_hf_folder(p)  # read once: V-JEPA 2 files are large
        enc, pred = hf_encoder(hf, sd, str(p)), hf_predictor(hf, sd)
        return InitWeights(str(p), "V-JEPA 2 model (transformers folder)", dict(enc.config), enc.state_dict(),
                           predictor=pred[1] if pred else None, predictor_config=pred[0] if pred else None)
    if p.is_dir():
        p = latest_checkpoint(p)
    obj = _read(p, trust)
    if obj.get("format") == FORMAT:
        return InitWeights(str(p), "encoder file", dict(obj["config"]), dict(obj["state_dict"]))
    if "state_dict" in obj:
        hp = obj.get("hyper_parameters") or {}
        if "masks" not in hp and "input_size" not in hp:
            raise ValueError(f"{KEY}: {p} is {describe_file(obj)}, not a pretraining checkpoint; pass a VideoJEPA "
                             "checkpoint, an encoder file or V-JEPA 2 weights")
        config, _ = _encoder_from_checkpoint(obj, str(p), "context")
        sd = obj["state_dict"]
        return InitWeights(str(p), "VideoJEPA checkpoint", config, _strip(sd, "encoder."),
                           target=_strip(sd, "target_encoder.encoder.") or None,
                           predictor=_strip(sd, "predictor.") or None)
    if any(isinstance(obj.get(k), dict) for k in ("target_encoder", "encoder")):
        heads = reference_heads(obj, num_heads)  # V-JEPA 2's own for its sizes, else the recipe's
        context = reference_encoder(obj, str(p), "encoder", heads)
        target = reference_encoder(obj, str(p), "target_encoder", heads)
        pred = reference_predictor(obj, str(p), predictor_heads)
        return InitWeights(str(p), "V-JEPA 2 reference checkpoint", dict(context.config), context.state_dict(),
                           target=target.state_dict(), predictor=pred[1] if pred else None,
                           predictor_config=pred[0] if pred else None)
    raise ValueError(f"{KEY}: {p} is {describe_file(obj)}; pass a jepa fit checkpoint, an encoder file or V-JEPA 2 weights")


def check_architecture(weights: InitWeights, config: dict[str, Any]) -> None:
    """Raise one line naming every architecture setting where the file differs from the model."""
    def get(c: dict[str, Any], k: str) -> Any:
        v = c.get(k, ARCH_DEFAULTS.get(k))
        return round(float(v), 6) if k == "mlp_ratio" else v

    diff = [k for k in ARCH_KEYS if get(weights.encoder_config, k) != get(config, k)]
    if diff:
        theirs = ", ".join(f"{k} {get(weights.encoder_config, k)}" for k in diff)
        ours = ", ".join(f"{k} {get(config, k)}" for k in diff)
        hint = " (V-JEPA 2 weights: encoder vjepa2_vitl, vjepa2_vith or vjepa2_vitg)" if "V-JEPA 2" in weights.kind else ""
        raise ValueError(f"{KEY}: {weights.source} holds a {weights.kind} with {theirs}; the recipe builds {ours}: "
                         f"set model.init_args.encoder / patch_size / tubelet_size / pos_encoding to match{hint}")


# MaskedPredictor.config keys -> the VideoJEPA keys that set them
# (mlp_ratio and qkv_bias have no key: ours are V-JEPA 2's, 4.0 and True)
PREDICTOR_KEYS = {"predictor_embed_dim": "model.init_args.predictor_embed_dim", "depth": "model.init_args.predictor_depth",
                  "num_heads": "model.init_args.predictor_num_heads",
                  "rope_layout": "model.init_args.predictor_rope_layout", "pos_encoding": "model.init_args.pos_encoding",
                  "mlp_ratio": "predictor mlp_ratio", "qkv_bias": "predictor qkv_bias"}


def predictor_difference(theirs: dict[str, Any] | None, ours: dict[str, Any]) -> str:
    """'' when a V-JEPA 2 predictor (``theirs``; None: not one) fits the recipe's, else the keys
    and values it would need (``model.init_args.predictor_depth 12, ...``)."""
    if theirs is None:
        return ""
    def norm(v: Any) -> Any:
        return round(float(v), 6) if isinstance(v, float) else v
    diff = [k for k in PREDICTOR_KEYS if norm(theirs.get(k)) != norm(ours.get(k))]
    return ", ".join(f"{PREDICTOR_KEYS[k]} {theirs[k]}" for k in diff)


def _load(module: nn.Module, sd: dict[str, torch.Tensor], what: str, source: str) -> None:
    mine = module.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(mine[k].shape)}" for k, v in sd.items() if k in mine and v.shape != mine[k].shape]
    missing = [k for k in mine if k not in sd]
    unexpected = [k for k in sd if k not in mine]
    if wrong or missing or unexpected:
        detail = wrong[:2] or [f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"]
        hint = (" (set predictor_embed_dim / predictor_depth / predictor_num_heads as in that run)"
                if what == "predictor" else "")
        raise ValueError(f"{KEY}: the {what} in {source} does not fit the recipe's: {'; '.join(detail)}{hint}")
    module.load_state_dict(sd)


def init_modules(path: str | os.PathLike[str], encoder: nn.Module, predictor: nn.Module,
                 target: nn.Module | None) -> list[str]:
    """Read ``path`` and load it into the built modules (see :func:`apply_init`); every failure
    becomes one :class:`InitFromError` line."""
    try:
        weights = read_init(path, num_heads=getattr(encoder, "num_heads", None),
                            predictor_heads=getattr(predictor, "num_heads", None))
        return apply_init(weights, encoder, predictor, target)
    except InitFromError:
        raise
    except (OSError, ValueError, KeyError) as e:
        msg = str(e) if str(e).startswith(KEY) else f"{KEY}: {e}"
        raise InitFromError(msg) from e


def apply_init(weights: InitWeights, encoder: nn.Module, predictor: nn.Module,
               target: nn.Module | None) -> list[str]:
    """Load ``weights`` into the built modules; returns what was loaded and what starts fresh."""
    check_architecture(weights, dict(getattr(encoder, "config", {})))
    _load(encoder, weights.encoder, "encoder", weights.source)
    done = ["context encoder"]
    if target is not None:
        _load(target, weights.target if weights.target is not None else weights.encoder, "target encoder",
              weights.source)
        done.append("EMA target encoder" + ("" if weights.target is not None else " (a copy of the context encoder)"))
    fresh = []
    differ = predictor_difference(weights.predictor_config, dict(getattr(predictor, "config", {})))
    if weights.predictor is not None and differ:
        fresh.append(f"predictor (the file's has {differ}: set them to start from it)")
    elif weights.predictor is not None:
        _load(predictor, weights.predictor, "predictor", weights.source)
        done.append("predictor")
    else:
        fresh.append("predictor")
    return [f"{KEY}: {', '.join(done)} from {weights.source} ({weights.kind})"
            + (f"; {', '.join(fresh)} from scratch" if fresh else "")]
