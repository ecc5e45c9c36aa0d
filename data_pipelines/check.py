"""``jepa data check``: decode one clip from every file and report what a training run would hit.

Run before a long training run:  jepa data check data/moving_shapes --num-frames 16 --frame-step 2
"""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from data_pipelines.decoding import DecodeError, open_video
from data_pipelines.sampling import ClipSampler
from data_pipelines.sources import load_source


@dataclass
class FileResult:
    path: str
    ok: bool
    kind: str = "ok"
    detail: str = ""
    frames: int = 0
    fps: float = 0.0
    height: int = 0
    width: int = 0


@dataclass
class CheckReport:
    source: str
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bad(self) -> list[FileResult]:
        return [r for r in self.results if not r.ok]

    def format(self, max_listed: int = 50) -> str:
        ok = [r for r in self.results if r.ok]
        lines = [
            f"checked {len(self.results)} files from {self.source} in {self.seconds:.1f} s: "
            f"{len(ok)} ok, {len(self.bad)} bad"
        ]
        if self.bad:
            counts = Counter(r.kind for r in self.bad)
            lines.append("bad files by reason: " + ", ".join(f"{k} {n}" for k, n in counts.most_common()))
            for r in self.bad[:max_listed]:
                lines.append(f"  {r.kind:<16} {r.path}: {r.detail}")
            if len(self.bad) > max_listed:
                lines.append(f"  ... and {len(self.bad) - max_listed} more")
        if ok:
            lines.append("video length (frames):")
            lines += _histogram([r.frames for r in ok])
            lines.append("resolution (H x W, as decoded):")
            for res, n in Counter(f"{r.height}x{r.width}" for r in ok).most_common(10):
                lines.append(f"  {res:>11}: {n}")
            lines.append("frame rate:")
            for fps, n in Counter(round(r.fps, 2) for r in ok).most_common(5):
                lines.append(f"  {fps:>11}: {n}")
        return "\n".join(lines)


def _histogram(values: list[int], bins: int = 6) -> list[str]:
    lo, hi = min(values), max(values)
    if lo == hi:
        return [f"  {lo:>11}: {len(values)}"]
    width = max(1, -(-(hi - lo + 1) // bins))
    counts = Counter((v - lo) // width for v in values)
    return [
        f"  {lo + b * width:>5}-{min(hi, lo + (b + 1) * width - 1):<5}: {counts.get(b, 0)}"
        for b in range((hi - lo) // width + 1)
    ]


def check_one(args: tuple[str, ClipSampler, str, int | None]) -> FileResult:
    path, sampler, backend, short_side = args
    try:
        with open_video(path, backend=backend, short_side=short_side) as reader:
            indices = sampler(reader.num_frames, reader.fps, path=path)
            clip = reader.get_frames(indices.reshape(-1))
            return FileResult(path, True, frames=reader.num_frames, fps=reader.fps,
                              height=int(clip.shape[1]), width=int(clip.shape[2]))
    except DecodeError as e:
        return FileResult(path, False, e.kind, e.detail)
    except Exception as e:  # report, don't crash: this tool exists to find such files
        return FileResult(path, False, "other", f"{type(e).__name__}: {e}")


def check_source(
    source: str | os.PathLike,
    sampler: ClipSampler | None = None,
    backend: str = "pyav",
    short_side: int | None = None,
    workers: int | None = None,
) -> CheckReport:
    """Decode the centre clip of every file of ``source`` (manifest or folder)."""
    sampler = sampler or ClipSampler(mode="uniform")
    src = load_source(source)
    start = time.perf_counter()
    jobs = [(p, sampler, backend, short_side) for p in src.paths]
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1 and len(jobs) > 4:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(check_one, jobs, chunksize=8))
    else:
        results = [check_one(j) for j in jobs]
    return CheckReport(src.origin, results, time.perf_counter() - start)
