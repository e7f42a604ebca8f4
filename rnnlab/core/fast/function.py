"""The autograd Function around the C++ loop, and what it reads from a cell.

:func:`cell_spec` reads a cell's declared kernel (:meth:`RecurrentCell.kernel`), its parameters
as declared (:meth:`RecurrentCell.weights`) and the layer-norm epsilons; the Function passes
them with the projected inputs to ``torch.ops.rnnlab_fast.forward`` and hand-derived gradients
come back from ``torch.ops.rnnlab_fast.backward``. Gradients are first-order only: a backward
with ``create_graph=True`` raises a clear error (the saved activations are not
differentiable); run the layer with ``backend="reference"`` (or under
:func:`rnnlab.core.backend.use_backend`) to differentiate twice through the reference loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

from rnnlab.core.cells import RecurrentCell
from rnnlab.core.kernels import Kernel
from rnnlab.core.state import State

_LSTM_KINDS = (Kernel.LSTM, Kernel.LSTM_NO_FORGET)
_GRU_KINDS = (Kernel.GRU_AFTER, Kernel.GRU_BEFORE)
_MUT_KINDS = (Kernel.MUT1, Kernel.MUT2, Kernel.MUT3)
_PEEPHOLES = ("weight_ci", "weight_cf", "weight_co")
_DEFAULT_EPS = 1e-5


@dataclass(frozen=True)
class CellSpec:
    """What the kernels need from a cell: its kind, W_hh, the optional parameters, epsilons."""

    kind: int
    weight_hh: Tensor
    #: b_hh, g_hh, g_hn, p_i, p_f, p_o, g_c, b_c, w_hr (None where the cell has none)
    params: tuple[Tensor | None, ...]
    eps: tuple[float, float, float]


def cell_spec(cell: RecurrentCell) -> CellSpec | None:
    """The kernel inputs of ``cell``, from its declared kernel and parameters; None if no kernel
    computes it."""
    kind = cell.kernel()
    if kind is None:
        return None
    declared = cell.weights()
    norms: list[nn.LayerNorm] = []
    if isinstance(cell.ln_hh, nn.ModuleList):
        norms = list(cell.ln_hh)
    elif cell.ln_hh is not None:
        norms = [cell.ln_hh]
    gains: list[Tensor | None] = [None, None]  # g_hh, g_hn
    eps_hh = eps_hn = _DEFAULT_EPS
    if kind in _MUT_KINDS and norms:
        # MUT1-3: one gain vector, the groups' gains concatenated in row order (torch.cat is
        # differentiable, so their gradients flow back through it); the kernel has one epsilon
        # for the gate groups and one for the candidate's.
        if len({m.eps for m in norms[:-1]}) > 1:
            return None
        gains[0] = torch.cat([m.weight for m in norms])
        eps_hh, eps_hn = float(norms[0].eps), float(norms[-1].eps)
    elif norms:  # one group, or GRU-before's (r, z) and (n)
        for g, m in enumerate(norms):
            gains[g] = m.weight
        eps_hh = float(norms[0].eps)
        if len(norms) > 1:
            eps_hn = float(norms[1].eps)
    peep = {name: getattr(cell, name) for name in declared.peepholes}
    ln_c = cell.ln_cell
    params = (
        cell.bias_hh,
        *gains,
        *(peep.get(name) for name in _PEEPHOLES),
        ln_c.weight if ln_c is not None else None,
        ln_c.bias if ln_c is not None else None,
        cell.weight_hr,  # the LSTM's projection (P, H), or None
    )
    eps_c = float(ln_c.eps) if ln_c is not None else _DEFAULT_EPS
    return CellSpec(int(kind), cell.weight_hh, params, (eps_hh, eps_hn, eps_c))


class _Scan(torch.autograd.Function):
    """(xp, h0, c0, W_hh, *params) -> (outputs, h_T, c_T), loop and backward in C++."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        kind: int,
        eps: tuple[float, float, float],
        mask: Tensor | None,
        save: bool,
        xp: Tensor,
        h0: Tensor,
        c0: Tensor | None,
        weight_hh: Tensor,
        *params: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        res = torch.ops.rnnlab_fast.forward(
            kind, xp, h0, c0, weight_hh, list(params), list(eps), mask, save
        )
        lstm = kind in _LSTM_KINDS
        out, h_T = res[0], res[1]
        c_T = res[2] if lstm else None
        if save:
            ctx.kind, ctx.eps, ctx.mask = kind, eps, mask
            ctx.n_saved = len(res) - (3 if lstm else 2)
            ctx.save_for_backward(*res[3 if lstm else 2 :], h0, c0, weight_hh, *params)
            ctx.set_materialize_grads(False)
        return out, h_T, c_T

    @staticmethod
    def backward(
        ctx: FunctionCtx, grad_out: Tensor | None, grad_h: Tensor | None, grad_c: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: a second derivative would be wrong
            raise RuntimeError(
                "rnnlab.core.fast computes first-order gradients only; for create_graph=True "
                "(double backward) run the layer with backend='reference' (or under "
                "`with rnnlab.core.backend.use_backend('reference'):`)"
            )
        tensors = ctx.saved_tensors
        saved = list(tensors[: ctx.n_saved])
        h0, c0, weight_hh, *params = tensors[ctx.n_saved :]
        # Saved slots a configuration does not use come back as None; the kernel never reads them.
        saved = [s if s is not None else h0.new_empty(0) for s in saved]
        grads = torch.ops.rnnlab_fast.backward(
            ctx.kind, saved, h0, c0, weight_hh, params, list(ctx.eps), ctx.mask,
            grad_out, grad_h, grad_c,
        )  # fmt: skip
        if ctx.kind in _LSTM_KINDS:
            dxp, dh0, dc0, dw, db, dg, dpi, dpf, dpo, dgc, dbc, dwr = grads
            dparams = (db, dg, None, dpi, dpf, dpo, dgc, dbc, dwr)
        elif ctx.kind in _GRU_KINDS:
            dxp, dh0, dw, db, dg, dgn = grads
            dc0, dparams = None, (db, dg, dgn, None, None, None, None, None, None)
        else:
            dxp, dh0, dw, db, dg = grads
            dc0, dparams = None, (db, dg, None, None, None, None, None, None, None)
        dparams = tuple(d if p is not None else None for d, p in zip(dparams, params))
        return (None, None, None, None, dxp, dh0, dc0, dw, *dparams)


def run(spec: CellSpec, xp: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
    """One direction over time, as :func:`rnnlab.core.layers.scan` without ``keep_states``.

    Args:
        xp: (T, N, G*H) projected inputs; state: (N, H) or (h, c); mask: (T, N, 1) bool or None.
    Returns:
        ``(outputs (T, N, H or P), final state)``.
    """
    lstm = spec.kind in _LSTM_KINDS
    h0, c0 = state if lstm else (state, None)
    mask8 = None if mask is None else mask.reshape(mask.shape[0], mask.shape[1]).to(torch.uint8)
    tensors = (xp, h0, c0, spec.weight_hh, *spec.params)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    out, h_T, c_T = _Scan.apply(spec.kind, spec.eps, mask8, save, *tensors)
    return out, ((h_T, c_T) if lstm else h_T)
