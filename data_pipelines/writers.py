"""H.264 video writing and seeded train/val split manifests, shared by the synthetic-data
generator (``data_pipelines.synth``) and trajectory collection (``jepa.envs.collect``).

write_video            uint8 frames -> a video file with PyAV (deterministic libx264 settings)
write_manifest         rows (each with a ``path`` key) -> a manifest CSV
write_split_manifests  ``manifest.csv`` plus a seeded ``train.csv`` / ``val.csv`` split
prepare_dataset_dir    refuse to write into an existing dataset unless told to replace it
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

MANIFESTS = ("manifest.csv", "train.csv", "val.csv", "test.csv")


class DatasetExistsError(FileExistsError):
    """The output folder already holds a dataset and ``overwrite`` was not given."""


def prepare_dataset_dir(out: str | os.PathLike, subdir: str, overwrite: bool = False) -> Path:
    """Make ``out/subdir`` for a new dataset. If ``out`` already holds one (a manifest, or files in
    ``subdir``), raise :class:`DatasetExistsError` naming it, unless ``overwrite``: then its
    manifests and ``subdir`` are removed first, so old and new files never mix. Other files in
    ``out`` are left alone."""
    import shutil

    out = Path(out)
    files = out / subdir
    manifests = [out / m for m in MANIFESTS if (out / m).is_file()]
    old = sorted(files.iterdir()) if files.is_dir() else []
    if manifests or old:
        if not overwrite:
            held = ", ".join([m.name for m in manifests] + ([f"{len(old)} files in {subdir}/"] if old else []))
            raise DatasetExistsError(f"{out} already holds a dataset ({held}); pass --overwrite to replace it, "
                                     "or choose another --out")
        for m in manifests:
            m.unlink()
        if files.is_dir():
            shutil.rmtree(files)
    files.mkdir(parents=True, exist_ok=True)
    return files


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


def write_manifest(path: str | os.PathLike, rows: Sequence[dict[str, object]]) -> None:
    """Write rows (each with a ``path`` key) to a manifest CSV."""
    if not rows:
        raise ValueError(f"refusing to write an empty manifest to {path}")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)


def write_split_manifests(
    out: Path, rows: Sequence[dict[str, object]], seed: int, val_fraction: float
) -> Path:
    """Write ``out/manifest.csv`` (all rows) and a seeded ``train.csv`` / ``val.csv`` split of it
    (no split when ``val_fraction`` leaves either side empty). Returns the manifest's path."""
    write_manifest(out / "manifest.csv", rows)
    order = np.random.default_rng([seed, 1 << 30]).permutation(len(rows))
    n_val = int(round(len(rows) * val_fraction))
    if 0 < n_val < len(rows):
        val_ids = set(order[:n_val].tolist())
        write_manifest(out / "train.csv", [r for i, r in enumerate(rows) if i not in val_ids])
        write_manifest(out / "val.csv", [r for i, r in enumerate(rows) if i in val_ids])
    return out / "manifest.csv"
