"""``VideoClipDataset``: one item per video, ``clips_per_video`` uint8 clips each, decoded on CPU.

Item (a dict):
  video          uint8 ``[K, T, H, W, 3]`` (K clips, T frames, channels last, as decoded)
  frame_indices  int64 ``[K, T]``: which source frames the clip holds
  index          int: the item's position in the source (after any bad-file replacement)
  <label>        one entry per manifest label column (int64 or float32 scalars)

``collate_clips`` flattens clips into the batch: ``video`` ``[B*K, T, H, W, 3]`` and every other
field repeated per clip, so a batch always looks the same whatever K is.

Bad files (``bad_files="skip"``, the default): the first failure of a file logs one warning that
names the file and the reason, marks it in a table shared by all DataLoader workers, and the
item is replaced by the next good file (its own labels come with it, so no clip is ever
mislabelled). Marked files are never opened again. ``skip_count`` and ``skipped_files()`` expose
the table. If every file is bad, the dataset raises instead of spinning. ``bad_files="strict"``
raises ``DecodeError`` naming the file on the first failure.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset, get_worker_info

from data_pipelines.decode import ERROR_KINDS, DecodeError, open_video
from data_pipelines.sampling import ClipSampler
from data_pipelines.sources import VideoSource, load_source

log = logging.getLogger(__name__)


class VideoClipDataset(Dataset):
    """Clips from a manifest or folder of videos.

    Args:
        source: manifest CSV, folder of videos, or a ``VideoSource``.
        sampler: which frames make a clip (``ClipSampler``).
        bad_files: "skip" (log, count, replace) or "strict" (raise).
        short_side: resize at decode time so the shorter side is at most this (None: keep).
        backend: "pyav" (default) or "torchcodec".
        decode_threads: decoder threads per worker.
        error_detect: raise on bitstream damage instead of concealing it.
        vocab: class lists for categorical manifest columns (see ``read_manifest``).
    """

    def __init__(
        self,
        source: str | os.PathLike | VideoSource,
        sampler: ClipSampler | None = None,
        bad_files: Literal["skip", "strict"] = "skip",
        short_side: int | None = None,
        backend: str = "pyav",
        decode_threads: int = 1,
        error_detect: bool = True,
        vocab: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if bad_files not in ("skip", "strict"):
            raise ValueError(f"bad_files must be 'skip' or 'strict', got {bad_files!r}")
        self.source = load_source(source, vocab)
        self.sampler = sampler or ClipSampler()
        self.bad_files = bad_files
        self.short_side = short_side
        self.backend = backend
        self.decode_threads = decode_threads
        self.error_detect = error_detect
        # One byte per file, shared with DataLoader workers: 0 = fine, else an ERROR_KINDS index.
        self._status = mp.Array("b", len(self.source), lock=True)
        missing = [i for i, p in enumerate(self.source.paths) if not os.path.exists(p)]
        names = [self.source.paths[i] for i in missing[:5]]
        if len(missing) == len(self.source):
            raise FileNotFoundError(
                f"{self.source.origin}: none of its {len(missing)} files exist (first: {names[0]})"
            )
        if missing:
            if bad_files == "strict":
                raise FileNotFoundError(
                    f"{self.source.origin}: {len(missing)} files do not exist: {', '.join(names)}"
                )
            for i in missing:  # counted as skipped from the start; one warning for all of them
                self._status[i] = ERROR_KINDS.index("missing")
            log.warning(
                "skipping %d of %d files of %s that do not exist (missing): %s%s",
                len(missing), len(self.source), self.source.origin, ", ".join(names),
                " ..." if len(missing) > len(names) else "",
            )

    def __len__(self) -> int:
        return len(self.source)

    @property
    def label_names(self) -> list[str]:
        return list(self.source.labels)

    @property
    def skip_count(self) -> int:
        """Number of distinct files skipped so far, over all workers."""
        return sum(1 for s in self._status.get_obj() if s)

    def skipped_files(self) -> dict[str, str]:
        """Skipped file -> reason kind (one of ``ERROR_KINDS``)."""
        status = self._status.get_obj()
        return {self.source.paths[i]: ERROR_KINDS[s] for i, s in enumerate(status) if s}

    def load_clips(self, index: int, out: torch.Tensor | None = None) -> dict[str, Any]:
        """Decode the clips of file ``index``; raises ``DecodeError`` on any problem.

        ``out``: a uint8 ``[K, T, H, W, 3]`` tensor to decode into when the file's frames have
        that size (a slot of a batch buffer); otherwise the clip gets its own memory.
        """
        path = self.source.paths[index]
        with open_video(
            path,
            backend=self.backend,
            threads=self.decode_threads,
            short_side=self.short_side,
            error_detect=self.error_detect,
        ) as reader:
            indices = self.sampler(reader.num_frames, reader.fps, path=path)  # [K, T]
            k, t = indices.shape
            shape = (k, t, reader.height, reader.width, 3)
            target = out if out is not None and tuple(out.shape) == shape else None
            flat = None if target is None else target.view(k * t, *shape[2:]).numpy()
            frames = reader.get_frames(indices.reshape(-1), out=flat)  # [K*T, H, W, 3]
        item: dict[str, Any] = {
            "video": target if target is not None else torch.from_numpy(frames).view(shape),
            "frame_indices": torch.from_numpy(indices),
            "index": index,
        }
        for name, values in self.source.labels.items():
            item[name] = torch.as_tensor(values[index])
        return item

    def _mark_bad(self, index: int, err: DecodeError) -> None:
        with self._status.get_lock():
            first = self._status[index] == 0
            self._status[index] = ERROR_KINDS.index(err.kind)
        if first:
            log.warning("skipping bad video %s (%s: %s)", err.path, err.kind, err.detail)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._get(index)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A whole batch (the DataLoader calls this instead of ``__getitem__`` per index).

        Clips are decoded straight into one ``[B*K, T, H, W, 3]`` buffer, in shared memory when
        running in a worker, which ``collate_clips`` then passes on without copying: no
        per-clip allocation, one copy less, one shared-memory segment per batch.
        """
        items: list[dict[str, Any]] = []
        buffer: torch.Tensor | None = None
        k = self.sampler.clips_per_video
        for b, index in enumerate(indices):
            slot = None if buffer is None else buffer[b * k : (b + 1) * k]
            item = self._get(index, slot)
            video = item["video"]
            if buffer is None:  # sized from the first clip; files of other sizes get padded
                buffer = _empty_shared((len(indices) * k, *video.shape[1:]), torch.uint8)
                slot = buffer[:k]
            if video is not slot and video.shape == slot.shape:
                slot.copy_(video)  # the first item, or a replacement of a bad file
                item["video"] = slot
            items.append(item)
        return items

    def _get(self, index: int, out: torch.Tensor | None = None) -> dict[str, Any]:
        n = len(self)
        for attempt in range(n):
            i = (index + attempt) % n
            if self._status[i]:
                continue  # known bad: don't reopen it
            try:
                return self.load_clips(i, out)
            except DecodeError as err:
                if self.bad_files == "strict":
                    raise
                self._mark_bad(i, err)
            except Exception as err:  # a decoder bug must not kill a long run either
                wrapped = DecodeError(self.source.paths[i], "other", f"{type(err).__name__}: {err}")
                if self.bad_files == "strict":
                    raise wrapped from err
                self._mark_bad(i, wrapped)
        reasons = {}
        for path, kind in self.skipped_files().items():
            reasons.setdefault(kind, path)
        raise RuntimeError(
            f"{self.source.origin}: all {n} videos failed to decode; one file per reason: "
            + ", ".join(f"{k}: {p}" for k, p in reasons.items())
        )


