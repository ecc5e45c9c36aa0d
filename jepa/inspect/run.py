"""``jepa inspect``: a sparse dictionary over an encoder's frozen tokens, with names and pictures.

    jepa inspect --encoder outputs/quickstart/encoder.pt --data data/moving_shapes/val.csv \\
        --atoms 256 --active 8 --out outputs/quickstart/inspect

1. Token features of every clip (one centre view per video, as the probes read them, through the
   probe feature cache) of the encoder and, as the baseline, of a randomly initialised twin.
2. The videos are split into *fit* and *held-out* clips (``heldout`` fraction, seeded). A top-k
   sparse dictionary (``jepa.inspect.dictionary``) is fitted on the fit clips' tokens.
3. On held-out tokens: reconstruction R^2 at ``active`` atoms per token, against PCA with as many
   components; atom frequencies (dead: never active; always-on: active in over half the tokens).
4. Names: a clip's activation of an atom is its largest over the clip's tokens. For every label
   column of the manifest with few values (shape, colour, direction, ...), each atom is matched on
   the *fit* clips to the (column, value) its activation separates best (ROC AUC, one value
   against the rest), and that match is scored on the *held-out* clips only; a value names atoms
   only if at least ``MIN_CLIPS`` (10) clips have it and 10 do not, in both sets. An atom is
   *nameable* at held-out AUC >= 0.9. The same count is made for PCA directions (each sign of
   each principal direction, as many as the dictionary's atoms at most) and for the dictionary
   of the random-init twin.
5. Outputs: ``inspect.json`` (everything), ``inspect.html`` (summary and one card per atom with
   its top held-out clips, the activating tokens highlighted on the frames) and ``atoms/*.png``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jepa.inspect.dictionary import SparseDictionary, encode, fit_dictionary, pca_r2, r2_score

NAMEABLE_AUC = 0.9
MAX_LABEL_VALUES = 20  # label columns with more distinct values are not used for names
MIN_CLIPS = 10  # a label value names units only with this many clips having it, and not, in fit and held-out sets


def auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """ROC AUC of ``scores`` for ``positive`` (bool): the Mann-Whitney U statistic with tied
    scores given their average rank; 0.5 when one class is empty."""
    n_pos, n = int(positive.sum()), int(positive.numel())
    if n_pos == 0 or n_pos == n:
        return 0.5
    sorted_s, order = scores.double().sort()
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()  # 1-based rank of each tie group's last member
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = ((ends - counts + 1 + ends) / 2)[inverse]  # average rank over ties
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * (n - n_pos)))


def label_columns(labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The label columns names can come from: integer (or categorical) with 2..20 values."""
    out = {}
    for name, values in labels.items():
        if values.dtype.is_floating_point:
            continue
        distinct = torch.unique(values)
        if 2 <= distinct.numel() <= MAX_LABEL_VALUES:
            out[name] = values
    return out


def name_candidates(labels: dict[str, torch.Tensor], fit: torch.Tensor, held: torch.Tensor,
                    min_clips: int = MIN_CLIPS) -> list[tuple[str, int]]:
    """The (label, value) pairs a unit may be named by: values with at least ``min_clips`` clips
    having it and ``min_clips`` not, among the fit clips and among the held-out clips alike (an AUC
    over one or two positive clips is noise, not a name)."""
    out = []
    for col, values in labels.items():
        for v in torch.unique(values[fit]).tolist():
            counts = [int((values[idx] == v).sum()) for idx in (fit, held)]
            if all(min_clips <= c <= idx.numel() - min_clips for c, idx in zip(counts, (fit, held), strict=True)):
                out.append((col, int(v)))
    return out


