"""Many seeds at once: S independent small models trained as one block-diagonal model.

The synthetic experiments train the same tiny model (a :class:`~rnnlab.core.layers.Recurrent` and a
linear read-out) from 20 or more seeds. One model of hidden size S*H whose weights are
block-diagonal (seed s owns units ``s*H .. s*H+H-1`` of every gate block and only reads its own
inputs) computes exactly the S small models side by side: every cell's recurrence is matrix
products plus element-wise gates, and a zero off-block weight stays zero because its gradient
is masked to zero (Adam and SGD then never move it). It runs through the same ``Recurrent``
(and therefore the same fast kernels) as a single model, with S times fewer steps of Python.

Not for cells with layer norm (its statistics would mix the seeds), and a non-finite value in
one seed reaches the others (``0 * inf``), so the training loop skips such steps for all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rnnlab.analysis.experiments.tasks import Task
from rnnlab.core.cells import CellFactory
from rnnlab.core.layers import Recurrent


class SequenceModel(nn.Module):
    """A one-layer ``Recurrent`` with a linear read-out of the last step or of every step.

    Shape: x (N, L, D) -> (N, 1, O) with ``readout="last"``, (N, L, O) with ``"all"``.
    """

    def __init__(
        self,
        cell: CellFactory,
        input_size: int,
        hidden_size: int,
        output_size: int,
        readout: str = "last",
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if readout not in ("last", "all"):
            raise ValueError(f"readout must be 'last' or 'all', got {readout!r}")
        self.readout = readout
        self.rnn = Recurrent(cell, input_size, hidden_size, device=device)
        self.head = nn.Linear(hidden_size, output_size, device=device)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1:] if self.readout == "last" else out)


def sequence_model_parameters(
    cell: CellFactory, input_size: int, hidden_size: int, output_size: int
) -> int:
    """Parameters of a :class:`SequenceModel` (cell and read-out), counted without allocating."""
    from rnnlab.tasks.runner import count_parameters

    return count_parameters(
        SequenceModel(cell, input_size, hidden_size, output_size, device="meta")
    )


def hidden_for_budget(
    cell: CellFactory, input_size: int, output_size: int, budget: int, max_hidden: int = 4096
) -> int:
    """The hidden size whose :class:`SequenceModel` has the parameter count closest to
    ``budget`` (the smaller one on a tie): equal parameter budgets across cells."""
    return closest_size(
        lambda H: sequence_model_parameters(cell, input_size, H, output_size), budget, max_hidden
    )


def closest_size(count: Callable[[int], int], budget: int, max_hidden: int = 4096) -> int:
    """The H in [1, max_hidden] whose ``count(H)`` (increasing in H) is closest to ``budget``."""
    if budget < count(1):
        raise ValueError(f"budget {budget} is below the smallest model of this cell (H = 1)")
    lo, hi = 1, max_hidden  # the last H with count(H) <= budget
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    below, above = count(lo), count(lo + 1)
    return lo + 1 if above - budget < budget - below else lo


def _units(name: str, dim: int, D: int, H: int, O: int) -> int:
    """The width of one seed's block along ``dim`` of parameter ``name``."""
    if name.startswith("head."):
        return O if dim == 0 else H
    if name.endswith("weight_ih") and dim == 1:
        return D
    return H


