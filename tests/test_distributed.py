"""DDP and FSDP on CPU (gloo) through torchrun and the real ``jepa fit``: a 2-process run equals
a 1-process run over the same global batch (pretraining and world model), ranks keep identical
EMA targets but draw their own masks and augmentations, FSDP checkpoints load anywhere and
resume, and a 2-node launch (two torchrun agents on localhost) trains."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from fitting import ROOT, env, losses, tiny_fit_config, weights

from data_pipelines.resumable import ResumableSampler
from jepa.hub import latest_checkpoint, load_encoder

ddp_config = tiny_fit_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], nproc: int, extra: list[str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", *(extra or []),
           "-m", "jepa.training.cli", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: int = 400) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory, synth_dir: Path) -> Path:
    """The 1-process reference: global batch 4."""
    tmp = tmp_path_factory.mktemp("single")
    finish(torchrun(["fit", "--config", str(ddp_config(tmp, synth_dir, "single", batch=4))], 1,
                    [f"--master_port={free_port()}"]))
    return tmp / "single"


def assert_same_run(a_run: Path, b_run: Path, steps: int = 4, weight_atol: float = 1e-5) -> None:
    """Same logged global losses and final weights (AdamW turns float noise in near-zero
    gradients into whole steps of size lr, hence an absolute tolerance on weights)."""
    a, b = losses(a_run), losses(b_run)
    assert sorted(a) == sorted(b) == list(range(steps)), (a, b)
    for step in a:  # the logged loss is the global-batch loss on both
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), (step, a, b)
    wa, wb = weights(a_run), weights(b_run)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=weight_atol, msg=lambda m, k=k: f"{k}: {m}")


def test_resumable_sampler_global_batch_is_the_same_at_any_world_size() -> None:
    one = list(ResumableSampler(19, 1, 0, shuffle=True, seed=3))
    two = [list(ResumableSampler(19, 2, r, shuffle=True, seed=3)) for r in range(2)]
    for k in range(4):  # global batches of 4 = two ranks x 2
        assert sorted(one[4 * k : 4 * k + 4]) == sorted(two[0][2 * k : 2 * k + 2] + two[1][2 * k : 2 * k + 2])
    s = ResumableSampler(19, 2, 1, shuffle=True, seed=3)
    s.set_epoch(5)
    full = list(s)
    s.resume(5, 4, batch_size=2, drop_last=True)
    assert list(s) == full[4:]  # picks up after the consumed part of the shard
    s.resume(5, 10, batch_size=2, drop_last=True)  # shard finished: the next epoch, from its start
    nxt = ResumableSampler(19, 2, 1, shuffle=True, seed=3)
    nxt.set_epoch(6)
    assert list(s) == list(nxt) and s.epoch == 6
    keyed = ResumableSampler(5, keyed=True)
    assert list(keyed) and all(isinstance(k, tuple) and k[1] == 0 for k in keyed)


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process_over_the_same_global_batch(
    tmp_path: Path, synth_dir: Path, single_run: Path
) -> None:
    double = ddp_config(tmp_path, synth_dir, "ddp", batch=2)
    finish(torchrun(["fit", "--config", str(double), "--trainer.devices", "2", "--trainer.strategy", "ddp"], 2,
                    [f"--master_port={free_port()}"]))
    assert_same_run(single_run, tmp_path / "ddp")
    assert any(k.startswith("target_encoder.") for k in weights(single_run))
    # every rank ends with the same EMA target (and online encoder), though each drew its own
    # mask generator and augmentation generator (seed + rank)
    r0, r1 = (torch.load(tmp_path / "ddp" / "ranks" / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["world_size"] == 2
    for part in ("target", "online"):
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), (part, k)
    assert not torch.equal(r0["mask_rng"], r1["mask_rng"])
    assert not torch.equal(r0["transform_rng"], r1["transform_rng"])
    # the DDP checkpoint resumes under DDP
    finish(torchrun(["fit", "--config", str(double), "--trainer.devices", "2", "--trainer.strategy", "ddp",
                     "--ckpt_path", "last", "--trainer.max_steps", "6"], 2, [f"--master_port={free_port()}"]))
    assert int(torch.load(latest_checkpoint(tmp_path / "ddp"), weights_only=True)["global_step"]) == 6


@pytest.mark.slow
def test_fsdp_equals_one_process_and_its_checkpoint_loads_and_resumes(
    tmp_path: Path, synth_dir: Path, single_run: Path
) -> None:
    """FSDP2 shards every Block of the encoder, EMA target and predictor over 2 ranks (each rank
    holds half of each weight), with activation checkpointing; the run matches the 1-process run, its checkpoint is one full
    state dict that ``load_encoder`` reads, and it resumes under FSDP."""
    cfg = ddp_config(tmp_path, synth_dir, "fsdp", batch=2)
    args = ["fit", "--config", str(cfg), "--trainer.devices", "2", "--trainer.strategy", "jepa.training.distributed.JepaFSDPStrategy",
            "--trainer.strategy.activation_checkpointing", "true"]  # (the world-model test uses the "fsdp" alias)
    finish(torchrun(args, 2, [f"--master_port={free_port()}"]))
    assert_same_run(single_run, tmp_path / "fsdp")
    r0 = torch.load(tmp_path / "fsdp" / "ranks" / "rank0.pt", weights_only=True)
    sharded = [v for v in r0["target"].values() if type(v).__name__ == "DTensor"]
    assert sharded, "the EMA target was not sharded"
    ckpt = tmp_path / "fsdp" / "checkpoints" / "last.ckpt"
    enc, ref = load_encoder(ckpt), load_encoder(single_run / "checkpoints" / "last.ckpt")
    video = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(enc(video), ref(video), rtol=1e-3, atol=1e-4)
    finish(torchrun([*args, "--ckpt_path", "last", "--trainer.max_steps", "6"], 2, [f"--master_port={free_port()}"]))
    assert int(torch.load(latest_checkpoint(tmp_path / "fsdp"), weights_only=True)["global_step"]) == 6


SIGREG_ONLINE = {"regularizer": {"class_path": "jepa.objectives.SIGReg", "init_args": {"weight": 0.05, "num_projections": 64}},
                 "target": "online", "regularize_on": "both"}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_sigreg_with_online_targets_two_processes_equal_one_process(tmp_path: Path, synth_dir: Path, strategy: str) -> None:
    """SIGReg's statistics (characteristic functions of random projections) cover the global
    batch and its directions are the same on every rank, and online targets send gradients
    through both branches: a 2-process DDP or FSDP run takes the 1-process run's steps."""
    finish(torchrun(["fit", "--config", str(ddp_config(tmp_path, synth_dir, "single", batch=4, **SIGREG_ONLINE))], 1,
                    [f"--master_port={free_port()}"]))
    cfg = ddp_config(tmp_path, synth_dir, strategy, batch=2, **SIGREG_ONLINE)
    finish(torchrun(["fit", "--config", str(cfg), "--trainer.devices", "2", "--trainer.strategy", strategy], 2,
                    [f"--master_port={free_port()}"]))
    assert_same_run(tmp_path / "single", tmp_path / strategy)
    assert not any(k.startswith("target_encoder.") for k in weights(tmp_path / "single"))


