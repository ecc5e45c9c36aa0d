"""Mean and spread over pretraining seeds of the probe results that ``tools/seed_sweep.sh`` wrote.

    python tools/sweep_table.py outputs/cmp/vicreg_e4 outputs/cmp/sigreg_e4

Each argument is an OUT_PREFIX of ``seed_sweep.sh``; its runs are ``PREFIX_s*``. Prints one
markdown row per (prefix, target, head): the pretrained encoder's top-1 (or R^2) mean +- std over
seeds (sample std), the per-seed values, the random-init baseline where a run measured it, and the
mean fit time.
"""

from __future__ import annotations

import glob
import json
import statistics
import sys
from pathlib import Path


def rows(prefix: str) -> list[str]:
    runs = sorted(glob.glob(f"{prefix}_s*"))
    results: dict[tuple[str, str], list[float]] = {}
    random_init: dict[tuple[str, str], float] = {}
    seconds = []
    for run in runs:
        probe = Path(run) / "probe" / "probe.json"
        if not probe.is_file():
            continue
        fit = Path(run) / "fit_seconds.txt"
        if fit.is_file():
            seconds.append(float(fit.read_text().split()[-1]))
        for entry in json.loads(probe.read_text())["probes"]:  # values are already in percent
            key = (entry["target"], entry["head"])
            results.setdefault(key, []).append(float(entry["results"]["pretrained"]["mean"]))
            if "random_init" in entry["results"]:
                random_init[key] = float(entry["results"]["random_init"]["mean"])
    out = []
    for (target, head), vals in sorted(results.items()):
        spread = statistics.stdev(vals) if len(vals) > 1 else 0.0
        each = ", ".join(f"{v:.1f}" for v in vals)
        ri = f"{random_init[(target, head)]:.1f}" if (target, head) in random_init else "-"
        fit = f"{statistics.mean(seconds) / 60:.1f}" if seconds else "-"
        out.append(f"| {Path(prefix).name} | {target} | {head} | {statistics.mean(vals):.1f} +- {spread:.1f} "
                   f"| {each} | {len(vals)} | {ri} | {fit} |")
    return out


def main(prefixes: list[str]) -> int:
    print("| run | target | head | top-1 mean +- std | per seed | seeds | random init | fit min |")
    print("|---|---|---|---|---|---|---|---|")
    for prefix in prefixes:
        for row in rows(prefix):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
