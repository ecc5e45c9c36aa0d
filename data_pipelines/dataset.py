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
import multiprocessing as mp
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from data_pipelines.batching import SLOT_KEY, BufferRing, ClipBatch, collate_clips, empty_shared
from data_pipelines.decoding import ERROR_KINDS, DecodeError, open_video
from data_pipelines.resumable import mix_seed
from data_pipelines.sampling import ClipSampler
from data_pipelines.sources import VideoSource, load_source

log = logging.getLogger(__name__)


class NoUsableData(RuntimeError):
    """Every file of a source is bad: training cannot go on (the message names one per reason)."""


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
        seed: with ``(index, epoch)`` keys (``ResumableSampler(keyed=True)``), random clip starts
            are drawn from ``mix_seed(seed, epoch, index)``: the same on any worker, rank or
            restart. Plain integer indices use the worker's global generator.
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
        seed: int = 0,
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
        self.seed = seed
        self._ring: BufferRing | None = None
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

    def load_clips(
        self, index: int, out: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Any]:
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
            indices = self.sampler(reader.num_frames, reader.fps, generator=generator, path=path)  # [K, T]
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

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        return self._get(index)

    def __getitems__(self, indices: Sequence[int | tuple[int, int]]) -> list[dict[str, Any]]:
        """A whole batch (the DataLoader calls this instead of ``__getitem__`` per index).

        Clips are decoded straight into one ``[B*K, T, H, W, 3]`` buffer, in shared memory when
        running in a worker (from the ``BufferRing`` when ``reuse_buffers`` is on), which
        ``collate_clips`` then passes on without copying: no per-clip allocation, one copy
        less, one shared-memory segment per batch.
        """
        items: list[dict[str, Any]] = []
        buffer: torch.Tensor | None = None
        slot = -1
        k = self.sampler.clips_per_video
        for b, index in enumerate(indices):
            part = None if buffer is None else buffer[b * k : (b + 1) * k]
            item = self._get(index, part)
            video = item["video"]
            if buffer is None:  # sized from the first clip; files of other sizes get padded
                shape = (len(indices) * k, *video.shape[1:])
                if self._ring is not None:
                    buffer, slot = self._ring.acquire(shape)
                else:
                    buffer = empty_shared(shape)
                part = buffer[:k]
            if video is not part and video.shape == part.shape:
                part.copy_(video)  # the first item, or a replacement of a bad file
                item["video"] = part
            items.append(item)
        if slot >= 0:
            if all(it["video"].data_ptr() == buffer[b * k].data_ptr() for b, it in enumerate(items)):
                for it in items:
                    it[SLOT_KEY] = slot
            else:  # mixed sizes: collate copies the batch out before this worker's next batch
                self._ring.release(slot)
        return items

    def reuse_buffers(self, slots: int) -> BufferRing:
        """Let DataLoader workers reuse ``slots`` batch buffers each (call before creating the
        DataLoader). Batches then carry ``buffer_slot``; pass each to ``release`` once its
        video has been read, or its buffer is simply not reused."""
        self._ring = BufferRing(slots)
        return self._ring

    def release(self, batch: Mapping[str, Any]) -> None:
        """Hand a batch's buffer back to its worker (no-op for batches without ``buffer_slot``)."""
        if self._ring is not None and SLOT_KEY in batch:
            self._ring.release(int(batch[SLOT_KEY]))

    def _get(self, key: int | tuple[int, int], out: torch.Tensor | None = None) -> dict[str, Any]:
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple | list) else (int(key), None)
        n = len(self)
        for attempt in range(n):
            i = (index + attempt) % n
            if self._status[i]:
                continue  # known bad: don't reopen it
            gen = None if epoch is None else torch.Generator().manual_seed(mix_seed(self.seed, epoch, i))
            try:
                return self.load_clips(i, out, gen)
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
        raise NoUsableData(
            f"{self.source.origin}: all {n} videos failed to decode; one file per reason: "
            + ", ".join(f"{k}: {p}" for k, p in reasons.items())
        )


__all__ = ["ClipBatch", "NoUsableData", "VideoClipDataset", "collate_clips"]
