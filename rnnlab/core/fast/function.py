"""The C++ loop as an autograd function and as torch.library custom ops.

:func:`cell_spec` reads a cell's declared kernel (:meth:`RecurrentCell.kernel`), its parameters
as declared (:meth:`RecurrentCell.weights`) and the layer-norm epsilons; :func:`run` passes them
with the projected inputs to the kernels. Two routes reach the same kernels:

* eagerly (the usual case), the autograd Function :class:`_Scan` calls the C++ operators
  ``torch.ops.rnnlab_fast.forward`` / ``backward`` directly, with the hand-derived gradients;
* under :func:`torch.compile` and :func:`torch.jit.trace`, the custom operators
  ``torch.ops.rnnlab.scan`` and ``torch.ops.rnnlab.scan_backward`` (:mod:`torch.library`), which
  carry fake (meta) implementations, so that Dynamo and AOTAutograd trace a model through them
  without a graph break, and their autograd formula (the same C++ backward).

Higher-order gradients: the hand-derived backward is first-order. A backward with
``create_graph=True`` (double backward, e.g. a gradient penalty or ``gradgradcheck``) or with
batched gradients (``torch.autograd.grad(..., is_grads_batched=True)``, ``check_batched_grad``)
recomputes the step instead through the cell's own readable math (:func:`rnnlab.core.layers.scan`)
and differentiates that with autograd, from the tensors the layer keeps anyway (its input, which
the input projection saves, the initial state and the parameters): no extra memory is held for
it, and the gradients are the same.

Zoneout (:mod:`rnnlab.core.zoneout`): its blend weights ``(zh, zc)`` travel beside the mask
through both routes as constants (no gradient), and into the recomputation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

from rnnlab.core.cells import RecurrentCell
from rnnlab.core.kernels import Kernel
from rnnlab.core.state import State
from rnnlab.core.zoneout import Zoneout

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
    #: the cell, for the recomputation of higher-order gradients
    cell: RecurrentCell
    #: for each parameter slot, the cell's tensors it concatenates (MUT1-3's gains) or None
    sources: tuple[tuple[Tensor, ...] | None, ...]


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
    gain_sources: tuple[Tensor, ...] | None = None
    eps_hh = eps_hn = _DEFAULT_EPS
    if kind in _MUT_KINDS and norms:
        # MUT1-3: one gain vector, the groups' gains concatenated in row order (torch.cat is
        # differentiable, so their gradients flow back through it); the kernel has one epsilon
        # for the gate groups and one for the candidate's.
        if len({m.eps for m in norms[:-1]}) > 1:
            return None
        gain_sources = tuple(m.weight for m in norms)
        gains[0] = torch.cat(gain_sources)
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
        getattr(cell, "weight_hr", None),  # the LSTM's projection (P, H), or None
    )
    sources = tuple(gain_sources if k == 1 else None for k in range(len(params)))
    eps_c = float(ln_c.eps) if ln_c is not None else _DEFAULT_EPS
    return CellSpec(int(kind), cell.weight_hh, params, (eps_hh, eps_hn, eps_c), cell, sources)


# -- eager: the autograd Function -------------------------------------------------------------


class _Scan(torch.autograd.Function):
    """(xp, h0, c0, W_hh, *params) -> (outputs, h_T, c_T, *saved), loop and backward in C++;
    the mask and zoneout's weights are constants beside them.

    In torch.func's form (``setup_context``), so that ``torch.func.grad``, ``vjp`` and
    ``functional_call`` run through it; the kernel's buffers for the backward are extra
    outputs, marked non-differentiable (:func:`run` returns the first three).
    """

    @staticmethod
    def forward(
        spec: CellSpec,
        mask: Tensor | None,
        zoneout: Zoneout,
        save: bool,
        source: Tensor | None,
        xp: Tensor,
        h0: Tensor,
        c0: Tensor | None,
        weight_hh: Tensor,
        *params: Tensor | None,
    ) -> tuple[Tensor | None, ...]:
        kind = spec.kind
        res = torch.ops.rnnlab_fast.forward(
            kind, xp, h0, c0, weight_hh, _kernel_params(params), list(spec.eps), mask, save,
            *zoneout,
        )  # fmt: skip
        lstm = kind in _LSTM_KINDS
        saved = list(res[3 if lstm else 2 :]) if save else []
        if saved and saved[0] is not None and saved[0].data_ptr() == res[0].data_ptr():
            saved[0] = None  # the per-step states are the outputs: not returned twice
        return (res[0], res[1], res[2] if lstm else None, *saved)

    @staticmethod
    def setup_context(ctx: FunctionCtx, inputs: tuple, output: tuple) -> None:
        spec, mask, zoneout, save, source, _xp, h0, c0, weight_hh, *params = inputs
        saved = list(output[3:])
        ctx.set_materialize_grads(False)
        if not save:
            return
        ctx.mark_non_differentiable(*[t for t in saved if t is not None])
        ctx.spec, ctx.mask, ctx.zoneout, ctx.n_saved = spec, mask, zoneout, len(saved)
        if saved[0] is None:  # the per-step states are the outputs
            saved[0] = output[0]
        # source: the layer's input, which its input projection saves anyway; kept for the
        # recomputation of higher-order gradients (see the module docstring)
        ctx.save_for_backward(*saved, source, h0, c0, weight_hh, *params)

    @staticmethod
    def backward(
        ctx: FunctionCtx,
        grad_out: Tensor | None,
        grad_h: Tensor | None,
        grad_c: Tensor | None,
        *_saved_grads: Tensor | None,
    ) -> tuple[Tensor | None, ...]:
        tensors = ctx.saved_tensors
        spec: CellSpec = ctx.spec
        saved = list(tensors[: ctx.n_saved])
        source, h0, c0, weight_hh, *params = tensors[ctx.n_saved :]
        grads_in = (grad_out, grad_h, grad_c)
        if torch.is_grad_enabled() or any(_is_batched(g) for g in grads_in):
            # create_graph=True, or vmap over the backward (batched gradients): differentiate
            # the cell's own math instead of the first-order kernel
            dxp, dh0, dc0, dw, *dparams = _recomputed_grads(
                spec, source, ctx.mask, ctx.zoneout, h0, c0, weight_hh, params, grads_in
            )
            return (None, None, None, None, None, dxp, dh0, dc0, dw, *dparams)
        # Saved slots a configuration does not use come back as None; the kernel never reads them.
        saved = [s if s is not None else h0.new_empty(0) for s in saved]
        grads = torch.ops.rnnlab_fast.backward(
            spec.kind, saved, h0, c0, weight_hh, _kernel_params(params), list(spec.eps), ctx.mask,
            grad_out, grad_h, grad_c, *ctx.zoneout,
        )  # fmt: skip
        dxp, dh0, dc0, dw, *dparams = _kernel_grads(spec.kind, grads, params)
        return (None, None, None, None, None, dxp, dh0, dc0, dw, *dparams)


def _kernel_params(params: Sequence[Tensor | None]) -> list[Tensor | None]:
    """The C++ operators' parameter list: the eight slots, and W_hr only where there is one."""
    given = list(params)
    return given[:8] if len(given) > 8 and given[8] is None else given


