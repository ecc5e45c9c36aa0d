"""H.264 video writing and seeded train/val split manifests, shared by the synthetic-data
generator (``data_pipelines.synth``) and trajectory collection (``jepa.envs.collect``).

write_video            uint8 frames -> a video file with PyAV (deterministic libx264 settings)
write_manifest         rows (each with a ``path`` key) -> a manifest CSV
map_jobs               one function over many jobs, in worker processes when it pays
write_split_manifests  ``manifest.csv`` plus a seeded ``train.csv`` / ``val.csv`` (/ ``test.csv``) split
prepare_dataset_dir    refuse to write into an existing dataset unless told to replace it
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np

MANIFESTS = ("manifest.csv", "train.csv", "val.csv", "test.csv")


class DatasetExistsError(FileExistsError):
    """The output folder already holds a dataset and ``overwrite`` was not given."""


def prepare_dataset_dir(
    out: str | os.PathLike, subdir: str, overwrite: bool = False, extra_subdirs: Sequence[str] = ()
) -> Path:
    """Make ``out/subdir`` (and ``out/<extra>`` for each of ``extra_subdirs``) for a new dataset.
    If ``out`` already holds one (a manifest, or files in one of those folders), raise
    :class:`DatasetExistsError` naming it, unless ``overwrite``: then its manifests and those
    folders are removed first, so old and new files never mix. Other files in ``out`` are left
    alone. Returns ``out/subdir``."""
    import shutil

    out = Path(out)
    folders = [out / d for d in (subdir, *extra_subdirs)]
    manifests = [out / m for m in MANIFESTS if (out / m).is_file()]
    old = {d.name: len(list(d.iterdir())) for d in folders if d.is_dir() and any(d.iterdir())}
    if manifests or old:
        if not overwrite:
            held = ", ".join([m.name for m in manifests] + [f"{n} files in {d}/" for d, n in old.items()])
            raise DatasetExistsError(f"{out} already holds a dataset ({held}); pass --overwrite to replace it, "
                                     "or choose another --out")
        for m in manifests:
            m.unlink()
        for d in folders:
            if d.is_dir():
                shutil.rmtree(d)
    for d in folders:
        d.mkdir(parents=True, exist_ok=True)
    return folders[0]


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: int,
    codec: str = "libx264",
    gop: int = 16,
    crf: int = 18,
    options: dict[str, str] | None = None,
) -> None:
    """Encode uint8 frames [T, H, W, 3] to a video file with PyAV (container from the suffix)."""
    t, h, w, _ = frames.shape
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        opts = {"g": str(gop)}
        if codec == "libx264":
            # Identical bitstreams run to run: one thread, and no adaptive quantisation or
            # macroblock tree (their SIMD paths made ~1 run in 4 differ). veryfast keeps B-frames.
            opts.update(crf=str(crf), preset="veryfast", threads="1")
            opts["x264-params"] = "aq-mode=0:mbtree=0"
        elif codec == "libx265":
            opts.update(crf=str(crf), preset="veryfast")
        elif codec in ("libvpx-vp9", "libvpx"):
            opts.update(crf=str(crf + 12), **{"b:v": "0", "deadline": "realtime", "cpu-used": "8"})
        elif codec == "libsvtav1":
            opts.update(crf=str(crf + 12), preset="12")
        opts.update(options or {})
        stream.options = opts
        for i in range(t):
            # Convert to YUV here, single-threaded, rather than leave it to the encoder's setup.
            rgb = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame = rgb.reformat(format=stream.pix_fmt, threads=1)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def map_jobs(fn: Callable[[Any], dict[str, object]], jobs: Sequence[Any], workers: int | None,
             min_jobs: int = 8, chunksize: int = 16) -> list[dict[str, object]]:
    """``[fn(j) for j in jobs]``, in order; in ``workers`` processes (default: the CPUs, at most 8)
    when there are more than ``min_jobs`` jobs. Results never depend on the worker count."""
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1 and len(jobs) > min_jobs:
        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(fn, jobs, chunksize=chunksize))
    return [fn(j) for j in jobs]


def write_manifest(path: str | os.PathLike, rows: Sequence[dict[str, object]]) -> None:
    """Write rows (each with a ``path`` key) to a manifest CSV."""
    if not rows:
        raise ValueError(f"refusing to write an empty manifest to {path}")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)


def write_split_manifests(
    out: Path, rows: Sequence[dict[str, object]], seed: int, val_fraction: float, test_fraction: float = 0.0
) -> Path:
    """Write ``out/manifest.csv`` (all rows) and a seeded ``train.csv`` / ``val.csv`` split of it,
    plus ``test.csv`` when ``test_fraction`` > 0 (no split when the fractions leave the training
    side or the validation side empty). Returns the manifest's path."""
    write_manifest(out / "manifest.csv", rows)
    order = np.random.default_rng([seed, 1 << 30]).permutation(len(rows)).tolist()
    n_val = int(round(len(rows) * val_fraction))
    n_test = int(round(len(rows) * test_fraction))
    if n_val > 0 and n_val + n_test < len(rows):
        val_ids, test_ids = set(order[:n_val]), set(order[n_val:n_val + n_test])
        write_manifest(out / "train.csv", [r for i, r in enumerate(rows) if i not in val_ids and i not in test_ids])
        write_manifest(out / "val.csv", [r for i, r in enumerate(rows) if i in val_ids])
        if test_ids:
            write_manifest(out / "test.csv", [r for i, r in enumerate(rows) if i in test_ids])
    return out / "manifest.csv"
