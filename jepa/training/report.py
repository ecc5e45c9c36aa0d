"""One self-contained HTML page per run, or for several runs side by side (``jepa report``).

    jepa report outputs/quickstart [outputs/other_run ...] --out report.html

What a run folder holds, gathered into one file that opens anywhere (no script, no network, the
pictures inlined as data URIs):

- **training curves** from the newest ``csv/version_*/metrics.csv``: every logged series, grouped
  by its prefix (``train/`` loss terms, ``val/``, ``opt/`` learning rates and weight decay,
  ``monitor/`` collapse monitors, ``ema/``, ``perf/``, ...), drawn as inline SVG; with several runs
  each chart overlays them, one colour per run;
- **the recipe**: the ``config.yaml`` Lightning saved beside the metrics;
- **probes**: ``probe/probe.json`` (the table) and ``probe.png``; **fine-tuning**:
  ``finetune*/finetune.json``; **planning**: ``plan/plan.json``, ``plan.md``, the trajectory
  picture and the episode GIF.

Sections a run does not have are left out; a folder with none of these files is an error naming it.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
GROUP_ORDER = ("train", "val", "opt", "monitor", "ema", "mask", "perf", "data")


@dataclass
class RunFiles:
    """What one run folder holds that the page shows."""

    folder: Path
    metrics: Path | None = None
    config: Path | None = None
    probes: list[Path] = field(default_factory=list)
    finetunes: list[Path] = field(default_factory=list)
    plans: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.folder.name

    def empty(self) -> bool:
        return not (self.metrics or self.config or self.probes or self.finetunes or self.plans)


def find_run(folder: str | os.PathLike[str]) -> RunFiles:
    """The files of a ``jepa fit`` / ``probe`` / ``finetune`` / ``plan`` run folder."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run folder; pass a folder jepa fit wrote (its default_root_dir)")
    csvs = sorted(root.glob("csv/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    run = RunFiles(root, metrics=csvs[-1] if csvs else None)
    if run.metrics is not None and (run.metrics.parent / "config.yaml").is_file():
        run.config = run.metrics.parent / "config.yaml"
    elif (root / "config.yaml").is_file():
        run.config = root / "config.yaml"
    run.probes = sorted(set(root.glob("probe.json")) | set(root.glob("*/probe.json")))
    run.finetunes = sorted(set(root.glob("finetune.json")) | set(root.glob("*/finetune.json")))
    run.plans = sorted(set(root.glob("plan.json")) | set(root.glob("*/plan.json")))
    if run.empty():
        raise ValueError(f"{root}: no metrics (csv/version_*/metrics.csv), config.yaml, probe.json, finetune.json "
                         "or plan.json in it; pass a run folder of jepa fit, probe, finetune or plan")
    return run


def read_metrics(path: Path) -> dict[str, list[tuple[float, float]]]:
    """``metrics.csv`` -> series name -> [(step, value)], empty cells and non-numbers skipped."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = float(row.get("step") or "nan")
            except ValueError:
                continue
            for key, text in row.items():
                if key in ("step", "epoch") or not text:
                    continue
                try:
                    value = float(text)
                except ValueError:
                    continue
                if math.isfinite(value) and math.isfinite(step):
                    series.setdefault(key, []).append((step, value))
    return series


def _nice(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.3g}"


def svg_chart(title: str, lines: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
              width: int = 360, height: int = 200) -> str:
    """An inline SVG line chart: ``lines`` = (label, colour, points)."""
    pts = [p for _, _, ps in lines for p in ps]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5 * (abs(y0) or 1), y1 + 0.5 * (abs(y1) or 1)
    left, right, top, bottom = 52, 8, 22, 26
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{left}" y="14" class="title">{html.escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>']
    for frac in (0.0, 0.5, 1.0):
        y = y0 + frac * (y1 - y0)
        parts.append(f'<text x="{left - 4}" y="{sy(y) + 4:.1f}" class="tick" text-anchor="end">{_nice(y)}</text>')
    for frac in (0.0, 1.0):
        x = x0 + frac * (x1 - x0)
        anchor = "start" if frac == 0 else "end"
        parts.append(f'<text x="{sx(x):.1f}" y="{height - 8}" class="tick" text-anchor="{anchor}">{_nice(x)}</text>')
    for label, colour, ps in lines:
        if len(ps) == 1:
            x, y = ps[0]
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"><title>'
                         f'{html.escape(label)}</title></circle>')
            continue
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(ps))
        parts.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="1.5">'
                     f'<title>{html.escape(label)}</title></polyline>')
    parts.append("</svg>")
    return "".join(parts)


def markdown_to_html(text: str) -> str:
    """Pipe tables become ``<table>``s, other lines paragraphs (what our .md reports hold)."""
    out: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if not rows:
            return
        head, body = rows[0], [r for r in rows[1:] if not all(set(c.strip()) <= set("-:") for c in r)]
        out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head)
                   + "</tr></thead><tbody>"
                   + "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in body)
                   + "</tbody></table>")
        rows.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            rows.append(line.strip().strip("|").split("|"))
            continue
        flush()
        if line.strip():
            out.append(f"<p>{html.escape(line.strip())}</p>")
    flush()
    return "\n".join(out)


def _image(path: Path, alt: str) -> str:
    mime = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".svg": "image/svg+xml"}[path.suffix]
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(alt)}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _group(name: str) -> str:
    return name.split("/")[0] if "/" in name else "other"


def curves_section(runs: Sequence[RunFiles]) -> str:
    """One chart per series, grouped by prefix; several runs overlaid."""
    data = {run.name: read_metrics(run.metrics) for run in runs if run.metrics is not None}
    if not data:
        return ""
    names = sorted({k for series in data.values() for k in series})
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(_group(n), []).append(n)
    order = [g for g in GROUP_ORDER if g in groups] + sorted(g for g in groups if g not in GROUP_ORDER)
    colour = {run: COLOURS[i % len(COLOURS)] for i, run in enumerate(data)}
    legend = "".join(f'<span class="key" style="border-color:{colour[r]}">{html.escape(r)}</span>' for r in data)
    parts = ['<section id="curves"><h2>Training curves</h2>', f'<p class="legend">{legend}</p>']
    for g in order:
        charts = [svg_chart(n, [(r, colour[r], data[r].get(n, [])) for r in data]) for n in groups[g]]
        parts.append(f'<h3>{html.escape(g)}</h3><div class="charts">{"".join(c for c in charts if c)}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def recipe_section(runs: Sequence[RunFiles]) -> str:
    items = [f"<details open><summary>{html.escape(r.name)}: {html.escape(str(r.config))}</summary>"
             f"<pre>{html.escape(r.config.read_text())}</pre></details>" for r in runs if r.config is not None]
    return f'<section id="recipe"><h2>Recipe</h2>{"".join(items)}</section>' if items else ""


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable report ({type(e).__name__}: {e})") from e


def probes_section(runs: Sequence[RunFiles]) -> str:
    items = []
    for r in runs:
        for p in r.probes:
            rep = _json(p)
            chart = p.parent / "probe.png"
            items.append(f"<h3>{html.escape(r.name)}: {html.escape(str(p.parent))}</h3>"
                         f"<p>train {html.escape(str(rep.get('train')))}, evaluated on {html.escape(str(rep.get('val')))}, "
                         f"{rep.get('seeds')} seed(s)</p>" + markdown_to_html(rep.get("table", ""))
                         + (_image(chart, f"{r.name}: frozen probes") if chart.is_file() else ""))
    return f'<section id="probes"><h2>Frozen probes</h2>{"".join(items)}</section>' if items else ""


def finetune_section(runs: Sequence[RunFiles]) -> str:
    items = []
    for r in runs:
        for p in r.finetunes:
            rep = _json(p)
            items.append(f"<h3>{html.escape(r.name)}: {html.escape(str(p.parent))}</h3>" + markdown_to_html(rep.get("table", "")))
    return f'<section id="finetune"><h2>Fine-tuning</h2>{"".join(items)}</section>' if items else ""


def plans_section(runs: Sequence[RunFiles]) -> str:
    items = []
    for r in runs:
        for p in r.plans:
            md = p.parent / "plan.md"
            pics = [_image(f, f"{r.name}: {f.name}") for f in (p.parent / "trajectories.png", p.parent / "plan.gif")
                    if f.is_file()]
            text = markdown_to_html(md.read_text()) if md.is_file() else f"<pre>{html.escape(p.read_text()[:4000])}</pre>"
            items.append(f"<h3>{html.escape(r.name)}: {html.escape(str(p.parent))}</h3>{text}{''.join(pics)}")
    return f'<section id="planning"><h2>Planning</h2>{"".join(items)}</section>' if items else ""


STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:28px}h3{font-size:15px;margin:14px 0 6px}
.charts{display:flex;flex-wrap:wrap;gap:10px}.chart{background:#fafafa}
.chart .title{font-size:12px;font-weight:600}.chart .tick{font-size:10px;fill:#555}.chart .frame{fill:none;stroke:#bbb}
.legend .key{border-left:14px solid;padding-left:6px;margin-right:14px;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f0f0f0}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto;max-height:420px}
figure{display:inline-block;margin:8px}img{max-width:640px}figcaption{font-size:12px;color:#555}
nav a{margin-right:12px}
"""


def build_report(folders: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """Write the page for ``folders`` to ``out``; returns its path."""
    runs = [find_run(f) for f in folders]
    sections = [s for s in (curves_section(runs), recipe_section(runs), probes_section(runs),
                            finetune_section(runs), plans_section(runs)) if s]
    ids = [(sid, title) for sid, title in (("curves", "Training curves"), ("recipe", "Recipe"),
                                           ("probes", "Frozen probes"), ("finetune", "Fine-tuning"),
                                           ("planning", "Planning")) if f'id="{sid}"' in "".join(sections)]
    nav = "<nav>" + "".join(f'<a href="#{sid}">{title}</a>' for sid, title in ids) + "</nav>"
    title = "jepa report: " + ", ".join(r.name for r in runs)
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{', '.join(html.escape(str(r.folder)) for r in runs)}</p>{nav}\n" + "\n".join(sections) + "</body></html>\n")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page)
    os.replace(tmp, path)
    return path
