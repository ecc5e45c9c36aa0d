"""Encoders users can import: export, ``load_encoder`` and ``create_encoder``.

    jepa export outputs/quickstart/checkpoints/last.ckpt --out encoder.pt

    import jepa
    enc = jepa.load_encoder("encoder.pt")      # or a Lightning checkpoint from ``jepa fit``
    tokens = enc.forward_features(video)        # video [B, 3, T, H, W] normalised -> [B, N, D]

``jepa export RUN --out encoder.safetensors`` writes the same in safetensors (no pickle; the
config and meta as JSON in its header), and ``load_encoder`` reads either. An exported file is a
plain ``torch.save`` dict ``{"format": "jepa-encoder", "version": 1,
"config": VideoViT kwargs, "state_dict": ..., "meta": {...}}``; loading it needs neither
Lightning nor the training config. From a pretraining checkpoint the EMA *target* encoder is
exported by default (what V-JEPA evaluates); ``which="context"`` takes the online encoder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch

from jepa.models.vit import PRESET_DEFAULTS, PRESETS, VideoViT
from jepa.safe_load import UnsafeFileError, describe_file, torch_load

FORMAT = "jepa-encoder"
VERSION = 1


def _read(path: str | os.PathLike[str], trust: bool = False) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"encoder file not found: {p}")
    if p.suffix == ".safetensors":
        return _read_safetensors(p)
    try:
        obj = torch_load(p, map_location="cpu", trust=trust)
    except UnsafeFileError:
        raise
    except Exception as e:  # truncated or foreign file
        raise ValueError(f"{p} is not a readable checkpoint or encoder file ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{p} holds a {type(obj).__name__}, not a jepa checkpoint or encoder file")
    return obj


def _encoder_from_checkpoint(ckpt: dict[str, Any], path: str, which: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    hp = ckpt.get("hyper_parameters") or {}
    if "encoder" not in hp or "input_size" not in hp:
        raise ValueError(f"{path} has no VideoJEPA encoder to take: it is {describe_file(ckpt)}")
    d, depth, heads, mlp = PRESETS[hp["encoder"]]
    config = dict(
        embed_dim=d, depth=depth, num_heads=heads, mlp_ratio=mlp, patch_size=hp["patch_size"],
        tubelet_size=hp["tubelet_size"], input_size=tuple(hp["input_size"]), conv_stem=hp.get("conv_stem", False),
        pos_encoding=hp.get("pos_encoding") or PRESET_DEFAULTS.get(hp["encoder"], {}).get("pos_encoding", "sincos"),
    )
    layout = hp.get("rope_layout") or PRESET_DEFAULTS.get(hp["encoder"], {}).get("rope_layout", "half")
    if layout != "half":  # as VideoViT.config: only a non-default layout is named
        config["rope_layout"] = layout
    prefix = "target_encoder.encoder." if which == "target" else "encoder."
    sd = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not sd and which == "target":  # stop-gradient runs have no EMA copy
        prefix = "encoder."
        sd = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not sd:
        raise ValueError(f"{path} has no encoder weights (looked for keys starting with {prefix!r})")
    return config, sd


DATA_KEYS = ("num_frames", "frame_step", "fps", "crop_size", "eval_crop_fraction", "mean", "std")


def _data_meta(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The clip settings the encoder was trained with (from the data module's hyper-parameters)."""
    hp = ckpt.get("datamodule_hyper_parameters") or {}
    return {k: (list(hp[k]) if isinstance(hp[k], tuple) else hp[k]) for k in DATA_KEYS if k in hp}


def encoder_meta(path: str | os.PathLike[str], trust: bool = False) -> dict[str, Any]:
    """What is known about an encoder file or checkpoint besides its weights: ``data`` (the clip
    settings it was trained with: num_frames, frame_step, crop_size, mean, std, ...), ``source``,
    ``global_step``. Empty entries where unknown."""
    obj = _read(path, trust)
    if obj.get("format") == FORMAT:
        return dict(obj.get("meta") or {})
    return {"source": str(path), "global_step": obj.get("global_step"), "data": _data_meta(obj)}


