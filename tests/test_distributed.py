"""DDP on CPU (gloo) through torchrun and the real ``jepa fit``: a 2-process run equals a
1-process run over the same global batch, ranks keep identical EMA targets but draw their own
masks and augmentations, and a 2-node launch (two torchrun agents on localhost) trains."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fitting import ROOT, env, losses, tiny_fit_config, weights

from data_pipelines.resumable import ResumableSampler

ddp_config = tiny_fit_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], nproc: int, extra: list[str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", *(extra or []),
           "-m", "jepa.cli", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: int = 400) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


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
def test_ddp_two_processes_equal_one_process_over_the_same_global_batch(tmp_path: Path, synth_dir: Path) -> None:
    single = ddp_config(tmp_path, synth_dir, "single", batch=4)
    double = ddp_config(tmp_path, synth_dir, "ddp", batch=2)
    port = free_port()
    finish(torchrun(["fit", "--config", str(single)], 1, [f"--master_port={port}"]))
    out = finish(torchrun(["fit", "--config", str(double), "--trainer.devices", "2", "--trainer.strategy", "ddp"], 2,
                          [f"--master_port={free_port()}"]))
    a, b = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert sorted(a) == sorted(b) and len(a) == 4, (a, b, out[-2000:])
    for step in a:  # the logged loss is the global-batch loss on both
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), (step, a, b)
    wa, wb = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    assert wa.keys() == wb.keys()
    assert any(k.startswith("target_encoder.") for k in wa)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    # every rank ends with the same EMA target (and online encoder), though each drew its own
    # mask generator and augmentation generator (seed + rank)
    r0, r1 = (torch.load(tmp_path / "ddp" / "ranks" / f"rank{r}.pt", weights_only=False) for r in range(2))
    assert r0["world_size"] == 2
    for part in ("target", "online"):
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), (part, k)
    assert not torch.equal(r0["mask_rng"], r1["mask_rng"])
    assert not torch.equal(r0["transform_rng"], r1["transform_rng"])


@pytest.mark.slow
def test_two_node_launch_on_localhost_trains(tmp_path: Path, synth_dir: Path) -> None:
    """Two torchrun agents (node_rank 0 and 1, one process each) rendezvous on localhost."""
    cfg = ddp_config(tmp_path, synth_dir, "nodes", batch=2)
    port = free_port()
    common = ["--nnodes=2", "--master_addr=127.0.0.1", f"--master_port={port}"]
    args = ["fit", "--config", str(cfg), "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp"]
    procs = [torchrun(args, 1, [*common, f"--node_rank={r}"]) for r in range(2)]
    outs = [finish(p) for p in procs]
    ckpt = torch.load(tmp_path / "nodes" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4, outs[0][-2000:]
    ranks = [torch.load(tmp_path / "nodes" / "ranks" / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["num_nodes"] for r in ranks] == [2, 2]
    for k in ranks[0]["target"]:
        assert torch.equal(ranks[0]["target"][k], ranks[1]["target"][k]), k