def wm_config(tmp: Path, data: Path, name: str, batch: int, **model: object) -> Path:
    cfg = yaml.safe_load((ROOT / "configs/world_model/two_rooms.yaml").read_text())
    root = tmp / name
    cfg["trainer"] = {
        "accelerator": "cpu", "precision": "32-true", "max_steps": 4, "default_root_dir": str(root),
        "log_every_n_steps": 1, "limit_val_batches": 0, "enable_progress_bar": False, "num_sanity_val_steps": 0,
        "gradient_clip_val": 1.0,
        "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(root), "name": "csv"}}],
    }
    cfg["model"]["init_args"].update(conv_widths=[16, 16, 16], predictor_embed_dim=32, predictor_depth=1, rollout_steps=2,
                                     **model)
    cfg["data"]["init_args"].update(train=str(data / "train.csv"), val=None, num_frames=4, frameskip=2,
                                    batch_size=batch, stride=2)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


WM_SIGREG = {"regularizer": {"class_path": "jepa.objectives.SIGReg", "init_args": {"weight": 0.1, "num_projections": 64}},
             "regularize_per_step": True, "target": "online"}


@pytest.mark.slow
@pytest.mark.parametrize("strategy,objective", [("ddp", "vicreg"), ("fsdp", "vicreg"), ("ddp", "sigreg")])
def test_world_model_two_processes_equal_one_process(tmp_path: Path, strategy: str, objective: str) -> None:
    """The recipe (VICReg, stop-gradient) and LeWM's objective (SIGReg per time step, online targets)."""
    from jepa.envs.collect import collect

    model = WM_SIGREG if objective == "sigreg" else {}
    data = tmp_path / "two_rooms"
    collect("two-rooms", data, episodes=6, steps=24, seed=0, workers=1, val_fraction=0.34)
    finish(torchrun(["fit", "--config", str(wm_config(tmp_path, data, "single", 8, **model))], 1,
                    [f"--master_port={free_port()}"]))
    cfg = wm_config(tmp_path, data, strategy, 4, **model)
    finish(torchrun(["fit", "--config", str(cfg), "--trainer.devices", "2", "--trainer.strategy", strategy], 2,
                    [f"--master_port={free_port()}"]))
    # lr 2e-3 x 4 steps moves a weight by up to 8e-3: 1e-4 still tells a wrong gradient apart
    assert_same_run(tmp_path / "single", tmp_path / strategy, weight_atol=1e-4)


@pytest.mark.slow
def test_two_node_launch_on_localhost_trains(tmp_path: Path, synth_dir: Path) -> None:
    """Two torchrun agents (node_rank 0 and 1, one process each) rendezvous on localhost."""
    cfg = ddp_config(tmp_path, synth_dir, "nodes", batch=2)
    port = free_port()
    common = ["--nnodes=2", "--master_addr=127.0.0.1", f"--master_port={port}"]
    args = ["fit", "--config", str(cfg), "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp"]
    procs = [torchrun(args, 1, [*common, f"--node_rank={r}"]) for r in range(2)]
    outs = [finish(p) for p in procs]
    ckpt = torch.load(tmp_path / "nodes" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4, outs[0][-2000:]
    ranks = [torch.load(tmp_path / "nodes" / "ranks" / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["num_nodes"] for r in ranks] == [2, 2]
    for k in ranks[0]["target"]:
        assert torch.equal(ranks[0]["target"][k], ranks[1]["target"][k]), k
