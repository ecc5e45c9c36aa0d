"""``jepa embed``: a frozen encoder's features of every video in a manifest, written for your own code.

    jepa embed --encoder outputs/quickstart/encoder.pt --data data/moving_shapes/val.csv --out feats.npy

writes ``feats.npy`` (float32 ``[videos, D]``: tokens averaged over each clip and over the
``--views`` clips of a video; with ``--tokens``, float16 ``[videos, views * crops, N, D]``) and
``feats.csv`` (one row per array row: ``row``, the video's ``path`` and its manifest labels), so
``np.load`` plus the CSV is all a user needs. The clips are the ones ``jepa probe`` reads (the
encoder's frames, frame step, crop and normalisation), and the features come from the same
extraction (and cache) as the probes. A video that cannot be decoded is left out of both files
and named in a warning; the rows stay aligned.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from jepa.clips import clip_spec_for
from jepa.hub import encoder_meta, latest_checkpoint, load_encoder
from jepa.probe.features import FeatureCache, extract_features, probe_dataset

log = logging.getLogger(__name__)


def embed(
    encoder: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    tokens: bool = False,
    views: int = 2,
    crops: int = 1,
    layer: int = -1,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    num_workers: int = 2,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the array and its index CSV; returns ``{"array", "index", "shape", "skipped"}``."""
    array = Path(out)
    if array.suffix != ".npy":
        raise ValueError(f"--out {out}: the features are written as a NumPy array; give a path ending in .npy")
    index_csv = array.with_suffix(".csv")
    if Path(data).is_file() and index_csv.resolve() == Path(data).resolve():  # not even with --overwrite
        raise ValueError(f"--out {out} would write its index over the manifest it reads ({data}); choose another --out")
    for p in (array, index_csv):
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} already exists; pass --overwrite to replace it, or choose another --out")
    path = latest_checkpoint(encoder)
    enc = load_encoder(path)
    depth = len(enc.blocks.blocks)
    if not -depth <= layer < depth:
        raise ValueError(f"--layer {layer} is out of range for this {depth}-block encoder; use 0..{depth - 1} "
                         f"(or -1 for the final normalised output)")
    spec = clip_spec_for(enc, encoder_meta(path), views, crops, None, 1.0)
    dataset = probe_dataset(data, spec)
    cache = FeatureCache(cache_dir) if cache_dir else None
    feats = extract_features({"encoder": enc}, dataset, spec, cache=cache, keep_tokens=tokens, layer=layer,
                             batch_size=batch_size, num_workers=num_workers, device=device, desc="embed",
                             progress=progress)["encoder"]
    # A bad video is replaced by the next good one while decoding: keep each video once, in order.
    index = feats.index.tolist()
    seen: set[int] = set()
    rows = []
    for r, i in enumerate(index):
        if i not in seen:
            seen.add(i)
            rows.append(r)
    skipped = sorted(set(range(len(dataset))) - seen)
    if skipped:
        log.warning("%s: %d videos could not be decoded and are left out: %s", data, len(skipped),
                    [dataset.source.paths[i] for i in skipped[:5]])
    values = (feats.tokens[rows] if tokens and feats.tokens is not None else feats.pooled[rows].mean(1)).numpy()
    array.parent.mkdir(parents=True, exist_ok=True)
    np.save(array, values)
    names = dataset.label_names
    vocab = dataset.source.vocab
    with open(index_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "path", *names])
        for k, r in enumerate(rows):
            labels = []
            for n in names:
                v = feats.labels[n][r].item()
                labels.append(vocab[n][int(v)] if n in vocab else v)
            writer.writerow([k, dataset.source.paths[index[r]], *labels])
    return {"array": str(array), "index": str(index_csv), "shape": tuple(values.shape), "skipped": len(skipped)}
