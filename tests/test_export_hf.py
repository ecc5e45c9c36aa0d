"""``jepa export --format transformers``: a run trained here loads with ``AutoModel.from_pretrained``
and computes what our encoder and predictor compute; what ``VJEPA2Model`` cannot express is
refused (encoder) or left out with a line saying so (predictor)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_pretrain import SIZE, Clips, tiny, trainer
from torch.utils.data import DataLoader

from jepa.hub import export_encoder, load_encoder
from jepa.methods.vjepa import VideoJEPA
from jepa.training.cli import main

transformers = pytest.importorskip("transformers", reason="the [hf] extra (transformers) is not installed")

VJEPA2_POSITIONS = dict(pos_encoding="rope", rope_layout="vjepa2")


def run(tmp_path: Path, **kw: object) -> tuple[VideoJEPA, Path]:
    m = tiny(**kw)
    t = trainer(tmp_path / "fit", max_steps=2, limit_val_batches=0)
    t.fit(m, DataLoader(Clips(4), batch_size=2))
    path = tmp_path / "run.ckpt"
    t.save_checkpoint(path)
    return m, path


def hf_outputs(folder: Path, video: torch.Tensor, ctx: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    x = video.permute(0, 2, 1, 3, 4)  # transformers: [B, T, C, H, W]
    with torch.no_grad():
        out = model(pixel_values_videos=x, context_mask=[ctx], target_mask=[tgt])
    return out.last_hidden_state, out.predictor_output.last_hidden_state


def test_a_run_exports_encoder_and_predictor_that_automodel_computes_alike(tmp_path: Path, capsys) -> None:
    m, ckpt = run(tmp_path, predictor_rope_layout="vjepa2", **VJEPA2_POSITIONS)
    out = tmp_path / "hf"
    assert main(["export", str(ckpt), "--out", str(out), "--format", "transformers"]) == 0
    printed = capsys.readouterr().out
    assert "predictor exported" in printed and "AutoModel.from_pretrained" in printed
    assert json.loads((out / "config.json").read_text())["model_type"] == "vjepa2"
    video = torch.randn(2, 3, *SIZE)
    n = m.encoder.token_grid(SIZE)[0] * m.encoder.token_grid(SIZE)[1] * m.encoder.token_grid(SIZE)[2]
    ctx, tgt = torch.arange(0, n, 2).repeat(2, 1), torch.arange(1, n, 2).repeat(2, 1)
    tokens, predicted = hf_outputs(out, video, ctx, tgt)
    target = load_encoder(ckpt)  # the EMA target encoder, as jepa export takes by default
    with torch.no_grad():
        ours = target.forward_features(video)
        ours_pred = m.predictor.eval()(ours.gather(1, ctx[..., None].expand(-1, -1, ours.shape[-1])), ctx, tgt,
                                       m.encoder.token_grid(SIZE))
    torch.testing.assert_close(tokens, ours, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(predicted, ours_pred, atol=2e-5, rtol=1e-4)
    from jepa.convert.vjepa2 import hf_predictor, load_hf_folder, read_hf_folder

    back = load_hf_folder(out)  # and the way back in is exact
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), target.state_dict().values(), strict=True))
    pconfig, psd = hf_predictor(*read_hf_folder(out))
    assert all(torch.equal(psd[k], v) for k, v in m.predictor.state_dict().items())
    processor = transformers.AutoVideoProcessor.from_pretrained(str(out))
    assert processor.crop_size["height"] == SIZE[1]


def test_an_encoder_file_and_a_predictor_in_our_layout_go_out_as_the_encoder_alone(tmp_path: Path, capsys) -> None:
    m, ckpt = run(tmp_path, **VJEPA2_POSITIONS)  # predictor_rope_layout stays "half"
    out = tmp_path / "hf"
    assert main(["export", str(ckpt), "--out", str(out), "--format", "transformers"]) == 0
    assert "predictor not exported: the predictor's positions are not V-JEPA 2's RoPE" in capsys.readouterr().out
    enc_file = export_encoder(ckpt, tmp_path / "enc.safetensors")
    assert main(["export", str(enc_file), "--out", str(tmp_path / "hf2"), "--format", "transformers"]) == 0
    assert "predictor not exported: there is no predictor" in capsys.readouterr().out
    video = torch.randn(1, 3, *SIZE)
    for folder in (out, tmp_path / "hf2"):
        model = transformers.AutoModel.from_pretrained(str(folder)).eval()
        with torch.no_grad():
            tokens = model(pixel_values_videos=video.permute(0, 2, 1, 3, 4), skip_predictor=True).last_hidden_state
            torch.testing.assert_close(tokens, load_encoder(ckpt).forward_features(video), atol=2e-5, rtol=1e-4)


def test_what_vjepa2model_cannot_express_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    _, ckpt = run(tmp_path)  # vit_pico: sin-cos positions
    out = tmp_path / "hf"
    assert main(["export", str(ckpt), "--out", str(out), "--format", "transformers"]) != 0
    err = capsys.readouterr().err.strip()
    assert "cannot be written as a transformers VJEPA2Model: it has sin-cos positions" in err
    assert "rope_layout vjepa2" in err and len(err.splitlines()) == 1 and not out.exists()
    _, rope = run(tmp_path / "half", pos_encoding="rope")  # our RoPE layout
    assert main(["export", str(rope), "--out", str(out), "--format", "transformers"]) != 0
    assert "RoPE in our 'half' layout" in capsys.readouterr().err


def test_export_folders_are_never_overwritten_silently(tmp_path: Path, capsys) -> None:
    _, ckpt = run(tmp_path, **VJEPA2_POSITIONS)
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["export", str(ckpt), "--out", str(out), "--format", "transformers"]) != 0
    assert "not empty; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(ckpt), "--out", str(out), "--format", "transformers", "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.safetensors").is_file()
    assert main(["export", str(ckpt), "--out", str(ckpt), "--format", "transformers"]) != 0
    assert "is (or holds) the checkpoint being exported" in capsys.readouterr().err
    assert main(["export", str(ckpt), "--out", str(tmp_path), "--format", "transformers", "--overwrite"]) != 0
    assert "is (or holds) the checkpoint being exported" in capsys.readouterr().err
    (tmp_path / "file.txt").write_text("x")
    assert main(["export", str(ckpt), "--out", str(tmp_path / "file.txt"), "--format", "transformers"]) != 0
    assert "writes a folder" in capsys.readouterr().err
