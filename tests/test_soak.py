"""``jepa bench soak``: broken files of every kind through real training epochs with workers, and
the checks that judge the run (each one shown to fail on the fault it guards against)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jepa.benchmarks.soak import KINDS, _report, make_soak_data, run_soak


def test_soak_data_has_every_broken_kind(tmp_path: Path) -> None:
    manifest, expected = make_soak_data(tmp_path, files=40, bad_fraction=0.2, frames=8, size=32)
    assert manifest.is_file() and len(manifest.read_text().splitlines()) == 41
    assert sorted(expected.values()) == sorted(KINDS.values())  # 8 broken files, one of each kind


def test_soak_run_skips_exactly_the_broken_files(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_soak(str(tmp_path / "soak"), files=48, bad_fraction=0.25, epochs=2, workers=2,
                      batch_size=4, frames=8, size=32, print_fn=lines.append)
    assert result["passed"], "\n".join(lines)
    assert result["skipped"] == result["broken"] == 12
    assert [r["clips"] for r in result["epochs"]] == [48, 48]
    assert len({tuple(r["workers"]) for r in result["epochs"]}) == 1


def test_soak_refuses_a_folder_with_data(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("path\n")
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        run_soak(str(tmp_path), files=8)


def _row(pids: list[int], main: float = 500.0, workers: float = 900.0, clips: int = 16) -> dict:
    return {"seconds": 1.0, "clips": clips, "skipped": 1, "workers": pids, "rss_main": main, "rss_workers": workers}


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("worker replaced", "no worker death"),
        ("memory grows", "flat memory"),
        ("broken file delivered", "no broken file delivered"),
        ("one missed", "skip count exact"),
        ("wrong reason", "skip count exact"),
        ("short epoch", "every batch delivered"),
        ("stopped", "finished every epoch"),
    ],
)
def test_soak_checks_fail_on_their_fault(fault: str, check: str) -> None:
    expected = {"a.mp4": "empty", "b.mp4": "corrupt"}
    skipped = dict(expected)
    delivered = {"c.mp4"}
    rows = [_row([10, 11]), _row([10, 11]), _row([10, 11])]
    error = None
    if fault == "worker replaced":
        rows[2] = _row([10, 12])
    elif fault == "memory grows":
        rows[2] = _row([10, 11], workers=1000.0)
    elif fault == "broken file delivered":
        delivered.add("a.mp4")
    elif fault == "one missed":
        del skipped["b.mp4"]
    elif fault == "wrong reason":
        skipped["b.mp4"] = "truncated"
    elif fault == "short epoch":
        rows[1] = _row([10, 11], clips=8)
    elif fault == "stopped":
        rows, error = rows[:1], "RuntimeError: DataLoader worker (pid 11) is killed by signal"

    def report(**kw: object) -> dict:
        args = {"files": 18, "expected": expected, "skipped": skipped, "delivered": delivered, "rows": rows,
                "error": error, "epochs": 3, "workers": 2, "batch_size": 8, "frames": 8, "size": 32,
                "write_s": 0.0, "print_fn": lambda _: None}
        return _report(**(args | kw))  # type: ignore[arg-type]

    result = report()
    assert not result["checks"][check] and not result["passed"]
    healthy = report(expected=expected, skipped=dict(expected), delivered={"c.mp4"},
                     rows=[_row([10, 11]) for _ in range(3)], error=None)
    assert healthy["passed"], healthy["checks"]


def test_bench_soak_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from jepa.training.cli import main

    args = ["bench", "soak", "--data", str(tmp_path / "d"), "--files", "24", "--epochs", "2",
            "--num-frames", "8", "--size", "32", "--batch-size", "4", "--bad-fraction", "0.34"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "24 files (8 broken" in out and "FAIL" not in out and out.count("ok  ") == 6
    assert main(args) != 0  # the folder now holds a dataset: refused in one line
    assert "already holds a dataset" in capsys.readouterr().err
