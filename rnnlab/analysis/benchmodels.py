"""The models ``rnnlab bench`` compares: torch.nn's fused layers, rnnlab.nn's drop-ins, every
variant cell through :class:`~rnnlab.core.layers.Recurrent`, a naive Python-loop LSTM, and any
variant on its own reference loop (``loop:VARIANT``); which implementation runs each, and the
GEMM work per token."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from rnnlab import nn as rnn_nn
from rnnlab.core import fast
from rnnlab.core.layers import Recurrent
from rnnlab.core.registry import CELLS, cell_factory
from rnnlab.errors import RnnlabError

BASELINE = "torch.nn.LSTM"


class NaiveLSTM(nn.Module):
    """An LSTM written the way custom cells are written today: a Python loop over time, each step
    two ``F.linear`` and the gate math in eager ops, autograd for the backward. The bench's
    reference point for "a custom cell without rnnlab".

    Shape: input (T, N, D) -> output (T, N, H), state (h, c) each (N, H).
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        k = hidden_size**-0.5
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h = c = x.new_zeros(x.shape[1], self.hidden_size)
        outputs = []
        for x_t in x.unbind(0):
            gates = nn.functional.linear(x_t, self.weight_ih, self.bias_ih)
            gates = gates + nn.functional.linear(h, self.weight_hh, self.bias_hh)
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs), (h, c)


class ReferenceLoop(nn.Module):
    """A variant run by rnnlab's readable reference loop (the cell's per-step Python code with
    autograd, as without rnnlab.core.fast): the same cell written as a plain Python loop, the way a
    user would write it without rnnlab. Bench name ``loop:NAME`` for any variant ``NAME``."""

    def __init__(self, inner: Recurrent) -> None:
        super().__init__()
        self.inner = inner
        inner._kernel_mode = lambda x: None  # no torch kernel either (elman-relu has one)

    def forward(self, x: Tensor) -> tuple[Tensor, object]:
        with fast.disabled():
            return self.inner(x)


LOOP_PREFIX = "loop:"


def _recurrent(cell: str, layer_norm: bool, size: int) -> nn.Module:
    return Recurrent(cell_factory(cell, layer_norm=layer_norm), size, size, batch_first=False)


def _variants() -> dict[str, Callable[[int], nn.Module]]:
    """Every registered cell but those rnnlab.nn's LSTM, GRU and RNN already are, and the
    layer-norm versions."""
    table: dict[str, Callable[[int], nn.Module]] = {}
    for name, factory in CELLS.items():
        if factory(1, 1).torch_kernel_mode() not in ("LSTM", "GRU", "RNN_TANH"):
            table[name] = partial(_recurrent, name, False)
    for name in CELLS:
        if name in _LAYER_NORM_CELLS:
            table[f"{name}+ln"] = partial(_recurrent, name, True)
    return table


_LAYER_NORM_CELLS = ("lstm", "peephole", "gru", "gru-before", "minimal-gru", "elman", "additive")


def models() -> dict[str, Callable[[int], nn.Module]]:
    """Name -> factory(hidden size) of a one-layer, time-major module ``(T, N, H) -> (out, state)``.

    torch.nn's three fused layers, rnnlab.nn's drop-ins in standard configuration, every variant
    cell through :class:`~rnnlab.core.layers.Recurrent`, and :class:`NaiveLSTM`.
    """
    table: dict[str, Callable[[int], nn.Module]] = {
        "torch.nn.LSTM": lambda h: nn.LSTM(h, h),
        "torch.nn.GRU": lambda h: nn.GRU(h, h),
        "torch.nn.RNN": lambda h: nn.RNN(h, h),
        "rnnlab.nn.LSTM": lambda h: rnn_nn.LSTM(h, h),
        "rnnlab.nn.GRU": lambda h: rnn_nn.GRU(h, h),
        "rnnlab.nn.RNN": lambda h: rnn_nn.RNN(h, h),
    }
    table.update(_variants())
    table["naive-lstm"] = lambda h: NaiveLSTM(h, h)
    return table


def execution_path(model: nn.Module, x: Tensor) -> str:
    """Which implementation runs ``model`` on ``x``: torch / fast / reference / python-loop."""
    if isinstance(model, NaiveLSTM):
        return "python-loop"
    if isinstance(model, ReferenceLoop):
        return "reference"
    if not isinstance(model, Recurrent):
        return "torch"
    if model._kernel_mode(x) is not None:
        return "torch"
    ok = all(fast.supports(cell, x.new_empty(1, 1, 1)) for cell in model.cells)
    return "fast" if ok else "reference"


def gemm_flops_per_token(model: nn.Module) -> int:
    """Forward multiply-adds x 2 of the input and recurrent GEMMs, per token."""
    n = sum(
        p.numel()
        for name, p in model.named_parameters()
        if p.dim() == 2 and ("weight_ih" in name or "weight_hh" in name)
    )
    return 2 * n


def factory_of(name: str, table: dict[str, Callable[[int], nn.Module]]) -> Callable | None:
    """The factory of a model name: one of ``table`` or ``loop:VARIANT``; None if unknown."""
    if name.startswith(LOOP_PREFIX) and name[len(LOOP_PREFIX) :] in _variants():
        inner = table[name[len(LOOP_PREFIX) :]]
        return lambda h: ReferenceLoop(inner(h))
    return table.get(name)


def resolve_models(names: tuple[str, ...] | None) -> dict[str, Callable[[int], nn.Module]]:
    """Name -> factory of the models to run: all of :func:`models` for None, else the given
    names (each of :func:`models` or ``loop:VARIANT``) after the baseline."""
    table = models()
    if names is None:
        return table
    chosen = [BASELINE, *[n for n in names if n != BASELINE]]
    found = {n: factory_of(n, table) for n in chosen}
    unknown = [n for n, factory in found.items() if factory is None]
    if unknown:
        raise RnnlabError(
            f"unknown model(s) {', '.join(unknown)}; choose from: {', '.join(table)}, "
            f"or {LOOP_PREFIX}VARIANT for a variant's reference loop"
        )
    return found


__all__ = [
    "BASELINE",
    "LOOP_PREFIX",
    "NaiveLSTM",
    "ReferenceLoop",
    "execution_path",
    "factory_of",
    "gemm_flops_per_token",
    "models",
    "resolve_models",
]
