"""Bad input to ``jepa fit`` / ``jepa plan`` / ``load_encoder``: each case stops before training
with one message naming the key, file or value (no traceback), and bad data files reach the
trainer through the skip / strict policies."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from fitting import tiny_fit_config

from jepa.hub import load_encoder
from jepa.training.cli import main


def fit(cfg: Path, *extra: str) -> int:
    return main(["fit", "--config", str(cfg), *extra])


def last_line(err: str) -> str:
    """The final stderr line: the one-line error ``jepa`` ends with (not a traceback's last frame)."""
    return err.strip().splitlines()[-1]


def copy_manifest(src: Path, dst: Path, bad: dict[int, bytes | None] | None = None) -> Path:
    """A copy of a manifest with absolute paths; row i -> a file holding bad[i] (None: missing)."""
    rows = list(csv.DictReader(open(src)))  # noqa: SIM115 - tiny file, read at once
    dst.parent.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        row["path"] = str((src.parent / row["path"]).resolve())
        if bad and i in bad:
            p = dst.parent / f"bad{i}.mp4"
            if bad[i] is not None:
                p.write_bytes(bad[i])
            row["path"] = str(p)
    with open(dst, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


def test_unknown_key_names_the_key(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4)
    with pytest.raises(SystemExit) as e:
        fit(cfg, "--model.init_args.learning_rate", "0.1")
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1] == ("jepa fit: error: model.init_args.learning_rate is not an option of "
                                    "jepa.methods.VideoJEPA (`jepa fit --help` lists the options)"), err
    assert "usage:" not in err


def test_wrong_type_names_the_key_and_value(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4)
    with pytest.raises(SystemExit) as e:
        fit(cfg, "--data.init_args.batch_size", "four")
    err = capsys.readouterr().err
    assert e.value.code == 2 and "data.init_args.batch_size: expected int, got 'four'" in err, err
    assert "usage:" not in err


@pytest.mark.parametrize(("override", "message"), [
    (("--data.init_args.batch_size", "0"), "data.init_args.batch_size must be >= 1, got 0"),
    (("--model.init_args.lr", "-1"), "model.init_args.lr must be >= 0, got -1.0"),
    (("--model.init_args.encoder", "vit_nope"), "model.init_args.encoder: unknown preset 'vit_nope'; choose one of"),
])
def test_bad_values_are_one_line(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str],
                                 override: tuple[str, str], message: str) -> None:
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4)
    assert fit(cfg, *override) == 2
    err = capsys.readouterr().err
    assert last_line(err).startswith(f"jepa fit: error: {message}"), err


def test_missing_dataset_path(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, data={"train": str(tmp_path / "nowhere.csv")})
    assert fit(cfg) == 2
    err = capsys.readouterr().err
    assert last_line(err).startswith("jepa fit: error: data.init_args.train: ") and "nowhere.csv does not exist" in err, err


def test_manifest_whose_files_do_not_exist(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = sum(1 for _ in open(synth_dir / "train.csv")) - 1  # noqa: SIM115
    manifest = copy_manifest(synth_dir / "train.csv", tmp_path / "m" / "train.csv", {i: None for i in range(n)})
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, data={"train": str(manifest)})
    assert fit(cfg) == 2
    err = capsys.readouterr().err
    assert f"none of the {n} files listed in {manifest} exist (first: {tmp_path / 'm' / 'bad0.mp4'})" in err, err


def test_fewer_videos_than_one_batch(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = sum(1 for _ in open(synth_dir / "train.csv")) - 1  # noqa: SIM115
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=n + 1)
    assert fit(cfg) == 2  # not "No training batches" and exit 0 with no checkpoint
    err = capsys.readouterr().err
    assert f"has {n} videos, fewer than one batch (data.init_args.batch_size={n + 1})" in last_line(err), err
    assert f"lower data.init_args.batch_size to at most {n}" in err
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").rglob("*.ckpt"))


def test_clip_longer_than_every_video(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, data={"num_frames": 16, "frame_step": 4})
    assert fit(cfg) == 2
    err = capsys.readouterr().err
    assert "num_frames=16 (frame_step=4) spans 61 source frames, but no video of data.init_args.train" in err, err
    assert "longest: 32 frames" in err


