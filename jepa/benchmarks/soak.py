"""``jepa bench soak`` (``make bench``; not in CI): thousands of files, some broken, through
full training epochs with DataLoader workers, the way ``jepa fit`` reads them.

The data: ``files`` entries in one manifest, ``bad_fraction`` of them broken, the kinds spread
evenly (every kind of ``jepa.benchmarks.bad_files`` plus videos too short for a clip); the good
ones are copies of a few distinct moving-shapes videos. Clips span every frame of a video, so
damage anywhere in a file is seen the first time it is read.

The run: the real ``VideoDataModule`` (skip policy, persistent workers, buffer reuse, device
transform) under a real Lightning ``Trainer`` for ``epochs`` epochs, with a one-parameter model
that consumes each batch. Checked and printed:
  - skip count: exactly the broken files, each with the reason of its kind;
  - no broken file delivered, and every epoch delivers all its batches;
  - no worker death (the same worker processes from the first epoch to the last);
  - flat memory: resident memory of the main process and of the workers after each epoch; from
    the second epoch to the last it may grow by at most ``max(5%, 16 MiB)``.
Exit status 1 when a check fails.

Run:  jepa bench soak [--files 3000 --bad-fraction 0.05 --epochs 3 --workers 2]
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from data_pipelines.datamodule import VideoDataModule
from data_pipelines.synth import MovingShapesConfig, draw_spec, render
from data_pipelines.writers import write_manifest, write_video
from jepa.benchmarks.bad_files import BAD_KINDS, write_bad_file

KINDS: dict[str, str] = {**BAD_KINDS, "too_short": "too_short"}  # written -> reported
GROWTH_FRACTION, GROWTH_MIB = 0.05, 16.0


def make_soak_data(
    root: Path, files: int, bad_fraction: float, frames: int, size: int, seed: int = 0, distinct: int = 16
) -> tuple[Path, dict[str, str]]:
    """Write the soak dataset under ``root``; returns its manifest and {bad path: reported kind}."""
    rng = np.random.default_rng(seed)
    cfg = MovingShapesConfig(size=size, frames=frames)
    src = root / "source"
    src.mkdir(parents=True, exist_ok=True)
    good = []
    for i in range(distinct):
        path = src / f"good{i}.mp4"
        write_video(path, render(draw_spec(rng, cfg), cfg, rng), cfg.fps, gop=cfg.gop)
        good.append(path)
    short = src / "short.mp4"
    short_cfg = MovingShapesConfig(size=size, frames=max(1, frames // 2))
    write_video(short, render(draw_spec(rng, short_cfg), short_cfg, rng), cfg.fps, gop=cfg.gop)

    videos = root / "videos"
    videos.mkdir(exist_ok=True)
    n_bad = round(files * bad_fraction)
    bad_at = {int(i): list(KINDS)[k % len(KINDS)] for k, i in enumerate(rng.permutation(files)[:n_bad])}
    rows, expected = [], {}
    for i in range(files):
        path = videos / f"{i:05d}.mp4"
        kind = bad_at.get(i)
        if kind is None:
            shutil.copyfile(good[i % distinct], path)
        elif kind == "too_short":
            shutil.copyfile(short, path)
        else:
            write_bad_file(kind, path, good[i % distinct], seed=i)
        if kind is not None:
            expected[str(path)] = KINDS[kind]
        rows.append({"path": str(path)})
    write_manifest(root / "manifest.csv", rows)
    return root / "manifest.csv", expected


def _rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (Linux /proc; NaN elsewhere or once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (the DataLoader workers), from /proc."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return sorted(out)


class _Consume(L.LightningModule):
    """One parameter pulled toward each batch's mean pixel: the batch is read, nothing more."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.delivered: list[int] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.delivered += batch["index"].tolist()
        return (self.w - batch["video"].float().mean()) ** 2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _EpochStats(L.Callback):
    """Per epoch: seconds, clips delivered, files skipped so far, worker pids and memory."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._start = 0.0
        self._seen = 0
        self._before: set[int] = set()  # child processes that are not this run's workers

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._before = set(_children(os.getpid()))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._seen = time.perf_counter(), len(pl_module.delivered)  # type: ignore[arg-type]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        workers = sorted(set(_children(os.getpid())) - self._before)
        self.rows.append({
            "seconds": time.perf_counter() - self._start,
            "clips": len(pl_module.delivered) - self._seen,  # type: ignore[arg-type]
            "skipped": trainer.datamodule.skip_count,  # type: ignore[attr-defined]
            "workers": workers,
            "rss_main": _rss_mib(os.getpid()),
            "rss_workers": sum(_rss_mib(p) for p in workers),
        })


def run_soak(
    data_dir: str | None = None,
    files: int = 3000,
    bad_fraction: float = 0.05,
    epochs: int = 3,
    workers: int = 2,
    batch_size: int = 8,
    frames: int = 16,
    size: int = 64,
    print_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the data (in ``data_dir``, else a temporary folder), run the epochs, print the report."""
    tmp = None
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="jepa_soak_")
        data_dir = tmp
    root = Path(data_dir)
    if (root / "manifest.csv").exists():
        raise FileExistsError(f"{root} already holds a dataset; the soak writes a new one: choose an empty --data")
    try:
        start = time.perf_counter()
        manifest, expected = make_soak_data(root, files, bad_fraction, frames, size)
        write_s = time.perf_counter() - start
        dm = VideoDataModule(
            train=str(manifest), num_frames=frames, frame_step=1, crop_size=size, batch_size=batch_size,
            num_workers=workers, persistent_workers=True, seed=0,
        )
        model, stats = _Consume(), _EpochStats()
        # One warning per broken file and Lightning's info lines would bury the report.
        quiet = [logging.getLogger(n) for n in ("data_pipelines.dataset", "lightning.pytorch", "lightning.fabric")]
        levels = [lg.level for lg in quiet]
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        trainer = L.Trainer(
            accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            limit_val_batches=0, callbacks=[stats],
        )
        error = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # no validation step, Lightning deprecations: not the subject
                trainer.fit(model, datamodule=dm)
        except Exception as e:  # a worker death or any loader failure: reported, not raised
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        finally:
            for lg, level in zip(quiet, levels, strict=True):
                lg.setLevel(level)
        assert dm.train_set is not None
        skipped = dm.train_set.skipped_files()
        delivered_paths = {dm.train_set.source.paths[i] for i in model.delivered}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return _report(files, expected, skipped, delivered_paths, stats.rows, error, epochs, workers,
                   batch_size, frames, size, write_s, print_fn)


