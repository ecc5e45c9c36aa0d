"""``jepa inspect`` figures over encoders and sparsities: R^2 against PCA per active-atom count, and
the nameable counts (dictionary, PCA directions, random-init twin's dictionary) per encoder.

    python tools/inspect_sweep.py --data data/moving_shapes_test/manifest.csv --atoms 256 \\
        --active 2 4 8 16 --curve outputs/cmp/vicreg_e6_s0/encoder.pt \\
        --encoders outputs/cmp/vicreg_e6_s0/encoder.pt outputs/cmp/vicreg_e6_s1/encoder.pt \\
        --out outputs/inspect/sweep.json

Every figure is ``jepa.inspect.run.run_inspect``'s (the same fit / held-out split of videos, a
seeded dictionary per run; token features come from the probes' feature cache, so each encoder is
read once). ``--curve`` encoders are fitted at every ``--active``; every ``--encoders`` entry at
``--named-active`` for the nameable counts. Prints two markdown tables and writes everything to
``--out`` (a JSON list, one entry per run; an existing file is extended, runs already in it are
skipped, so an interrupted sweep resumes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def run(encoder: str, data: str, atoms: int, active: int, steps: int, seed: int) -> dict[str, Any]:
    from jepa.inspect.run import run_inspect

    r = run_inspect(encoder, data, atoms=atoms, active=active, steps=steps, seed=seed, progress=False, num_workers=2)
    keep = ("r2", "pca_r2", "nameable", "nameable_by_label", "dead", "always_on", "fit_seconds")
    return {"encoder": encoder, "active": active, "atoms": atoms, "steps": steps, "seed": seed,
            "pretrained": {k: r["pretrained"][k] for k in keep}, "random_init": {k: r["random_init"][k] for k in keep},
            "pca": r["pca"], "labels": r["labels"], "clips": r["clips"], "heldout_clips": r["heldout_clips"]}


def curve_table(results: list[dict[str, Any]], encoders: list[str]) -> list[str]:
    lines = ["| encoder | active atoms k | dictionary R^2 | PCA R^2 (k components) | random-init dictionary R^2 | random-init PCA R^2 |",
             "|---|---|---|---|---|---|"]
    for enc in encoders:
        for r in sorted((r for r in results if r["encoder"] == enc), key=lambda r: r["active"]):
            lines.append(f"| {enc} | {r['active']} | {r['pretrained']['r2']:.3f} | {r['pretrained']['pca_r2']:.3f} | "
                         f"{r['random_init']['r2']:.3f} | {r['random_init']['pca_r2']:.3f} |")
    return lines


def named_table(results: list[dict[str, Any]], encoders: list[str], active: int) -> list[str]:
    rows = [r for r in results if r["encoder"] in encoders and r["active"] == active]
    if not rows:
        return []
    labels = sorted({lab for r in rows for lab in r["labels"]})

    def cell(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.0f}"
        return f"{statistics.mean(values):.1f} +- {statistics.stdev(values):.1f} ({', '.join(f'{v:.0f}' for v in values)})"

    lines = [f"| units (k = {active}, {rows[0]['atoms']} atoms; {len(rows)} encoder(s)) | nameable | "
             + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for key, name in (("pretrained", "pretrained dictionary"), ("pca", "PCA directions (pretrained)"),
                      ("random_init", "random-init dictionary")):
        lines.append(f"| {name} | {cell([r[key]['nameable'] for r in rows])} | "
                     + " | ".join(cell([r[key]["nameable_by_label"].get(lab, 0) for r in rows]) for lab in labels) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--atoms", type=int, default=256)
    p.add_argument("--active", type=int, nargs="+", default=[2, 4, 8, 16])
    p.add_argument("--named-active", type=int, default=8)
    p.add_argument("--curve", nargs="*", default=[], help="encoders fitted at every --active")
    p.add_argument("--encoders", nargs="*", default=[], help="encoders fitted at --named-active (nameable counts)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    out = Path(args.out)
    results: list[dict[str, Any]] = json.loads(out.read_text()) if out.is_file() else []
    plan = [(e, k) for e in args.curve for k in args.active] + [(e, args.named_active) for e in args.encoders]
    for enc, k in dict.fromkeys(plan):
        if any(r["encoder"] == enc and r["active"] == k and r["atoms"] == args.atoms for r in results):
            continue
        results.append(run(enc, args.data, args.atoms, k, args.steps, args.seed))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"done {enc} k={k}", file=sys.stderr, flush=True)
    print("\n".join(curve_table(results, args.curve)))
    print()
    print("\n".join(named_table(results, args.encoders or args.curve, args.named_active)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
