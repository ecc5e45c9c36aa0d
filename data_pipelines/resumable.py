"""Training data order that survives a restart: epoch-seeded shards that resume mid-epoch.

``ResumableSampler`` is a ``DistributedSampler`` (so Lightning leaves it in place instead of
injecting its own): epoch ``e`` is the permutation drawn with seed ``seed + e``, padded to a
multiple of the world size and dealt round-robin to the ranks. Rank ``r`` of ``W`` therefore
sees ``perm[r::W]``, and the union of the ranks' ``k``-th batches is the ``k``-th slice of
``W * batch_size`` indices of the permutation: the global batch is the same at any world size.

``resume(epoch, consumed)`` makes the next pass over ``epoch`` start after the first
``consumed`` indices of this rank's shard. ``TrainProgress`` counts the batches the training
loop has actually taken (not the ones DataLoader workers prefetched) and is saved in the
data module's checkpoint state, so a run killed mid-epoch continues with exactly the batches
it had not seen yet.

With ``keyed=True`` the sampler yields ``(index, epoch)`` pairs; datasets seed any per-item
randomness (the clip start) from ``mix_seed(seed, epoch, index)``, which makes an item the
same whichever worker, rank or restart decodes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DistributedSampler


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (SplitMix64 steps): nearby inputs give unrelated seeds."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 29
    return x & 0x7FFFFFFFFFFFFFFF


class ResumableSampler(DistributedSampler):
    """Epoch-seeded, rank-sharded sample order that can resume part-way through an epoch.

    Args:
        size: number of items in the dataset.
        num_replicas: world size (processes sharing the data).
        rank: this process's global rank.
        shuffle: a new permutation per epoch (seed + epoch); False keeps file order.
        seed: permutation seed (the same on every rank).
        keyed: yield ``(index, epoch)`` instead of ``index``.
    """

    def __init__(
        self, size: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0, keyed: bool = False
    ) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.keyed = keyed
        self._resume: tuple[int, int] | None = None

    def resume(self, epoch: int, consumed: int, batch_size: int = 1, drop_last: bool = False) -> None:
        """Make the next pass start ``consumed`` indices into this rank's shard of ``epoch`` (or at
        the start of ``epoch + 1`` if that shard was finished).

        The pass after a restore may begin before the trainer calls ``set_epoch`` (Lightning
        creates the first iterator while setting up the data), so the epoch comes from here.
        """
        remaining = self.num_samples - int(consumed)
        finished = remaining <= 0 or (drop_last and remaining < batch_size)
        self._resume = (int(epoch) + 1, 0) if finished else (int(epoch), int(consumed))

    def __iter__(self) -> Iterator[Any]:
        skip = 0
        if self._resume is not None:
            epoch, skip = self._resume
            self._resume = None
            self.set_epoch(max(epoch, 0))
        indices = list(super().__iter__())[skip:]
        if self.keyed:
            return iter([(i, self.epoch) for i in indices])
        return iter(indices)


class TrainProgress:
    """Training batches the loop has taken in the current epoch (checkpointed)."""

    def __init__(self) -> None:
        self.epoch = -1
        self.batches = 0
        self.pending: tuple[int, int] | None = None  # restored (epoch, batches), for the next sampler

    def step(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.batches = epoch, 0
        self.batches += 1

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batches = int(state["epoch"]), int(state["batches"])
        self.pending = (self.epoch, self.batches)

    def sampler(
        self, size: int, trainer: Any, shuffle: bool, seed: int, batch_size: int, drop_last: bool, keyed: bool
    ) -> ResumableSampler:
        """The training sampler for this process, resuming where a restored checkpoint left off."""
        world = int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1
        rank = int(getattr(trainer, "global_rank", 0) or 0) if trainer is not None else 0
        sampler = ResumableSampler(size, world, rank, shuffle, seed, keyed)
        if self.pending is not None:
            epoch, batches = self.pending
            sampler.resume(epoch, batches * batch_size, batch_size, drop_last)
            self.pending = None
        return sampler
