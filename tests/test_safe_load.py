"""No code from a stranger's file: every loader refuses a pickle that would run code, in one line,
unless the user marks the file as trusted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import jepa
from jepa.methods.world_model import load_world_model
from jepa.safe_load import TRUST_ENV, UnsafeFileError, torch_load
from jepa.training.checkpointing import CheckpointError, read_checkpoint
from jepa.training.cli import main


class Touch:
    """Unpickling this creates ``marker``: the code a malicious checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def evil_file(tmp_path: Path, name: str = "evil.ckpt") -> tuple[Path, Path]:
    marker = tmp_path / f"{name}.ran"
    path = tmp_path / name
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Touch(marker)}, "format": "jepa-encoder"}, path)
    return path, marker


@pytest.fixture(autouse=True)
def _no_global_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRUST_ENV, raising=False)


def test_every_loader_refuses_code_by_default(tmp_path: Path) -> None:
    path, marker = evil_file(tmp_path)
    with pytest.raises(UnsafeFileError, match=r"evil.ckpt: refusing to load it because it needs the Python object \w+"):
        torch_load(path)
    with pytest.raises(UnsafeFileError, match="--trust-checkpoint"):
        jepa.load_encoder(path)
    with pytest.raises(UnsafeFileError):
        jepa.encoder_meta(path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_checkpoint(path)
    with pytest.raises(UnsafeFileError, match="refusing to load"):
        load_world_model(str(path))
    assert not marker.exists()


def test_the_cli_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, marker = evil_file(tmp_path)
    assert main(["export", str(path), "--out", str(tmp_path / "enc.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing to load" in err and "--trust-checkpoint" in err
    assert main(["plan", "--world-model", str(path), "--episodes", "1", "--agents", "world_model"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing to load" in err
    assert not marker.exists() and not (tmp_path / "enc.pt").exists()


def test_trust_is_an_explicit_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, marker = evil_file(tmp_path)
    torch_load(path, trust=True)
    assert marker.exists()  # the opt-in really loads the file as pickle would
    marker.unlink()
    monkeypatch.setenv(TRUST_ENV, "1")
    torch_load(path)
    assert marker.exists()


def test_files_jepa_writes_load_safely(tmp_path: Path) -> None:
    enc = jepa.create_encoder("vit_pico", input_size=(4, 32, 32), patch_size=8, tubelet_size=2)
    out = jepa.save_encoder(enc, tmp_path / "enc.pt")
    back = jepa.load_encoder(out)  # weights_only: no opt-in needed for our own files
    for a, b in zip(enc.state_dict().values(), back.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    torch.load(out, weights_only=True)


def test_safetensors_export_round_trips_without_pickle(tmp_path: Path) -> None:
    enc = jepa.create_encoder("vit_pico", input_size=(4, 32, 32), patch_size=8, tubelet_size=2).eval()
    enc.meta = {"data": {"frame_step": 3, "mean": [0.5, 0.5, 0.5]}}
    path = jepa.save_encoder(enc, tmp_path / "enc.safetensors")
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header (JSON), not a pickle
    back = jepa.load_encoder(path)
    assert back.config == enc.config and back.meta == enc.meta
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back.forward_features(x), enc.forward_features(x))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="a safetensors file but not a jepa encoder"):
        jepa.load_encoder(tmp_path / "other.safetensors")