def test_input_size_not_divisible_by_the_patch_size(
    tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, data={"crop_size": 36})
    assert fit(cfg) == 2
    err = capsys.readouterr().err
    assert "data.init_args.crop_size=36 is not divisible by model.init_args.patch_size=8" in err, err


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory: pytest.TempPathFactory, synth_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("ckpt")
    cfg = tiny_fit_config(tmp, synth_dir, "run", batch=4, trainer={"max_steps": 1})
    assert fit(cfg) == 0
    return tmp / "run" / "checkpoints" / "last.ckpt"


def test_truncated_checkpoint_to_ckpt_path(
    tmp_path: Path, synth_dir: Path, real_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "half.ckpt"
    data = real_ckpt.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4)
    assert fit(cfg, "--ckpt_path", str(bad)) == 2
    err = capsys.readouterr().err
    assert f"--ckpt_path: {bad} ({len(data) // 2} bytes) is not a readable checkpoint, truncated or corrupt?" in err, err


def test_foreign_checkpoints_to_ckpt_path(
    tmp_path: Path, synth_dir: Path, real_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4)
    weights_only = tmp_path / "weights.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, weights_only)
    assert fit(cfg, "--ckpt_path", str(weights_only)) == 2
    assert f"{weights_only} is not a Lightning checkpoint from jepa fit" in capsys.readouterr().err
    other = tmp_path / "world_model.ckpt"
    ckpt = torch.load(real_ckpt, weights_only=False)
    ckpt["hyper_parameters"] = {"action_dim": 2, "rollout_steps": 3, "latent_dim": 64}
    torch.save(ckpt, other)
    assert fit(cfg, "--ckpt_path", str(other)) == 2
    err = capsys.readouterr().err
    assert f"{other} was written by a different model than VideoJEPA" in err and "action_dim" in err, err


