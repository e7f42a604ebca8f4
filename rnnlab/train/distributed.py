"""Data-parallel training on PyTorch's own engine: torch.distributed, launched by ``torchrun``.

``torchrun --nproc_per_node=N -m rnnlab train TASK ...`` starts N processes ("ranks"); each finds
the launch in its environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, set by torchrun) and
:func:`init` joins them into one process group: backend ``gloo`` on the CPU, ``nccl`` on CUDA
(each rank on ``cuda:LOCAL_RANK``). Then, for every task, through the shared trainer:

* **One global batch.** ``--batch B`` is the batch of the whole run: each rank trains on its
  part of every batch (the language model: its B/N of the parallel streams; the other tasks:
  its part of each shuffled batch of examples, a distributed sampler that keeps the global
  batches of a 1-process run), so N processes follow the loss curve of one process with the
  same ``--batch`` and seed (see docs/SCALING.md for the tolerance).
* **Gradients averaged by DistributedDataParallel**, each rank's loss weighted by its share of
  the global batch's tokens, so the update is the one of the whole batch's mean loss even when
  the ranks' parts hold different numbers of tokens (padded sequences of different lengths).
* **Validation sharded and reduced**: each rank scores its part of the validation data
  (:func:`shard` inside :func:`evaluation`) and the sums and lists are combined
  (:func:`sum_all`, :func:`gather_list`), so every rank gets the same metrics and takes the
  same early-stopping decision.
* **Rank 0 alone reads and writes the run directory**: checkpoints (holding every rank's random
  generators and carried state), logs, plots, the progress bar, the test report. The other
  ranks get what they need from it over the process group (:func:`on_main`), and an error on
  rank 0 (a full disk) stops every rank with the same one-line message.
* A rank that dies makes the others stop with a one-line message (the process group reports
  the lost peer, torchrun stops the rest) instead of waiting forever; a collective that waits
  longer than ``RNNLAB_DIST_TIMEOUT`` seconds (default 600) fails.

Without a launch (``WORLD_SIZE`` unset or 1) nothing here does anything: every function is the
one-process identity.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError

T = TypeVar("T")

#: seconds a collective may wait for the other ranks before it fails (env RNNLAB_DIST_TIMEOUT)
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Group:
    """The process group this process trains in."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (its parameters
        are broadcast from rank 0; gradients are averaged during ``backward``)."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)


_group: Group | None = None
_evaluating = False


def launched() -> bool:
    """Whether this process was started as one of several ranks (``WORLD_SIZE`` > 1)."""
    return _env_int("WORLD_SIZE", 1) > 1


def current() -> Group | None:
    """The group joined by :func:`init`; None in a one-process run."""
    return _group


