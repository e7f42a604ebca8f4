"""The one batcher of the example-based tasks, and padding.

:class:`Batches` shuffles a list of examples each epoch (seeded by the epoch, so that a resumed
run sees the same batches) and collates each batch when it is reached; ``len()`` counts the
batches without collating anything. The language model batches streams instead
(:class:`rnnlab.tasks.lm.data.StreamBatches`); both are what the trainer calls ``batches``.

Shapes: N batch, T the longest sequence of a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

import torch
from torch import Tensor

from rnnlab.errors import RnnlabError

T = TypeVar("T")


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad id sequences into a batch.

    Returns:
        ``(ids (N, T) long, lengths (N,) long)`` with T the longest length.
    """
    if not seqs:
        raise RnnlabError("cannot make a batch of no sequences")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    if int(lengths.min()) < 1:
        raise RnnlabError("cannot batch an empty sequence")
    out = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, lengths


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of ``size`` (the last may be shorter)."""
    for k in range(0, len(items), size):
        yield list(items[k : k + size])


class Batches(Generic[T]):
    """Shuffled, collated batches of ``items`` for the trainer: ``batches(epoch)`` iterates.

    Args:
        items: the examples.
        batch_size: examples per batch (the last batch of an epoch may be smaller).
        collate: turns a list of examples into the model's inputs (a tuple of tensors).
        seed: with the epoch, seeds the shuffle; None keeps the order (evaluation).

    Example::

        >>> batches = Batches(list(range(10)), 4, lambda xs: (torch.tensor(xs),), seed=0)
        >>> len(batches), [len(b[0]) for b in batches(0)]
        (3, [4, 4, 2])
    """

    def __init__(
        self,
        items: Sequence[T],
        batch_size: int,
        collate: Callable[[list[T]], tuple],
        seed: int | None = 0,
    ) -> None:
        if batch_size < 1:
            raise RnnlabError(f"batch size must be >= 1, got {batch_size}")
        self.items = items
        self.batch_size = batch_size
        self.collate = collate
        self.seed = seed

    def __len__(self) -> int:
        return -(-len(self.items) // self.batch_size)

    def order(self, epoch: int) -> list[int]:
        if self.seed is None:
            return list(range(len(self.items)))
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(len(self.items), generator=g).tolist()

    def __call__(self, epoch: int = 0) -> Iterator[tuple]:
        order = self.order(epoch)
        for k in range(0, len(order), self.batch_size):
            yield self.collate([self.items[i] for i in order[k : k + self.batch_size]])

    def __iter__(self) -> Iterator[tuple]:
        return self(0)

    def shard(self, rank: int, world: int) -> ShardOfBatches[T]:
        """Rank ``rank``'s part of every batch, for ``world`` processes training together
        (a distributed sampler that keeps this run's global batches)."""
        return ShardOfBatches(self, rank, world)


class ShardOfBatches(Generic[T]):
    """One rank's part of each batch of :class:`Batches`: the same shuffle on every rank (seeded
    by the epoch), each global batch split in ``world`` contiguous parts as even as possible,
    and only this rank's examples collated. A last batch with fewer examples than processes is
    skipped by every rank.
    """

    def __init__(self, batches: Batches[T], rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise RnnlabError(f"rank {rank} is not in [0, {world})")
        if batches.batch_size < world:
            raise RnnlabError(
                f"--batch {batches.batch_size} is smaller than the {world} processes: each "
                "needs at least one example of every batch"
            )
        self.batches, self.rank, self.world = batches, rank, world

    def __len__(self) -> int:
        full, rest = divmod(len(self.batches.items), self.batches.batch_size)
        return full + (1 if rest >= self.world else 0)

    def __call__(self, epoch: int = 0) -> Iterator[tuple]:
        b = self.batches
        order = b.order(epoch)
        for k in range(0, len(order), b.batch_size):
            batch = order[k : k + b.batch_size]
            if len(batch) < self.world:
                continue
            n = len(batch)
            mine = batch[self.rank * n // self.world : (self.rank + 1) * n // self.world]
            yield b.collate([b.items[i] for i in mine])


__all__ = ["Batches", "ShardOfBatches", "chunks", "pad_batch"]