def _kernel_grads(
    kind: int, grads: Sequence[Tensor | None], params: Sequence[Tensor | None]
) -> list[Tensor | None]:
    """The C++ backward's results as ``[dxp, dh0, dc0, dW_hh, *d(params slots)]``."""
    if kind in _LSTM_KINDS:  # a twelfth result: d(W_hr), the projection's
        dxp, dh0, dc0, dw, db, dg, dpi, dpf, dpo, dgc, dbc, *dwr = grads
        dparams = (db, dg, None, dpi, dpf, dpo, dgc, dbc, *dwr)
    elif kind in _GRU_KINDS:
        dxp, dh0, dw, db, dg, dgn = grads
        dc0, dparams = None, (db, dg, dgn, None, None, None, None, None, None)
    else:
        dxp, dh0, dw, db, dg = grads
        dc0, dparams = None, (db, dg, None, None, None, None, None, None, None)
    dparams = (*dparams, *[None] * (len(params) - len(dparams)))
    return [dxp, dh0, dc0, dw, *(d if p is not None else None for d, p in zip(dparams, params))]


def _is_batched(t: Tensor | None) -> bool:
    """Whether ``t`` is batched by a vmap (torch.func's, or the one autograd uses for
    ``is_grads_batched``)."""
    # the legacy vmap's key ("Batched") is not in torch._C.DispatchKey: match the names
    return t is not None and "Batched" in str(torch._C._dispatch_keys(t))


