"""Every bad-input case through the real ``jepa`` command in a subprocess (slow): exit status 2, a
single line on stderr naming the key, file or value, no traceback, and no file that existed
before the command changed (hashes before and after) nor any new one left behind."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fitting import tiny_fit_config

TESTS = Path(__file__).resolve().parent


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def jepa(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(TESTS)}  # the tiny config's test callbacks
    env.pop("JEPA_TRUST_CHECKPOINTS", None)
    env.pop("JEPA_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "jepa", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


class Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, synth_dir: Path) -> Path:
    """A workspace with a dataset, a pretraining run, an exported encoder and a malicious file."""
    w = tmp_path_factory.mktemp("world")
    r = jepa("data", "synth", "moving-shapes", "--out", str(w / "data"), "--videos", "6", "--workers", "1", cwd=w)
    assert r.returncode == 0, r.stderr
    cfg = tiny_fit_config(w, synth_dir, "run", batch=4, trainer={"max_steps": 1})
    r = jepa("fit", "--config", str(cfg), cwd=w)
    assert r.returncode == 0, r.stdout + r.stderr
    r = jepa("export", str(w / "run"), "--out", str(w / "enc.pt"), cwd=w)
    assert r.returncode == 0, r.stderr
    torch.save({"state_dict": {}, "x": Touch(w / "pwned")}, w / "evil.ckpt")
    (w / "blocker").write_text("a file where a folder is expected")
    return w


CASES: list[tuple[str, list[str], str]] = [
    ("synth into an existing dataset", ["data", "synth", "moving-shapes", "--out", "data", "--videos", "2"],
     "jepa data synth: error: data already holds a dataset"),
    ("push policy without an object", ["data", "collect", "two-rooms", "--policy", "push", "--out", "p"],
     "needs an environment with an object to push"),
    ("collect protocol for another env", ["data", "collect", "pusht", "--protocol", "eb-jepa", "--out", "p"],
     "--protocol eb-jepa is for the 'two-rooms' environment, not 'pusht'"),
    ("export over an existing file", ["export", "run", "--out", "enc.pt"], "already exists; pass --overwrite"),
    ("export over its checkpoint, by run folder", ["export", "run", "--out", "run/checkpoints/last.ckpt"],
     "is (or holds) the checkpoint being exported"),
    ("export over its own checkpoint", ["export", "run/checkpoints/last.ckpt", "--out", "run/checkpoints/last.ckpt",
                                        "--overwrite"], "is (or holds) the checkpoint being exported"),
    ("export an encoder file", ["export", "enc.pt", "--out", "again.pt"],
     "is not a jepa fit checkpoint to export from: it is an encoder file from jepa export"),
    ("export a malicious file", ["export", "evil.ckpt", "--out", "x.pt"], "refusing to load it"),
    ("fit unknown key", ["fit", "--config", "run.yaml", "--model.init_args.learning_rate", "0.1"],
     "model.init_args.learning_rate is not an option of jepa.methods.VideoJEPA"),
    ("fit wrong type", ["fit", "--config", "run.yaml", "--data.init_args.batch_size", "four"],
     "data.init_args.batch_size: expected int, got 'four'"),
    ("fit batch size 0", ["fit", "--config", "run.yaml", "--data.init_args.batch_size", "0"],
     "data.init_args.batch_size must be >= 1, got 0"),
    ("fit negative lr", ["fit", "--config", "run.yaml", "--model.init_args.lr", "-1"], "model.init_args.lr must be >= 0"),
    ("fit unknown preset", ["fit", "--config", "run.yaml", "--model.init_args.encoder", "vit_nope"],
     "model.init_args.encoder: unknown preset 'vit_nope'"),
    ("fit from an encoder file", ["fit", "--config", "run.yaml", "--ckpt_path", "enc.pt"],
     "is not a Lightning checkpoint from jepa fit: it is an encoder file"),
    ("fit fewer videos than a batch", ["fit", "--config", "run.yaml", "--data.init_args.batch_size", "999"],
     "fewer than one batch"),
    ("fit unwritable root", ["fit", "--config", "run.yaml", "--trainer.default_root_dir", "blocker/run"],
     "trainer.default_root_dir: blocker/run: cannot write there"),
    ("plan on a pretraining run", ["plan", "--world-model", "run", "--episodes", "1"],
     "is not a world-model checkpoint: it is a VideoJEPA pretraining checkpoint"),
    ("plan on an encoder file", ["plan", "--world-model", "enc.pt", "--episodes", "1"],
     "is not a world-model checkpoint: it is an encoder file"),
    ("plan unwritable out", ["plan", "--agents", "random", "--out", "blocker/plan"], "--out blocker/plan: cannot write there"),
    ("plan swm without trajectories", ["plan", "--protocol", "swm", "--agents", "random"], "pass --trajectories"),
    ("probe seeds 0", ["probe", "--encoder", "enc.pt", "--train", "data/train.csv", "--val", "data/val.csv",
                       "--target", "direction", "--seeds", "0"], "argument --seeds: must be a positive integer"),
    ("probe layer 99", ["probe", "--encoder", "enc.pt", "--train", "data/train.csv", "--val", "data/val.csv",
                        "--target", "direction", "--layer", "99"], "--layer 99 is out of range for this 4-block encoder"),
    ("inspect crop size 0", ["data", "inspect", "data/train.csv", "--crop-size", "0"],
     "argument --crop-size: must be a positive integer"),
    ("unknown command", ["trian"], "invalid choice: 'trian'"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "argv", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(world: Path, name: str, argv: list[str], expected: str) -> None:
    if argv[:2] == ["fit", "--config"]:
        argv = ["fit", "--config", str(world / "run.yaml"), *argv[3:]]
    before = snapshot(world)
    r = jepa(*argv, cwd=world)
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], err)
    assert "Traceback" not in r.stdout + r.stderr, err
    last = err.splitlines()[-1]
    assert expected in last and ": error: " in last, last
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert snapshot(world) == before  # nothing changed, nothing left behind
    assert not (world / "pwned").exists()
