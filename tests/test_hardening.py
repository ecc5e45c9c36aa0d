"""Bad input never gives a silent wrong result: out-of-range layers and presets that do not match
the file raise with a message naming the value and what would work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import jepa
from jepa.models.vit import VideoViT
from jepa.training.cli import main


def pico() -> VideoViT:
    return jepa.create_encoder("vit_pico", input_size=(4, 32, 32), patch_size=8, tubelet_size=2)


def test_intermediate_layers_reject_out_of_range() -> None:
    enc = pico().eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        last = enc.get_intermediate_layers(x, [-1])
        assert len(last) == 1
        torch.testing.assert_close(last[0], enc.get_intermediate_layers(x, [3])[0])
        torch.testing.assert_close(last[0], enc.get_intermediate_layers(x, 1)[0])
        assert len(enc.get_intermediate_layers(x, 4)) == 4
        for bad in ([99], [4], [-5]):
            with pytest.raises(ValueError, match="out of range for a 4-block encoder"):
                enc.get_intermediate_layers(x, bad)
        for n in (10, 0):
            with pytest.raises(ValueError, match=f"n={n} blocks asked of a 4-block encoder"):
                enc.get_intermediate_layers(x, n)


def test_create_encoder_checks_the_file_is_that_preset(tmp_path: Path) -> None:
    path = jepa.save_encoder(pico(), tmp_path / "pico.pt")
    assert jepa.create_encoder("vit_pico", pretrained=path).config["depth"] == 4
    with pytest.raises(ValueError, match=r"holds a vit_pico encoder \(embed_dim 96, depth 4, 3 heads\), not 'vit_tiny'"):
        jepa.create_encoder("vit_tiny", pretrained=path)
    with pytest.raises(ValueError, match="unknown encoder preset 'vit_nope'"):
        jepa.create_encoder("vit_nope", pretrained=path)


def test_probe_layer_out_of_range_is_one_line(tmp_path: Path, synth_dir: Path, capsys: pytest.CaptureFixture) -> None:
    path = jepa.save_encoder(pico(), tmp_path / "pico.pt")
    rc = main(["probe", "--encoder", str(path), "--train", str(synth_dir / "train.csv"), "--val",
               str(synth_dir / "val.csv"), "--target", "direction", "--layer", "99", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--layer 99 is out of range for this 4-block encoder; use 0..3" in err


def test_synth_and_collect_never_mix_into_an_existing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "shapes"
    args = ["data", "synth", "moving-shapes", "--out", str(out), "--videos", "3", "--workers", "1"]
    assert main(args) == 0
    before = (out / "manifest.csv").read_text()
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main([*args[:-4], "--videos", "2", "--workers", "1", "--seed", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds a dataset (manifest.csv, train.csv, val.csv, 3 files in videos/)" in err
    assert (out / "manifest.csv").read_text() == before  # untouched
    assert main([*args[:-4], "--videos", "2", "--workers", "1", "--seed", "5", "--overwrite"]) == 0
    assert len(list((out / "videos").iterdir())) == 2  # replaced whole, not mixed
    assert (out / "notes.txt").read_text() == "mine"  # other files are the user's
    col = ["data", "collect", "two-rooms", "--episodes", "2", "--steps", "3", "--out", str(tmp_path / "tr"), "--workers", "1"]
    assert main(col) == 0
    assert main(col) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert main([*col, "--overwrite"]) == 0


def test_export_never_replaces_a_file_without_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt, other = tmp_path / "last.ckpt", tmp_path / "encoder.pt"
    ckpt.write_bytes(b"resume state")
    other.write_bytes(b"an earlier export")
    assert main(["export", str(ckpt), "--out", str(other)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(ckpt), "--out", str(ckpt), "--overwrite"]) == 2
    assert "is (or holds) the checkpoint being exported" in capsys.readouterr().err
    assert ckpt.read_bytes() == b"resume state" and other.read_bytes() == b"an earlier export"


def test_cli_lists_its_commands_and_speaks_one_line(capsys: pytest.CaptureFixture) -> None:
    from jepa.training.cli import build_parser

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "fit " in out and "validate " in out and "probe" in out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"jepa {jepa.__version__}"
    for argv, key in ((["probe", "--encoder", "e", "--train", "a", "--val", "b", "--target", "t", "--seeds", "0"], "--seeds"),
                      (["data", "inspect", "x", "--crop-size", "0"], "--crop-size"),
                      (["data", "synth", "moving-shapes", "--out", "o", "--videos", "-3"], "--videos")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1, err
        assert f"argument {key}: must be a positive integer" in err and "--help` lists the options" in err
    # Both spellings, as LightningCLI's --ckpt_path and our --max-steps differ.
    args = build_parser().parse_args(["plan", "--max_steps", "7", "--gif-episodes", "0"])
    assert args.max_steps == 7 and args.gif_episodes == 0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["plan", "--max-steps", "0"])
    assert "(default: 12)" in build_parser()._subparsers._group_actions[0].choices["plan"].format_help()  # defaults shown
