"""Probe reports: ``probe.json`` for scripts, a markdown table for people, a PNG bar chart.

``probe.json`` holds ``{"encoder": ..., "probes": [entry, ...]}`` with one entry per (target,
head)::

    {"target": "direction", "head": "linear", "task": "classification", "metric": "top1",
     "results": {"pretrained": {"mean": .., "std": .., "metrics": {...}, "hparams": {...}},
                 "random_init": {...}, "pixels": {...}},
     "margin": {"random_init": .., "pixels": ..}}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BASELINES = ("random_init", "pixels")
LABELS = {"pretrained": "pretrained", "random_init": "random init", "pixels": "pixels"}


def margins(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The pretrained encoder's mean score minus each baseline's."""
    ours = results["pretrained"]["mean"]
    return {b: ours - results[b]["mean"] for b in BASELINES if b in results}


def _fmt(r: dict[str, Any] | None, metric: str) -> str:
    if r is None:
        return "-"
    if metric == "r2":
        return f"{r['mean']:.3f} ± {r['std']:.3f}"
    return f"{r['mean']:.1f} ± {r['std']:.1f}"


def _fmt_margin(v: float | None, metric: str) -> str:
    if v is None:
        return "-"
    return f"{v:+.3f}" if metric == "r2" else f"{v:+.1f}"


def markdown_table(entries: Sequence[dict[str, Any]]) -> str:
    """One row per (target, head): each model's mean ± std and the margins."""
    header = "| target | head | metric | pretrained | random init | pixels | vs random | vs pixels |"
    lines = [header, "|" + "---|" * 8]
    for e in entries:
        res, m = e["results"], e["metric"]
        extra = ""
        top5 = res["pretrained"].get("metrics", {}).get("top5")
        if top5:
            extra = f" (top5 {top5['mean']:.1f})"
        mse = res["pretrained"].get("metrics", {}).get("mse")
        if mse:
            extra = f" (mse {mse['mean']:.4g})"
        lines.append(
            f"| {e['target']} | {e['head']} | {m} | {_fmt(res.get('pretrained'), m)}{extra} | "
            f"{_fmt(res.get('random_init'), m)} | {_fmt(res.get('pixels'), m)} | "
            f"{_fmt_margin(e['margin'].get('random_init'), m)} | {_fmt_margin(e['margin'].get('pixels'), m)} |"
        )
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    os.replace(tmp, path)
    return path


def bar_chart(entries: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str = "") -> Path:
    """Grouped bars (one group per target and head, one bar per model) with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in LABELS if any(m in e["results"] for e in entries)]
    groups = [f"{e['target']}\n{e['head']} ({e['metric']})" for e in entries]
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(entries) + 1.5), 3.6), dpi=120)
    colors = {"pretrained": "#2b6cb0", "random_init": "#a0aec0", "pixels": "#ed8936"}
    for i, m in enumerate(models):
        xs = [g + (i - (len(models) - 1) / 2) * width for g in range(len(entries))]
        means = [e["results"].get(m, {}).get("mean", math.nan) for e in entries]
        stds = [e["results"].get(m, {}).get("std", 0.0) for e in entries]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=LABELS[m], color=colors[m])
    ax.set_xticks(range(len(entries)), groups, fontsize=8)
    ax.set_ylabel("score (top-1 % or R²)")
    ax.axhline(0, color="black", linewidth=0.5)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
