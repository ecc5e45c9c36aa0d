"""``jepa embed``: one feature row per video, aligned with an index CSV, equal to what the encoder
gives on the same clips; outputs are never overwritten without --overwrite."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from jepa.clips import read_clips
from jepa.hub import save_encoder
from jepa.models.vit import VideoViT
from jepa.training.cli import main


@pytest.fixture()
def encoder_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    enc = VideoViT.from_preset("vit_pico", patch_size=16, tubelet_size=2, input_size=(4, 64, 64))
    meta = {"data": {"num_frames": 4, "frame_step": 3, "crop_size": 64}}
    return save_encoder(enc, tmp_path / "enc.safetensors", meta)


def test_embed_writes_aligned_features(synth_dir: Path, encoder_file: Path, tmp_path: Path, capsys) -> None:
    from jepa.hub import load_encoder

    out = tmp_path / "feats" / "val.npy"
    assert main(["embed", "--encoder", str(encoder_file), "--data", str(synth_dir / "val.csv"), "--out", str(out),
                 "--num-workers", "0", "--no-progress"]) == 0
    feats = np.load(out)
    with open(out.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    with open(synth_dir / "val.csv") as f:
        manifest = list(csv.DictReader(f))
    assert feats.shape == (len(manifest), 96) and feats.dtype == np.float32
    assert [r["row"] for r in rows] == [str(i) for i in range(len(manifest))]
    assert [Path(r["path"]).name for r in rows] == [Path(m["path"]).name for m in manifest]
    assert [r["shape"] for r in rows] == [m["shape"] for m in manifest]  # class names, not indices
    enc = load_encoder(encoder_file)
    with torch.no_grad():  # row k = the encoder on the video's 2 evenly spaced clips, tokens and views averaged
        clips = read_clips(rows[1]["path"], enc, views=2)
        ref = enc.forward_features(clips).mean(1).mean(0).numpy()
    np.testing.assert_allclose(feats[1], ref, rtol=1e-4, atol=1e-5)
    assert "wrote" in capsys.readouterr().out
    # Tokens on request; existing outputs are kept unless --overwrite.
    args = ["embed", "--encoder", str(encoder_file), "--data", str(synth_dir / "val.csv"), "--out", str(out),
            "--num-workers", "0", "--no-progress", "--tokens"]
    assert main(args) != 0 and "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    tokens = np.load(out)
    assert tokens.shape == (len(manifest), 2, 2 * 4 * 4, 96) and tokens.dtype == np.float16
    np.testing.assert_allclose(tokens.astype(np.float32).mean((1, 2)), feats, rtol=1e-2, atol=1e-2)
    assert main(["embed", "--encoder", str(encoder_file), "--data", str(synth_dir / "val.csv"),
                 "--out", str(tmp_path / "x.pt")]) != 0
    assert "ending in .npy" in capsys.readouterr().err


def test_embed_leaves_out_undecodable_videos(synth_dir: Path, encoder_file: Path, tmp_path: Path, capsys) -> None:
    with open(synth_dir / "val.csv") as f:
        manifest = list(csv.DictReader(f))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"")
    rows = [dict(manifest[0]), {**manifest[1], "path": str(broken)}, *[dict(m) for m in manifest[2:4]]]
    for r in rows:
        r["path"] = str(synth_dir / r["path"]) if not Path(r["path"]).is_absolute() else r["path"]
    data = tmp_path / "m.csv"
    with open(data, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "f.npy"
    assert main(["embed", "--encoder", str(encoder_file), "--data", str(data), "--out", str(out),
                 "--num-workers", "0", "--no-progress"]) == 0
    assert "1 undecodable videos left out" in capsys.readouterr().out
    with open(out.with_suffix(".csv")) as f:
        index = list(csv.DictReader(f))
    assert np.load(out).shape[0] == len(index) == 3
    assert str(broken) not in [r["path"] for r in index]


def test_embed_never_writes_over_its_manifest(synth_dir: Path, encoder_file: Path, tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "val.csv"
    manifest.write_text((synth_dir / "val.csv").read_text())
    before = manifest.read_bytes()
    assert main(["embed", "--encoder", str(encoder_file), "--data", str(manifest), "--out", str(tmp_path / "val.npy"),
                 "--overwrite", "--num-workers", "0", "--no-progress"]) != 0
    assert "over the manifest it reads" in capsys.readouterr().err and manifest.read_bytes() == before
