"""Checkpoints and run configs written before the layout moved (commit c5ab0f7) keep loading.

``data/legacy_checkpoints_c5ab0f7.json`` was recorded from two real ``jepa fit`` runs of that
commit (a tiny VideoJEPA with a VICReg expander, and a Two Rooms world model with an EMA target
and inverse dynamics): every key and value of each checkpoint, tensors as dtype and shape
(generator states and scalars verbatim), and the ``config.yaml`` LightningCLI saved. Here the
files are rebuilt from it (random tensor values) and read by today's code under the old class
paths (``jepa.pretrain.VideoJEPA``, ``jepa.world_model.ActionConditionedWorldModel``,
``jepa.checkpointing.*``, ``jepa.monitors.*``) and the old keys (``var_weight``, ``cov_weight``,
``vicreg_on``, ``vicreg_expander``; ``expander.*`` weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import jepa
from jepa.objectives import VICReg

FIXTURE = Path(__file__).parent / "data" / "legacy_checkpoints_c5ab0f7.json"
ROOT = Path(__file__).resolve().parents[1]


def decode(x: Any, g: torch.Generator) -> Any:
    if isinstance(x, dict) and "__tensor__" in x:
        dtype = getattr(torch, x["dtype"])
        if x["__tensor__"] is not None:
            return torch.tensor(x["__tensor__"], dtype=dtype).reshape(x["shape"])
        if dtype.is_floating_point:  # positive: valid for Adam's second moments too
            return (0.02 * torch.rand(x["shape"], generator=g)).to(dtype)
        return torch.zeros(x["shape"], dtype=dtype)
    if isinstance(x, dict) and "__dict__" in x:
        return {decode(k, g): decode(v, g) for k, v in x["__dict__"]}
    if isinstance(x, dict) and "__tuple__" in x:
        return tuple(decode(v, g) for v in x["__tuple__"])
    if isinstance(x, list):
        return [decode(v, g) for v in x]
    return x


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any], str]]:
    out = {}
    data = json.loads(FIXTURE.read_text())
    for name, rec in data.items():
        ckpt = decode(rec["checkpoint"], torch.Generator().manual_seed(0))
        path = tmp_path_factory.mktemp(name) / "last.ckpt"
        torch.save(ckpt, path)
        out[name] = (path, ckpt, rec["config_yaml"])
    return out


def test_fixture_is_the_old_format(legacy) -> None:
    _, ckpt, cfg = legacy["pretrain"]
    assert ckpt["hyper_parameters"]["var_weight"] == 1.0 and ckpt["hyper_parameters"]["vicreg_expander"] == 32
    assert any(k.startswith("expander.") for k in ckpt["state_dict"])
    assert "class_path: jepa.pretrain.VideoJEPA" in cfg and "jepa.monitors.SkippedFilesMonitor" in cfg
    assert "class_path: jepa.world_model.ActionConditionedWorldModel" in legacy["world_model"][2]


def test_old_pretraining_checkpoint_loads_under_its_old_class_path(legacy) -> None:
    path, ckpt, _ = legacy["pretrain"]
    from jepa.pretrain import VideoJEPA  # the old module path

    model = VideoJEPA.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert isinstance(model.regularizer, VICReg)
    assert model.regularizer.var_weight == 1.0 and model.regularizer.cov_weight == 0.2
    assert model.hparams.regularize_on == "context" and model.hparams.var_weight is None
    old = ckpt["state_dict"]
    torch.testing.assert_close(model.regularizer.expander[0].weight, old["expander.0.weight"])
    torch.testing.assert_close(model.encoder.patch_embed.proj.weight, old["encoder.patch_embed.proj.weight"])
    # and it still trains: a loss with the VICReg terms of the old recipe
    _, terms, _ = model.compute_loss(torch.randn(2, 3, *model.hparams.input_size))
    assert {"pred_loss", "var_loss", "cov_loss"} <= set(terms)


def test_old_pretraining_checkpoint_exports_and_loads_as_an_encoder(legacy, tmp_path: Path) -> None:
    path, ckpt, _ = legacy["pretrain"]
    enc = jepa.load_encoder(path)
    torch.testing.assert_close(enc.state_dict()["patch_embed.proj.weight"],
                               ckpt["state_dict"]["target_encoder.encoder.patch_embed.proj.weight"])
    out = jepa.export_encoder(path, tmp_path / "enc.pt")
    assert jepa.load_encoder(out).embed_dim == enc.embed_dim


def test_old_world_model_checkpoint_loads(legacy) -> None:
    path, ckpt, _ = legacy["world_model"]
    from jepa.world_model import load_world_model  # the old module path

    wm = load_world_model(str(path))
    assert isinstance(wm.regularizer, VICReg) and wm.regularizer.var_weight == 10.0
    assert wm.target_encoder is not None and wm.idm is not None
    torch.testing.assert_close(wm.predictor.state_dict()[next(iter(wm.predictor.state_dict()))],
                               ckpt["state_dict"]["predictor." + next(iter(wm.predictor.state_dict()))])
    z = wm.encode(torch.zeros(2, 64, 64, 3, dtype=torch.uint8))
    assert wm.rollout(z, torch.zeros(2, 3, wm.action_dim)).shape[:2] == (2, 3)


@pytest.mark.parametrize("name", ["pretrain", "world_model"])
def test_old_run_config_parses(legacy, name: str, tmp_path: Path, capsys) -> None:
    """A saved config.yaml (old class paths and keys for model, callbacks and plugins) is a valid
    recipe for today's ``jepa fit``."""
    from jepa.training.cli import main

    cfg = yaml.safe_load(legacy[name][2])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(path), "--print_config"])
    assert e.value.code == 0, capsys.readouterr().err
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith(("jepa.pretrain.", "jepa.world_model.", "jepa.methods."))


def test_old_pretraining_checkpoint_resumes_under_todays_fit(legacy, synth_dir: Path, tmp_path: Path) -> None:
    """``jepa fit --config <old config.yaml> --ckpt_path <old checkpoint>`` continues the run."""
    from fitting import run_fit

    path, _, cfg_text = legacy["pretrain"]
    cfg = yaml.safe_load(cfg_text)
    cfg["data"]["init_args"]["train"] = str(synth_dir / "train.csv")
    cfg["trainer"]["default_root_dir"] = str(tmp_path / "run")
    cfg["trainer"]["max_steps"] = 3
    for logger in cfg["trainer"]["logger"]:
        logger["init_args"]["save_dir"] = str(tmp_path / "run")
    for cb in cfg["trainer"]["callbacks"]:
        if "dirpath" in cb.get("init_args", {}):
            cb["init_args"]["dirpath"] = str(tmp_path / "run" / "checkpoints")
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    r = run_fit(["--config", str(cfg_path), "--ckpt_path", str(path)])
    assert r.returncode == 0, r.stdout[-3000:]
    new = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert new["global_step"] == 3
    assert any(k.startswith("regularizer.expander.") for k in new["state_dict"])
