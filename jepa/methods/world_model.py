"""``ActionConditionedWorldModel``: learn how latents evolve under actions (JEPA world model).

One training step on a clip of T frames with T - 1 aligned actions (``docs/architecture.md``
shows the whole data flow)::

    frames [B, T, H, W, 3] uint8 -> encoder per frame -> z [B, T, P, D]
    targets: z.detach() ("stopgrad", PLDM / EB-JEPA), z itself ("online": no stop-gradient,
             LeWM-style), the EMA encoder's latents ("ema"), or the frozen encoder's latents
             (``encoder_checkpoint`` set: V-JEPA 2-AC style)
    teacher forcing:  predictor(z[:, :-1], a) vs targets[:, 1:]
    rollout:          predictor.rollout(z[:, 0], a[:, :k]) vs targets[:, 1:k+1]  (own predictions fed back)
    + regulariser(z)   (VICReg, SIGReg or none; over all latents, or per time step as LeWM
                        does with SIGReg; only when the encoder trains)
    + smooth_weight * ||z_{t+1} - z_t||^2                        (temporal smoothness)
    + idm_weight * ||idm(z_t, z_{t+1}) - a_t||^2                 (inverse dynamics)
    + clip_var_weight * mean_j max(0, 1 - std_j(z - mean_t z))    (within-clip variance)

Actions are standardised inside the model with statistics taken from the training data at
setup (saved in the checkpoint), so callers pass raw environment actions.

Python API for planning::

    wm = ActionConditionedWorldModel.load_from_checkpoint(path)   # or jepa.methods.world_model.load_world_model
    z0 = wm.encode(obs)                      # uint8 [B, H, W, 3] (numpy or torch) -> [B, P, D]
    zs = wm.rollout(z0, actions)             # actions [B, H, A] -> latents [B, H, P, D]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_pipelines.transforms import IMAGENET_MEAN, IMAGENET_STD
from jepa.methods.base import JepaMethod, check_hparams
from jepa.methods.latent_cache import FrameLatentCache
from jepa.methods.nonfinite import NonFinitePolicy
from jepa.models.ac_predictor import ActionConditionedPredictor
from jepa.models.conv import ConvEncoder
from jepa.models.timm_frames import PREFIX as TIMM_PREFIX
from jepa.models.timm_frames import TimmFrames
from jepa.models.vit import PRESETS, VideoViT
from jepa.objectives.base import Regularizer
from jepa.objectives.prediction import LossKind, prediction_loss
from jepa.objectives.targets import TargetEncoder, TargetKind
from jepa.objectives.vicreg import VICReg


def clip_variance_loss(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's variance hinge on within-clip deviations: ``z [B, T, P, D]`` minus its mean over
    T; the std of each (token, channel) over all B * T deviations (``T - 1`` degrees of freedom per
    clip), ``mean max(0, gamma - sqrt(var + eps))``."""
    b, t = z.shape[:2]
    if t < 2:
        return z.new_zeros(())
    dev = (z - z.mean(1, keepdim=True)).reshape(b * t, -1)
    var = dev.pow(2).sum(0) / (b * (t - 1))
    return F.relu(gamma - torch.sqrt(var + eps)).mean()


