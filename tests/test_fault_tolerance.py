"""Runs that crash, are preempted or diverge: exact resume after SIGKILL mid-epoch, atomic
checkpoint writes, a checkpoint on SIGTERM / SIGUSR1, and the NaN-loss policies. Every run is
the real ``jepa fit`` (subprocesses where the process must die)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from fitting import ROOT, losses, run_fit, tiny_fit_config, weights

from jepa.hub import latest_checkpoint
from jepa.training.checkpointing import CheckpointError, atomic_save, read_checkpoint
from jepa.training.cli import main

LONG = {"max_epochs": 2, "max_steps": -1, "deterministic": True}  # 19 videos / 4 = 4 steps per epoch
WORKERS = {"num_workers": 1, "persistent_workers": True}  # clip starts drawn in a worker process


def step_of(path: Path) -> int:
    return int(read_checkpoint(path)["global_step"])


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path, synth_dir: Path) -> None:
    full = tiny_fit_config(tmp_path, synth_dir, "full", batch=4, trainer=LONG, data=WORKERS)
    r = run_fit(["--config", str(full), "--checkpoint_every_n_steps", "3"])
    assert r.returncode == 0, r.stdout[-3000:]
    kill = [{"class_path": "faults.SignalAtStep", "init_args": {"step": 7, "signame": "SIGKILL"}}]
    cfg = tiny_fit_config(tmp_path, synth_dir, "crash", batch=4, callbacks=kill, trainer=LONG, data=WORKERS)
    r = run_fit(["--config", str(cfg), "--checkpoint_every_n_steps", "3"])
    assert r.returncode == -9, r.stdout[-3000:]
    ckpts = tmp_path / "crash" / "checkpoints"
    # step 6 is mid-epoch 1 (2 of its 4 batches done); last.ckpt is from the end of epoch 0
    assert step_of(ckpts / "last-step.ckpt") == 6 and step_of(ckpts / "last.ckpt") == 4
    cfg = tiny_fit_config(tmp_path, synth_dir, "crash", batch=4, trainer=LONG, data=WORKERS)
    r = run_fit(["--config", str(cfg), "--checkpoint_every_n_steps", "3", "--ckpt_path", "last"])
    assert r.returncode == 0, r.stdout[-3000:]
    a, b = losses(tmp_path / "full"), losses(tmp_path / "crash")
    assert sorted(a) == sorted(b) == list(range(8)), (a, b)
    for step in range(6, 8):  # recomputed after the restart: same data, masks, RNG, optimizer
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-7), (step, a, b)
    wa, wb = weights(tmp_path / "full"), weights(tmp_path / "crash")
    assert any(k.startswith("target_encoder.") for k in wa)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-6, atol=1e-7, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.slow
def test_resume_without_the_data_position_would_diverge(tmp_path: Path, synth_dir: Path) -> None:
    """The comparison above can fail: the same restart with the data position erased from the
    checkpoint gives different losses after the restart."""
    kill = [{"class_path": "faults.SignalAtStep", "init_args": {"step": 7, "signame": "SIGKILL"}}]
    full = tiny_fit_config(tmp_path, synth_dir, "full", batch=4, trainer=LONG)
    assert run_fit(["--config", str(full)]).returncode == 0
    cfg = tiny_fit_config(tmp_path, synth_dir, "crash", batch=4, callbacks=kill, trainer=LONG)
    assert run_fit(["--config", str(cfg), "--checkpoint_every_n_steps", "3"]).returncode == -9
    ckpt_path = tmp_path / "crash" / "checkpoints" / "last-step.ckpt"
    ckpt = read_checkpoint(ckpt_path)
    for state in ckpt.values():
        if isinstance(state, dict) and "train_progress" in state:
            state["train_progress"] = {"epoch": -1, "batches": 0}  # forget where the epoch was
    torch.save(ckpt, ckpt_path)
    cfg = tiny_fit_config(tmp_path, synth_dir, "crash", batch=4, trainer=LONG)
    assert run_fit(["--config", str(cfg), "--ckpt_path", str(ckpt_path)]).returncode == 0
    a, b = losses(tmp_path / "full"), losses(tmp_path / "crash")
    assert b[6] != pytest.approx(a[6], rel=1e-6, abs=1e-7)


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_whole(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    atomic_save({"state_dict": {"w": torch.zeros(3)}, "global_step": 1}, path)
    code = textwrap.dedent(f"""
        import os, signal, torch
        from jepa.training.checkpointing import atomic_save

        def dying_save(obj, f, *args, **kwargs):  # half a checkpoint, then the process is killed
            f.write(b"PK" + b"x" * 4096)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = dying_save
        atomic_save({{"state_dict": {{"w": torch.ones(3)}}, "global_step": 2}}, {str(path)!r})
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == -9, r.stderr
    ckpt = read_checkpoint(path)
    assert ckpt["global_step"] == 1 and torch.equal(ckpt["state_dict"]["w"], torch.zeros(3))
    assert [p.name for p in tmp_path.glob("last*.ckpt")] == ["last.ckpt"]  # the partial file is hidden
    partial = next(tmp_path.glob(".last.ckpt.tmp-*"))
    with pytest.raises(CheckpointError, match=r"tmp-.*truncated or corrupt"):
        read_checkpoint(partial)  # what a plain in-place write would have left as last.ckpt


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1"])
def test_preemption_signal_saves_a_checkpoint_and_the_run_resumes(tmp_path: Path, synth_dir: Path, signame: str) -> None:
    sig = [{"class_path": "faults.SignalAtStep", "init_args": {"step": 3, "signame": signame}}]
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, callbacks=sig, trainer={"max_steps": 6})
    r = run_fit(["--config", str(cfg)])
    saved = tmp_path / "run" / "checkpoints" / "last-preempted.ckpt"
    assert r.returncode == 75, r.stdout[-3000:]
    assert f"received {signame}: saved {saved}; restart with --ckpt_path last" in r.stdout
    assert step_of(saved) == 3 and latest_checkpoint(tmp_path / "run") == saved
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, trainer={"max_steps": 6})
    r = run_fit(["--config", str(cfg), "--ckpt_path", "last"])
    assert r.returncode == 0, r.stdout[-3000:]
    assert step_of(latest_checkpoint(tmp_path / "run")) == 6
    assert sorted(losses(tmp_path / "run")) == list(range(6))