def _recomputed_grads(
    spec: CellSpec,
    source: Tensor | None,
    mask8: Tensor | None,
    zoneout: Zoneout,
    h0: Tensor,
    c0: Tensor | None,
    weight_hh: Tensor,
    params: Sequence[Tensor | None],
    grads: tuple[Tensor | None, Tensor | None, Tensor | None],
) -> list[Tensor | None]:
    """The gradients of :func:`run` with respect to (xp, h0, c0, W_hh, *params), by autograd
    through the reference loop, recomputed from the layer's input ``source``: differentiable
    again (create_graph) and batchable (vmap)."""
    from rnnlab.core.layers import scan  # layers imports this module

    if source is None:
        raise RuntimeError(
            "rnnlab.core.fast: higher-order gradients need the layer's input; call the fast "
            "path through rnnlab.core.layers.Recurrent (or run backend='reference')"
        )
    cell = spec.cell
    lstm = spec.kind in _LSTM_KINDS
    with torch.enable_grad():
        xp = cell.input_projection(source)
        mask = None if mask8 is None else mask8.bool().unsqueeze(-1)
        out, final, _ = scan(cell, xp, (h0, c0) if lstm else h0, mask, zoneout=zoneout)
        h_T, c_T = final if lstm else (final, None)
        pairs = [(o, g) for o, g in zip((out, h_T, c_T), grads) if g is not None and o is not None]
        # the slots' tensors as the cell uses them (MUT1-3's gains: the groups' own gains)
        wanted: list[Tensor] = [xp, h0, weight_hh]
        if c0 is not None:
            wanted.append(c0)
        slots: list[tuple[int, int]] = []  # (start, count) of each slot in `wanted`
        for p, src in zip(params, spec.sources):
            parts = () if p is None else (src if src is not None else (p,))
            slots.append((len(wanted), len(parts)))
            wanted.extend(parts)
        needed = [t.requires_grad for t in wanted]
        inputs = [t for t, n in zip(wanted, needed) if n]
        found = torch.autograd.grad(
            [o for o, _ in pairs],
            inputs,
            [g for _, g in pairs],
            create_graph=torch.is_grad_enabled(),
            allow_unused=True,
        )
    it = iter(found)
    got = [next(it) if n else None for n in needed]
    dxp, dh0, dw = got[0], got[1], got[2]
    dc0 = got[3] if c0 is not None else None
    dparams: list[Tensor | None] = []
    for p, (start, count) in zip(params, slots):
        if p is None:
            dparams.append(None)
            continue
        parts = got[start : start + count]
        if count == 1:
            dparams.append(parts[0])
        else:
            dparams.append(
                torch.cat([g if g is not None else q.new_zeros(q.shape) for g, q in
                           zip(parts, wanted[start : start + count])])
            )  # fmt: skip
    return [dxp, dh0, dc0, dw, *dparams]


# -- compiled and traced: torch.library custom operators ----------------------------------------


@torch.library.custom_op("rnnlab::scan", mutates_args=())
def scan_op(
    kind: int,
    eps: Sequence[float],
    save: bool,
    xp: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    weight_hh: Tensor,
    mask: Tensor | None,
    b_hh: Tensor | None,
    g_hh: Tensor | None,
    g_hn: Tensor | None,
    p_i: Tensor | None,
    p_f: Tensor | None,
    p_o: Tensor | None,
    g_c: Tensor | None,
    b_c: Tensor | None,
    w_hr: Tensor | None,
    zh: Tensor | None,
    zc: Tensor | None,
) -> list[Tensor]:
    """``[outputs, h_T, c_T, *saved]``: one direction of a fused cell over time.

    ``c_T`` is an empty tensor for cells without a cell state; ``saved`` (only with ``save``)
    are the kernel's buffers for the backward, an empty tensor in the slots a configuration
    does not use (and in the first slot, the per-step states, when they are the outputs).
    ``zh``, ``zc``: zoneout's blend weights (constants), or None. (No defaults: the
    dispatcher drops arguments equal to their default, and the autograd formula would then
    return one gradient too many.)
    """
    params = _kernel_params([b_hh, g_hh, g_hn, p_i, p_f, p_o, g_c, b_c, w_hr])
    res = list(
        torch.ops.rnnlab_fast.forward(
            kind, xp, h0, c0, weight_hh, params, list(eps), mask, save, zh, zc
        )
    )
    lstm = kind in _LSTM_KINDS
    head = [res[0], res[1], res[2] if lstm else xp.new_empty(0)]
    saved = res[3 if lstm else 2 :] if save else []
    if saved and saved[0] is not None and saved[0].data_ptr() == res[0].data_ptr():
        saved[0] = None  # the states are the outputs: no alias between a custom op's outputs
    if mask is not None:
        # the kernels leave the steps past a sequence's end unwritten (the backward never
        # reads them); an operator's outputs must be deterministic, so they are zeroed here
        past = mask.logical_not()
        for s in saved:
            if s is not None:
                s.masked_fill_(past.view(*past.shape, *([1] * (s.dim() - 2))), 0)
    return head + [s if s is not None else xp.new_empty(0) for s in saved]


