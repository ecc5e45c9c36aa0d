"""Helpers for tests that run ``jepa fit`` in subprocesses: a tiny config, the environment,
and readers for the CSV losses and checkpoint weights a run leaves behind."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).parents[1]
ENTRY = "from jepa.training.cli import main; import sys; sys.exit(main())"


def env() -> dict[str, str]:
    """Subprocess environment: ``tests/`` importable (fault callbacks), one thread, offline."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT), e.get("PYTHONPATH", "")])
    e.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", WANDB_SILENT="true")
    return e


def tiny_fit_config(
    tmp: Path, synth_dir: Path, name: str, batch: int, callbacks: list[dict[str, Any]] | None = None,
    trainer: dict[str, Any] | None = None, data: dict[str, Any] | None = None, **model: object
) -> Path:
    """Tiny pretraining whose only randomness is keyed by sample: masks by (seed, step, clip)
    (``mask_rng: sample``), clip starts by (seed, epoch, video), no random crop or flip. CSV
    logs every step; ``faults.DumpRankState`` writes each rank's state to ``<run>/ranks``."""
    cfg = yaml.safe_load((ROOT / "configs/pretrain/quickstart.yaml").read_text())
    root = tmp / name
    cfg["trainer"] = {
        "accelerator": "cpu", "precision": "32-true", "max_epochs": None, "max_steps": 4,
        "default_root_dir": str(root), "log_every_n_steps": 1, "limit_val_batches": 0,
        "enable_progress_bar": False, "gradient_clip_val": 1.0, "num_sanity_val_steps": 0,
        "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(root), "name": "csv"}}],
        "callbacks": [{"class_path": "faults.DumpRankState", "init_args": {"out": str(root / "ranks")}}, *(callbacks or [])],
        **(trainer or {}),
    }
    cfg["model"]["init_args"].update(encoder="vit_pico", monitor_every=1, mask_rng="sample", **model)
    cfg["data"]["init_args"].update(
        train=str(synth_dir / "train.csv"), val=None, num_frames=4, crop_size=32, batch_size=batch,
        num_workers=0, persistent_workers=False, scale=[1.0, 1.0], ratio=[1.0, 1.0], hflip_prob=0.0,
    )
    cfg["data"]["init_args"].update(data or {})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_fit(args: list[str], timeout: int = 400, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``jepa fit ARGS`` in a fresh process (stdout and stderr together in ``.stdout``)."""
    return subprocess.run([sys.executable, "-c", ENTRY, "fit", *args], cwd=ROOT, env={**env(), **(extra_env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


def losses(run: Path) -> dict[int, float]:
    """step -> train/loss from every CSV version of a run (a resumed run's rows win)."""
    rows = []
    for path in sorted((run / "csv").rglob("metrics.csv")):
        with open(path) as f:
            rows += list(csv.DictReader(f))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def weights(run: Path, name: str = "last.ckpt") -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / name, weights_only=True)["state_dict"]
