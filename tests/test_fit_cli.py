"""``jepa fit`` through the real LightningCLI on generated videos, then ``jepa export`` and
``jepa.load_encoder``: checkpoints, CSV and offline wandb logs, identical features."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CHROMIUM, chromium, console_errors

import jepa
from jepa.hub import create_encoder, encoder_meta, export_encoder, load_encoder
from jepa.methods.vjepa import VideoJEPA
from jepa.training.cli import main

RECIPES = sorted((Path(__file__).parents[1] / "configs" / "pretrain").glob("*.yaml"))
WM_RECIPES = sorted((Path(__file__).parents[1] / "configs" / "world_model").glob("*.yaml"))


def tiny_config(tmp_path: Path, synth_dir: Path) -> Path:
    """The quickstart recipe shrunk to seconds: same keys, tiny model and data."""
    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs/pretrain/quickstart.yaml").read_text())
    root = str(tmp_path / "run")
    cfg["trainer"].update(
        max_epochs=None, max_steps=4, default_root_dir=root, log_every_n_steps=1, limit_val_batches=2,
        val_check_interval=2, enable_progress_bar=False,
    )
    cfg["model"]["init_args"].update(encoder="vit_pico", monitor_every=1)
    cfg["data"]["init_args"].update(
        train=str(synth_dir / "train.csv"), val=str(synth_dir / "val.csv"), num_frames=4, crop_size=32,
        batch_size=4, num_workers=0, persistent_workers=False,
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, synth_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("fit")
    assert main(["fit", "--config", str(tiny_config(tmp, synth_dir))]) == 0
    return tmp / "run"


def test_fit_writes_checkpoints_csv_and_offline_wandb(fitted: Path) -> None:
    ckpts = {p.name for p in (fitted / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts), ckpts
    metrics = next((fitted / "csv").rglob("metrics.csv"))
    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    cols = set(rows[0])
    for key in ("train/loss", "train/pred_loss", "train/var_loss", "train/cov_loss", "val/loss",
                "ema/momentum", "opt/weight_decay", "monitor/target_std", "monitor/target_rankme",
                "mask/mask0_context_fraction", "perf/clips_per_s"):
        assert key in cols, key
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 4 and all(x == x for x in losses)
    assert list((fitted / "wandb").glob("offline-run-*")), "no offline wandb run"
    ckpt = torch.load(fitted / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["hyper_parameters"]["input_size"] == (4, 32, 32)


def test_last_checkpoint_follows_training_when_val_loss_stops_improving(
    tmp_path: Path, synth_dir: Path
) -> None:
    """With every learning rate 0 the validation loss repeats exactly, so only the first validation
    is a new best; ``last.ckpt`` must still hold the final step (Lightning alone would keep it at
    the best one)."""
    cfg = yaml.safe_load(tiny_config(tmp_path, synth_dir).read_text())
    cfg["model"]["init_args"].update(lr=0.0, start_lr=0.0, final_lr=0.0)
    path = tmp_path / "flat.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(path)]) == 0
    ckpts = tmp_path / "run" / "checkpoints"
    best = [p.name for p in ckpts.glob("best-*.ckpt")]
    assert best == ["best-epoch=0-step=2.ckpt"], best
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 4


def test_resume_from_last_continues_the_run(tmp_path: Path, synth_dir: Path) -> None:
    """``--ckpt_path last`` picks up ``last.ckpt`` and trains on to the new ``max_steps``."""
    path = tiny_config(tmp_path, synth_dir)
    assert main(["fit", "--config", str(path)]) == 0
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    assert main(["fit", "--config", str(path), "--trainer.max_steps", "6", "--ckpt_path", "last"]) == 0
    names = sorted(p.name for p in last.parent.glob("last*.ckpt"))
    newest = max(last.parent.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    assert torch.load(newest, weights_only=True)["global_step"] == 6, names


def test_fit_continues_pretraining_from_a_run_with_init_from(fitted: Path, tmp_path: Path, synth_dir: Path,
                                                             capsys) -> None:
    """``--model.init_args.init_from RUN`` through the CLI: a new run (its own step count) whose
    weights start as the earlier run's (with every learning rate 0 they stay so)."""
    cfg = yaml.safe_load(tiny_config(tmp_path, synth_dir).read_text())
    cfg["model"]["init_args"].update(lr=0.0, start_lr=0.0, final_lr=0.0, ema_momentum=[1.0, 1.0])
    cfg["trainer"].update(max_steps=2)
    path = tmp_path / "continue.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(path), "--model.init_args.init_from", str(fitted)]) == 0
    before = torch.load(fitted / "checkpoints" / "last.ckpt", weights_only=True)
    after = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["global_step"] == 2 and after["hyper_parameters"]["init_from"] == str(fitted)
    for key, value in before["state_dict"].items():
        torch.testing.assert_close(after["state_dict"][key], value, rtol=0, atol=0, msg=key)
    cfg["model"]["init_args"]["encoder"] = "vit_nano"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(path), "--model.init_args.init_from", str(fitted),
                 "--trainer.default_root_dir", str(tmp_path / "nano")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "embed_dim 96, depth 4, num_heads 3; the recipe builds embed_dim 128, depth 6, num_heads 4" in err[-1]


