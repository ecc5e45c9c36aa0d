"""A report's pictures, logged to each run's own wandb run as media (``jepa report --wandb``).

For every run folder that holds a wandb run (``DIR/wandb/offline-run-*`` or ``run-*``, as
``jepa fit`` writes by default), the newest one is resumed under its own id and receives:

- ``report/page``: the whole report page (``wandb.Html``: curves, recipe, tables, pictures);
- ``probe/<folder>``: each probe chart (``probe.png``);
- ``plan/<folder>/<picture>``: each planning picture (``*.png`` beside ``plan.json``).

Offline by default (``WANDB_MODE`` overrides), like the training logs: ``wandb sync DIR/wandb``
uploads them later, into the same run as the training curves.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from jepa.training.report import RunFiles

RUN_DIR = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-(?P<id>[a-z0-9]+)$")


def wandb_run_id(folder: Path) -> str | None:
    """The id of the newest wandb run under ``folder/wandb`` (None when there is none)."""
    runs = [p for p in (folder / "wandb").glob("*run-*") if p.is_dir() and RUN_DIR.match(p.name)]
    if not runs:
        return None
    newest = max(runs, key=lambda p: p.name.split("-", 2)[-1] if p.name.startswith("offline-") else p.name.split("-", 1)[-1])
    match = RUN_DIR.match(newest.name)
    assert match is not None
    return match.group("id")


def media_for(run: RunFiles, page: Path) -> dict[str, Any]:
    """The wandb media objects for one run: the page, its probe charts and planning pictures."""
    import wandb

    media: dict[str, Any] = {"report/page": wandb.Html(page.read_text(), inject=False)}
    for probe in run.probes:
        chart = probe.parent / "probe.png"
        if chart.is_file():
            media[f"probe/{probe.parent.name}"] = wandb.Image(str(chart))
    for plan in run.plans:
        for picture in sorted(plan.parent.glob("*.png")):
            media[f"plan/{plan.parent.name}/{picture.stem}"] = wandb.Image(str(picture))
    return media


def log_report_media(runs: list[RunFiles], page: Path) -> list[tuple[RunFiles, str | None]]:
    """Log the media of each run that has a wandb run; returns (run, run id or None if it has none)."""
    import wandb

    out: list[tuple[RunFiles, str | None]] = []
    for run in runs:
        run_id = wandb_run_id(run.folder)
        if run_id is not None:
            mode = os.environ.get("WANDB_MODE", "offline")
            settings = wandb.Settings(silent=True, console="off")
            with wandb.init(dir=str(run.folder), id=run_id, resume="allow", mode=mode,  # type: ignore[arg-type]
                            project=os.environ.get("WANDB_PROJECT", "jepa"), settings=settings) as wr:
                wr.log(media_for(run, page))
        out.append((run, run_id))
    return out