class FrameEncoder(nn.Module):
    """Frames ``[B, 3, H, W]`` (normalised) -> latents ``[B, P, D]``, whatever the backbone.

    A ``VideoViT`` sees each frame repeated to its tubelet length (as V-JEPA 2-AC does), so a
    video encoder from ``jepa fit`` encodes single frames.
    """

    def __init__(self, backbone: nn.Module, image_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        if isinstance(backbone, ConvEncoder):
            self.grid, self.latent_dim = backbone.grid, backbone.latent_dim
        elif isinstance(backbone, VideoViT):
            _, gh, gw = backbone.token_grid((backbone.tubelet_size, image_size, image_size))
            self.grid, self.latent_dim = (gh, gw), backbone.embed_dim
        elif isinstance(backbone, TimmFrames):
            self.grid, self.latent_dim = backbone.grid, backbone.latent_dim
        else:
            raise TypeError(f"unsupported frame encoder {type(backbone).__name__}")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if isinstance(self.backbone, VideoViT):
            video = frames[:, :, None].expand(-1, -1, self.backbone.tubelet_size, -1, -1)
            return self.backbone.forward_features(video)
        return self.backbone(frames)


class ActionConditionedWorldModel(JepaMethod):
    """JEPA world model: frame encoder + block-causal action-conditioned predictor.

    Args:
        encoder: "conv" (small CNN for tiny images), a ViT preset (``jepa.models.vit.PRESETS``),
            or ``"timm:<name>"``: any timm image model, *frozen*, on its own input size and
            normalisation, its patch tokens as latents (DINO-WM style; ``jepa.models.timm_frames``).
        encoder_checkpoint: a ``jepa fit`` checkpoint, exported encoder or V-JEPA 2 weights
            (``transformers`` folder) to load and *freeze* (V-JEPA 2-AC style); ``encoder`` is
            then ignored and only the predictor trains.
        encoder_pretrained: with ``timm:<name>``, let timm load its pretrained weights (network
            or its cache; default False: random weights). A trained world model's checkpoint
            holds the weights, so loading it never downloads.
        encoder_kwargs: more ``timm.create_model`` arguments with ``timm:<name>`` (e.g.
            ``{img_size: 112}`` for a ViT at another input size).
        image_size: frame height and width (square frames).
        latent_dim: width of the latent (conv encoder / ViT trained here).
        conv_widths: channels of the conv encoder's stride-2 stages.
        latent_grid: conv encoder keeps a token grid (True) or one vector per frame (False).
        patch_size: patch size of a ViT trained here.
        action_dim: width of one clip action (frameskip x environment action); None reads it
            from the data module at setup.
        predictor_embed_dim, predictor_depth, predictor_num_heads: the predictor transformer.
        predictor_window: frames of history per prediction (None: the whole clip).
        target: "stopgrad" (targets are the online latents, detached), "online" (the online
            latents with their gradient; the regulariser alone prevents collapse) or "ema".
        ema_momentum: (start, end) momentum of the EMA target encoder.
        ema_schedule: "linear" or "cosine" momentum schedule over training.
        loss: distance for prediction and rollout losses ("l2", "l1", "smooth_l1").
        rollout_steps: k of the multi-step rollout loss (0 turns it off).
        rollout_weight: its weight (the teacher-forcing loss has weight 1).
        regularizer: anti-collapse term on the latents (``jepa.objectives.VICReg``, ``SIGReg``
            or None), used when the encoder trains.
        regularize_per_step: statistics per time step (over the batch's frames at step t, then
            averaged over t, as LeWM applies SIGReg) instead of over all latents of the batch.
        var_weight, cov_weight: the keys of earlier versions (a VICReg with these weights); still
            read from old recipes and checkpoints. Use ``regularizer`` instead.
        smooth_weight: temporal smoothness ``||z_{t+1} - z_t||^2``.
        idm_weight: inverse-dynamics loss (an MLP predicts a_t from z_t, z_{t+1}).
        clip_var_weight: VICReg's variance hinge on the latents' deviations from their own clip's
            mean over time: each latent channel must change *within* clips. With a new scene per
            episode (Two Rooms' random layouts) the scene alone satisfies a variance term over the
            batch and is trivially predictable, so an encoder can keep it and drop what the
            actions move; this term takes that minimum away (``docs/experiments.md``).
        lr, start_lr, final_lr, warmup_fraction, weight_decay, final_weight_decay, betas: AdamW
            and its warmup-cosine schedule.
        monitor_every: optimizer steps between collapse monitors (std, RankMe).
        nonfinite: a NaN/Inf loss "stop"s the run (naming the step and term) or is "skip"ped
            and counted (see ``jepa.methods.nonfinite``).
        max_nonfinite_skips: consecutive skipped steps after which the run stops anyway.
        latent_cache_mb: with a frozen encoder, keep up to this many MB of per-frame latents in
            memory, keyed by frame content (``jepa.methods.latent_cache``), so later epochs and
            overlapping clips skip the encoder; 0 turns it off.
    """

    def __init__(
        self,
        encoder: str = "conv",
        encoder_checkpoint: str | None = None,
        encoder_pretrained: bool = False,
        encoder_kwargs: dict[str, Any] | None = None,
        image_size: int = 64,
        latent_dim: int = 64,
        conv_widths: Sequence[int] = (32, 64, 128),
        latent_grid: bool = False,
        patch_size: int = 8,
        action_dim: int | None = None,
        predictor_embed_dim: int = 128,
        predictor_depth: int = 3,
        predictor_num_heads: int = 4,
        predictor_window: int | None = None,
        target: TargetKind = "stopgrad",
        ema_momentum: tuple[float, float] = (0.99, 1.0),
        ema_schedule: Literal["linear", "cosine"] = "linear",
        loss: LossKind = "l2",
        rollout_steps: int = 3,
        rollout_weight: float = 1.0,
        regularizer: Regularizer | None = None,
        regularize_per_step: bool = False,
        var_weight: float | None = None,
        cov_weight: float | None = None,
        smooth_weight: float = 0.0,
        idm_weight: float = 0.0,
        clip_var_weight: float = 0.0,
        lr: float = 1e-3,
        start_lr: float = 1e-4,
        final_lr: float = 1e-5,
        warmup_fraction: float = 0.05,
        weight_decay: float = 1e-4,
        final_weight_decay: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        monitor_every: int = 25,
        nonfinite: NonFinitePolicy = "stop",
        max_nonfinite_skips: int = 100,
        latent_cache_mb: float = 0.0,
    ) -> None:
        super().__init__()
        if target not in ("stopgrad", "ema", "online"):
            raise ValueError(f"model.init_args.target must be 'stopgrad', 'online' or 'ema', got {target!r}")
        timm_encoder = encoder.startswith(TIMM_PREFIX) and encoder_checkpoint is None
        if encoder != "conv" and encoder not in PRESETS and encoder_checkpoint is None and not timm_encoder:
            raise ValueError(f"model.init_args.encoder {encoder!r} is not 'conv', 'timm:<model name>' or one of "
                             f"{sorted(PRESETS)}")
        self.save_hyperparameters(ignore=["regularizer"])  # stored as its spec (set_regularizer)
        check_hparams(self.hparams)
        for key in ("rollout_weight", "smooth_weight", "idm_weight", "clip_var_weight"):
            if float(self.hparams[key]) < 0:
                raise ValueError(f"model.init_args.{key} must be >= 0 (0: off), got {self.hparams[key]}")
        self.hparams["conv_widths"] = [int(w) for w in conv_widths]
        if var_weight is not None or cov_weight is not None:  # the keys of earlier versions
            if regularizer is not None:
                raise ValueError("set model.init_args.regularizer or the older var_weight / cov_weight keys, not both")
            if (var_weight or 0.0) > 0 or (cov_weight or 0.0) > 0:
                regularizer = VICReg(var_weight=var_weight or 0.0, cov_weight=cov_weight or 0.0)
            self.hparams["var_weight"] = self.hparams["cov_weight"] = None
        self.set_regularizer(regularizer)
        self.encoder: FrameEncoder = self._make_encoder()
        if self.regularizer is not None:
            self.regularizer.setup(self.encoder.latent_dim)
        self.frozen_encoder = encoder_checkpoint is not None or timm_encoder
        if self.frozen_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        self.target_encoder = TargetEncoder(self.encoder) if (target == "ema" and not self.frozen_encoder) else None
        if latent_cache_mb < 0:
            raise ValueError(f"model.init_args.latent_cache_mb must be >= 0 (0: off), got {latent_cache_mb}")
        self.latent_cache = FrameLatentCache(latent_cache_mb) if (latent_cache_mb > 0 and self.frozen_encoder) else None
        self.predictor: ActionConditionedPredictor | None = None
        self.idm: nn.Module | None = None
        backbone = self.encoder.backbone
        mean, std = (backbone.mean, backbone.std) if isinstance(backbone, TimmFrames) else (IMAGENET_MEAN, IMAGENET_STD)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)
        if action_dim is not None:
            self._build(int(action_dim))

    # ----------------------------------------------------------------- construction
    def _make_encoder(self) -> FrameEncoder:
        hp = self.hparams
        if hp.encoder_checkpoint is not None:
            from pathlib import Path

            from jepa.hub import load_encoder

            if Path(hp.encoder_checkpoint).is_dir() and (Path(hp.encoder_checkpoint) / "config.json").is_file():
                from jepa.convert.vjepa2 import load_hf_folder

                return FrameEncoder(load_hf_folder(hp.encoder_checkpoint), hp.image_size)
            return FrameEncoder(load_encoder(hp.encoder_checkpoint), hp.image_size)
        if hp.encoder.startswith(TIMM_PREFIX):
            timm_model = TimmFrames(hp.encoder[len(TIMM_PREFIX):], pretrained=bool(hp.get("encoder_pretrained", False)),
                                    model_kwargs=hp.get("encoder_kwargs"))
            return FrameEncoder(timm_model, hp.image_size)
        if hp.encoder == "conv":
            return FrameEncoder(
                ConvEncoder(hp.image_size, hp.latent_dim, tuple(hp.conv_widths), hp.latent_grid), hp.image_size
            )
        vit = VideoViT.from_preset(hp.encoder, patch_size=hp.patch_size, tubelet_size=1, input_size=(1, hp.image_size, hp.image_size))
        return FrameEncoder(vit, hp.image_size)

    def _build(self, action_dim: int) -> None:
        hp = self.hparams
        self.hparams["action_dim"] = action_dim
        self.predictor = ActionConditionedPredictor(
            self.encoder.latent_dim, action_dim, self.encoder.grid, hp.predictor_embed_dim, hp.predictor_depth,
            hp.predictor_num_heads, window=hp.predictor_window,
        )
        self.register_buffer("action_mean", torch.zeros(action_dim))
        self.register_buffer("action_std", torch.ones(action_dim))
        self.register_buffer("frameskip_buf", torch.ones((), dtype=torch.long))
        if hp.idm_weight > 0:
            d = self.encoder.latent_dim * self.encoder.grid[0] * self.encoder.grid[1]
            self.idm = nn.Sequential(nn.Linear(2 * d, 256), nn.GELU(), nn.Linear(256, action_dim))

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if self.predictor is None:
            if dm is None or getattr(dm, "action_dim", None) is None:
                raise ValueError("model.action_dim is not set and there is no trajectory data module to read it from")
            # Seeded from the run's seed, not from wherever the global RNG happens to be: Lightning
            # re-seeds it when it sets up DDP / FSDP, which would give the predictor a different
            # initialisation on 1 process than on N.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(torch.initial_seed() + 1)
                self._build(int(dm.action_dim))
        if stage == "fit" and dm is not None and hasattr(dm, "action_stats") and self.global_step == 0:
            self.frameskip_buf.fill_(int(getattr(dm, "hparams", {}).get("frameskip", 1)))
            mean, std = dm.action_stats()
            self.action_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.action_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def trained_modules(self) -> dict[str, nn.Module | None]:
        return {"predictor": self.predictor, "encoder": None if self.frozen_encoder else self.encoder,
                "idm": self.idm, "regularizer": self.regularizer}

    def sharded_modules(self) -> dict[str, nn.Module | None]:
        return {**super().sharded_modules(), "encoder": self.encoder}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.predictor is None:
            self._build(int(checkpoint["hyper_parameters"]["action_dim"]))

    # ----------------------------------------------------------------- public API
    @property
    def frameskip(self) -> int:
        """Environment steps per model step (the training data's frameskip, kept in the checkpoint)."""
        return int(self.frameskip_buf)

    @property
    def action_dim(self) -> int:
        assert self.predictor is not None, "the model is not built yet (no action_dim)"
        return self.predictor.action_dim

    def normalise_frames(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 ``[..., H, W, 3]`` -> float ``[N, 3, H, W]`` (ImageNet normalisation), on the model's device."""
        x = torch.as_tensor(obs, device=self.pixel_mean.device)
        if x.dtype != torch.uint8:
            raise TypeError(f"observations must be uint8 [..., H, W, 3] images, got {x.dtype}")
        x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).float()
        return (x - self.pixel_mean) / self.pixel_std

    def encode(self, obs: torch.Tensor | np.ndarray, target: bool = False) -> torch.Tensor:
        """Latents of observations: uint8 ``[B, H, W, 3]`` (or ``[H, W, 3]``) -> ``[B, P, D]``."""
        frames = self.normalise_frames(obs)
        enc = self.target_encoder.encoder if (target and self.target_encoder is not None) else self.encoder
        return enc(frames)

    def encode_goal(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Latents of goal observations, in the space the predictor was trained to output: the
        EMA target encoder's with ``target: ema``, else the encoder's (``encode``)."""
        return self.encode(obs, target=True)

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Latents after each of ``actions [B, H, A]`` (raw units) from ``z0 [B, P, D]`` -> ``[B, H, P, D]``."""
        assert self.predictor is not None
        a = (actions.to(self.action_mean.dtype) - self.action_mean) / self.action_std
        return self.predictor.rollout(z0, a)

    # ----------------------------------------------------------------- objective
    def _encode_clip(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``video [B, T, H, W, 3]`` uint8 -> (online latents, targets), each ``[B, T, P, D]``."""
        b, t = video.shape[:2]
        if self.frozen_encoder:
            with torch.no_grad():
                if self.latent_cache is not None:
                    z = self.latent_cache.encode(video.reshape(b * t, *video.shape[2:]),
                                                 lambda f: self.encoder(self.normalise_frames(f)))
                else:
                    z = self.encoder(self.normalise_frames(video))
            z = z.reshape(b, t, *z.shape[1:])
            return z, z
        frames = self.normalise_frames(video)
        z = self.encoder(frames).reshape(b, t, *self.encoder_shape)
        if self.target_encoder is not None:
            with torch.no_grad():
                zt = self.target_encoder.encoder(frames).reshape(b, t, *self.encoder_shape)
        elif self.hparams.target == "online":
            zt = z
        else:
            zt = z.detach()
        return z, zt

    @property
    def encoder_shape(self) -> tuple[int, int]:
        return (self.encoder.grid[0] * self.encoder.grid[1], self.encoder.latent_dim)

    def compute_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        hp = self.hparams
        assert self.predictor is not None
        video, actions = batch["video"], batch["actions"]
        z, zt = self._encode_clip(video)
        a = (actions.float() - self.action_mean) / self.action_std
        b, t, p, d = z.shape
        pred = self.predictor(z[:, :-1], a)
        terms: dict[str, torch.Tensor] = {"pred_loss": prediction_loss(pred.reshape(b, -1, d), zt[:, 1:].reshape(b, -1, d), None, hp.loss)}
        total = terms["pred_loss"]
        k = min(hp.rollout_steps, t - 1)
        if k > 0 and hp.rollout_weight > 0:
            roll = self.predictor.rollout(z[:, 0], a[:, :k])
            terms["rollout_loss"] = prediction_loss(roll.reshape(b, -1, d), zt[:, 1 : k + 1].reshape(b, -1, d), None, hp.loss)
            total = total + hp.rollout_weight * terms["rollout_loss"]
        if not self.frozen_encoder:
            if self.regularizer is not None:
                # [T, B*P, D] per time step (LeWM), or all latents of the batch as one group
                rows = z.transpose(0, 1).reshape(t, b * p, d) if hp.regularize_per_step else z.reshape(-1, d)
                reg, reg_terms = self.regularize(rows)
                terms.update(reg_terms)
                total = total + reg
            if hp.smooth_weight > 0:
                terms["smooth_loss"] = (z[:, 1:] - z[:, :-1]).pow(2).sum(-1).mean()
                total = total + hp.smooth_weight * terms["smooth_loss"]
            if hp.get("clip_var_weight", 0.0) > 0:
                terms["clip_var_loss"] = clip_variance_loss(z)
                total = total + hp.clip_var_weight * terms["clip_var_loss"]
        if self.idm is not None:
            pair = torch.cat([z[:, :-1].reshape(b, t - 1, -1), z[:, 1:].reshape(b, t - 1, -1)], dim=-1)
            terms["idm_loss"] = F.mse_loss(self.idm(pair), a)
            total = total + hp.idm_weight * terms["idm_loss"]
        return total, terms, z

    # ----------------------------------------------------------------- Lightning hooks
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, terms, z = self.compute_loss(batch)
        self.guard_loss(loss, terms)
        b = batch["video"].shape[0]
        self.log_losses("train", loss, terms, b)
        if self.monitor_due():
            self.log_collapse("latent", z.reshape(b, -1, z.shape[-1]), b)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, terms, _ = self.compute_loss(batch)
        self.log_losses("val", loss, terms, batch["video"].shape[0])
        return loss

    def train(self, mode: bool = True) -> ActionConditionedWorldModel:
        super().train(mode)
        if self.frozen_encoder:
            self.encoder.eval()
        return self


def load_world_model(path: str, map_location: str | torch.device = "cpu", trust: bool = False) -> ActionConditionedWorldModel:
    """A trained world model from a ``jepa fit`` checkpoint, in eval mode.

    Read without running code from the file (``weights_only``) unless ``trust`` or
    ``JEPA_TRUST_CHECKPOINTS=1`` (:mod:`jepa.safe_load`)."""
    import os

    from jepa.safe_load import describe_file, is_trusted, refusal, torch_load

    if not os.path.isfile(path):
        raise FileNotFoundError(f"world-model checkpoint not found: {path}")
    try:
        model = ActionConditionedWorldModel.load_from_checkpoint(  # the checkpoint holds any timm weights
            path, map_location=map_location, weights_only=not is_trusted(trust), encoder_pretrained=False)
    except Exception as e:
        refused = refusal(path, e)
        if refused is not None:
            raise refused from e
        try:  # say what the file is instead, when it is readable at all
            kind = describe_file(torch_load(path, map_location="cpu", trust=trust))
        except Exception:
            kind = ""
        if kind and "world-model" not in kind:
            raise ValueError(f"{path} is not a world-model checkpoint: it is {kind}; jepa plan needs a run of "
                             "jepa fit --config configs/world_model/...") from e
        first = (str(e).strip().splitlines() or [""])[0][:200]  # one line: torch's messages run to paragraphs
        raise ValueError(f"{path} is not a readable ActionConditionedWorldModel checkpoint ({type(e).__name__}: {first})") from e
    return model.eval()
