"""Zoneout (Krueger et al., 2017) inside the three loops over time.

Oracles: the reference loop (:func:`rnnlab.core.layers.scan`) against a hand-written loop (the
cell's step, then the blend ``z * s_{t-1} + (1 - z) * s~_t`` written out, then the length mask);
the C++ fast path and the minimal RNNs' parallel scan against the reference loop (outputs, final
states and every gradient, float64 within 1e-10, for every cell configuration the fast path
runs, with and without lengths, with training's 0/1 weights and evaluation's constant p);
identities (all-zero weights are no zoneout, bit for bit; all-one weights freeze the state);
gradcheck; higher-order derivatives (recomputed through the reference loop) equal to the
reference's; the custom operator under opcheck and torch.compile(fullgraph=True).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch
from torch import Tensor

from rnnlab.core import fast
from rnnlab.core.cells import ElmanCell, GRUCell, LSTMCell, RecurrentCell
from rnnlab.core.fast.function import cell_spec, scan_op
from rnnlab.core.layers import scan
from rnnlab.core.minimal import MinGRUCell, MinLSTMCell, zoned_coefficients
from rnnlab.core.zoneout import Zoneout
from rnnlab.errors import RnnlabError
from tests.core.test_fast import CELLS, OPTIONS

F64 = torch.float64
LENGTHS = [6, 2, 5, 1]
PROJ_LSTMS = {
    "lstm-proj": partial(LSTMCell, proj_size=3, forget_bias=None),
    "peephole-ln-proj": partial(LSTMCell, proj_size=2, peephole=True, layer_norm=True),
    "nofg-proj": partial(LSTMCell, proj_size=3, forget_gate=False, forget_bias=None),
}
needs_kernels = pytest.mark.skipif(not fast.is_available(), reason="the C++ kernels did not build")
PATHS = ["reference", pytest.param("fast", marks=needs_kernels)]


def _randomize(cell: RecurrentCell, scale: float = 0.5) -> RecurrentCell:
    with torch.no_grad():
        for p in cell.parameters():
            p.uniform_(-scale, scale)
    return cell


def _weights(kind: str, shape: tuple[int, ...], p: float = 0.4) -> Tensor:
    if kind == "bernoulli":
        return torch.bernoulli(torch.full(shape, p, dtype=F64))
    if kind == "eval":
        return torch.full(shape, p, dtype=F64)
    z = torch.rand(shape, dtype=F64)
    return torch.where(z < 0.2, 0.0, torch.where(z > 0.8, 1.0, z))  # exact 0s and 1s too


def _zoneout(cell: RecurrentCell, T: int, N: int, kind: str, parts: str = "hc") -> Zoneout:
    """``(zh, zc)`` for ``cell``: weights on the parts named in ``parts`` that it has."""
    zh = _weights(kind, (T, N, cell.output_size)) if "h" in parts else None
    lstm = cell.state_is_tuple and "c" in parts
    zc = _weights(kind, (T, N, cell.hidden_size)) if lstm else None
    return zh, zc


def _state(cell: RecurrentCell, N: int) -> Tensor | tuple[Tensor, Tensor]:
    h = (0.5 * torch.randn(N, cell.output_size, dtype=F64)).requires_grad_()
    if not cell.state_is_tuple:
        return h
    return h, (0.5 * torch.randn(N, cell.hidden_size, dtype=F64)).requires_grad_()


def _mask(T: int, lengths: list[int] | None) -> Tensor | None:
    if lengths is None:
        return None
    return (torch.arange(T).unsqueeze(1) < torch.tensor(lengths).unsqueeze(0)).unsqueeze(-1)


def _parts(state: Tensor | tuple[Tensor, ...]) -> list[Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def _results(run: Callable[[Tensor], tuple], cell: RecurrentCell, x: Tensor, state) -> list[Tensor]:
    """Outputs, final state and the gradients of a random loss w.r.t. x, the initial state and
    every parameter (zeros where one has none)."""
    out, final = run(cell.input_projection(x))[:2]
    g = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=g, dtype=F64)).sum()
    for f in _parts(final):
        loss = loss + (f * torch.randn(f.shape, generator=g, dtype=F64)).sum()
    leaves = [x, *_parts(state), *cell.parameters()]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    found = [torch.zeros_like(p) if d is None else d for d, p in zip(grads, leaves)]
    return [out, *_parts(final), *found]


def _assert_close(got: list[Tensor], want: list[Tensor], tol: float = 1e-10) -> None:
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape, f"result {k}: shape {tuple(a.shape)} != {tuple(b.shape)}"
        assert torch.isfinite(a).all(), f"result {k} is not finite"
        err = (a - b).abs().max().item() if a.numel() else 0.0
        assert err <= tol, f"result {k}: max error {err:.3g}"


# -- the reference loop against a hand-written one --------------------------------------------


def _hand_loop(cell: RecurrentCell, xp: Tensor, state, mask: Tensor | None, zh, zc) -> tuple:
    """The paper's equations around the cell's own step, written out part by part."""
    outputs = []
    for t in range(xp.shape[0]):
        _, new = cell.step(xp[t], state)  # s~_t from (x_t, s_{t-1}): h~ from the un-zoned c~
        if cell.state_is_tuple:
            (h_prev, c_prev), (h_new, c_new) = state, new
            h = h_new if zh is None else zh[t] * h_prev + (1 - zh[t]) * h_new
            c = c_new if zc is None else zc[t] * c_prev + (1 - zc[t]) * c_new
            if mask is not None:
                h, c = torch.where(mask[t], h, h_prev), torch.where(mask[t], c, c_prev)
            state = (h, c)
        else:
            h = new if zh is None else zh[t] * state + (1 - zh[t]) * new
            if mask is not None:
                h = torch.where(mask[t], h, state)
            state = h
        outputs.append(h if mask is None else h * mask[t])
    return torch.stack(outputs), state


HAND_CELLS = {
    "elman": ElmanCell,
    "gru": GRUCell,
    "lstm-peephole-ln-proj": partial(LSTMCell, peephole=True, layer_norm=True, proj_size=3),
    "lstm-peephole-ln": partial(LSTMCell, peephole=True, layer_norm=True),
}


#: (cell, zoned parts): zc only where there is a cell state
HAND_CASES = [(n, p) for n in HAND_CELLS for p in (("hc", "h", "c") if "lstm" in n else ("h",))]


@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("weights", ["bernoulli", "eval"])
@pytest.mark.parametrize(("name", "parts"), HAND_CASES, ids=[f"{n}-{p}" for n, p in HAND_CASES])
def test_reference_loop_is_the_papers_equations(
    name: str, parts: str, weights: str, masked: bool
) -> None:
    cell = _randomize(HAND_CELLS[name](3, 5, dtype=F64))
    T, N = 6, 4
    x = torch.randn(T, N, 3, dtype=F64, requires_grad=True)
    state, mask = _state(cell, N), _mask(T, LENGTHS if masked else None)
    zh, zc = _zoneout(cell, T, N, weights, parts)
    got = _results(lambda xp: scan(cell, xp, state, mask, zoneout=(zh, zc)), cell, x, state)
    want = _results(lambda xp: _hand_loop(cell, xp, state, mask, zh, zc), cell, x, state)
    _assert_close(got, want, 1e-12)
    # and the weights did change the result
    plain = _results(lambda xp: scan(cell, xp, state, mask), cell, x, state)
    assert (got[0] - plain[0]).abs().max() > 1e-3


# -- identities --------------------------------------------------------------------------------


#: the two loops, as ``run(cell, xp, state, mask, zoneout) -> (outputs, final state)``
RUNS: dict[str, Callable] = {
    "reference": lambda c, xp, s, m, z: scan(c, xp, s, m, zoneout=z)[:2],
    "fast": lambda c, xp, s, m, z: fast.scan(c, xp, s, m, zoneout=z),
}


IDENTITY_CELLS = {**CELLS, **PROJ_LSTMS}


@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", list(IDENTITY_CELLS))
def test_zero_weights_are_no_zoneout_bit_for_bit(name: str, path: str, masked: bool) -> None:
    cell = _randomize(IDENTITY_CELLS[name](3, 5, layer_norm=name.startswith(("mut", "gru")),
                                           dtype=F64))  # fmt: skip
    T, N = 6, 4
    x = torch.randn(T, N, 3, dtype=F64, requires_grad=True)
    state, mask = _state(cell, N), _mask(T, LENGTHS if masked else None)
    zh, zc = (None if z is None else torch.zeros_like(z) for z in _zoneout(cell, T, N, "eval"))
    run = RUNS[path]
    got = _results(lambda xp: run(cell, xp, state, mask, (zh, zc)), cell, x, state)
    want = _results(lambda xp: run(cell, xp, state, mask, None), cell, x, state)
    for k, (a, b) in enumerate(zip(got, want)):
        assert torch.equal(a, b), f"result {k} differs by {(a - b).abs().max().item():.3g}"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["elman-tanh", "gru-before", "mut3", "minimal-gru", "peephole",
                                  "lstm-proj"])  # fmt: skip
def test_one_weights_freeze_the_state(name: str, path: str) -> None:
    cell = _randomize(IDENTITY_CELLS[name](3, 5, dtype=F64))
    T, N = 6, 4
    x = torch.randn(T, N, 3, dtype=F64, requires_grad=True)
    state, mask = _state(cell, N), _mask(T, LENGTHS)
    h0 = _parts(state)[0]
    zh = torch.ones(T, N, cell.output_size, dtype=F64)
    run = RUNS[path]
    # h frozen alone: every output is h_0 (zero past each sequence's end); the LSTM's c moves on
    out, final = run(cell, cell.input_projection(x), state, mask, (zh, None))
    assert torch.equal(out, (h0.detach() * mask).expand_as(out))
    assert torch.equal(_parts(final)[0], h0)
    if cell.state_is_tuple:
        assert not torch.equal(final[1], state[1])
        # both parts frozen: the whole state, and nothing reaches the input or the weights
        zc = torch.ones(T, N, cell.hidden_size, dtype=F64)
        run_both = lambda xp: run(cell, xp, state, mask, (zh, zc))  # noqa: E731
        got = _results(run_both, cell, x, state)
        assert torch.equal(got[2], state[1])
        input_and_weights = [got[3], *got[6:]]  # out, h_T, c_T, dx, dh0, dc0, d(params)
        assert all(torch.equal(g, torch.zeros_like(g)) for g in input_and_weights)
    else:
        got = _results(lambda xp: run(cell, xp, state, mask, (zh, None)), cell, x, state)
        input_and_weights = [got[2], *got[4:]]  # out, h_T, dx, dh0, d(params)
        assert all(torch.equal(g, torch.zeros_like(g)) for g in input_and_weights)


# -- the C++ fast path against the reference loop ---------------------------------------------


def _compare_fast(cell: RecurrentCell, masked: bool, weights: str, parts: str = "hc") -> None:
    _randomize(cell)
    T, N = 6, 4
    x = torch.randn(T, N, cell.input_size, dtype=F64, requires_grad=True)
    state, mask = _state(cell, N), _mask(T, LENGTHS if masked else None)
    assert fast.supports(cell, x)
    zoneout = _zoneout(cell, T, N, weights, parts)
    got = _results(lambda xp: fast.scan(cell, xp, state, mask, zoneout=zoneout), cell, x, state)
    want = _results(lambda xp: scan(cell, xp, state, mask, zoneout=zoneout), cell, x, state)
    _assert_close(got, want)


@needs_kernels
@pytest.mark.parametrize("weights", ["bernoulli", "eval"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize(("ln", "bias"), OPTIONS, ids=lambda v: str(v))
@pytest.mark.parametrize("kind", list(CELLS))
def test_fast_equals_reference(kind: str, ln: bool, bias: bool, masked: bool, weights: str) -> None:
    _compare_fast(CELLS[kind](3, 5, bias=bias, layer_norm=ln, dtype=F64), masked, weights)


@needs_kernels
@pytest.mark.parametrize("parts", ["h", "c"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("kind", ["lstm", "peephole-nofg", *PROJ_LSTMS])
def test_fast_equals_reference_lstm_parts(kind: str, masked: bool, parts: str) -> None:
    factory = {**CELLS, **PROJ_LSTMS}[kind]
    _compare_fast(factory(3, 5, layer_norm=True, dtype=F64), masked, "bernoulli", parts)


@needs_kernels
@pytest.mark.parametrize("weights", ["bernoulli", "eval"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("kind", list(PROJ_LSTMS))
def test_fast_equals_reference_with_projections(kind: str, masked: bool, weights: str) -> None:
    _compare_fast(PROJ_LSTMS[kind](3, 5, dtype=F64), masked, weights)


@needs_kernels
@pytest.mark.parametrize("kind", ["gru-after", "peephole", "mut2"])
def test_fast_splits_rows_over_threads_and_chunks_the_weight_gradient(kind: str) -> None:
    """Enough rows per step for several threads, enough steps for several backward chunks."""
    cell = _randomize(CELLS[kind](4, 24, layer_norm=True, dtype=F64))
    T, N = 40, 24
    x = torch.randn(T, N, 4, dtype=F64, requires_grad=True)
    state, mask = _state(cell, N), _mask(T, torch.randint(1, T + 1, (N,)).tolist())
    zoneout = _zoneout(cell, T, N, "bernoulli")
    got = _results(lambda xp: fast.scan(cell, xp, state, mask, zoneout=zoneout), cell, x, state)
    want = _results(lambda xp: scan(cell, xp, state, mask, zoneout=zoneout), cell, x, state)
    _assert_close(got, want)


@needs_kernels
@pytest.mark.parametrize("kind", ["gru-before", "peephole-ln-proj"])
def test_fast_gradcheck(kind: str) -> None:
    cell = _randomize({**CELLS, **PROJ_LSTMS}[kind](2, 3, dtype=F64))
    T, N = 4, 2
    mask = _mask(T, [4, 2])
    zoneout = _zoneout(cell, T, N, "fractional")
    xp = torch.randn(T, N, cell.weight_ih.shape[0], dtype=F64, requires_grad=True)
    state = _parts(_state(cell, N))
    params = [p for p in cell.parameters() if p is not cell.weight_ih and p is not cell.bias_ih]

    def f(xp: Tensor, *inputs: Tensor) -> tuple[Tensor, ...]:
        s = tuple(inputs[: len(state)]) if cell.state_is_tuple else inputs[0]
        out, final = fast.scan(cell, xp, s, mask, zoneout=zoneout)
        return (out, *_parts(final))

    assert torch.autograd.gradcheck(f, (xp, *state, *params))


@needs_kernels
@pytest.mark.parametrize("kind", ["gru-after", "peephole-ln-proj"])
def test_fast_higher_order_gradients_recompute_with_zoneout(kind: str) -> None:
    """create_graph=True recomputes through the reference loop: with the same weights (first
    and second derivatives equal the reference's)."""
    cell = _randomize({**CELLS, **PROJ_LSTMS}[kind](2, 3, dtype=F64))
    T, N = 4, 2
    mask = _mask(T, [4, 3])
    zoneout = _zoneout(cell, T, N, "fractional")
    state = _state(cell, N)
    x = torch.randn(T, N, 2, dtype=F64, requires_grad=True)
    wrt = [x, *_parts(state), *cell.parameters()]

    def derivatives(run: Callable[[Tensor], Tensor]) -> list[Tensor]:
        out = run(cell.input_projection(x))
        first = torch.autograd.grad(out.square().sum(), wrt, create_graph=True)
        second = torch.autograd.grad(sum(g.square().sum() for g in first), wrt)
        return [*first, *second]

    got = derivatives(lambda xp: fast.scan(cell, xp, state, mask, x, zoneout)[0])
    want = derivatives(lambda xp: scan(cell, xp, state, mask, zoneout=zoneout)[0])
    _assert_close(got, want)


@needs_kernels
def test_low_precision_runs_in_float32() -> None:
    cell = _randomize(LSTMCell(3, 8, peephole=True, forget_bias=None))
    T, N = 7, 3
    x = torch.randn(T, N, 3)
    zh, zc = (z.float() for z in _zoneout(cell, T, N, "bernoulli"))
    mask = _mask(T, [7, 4, 1])
    cell.to(torch.bfloat16)
    xp = cell.input_projection(x.bfloat16())
    state = (torch.zeros(N, 8, dtype=torch.bfloat16),) * 2
    out, (h, c) = fast.scan(cell, xp, state, mask, zoneout=(zh.bfloat16(), zc.bfloat16()))
    cell.float()  # the same (bfloat16-valued) weights in float32
    want, (wh, wc) = fast.scan(cell, xp.float(), (state[0].float(),) * 2, mask, zoneout=(zh, zc))
    assert out.dtype == torch.bfloat16
    for a, b in ((out, want), (h, wh), (c, wc)):
        assert torch.equal(a, b.bfloat16())


# -- the minimal RNNs' parallel scan against the reference loop ---------------------------------


# "fractional": weights anywhere in [0, 1], exact 0s and 1s among them (the logs' ends)
@pytest.mark.parametrize("weights", ["bernoulli", "fractional"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("use_g", [False, True], ids=["nog", "g"])
@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_parallel_scan_equals_reference(name: str, use_g: bool, masked: bool, weights: str) -> None:
    factory = {"mingru": MinGRUCell, "minlstm": MinLSTMCell}[name]
    cell = _randomize(factory(3, 5, g=use_g, dtype=F64), 1.0)
    T, N = 70, 4  # more than one of linear_scan's chunks
    x = torch.randn(T, N, 3, dtype=F64, requires_grad=True)
    state, mask = _state(cell, N), _mask(T, [70, 9, 64, 1] if masked else None)
    zoneout = _zoneout(cell, T, N, weights)
    got = _results(lambda xp: cell.parallel_scan(xp, state, mask, zoneout), cell, x, state)
    want = _results(lambda xp: scan(cell, xp, state, mask, zoneout=zoneout), cell, x, state)
    _assert_close(got, want)


def test_zoned_coefficients_are_exact_at_the_ends() -> None:
    log_a = torch.linspace(-30, 0, 12, dtype=F64).requires_grad_()
    b = torch.linspace(-2, 2, 12, dtype=F64)
    z = torch.tensor([0.0, 1.0] * 6, dtype=F64)
    za, zb = zoned_coefficients(log_a, b, z)
    zeros = torch.zeros(6, dtype=F64)
    assert torch.equal(za[0::2], log_a[0::2].detach()) and torch.equal(za[1::2], zeros)
    assert torch.equal(zb[0::2], b[0::2]) and torch.equal(zb[1::2], zeros)
    (grad,) = torch.autograd.grad(za.sum(), log_a)
    assert torch.equal(grad, 1 - z)  # no NaN from the infinite logs of z
    p = torch.full((12,), 0.3, dtype=F64)
    want = torch.log(0.3 + 0.7 * log_a.detach().exp())
    torch.testing.assert_close(zoned_coefficients(log_a, b, p)[0], want, rtol=0, atol=1e-15)


# -- the custom operator: opcheck and torch.compile --------------------------------------------


def _op_args(cell: RecurrentCell, masked: bool, save: bool) -> tuple:
    T, N = 5, 2
    spec = cell_spec(cell)
    xp = torch.randn(T, N, cell.weight_ih.shape[0], dtype=F64, requires_grad=save)
    h0 = torch.randn(N, cell.output_size, dtype=F64, requires_grad=save)
    c0 = None
    if cell.state_is_tuple:
        c0 = torch.randn(N, cell.hidden_size, dtype=F64, requires_grad=save)
    mask = (torch.arange(T).unsqueeze(1) < torch.tensor([5, 3])).to(torch.uint8) if masked else None
    params = [spec.weight_hh, *spec.params]
    if not save:
        params = [None if p is None else p.detach() for p in params]
    zh, zc = _zoneout(cell, T, N, "bernoulli")
    return (spec.kind, list(spec.eps), save, xp, h0, c0, params[0], mask, *params[1:], zh, zc)


@needs_kernels
@pytest.mark.parametrize("kind", [*CELLS, *PROJ_LSTMS])
def test_custom_op_with_zoneout_passes_opcheck(kind: str) -> None:
    cell = {**CELLS, **PROJ_LSTMS}[kind](3, 4, dtype=F64)
    for masked in (False, True):
        for save in (False, True):
            torch.library.opcheck(scan_op, _op_args(cell, masked, save))


@needs_kernels
@pytest.mark.parametrize("kind", ["peephole-ln-proj", "gru-before"])
def test_compiled_fullgraph_equals_eager(kind: str) -> None:
    cell = _randomize({**CELLS, **PROJ_LSTMS}[kind](3, 5, layer_norm=True, dtype=F64))
    T, N = 6, 4
    x = torch.randn(T, N, 3, dtype=F64, requires_grad=True)
    state, mask = _state(cell, N), _mask(T, LENGTHS)
    zoneout = _zoneout(cell, T, N, "bernoulli")

    def run(xp: Tensor) -> tuple:
        return fast.scan(cell, xp, state, mask, zoneout=zoneout)

    torch._dynamo.reset()
    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    try:
        _assert_close(_results(compiled, cell, x, state), _results(run, cell, x, state), 1e-12)
    finally:
        torch._dynamo.reset()


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zoneout", "message"),
    [
        ("zh", "must be a pair"),
        ((torch.zeros(6, 4, 4, dtype=F64), None), r"\(T, N, size\) = \(6, 4, 5\)"),
        ((torch.zeros(6, 4, 5), None), "must be torch.float64"),
        ((None, torch.zeros(6, 4, 5, dtype=F64)), "cell state"),
        ((0.5, None), "must be a tensor or None"),
    ],
)
def test_bad_weights_are_one_line_errors(zoneout: object, message: str) -> None:
    x, h0 = torch.randn(6, 4, 3, dtype=F64), torch.zeros(4, 5, dtype=F64)
    cell, mingru = GRUCell(3, 5, dtype=F64), MinGRUCell(3, 5, dtype=F64)
    xp = cell.input_projection(x)
    runs = [
        lambda: scan(cell, xp, h0, zoneout=zoneout),
        lambda: mingru.parallel_scan(mingru.input_projection(x), h0, None, zoneout),
    ]
    if fast.is_available():
        runs.append(lambda: fast.scan(cell, xp, h0, zoneout=zoneout))
    for run in runs:
        with pytest.raises(RnnlabError, match=message):
            run()
