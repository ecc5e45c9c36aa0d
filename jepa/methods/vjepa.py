"""``VideoJEPA``: V-JEPA pretraining as a LightningModule.

One training step (see shared/DESIGN.md, "Data flow (pretraining)")::

    video [B, 3, T, H, W] (normalised, augmented on the device by the data module)
    target encoder(full clip, no grad) -> layer norm -> h [B, N, D]
    for each mask set (default: short-range 8 x 15%, long-range 2 x 70%):
        context encoder(visible tokens) -> z [B, Nc, D]
        predictor(z, target positions)  -> p [B, Nt, D]
        loss += prediction(p, h[target]) + VICReg variance/covariance on p and/or z
    optimizer step -> EMA update of the target encoder

``target="stopgrad"`` drops the EMA copy: targets come from the online encoder under
stop-gradient, and only the VICReg terms prevent collapse (EB-JEPA / PLDM style).

Run it with ``jepa fit --config configs/pretrain/quickstart.yaml``. Every ``__init__``
argument is a config key under ``model.init_args``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from data_pipelines.resumable import mix_seed
from jepa.objectives.targets import TargetEncoder, momentum_at
from jepa.objectives.regularizers import LossKind, effective_rank, prediction_loss, vicreg_terms
from jepa.masks import LONG_RANGE, SHORT_RANGE, MaskSet, MaskSpec, MultiBlockMaskSampler
from jepa.models.predictor import MaskedPredictor, default_predictor_size
from jepa.models.vit import VideoViT, gather_tokens
from jepa.methods.nonfinite import NonFiniteGuard, NonFinitePolicy
from jepa.methods.schedules import WarmupCosineLRWD


def param_groups(modules: dict[str, nn.Module]) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weight matrices only (not norms, biases, tokens, positions).

    ``modules`` maps a name to each trained module (names are for the reader; groups merge them).
    """
    decay, no_decay = [], []
    for module in modules.values():
        skip = getattr(module, "no_weight_decay", lambda: set())()
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            if p.ndim <= 1 or name in skip or name.endswith(".bias"):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "wd_scale": 1.0},
        {"params": no_decay, "wd_scale": 0.0, "weight_decay": 0.0},
    ]