def test_export_and_load_give_identical_features(fitted: Path, tmp_path: Path, capsys) -> None:
    last = fitted / "checkpoints" / "last.ckpt"
    out = tmp_path / "enc.pt"
    assert main(["export", str(fitted), "--out", str(out)]) == 0  # a run folder: its newest last*.ckpt
    assert f"from {last}" in capsys.readouterr().out
    module = VideoJEPA.load_from_checkpoint(last).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = module.target_encoder.encoder.forward_features(video)
        online = module.encoder.forward_features(video)
        for enc in (jepa.load_encoder(out), load_encoder(last)):
            assert not enc.training and enc.input_size == (4, 32, 32) and enc.embed_dim == ref.shape[-1]
            torch.testing.assert_close(enc.forward_features(video), ref, rtol=0, atol=0)
        ctx = load_encoder(last, which="context")
        torch.testing.assert_close(ctx.forward_features(video), online, rtol=0, atol=0)
        again = create_encoder("vit_pico", pretrained=out)
        torch.testing.assert_close(again.forward_features(video), ref, rtol=0, atol=0)


def test_encoders_load_without_lightning(fitted: Path, tmp_path: Path) -> None:
    """Downstream code needs torch and jepa's model code only: no Lightning, no training config."""
    out = export_encoder(fitted, tmp_path / "enc.pt")
    meta = encoder_meta(out)
    step = yaml.safe_load((Path(__file__).parents[1] / "configs/pretrain/quickstart.yaml").read_text())["data"]["init_args"]["frame_step"]
    assert meta["data"]["frame_step"] == step and meta["data"]["num_frames"] == 4 and meta["global_step"] == 4
    assert encoder_meta(fitted / "checkpoints" / "last.ckpt")["data"] == meta["data"]
    code = (
        "import sys; sys.modules['lightning'] = None; sys.modules['pytorch_lightning'] = None\n"
        "import torch, jepa\n"
        f"for p in [{str(out)!r}, {str(fitted / 'checkpoints' / 'last.ckpt')!r}]:\n"
        "    enc = jepa.load_encoder(p)\n"
        "    assert enc.forward_features(torch.zeros(1, 3, 4, 32, 32)).shape == (1, 32, enc.embed_dim)\n"
        "assert 'lightning' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_export_of_a_foreign_or_truncated_file_names_it(tmp_path: Path, fitted: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes((fitted / "checkpoints" / "last.ckpt").read_bytes()[:1000])
    with pytest.raises(ValueError, match="bad.ckpt"):
        load_encoder(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="foreign.pt"):
        export_encoder(foreign, tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_encoder(tmp_path / "missing.pt")


def test_print_config_lists_every_model_and_data_key(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", "configs/pretrain/quickstart.yaml", "--print_config"])
    assert e.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    for key in ("masks", "regularizer", "regularize_on", "target", "ema_momentum", "final_weight_decay"):
        assert key in cfg["model"]["init_args"], key
    reg = cfg["model"]["init_args"]["regularizer"]
    assert reg["class_path"] == "jepa.objectives.VICReg" and reg["init_args"]["cov_weight"] == 0.2
    assert cfg["data"]["init_args"]["num_frames"] == 8
    # The best device here, with a precision that suits it: fp32 on this CPU (bf16-mixed on a GPU).
    assert cfg["trainer"]["accelerator"] == "auto"
    assert cfg["trainer"]["precision"] == ("bf16-mixed" if torch.cuda.is_available() else "32-true")


def test_print_config_shows_the_loggers_and_callbacks_the_run_uses(capsys, tmp_path: Path) -> None:
    def printed(*args: str) -> dict:
        with pytest.raises(SystemExit) as e:
            main(["fit", *args, "--print_config"])
        assert e.value.code == 0
        return yaml.safe_load(capsys.readouterr().out)

    cfg = printed("--config", "configs/pretrain/quickstart.yaml", "--trainer.default_root_dir", str(tmp_path / "r"))
    loggers = [lg["class_path"].rsplit(".", 1)[1] for lg in cfg["trainer"]["logger"]]
    assert loggers == ["CSVLogger", "OfflineWandbLogger"]
    callbacks = [cb["class_path"].rsplit(".", 1)[1] for cb in cfg["trainer"]["callbacks"]]
    assert callbacks.count("ModelCheckpoint") == 2 and "LearningRateMonitor" in callbacks
    dirs = {cb["init_args"].get("dirpath") for cb in cfg["trainer"]["callbacks"] if "dirpath" in cb["init_args"]}
    assert dirs == {str(tmp_path / "r" / "checkpoints")}
    # The printed config is a recipe: run again from it, nothing is added twice.
    saved = tmp_path / "printed.yaml"
    saved.write_text(yaml.safe_dump(cfg))
    again = printed("--config", str(saved))
    def summary(c: dict) -> list:
        return [(x["class_path"], x["init_args"].get("dirpath"), x["init_args"].get("save_dir"))
                for x in c["trainer"]["callbacks"] + c["trainer"]["logger"]]

    assert summary(again) == summary(cfg)


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_parses(recipe: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(recipe), "--print_config"])
    assert e.value.code == 0
    assert "jepa.methods.VideoJEPA" in capsys.readouterr().out


@pytest.mark.parametrize("recipe", WM_RECIPES, ids=[p.stem for p in WM_RECIPES])
def test_every_world_model_recipe_parses_and_builds(recipe: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(recipe), "--print_config"])
    assert e.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["class_path"] == "jepa.methods.ActionConditionedWorldModel"
    from jepa.methods import ActionConditionedWorldModel
    from jepa.objectives import build_regularizer

    args = dict(cfg["model"]["init_args"], action_dim=10)
    args["regularizer"] = build_regularizer(args["regularizer"])
    wm = ActionConditionedWorldModel(**args)
    assert wm.regularizer is not None and wm.predictor is not None


def test_unknown_config_key_is_named(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", "configs/pretrain/quickstart.yaml", "--model.init_args.not_a_key", "1"])
    assert e.value.code != 0
    assert "not_a_key" in capsys.readouterr().err


@pytest.fixture(scope="module")
def reported(fitted: Path, synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fitted run with a real probe beside it, and its report page."""
    assert main(["probe", "--encoder", str(fitted), "--train", str(synth_dir / "train.csv"), "--val",
                 str(synth_dir / "val.csv"), "--target", "direction", "--head", "linear", "--seeds", "1",
                 "--baselines", "random_init", "--views", "1", "--num-workers", "0", "--no-progress",
                 "--out", str(fitted / "probe"), "--cache-dir", str(tmp_path_factory.mktemp("cache"))]) == 0
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", str(fitted), "--out", str(out)]) == 0
    return out


def test_report_page_holds_curves_recipe_and_probes(reported: Path, fitted: Path, capsys) -> None:
    page = reported.read_text()
    for section in ('id="curves"', 'id="recipe"', 'id="probes"'):
        assert section in page
    assert 'aria-label="train/loss"' in page and 'aria-label="opt/pg1"' in page  # loss terms and learning rates
    assert "data:image/png;base64," in page and "http" not in page.split("<body>")[1].replace("http://www.w3.org", "")
    assert "model:" in page and "random init" in page  # the recipe and the probe table
    assert main(["report", str(fitted), "--out", str(reported)]) != 0
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    empty = reported.parent / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--out", str(reported.parent / "x.html")]) != 0
    err = capsys.readouterr().err.strip()
    assert "no metrics" in err and len(err.splitlines()) == 1


def test_report_logs_its_page_and_pictures_to_the_runs_wandb(reported: Path, fitted: Path, capsys) -> None:
    """--wandb resumes the run's own (offline) wandb run and logs the page and the probe chart."""
    from jepa.training.report_wandb import wandb_run_id

    run_id = wandb_run_id(fitted)
    assert run_id is not None
    assert not list((fitted / "wandb").glob("*run-*/files/media/html"))
    assert main(["report", str(fitted), "--out", str(reported.parent / "w.html"), "--wandb"]) == 0
    assert f"logged to wandb run {run_id}" in capsys.readouterr().out
    # under the training run's own id (a resumed run in a new process; here, in the test's process,
    # the fit's run is still open and receives them directly): wandb sync puts both in one run
    runs = list((fitted / "wandb").glob(f"offline-run-*-{run_id}"))
    pages = [p for r in runs for p in (r / "files" / "media").rglob("*.html")]
    assert len(pages) == 1 and 'id="curves"' in pages[0].read_text()
    assert [p for r in runs for p in (r / "files" / "media").rglob("*.png") if "probe" in str(p)]
    assert wandb_run_id(fitted) == run_id
    bare = reported.parent / "bare"
    (bare / "probe").mkdir(parents=True)
    (bare / "probe" / "probe.json").write_text((fitted / "probe" / "probe.json").read_text())
    assert main(["report", str(bare), "--out", str(reported.parent / "b.html"), "--wandb"]) == 0
    assert "no wandb run" in capsys.readouterr().out


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (make test installs Debian's chromium where apt can)")
def test_report_page_renders_in_headless_chromium(reported: Path, tmp_path: Path) -> None:
    dom = chromium(reported, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in ("Training curves", "Recipe", "Frozen probes"):
        assert f">{section}</h2>" in dom.stdout
    assert dom.stdout.count("<svg") >= 5 and "<table>" in dom.stdout
    console = console_errors(dom.stderr)
    assert not console, console
    shot = tmp_path / "report.png"
    assert chromium(reported, tmp_path / "profile", "--window-size=1280,1600", f"--screenshot={shot}").returncode == 0
    assert shot.stat().st_size > 10_000  # a page with pictures, not a blank one
