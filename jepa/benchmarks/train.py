"""``jepa bench train``: training-step throughput (clips/s) and model FLOP utilisation (MFU).

Builds ``VideoJEPA`` from a pretraining recipe (``model.init_args``; the input size and batch
size from ``data.init_args``) directly, without a Trainer, and times full optimizer steps on
random clips already on the device, so it measures the model step, not data loading::

    masks (sampled by the module) -> compute_loss(video) -> backward -> [grad clip] -> AdamW step
    -> EMA update of the target encoder

Gradient clipping runs when the recipe sets ``trainer.gradient_clip_val`` (as ``jepa fit``
would). Three measurements in one run:

  FLOPs per step  ``torch.utils.flop_counter.FlopCounterMode`` over one step (forward and
                  backward of every mask set plus the target forward), counted once outside
                  the timed loop; matmuls, convolutions and attention only, padded tokens
                  included (they are computed)
  peak            the best rate of square matmuls in the step's dtype on the same device and
                  threads (n=2048 fp32 on a CPU, n=8192 bf16 on a GPU)
  step time       ``steps`` steps after ``warmup`` untimed ones (synchronised on a GPU)

MFU = (FLOPs per step / step time) / peak. Precision: fp32 on a CPU, bf16 autocast on a GPU
unless ``precision`` says otherwise.

Run:  jepa bench train --config configs/pretrain/quickstart.yaml [--steps 10 --batch-size 32
      --override encoder=vit_nano --override patch_size=16 --override crop_size=96]
"""

from __future__ import annotations

import contextlib
import inspect
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from jepa.methods.base import param_groups
from jepa.methods.vjepa import VideoJEPA

# Override keys that set the input instead of a model argument.
INPUT_KEYS = ("num_frames", "crop_size", "batch_size")
_PRECISIONS = {
    "32": "fp32", "fp32": "fp32", "32-true": "fp32", "float32": "fp32",
    "bf16": "bf16", "bf16-mixed": "bf16", "bf16-true": "bf16", "bfloat16": "bf16",
}


# ----------------------------------------------------------------------------- recipe
def model_arg_names() -> list[str]:
    """``VideoJEPA.__init__`` argument names (the valid model override keys)."""
    return [n for n in inspect.signature(VideoJEPA.__init__).parameters if n != "self"]


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """["KEY=VALUE", ...] -> {key: yaml value}; raises ValueError on malformed or unknown keys."""
    valid = set(model_arg_names()) | set(INPUT_KEYS)
    out: dict[str, Any] = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        if key not in valid:
            raise ValueError(
                f"unknown override key {key!r}; valid keys: {', '.join(sorted(valid))}"
            )
        out[key] = yaml.safe_load(value)
    return out


def load_recipe(
    config: str, overrides: list[str] | None = None, batch_size: int | None = None
) -> tuple[dict[str, Any], tuple[int, int, int], int, float | None]:
    """Recipe YAML + overrides -> (model init args, input size (T, H, W), batch size, grad clip)."""
    with open(config) as f:
        recipe = yaml.safe_load(f) or {}
    model_args = dict((recipe.get("model") or {}).get("init_args") or {})
    data_args = (recipe.get("data") or {}).get("init_args") or {}
    clip = (recipe.get("trainer") or {}).get("gradient_clip_val")
    extra = parse_overrides(overrides)
    batch = int(extra.pop("batch_size", data_args.get("batch_size", 8)))
    size_args = {k: extra.pop(k) for k in ("num_frames", "crop_size") if k in extra}
    model_args.update(extra)
    size_override = model_args.pop("input_size", None)
    if size_override is not None and not size_args:  # input_size given as a model arg
        size = tuple(int(v) for v in size_override)
    else:
        crop = int(size_args.get("crop_size", data_args.get("crop_size", 224)))
        size = (int(size_args.get("num_frames", data_args.get("num_frames", 16))), crop, crop)
    if len(size) != 3:
        raise ValueError(f"input_size must be [T, H, W], got {list(size)}")
    if batch_size is not None:
        batch = int(batch_size)
    if batch < 1:
        raise ValueError(f"batch size must be positive, got {batch}")
    return model_args, (size[0], size[1], size[2]), batch, float(clip) if clip else None


