"""The models ``rnnlab bench`` compares: torch.nn's fused layers, rnnlab.nn's drop-ins, every
variant cell through :class:`~rnnlab.core.layers.Recurrent`, a naive Python-loop LSTM, and any
variant on its own reference loop (``loop:VARIANT``); which implementation runs each, and the
GEMM work per token.

Every rnnlab model is built with an explicit backend: ``"auto"`` normally; with ``fast=False``
("as if rnnlab had no fast path") torch's kernel where it can run the model, else the
reference loop."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from rnnlab import nn as rnn_nn
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
    autograd): the same cell written as a plain Python loop, the way a user would write it
    without rnnlab. Bench name ``loop:NAME`` for any variant ``NAME``.

    Args:
        inner: the variant's layer, built with ``backend="reference"``.
    """

    def __init__(self, inner: Recurrent) -> None:
        super().__init__()
        if inner.backend != "reference":
            raise ValueError(
                f"the inner layer must have backend='reference', got {inner.backend!r}"
            )
        self.inner = inner

    def forward(self, x: Tensor) -> tuple[Tensor, object]:
        return self.inner(x)


LOOP_PREFIX = "loop:"
#: A factory of one of rnnlab's layers: (hidden size, backend) -> layer.
LayerFactory = Callable[[int, str], Recurrent]


def _recurrent(cell: str, layer_norm: bool, size: int, backend: str) -> Recurrent:
    factory = cell_factory(cell, layer_norm=layer_norm)
    return Recurrent(factory, size, size, batch_first=False, backend=backend)


def _variants() -> dict[str, LayerFactory]:
    """Every registered cell but those rnnlab.nn's LSTM, GRU and RNN already are, and the
    layer-norm versions."""
    table: dict[str, LayerFactory] = {}
    for name, factory in CELLS.items():
        if factory(1, 1).torch_kernel() not in ("LSTM", "GRU", "RNN_TANH"):
            table[name] = partial(_recurrent, name, False)
    for name in CELLS:
        if name in _LAYER_NORM_CELLS:
            table[f"{name}+ln"] = partial(_recurrent, name, True)
    return table


_LAYER_NORM_CELLS = (
    "lstm",
    "peephole",
    "gru",
    "gru-before",
    "minimal-gru",
    "elman",
    "additive",
    "mingru",
    "minlstm",
)


def _rnnlab_layers() -> dict[str, LayerFactory]:
    """rnnlab's drop-ins in standard configuration, then every variant."""
    table: dict[str, LayerFactory] = {
        "rnnlab.nn.LSTM": lambda h, backend: rnn_nn.LSTM(h, h, backend=backend),
        "rnnlab.nn.GRU": lambda h, backend: rnn_nn.GRU(h, h, backend=backend),
        "rnnlab.nn.RNN": lambda h, backend: rnn_nn.RNN(h, h, backend=backend),
    }
    table.update(_variants())
    return table


def build_layer(factory: LayerFactory, hidden: int, fast: bool = True) -> Recurrent:
    """One of rnnlab's layers; ``fast=False``: as if rnnlab had no fast path (torch's kernel
    where the layer can run on it, else the reference loop), with the same weights."""
    if fast:
        return factory(hidden, "auto")
    rng = torch.get_rng_state()
    layer = factory(hidden, "torch")
    try:
        layer.backend_for(torch.zeros(1, 1, hidden))
    except RnnlabError:  # no torch kernel for it: rebuild from the same seed on the reference
        torch.set_rng_state(rng)
        layer = factory(hidden, "reference")
    return layer


def models(fast: bool = True) -> dict[str, Callable[[int], nn.Module]]:
    """Name -> factory(hidden size) of a one-layer, time-major module ``(T, N, H) -> (out, state)``.

    torch.nn's three fused layers, rnnlab.nn's drop-ins in standard configuration, every variant
    cell through :class:`~rnnlab.core.layers.Recurrent`, and :class:`NaiveLSTM`.

    Args:
        fast: False builds rnnlab's layers as if rnnlab had no fast path (:func:`build_layer`).
    """
    table: dict[str, Callable[[int], nn.Module]] = {
        "torch.nn.LSTM": lambda h: nn.LSTM(h, h),
        "torch.nn.GRU": lambda h: nn.GRU(h, h),
        "torch.nn.RNN": lambda h: nn.RNN(h, h),
    }
    for name, factory in _rnnlab_layers().items():
        table[name] = partial(build_layer, factory, fast=fast)
    table["naive-lstm"] = lambda h: NaiveLSTM(h, h)
    return table


def execution_path(model: nn.Module, x: Tensor) -> str:
    """Which implementation runs ``model`` on ``x``: torch / fast / reference / python-loop."""
    if isinstance(model, NaiveLSTM):
        return "python-loop"
    if isinstance(model, ReferenceLoop):
        model = model.inner
    if not isinstance(model, Recurrent):
        return "torch"
    return model.backend_for(x)


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
    variants = _variants()
    if name.startswith(LOOP_PREFIX) and name[len(LOOP_PREFIX) :] in variants:
        inner = variants[name[len(LOOP_PREFIX) :]]
        return lambda h: ReferenceLoop(inner(h, "reference"))
    return table.get(name)


def resolve_models(
    names: tuple[str, ...] | None, fast: bool = True
) -> dict[str, Callable[[int], nn.Module]]:
    """Name -> factory of the models to run: all of :func:`models` for None, else the given
    names (each of :func:`models` or ``loop:VARIANT``) after the baseline; ``fast`` as
    :func:`models`."""
    table = models(fast)
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
    "build_layer",
    "execution_path",
    "factory_of",
    "gemm_flops_per_token",
    "models",
    "resolve_models",
]
