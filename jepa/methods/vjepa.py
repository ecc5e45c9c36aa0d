"""``VideoJEPA``: V-JEPA pretraining as a LightningModule (a ``JepaMethod``).

One training step (the architecture notes in ``docs/architecture.md`` show the whole data flow)::

    video [B, 3, T, H, W] (normalised, augmented on the device by the data module)
    targets: target encoder(full clip) -> layer norm -> h [B, N, D]
             (EMA copy, no gradient; or the online encoder: "stopgrad" detached, "online" not)
    for each mask set (default: short-range 8 x 15%, long-range 2 x 70%):
        context encoder(visible tokens) -> z [B, Nc, D]
        predictor(z, target positions)  -> p [B, Nt, D]
        loss += prediction(p, h[target]) + regulariser(p and/or z)   (VICReg, SIGReg or none)
    optimizer step -> EMA update of the target encoder

The regulariser sees the predictor's outputs (its final linear projection back to the encoder
width) and/or the context encoder's outputs, which pass through the encoder's final LayerNorm
(per-token standardisation with a learned scale and shift), over all tokens or per-clip means;
an optional expander MLP sits in between (``jepa.objectives.Regularizer``).

Run it with ``jepa fit --config configs/pretrain/quickstart.yaml``. Every ``__init__``
argument is a config key under ``model.init_args``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from data_pipelines.resumable import mix_seed
from jepa.masks import LONG_RANGE, SHORT_RANGE, MaskSet, MaskSpec, MultiBlockMaskSampler
from jepa.methods.base import JepaMethod, check_hparams
from jepa.methods.nonfinite import NonFinitePolicy
from jepa.models.predictor import MaskedPredictor, default_predictor_size
from jepa.models.vit import PRESET_DEFAULTS, PRESETS, VideoViT, gather_tokens
from jepa.objectives.base import Regularizer
from jepa.objectives.prediction import LossKind, prediction_loss
from jepa.objectives.targets import TargetEncoder, TargetKind
from jepa.objectives.vicreg import VICReg


class VideoJEPA(JepaMethod):
    """V-JEPA pretraining: context encoder + predictor + EMA (or online) target encoder.

    Args:
        encoder: encoder preset (``jepa.models.vit.PRESETS``).
        patch_size: spatial patch size.
        tubelet_size: frames per token.
        conv_stem: convolutional stem instead of one patchify layer.
        pos_encoding: "sincos" (fixed embeddings added to the tokens, V-JEPA) or "rope" (3D
            rotary positions in encoder and predictor attention, V-JEPA 2); None: the preset's
            (rope for the ``vjepa2_*`` presets, sincos otherwise).
        rope_layout: how the encoder's rotary channels are laid out: "half" (ours) or "vjepa2"
            (V-JEPA 2's exact layout, needed for its weights); None: the preset's.
        drop_path_rate: stochastic depth of the context encoder.
        input_size: (T, H, W) of the training clips; None reads ``num_frames`` and
            ``crop_size`` from the data module at setup.
        predictor_embed_dim: predictor width (None: scaled from the encoder).
        predictor_depth: predictor blocks (None: scaled from the encoder).
        predictor_num_heads: predictor heads (None: width / 64).
        predictor_rope_layout: the predictor's rotary layout with ``pos_encoding="rope"``: "half"
            (default) or "vjepa2" (V-JEPA 2's, so its predictor's weights load through
            ``init_from`` and the predictor goes out with ``jepa export --format transformers``).
        init_from: start from these weights (a ``jepa fit`` checkpoint or run folder, an
            encoder file, or V-JEPA 2 weights: see ``jepa.methods.init_from``); the optimiser
            and schedules start afresh. ``--ckpt_path`` resumes a run instead.
        masks: mask sets drawn per batch (default V-JEPA short- and long-range).
        min_context: fewest context tokens a clip may keep (masks are redrawn otherwise).
        target: "ema" (EMA target encoder), "stopgrad" (online encoder, detached) or "online"
            (online encoder with gradient; the regulariser alone prevents collapse).
        ema_momentum: (start, end) momentum of the EMA.
        ema_schedule: "linear" or "cosine" momentum schedule over training.
        loss: prediction loss, "l1" (V-JEPA), "l2" or "smooth_l1".
        regularizer: anti-collapse term (``jepa.objectives.VICReg``, ``SIGReg``, or None).
        regularize_on: embeddings the regulariser sees: predictor outputs, context-encoder
            outputs, or both.
        regularize_pool: statistics over all tokens of the batch ("tokens") or over per-clip
            mean embeddings ("clip").
        var_weight, cov_weight, vicreg_on, vicreg_pool, vicreg_expander: the keys of earlier
            versions (a VICReg with these weights, ``regularize_on``, ``regularize_pool`` and
            the expander width); still read from old recipes and checkpoints. Use
            ``regularizer`` instead.
        lr: peak learning rate.
        start_lr: learning rate at the start of warmup.
        final_lr: learning rate at the end of the cosine decay.
        warmup_fraction: share of the optimizer steps spent warming up.
        weight_decay: initial weight decay.
        final_weight_decay: weight decay at the end (cosine schedule).
        betas: AdamW betas.
        grad_checkpointing: activation checkpointing in encoder and predictor blocks.
        compile: ``torch.compile`` the transformer blocks (dynamic shapes).
        monitor_every: optimizer steps between collapse monitors (std, RankMe).
        seed: mask sampling seed (offset by the global rank).
        mask_rng: "rank": one mask generator per rank, seeded ``seed + rank`` (fast);
            "sample": each clip's masks are a function of (seed, step, clip) alone, so a run
            draws the same masks for the same global batch on any number of processes.
        nonfinite: a NaN/Inf loss "stop"s the run (naming the step and term) or is "skip"ped
            and counted (see ``jepa.methods.nonfinite``).
        max_nonfinite_skips: consecutive skipped steps after which the run stops anyway.
    """

    def __init__(
        self,
        encoder: str = "vit_tiny",
        patch_size: int = 16,
        tubelet_size: int = 2,
        conv_stem: bool = False,
        pos_encoding: Literal["sincos", "rope"] | None = None,
        rope_layout: Literal["half", "vjepa2"] | None = None,
        drop_path_rate: float = 0.0,
        input_size: tuple[int, int, int] | None = None,
        predictor_embed_dim: int | None = None,
        predictor_depth: int | None = None,
        predictor_num_heads: int | None = None,
        predictor_rope_layout: Literal["half", "vjepa2"] = "half",
        init_from: str | None = None,
        masks: list[MaskSpec] | None = None,
        min_context: int = 4,
        target: TargetKind = "ema",
        ema_momentum: tuple[float, float] = (0.998, 1.0),
        ema_schedule: Literal["linear", "cosine"] = "linear",
        loss: LossKind = "l1",
        regularizer: Regularizer | None = None,
        regularize_on: Literal["pred", "context", "both"] = "pred",
        regularize_pool: Literal["tokens", "clip"] = "tokens",
        var_weight: float | None = None,
        cov_weight: float | None = None,
        vicreg_on: Literal["pred", "context", "both"] | None = None,
        vicreg_pool: Literal["tokens", "clip"] | None = None,
        vicreg_expander: int | None = None,
        lr: float = 6.25e-4,
        start_lr: float = 2e-4,
        final_lr: float = 1e-6,
        warmup_fraction: float = 0.1,
        weight_decay: float = 0.04,
        final_weight_decay: float = 0.4,
        betas: tuple[float, float] = (0.9, 0.999),
        grad_checkpointing: bool = False,
        compile: bool = False,
        monitor_every: int = 10,
        seed: int = 0,
        mask_rng: Literal["rank", "sample"] = "rank",
        nonfinite: NonFinitePolicy = "stop",
        max_nonfinite_skips: int = 100,
    ) -> None:
        super().__init__()
        if masks is None:
            masks = [SHORT_RANGE, LONG_RANGE]
        if target not in ("ema", "stopgrad", "online"):
            raise ValueError(f"model.init_args.target must be 'ema', 'stopgrad' or 'online', got {target!r}")
        if encoder not in PRESETS:
            raise ValueError(f"model.init_args.encoder: unknown preset {encoder!r}; choose one of {', '.join(PRESETS)}")
        self.save_hyperparameters(ignore=["regularizer"])  # stored as its spec (set_regularizer)
        preset = PRESET_DEFAULTS.get(encoder, {})  # what the preset implies, stored resolved
        self.hparams["pos_encoding"] = pos_encoding or preset.get("pos_encoding", "sincos")
        self.hparams["rope_layout"] = rope_layout or preset.get("rope_layout", "half")
        check_hparams(self.hparams)
        # plain dicts in hparams, so checkpoints load with torch.load(weights_only=True)
        specs = [MaskSpec(**m) if isinstance(m, dict) else m for m in masks]
        self.hparams["masks"] = [asdict(m) for m in specs]
        regularizer = _legacy_vicreg(self.hparams, regularizer)
        self.set_regularizer(regularizer)
        self.mask_samplers = [MultiBlockMaskSampler(m, min_context) for m in specs]
        self.encoder: VideoViT | None = None
        self.predictor: MaskedPredictor | None = None
        self.target_encoder: TargetEncoder | None = None
        self.mask_generator = torch.Generator().manual_seed(seed)
        self._seeded = False
        self._initialised = init_from is None
        if input_size is not None:
            self._build(tuple(input_size))

    # ----------------------------------------------------------------- construction
    def _build(self, input_size: tuple[int, int, int]) -> None:
        hp = self.hparams
        self.hparams["input_size"] = tuple(int(v) for v in input_size)
        self.encoder = VideoViT.from_preset(
            hp.encoder, patch_size=hp.patch_size, tubelet_size=hp.tubelet_size, input_size=hp.input_size,
            conv_stem=hp.conv_stem, drop_path_rate=hp.drop_path_rate, pos_encoding=hp.pos_encoding,
            rope_layout=hp.rope_layout,
        )
        self.encoder.token_grid(hp.input_size)  # raises on sizes the patches do not divide
        width, depth, heads = default_predictor_size(self.encoder.embed_dim, len(self.encoder.blocks.blocks))
        self.predictor = MaskedPredictor(
            self.encoder.embed_dim, self.encoder.grid_size,
            predictor_embed_dim=hp.predictor_embed_dim or width,
            depth=hp.predictor_depth or depth,
            num_heads=hp.predictor_num_heads or heads, pos_encoding=hp.pos_encoding,
            rope_layout=hp.get("predictor_rope_layout", "half"),
        )
        if hp.target == "ema":
            self.target_encoder = TargetEncoder(self.encoder)
        if self.regularizer is not None:
            self.regularizer.setup(self.encoder.embed_dim)
        if hp.grad_checkpointing:
            self.encoder.set_grad_checkpointing()
            self.predictor.set_grad_checkpointing()
        if hp.compile:
            self.encoder.blocks.compile(dynamic=True)
            self.predictor.blocks.compile(dynamic=True)

    def trained_modules(self) -> dict[str, nn.Module | None]:
        assert self.encoder is not None and self.predictor is not None
        return {"encoder": self.encoder, "predictor": self.predictor, "regularizer": self.regularizer}

    def setup(self, stage: str) -> None:
        if not self._seeded:
            self.mask_generator.manual_seed(self.hparams.seed + self.global_rank)
            self._seeded = True
        if self.encoder is None:
            self._build(self._input_size_from_data())
        if stage == "fit" and not self._initialised:  # a resumed run's checkpoint then overwrites these
            self._initialised = True
            self._init_from(self.hparams.init_from)

    def _init_from(self, path: str) -> None:
        from lightning.pytorch.utilities import rank_zero_info

        from jepa.methods.init_from import init_modules

        assert self.encoder is not None and self.predictor is not None
        target = self.target_encoder.encoder if self.target_encoder is not None else None
        for line in init_modules(path, self.encoder, self.predictor, target):
            rank_zero_info(line)

    def _input_size_from_data(self) -> tuple[int, int, int]:
        dm = getattr(self.trainer, "datamodule", None)
        dhp = getattr(dm, "hparams", {})
        if "num_frames" not in dhp or "crop_size" not in dhp:
            raise ValueError(
                "model.input_size is not set and the data module has no num_frames/crop_size to infer it "
                "from; set model.init_args.input_size: [T, H, W]"
            )
        return (dhp["num_frames"], dhp["crop_size"], dhp["crop_size"])

    # ----------------------------------------------------------------- objective
    def _targets(self, video: torch.Tensor) -> torch.Tensor:
        """Layer-normed target tokens of the full clip -> [B, N, D] (with a gradient only for
        ``target: online``)."""
        assert self.encoder is not None
        online = self.hparams.target == "online"
        with torch.set_grad_enabled(online and torch.is_grad_enabled()):
            enc = self.target_encoder.encoder if self.target_encoder is not None else self.encoder
            h = enc.forward_features(video)
            return F.layer_norm(h.float(), (h.shape[-1],)).to(h.dtype)

    def _pool(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rows the regulariser sees: valid tokens [M, D], or per-clip means [B, D]."""
        if self.hparams.regularize_pool == "clip":
            m = mask[..., None].to(z.dtype)
            return (z * m).sum(1) / m.sum(1).clamp_min(1.0)
        return z[mask]

    def sample_masks(
        self, batch: int, grid: tuple[int, int, int], device: torch.device, keys: list[int] | None = None
    ) -> list[MaskSet]:
        """One MaskSet per mask spec; with ``keys`` (one int per clip) and ``mask_rng: sample``,
        each clip's masks depend only on (seed, step, key)."""
        if keys is not None and self.hparams.mask_rng == "sample":
            return [
                s.keyed(keys, grid, mix_seed(self.hparams.seed, self.global_step, i), device)
                for i, s in enumerate(self.mask_samplers)
            ]
        return [s(batch, grid, self.mask_generator, device) for s in self.mask_samplers]

    def compute_loss(
        self, video: torch.Tensor, masks: list[MaskSet] | None = None, keys: list[int] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Total loss, its terms, and the target tokens h [B, N, D] for the monitors."""
        hp = self.hparams
        assert self.encoder is not None and self.predictor is not None
        h = self._targets(video)
        x, grid = self.encoder.embed(video)  # [B, N, D]
        masks = masks if masks is not None else self.sample_masks(video.shape[0], grid, video.device, keys)
        pred_loss = video.new_zeros((), dtype=torch.float32)
        reg_terms: dict[str, torch.Tensor] = {}
        for ms in masks:
            z = self.encoder.forward_tokens(gather_tokens(x, ms.context_ids), ms.context_mask, ms.context_ids, grid)
            p = self.predictor(z, ms.context_ids, ms.target_ids, grid, ms.context_mask, ms.target_mask)
            pred_loss = pred_loss + prediction_loss(
                p.float(), gather_tokens(h, ms.target_ids).float(), ms.target_mask, hp.loss
            )
            if self.regularizer is None:
                continue
            seen = []
            if hp.regularize_on in ("pred", "both"):
                seen.append(self._pool(p, ms.target_mask))
            if hp.regularize_on in ("context", "both"):
                seen.append(self._pool(z, ms.context_mask))
            for rows in seen:
                for k, v in self.regularize(rows)[1].items():
                    reg_terms[k] = reg_terms[k] + v if k in reg_terms else v
        n = len(masks)
        terms = {"pred_loss": pred_loss / n, **{k: v / n for k, v in reg_terms.items()}}
        total = terms["pred_loss"]
        if self.regularizer is not None and reg_terms:
            total = total + self.regularizer.combine(terms)
        for i, ms in enumerate(masks):  # as tensors: no host sync on GPU
            nc, nt = ms.context_mask.sum().float(), ms.target_mask.sum().float()
            terms[f"mask{i}_context_fraction"] = nc / (nc + nt)
            terms[f"mask{i}_target_fraction"] = nt / (nc + nt)
            terms[f"mask{i}_padding_fraction"] = 1 - (nc + nt) / (ms.context_mask.numel() + ms.target_mask.numel())
        return total, terms, h

    # ----------------------------------------------------------------- Lightning hooks
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        video = batch["video"]
        loss, terms, h = self.compute_loss(video, keys=clip_keys(batch))
        self.guard_loss(loss, terms)
        self.log_losses("train", loss, terms, video.shape[0])
        if self.monitor_due():
            self.log_collapse("target", h, video.shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        video = batch["video"]
        gen_state = self.mask_generator.get_state()
        self.mask_generator.manual_seed(10_000 + batch_idx)  # the same masks every validation
        try:
            loss, terms, _ = self.compute_loss(video)
        finally:
            self.mask_generator.set_state(gen_state)
        b = video.shape[0]
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=b)
        self.log("val/pred_loss", terms["pred_loss"], sync_dist=True, batch_size=b)
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["mask_generator"] = self.mask_generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "mask_generator" in checkpoint:
            self.mask_generator.set_state(checkpoint["mask_generator"])
            self._seeded = True
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("expander.")]:  # before the regulariser parts
            state["regularizer." + key] = state.pop(key)
        if self.encoder is None:
            self._build(tuple(checkpoint["hyper_parameters"]["input_size"]))


def _legacy_vicreg(hparams: Any, regularizer: Regularizer | Any) -> Regularizer | Any:
    """Map the keys of earlier versions (``var_weight``, ``cov_weight``, ``vicreg_on``,
    ``vicreg_pool``, ``vicreg_expander``) onto ``regularizer`` / ``regularize_on`` /
    ``regularize_pool``, and clear them from the hyper-parameters."""
    var_w, cov_w = hparams.get("var_weight"), hparams.get("cov_weight")
    if hparams.get("vicreg_on") is not None:
        hparams["regularize_on"] = hparams["vicreg_on"]
    if hparams.get("vicreg_pool") is not None:
        hparams["regularize_pool"] = hparams["vicreg_pool"]
    if var_w is not None or cov_w is not None:
        if regularizer is not None:
            raise ValueError("set model.init_args.regularizer or the older var_weight / cov_weight keys, not both")
        if (var_w or 0.0) > 0 or (cov_w or 0.0) > 0:
            regularizer = VICReg(var_weight=var_w or 0.0, cov_weight=cov_w or 0.0,
                                 expander=int(hparams.get("vicreg_expander") or 0))
    for key in ("var_weight", "cov_weight", "vicreg_on", "vicreg_pool", "vicreg_expander"):
        if key in hparams:
            hparams[key] = None
    return regularizer


def clip_keys(batch: dict[str, Any]) -> list[int] | None:
    """One int per clip of a batch: its video's index and its ordinal among that video's clips
    (clips of one video are consecutive). None when the batch has no ``index``."""
    index = batch.get("index")
    if index is None:
        return None
    keys, prev, ordinal = [], None, 0
    for i in torch.as_tensor(index).tolist():
        ordinal = ordinal + 1 if i == prev else 0
        keys.append(int(i) * 4096 + ordinal)
        prev = i
    return keys