def test_bad_files_to_load_encoder_and_plan(tmp_path: Path, real_ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    half = tmp_path / "half.ckpt"
    data = real_ckpt.read_bytes()
    half.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=f"{half} is not a readable checkpoint or encoder file"):
        load_encoder(half)
    assert main(["plan", "--world-model", str(half), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{half} is not a readable ActionConditionedWorldModel checkpoint" in last_line(err), err
    assert main(["plan", "--world-model", str(real_ckpt), "--episodes", "1"]) == 2  # a pretraining checkpoint
    assert "is not a world-model checkpoint: it is a VideoJEPA pretraining checkpoint" in capsys.readouterr().err


def test_skipped_bad_files_are_counted_in_the_training_logs(tmp_path: Path, synth_dir: Path) -> None:
    manifest = copy_manifest(synth_dir / "train.csv", tmp_path / "m" / "train.csv", {0: b"not a video", 5: b"\x00" * 64})
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, data={"train": str(manifest)}, trainer={"max_steps": 4})
    assert fit(cfg) == 0
    rows = list(csv.DictReader(open(next((tmp_path / "run" / "csv").rglob("metrics.csv")))))  # noqa: SIM115
    counts = [float(r["data/skipped_files"]) for r in rows if r.get("data/skipped_files")]
    assert counts and counts[-1] == 2, counts


def test_strict_policy_stops_naming_the_file(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = copy_manifest(synth_dir / "train.csv", tmp_path / "m" / "train.csv", {3: b"not a video"})
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, data={"train": str(manifest), "bad_files": "strict"},
                          trainer={"max_epochs": 1, "max_steps": -1})
    assert fit(cfg) == 1
    err = capsys.readouterr().err
    assert last_line(err).startswith("jepa fit: error: ") and f"{tmp_path / 'm' / 'bad3.mp4'}" in last_line(err), err


def test_every_file_bad_stops_instead_of_spinning(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = sum(1 for _ in open(synth_dir / "train.csv")) - 1  # noqa: SIM115
    manifest = copy_manifest(synth_dir / "train.csv", tmp_path / "m" / "train.csv", {i: b"junk" for i in range(n)})
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, data={"train": str(manifest)})
    assert fit(cfg) == 1
    err = capsys.readouterr().err
    assert last_line(err).startswith("jepa fit: error: ") and f"all {n} videos failed to decode" in last_line(err), err
    shutil.rmtree(tmp_path / "m")


def test_each_command_says_what_a_wrong_file_is(
    tmp_path: Path, synth_dir: Path, real_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enc = tmp_path / "enc.pt"
    assert main(["export", str(real_ckpt), "--out", str(enc)]) == 0
    capsys.readouterr()
    # An exported encoder given to resume training: not a KeyError from inside Lightning.
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4)
    assert fit(cfg, "--ckpt_path", str(enc)) == 2
    err = last_line(capsys.readouterr().err)
    assert f"--ckpt_path: {enc} is not a Lightning checkpoint from jepa fit: it is an encoder file from jepa export" in err
    # A pretraining run or an encoder file given to jepa plan.
    for path, kind in ((real_ckpt, "a VideoJEPA pretraining checkpoint"), (enc, "an encoder file from jepa export")):
        assert main(["plan", "--world-model", str(path), "--episodes", "1", "--agents", "world_model"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{path} is not a world-model checkpoint: it is {kind}" in err, err
    # An encoder file given to jepa export.
    assert main(["export", str(enc), "--out", str(tmp_path / "again.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{enc} is not a jepa fit checkpoint to export from: it is an encoder file from jepa export" in err, err


def test_unwritable_outputs_fail_before_any_work(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4)
    assert fit(cfg, "--trainer.default_root_dir", str(blocker / "run")) == 2
    assert f"trainer.default_root_dir: {blocker / 'run'}: cannot write there" in last_line(capsys.readouterr().err)
    for argv in (["plan", "--agents", "random", "--episodes", "1", "--out", str(blocker / "plan")],
                 ["probe", "--encoder", str(tmp_path / "none.pt"), "--train", "a.csv", "--val", "b.csv",
                  "--target", "direction", "--out", str(blocker / "probe")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"--out {blocker}" in err and "cannot write there" in err, err


def test_a_run_that_fails_to_start_leaves_no_junk(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, data={"val": str(tmp_path / "missing.csv")})
    assert fit(cfg, "--trainer.default_root_dir", str(tmp_path / "fresh"), "--trainer.logger", "null") == 2
    assert not (tmp_path / "fresh").exists()  # made by this invocation, nothing saved: removed
    keep = tmp_path / "old"
    (keep / "csv" / "version_0").mkdir(parents=True)
    (keep / "notes.txt").write_text("mine")
    assert fit(cfg, "--trainer.default_root_dir", str(keep), "--trainer.logger", "null") == 2
    assert (keep / "csv" / "version_0").is_dir() and (keep / "notes.txt").read_text() == "mine"


def test_a_fit_prints_no_noise(tmp_path: Path, synth_dir: Path) -> None:
    """Run as a user would (a subprocess, default loggers): none of the warnings a user cannot act on."""
    import subprocess
    import sys

    cfg = tiny_fit_config(tmp_path, synth_dir, "run", batch=4, trainer={"max_steps": 1})
    root = tmp_path / "quiet"
    import os

    env = os.environ | {"PYTHONPATH": str(Path(__file__).parent)}  # the tiny config's test callbacks
    proc = subprocess.run([sys.executable, "-m", "jepa", "fit", "--config", str(cfg), "--trainer.logger", "true",
                           "--trainer.default_root_dir", str(root)], capture_output=True, text=True, timeout=600,
                          env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for noise in ("💡", "anonymous setting", "LeafSpec", "could not find the monitored key"):
        assert noise not in out, noise
    assert list((root / "wandb").glob("offline-run-*")) and (root / "checkpoints" / "last.ckpt").is_file()


def test_write_checks_of_many_ranks_at_once_do_not_collide(tmp_path: Path) -> None:
    """Ranks of one job probe the same output folder at the same moment (a race that failed FSDP runs)."""
    import threading

    from jepa.training.preflight import check_writable

    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def rank() -> None:
        start.wait()
        for _ in range(200):
            try:
                check_writable("trainer.default_root_dir", tmp_path / "run")
            except BaseException as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)

    threads = [threading.Thread(target=rank) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
    assert not list((tmp_path / "run").iterdir())  # no probe file left behind