def name_units(acts: torch.Tensor, labels: dict[str, torch.Tensor], fit: torch.Tensor,
               held: torch.Tensor, min_clips: int = MIN_CLIPS) -> list[dict[str, Any]]:
    """For each unit (column of ``acts [clips, units]``): the (label, value) it separates best on
    the ``fit`` clips (among ``name_candidates``), and that AUC on the ``held`` clips."""
    candidates = name_candidates(labels, fit, held, min_clips)
    out = []
    for u in range(acts.shape[1]):
        best: tuple[float, str, int] | None = None
        for col, v in candidates:
            a = auc(acts[fit, u], labels[col][fit] == v)
            if best is None or a > best[0]:
                best = (a, col, v)
        if best is None:
            out.append({"label": None, "value": None, "fit_auc": 0.5, "heldout_auc": 0.5})
            continue
        a_fit, col, v = best
        out.append({"label": col, "value": v, "fit_auc": a_fit,
                    "heldout_auc": auc(acts[held, u], labels[col][held] == v)})
    return out


def nameable_by_label(names: list[dict[str, Any]], labels: list[str]) -> dict[str, int]:
    """How many units are nameable (held-out AUC >= ``NAMEABLE_AUC``) for each label column."""
    counts = dict.fromkeys(labels, 0)
    for x in names:
        if x["label"] is not None and x["heldout_auc"] >= NAMEABLE_AUC:
            counts[x["label"]] = counts.get(x["label"], 0) + 1
    return counts


