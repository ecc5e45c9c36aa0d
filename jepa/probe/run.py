"""``jepa probe``: frozen-encoder probes with baselines, from files to report.

    jepa probe --encoder outputs/quickstart/encoder.pt \\
        --train data/moving_shapes/train.csv --val data/moving_shapes/val.csv \\
        --target direction shape --head linear attentive --seeds 3 --out outputs/quickstart/probe

Features of the pretrained encoder, a randomly initialised encoder of the same architecture and
the raw-pixel baseline are extracted in one decoding pass (or read from the cache), every head is
trained and scored on each, and the report (JSON, markdown, PNG) shows the margins.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from jepa.clips import clip_spec_for
from jepa.hub import encoder_meta, latest_checkpoint, load_encoder
from jepa.models.vit import VideoViT
from jepa.probe.features import (
    FeatureCache,
    PixelFeatures,
    extract_features,
    probe_dataset,
)
from jepa.probe.report import bar_chart, margins, markdown_table, write_json
from jepa.probe.select import run_head
from jepa.probe.train import HeadConfig, Task, primary_metric

log = logging.getLogger(__name__)

DEFAULT_HEADS: dict[str, HeadConfig] = {
    "linear": HeadConfig("linear", "adamw", lrs=(1e-3, 1e-2), weight_decays=(1e-4, 1e-2, 1e-1), epochs=50, batch_size=256),
    "attentive": HeadConfig("attentive", "adamw", lrs=(1e-3, 3e-3), weight_decays=(1e-2,), epochs=20, batch_size=64, warmup_epochs=2),
}


def default_cache_dir() -> Path:
    root = os.environ.get("JEPA_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "jepa")
    return Path(root) / "features"


def random_twin(encoder: VideoViT, seed: int = 0) -> VideoViT:
    """A freshly initialised encoder of the same architecture (the random-init baseline)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VideoViT(**encoder.config).eval()


def infer_task(values: torch.Tensor) -> Task:
    """Integer label columns are classes, float columns regression targets."""
    return "classification" if not values.is_floating_point() else "regression"


