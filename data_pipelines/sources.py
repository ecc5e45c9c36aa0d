"""Where videos come from: a manifest CSV or a plain folder of video files.

A manifest is a CSV with a ``path`` column (relative to the manifest's folder, or absolute)
and one column per label. Label columns whose every value is an integer become int64 labels,
numeric ones float32, anything else is a category mapped to an integer through a sorted
vocabulary (``VideoSource.vocab``). A folder is searched recursively for ``VIDEO_EXTENSIONS``
and has no labels.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_pipelines.decoding import VIDEO_EXTENSIONS


@dataclass
class VideoSource:
    """A list of video paths plus aligned label arrays."""

    paths: list[str]
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # column -> [N]
    vocab: dict[str, list[str]] = field(default_factory=dict)  # categorical column -> classes
    origin: str = ""

    def __len__(self) -> int:
        return len(self.paths)


def _parse_column(name: str, values: list[str], vocab: Sequence[str] | None, origin: str):
    try:
        return np.asarray([int(v) for v in values], np.int64), None
    except ValueError:
        pass
    try:
        return np.asarray([float(v) if v != "" else np.nan for v in values], np.float32), None
    except ValueError:
        pass
    classes = list(vocab) if vocab is not None else sorted(set(values))
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(values) - lookup.keys())
    if unknown:
        raise ValueError(
            f"{origin}: column {name!r} has values {unknown[:5]} missing from its vocabulary "
            f"{classes[:10]}"
        )
    return np.asarray([lookup[v] for v in values], np.int64), classes


def read_manifest(
    manifest: str | os.PathLike, vocab: Mapping[str, Sequence[str]] | None = None
) -> VideoSource:
    """Read a manifest CSV. ``vocab`` fixes the class lists of categorical columns (so that a
    validation manifest uses the training manifest's class indices)."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "path" not in columns:
            raise ValueError(
                f"{manifest}: manifest needs a 'path' column; found columns {columns}"
            )
        rows = list(reader)
    if not rows:
        raise ValueError(f"{manifest}: manifest has no rows")
    root = manifest.parent
    paths = [str(root / r["path"]) if not os.path.isabs(r["path"]) else r["path"] for r in rows]
    labels: dict[str, np.ndarray] = {}
    vocabs: dict[str, list[str]] = {}
    for col in columns:
        if col == "path":
            continue
        values = [(r[col] or "").strip() for r in rows]
        arr, classes = _parse_column(col, values, (vocab or {}).get(col), str(manifest))
        labels[col] = arr
        if classes is not None:
            vocabs[col] = classes
    return VideoSource(paths, labels, vocabs, origin=str(manifest))


def scan_folder(folder: str | os.PathLike) -> VideoSource:
    """All files under ``folder`` with a video suffix, sorted, without labels."""
    folder = Path(folder)
    paths = sorted(
        str(p) for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and not p.is_dir()
    )
    if not paths:
        raise ValueError(
            f"{folder}: no video files found (looked for {', '.join(VIDEO_EXTENSIONS)})"
        )
    return VideoSource(paths, origin=str(folder))


def load_source(
    source: str | os.PathLike | VideoSource, vocab: Mapping[str, Sequence[str]] | None = None
) -> VideoSource:
    """A manifest CSV, a folder of videos (a ``manifest.csv`` inside is used if present), or
    an existing ``VideoSource``."""
    if isinstance(source, VideoSource):
        return source
    p = Path(source)
    if p.is_dir():
        return read_manifest(p / "manifest.csv", vocab) if (p / "manifest.csv").is_file() else scan_folder(p)
    if p.is_file():
        return read_manifest(p, vocab)
    raise FileNotFoundError(f"data source not found: {p} (expected a manifest CSV or a folder)")
