"""Planning success over training seeds, from ``tools/plan_sweep.sh`` outputs.

    python tools/plan_table.py outputs/wm/vicreg outputs/wm/sigreg [--protocol eb-jepa]

For each prefix: every ``PREFIX_sS/plan_PROTOCOL_eE/plan.json``. Per training seed, successes
pooled over its evaluation seeds; then the mean +- sample std of the per-seed rates over training
seeds, and the pooled rate with its 95% Wilson interval. Baseline agents (perfect model, random)
are reported where they were run. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jepa.planning.protocols import wilson_interval  # noqa: E402


def collect(prefix: str, protocol: str) -> dict[str, dict[int, list[dict]]]:
    """agent -> training seed -> plan.json agent summaries (one per evaluation seed)."""
    base = Path(prefix)
    out: dict[str, dict[int, list[dict]]] = {}
    for run in sorted(base.parent.glob(f"{base.name}_s*")):
        seed = int(run.name.rsplit("_s", 1)[1])
        for plan in sorted(run.glob(f"plan_{protocol}_e*/plan.json")):
            report = json.loads(plan.read_text())
            for agent in ("world_model", "perfect_model", "random"):
                if agent in report:
                    out.setdefault(agent, {}).setdefault(seed, []).append(report[agent])
    return out


def row(name: str, agent: str, per_seed: dict[int, list[dict]]) -> str:
    rates, ok, n = [], 0, 0
    for seed in sorted(per_seed):
        s = sum(r["successes"] for r in per_seed[seed])
        e = sum(r["episodes"] for r in per_seed[seed])
        rates.append(100 * s / e)
        ok, n = ok + s, n + e
    lo, hi = wilson_interval(ok, n)
    spread = f" +- {statistics.stdev(rates):.1f}" if len(rates) > 1 else ""
    evals = sorted({len(v) for v in per_seed.values()})
    return (f"| {name} | {agent} | {statistics.mean(rates):.1f}{spread} | {', '.join(f'{r:.0f}' for r in rates)} "
            f"| {len(rates)} | {'/'.join(map(str, evals))} | {100 * ok / n:.1f} ({ok}/{n}) | {100 * lo:.1f}-{100 * hi:.1f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prefixes", nargs="+")
    ap.add_argument("--protocol", default="eb-jepa")
    args = ap.parse_args()
    print("| run | agent | success % mean +- std over training seeds | per training seed | training seeds "
          "| evaluations per seed | pooled | pooled 95% CI (Wilson) |")
    print("|---|---|---|---|---|---|---|---|")
    for prefix in args.prefixes:
        for agent, per_seed in collect(prefix, args.protocol).items():
            print(row(Path(prefix).name, agent, per_seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