def run_probe(
    encoder: str | os.PathLike[str],
    train: str | os.PathLike[str],
    val: str | os.PathLike[str],
    targets: Sequence[str],
    heads: Sequence[str] = ("linear",),
    seeds: int = 3,
    out: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    views: int = 2,
    crops: int = 1,
    frame_step: int | None = None,
    crop_fraction: float = 1.0,
    layer: int = -1,
    baselines: Sequence[str] = ("random_init", "pixels"),
    task: Literal["auto", "classification", "regression"] = "auto",
    batch_size: int = 16,
    num_workers: int = 2,
    device: str = "cpu",
    head_configs: dict[str, HeadConfig] | None = None,
    progress: bool = True,
    test: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Probe a frozen encoder on ``targets`` (manifest label columns); returns the report dict and
    writes ``probe.json``, ``probe.md`` and ``probe.png`` under ``out`` when given.

    Heads are chosen on held-out *training* videos and scored on ``val``; with ``test`` the same
    heads are also scored on that manifest (``entry["test"]``, a second table in ``probe.md``).
    Report the test split for a recipe chosen by looking at val."""
    configs = {**DEFAULT_HEADS, **(head_configs or {})}
    unknown = [h for h in heads if h not in configs]
    if unknown:
        raise ValueError(f"unknown head(s) {unknown}; choose from {sorted(configs)}")
    bad = [b for b in baselines if b not in ("random_init", "pixels")]
    if bad:
        raise ValueError(f"unknown baseline(s) {bad}; choose from random_init, pixels")
    start = time.perf_counter()
    encoder = latest_checkpoint(encoder)  # a run folder means its newest last*.ckpt
    enc = load_encoder(encoder)
    depth = len(enc.blocks.blocks)
    if not -depth <= layer < depth:
        raise ValueError(f"--layer {layer} is out of range for this {depth}-block encoder; use 0..{depth - 1} "
                         f"(or -1 for the final normalised output)")
    spec = clip_spec_for(enc, encoder_meta(encoder), views, crops, frame_step, crop_fraction)
    train_set = probe_dataset(train, spec)
    val_set = probe_dataset(val, spec, vocab=train_set.source.vocab)
    test_set = probe_dataset(test, spec, vocab=train_set.source.vocab) if test is not None else None
    splits = [("train", train_set), ("val", val_set)] + ([("test", test_set)] if test_set is not None else [])
    for name, ds in splits:
        missing = [t for t in targets if t not in ds.label_names]
        if missing:
            raise ValueError(f"--target {missing} not in the {name} manifest {ds.source.origin}; its label columns: {ds.label_names}")
    models: dict[str, nn.Module] = {"pretrained": enc}
    if "random_init" in baselines:
        models["random_init"] = random_twin(enc)
    if "pixels" in baselines:
        models["pixels"] = PixelFeatures(enc.patch_size, enc.tubelet_size)
    cache = FeatureCache(cache_dir or default_cache_dir())
    keep_tokens = "attentive" in heads
    kw = dict(cache=cache, keep_tokens=keep_tokens, layer=layer, batch_size=batch_size, num_workers=num_workers, device=device, progress=progress)
    feats_train = extract_features(models, train_set, spec, desc="train features", **kw)  # type: ignore[arg-type]
    feats_val = extract_features(models, val_set, spec, desc="val features", **kw)  # type: ignore[arg-type]
    feats_test = extract_features(models, test_set, spec, desc="test features", **kw) if test_set is not None else None  # type: ignore[arg-type]
    extracted = time.perf_counter()
    entries = []
    for target in targets:
        y_tr_all, y_va_all = feats_train["pretrained"].labels[target], feats_val["pretrained"].labels[target]
        kind: Task = infer_task(y_tr_all) if task == "auto" else task
        keep_tr = ~torch.isnan(y_tr_all.float()) if kind == "regression" else torch.ones_like(y_tr_all, dtype=torch.bool)
        keep_va = ~torch.isnan(y_va_all.float()) if kind == "regression" else torch.ones_like(y_va_all, dtype=torch.bool)
        y_te_all = feats_test["pretrained"].labels[target] if feats_test is not None else None
        keep_te = None
        if y_te_all is not None:
            keep_te = ~torch.isnan(y_te_all.float()) if kind == "regression" else torch.ones_like(y_te_all, dtype=torch.bool)
        if kind == "classification":
            y_tr_all, y_va_all = y_tr_all.long(), y_va_all.long()
            y_te_all = y_te_all.long() if y_te_all is not None else None
        top = [y_tr_all.max(), y_va_all.max()] + ([y_te_all.max()] if y_te_all is not None else [])
        num_out = int(max(top)) + 1 if kind == "classification" else 1
        for head in heads:
            cfg = configs[head]
            results = {}
            for name in models:
                ftr, fva = feats_train[name], feats_val[name]
                xtr, xva = (ftr.tokens, fva.tokens) if head == "attentive" else (ftr.pooled, fva.pooled)
                assert xtr is not None and xva is not None
                xte = yte = None
                if feats_test is not None and y_te_all is not None and keep_te is not None:
                    fte = feats_test[name]
                    xte = (fte.tokens if head == "attentive" else fte.pooled)[keep_te]
                    yte = y_te_all[keep_te]
                t0 = time.perf_counter()
                heads_for = getattr(models[name], "attentive_heads", None)  # the pixel tokens' own width
                model_cfg = replace(cfg, num_heads=heads_for) if heads_for and head == "attentive" else cfg
                results[name] = run_head(
                    model_cfg, xtr[keep_tr], y_tr_all[keep_tr], xva[keep_va], y_va_all[keep_va], kind, num_out,
                    range(seeds), device, test_x=xte, test_y=yte,
                )
                results[name]["seconds"] = time.perf_counter() - t0
                log.info("%s %s %s: %.3f", target, head, name, results[name]["mean"])
            entry = {
                "target": target, "head": head, "task": kind, "metric": primary_metric(kind),
                "num_classes": num_out if kind == "classification" else None,
                "results": results, "margin": margins(results),
                "train_videos": int(keep_tr.sum()), "val_videos": int(keep_va.sum()),
            }
            if keep_te is not None:
                test_results = {n: r.pop("test") for n, r in results.items()}
                entry["test"] = {"results": test_results, "margin": margins(test_results), "videos": int(keep_te.sum())}
            entries.append(entry)
    report = {
        "encoder": str(encoder), "train": str(train), "val": str(val), "test": None if test is None else str(test),
        "spec": spec.__dict__, "layer": layer,
        "seeds": seeds, "heads": {h: configs[h].__dict__ for h in heads},
        "skipped_videos": {name: ds.skip_count for name, ds in splits},
        "cache": {n: feats_train[n].meta.get("cache") for n in models},
        "seconds": {"features": extracted - start, "heads": time.perf_counter() - extracted},
        "probes": entries,
    }
    report["table"] = markdown_table(entries)
    if test is not None:
        report["test_table"] = markdown_table([{**e, **e["test"]} for e in entries])
    if out is not None:
        out = Path(out)
        write_json(report, out / "probe.json")
        text = report["table"] + "\n"
        if test is not None:
            text = (f"Scored on val ({val}):\n\n{report['table']}\n\n"
                    f"Scored on test ({test}):\n\n{report['test_table']}\n")
        (out / "probe.md").write_text(text)
        bar_chart(entries, out / "probe.png", title=f"{Path(encoder).name}: frozen probes, {seeds} seeds")
    return report