def test_nan_loss_stops_with_the_step_and_term_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nan = [{"class_path": "faults.NaNAtStep", "init_args": {"steps": [2]}}]
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, callbacks=nan)
    assert main(["fit", "--config", str(cfg), "--checkpoint_every_n_steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "non-finite loss at step 2: pred_loss=nan" in err, err
    assert "--ckpt_path last" in err and "nonfinite: skip" in err
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "last-step.ckpt")
    assert ckpt["global_step"] == 2  # written after step 1; nothing after the bad step
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_nan_loss_skip_policy_drops_the_steps_and_counts_them(tmp_path: Path, synth_dir: Path) -> None:
    nan = [{"class_path": "faults.NaNAtStep", "init_args": {"steps": [1, 2]}}]
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, callbacks=nan, nonfinite="skip")
    assert main(["fit", "--config", str(cfg)]) == 0
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 4 and ckpt["nonfinite_skipped"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    # AdamW saw only the two good steps
    steps = {int(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}
    assert steps == {2}, steps


def test_a_bad_micro_batch_drops_the_whole_accumulated_step(tmp_path: Path, synth_dir: Path) -> None:
    nan = [{"class_path": "faults.NaNAtStep", "init_args": {"micro_batches": [2]}}]  # 1st half of step 1
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, callbacks=nan, nonfinite="skip",
                          trainer={"max_steps": 3, "accumulate_grad_batches": 2})
    assert main(["fit", "--config", str(cfg)]) == 0
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3 and ckpt["nonfinite_skipped"] == 1
    steps = {int(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}
    assert steps == {2}, steps
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_nan_loss_skip_policy_gives_up_after_too_many_consecutive_skips(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nan = [{"class_path": "faults.NaNAtStep", "init_args": {"steps": [1, 2, 3]}}]
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, callbacks=nan, nonfinite="skip", max_nonfinite_skips=2)
    assert main(["fit", "--config", str(cfg)]) == 1
    assert "2 consecutive steps skipped" in capsys.readouterr().err


@pytest.mark.slow
def test_sigusr1_inside_a_slurm_job_requeues_it(tmp_path: Path, synth_dir: Path) -> None:
    """SLURM's scontrol is stood in for by a script on PATH that records its arguments."""
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "scontrol.args"
    fake = bin_dir / "scontrol"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {record}\n")
    fake.chmod(0o755)
    sig = [{"class_path": "faults.SignalAtStep", "init_args": {"step": 2, "signame": "SIGUSR1"}}]
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, callbacks=sig, trainer={"max_steps": 6})
    extra = {"SLURM_JOB_ID": "4242", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    r = run_fit(["--config", str(cfg)], extra_env=extra)
    assert r.returncode == 75, r.stdout[-3000:]
    assert record.read_text().split() == ["requeue", "4242"]
    assert "received SIGUSR1" in r.stdout and "the SLURM job was requeued" in r.stdout