class SeedEnsemble(nn.Module):
    """S independent :class:`SequenceModel` s run as one block-diagonal model.

    Seed s's model is built exactly as ``SequenceModel(...)`` after ``torch.manual_seed(seed)``
    (then ``init(model)`` if given) and its parameters are placed in block s.

    Shape: x (S, N, L, D) -> (S, N, L' , O), each seed's batch seen only by its own model.
    """

    def __init__(
        self,
        cell: CellFactory,
        input_size: int,
        hidden_size: int,
        output_size: int,
        seeds: Sequence[int],
        readout: str = "last",
        init: Callable[[SequenceModel], None] | None = None,
    ) -> None:
        super().__init__()
        S, D, H, O = len(seeds), input_size, hidden_size, output_size
        self.seeds, self.sizes = list(seeds), (D, H, O)
        self.cell, self.readout = cell, readout
        with torch.random.fork_rng():
            self.model = SequenceModel(cell, S * D, S * H, S * O, readout)
            members = []
            for seed in seeds:
                torch.manual_seed(seed)
                member = SequenceModel(cell, D, H, O, readout)
                if init is not None:
                    init(member)
                members.append(member)
        if any(".ln_" in name for name, _ in member.named_parameters()):
            raise ValueError("SeedEnsemble does not support layer norm (it would mix the seeds)")
        self._index: dict[str, list[tuple[Tensor, ...]]] = {}
        self._owner: dict[str, Tensor] = {}
        big = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, p in big.items():
                p.zero_()
                owner = torch.full(p.shape, S, dtype=torch.long)
                self._index[name] = []
                for s, member in enumerate(members):
                    small = member.get_parameter(name)
                    idx = self._block(name, small.shape, s)
                    p[torch.meshgrid(*idx, indexing="ij")] = small
                    owner[torch.meshgrid(*idx, indexing="ij")] = s
                    self._index[name].append(idx)
                self._owner[name] = owner
                mask = (owner < S).to(p.dtype)
                p.register_hook(lambda g, mask=mask: g * mask)

    def _block(self, name: str, shape: torch.Size, s: int) -> tuple[Tensor, ...]:
        D, H, O = self.sizes
        S = len(self.seeds)
        idx = []
        for dim, n in enumerate(shape):
            u = _units(name, dim, D, H, O)
            i = torch.arange(n)
            idx.append((i // u) * S * u + s * u + i % u)
        return tuple(idx)

    def forward(self, x: Tensor) -> Tensor:
        S, N, L, D = x.shape
        out = self.model(x.permute(1, 2, 0, 3).reshape(N, L, S * D))  # (N, L', S*O)
        return out.reshape(N, out.shape[1], S, -1).permute(2, 0, 1, 3)

    def member(self, s: int) -> SequenceModel:
        """A standalone copy of seed ``s``'s model (e.g. for the diagnostics)."""
        D, H, O = self.sizes
        with torch.random.fork_rng():  # its own init is overwritten: leave the global RNG alone
            model = SequenceModel(self.cell, D, H, O, self.readout)
        with torch.no_grad():
            for name, p in model.named_parameters():
                big = self.model.get_parameter(name)
                p.copy_(big[torch.meshgrid(*self._index[name][s], indexing="ij")])
        return model

    def grad_norms(self) -> Tensor:
        """(S,) the gradient norm of each seed's model."""
        S = len(self.seeds)
        sq = torch.zeros(S + 1, dtype=torch.float64)
        for name, p in self.model.named_parameters():
            if p.grad is not None:
                sq += torch.bincount(
                    self._owner[name].flatten(), p.grad.double().pow(2).flatten(), S + 1
                )
        return sq[:S].sqrt()

    def clip_grad_norms(self, max_norm: float) -> Tensor:
        """Clip each seed's gradient norm to ``max_norm`` on its own; returns the norms before."""
        norms = self.grad_norms()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        scale = torch.cat([scale, torch.ones(1, dtype=scale.dtype)])
        for name, p in self.model.named_parameters():
            if p.grad is not None:
                p.grad.mul_(scale[self._owner[name]].to(p.grad.dtype))
        return norms


@dataclass(frozen=True)
class TrainSettings:
    """The training loop of the synthetic experiments (Adam, per-seed clipping)."""

    steps: int = 2000
    batch: int = 32
    lr: float = 1e-3
    clip: float | None = 1.0
    optimizer: str = "adam"
    eval_every: int = 100
    test_size: int = 512
    stop_when_solved: bool = True


@dataclass
class History:
    """Per-seed results of one training run: the best test metrics and when they were seen."""

    steps: list[int] = field(default_factory=list)
    metrics: list[dict[str, list[float]]] = field(default_factory=list)
    train_loss: list[list[float]] = field(default_factory=list)  # every step, per seed
    grad_norm: list[list[float]] = field(default_factory=list)  # every step, before clipping
    solved: list[bool] = field(default_factory=list)
    solved_at: list[int | None] = field(default_factory=list)
    best: dict[str, list[float]] = field(default_factory=dict)
    nonfinite_steps: int = 0
    seconds: float = 0.0


#: An evaluation forward whose state (seeds x sequences x steps x hidden units) has more elements
#: than this runs in pieces of at most :data:`EVAL_PIECE` elements: the adding problem's 1,000
#: test sequences of 400 steps through the minimal cells' 3 x 643 units would otherwise need
#: some 20 GB at once. Smaller ones run in one forward, as before pieces existed, so that the
#: units stored by earlier runs are still what a new run computes (pieces change the outputs
#: by float32 rounding: a different batch size takes other vectorised paths).
EVAL_ELEMENTS = 2**29
EVAL_PIECE = 2**27  # 512 MiB per (T, N, S*H) float32 tensor


def forward_in_pieces(
    ensemble: SeedEnsemble, x: Tensor, limit: int = EVAL_ELEMENTS, piece: int = EVAL_PIECE
) -> Tensor:
    """``ensemble(x)`` for x (S, N, L, D); above ``limit`` state elements, on as many
    sequences at a time as keep each piece within ``piece`` elements (sequences are
    independent: the same result up to rounding, tested)."""
    S, N, L = x.shape[:3]
    per_sequence = S * L * ensemble.sizes[1]
    if N * per_sequence <= limit:
        return ensemble(x)
    n = max(1, piece // per_sequence)
    return torch.cat([ensemble(x[:, i : i + n]) for i in range(0, N, n)], dim=1)


def train(
    ensemble: SeedEnsemble, task: Task, settings: TrainSettings, data_seed: int = 0
) -> History:
    """Train every seed's model on its own stream of ``task`` batches; evaluate on one shared
    test set every ``eval_every`` steps; a seed counts as solved if any evaluation solves it.

    Steps whose loss or gradient is not finite are skipped (for all seeds) and counted.
    """
    start = time.perf_counter()
    S = len(ensemble.seeds)
    gen = torch.Generator().manual_seed(data_seed)
    test_gen = torch.Generator().manual_seed(10_000 + data_seed)
    x_test, y_test = task.sample(settings.test_size, test_gen)
    x_test = x_test.expand(S, *x_test.shape)
    y_test = y_test.expand(S, *y_test.shape)
    params = list(ensemble.parameters())
    if settings.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=settings.lr)
    elif settings.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=settings.lr)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {settings.optimizer!r}")
    hist = History(solved=[False] * S, solved_at=[None] * S)
    sign = {"accuracy": -1.0, "recall": -1.0}  # larger is better for these; smaller for the rest

    def evaluate(step: int) -> None:
        ensemble.eval()
        with torch.no_grad():
            m = task.metrics(forward_in_pieces(ensemble, x_test), y_test)
        ensemble.train()
        hist.steps.append(step)
        hist.metrics.append({k: v.tolist() for k, v in m.items()})
        solved = task.solved(m).tolist()
        for s in range(S):
            if solved[s] and not hist.solved[s]:
                hist.solved[s], hist.solved_at[s] = True, step
        for k, v in m.items():
            best = hist.best.setdefault(k, [math.inf * sign.get(k, 1.0)] * S)
            for s in range(S):
                better = v[s] < best[s] if k not in sign else v[s] > best[s]
                best[s] = float(v[s]) if better else best[s]

    for step in range(1, settings.steps + 1):
        x, y = task.sample(S * settings.batch, gen)
        x = x.reshape(S, settings.batch, *x.shape[1:])
        y = y.reshape(S, settings.batch, *y.shape[1:])
        losses = task.loss(ensemble(x), y)
        hist.train_loss.append(losses.detach().tolist())
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(losses).all():
            hist.nonfinite_steps += 1
            hist.grad_norm.append([math.nan] * S)
            continue
        losses.sum().backward()  # the seeds' losses are independent: each gets its own gradient
        clip = settings.clip
        norms = ensemble.clip_grad_norms(clip) if clip else ensemble.grad_norms()
        hist.grad_norm.append(norms.tolist())
        if not torch.isfinite(norms).all():
            hist.nonfinite_steps += 1
            continue
        opt.step()
        if step % settings.eval_every == 0 or step == settings.steps:
            evaluate(step)
            if settings.stop_when_solved and all(hist.solved):
                break
    if not hist.steps:
        evaluate(settings.steps)
    hist.seconds = time.perf_counter() - start
    return hist


__all__ = [
    "EVAL_ELEMENTS",
    "EVAL_PIECE",
    "History",
    "SeedEnsemble",
    "SequenceModel",
    "TrainSettings",
    "closest_size",
    "forward_in_pieces",
    "hidden_for_budget",
    "sequence_model_parameters",
    "train",
]