def _empty_shared(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty tensor, in shared memory when built inside a DataLoader worker: the batch then
    crosses to the main process without another copy (as ``default_collate`` does)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = math.prod(shape)
    storage = torch.UntypedStorage._new_shared(numel * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


class ClipBatch(dict):
    """A collated batch: a dict of tensors that pickles compactly between processes.

    Small tensors (labels, indices) travel inline in the pickle instead of each getting its
    own shared-memory segment and file descriptor; ``video`` still goes by shared memory.
    """

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        small = {k: v.numpy() for k, v in self.items() if k != "video"}
        return _rebuild_batch, (self["video"], small)


def _rebuild_batch(video: torch.Tensor, small: dict[str, Any]) -> ClipBatch:
    batch = ClipBatch(video=video)
    batch.update({k: torch.from_numpy(v) for k, v in small.items()})
    return batch


def _as_one_buffer(videos: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """The batch tensor, if ``videos`` are consecutive slots of one buffer (``__getitems__``)."""
    first = videos[0]
    storage = first.untyped_storage()
    step = first.numel()
    for b, v in enumerate(videos):
        if (
            v.untyped_storage().data_ptr() != storage.data_ptr()
            or v.storage_offset() != first.storage_offset() + b * step
            or v.shape != first.shape
            or not v.is_contiguous()
        ):
            return None
    shape = (len(videos) * first.shape[0], *first.shape[1:])
    if first.storage_offset() != 0 or storage.nbytes() != math.prod(shape) * first.element_size():
        return None
    return torch.empty(0, dtype=first.dtype).set_(storage, 0, shape)


def collate_clips(items: Sequence[Mapping[str, Any]]) -> ClipBatch:
    """Stack items and flatten clips into the batch.

    ``video`` becomes uint8 ``[B*K, T, H, W, 3]``. Sources of different sizes are padded
    (bottom/right, zeros) to the largest H and W in the batch; ``frame_size`` ``[B*K, 2]`` holds
    each clip's true (H, W), and the device transforms only crop inside it.
    """
    if not items:
        raise ValueError("cannot collate an empty list of items")
    k = items[0]["video"].shape[0]
    sizes = torch.as_tensor([tuple(it["video"].shape[2:4]) for it in items])  # [B, 2]
    h, w = (int(v) for v in sizes.max(0).values)
    video = _as_one_buffer([it["video"] for it in items])
    if video is None:
        t = items[0]["video"].shape[1]
        video = _empty_shared((len(items) * k, t, h, w, 3), torch.uint8)
        if bool((sizes == sizes[0]).all()):
            torch.cat([it["video"] for it in items], out=video)
        else:
            video.zero_()
            for b, it in enumerate(items):
                hb, wb = it["video"].shape[2:4]
                video[b * k : (b + 1) * k, :, :hb, :wb] = it["video"]
    batch = ClipBatch(
        video=video,
        frame_size=sizes.repeat_interleave(k, 0),
        frame_indices=torch.cat([it["frame_indices"] for it in items]),
        index=torch.as_tensor([it["index"] for it in items]).repeat_interleave(k),
    )
    for name in items[0]:
        if name not in batch:
            batch[name] = torch.stack([torch.as_tensor(it[name]) for it in items]).repeat_interleave(k)
    return batch