def _saved_layout(
    kind: int,
    masked: bool,
    zoned: tuple[bool, bool],
    xp: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    weight_hh: Tensor,
    params: list,
) -> list[tuple[int, ...] | None]:
    """The trailing sizes (after T, N) of each saved buffer of the kernel ``kind``, or None for
    an unused (empty) slot, found once per configuration by running the kernel on one step of
    one sequence (so the fake implementation can never disagree with the kernel)."""
    key = (
        kind, masked, zoned, xp.dtype, int(xp.shape[-1]), int(h0.shape[-1]),
        None if c0 is None else int(c0.shape[-1]),
        tuple(int(s) for s in weight_hh.shape),
        tuple(None if p is None else tuple(int(s) for s in p.shape) for p in params),
    )  # fmt: skip
    layout = _LAYOUTS.get(key)
    if layout is None:
        from torch._subclasses.fake_tensor import unset_fake_temporarily

        with unset_fake_temporarily(), torch.no_grad():

            def real(t: Tensor | None) -> Tensor | None:
                return None if t is None else torch.zeros(t.shape, dtype=xp.dtype)

            G, P = int(xp.shape[-1]), int(h0.shape[-1])
            c1 = None if c0 is None else torch.zeros(1, int(c0.shape[-1]), dtype=xp.dtype)
            mask = torch.ones(1, 1, dtype=torch.uint8) if masked else None
            sizes = (P, None if c0 is None else int(c0.shape[-1]))
            zh, zc = (torch.zeros(1, 1, n, dtype=xp.dtype) if z else None
                      for z, n in zip(zoned, sizes))  # fmt: skip
            out = scan_op(
                kind, [_DEFAULT_EPS] * 3, True, torch.zeros(1, 1, G, dtype=xp.dtype),
                torch.zeros(1, P, dtype=xp.dtype), c1, real(weight_hh), mask,
                *(real(p) for p in params), zh, zc,
            )  # fmt: skip
        layout = [None if s.numel() == 0 else tuple(s.shape[2:]) for s in out[3:]]
        _LAYOUTS[key] = layout
    return layout


_LAYOUTS: dict[tuple, list[tuple[int, ...] | None]] = {}


@scan_op.register_fake
def _scan_fake(
    kind: int,
    eps: Sequence[float],
    save: bool,
    xp: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    weight_hh: Tensor,
    mask: Tensor | None,
    b_hh: Tensor | None,
    g_hh: Tensor | None,
    g_hn: Tensor | None,
    p_i: Tensor | None,
    p_f: Tensor | None,
    p_o: Tensor | None,
    g_c: Tensor | None,
    b_c: Tensor | None,
    w_hr: Tensor | None,
    zh: Tensor | None,
    zc: Tensor | None,
) -> list[Tensor]:
    params = [b_hh, g_hh, g_hn, p_i, p_f, p_o, g_c, b_c, w_hr]
    T, N = xp.shape[0], xp.shape[1]
    P = h0.shape[-1]  # the size of h: H, or the LSTM's projection
    head = [
        xp.new_empty(T, N, P),
        xp.new_empty(N, P),
        xp.new_empty(N, c0.shape[-1]) if c0 is not None else xp.new_empty(0),
    ]
    if not save:
        return head
    zoned = (zh is not None, zc is not None)
    layout = _saved_layout(kind, mask is not None, zoned, xp, h0, c0, weight_hh, params)
    return head + [xp.new_empty(0) if s is None else xp.new_empty(T, N, *s) for s in layout]


@torch.library.custom_op("rnnlab::scan_backward", mutates_args=())
def scan_backward_op(
    kind: int,
    width: int,
    eps: Sequence[float],
    saved: Sequence[Tensor],
    h0: Tensor,
    c0: Tensor | None,
    weight_hh: Tensor,
    mask: Tensor | None,
    params: Sequence[Tensor | None],
    grad_out: Tensor | None,
    grad_h: Tensor | None,
    grad_c: Tensor | None,
    zh: Tensor | None,
    zc: Tensor | None,
) -> list[Tensor]:
    """``[dxp, dh0, dc0, dW_hh, *d(params)]`` of :func:`scan_op` (``width``: the projected
    inputs' last size); an empty tensor for each absent input (c0, a parameter)."""
    grads = torch.ops.rnnlab_fast.backward(
        kind, list(saved), h0, c0, weight_hh, _kernel_params(params), list(eps), mask,
        grad_out, grad_h, grad_c, zh, zc,
    )  # fmt: skip
    found = _kernel_grads(kind, grads, params)
    like = [None, h0, c0, weight_hh, *params]  # dxp is always there
    # an empty tensor for an absent input; zeros for a present one the kernel left undefined
    return [
        g if g is not None else (h0.new_empty(0) if t is None else torch.zeros_like(t))
        for g, t in zip(found, like)
    ]


