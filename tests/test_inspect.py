"""``jepa inspect``: the dictionary recovers planted atoms, AUC matches its definition, names are
scored on held-out clips, and the command runs end to end on generated videos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import CHROMIUM, chromium, console_errors

from jepa.inspect.dictionary import decode, encode, fit_dictionary, pca_r2, r2_score
from jepa.inspect.run import auc, name_candidates, name_units


def planted(n: int = 6000, dim: int = 16, atoms: int = 24, k: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(atoms, dim, generator=g)
    true /= true.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(atoms, generator=g)[:k] for _ in range(n)])
    coef = torch.rand(n, k, generator=g) * 2 + 0.5
    x = (coef[..., None] * true[idx]).sum(1) + 0.01 * torch.randn(n, dim, generator=g) + 2.0
    return x, true


def test_dictionary_recovers_planted_sparse_atoms() -> None:
    x, true = planted()
    dic, log = fit_dictionary(x[:5000], atoms=48, active=2, steps=800, seed=0)
    best = (true @ dic.decoder.t()).max(1).values  # each planted atom's closest learned atom
    assert (best > 0.95).float().mean() >= 0.9 and (best > 0.7).all(), best  # >= 90% recovered closely
    held = x[5000:]
    codes = encode(dic, held)
    assert ((codes > 0).sum(1) <= 2).all() and (codes >= 0).all()
    r2 = r2_score(held, decode(dic, codes))
    assert r2 > 0.9 and r2 > pca_r2(x[:5000], held, 2) + 0.3  # sparse beats PCA at the same k
    assert log.r2[-1] > log.r2[0]


def test_auc_is_the_pairwise_definition_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (60,), generator=g).float()  # many ties, as sparse codes have
    pos = torch.rand(60, generator=g) < 0.4
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a in scores[pos] for b in scores[~pos]]
    assert auc(scores, pos) == pytest.approx(sum(pairs) / len(pairs))
    assert auc(scores, torch.zeros(60, dtype=torch.bool)) == 0.5


def test_names_are_chosen_on_fit_clips_and_scored_on_held_out_ones() -> None:
    g = torch.Generator().manual_seed(0)
    labels = {"shape": torch.randint(0, 3, (200,), generator=g)}
    fit, held = torch.arange(0, 100), torch.arange(100, 200)
    acts = torch.rand(200, 2, generator=g)
    acts[fit, 0] = (labels["shape"][fit] == 1).float()  # separates shape 1 on fit clips only
    acts[:, 1] = (labels["shape"] == 2).float() + 0.1 * torch.rand(200, generator=g)  # everywhere
    names = name_units(acts, labels, fit, held)
    assert names[0]["label"] == "shape" and names[0]["value"] == 1 and names[0]["fit_auc"] == 1.0
    assert abs(names[0]["heldout_auc"] - 0.5) < 0.2  # memorised, not a feature
    assert names[1]["value"] == 2 and names[1]["heldout_auc"] == 1.0


def test_jepa_inspect_runs_end_to_end(synth_dir: Path, tmp_path: Path, capsys) -> None:
    from jepa.hub import save_encoder
    from jepa.models.vit import VideoViT
    from jepa.training.cli import main

    torch.manual_seed(0)
    enc = save_encoder(VideoViT(embed_dim=32, depth=2, num_heads=2, patch_size=8, tubelet_size=2,
                                input_size=(4, 32, 32)).eval(), tmp_path / "enc.pt", meta={"data": {"frame_step": 2}})
    out = tmp_path / "inspect"
    args = ["inspect", "--encoder", str(enc), "--data", str(synth_dir / "manifest.csv"), "--atoms", "16",
            "--active", "2", "--steps", "150", "--show", "3", "--out", str(out), "--num-workers", "0",
            "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| pretrained |" in printed and "| random_init |" in printed and "PCA directions" in printed
    result = json.loads((out / "inspect.json").read_text())
    assert result["heldout_clips"] + result["fit_clips"] == result["clips"] == 24
    s = result["pretrained"]
    assert s["atoms"] == 16 and 0 < s["r2"] <= 1 and "pca_r2" in s and 0 <= s["nameable"] <= 16
    assert set(s["nameable_by_label"]) == set(result["labels"])
    named = [a["label"] for a in result["atoms"] if a["heldout_auc"] >= 0.9]
    assert s["nameable_by_label"] == {col: named.count(col) for col in result["labels"]}
    assert sum(s["nameable_by_label"].values()) == s["nameable"]
    assert {"direction", "shape"} <= set(result["labels"])
    assert len(list((out / "atoms").glob("atom_*.png"))) == 3
    page = (out / "inspect.html").read_text()
    assert 'id="summary"' in page and page.count('<div class="card">') == 3
    if CHROMIUM is not None:  # the page as a person sees it: it loads, shows its sections and pictures, no console errors
        dom = chromium(out / "inspect.html", tmp_path / "profile", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert ">Summary</h2>" in dom.stdout and ">Atoms</h2>" in dom.stdout and dom.stdout.count("<img") == 3
        assert not console_errors(dom.stderr)
    assert main(args) != 0
    assert "already holds an inspection; pass --overwrite" in capsys.readouterr().err


def test_nameable_counts_per_label() -> None:
    from jepa.inspect.run import nameable_by_label

    names = [{"label": "shape", "heldout_auc": 0.95}, {"label": "shape", "heldout_auc": 0.89},
             {"label": "color", "heldout_auc": 0.99}, {"label": None, "heldout_auc": 0.5}]
    assert nameable_by_label(names, ["color", "direction", "shape"]) == {"color": 1, "direction": 0, "shape": 1}


def test_rare_label_values_never_name_a_unit() -> None:
    g = torch.Generator().manual_seed(0)
    n = 200
    labels = {"collisions": torch.zeros(n, dtype=torch.long), "shape": torch.randint(0, 2, (n,), generator=g)}
    fit, held = torch.arange(0, 140), torch.arange(140, 200)
    rare = torch.tensor([3, 50, 100, 150])  # 3 fit clips and 1 held-out clip with 7 collisions
    labels["collisions"][rare] = 7
    labels["collisions"][60:120] = 1  # a common value
    acts = torch.rand(n, 2, generator=g)
    acts[rare, 0] = 5.0  # separates the rare value perfectly, on both sets
    acts[:, 1] = labels["shape"].float() + 0.1 * torch.rand(n, generator=g)
    names = name_units(acts, labels, fit, held)
    assert (names[0]["label"], names[0]["value"]) != ("collisions", 7)  # one held-out clip is not evidence
    assert (names[1]["label"], names[1]["heldout_auc"]) == ("shape", 1.0)
    assert ("collisions", 7) in [(c, v) for c, v in name_candidates(labels, fit, held, min_clips=1)]
