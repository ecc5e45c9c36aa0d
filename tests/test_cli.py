"""The `jepa` command line: synth, check (with --strict), inspect and the benchmark."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from jepa.benchmarks.data import run_benchmark
from jepa.training.cli import main


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "jepa"
    out = subprocess.run([str(exe), "data", "--help"], capture_output=True, text=True, check=True)
    assert "synth" in out.stdout and "check" in out.stdout


def test_synth_writes_videos_and_manifests(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ms"
    args = ["data", "synth", "moving-shapes", "--out", str(out), "--videos", "5", "--seed", "3"]
    assert main([*args, "--frames", "8", "--size", "32", "--workers", "1"]) == 0
    with open(out / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and {"path", "shape", "direction", "speed"} <= set(rows[0])
    assert all((out / r["path"]).stat().st_size > 0 for r in rows)
    assert "wrote 5 videos" in capsys.readouterr().out


def test_check_reports_bad_files_and_strict_exit(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        (folder / f"ok{i}.mp4").write_bytes((synth_dir / f"videos/{i:06d}.mp4").read_bytes())
    (folder / "broken.mp4").write_text("not a video")
    (folder / "empty.webm").write_bytes(b"")
    assert main(["data", "check", str(folder), "--num-frames", "8", "--workers", "1"]) == 0
    report = capsys.readouterr().out
    assert "5 files" in report and "3 ok, 2 bad" in report
    assert "broken.mp4" in report and "not_media" in report
    assert "empty.webm" in report and "empty" in report
    assert "64x64: 3" in report and "32" in report  # resolution and length histograms
    code = main(["data", "check", str(folder), "--num-frames", "8", "--strict", "--workers", "2"])
    assert code == 1
    # A clip longer than every video makes every file bad, each with the reason.
    main(["data", "check", str(folder), "--num-frames", "40", "--frame-step", "1", "--workers", "1"])
    assert "too_short 3" in capsys.readouterr().out


def test_inspect_prints_a_device_batch(synth_dir: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["data", "inspect", str(synth_dir / "train.csv"), "--num-frames", "4", "--crop-size", "32"]
    assert main([*args, "--batch-size", "2", "--num-workers", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "(2, 4, 64, 64, 3)" in out and "uint8" in out
    assert "(2, 3, 4, 32, 32)" in out and "float32" in out


def test_benchmark_runs_side_by_side(tmp_path: Path) -> None:
    lines: list[str] = []
    rates = run_benchmark(
        data_dir=str(tmp_path / "bench"), videos=6, workers=2, batch_size=2, num_frames=4,
        frame_step=2, video_frames=40, size=32, gop=8, epochs=1, rounds=1, print_fn=lines.append,
    )
    for key in ("loader_clips_per_s", "decode_only_clips_per_s", "naive_clips_per_s"):
        assert rates[key] > 0
    assert rates["loader_vs_decode_only"] == pytest.approx(
        rates["loader_clips_per_s"] / rates["decode_only_clips_per_s"]
    )
    text = "\n".join(lines)
    assert "loader / decode-only limit" in text and "loader / naive" in text