def split_indices(n: int, heldout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded split of ``n`` items into (fit, held-out) index tensors, ``heldout`` of them held out."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(1, int(round(n * heldout)))
    held, fit = perm[:k], perm[k:]
    if fit.numel() < 2:
        raise ValueError(f"{n} clips are too few to fit on and hold out {heldout:.0%}; pass more videos")
    return fit.sort().values, held.sort().values


def dictionary_report(tokens: torch.Tensor, labels: dict[str, torch.Tensor], fit: torch.Tensor, held: torch.Tensor,
                      atoms: int, active: int, steps: int, seed: int, max_tokens: int) -> tuple[SparseDictionary, dict]:
    """Fit on the ``fit`` clips' tokens ``[clips, N, D]``; everything measured on ``held``."""
    n, ntok, d = tokens.shape
    train = tokens[fit].reshape(-1, d).float()
    if train.shape[0] > max_tokens:
        train = train[torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(seed))[:max_tokens]]
    start = time.perf_counter()
    dic, log = fit_dictionary(train, atoms=atoms, active=active, steps=steps, seed=seed)
    fit_seconds = time.perf_counter() - start
    flat_held = tokens[held].reshape(-1, d).float()
    if flat_held.shape[0] > max_tokens:  # R^2 and frequencies on a seeded sample of the held-out tokens
        flat_held = flat_held[torch.randperm(flat_held.shape[0], generator=torch.Generator().manual_seed(seed + 1))[:max_tokens]]
    codes_held = encode(dic, flat_held)
    freq = (codes_held > 0).float().mean(0)  # fraction of held-out tokens where each atom is active
    chunk = max(1, 65536 // ntok)  # clips per encoding pass: the codes of all tokens are never held at once
    clip_acts = torch.cat([encode(dic, tokens[i:i + chunk].reshape(-1, d).float()).view(-1, ntok, atoms).amax(1)
                           for i in range(0, n, chunk)])  # [clips, atoms]
    names = name_units(clip_acts, label_columns(labels), fit, held)
    summary = {
        "atoms": atoms, "active": active, "fit_tokens": int(train.shape[0]), "fit_seconds": fit_seconds,
        "heldout_tokens": int(flat_held.shape[0]), "resampled_atoms": log.resampled,
        "r2": r2_score(flat_held, dic.decode(codes_held)), "pca_r2": pca_r2(train, flat_held, active),
        "dead": int((freq == 0).sum()), "always_on": int((freq > 0.5).sum()),
        "nameable": int(sum(x["heldout_auc"] >= NAMEABLE_AUC for x in names)),
        "nameable_by_label": nameable_by_label(names, sorted(label_columns(labels))),
    }
    units = [{"atom": j, "frequency": float(freq[j]), **names[j]} for j in range(atoms)]
    return dic, {"summary": summary, "atoms": units, "clip_acts": clip_acts}


def pca_names(tokens: torch.Tensor, labels: dict[str, torch.Tensor], fit: torch.Tensor, held: torch.Tensor,
              directions: int) -> dict[str, Any]:
    """The nameable count for principal directions of the fit tokens (each sign a direction)."""
    d = tokens.shape[-1]
    train = tokens[fit].reshape(-1, d).double()
    mean = train.mean(0)
    _, _, v = torch.linalg.svd(train - mean, full_matrices=False)
    comps = v[: max(1, min(d, directions // 2))]
    proj = (tokens.double() - mean) @ comps.t()  # [clips, N, c]
    acts = torch.cat([proj.amax(1), (-proj).amax(1)], 1).float()  # both signs
    names = name_units(acts, label_columns(labels), fit, held)
    return {"directions": int(acts.shape[1]), "nameable": int(sum(x["heldout_auc"] >= NAMEABLE_AUC for x in names)),
            "nameable_by_label": nameable_by_label(names, sorted(label_columns(labels)))}


def clip_picture(frames: np.ndarray, act: np.ndarray, grid: tuple[int, int, int], size: int = 96) -> np.ndarray:
    """One row: a frame per tubelet (its first), centre-cropped, activations overlaid in red."""
    from PIL import Image

    t, gh, gw = grid
    tub = max(1, frames.shape[0] // t)
    h, w = frames.shape[1:3]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    peak = max(float(act.max()), 1e-8)
    row = []
    for i in range(t):
        img = Image.fromarray(frames[i * tub, top:top + s, left:left + s]).resize((size, size), Image.BILINEAR)
        heat = Image.fromarray((255 * act[i] / peak).astype(np.uint8)).resize((size, size), Image.NEAREST)
        base = np.asarray(img).astype(np.float32)
        a = np.asarray(heat).astype(np.float32)[..., None] / 255 * 0.6
        red = np.zeros_like(base)
        red[..., 0] = 255
        row.append((base * (1 - a) + red * a).astype(np.uint8))
        row.append(np.full((size, 2, 3), 255, np.uint8))
    return np.concatenate(row, 1)


def atom_picture(dataset: Any, clips: list[tuple[int, torch.Tensor]], atom: int, grid: tuple[int, int, int]) -> bytes:
    """PNG bytes: the given clips ((dataset row, the clip's codes [N, atoms]) each), one row
    each, with where ``atom`` fires."""
    from PIL import Image

    rows = []
    for video, codes in clips:
        frames = dataset.load_clips(video)["video"][0].numpy()  # first view [T, H, W, 3]
        act = codes[:, atom].view(*grid).numpy()
        rows.append(clip_picture(frames, act, grid))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(rows, 0)).save(buf, format="PNG")
    return buf.getvalue()


def run_inspect(encoder: str | os.PathLike[str], data: str | os.PathLike[str], atoms: int = 256, active: int = 8,
                out: str | os.PathLike[str] | None = None, heldout: float = 0.3, steps: int = 2000, seed: int = 0,
                baselines: tuple[str, ...] = ("random_init",), max_tokens: int = 200_000, show: int = 24,
                clips_per_atom: int = 4, layer: int = -1, cache_dir: str | os.PathLike[str] | None = None,
                batch_size: int = 16, num_workers: int = 2, device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Fit, measure and name a dictionary for ``encoder`` on ``data`` (see the module notes)."""
    from jepa.clips import clip_spec_for
    from jepa.hub import encoder_meta, latest_checkpoint, load_encoder
    from jepa.probe.features import FeatureCache, extract_features, probe_dataset
    from jepa.probe.run import default_cache_dir, random_twin

    if not 0 < heldout < 1:
        raise ValueError(f"--heldout must be in (0, 1), got {heldout}")
    bad = [b for b in baselines if b != "random_init"]
    if bad:
        raise ValueError(f"unknown baseline(s) {bad}; choose random_init")
    encoder = latest_checkpoint(encoder)
    enc = load_encoder(encoder)
    spec = clip_spec_for(enc, encoder_meta(encoder), views=1)
    dataset = probe_dataset(data, spec)
    models: dict[str, torch.nn.Module] = {"pretrained": enc}
    if "random_init" in baselines:
        models["random_init"] = random_twin(enc)
    feats = extract_features(models, dataset, spec, cache=FeatureCache(cache_dir or default_cache_dir()),
                             keep_tokens=True, layer=layer, batch_size=batch_size, num_workers=num_workers,
                             device=device, desc="tokens", progress=progress)
    fs = feats["pretrained"]
    assert fs.tokens is not None
    tokens = fs.tokens[:, 0]  # [clips, N, D], one view
    fit, held = split_indices(tokens.shape[0], heldout, seed)
    dic, rep = dictionary_report(tokens, fs.labels, fit, held, atoms, active, steps, seed, max_tokens)
    result: dict[str, Any] = {
        "encoder": str(encoder), "data": str(data), "clips": int(tokens.shape[0]), "fit_clips": int(fit.numel()),
        "heldout_clips": int(held.numel()), "tokens_per_clip": int(tokens.shape[1]), "dim": int(tokens.shape[2]),
        "labels": sorted(label_columns(fs.labels)), "nameable_auc": NAMEABLE_AUC, "min_clips_per_name": MIN_CLIPS,
        "seed": seed,
        "pretrained": rep["summary"], "pca": pca_names(tokens, fs.labels, fit, held, atoms),
    }
    if "random_init" in feats:
        rt = feats["random_init"].tokens
        assert rt is not None
        _, rrep = dictionary_report(rt[:, 0], fs.labels, fit, held, atoms, active, steps, seed, max_tokens)
        result["random_init"] = rrep["summary"]
    result["atoms"] = rep["atoms"]
    if out is not None:
        grid = enc.token_grid(enc.input_size)

        def picture(top: list[int], atom: int) -> bytes:
            return atom_picture(dataset, [(int(fs.index[i]), encode(dic, tokens[i].float())) for i in top], atom, grid)

        write_outputs(Path(out), result, rep, held, show, clips_per_atom, picture,
                      clip_name=lambda i: str(dataset.source.paths[int(fs.index[i])]),
                      value_name=lambda col, v: _value_name(dataset, col, v))
        torch.save({"state_dict": dic.state_dict(), "dim": dic.dim, "atoms": dic.atoms, "active": dic.active},
                   Path(out) / "dictionary.pt")
    return result


def _ranked_atoms(result: dict[str, Any]) -> list[dict[str, Any]]:
    live = [a for a in result["atoms"] if a["frequency"] > 0]
    return sorted(live, key=lambda a: (-a["heldout_auc"], -a["frequency"]))


def write_outputs(out: Path, result: dict[str, Any], rep: dict[str, Any], held: torch.Tensor, show: int,
                  clips_per_atom: int, picture: Callable[[list[int], int], bytes], clip_name: Callable[[int], str],
                  value_name: Callable[[str, int], str]) -> None:
    """``inspect.json``, ``atoms/*.png`` and ``inspect.html``. ``picture(clips, atom)`` draws the
    given clips (row indices of ``rep["clip_acts"]``) with where ``atom`` fires; ``clip_name(i)``
    names clip ``i`` (its file); ``value_name(label, value)`` names a label's value."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "atoms").mkdir(exist_ok=True)
    cards = []
    for a in _ranked_atoms(result)[:show]:
        j = a["atom"]
        acts = rep["clip_acts"][held, j]
        top = held[acts.argsort(descending=True)[:clips_per_atom]].tolist()
        png = picture(top, j)
        (out / "atoms" / f"atom_{j:04d}.png").write_bytes(png)
        a["top_clips"] = [clip_name(i) for i in top]
        name = f"{a['label']} = {value_name(a['label'], a['value'])}" if a["label"] else "no label"
        a["name"] = name
        cards.append(f'<div class="card"><h3>atom {j}: {html.escape(name)}</h3>'
                     f'<p>held-out AUC {a["heldout_auc"]:.2f} (fit {a["fit_auc"]:.2f}), active in '
                     f'{100 * a["frequency"]:.1f}% of tokens</p>'
                     f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="atom {j}"></div>')
    tmp = out / "inspect.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out / "inspect.json")
    (out / "inspect.html").write_text(_page(result, cards))


def _value_name(dataset: Any, col: str, value: int) -> str:
    vocab = getattr(dataset.source, "vocab", {}).get(col)
    return str(vocab[value]) if vocab and 0 <= value < len(vocab) else str(value)


def _by_label(counts: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (counts or {}).items()) or "-"


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str, str, str]]:
    """(features, R^2, PCA R^2, nameable, nameable per label, dead, always-on) per dictionary."""
    rows = []
    for key in ("pretrained", "random_init"):
        s = result.get(key)
        if s:
            rows.append((key, f"{s['r2']:.3f}", f"{s['pca_r2']:.3f}", f"{s['nameable']} / {s['atoms']}",
                         _by_label(s.get("nameable_by_label")), str(s["dead"]), str(s["always_on"])))
    p = result["pca"]
    rows.append(("PCA directions (pretrained)", "", "", f"{p['nameable']} / {p['directions']}",
                 _by_label(p.get("nameable_by_label")), "", ""))
    return rows


def readout_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """(state coordinate, R^2 per features) of a world model's linear state read-out, if any."""
    ro = result.get("state_readout") or {}
    keys = [k for k in ("pretrained", "random_init") if k in ro]
    names = sorted({n for k in keys for n in ro[k]})
    return [(n, *(f"{ro[k][n]:.3f}" if n in ro[k] else "-" for k in keys)) for n in names]


def _readout_section(result: dict[str, Any]) -> str:
    rows = readout_rows(result)
    if not rows:
        return ""
    keys = [k for k in ("pretrained", "random_init") if k in result["state_readout"]]
    head = "<tr><th>state</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return ('<section id="readout"><h2>State read-out</h2><p>R² on held-out episodes of a ridge regression from '
            "a frame's whole latent to each true state coordinate (a latent that plans should hold what the actions "
            f"move, not only the scene).</p><table>{head}{body}</table></section>")


def _page(result: dict[str, Any], cards: list[str]) -> str:
    s = result["pretrained"]
    unit = result.get("unit", "clips")
    split = f", split by {result['split_by']}" if result.get("split_by") else ""
    head = ("<tr><th>features</th><th>R² (held-out)</th><th>PCA R², same k</th><th>nameable (AUC ≥ 0.9)</th>"
            "<th>nameable per label</th><th>dead</th><th>always on</th></tr>")
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in summary_rows(result))
    style = ("body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px}.cards{display:flex;flex-wrap:wrap;gap:12px}"
             ".card{border:1px solid #ddd;padding:8px;max-width:520px}.card h3{font-size:14px;margin:2px 0}"
             ".card p{font-size:12px;margin:2px 0 6px}img{max-width:500px}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>jepa inspect</title>'
            f"<style>{style}</style></head><body><h1>jepa inspect: {html.escape(Path(result['encoder']).name)}</h1>"
            f"<p>{result['clips']} {unit} of {html.escape(result['data'])} ({result['fit_clips']} to fit, "
            f"{result['heldout_clips']} held out{split}), {result['tokens_per_clip']} tokens each; {s['atoms']} atoms, "
            f"{s['active']} active per token; names from {', '.join(result['labels']) or 'no label column'}.</p>"
            f'<section id="summary"><h2>Summary</h2><table>{head}{body}</table></section>{_readout_section(result)}'
            f'<section id="atoms"><h2>Atoms</h2><p>Top held-out clips per atom; red: where it fires.</p>'
            f'<div class="cards">{"".join(cards)}</div></section></body></html>\n')