# ----------------------------------------------------------------------------- device
def resolve_precision(precision: str | None, device: torch.device) -> str:
    """None -> bf16 on CUDA, fp32 elsewhere; accepts Lightning spellings ("32-true", "bf16-mixed")."""
    if precision is None:
        return "bf16" if device.type == "cuda" else "fp32"
    if str(precision) not in _PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose 32 or bf16")
    return _PRECISIONS[str(precision)]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5) -> float:
    """Best dense matmul rate (FLOP/s) of n x n matrices on the device, current thread count."""
    n = n or (8192 if device.type == "cuda" else 2048)
    inner = 10 if device.type == "cuda" else 1
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    c = torch.mm(a, b)  # warm-up (and output buffer)
    synchronize(device)
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b, out=c)
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / inner)
    return 2.0 * n**3 / best


# ----------------------------------------------------------------------------- FLOPs
def _cpu_attention_flops() -> dict[Any, Callable[..., int]]:
    """FLOP formulas for the SDPA kernels FlopCounterMode does not know (CPU flash, overrideable)."""
    aten = torch.ops.aten

    def fwd(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return flop_counter.sdpa_flop_count(q, k, v)

    def bwd(g: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return flop_counter.sdpa_backward_flop_count(g, q, k, v)

    mapping: dict[Any, Callable[..., int]] = {}
    for name, fn in [
        ("_scaled_dot_product_flash_attention_for_cpu", fwd),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", bwd),
        ("_scaled_dot_product_fused_attention_overrideable", fwd),
        ("_scaled_dot_product_fused_attention_overrideable_backward", bwd),
    ]:
        op = getattr(aten, name, None)  # the registry is keyed by overload packets
        if op is not None and op not in flop_counter.flop_registry:
            mapping[op] = fn
    return mapping


@contextlib.contextmanager
def count_flops() -> Iterator[FlopCounterMode]:
    """FlopCounterMode (no display) that also counts the CPU attention kernels."""
    with FlopCounterMode(display=False, custom_mapping=_cpu_attention_flops()) as fc:
        yield fc


# ----------------------------------------------------------------------------- benchmark
def _fmt_flops(x: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f} FLOP"


def _params(module: torch.nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def _train_step(
    model_args: dict[str, Any], size: tuple[int, int, int], batch: int, dev: torch.device, prec: str, clip: float | None,
) -> tuple[Callable[[], None], VideoJEPA, Callable[[], torch.Tensor], torch.optim.Optimizer]:
    model = VideoJEPA(**model_args, input_size=size).to(dev)
    model.train()
    assert model.encoder is not None and model.predictor is not None
    hp = model.hparams
    opt = torch.optim.AdamW(
        param_groups(model.trained_modules()),
        lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay,
    )
    trained = [p for g in opt.param_groups for p in g["params"]]
    video = torch.randn(batch, 3, *size, device=dev)

    def forward_backward() -> torch.Tensor:
        with autocast(dev, prec):
            loss, _, _ = model.compute_loss(video)
        loss.backward()
        return loss.detach()

    def step() -> None:
        forward_backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(trained, clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if model.target_encoder is not None:
            model.target_encoder.update(model.encoder, 0.999)

    return step, model, forward_backward, opt


def build_train_step(
    model_args: dict[str, Any], size: tuple[int, int, int], batch: int, device: torch.device | str = "cpu",
    precision: str | None = None, clip: float | None = None,
) -> tuple[Callable[[], None], VideoJEPA]:
    """One full optimizer step of ``VideoJEPA(**model_args)`` on a fixed random batch of
    ``batch`` clips of ``size`` (T, H, W): masks sampled by the module, loss, backward, [grad clip],
    AdamW step, EMA update. Returns (step, model); what ``jepa bench train`` times, for scripts
    that time it beside something else (``tools/step_vs_vjepa2.py``)."""
    dev = torch.device(device)
    step, model, _, _ = _train_step(model_args, size, batch, dev, resolve_precision(precision, dev), clip)
    return step, model


def run_train_benchmark(
    config: str,
    steps: int = 10,
    warmup: int = 3,
    batch_size: int | None = None,
    device: str = "cpu",
    precision: str | None = None,
    overrides: list[str] | None = None,
    print_fn: Callable[[str], None] = print,
) -> dict[str, float]:
    """Time ``steps`` training steps of the recipe's model and print throughput and MFU.

    Args:
        config: pretraining recipe YAML (``model.init_args``, ``data.init_args``).
        steps: timed optimizer steps.
        warmup: untimed steps first.
        batch_size: clips per step (default: the recipe's ``data.init_args.batch_size``).
        device: "cpu", "cuda", "cuda:1", ...
        precision: "32" or "bf16" (default: bf16 autocast on CUDA, fp32 elsewhere).
        overrides: "KEY=VALUE" model init args (``encoder=vit_nano``), or ``num_frames``,
            ``crop_size``, ``batch_size`` for the input; VALUE is parsed as YAML.
        print_fn: where the table goes.

    Returns:
        clips_per_s, step_s (mean), step_s_min, flops_per_step, achieved_flops, peak_flops
        (FLOP/s), mfu, batch_size, tokens, params, peak_memory_bytes (CUDA only).
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    model_args, size, batch, clip = load_recipe(config, overrides, batch_size)
    dev = torch.device(device)
    prec = resolve_precision(precision, dev)
    dtype = torch.bfloat16 if prec == "bf16" else torch.float32

    step, model, forward_backward, opt = _train_step(model_args, size, batch, dev, prec, clip)
    hp = model.hparams

    # FLOPs of one step (its compute is real; the step is not applied)
    with count_flops() as fc:
        loss = forward_backward()
    opt.zero_grad(set_to_none=True)
    flops = float(fc.get_total_flops())
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"non-finite loss {loss.item()} in the FLOP-counting step")

    peak = matmul_peak(dev, dtype)

    for _ in range(warmup):
        step()
    synchronize(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times: list[float] = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronize(dev)
        times.append(time.perf_counter() - start)
    step_s = sum(times) / len(times)
    achieved = flops / step_s
    grid = model.encoder.grid_size
    tokens = grid[0] * grid[1] * grid[2]
    result: dict[str, float] = {
        "clips_per_s": batch / step_s,
        "step_s": step_s,
        "step_s_min": min(times),
        "step_s_median": statistics.median(times),
        "flops_per_step": flops,
        "achieved_flops": achieved,
        "peak_flops": peak,
        "mfu": achieved / peak,
        "batch_size": float(batch),
        "tokens": float(tokens),
        "params": float(_params(model.encoder) + _params(model.predictor)),
    }
    if dev.type == "cuda":
        result["peak_memory_bytes"] = float(torch.cuda.max_memory_allocated(dev))

    enc, pred = model.encoder, model.predictor
    blocks, pblocks = enc.blocks.blocks, pred.blocks.blocks
    print_fn(
        f"jepa bench train: {config}" + (f"  overrides: {' '.join(overrides)}" if overrides else "")
    )
    print_fn(
        f"  device     {dev} ({device_name(dev)}), {prec}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print_fn(
        f"  encoder    {hp.encoder}: width {enc.embed_dim}, depth {len(blocks)}, "
        f"heads {blocks[0].attn.num_heads if len(blocks) else 0}, patch {enc.patch_size}x{enc.patch_size}"
        f"x{enc.tubelet_size}, {_params(enc) / 1e6:.2f}M params"
    )
    print_fn(
        f"  predictor  width {pred.predictor_embed_dim}, depth {len(pblocks)}, "
        f"heads {pblocks[0].attn.num_heads if len(pblocks) else 0}, {_params(pred) / 1e6:.2f}M params"
        f"; target: {hp.target}"
    )
    print_fn(
        f"  input      {batch} x 3 x {size[0]} x {size[1]} x {size[2]} -> {tokens} tokens/clip "
        f"(grid {grid[0]}x{grid[1]}x{grid[2]}), {len(model.mask_samplers)} mask sets"
        + (f", grad clip {clip:g}" if clip else "")
    )
    print_fn(f"  steps      {steps} timed after {warmup} warm-up")
    rows = [
        ("clips/s", f"{result['clips_per_s']:.2f}"),
        ("step time", f"{step_s * 1e3:.1f} ms (min {min(times) * 1e3:.1f}, median "
                      f"{result['step_s_median'] * 1e3:.1f})"),
        ("model FLOPs / step", _fmt_flops(flops)),
        ("achieved", f"{_fmt_flops(achieved)}/s"),
        (f"matmul peak ({prec})", f"{_fmt_flops(peak)}/s"),
        ("MFU", f"{100 * result['mfu']:.1f} %"),
    ]
    if "peak_memory_bytes" in result:
        rows.append(("peak memory", f"{result['peak_memory_bytes'] / 2**30:.2f} GiB"))
    for name, value in rows:
        print_fn(f"  {name:<20}{value}")
    return result