def init(device: str = "auto") -> Group | None:
    """Join the process group of a torchrun launch (None without one).

    Args:
        device: ``--device``: ``auto`` (CUDA when present), ``cpu`` or ``cuda``; with CUDA each
            rank takes ``cuda:LOCAL_RANK``.

    Raises:
        RnnlabError: a device that cannot be used this way, a broken launch environment, or
            ranks that cannot reach each other.
    """
    global _group
    if not launched():
        return None
    if _group is not None:
        return _group
    import torch.distributed as dist

    world, rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", -1)
    local_rank = _env_int("LOCAL_RANK", rank)
    if not 0 <= rank < world:
        raise RnnlabError(f"RANK={os.environ.get('RANK')!r} is not in [0, WORLD_SIZE={world})")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda:"):
        raise RnnlabError(
            f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK; give "
            "--device cuda (or choose the GPUs with CUDA_VISIBLE_DEVICES)"
        )
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RnnlabError("--device cuda: CUDA is not available on this machine")
        if local_rank >= torch.cuda.device_count():
            raise RnnlabError(
                f"process {rank} (local rank {local_rank}) has no GPU: this machine has "
                f"{torch.cuda.device_count()}; start at most that many processes per node"
            )
        where = torch.device("cuda", local_rank)
        torch.cuda.set_device(where)
        backend = "nccl"
    elif device == "cpu":
        where, backend = torch.device("cpu"), "gloo"
    else:
        raise RnnlabError(f"unknown device {device!r}: expected auto, cpu or cuda")
    timeout = timedelta(seconds=_env_float("RNNLAB_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    try:
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout)
    except (RuntimeError, ValueError) as exc:
        raise RnnlabError(f"cannot join the {world} processes of the run: {_short(exc)}") from None
    _group = Group(rank, world, local_rank, where)
    signal.signal(signal.SIGTERM, _terminated)
    return _group


def close() -> None:
    """Leave the process group (at the end of a run)."""
    global _group
    if _group is None:
        return
    import torch.distributed as dist

    with contextlib.suppress(Exception):
        dist.destroy_process_group()
    _group = None
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _terminated(signum: int, frame: Any) -> None:
    rank = _group.rank if _group is not None else "?"
    raise RnnlabError(
        f"process {rank} was stopped (SIGTERM): another process of the run failed or the launch "
        "was cancelled; the last checkpoint is kept"
    )


def lost_peer(exc: BaseException) -> RnnlabError:
    """The one-line error for a collective that failed (a rank died, the network broke)."""
    rank = _group.rank if _group is not None else "?"
    return RnnlabError(
        f"process {rank} lost contact with the other processes of the run (one of them died or "
        f"timed out: {_short(exc)}); the last checkpoint is kept"
    )


def is_collective_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed (torch's DistError, or gloo's and nccl's
    errors raised as plain RuntimeErrors), not a bug of the program."""
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        word in text for word in ("gloo", "Gloo", "NCCL", "nccl", "ProcessGroup", "Connection")
    )


# -- collectives (identities in a one-process run) ------------------------------------------------
def sum_all(values: Sequence[float]) -> list[float]:
    """The element-wise sum of ``values`` over all ranks (float64)."""
    if _group is None:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64, device=_group.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(values: Sequence[float]) -> list[float]:
    """Rank 0's ``values`` on every rank (float64)."""
    if _group is None:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64, device=_group.device)
    dist.broadcast(t, 0)
    return t.tolist()


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank: plain Python values, dataclasses and CPU tensors (sent
    as bytes: torch's own object collectives cannot unpickle tensors on the CPU)."""
    if _group is None:
        return obj
    import torch.distributed as dist

    box = [_pack(obj)]
    dist.broadcast_object_list(box, 0, device=_group.device)
    return _unpack(box[0])


def gather_objects(obj: T) -> list[T] | None:
    """Every rank's ``obj`` (as for :func:`broadcast_object`) on rank 0, in rank order (None
    on the other ranks)."""
    if _group is None:
        return [obj]
    import torch.distributed as dist

    everything: list[Any] = [None] * _group.world
    dist.all_gather_object(everything, _pack(obj))  # gather_object: not on nccl
    return [_unpack(o) for o in everything] if _group.main else None


class _Packed:
    """A tensor as bytes, for the object collectives."""

    def __init__(self, t: Tensor) -> None:
        t = t.detach().to("cpu").contiguous()
        self.dtype, self.shape = t.dtype, tuple(t.shape)
        self.data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""

    def tensor(self) -> Tensor:
        if not self.data:
            return torch.empty(self.shape, dtype=self.dtype)
        raw = torch.frombuffer(bytearray(self.data), dtype=torch.uint8)
        return raw.view(self.dtype).reshape(self.shape)


def _pack(obj: Any) -> Any:
    import dataclasses

    if isinstance(obj, Tensor):
        return _Packed(obj)
    if isinstance(obj, dict):
        return {k: _pack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pack(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: _pack(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return dataclasses.replace(obj, **changes)
    return obj


def _unpack(obj: Any) -> Any:
    import dataclasses

    if isinstance(obj, _Packed):
        return obj.tensor()
    if isinstance(obj, dict):
        return {k: _unpack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unpack(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: _unpack(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return dataclasses.replace(obj, **changes)
    return obj


def on_main(function: Callable[[], T]) -> T:
    """``function()`` run on rank 0 only, its result (or its one-line error) on every rank.

    What only rank 0 may do (read or write the run directory) goes through here, so that an
    error there (a full disk, a damaged checkpoint) stops every rank with the same message.
    """
    if _group is None:
        return function()
    outcome: tuple[str, Any] = ("", None)
    if _group.main:
        try:
            outcome = ("ok", function())
        except (RnnlabError, OSError) as exc:
            outcome = ("error", " ".join(str(exc).split()) or type(exc).__name__)
    outcome = broadcast_object(outcome)
    if outcome[0] == "error":
        raise RnnlabError(outcome[1])
    return outcome[1]


# -- sharding --------------------------------------------------------------------------------------
def part(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous part of ``n`` items split as evenly as possible."""
    return slice(rank * n // world, (rank + 1) * n // world)


@contextlib.contextmanager
def evaluation() -> Iterator[None]:
    """Inside: :func:`shard` gives each rank its part of the data being evaluated, and
    :func:`sum_all` / :func:`gather_list` combine the results (the trainer's validation)."""
    global _evaluating
    before, _evaluating = _evaluating, _group is not None
    try:
        yield
    finally:
        _evaluating = before


def sharding() -> tuple[int, int]:
    """``(rank, world)`` of the evaluation in progress; ``(0, 1)`` outside :func:`evaluation`."""
    if _evaluating and _group is not None:
        return _group.rank, _group.world
    return 0, 1


def shard(items: Sequence[T]) -> Sequence[T]:
    """This rank's contiguous part of ``items`` during :func:`evaluation` (else ``items``)."""
    rank, world = sharding()
    return items if world == 1 else items[part(len(items), rank, world)]


def reduce_sums(values: Sequence[float]) -> list[float]:
    """:func:`sum_all` during :func:`evaluation`, else ``values``."""
    return sum_all(values) if sharding()[1] > 1 else list(values)


def gather_list(items: list[T]) -> list[T]:
    """During :func:`evaluation`: every rank's ``items`` concatenated in rank order (the order
    of the unsharded data), on every rank; else ``items``."""
    if sharding()[1] == 1:
        return items
    import torch.distributed as dist

    assert _group is not None
    parts: list[Any] = [None] * _group.world
    dist.all_gather_object(parts, items)
    return [x for p in parts for x in p]


def slice_batch(batch: Any, where: slice) -> Any:
    """Rows ``where`` of every tensor of ``batch`` (tuples, lists, dicts; other values kept)."""
    if isinstance(batch, Tensor):
        return batch[where] if batch.dim() else batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(slice_batch(b, where) for b in batch)
    if isinstance(batch, dict):
        return {k: slice_batch(v, where) for k, v in batch.items()}
    return batch


def batch_rows(batch: Any) -> int | None:
    """The number of rows of ``batch``'s first tensor (None: no tensor)."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    values = batch.values() if isinstance(batch, dict) else batch
    if isinstance(values, (tuple, list)) or isinstance(batch, dict):
        for b in values:
            rows = batch_rows(b)
            if rows is not None:
                return rows
    return None


class ShardedBatches:
    """Any task's training batches, each cut into this rank's rows (the generic sampler for a
    task whose batches have no ``shard`` method of their own).

    A global batch with fewer rows than ranks is skipped by every rank (it cannot be shared).
    """

    def __init__(self, batches: Any, rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world

    def __len__(self) -> int:
        return len(self.batches)

    def __call__(self, epoch: int) -> Iterator[Any]:
        for batch in self.batches(epoch):
            rows = batch_rows(batch)
            if rows is None:
                raise RnnlabError("a batch with no tensor cannot be shared between processes")
            if rows < self.world:
                continue
            yield slice_batch(batch, part(rows, self.rank, self.world))


def shard_batches(batches: Any, group: Group | None) -> Any:
    """The training batches of this rank: ``batches.shard(rank, world)`` if the batches know how
    to shard themselves (reading only this rank's examples), else :class:`ShardedBatches`."""
    if group is None:
        return batches
    if hasattr(batches, "shard"):
        return batches.shard(group.rank, group.world)
    return ShardedBatches(batches, group.rank, group.world)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise RnnlabError(f"environment variable {name}={value!r} is not an integer") from None


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        result = float(value)
    except ValueError:
        result = -1.0
    if not result > 0:
        raise RnnlabError(f"environment variable {name}={value!r} must be a positive number")
    return result


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def describe(group: Group | None) -> str:
    """``" on 2 processes (gloo)"`` for the run's first line; empty without a group."""
    if group is None:
        return ""
    backend = "nccl" if group.device.type == "cuda" else "gloo"
    return f" on {group.world} processes ({backend})"


def print_main(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only (always in a one-process run)."""
    if _group is None or _group.main:
        print(*args, **kwargs)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Group",
    "ShardedBatches",
    "batch_rows",
    "broadcast",
    "broadcast_object",
    "close",
    "current",
    "describe",
    "evaluation",
    "gather_list",
    "gather_objects",
    "init",
    "is_collective_failure",
    "launched",
    "lost_peer",
    "on_main",
    "part",
    "print_main",
    "reduce_sums",
    "shard",
    "shard_batches",
    "sharding",
    "slice_batch",
    "sum_all",
]
