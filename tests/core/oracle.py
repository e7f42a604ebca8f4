"""Independent oracles for the core tests: every cell's equations written out gate by gate.

The oracle reads only a cell's parameter tensors and its configuration flags; it never calls a
method of the cell (nor torch's layer norm), so a bug in ``rnnlab.core.cells`` or
``rnnlab.core.layers`` cannot hide in it. Shapes: N batch, T time, D input size, H hidden size,
L layers, K directions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial

import torch
from torch import Tensor, nn

from rnnlab.core.backend import use_backend
from rnnlab.core.cells import (
    AdditiveCell,
    ElmanCell,
    GRUCell,
    LSTMCell,
    MinimalGRUCell,
    RecurrentCell,
)
from rnnlab.core.layers import Recurrent

EPS = 1e-5

State = Tensor | tuple[Tensor, Tensor]

#: Every cell of the family, by a test id. LSTMs get ``forget_bias=None`` so that every option
#: (``bias=False`` included) is valid; the forget bias has its own tests.
CELL_KINDS = {
    "elman-tanh": partial(ElmanCell, nonlinearity="tanh"),
    "elman-relu": partial(ElmanCell, nonlinearity="relu"),
    "additive": AdditiveCell,
    "minimal-gru": MinimalGRUCell,
    "gru-after": partial(GRUCell, reset="after"),
    "gru-before": partial(GRUCell, reset="before"),
    "lstm": partial(LSTMCell, forget_bias=None),
    "lstm-nofg": partial(LSTMCell, forget_gate=False, forget_bias=None),
    "peephole": partial(LSTMCell, peephole=True, forget_bias=None),
    "peephole-nofg": partial(LSTMCell, peephole=True, forget_gate=False, forget_bias=None),
}

#: The two dispatches a layer test runs under: "fast" is the default "auto" backend (rnnlab's C++
#: loop where it applies, else torch's kernel or the reference); "reference" forces rnnlab's
#: readable Python loop for every layer (use_backend("reference")).
PATHS = ["fast", "reference"]


@contextlib.contextmanager
def on_path(path: str) -> Iterator[None]:
    with use_backend("reference") if path == "reference" else contextlib.nullcontext():
        yield


#: (layer_norm, bias) for every cell.
OPTIONS = [(ln, bias) for ln in (False, True) for bias in (True, False)]


def option_id(ln: bool, bias: bool) -> str:
    return ("ln" if ln else "noln") + ("-bias" if bias else "-nobias")


def randomize(module: nn.Module, scale: float = 0.8) -> nn.Module:
    """Every parameter ~ U(-scale, scale): LN gains, peepholes and biases all matter."""
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-scale, scale)
    return module


def layer_norm(v: Tensor, gain: Tensor, shift: Tensor | None = None) -> Tensor:
    """(v - mean) / sqrt(var + eps) * gain (+ shift), biased variance over the last dimension."""
    mean = v.sum(-1, keepdim=True) / v.shape[-1]
    var = ((v - mean) ** 2).sum(-1, keepdim=True) / v.shape[-1]
    out = (v - mean) / torch.sqrt(var + EPS) * gain
    return out if shift is None else out + shift


def _gain(ln: nn.Module | None) -> Tensor | None:
    return None if ln is None else ln.weight


def _group_gain(cell: RecurrentCell, group: int) -> Tensor | None:
    """The layer-norm gain of recurrent group ``group`` (``ln_hh.<group>``), if any."""
    return None if cell.ln_hh is None else cell.ln_hh[group].weight


def _side(inp: Tensor, W: Tensor, b: Tensor | None, gain: Tensor | None, H: int) -> list[Tensor]:
    """One side (input or recurrent) of every gate: ``[LN](W_k inp) + b_k``, each (N, H).

    Layer norm normalises the pre-activations of all gates of one side together.
    """
    G = W.shape[0] // H
    parts = [inp @ W[k * H : (k + 1) * H].t() for k in range(G)]
    if gain is not None:
        parts = list(layer_norm(torch.cat(parts, dim=-1), gain).split(H, dim=-1))
    if b is not None:
        parts = [part + b[k * H : (k + 1) * H] for k, part in enumerate(parts)]
    return parts


def naive_step(cell: RecurrentCell, x: Tensor, state: State) -> tuple[Tensor, State]:
    """One step of ``cell`` from its equations: x (N, D), state (N, H) or (h, c)."""
    H = cell.hidden_size
    sig, tanh = torch.sigmoid, torch.tanh
    xs = _side(x, cell.weight_ih, cell.bias_ih, _gain(cell.ln_ih), H)
    if isinstance(cell, LSTMCell):
        h_prev, c_prev = state
        hs = _side(h_prev, cell.weight_hh, cell.bias_hh, _gain(cell.ln_hh), H)
        a = [xk + hk for xk, hk in zip(xs, hs)]
        if cell.forget_gate:
            a_i, a_f, a_g, a_o = a
        else:
            a_i, a_g, a_o = a
        if cell.peephole:
            a_i = a_i + cell.weight_ci * c_prev
        i, g = sig(a_i), tanh(a_g)
        if cell.forget_gate:
            if cell.peephole:
                a_f = a_f + cell.weight_cf * c_prev
            c = sig(a_f) * c_prev + i * g
        else:
            c = c_prev + i * g
        if cell.peephole:
            a_o = a_o + cell.weight_co * c
        c_hat = c
        if cell.layer_norm:
            c_hat = layer_norm(c, cell.ln_cell.weight, cell.ln_cell.bias)
        h = sig(a_o) * tanh(c_hat)
        return h, (h, c)
    h_prev = state
    if isinstance(cell, GRUCell) and cell.reset == "before":
        W, b = cell.weight_hh, cell.bias_hh
        rz = _side(h_prev, W[: 2 * H], None if b is None else b[: 2 * H], _group_gain(cell, 0), H)
        r = sig(xs[0] + rz[0])
        z = sig(xs[1] + rz[1])
        (hn,) = _side(
            r * h_prev, W[2 * H :], None if b is None else b[2 * H :], _group_gain(cell, 1), H
        )
        n = tanh(xs[2] + hn)
        return (1 - z) * n + z * h_prev, (1 - z) * n + z * h_prev
    hs = _side(h_prev, cell.weight_hh, cell.bias_hh, _gain(cell.ln_hh), H)
    if isinstance(cell, GRUCell):  # reset after the recurrent matmul
        r = sig(xs[0] + hs[0])
        z = sig(xs[1] + hs[1])
        n = tanh(xs[2] + r * hs[2])
        h = (1 - z) * n + z * h_prev
    elif isinstance(cell, MinimalGRUCell):
        u = sig(xs[0] + hs[0])
        h = u * tanh(xs[1] + hs[1]) + (1 - u) * h_prev
    elif isinstance(cell, AdditiveCell):
        h = h_prev + tanh(xs[0] + hs[0])
    elif isinstance(cell, ElmanCell):
        pre = xs[0] + hs[0]
        h = tanh(pre) if cell.nonlinearity == "tanh" else torch.clamp(pre, min=0)
    else:
        raise TypeError(f"no oracle for {type(cell).__name__}")
    return h, h


def _index(state: State, idx: int) -> State:
    return tuple(s[idx] for s in state) if isinstance(state, tuple) else state[idx]


def _stack(states: list[State], dim: int = 0) -> State:
    if isinstance(states[0], tuple):
        return tuple(torch.stack(parts, dim=dim) for parts in zip(*states))
    return torch.stack(states, dim=dim)


def naive_recurrent(
    rnn: Recurrent, x: Tensor, state: State | None = None
) -> tuple[Tensor, State, State]:
    """A stacked, optionally bidirectional RNN over unpadded sequences, step by step.

    Args:
        rnn: the layer whose cells (parameters and flags) to use; dropout is not modelled.
        x: time-major (T, N, D), every sequence of full length.
        state: (L*K, N, H) or a pair of them; zeros if None.

    Returns:
        ``(out (T, N, K*H), final state like ``state``, states (L*K, N, T, H) or a pair)``;
        the reverse direction runs over the reversed sequence and its outputs and states are
        flipped back to input order.
    """
    T, N, _ = x.shape
    K = 2 if rnn.bidirectional else 1
    H = rnn.hidden_size
    finals, per_cell = [], []
    layer_input = x
    for layer in range(rnn.num_layers):
        outs = []
        for d in range(K):
            cell = rnn.cells[layer * K + d]
            if state is None:
                zeros = x.new_zeros(N, H)
                s = (zeros, zeros) if isinstance(cell, LSTMCell) else zeros
            else:
                s = _index(state, layer * K + d)
            order = range(T) if d == 0 else range(T - 1, -1, -1)
            out_t, state_t = [None] * T, [None] * T
            for t in order:
                h, s = naive_step(cell, layer_input[t], s)
                out_t[t], state_t[t] = h, s
            outs.append(torch.stack(out_t))
            finals.append(s)
            per_cell.append(_stack(state_t, dim=1))  # (N, T, H)
        layer_input = torch.cat(outs, dim=-1)
    return layer_input, _stack(finals), _stack(per_cell)
