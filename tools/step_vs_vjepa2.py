"""Training-step speed side by side: V-JEPA 2's own step and ours, in one process, same shapes.

    python tools/step_vs_vjepa2.py --vjepa2 /path/to/vjepa2 [--deps DIR] [--steps 10 --warmup 3 --threads 2]

V-JEPA 2's code is imported from the checkout you point to (nothing of it is in this
repository). Besides torch, timm and PyYAML (ours too) it needs einops: install it in this
environment or in a folder given by ``--deps`` (``pip install --target DIR einops``; appended to
``sys.path``, after ours).

Both sides run V-JEPA 2's settings scaled down (``configs/train/vitl16/pretrain-256px-16f.yaml``
with a small model): encoder width 192, depth 6, 3 heads; predictor width 96, depth 4, 3 heads;
clips 16 x 64 x 64, patch 8, tubelet 2, batch 8; 3D RoPE; its two default mask sets (8 blocks
of 15% and 2 blocks of 70% of the frame, all time steps, aspect 0.75-1.5); L1 loss; EMA target;
AdamW with its parameter groups; fp32 on the CPU with ``--threads`` threads.

  V-JEPA 2  its ``VisionTransformer`` / ``VisionTransformerPredictor`` in its multi-sequence
            wrappers, its ``init_opt``, and the body of ``app/vjepa/train.py``'s ``train_step``
            (target forward with layer norm, context forward, predictor, loss, backward, AdamW
            step, EMA update). Masks come from its ``MaskCollator``, drawn before the timed
            step as its data-loader workers do.
  ours      ``jepa.benchmarks.train.build_train_step`` on the same settings (masks sampled inside
            the step, as ``jepa fit`` does).
Steps alternate between the two after untimed warm-up steps; prints both medians in clips/s and
the ratio ours / theirs.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

FRAMES, SIZE, PATCH, TUBELET, BATCH = 16, 64, 8, 2, 8
ENC = dict(embed_dim=192, depth=6, num_heads=3)
PRED = dict(predictor_embed_dim=96, depth=4, num_heads=3)
MASKS = [
    {"aspect_ratio": (0.75, 1.5), "num_blocks": 8, "spatial_scale": (0.15, 0.15), "temporal_scale": (1.0, 1.0),
     "max_temporal_keep": 1.0, "max_keep": None, "full_complement": False},
    {"aspect_ratio": (0.75, 1.5), "num_blocks": 2, "spatial_scale": (0.7, 0.7), "temporal_scale": (1.0, 1.0),
     "max_temporal_keep": 1.0, "max_keep": None, "full_complement": False},
]


def reference_step(root: Path, steps: int) -> tuple[Callable[[], None], int]:
    """V-JEPA 2's training step on its own modules; returns (step, trained parameter count)."""
    sys.path.insert(0, str(root))
    import src.models.predictor as vit_pred
    import src.models.vision_transformer as video_vit
    from app.vjepa.utils import init_opt
    from src.masks.multiseq_multiblock3d import MaskCollator
    from src.masks.utils import apply_masks
    from src.utils.wrappers import MultiSeqWrapper, PredictorMultiSeqWrapper

    encoder = MultiSeqWrapper(video_vit.VisionTransformer(
        img_size=SIZE, patch_size=PATCH, num_frames=FRAMES, tubelet_size=TUBELET, mlp_ratio=4, qkv_bias=True,
        uniform_power=True, use_sdpa=True, use_rope=True, **ENC,
    ))
    predictor = PredictorMultiSeqWrapper(vit_pred.VisionTransformerPredictor(
        img_size=SIZE, patch_size=PATCH, num_frames=FRAMES, tubelet_size=TUBELET, embed_dim=ENC["embed_dim"],
        use_mask_tokens=True, num_mask_tokens=len(MASKS), zero_init_mask_tokens=True, uniform_power=True,
        use_rope=True, use_sdpa=True, **PRED,
    ))
    target = copy.deepcopy(encoder)
    for p in target.parameters():
        p.requires_grad = False
    optimizer, _, scheduler, wd_scheduler = init_opt(
        is_anneal=False, encoder=encoder, predictor=predictor, iterations_per_epoch=max(steps, 10), start_lr=2e-4,
        ref_lr=6.25e-4, warmup=1, num_epochs=100, wd=0.04, final_wd=0.4, final_lr=1e-6,
    )
    collator = MaskCollator(cfgs_mask=MASKS, dataset_fpcs=[FRAMES], crop_size=SIZE, patch_size=PATCH, tubelet_size=TUBELET)
    clip_indices = [list(range(FRAMES))]
    samples = [([torch.randn(3, FRAMES, SIZE, SIZE)], 0, clip_indices) for _ in range(BATCH)]
    collated = collator(samples)  # [(batch, masks_enc, masks_pred)] for the one frames-per-clip value
    clips = [collated[0][0][0][0]]
    pending: list[tuple[list, list]] = []

    def next_masks() -> tuple[list, list]:  # drawn off the clock, as in its loader workers
        if not pending:
            for _ in range(8):
                (_, enc, pred), = collator(samples)
                pending.append(([enc], [pred]))
        return pending.pop()

    masks = {"now": next_masks()}

    def step() -> None:
        masks_enc, masks_pred = masks["now"]
        scheduler.step()
        wd_scheduler.step()
        with torch.no_grad():
            h = target(clips)
            h = [F.layer_norm(hi, (hi.size(-1),)) for hi in h]
        z = predictor(encoder(clips, masks_enc), masks_enc, masks_pred)
        h = [apply_masks(hi, mi, concat=False) for hi, mi in zip(h, masks_pred, strict=True)]
        loss, n = 0.0, 0
        for zi, hi in zip(z, h, strict=True):
            for zij, hij in zip(zi, hi, strict=True):
                loss = loss + torch.mean(torch.abs(zij - hij))
                n += 1
        (loss / n).backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            params_k = list(target.parameters())
            params_q = list(encoder.parameters())
            torch._foreach_mul_(params_k, 0.99925)
            torch._foreach_add_(params_k, params_q, alpha=1 - 0.99925)
        masks["now"] = next_masks()

    trained = sum(p.numel() for m in (encoder, predictor) for p in m.parameters() if p.requires_grad)
    return step, trained