def latest_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file as is; for a run folder (or its ``checkpoints/``), its newest ``last*.ckpt``.

    Lightning never overwrites an earlier run's ``last.ckpt`` in the same folder (it writes
    ``last-v1.ckpt``, ...), so "the latest" is the most recently written one.
    """
    p = Path(path)
    if not p.is_dir():
        return p
    folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    found = sorted(folder.glob("last*.ckpt"), key=lambda f: f.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no last*.ckpt in {folder}")
    return found[-1]


def export_encoder(
    checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], which: Literal["target", "context"] = "target"
) -> Path:
    """Write an encoder-only file from a ``jepa fit`` checkpoint (or run folder); returns its path."""
    checkpoint = latest_checkpoint(checkpoint)
    ckpt = _read(checkpoint)
    if "state_dict" not in ckpt or ckpt.get("format") == FORMAT:
        raise ValueError(f"{checkpoint} is not a jepa fit checkpoint to export from: it is {describe_file(ckpt)}")
    config, sd = _encoder_from_checkpoint(ckpt, str(checkpoint), which)
    meta = {"source": str(checkpoint), "which": which, "global_step": ckpt.get("global_step"), "data": _data_meta(ckpt)}
    return _write(config, sd, meta, out)


def save_encoder(encoder: VideoViT, out: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    """Write ``encoder`` (e.g. one fine-tuned in your own code) as an encoder file ``load_encoder``
    reads. ``meta`` (default ``encoder.meta``) may hold ``"data"``: the clip settings (frame_step,
    mean, std, ...) that probes and ``read_clips`` use."""
    sd = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    return _write(dict(encoder.config), sd, dict(encoder.meta if meta is None else meta), out)


def _write(config: dict[str, Any], sd: dict[str, torch.Tensor], meta: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    """``torch.save`` dict, or a safetensors file when ``out`` ends in ``.safetensors`` (weights as
    tensors, format / config / meta as JSON in the header: no pickle at all)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".safetensors":
        import json

        from safetensors.torch import save_file

        header = {"format": FORMAT, "version": str(VERSION), "config": json.dumps(config), "meta": json.dumps(meta)}
        save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()}, str(tmp), metadata=header)
    else:
        torch.save({"format": FORMAT, "version": VERSION, "config": config, "state_dict": sd, "meta": meta}, tmp)
    os.replace(tmp, out)  # atomic: never a half-written encoder file
    return out


def _read_safetensors(p: Path) -> dict[str, Any]:
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            header = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as e:
        raise ValueError(f"{p} is not a readable safetensors file ({type(e).__name__}: {e})") from e
    if header.get("format") != FORMAT:
        raise ValueError(f"{p} is a safetensors file but not a jepa encoder (its header names no format {FORMAT!r})")
    config = json.loads(header["config"])
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return {"format": FORMAT, "version": int(header.get("version", VERSION)), "config": config, "state_dict": sd,
            "meta": json.loads(header.get("meta") or "{}")}


def load_encoder(path: str | os.PathLike[str], which: Literal["target", "context"] = "target",
                 trust: bool = False) -> VideoViT:
    """The encoder in eval mode from an exported file or a ``jepa fit`` checkpoint. ``enc.meta``
    holds what is known besides the weights (``data``: the clip settings it was trained with).

    The file is read without running code from it (``weights_only``); ``trust=True`` lifts that
    for a file you trust (see :mod:`jepa.safe_load`). A run folder means its newest ``last*.ckpt``."""
    path = latest_checkpoint(path) if Path(path).is_dir() else path
    obj = _read(path, trust)
    if obj.get("format") == FORMAT:
        config, sd, meta = obj["config"], obj["state_dict"], dict(obj.get("meta") or {})
    elif "state_dict" in obj:
        config, sd = _encoder_from_checkpoint(obj, str(path), which)
        meta = {"source": str(path), "which": which, "global_step": obj.get("global_step"), "data": _data_meta(obj)}
    else:
        raise ValueError(f"{path} is neither a jepa encoder file nor a Lightning checkpoint: it is {describe_file(obj)}")
    enc = VideoViT(**config)
    missing, unexpected = enc.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: encoder weights do not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    enc.meta = meta  # the clip settings it was trained with (jepa.read_clips uses them)
    return enc.eval()


def create_encoder(name: str, pretrained: str | os.PathLike[str] | None = None, **overrides: Any) -> VideoViT:
    """timm-style constructor: a preset, optionally with weights from an exported file or checkpoint."""
    if pretrained is None:
        return VideoViT.from_preset(name, **overrides)
    if name not in PRESETS:
        raise ValueError(f"unknown encoder preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    enc = load_encoder(pretrained)
    arch = (enc.config["embed_dim"], enc.config["depth"], enc.config["num_heads"], enc.config["mlp_ratio"])
    if tuple(PRESETS[name]) != arch:
        held = [k for k, v in PRESETS.items() if tuple(v) == arch]
        raise ValueError(
            f"{pretrained} holds a {held[0] if held else 'custom'} encoder (embed_dim {arch[0]}, depth {arch[1]}, "
            f"{arch[2]} heads), not {name!r}; pass create_encoder({held[0] if held else 'NAME'!r}, pretrained=...) "
            "or jepa.load_encoder(path)"
        )
    head = {k: overrides.pop(k) for k in ("num_classes", "global_pool") if k in overrides}
    if overrides:
        config = {**enc.config, **overrides}
        new = VideoViT(**config)
        new.load_state_dict(enc.state_dict())
        new.meta = enc.meta
        enc = new.eval()
    if head:  # a new classifier on the loaded encoder (timm's create_model(..., num_classes=N))
        enc.reset_classifier(int(head.get("num_classes", enc.num_classes)), head.get("global_pool"))
    return enc