def _report(
    files: int, expected: dict[str, str], skipped: dict[str, str], delivered: set[str],
    rows: list[dict[str, Any]], error: str | None, epochs: int, workers: int, batch_size: int,
    frames: int, size: int, write_s: float, print_fn: Callable[[str], None],
) -> dict[str, Any]:
    by_kind = Counter(expected.values())
    print_fn(
        f"jepa bench soak: {files} files ({len(expected)} broken: "
        + ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items()))
        + f"), {size}x{size} clips of {frames} frames, batch {batch_size}, {workers} workers, "
        f"{epochs} epochs (data written in {write_s:.0f} s)"
    )
    print_fn(f"  {'epoch':>5}{'seconds':>9}{'clips':>7}{'clips/s':>9}{'skipped':>9}{'main MiB':>10}{'workers MiB':>13}  pids")
    for e, r in enumerate(rows, 1):
        print_fn(
            f"  {e:>5}{r['seconds']:>9.1f}{r['clips']:>7}{r['clips'] / r['seconds']:>9.0f}{r['skipped']:>9}"
            f"{r['rss_main']:>10.0f}{r['rss_workers']:>13.0f}  {' '.join(map(str, r['workers']))}"
        )
    per_epoch = (files // batch_size) * batch_size
    wrong_kind = {p: k for p, k in skipped.items() if expected.get(p) != k}
    checks = {
        "finished every epoch": error is None and len(rows) == epochs,
        "skip count exact": skipped.keys() == expected.keys() and not wrong_kind,
        "no broken file delivered": not (delivered & expected.keys()),
        "every batch delivered": all(r["clips"] == per_epoch for r in rows) and len(rows) == epochs,
        "no worker death": len({tuple(r["workers"]) for r in rows}) <= 1
        and all(len(r["workers"]) == workers for r in rows),
    }
    growth = {"main": float("nan"), "workers": float("nan")}
    if len(rows) >= 2:
        first, last = rows[1] if len(rows) > 2 else rows[0], rows[-1]
        growth = {k: last[f"rss_{k}"] - first[f"rss_{k}"] for k in ("main", "workers")}
        checks["flat memory"] = all(
            growth[k] <= max(GROWTH_FRACTION * first[f"rss_{k}"], GROWTH_MIB) for k in growth
        )
    if error:
        print_fn(f"  stopped: {error}")
    print_fn(f"  skipped {len(skipped)} of {len(expected)} broken files"
             + (f"; wrong reason for {len(wrong_kind)}: {sorted(wrong_kind.items())[:3]}" if wrong_kind else "")
             + (f"; missed {sorted(expected.keys() - skipped.keys())[:3]}" if expected.keys() - skipped.keys() else ""))
    print_fn(f"  memory growth, epoch {2 if len(rows) > 2 else 1} to {len(rows)}: main {growth['main']:+.1f} MiB, "
             f"workers {growth['workers']:+.1f} MiB (allowed: {GROWTH_FRACTION:.0%} or {GROWTH_MIB:.0f} MiB)")
    for name, ok in checks.items():
        print_fn(f"  {'ok  ' if ok else 'FAIL'} {name}")
    return {"checks": checks, "epochs": rows, "skipped": len(skipped), "broken": len(expected),
            "growth_mib": growth, "error": error, "passed": all(checks.values())}