@scan_backward_op.register_fake
def _scan_backward_fake(
    kind: int,
    width: int,
    eps: Sequence[float],
    saved: Sequence[Tensor],
    h0: Tensor,
    c0: Tensor | None,
    weight_hh: Tensor,
    mask: Tensor | None,
    params: Sequence[Tensor | None],
    grad_out: Tensor | None,
    grad_h: Tensor | None,
    grad_c: Tensor | None,
    zh: Tensor | None,
    zc: Tensor | None,
) -> list[Tensor]:
    T, N = saved[0].shape[0], saved[0].shape[1]  # the per-step states
    dxp = h0.new_empty(T, N, width)
    rest = [h0, c0, weight_hh, *params]
    return [dxp, *(h0.new_empty(0) if t is None else torch.empty_like(t) for t in rest)]


def _scan_setup(ctx: FunctionCtx, inputs: tuple, output: list[Tensor]) -> None:
    kind, eps, _save, xp, h0, c0, weight_hh, mask, *params, zh, zc = inputs
    ctx.kind, ctx.eps, ctx.width, ctx.has_c0 = kind, list(eps), xp.shape[-1], c0 is not None
    ctx.n_params = [p is not None for p in params]
    # no zero gradients for the saved buffers (outputs of the operator, never used downstream)
    ctx.set_materialize_grads(False)
    saved = list(output[3:])
    if saved and saved[0].numel() == 0:
        saved[0] = output[0]  # the per-step states are the outputs
    ctx.n_saved = len(saved)
    ctx.save_for_backward(*saved, h0, c0, weight_hh, mask, zh, zc, *params)


def _scan_backward(ctx: FunctionCtx, grads: list[Tensor | None]) -> tuple:
    tensors = ctx.saved_tensors
    saved = list(tensors[: ctx.n_saved])
    h0, c0, weight_hh, mask, zh, zc, *params = tensors[ctx.n_saved :]
    if not saved:
        raise RuntimeError("rnnlab::scan ran without save=True, so it has no backward")
    lstm = ctx.kind in _LSTM_KINDS
    g_out, g_h, g_c = grads[0], grads[1], grads[2] if lstm else None
    d = scan_backward_op(
        ctx.kind, ctx.width, ctx.eps, saved, h0, c0, weight_hh, mask, params, g_out, g_h, g_c,
        zh, zc,
    )  # fmt: skip
    dxp, dh0, dc0, dw, *dparams = d
    dparams = [g if present else None for g, present in zip(dparams, ctx.n_params)]
    # (zoneout's weights are constants: no gradient)
    return (None, None, None, dxp, dh0, dc0 if ctx.has_c0 else None, dw, None, *dparams,
            None, None)  # fmt: skip


scan_op.register_autograd(_scan_backward, setup_context=_scan_setup)


def _traced() -> bool:
    """Whether torch.compile or torch.jit.trace is recording the model (the custom ops)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


# -- the entry point --------------------------------------------------------------------------


def run(
    spec: CellSpec,
    xp: Tensor,
    state: State,
    mask: Tensor | None,
    source: Tensor | None = None,
    zoneout: Zoneout | None = None,
) -> tuple[Tensor, State]:
    """One direction over time, as :func:`rnnlab.core.layers.scan` without ``keep_states``.

    Args:
        xp: (T, N, G*H) projected inputs; state: (N, H) or (h, c); mask: (T, N, 1) bool or None.
        source: the cell's input that ``xp`` was projected from ((T, N, D); the higher-order
            gradients recompute from it), or None.
        zoneout: ``(zh, zc)`` as checked by :func:`rnnlab.core.zoneout.check_zoneout`, or None.
    Returns:
        ``(outputs (T, N, H), final state)``.
    """
    lstm = spec.kind in _LSTM_KINDS
    h0, c0 = state if lstm else (state, None)
    mask8 = None if mask is None else mask.reshape(mask.shape[0], mask.shape[1]).to(torch.uint8)
    tensors = (xp, h0, c0, spec.weight_hh, *spec.params)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    zones = (None, None) if zoneout is None else zoneout
    if _traced():
        res = scan_op(spec.kind, list(spec.eps), save, xp, h0, c0, spec.weight_hh, mask8,
                      *spec.params, *zones)  # fmt: skip
        out, h_T, c_T = res[0], res[1], res[2]
    else:
        out, h_T, c_T = _Scan.apply(spec, mask8, zones, save, source, *tensors)[:3]
    return out, ((h_T, c_T) if lstm else h_T)
