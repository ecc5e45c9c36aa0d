"""tools/stages.py: the stage timer behind `make demo`'s closing summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "stages.py"


def _stages(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True)


def test_stages_time_each_command_and_report_them(tmp_path: Path) -> None:
    log = tmp_path / "stages.tsv"
    code = "import time; time.sleep(0.3)"
    assert _stages("run", str(log), "first stage", "--", sys.executable, "-c", code).returncode == 0
    failed = _stages("run", str(log), "second", "--", sys.executable, "-c", "raise SystemExit(3)")
    assert failed.returncode == 3  # the job stops where it would have stopped untimed
    rows = [line.split("\t") for line in log.read_text().splitlines()]
    assert [r[0] for r in rows] == ["first stage", "second"] and float(rows[0][1]) >= 0.3
    assert rows[0][2] == "ok" and rows[1][2] == "failed (3)"
    out = _stages("report", str(log)).stdout
    assert "first stage" in out and "failed (3)" in out and "total" in out
    assert _stages("report", str(tmp_path / "none.tsv")).returncode == 1