def our_step() -> tuple[Callable[[], None], int]:
    from jepa.benchmarks.train import build_train_step

    step, model = build_train_step(
        {"encoder": "vit_micro", "patch_size": PATCH, "tubelet_size": TUBELET, "pos_encoding": "rope",
         "predictor_embed_dim": PRED["predictor_embed_dim"], "predictor_depth": PRED["depth"],
         "predictor_num_heads": PRED["num_heads"], "target": "ema", "loss": "l1"},
        (FRAMES, SIZE, SIZE), BATCH, device=torch.device("cpu"), precision="32", clip=None,
    )
    trained = sum(p.numel() for m in model.trained_modules().values() if m is not None for p in m.parameters() if p.requires_grad)
    return step, trained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vjepa2", required=True, type=Path, help="a checkout of facebookresearch/vjepa2")
    parser.add_argument("--deps", type=Path, default=None, help="folder with V-JEPA 2's extra dependencies (einops)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per side first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    if not (args.vjepa2 / "app" / "vjepa" / "train.py").is_file():
        print(f"--vjepa2 {args.vjepa2}: no app/vjepa/train.py there; point it at a vjepa2 checkout", file=sys.stderr)
        return 2
    if args.deps is not None:
        sys.path.append(str(args.deps.resolve()))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    theirs, theirs_params = reference_step(args.vjepa2.resolve(), args.steps + args.warmup)
    ours, ours_params = our_step()
    times: dict[str, list[float]] = {"V-JEPA 2": [], "ours": []}
    for i in range(args.warmup + args.steps):
        for name, step in (("V-JEPA 2", theirs), ("ours", ours)):
            start = time.perf_counter()
            step()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    rate = {name: BATCH / statistics.median(t) for name, t in times.items()}
    print(f"clips {FRAMES}x{SIZE}x{SIZE}, batch {BATCH}, fp32, {args.threads} threads, {args.steps} timed steps each "
          f"(alternating, after {args.warmup} warm-up)")
    print(f"  V-JEPA 2  {rate['V-JEPA 2']:6.2f} clips/s  ({theirs_params / 1e6:.2f} M trained parameters)")
    print(f"  ours      {rate['ours']:6.2f} clips/s  ({ours_params / 1e6:.2f} M trained parameters)")
    print(f"  ratio ours / V-JEPA 2: {rate['ours'] / rate['V-JEPA 2']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