class VideoJEPA(NonFiniteGuard):
    """V-JEPA pretraining: context encoder + predictor + EMA (or stop-gradient) target encoder.

    Args:
        encoder: encoder preset (``jepa.models.vit.PRESETS``).
        patch_size: spatial patch size.
        tubelet_size: frames per token.
        conv_stem: convolutional stem instead of one patchify layer.
        pos_encoding: "sincos" (fixed embeddings added to the tokens, V-JEPA) or "rope" (3D
            rotary positions in encoder and predictor attention, V-JEPA 2).
        drop_path_rate: stochastic depth of the context encoder.
        input_size: (T, H, W) of the training clips; None reads ``num_frames`` and
            ``crop_size`` from the data module at setup.
        predictor_embed_dim: predictor width (None: scaled from the encoder).
        predictor_depth: predictor blocks (None: scaled from the encoder).
        predictor_num_heads: predictor heads (None: width / 64).
        masks: mask sets drawn per batch (default V-JEPA short- and long-range).
        min_context: fewest context tokens a clip may keep (masks are redrawn otherwise).
        target: "ema" (EMA target encoder) or "stopgrad" (online encoder, no gradient).
        ema_momentum: (start, end) momentum of the EMA.
        ema_schedule: "linear" or "cosine" momentum schedule over training.
        loss: prediction loss, "l1" (V-JEPA), "l2" or "smooth_l1".
        var_weight: weight of the VICReg variance term.
        cov_weight: weight of the VICReg covariance term.
        vicreg_on: embeddings the regularisers act on: predictor outputs, context-encoder
            outputs, or both.
        vicreg_pool: statistics over all tokens of the batch ("tokens") or over per-clip mean
            embeddings ("clip").
        vicreg_expander: width of an MLP expander (Linear-LayerNorm-GELU-Linear) between the
            embeddings and the regularisers, as in VICReg; 0 regularises the embeddings
            themselves. Trained with the model, not part of the exported encoder.
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
        pos_encoding: Literal["sincos", "rope"] = "sincos",
        drop_path_rate: float = 0.0,
        input_size: tuple[int, int, int] | None = None,
        predictor_embed_dim: int | None = None,
        predictor_depth: int | None = None,
        predictor_num_heads: int | None = None,
        masks: list[MaskSpec] | None = None,
        min_context: int = 4,
        target: Literal["ema", "stopgrad"] = "ema",
        ema_momentum: tuple[float, float] = (0.998, 1.0),
        ema_schedule: Literal["linear", "cosine"] = "linear",
        loss: LossKind = "l1",
        var_weight: float = 0.0,
        cov_weight: float = 0.0,
        vicreg_on: Literal["pred", "context", "both"] = "pred",
        vicreg_pool: Literal["tokens", "clip"] = "tokens",
        vicreg_expander: int = 0,
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
        self.save_hyperparameters()
        # plain dicts in hparams, so checkpoints load with torch.load(weights_only=True)
        specs = [MaskSpec(**m) if isinstance(m, dict) else m for m in masks]
        self.hparams["masks"] = [asdict(m) for m in specs]
        self.mask_samplers = [MultiBlockMaskSampler(m, min_context) for m in specs]
        self.encoder: VideoViT | None = None
        self.predictor: MaskedPredictor | None = None
        self.target_encoder: TargetEncoder | None = None
        self.expander: nn.Module | None = None
        self.mask_generator = torch.Generator().manual_seed(seed)
        self._seeded = False
        self._last_batch_start: float | None = None
        if input_size is not None:
            self._build(tuple(input_size))

    # ----------------------------------------------------------------- construction
    def _build(self, input_size: tuple[int, int, int]) -> None:
        hp = self.hparams
        self.hparams["input_size"] = tuple(int(v) for v in input_size)
        self.encoder = VideoViT.from_preset(
            hp.encoder, patch_size=hp.patch_size, tubelet_size=hp.tubelet_size, input_size=hp.input_size,
            conv_stem=hp.conv_stem, drop_path_rate=hp.drop_path_rate, pos_encoding=hp.pos_encoding,
        )
        self.encoder.token_grid(hp.input_size)  # raises on sizes the patches do not divide
        width, depth, heads = default_predictor_size(self.encoder.embed_dim, len(self.encoder.blocks.blocks))
        self.predictor = MaskedPredictor(
            self.encoder.embed_dim, self.encoder.grid_size,
            predictor_embed_dim=hp.predictor_embed_dim or width,
            depth=hp.predictor_depth or depth,
            num_heads=hp.predictor_num_heads or heads, pos_encoding=hp.pos_encoding,
        )
        if hp.target == "ema":
            self.target_encoder = TargetEncoder(self.encoder)
        if hp.vicreg_expander > 0:
            d, e = self.encoder.embed_dim, hp.vicreg_expander
            self.expander = nn.Sequential(nn.Linear(d, e), nn.LayerNorm(e), nn.GELU(), nn.Linear(e, e))
        if hp.grad_checkpointing:
            self.encoder.set_grad_checkpointing()
            self.predictor.set_grad_checkpointing()
        if hp.compile:
            self.encoder.blocks.compile(dynamic=True)
            self.predictor.blocks.compile(dynamic=True)

    def setup(self, stage: str) -> None:
        if not self._seeded:
            self.mask_generator.manual_seed(self.hparams.seed + self.global_rank)
            self._seeded = True
        if self.encoder is not None:
            return
        dm = getattr(self.trainer, "datamodule", None)
        dhp = getattr(dm, "hparams", {})
        if "num_frames" not in dhp or "crop_size" not in dhp:
            raise ValueError(
                "model.input_size is not set and the data module has no num_frames/crop_size to infer it "
                "from; set model.init_args.input_size: [T, H, W]"
            )
        self._build((dhp["num_frames"], dhp["crop_size"], dhp["crop_size"]))

    def configure_model(self) -> None:
        """Under ``--trainer.strategy fsdp``: shard Blocks and networks with FSDP2 (``jepa.training.distributed``)."""
        from jepa.training.distributed import shard_module

        target = self.target_encoder.encoder if self.target_encoder is not None else None
        shard_module(self, {"encoder": self.encoder, "target": target, "predictor": self.predictor, "expander": self.expander})

    # ----------------------------------------------------------------- objective
    def _targets(self, video: torch.Tensor) -> torch.Tensor:
        """Layer-normed target-encoder tokens of the full clip -> [B, N, D] (no gradient)."""
        with torch.no_grad():
            if self.target_encoder is not None:
                h = self.target_encoder.encoder.forward_features(video)
            else:
                h = self.encoder.forward_features(video)
            return F.layer_norm(h.float(), (h.shape[-1],)).to(h.dtype)

    def _regularise(self, z: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """VICReg (variance, covariance) of tokens z [B, N, D] with validity [B, N]."""
        if self.hparams.vicreg_pool == "clip":
            m = mask[..., None].to(z.dtype)
            rows = (z * m).sum(1) / m.sum(1).clamp_min(1.0)  # [B, D]
        else:
            rows = z[mask]  # [M, D]
        if self.expander is not None:
            rows = self.expander(rows)
        return vicreg_terms(rows)

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
        zero = video.new_zeros((), dtype=torch.float32)
        pred_loss, var_loss, cov_loss = zero, zero, zero
        regularise = hp.var_weight > 0 or hp.cov_weight > 0
        for ms in masks:
            z = self.encoder.forward_tokens(gather_tokens(x, ms.context_ids), ms.context_mask, ms.context_ids, grid)
            p = self.predictor(z, ms.context_ids, ms.target_ids, grid, ms.context_mask, ms.target_mask)
            pred_loss = pred_loss + prediction_loss(
                p.float(), gather_tokens(h, ms.target_ids).float(), ms.target_mask, hp.loss
            )
            if regularise:
                if hp.vicreg_on in ("pred", "both"):
                    v, c = self._regularise(p, ms.target_mask)
                    var_loss, cov_loss = var_loss + v, cov_loss + c
                if hp.vicreg_on in ("context", "both"):
                    v, c = self._regularise(z, ms.context_mask)
                    var_loss, cov_loss = var_loss + v, cov_loss + c
        n = len(masks)
        terms = {"pred_loss": pred_loss / n, "var_loss": var_loss / n, "cov_loss": cov_loss / n}
        total = terms["pred_loss"] + hp.var_weight * terms["var_loss"] + hp.cov_weight * terms["cov_loss"]
        for i, ms in enumerate(masks):  # as tensors: no host sync on GPU
            nc, nt = ms.context_mask.sum().float(), ms.target_mask.sum().float()
            terms[f"mask{i}_context_fraction"] = nc / (nc + nt)
            terms[f"mask{i}_target_fraction"] = nt / (nc + nt)
            terms[f"mask{i}_padding_fraction"] = 1 - (nc + nt) / (ms.context_mask.numel() + ms.target_mask.numel())
        return total, terms, h

    # ----------------------------------------------------------------- Lightning hooks
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_batch_start is not None:
            clips = batch["video"].shape[0]
            self.log("perf/clips_per_s", clips / max(now - self._last_batch_start, 1e-9))
        self._last_batch_start = now

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        video = batch["video"]
        loss, terms, h = self.compute_loss(video, keys=clip_keys(batch))
        self.guard_loss(loss, terms)
        b = video.shape[0]
        # Loss terms are averaged over ranks (the global-batch value); the mask statistics are
        # diagnostics and stay per rank (no extra collective).
        sync = self.trainer.world_size > 1
        self.log("train/loss", loss, prog_bar=True, batch_size=b, sync_dist=sync)
        for k, v in terms.items():
            loss_term = k.endswith("loss")
            self.log(("train/" if loss_term else "mask/") + k, v, batch_size=b, sync_dist=sync and loss_term)
        if self.global_step % max(self.hparams.monitor_every, 1) == 0 and not self._skip_step:
            self._log_monitors(h, b)
        return loss

    @torch.no_grad()
    def _log_monitors(self, h: torch.Tensor, batch_size: int) -> None:
        """Collapse monitors on the target tokens: mean per-dimension std, and RankMe."""
        tokens = h.flatten(0, 1).float()
        if tokens.shape[0] > 2048:  # an even stride: no draw from the mask generator
            tokens = tokens[:: -(-tokens.shape[0] // 2048)]
        clips = h.float().mean(1)
        self.log("monitor/target_std", tokens.std(0).mean(), batch_size=batch_size)
        self.log("monitor/target_rankme", effective_rank(tokens), batch_size=batch_size)
        self.log("monitor/target_clip_std", clips.std(0).mean() if clips.shape[0] > 1 else 0.0, batch_size=batch_size)

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

    def after_optimizer_step(self) -> None:
        """Move the EMA target (once per optimizer step, not per micro-batch; not after a
        skipped step)."""
        if self.target_encoder is not None:
            m = self.ema_momentum(self.trainer.global_step)
            self.target_encoder.update(self.encoder, m)
            self.log("ema/momentum", m)

    def ema_momentum(self, step: int) -> float:
        start, end = self.hparams.ema_momentum
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        return momentum_at(step, total, start, end, self.hparams.ema_schedule)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        assert self.encoder is not None and self.predictor is not None
        modules: dict[str, nn.Module] = {"encoder": self.encoder, "predictor": self.predictor}
        if self.expander is not None:
            modules["expander"] = self.expander
        groups = param_groups(modules)
        opt = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        sched = WarmupCosineLRWD(
            opt, total_steps=total, warmup_steps=int(hp.warmup_fraction * total), lr=hp.lr,
            start_lr=hp.start_lr, final_lr=hp.final_lr, weight_decay=hp.weight_decay,
            final_weight_decay=hp.final_weight_decay,
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "opt"}}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        opt = self.optimizers(use_pl_optimizer=False)
        self.log("opt/weight_decay", float(opt.param_groups[0]["weight_decay"]))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["mask_generator"] = self.mask_generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "mask_generator" in checkpoint:
            self.mask_generator.set_state(checkpoint["mask_generator"])
            self._seeded = True
        if self.encoder is None:
            self._build(tuple(checkpoint["hyper_parameters"]["input_size"]))


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
