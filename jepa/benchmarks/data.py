"""``jepa bench data`` (``make bench``): the loader against the decode-only limit and a naive loader.

Three measurements in one run, on the same files and exactly the same clips:
  loader       ``VideoClipDataset`` + ``DataLoader`` with W workers, configured and released as
               ``VideoDataModule`` does, timed over warm epochs (workers started, files cached)
  decode-only  W processes running a bare PyAV loop over the clips the loader produced: open,
               seek to the keyframe before the clip, decode to the clip's last frame, convert
               the wanted frames to RGB (with the same cached converter the loader uses). No
               sampling, no checks, no collation, no IPC: the ceiling.
  naive        W processes decoding every frame of the file to RGB, then picking the clip's
               frames (what loaders that read whole videos do)
Ratios: loader / decode-only (target >= 0.85) and loader / naive (several times, when clips
are shorter than files and keyframes are more frequent than files are long).

Default videos are shaped like common training sources: 10 s at 25 fps (250 frames, as
Kinetics clips), a keyframe every 2 s (GOP 50, usual for streamed video), H.264 with B-frames.

Run:  jepa bench data [--videos 96 --video-frames 250 --gop 50 --size 128 --workers 2]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from data_pipelines.dataset import VideoClipDataset, collate_clips
from data_pipelines.decoding import frame_to_rgb
from data_pipelines.sampling import ClipSampler
from data_pipelines.synth import MovingShapesConfig, make_moving_shapes

Work = list[tuple[str, list[int]]]  # (path, sorted frame indices of one clip)


def _decode_only(work: Work) -> int:
    for path, indices in work:
        wanted = set(indices)
        with av.open(path) as c:
            s = c.streams.video[0]
            s.thread_type, s.thread_count = "AUTO", 1
            step = 1 / (Fraction(s.average_rate) * s.time_base)
            c.seek(int(s.start_time + round(indices[0] * step)), stream=s, backward=True)
            for frame in c.decode(s):
                k = round((frame.pts - s.start_time) / step)
                if k in wanted:
                    frame_to_rgb(frame)
                if k >= indices[-1]:
                    break
    return len(work)


def _naive(work: Work) -> int:
    for path, indices in work:
        with av.open(path) as c:
            s = c.streams.video[0]
            s.thread_type, s.thread_count = "AUTO", 1
            frames = [frame_to_rgb(f) for f in c.decode(s)]
        np.stack([frames[i] for i in indices])
    return len(work)


def _timed_pool(fn: Callable[[Work], int], work: Work, workers: int) -> float:
    """Seconds for ``workers`` warm processes to run ``fn`` over ``work`` split evenly."""
    chunks = [work[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(fn, [c[:2] for c in chunks]))  # start and warm the processes
        start = time.perf_counter()
        done = sum(pool.map(fn, chunks))
        seconds = time.perf_counter() - start
    assert done == len(work)
    return seconds


def _time_loader(
    ds: VideoClipDataset, batch_size: int, workers: int, epochs: int, seed: int
) -> tuple[Work, float]:
    """Clips the loader delivered over ``epochs`` epochs after a warm-up one, and the seconds.

    One iterator over all epochs (a fresh shuffle each): the steady state of a long run, with
    no pipeline drain at the end of each of these short epochs."""
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(ds, num_samples=(epochs + 1) * len(ds), generator=generator)
    if workers > 0:
        ds.reuse_buffers(4 + 3)  # as VideoDataModule does
    loader = DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
        collate_fn=collate_clips, prefetch_factor=4 if workers > 0 else None,
    )
    warm = len(ds) // batch_size
    work: Work = []
    start = time.perf_counter()
    for b, batch in enumerate(loader):
        if b == warm:
            start = time.perf_counter()
        if b >= warm:
            for i, idx in zip(batch["index"].tolist(), batch["frame_indices"].tolist(), strict=True):
                work.append((ds.source.paths[i], idx))
        ds.release(batch)  # done with it, as VideoDataModule is after its device transform
    return work, time.perf_counter() - start


def run_benchmark(
    data_dir: str | None = None,
    videos: int = 96,
    workers: int = 2,
    batch_size: int = 8,
    num_frames: int = 16,
    frame_step: int = 2,
    video_frames: int = 250,
    size: int = 128,
    gop: int = 50,
    epochs: int = 4,
    rounds: int = 2,
    print_fn: Callable[[str], None] = print,
) -> dict[str, float]:
    """Measure and print the three rates and their ratios; returns them as a dict."""
    tmp = None
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="jepa_bench_")
        data_dir = tmp
    root = Path(data_dir)
    try:
        if not (root / "manifest.csv").is_file():
            cfg = MovingShapesConfig(size=size, frames=video_frames, gop=gop)
            print_fn(f"writing {videos} benchmark videos to {root} ...")
            make_moving_shapes(root, videos, seed=0, cfg=cfg, workers=workers)
        sampler = ClipSampler(num_frames=num_frames, frame_step=frame_step)
        ds = VideoClipDataset(root / "manifest.csv", sampler)
        loader_best, decode_best = 0.0, 0.0
        for r in range(rounds):  # interleaved rounds, best of each: drift hits both sides alike
            work, loader_s = _time_loader(ds, batch_size, workers, epochs, seed=r)
            loader_best = max(loader_best, len(work) / loader_s)
            decode_best = max(decode_best, len(work) / _timed_pool(_decode_only, work, workers))
        naive = len(work) / _timed_pool(_naive, work, workers)
        clips = len(work)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    rates = {
        "loader_clips_per_s": loader_best,
        "decode_only_clips_per_s": decode_best,
        "naive_clips_per_s": naive,
    }
    rates["loader_vs_decode_only"] = rates["loader_clips_per_s"] / rates["decode_only_clips_per_s"]
    rates["loader_vs_naive"] = rates["loader_clips_per_s"] / rates["naive_clips_per_s"]
    span = sampler.span(frame_step)
    print_fn(
        f"jepa bench data: {videos} H.264 videos ({size}x{size}, {video_frames} frames, GOP {gop}); "
        f"clips of {num_frames} frames, step {frame_step} (span {span}); {workers} workers; "
        f"{clips} clips per timed run, best of {rounds} interleaved rounds"
    )
    print_fn(f"  {'':<34}{'clips/s':>10}{'frames/s':>12}")
    for name, key in (
        ("loader (VideoClipDataset+DataLoader)", "loader_clips_per_s"),
        ("decode-only limit (bare PyAV)", "decode_only_clips_per_s"),
        ("naive (decode whole file, pick)", "naive_clips_per_s"),
    ):
        print_fn(f"  {name:<34}{rates[key]:>10.1f}{rates[key] * num_frames:>12.0f}")
    print_fn(
        f"  loader / decode-only limit: {rates['loader_vs_decode_only']:.2f} (target >= 0.85)"
    )
    print_fn(f"  loader / naive:             {rates['loader_vs_naive']:.2f}x")
    return rates
