"""LSTM with projections (``proj_size``, Sak, Senior & Beaufays 2014) for every LSTM variant.

Oracles: torch.nn.LSTM(proj_size=P) with copied weights for the standard configuration (outputs,
states, every gradient, float64), the equations written out (tests/core/oracle.py's
``naive_step`` and ``h = W_hr m``) for every variant's step, the reference loop for the C++ fast
path (outputs, final states, every gradient to 1e-10 in float64), and a numeric gradient check
of the fast path.
"""

from __future__ import annotations

import os
import shutil
from functools import partial

import pytest
import torch
from torch import Tensor
from torch.autograd import gradcheck
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnlab.nn
from rnnlab.core import fast
from rnnlab.core.backend import use_backend
from rnnlab.core.cells import LSTMCell
from rnnlab.core.layers import Recurrent, scan
from rnnlab.errors import RnnlabError
from tests.core.oracle import naive_step, randomize

F64 = torch.float64
D, H, P, N, T = 3, 5, 2, 4, 6
HAVE_COMPILER = shutil.which(os.environ.get("CXX", "c++")) is not None
needs_kernels = pytest.mark.skipif(not HAVE_COMPILER, reason="no C++ compiler here")

#: every LSTM variant (forget_bias=None so that bias=False is valid too)
VARIANTS = {
    "lstm": {},
    "nofg": {"forget_gate": False},
    "peephole": {"peephole": True},
    "peephole-nofg": {"peephole": True, "forget_gate": False},
}
OPTIONS = [(ln, bias) for ln in (False, True) for bias in (True, False)]


def _cell(variant: str, ln: bool = False, bias: bool = True, **kw: object) -> partial:
    opts = {**VARIANTS[variant], "layer_norm": ln, "bias": bias, "forget_bias": None}
    return partial(LSTMCell, proj_size=P, **opts, **kw)


def _random_state(LK: int, N: int) -> tuple[Tensor, Tensor]:
    h = 0.5 * torch.randn(LK, N, P, dtype=F64)
    c = 0.5 * torch.randn(LK, N, H, dtype=F64)
    return h.requires_grad_(), c.requires_grad_()


def _grads(out: Tensor, final: tuple[Tensor, Tensor], leaves: list[Tensor]) -> list[Tensor]:
    """The gradients of a fixed random projection of the outputs and final states."""
    g = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in (out, *final))
    return list(torch.autograd.grad(loss, leaves))


def _assert_all_close(got: list[Tensor], want: list[Tensor], tol: float) -> None:
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape, f"result {k}: shape {tuple(a.shape)} != {tuple(b.shape)}"
        err = (a - b).abs().max().item()
        assert err <= tol, f"result {k}: max error {err:.3g}"


# -- the cell ---------------------------------------------------------------------------------


def test_cell_parameters_state_and_repr() -> None:
    cell = LSTMCell(D, H, proj_size=P, peephole=True)
    assert cell.weight_hr.shape == (P, H) and cell.weight_hh.shape == (4 * H, P)
    assert cell.output_size == P and LSTMCell(D, H).output_size == H
    assert [n for n, _ in cell.named_parameters()][:5] == [
        "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr",
    ]  # fmt: skip
    h, c = cell.initial_state(N)
    assert h.shape == (N, P) and c.shape == (N, H) and not h.any() and not c.any()
    assert "proj_size=2" in repr(cell)
    assert LSTMCell(D, H).weight_hr is None
    # torch's init: every weight ~ U(-1/sqrt(H), 1/sqrt(H)), W_hr included
    w = LSTMCell(D, 400, proj_size=300).weight_hr
    assert 0.049 < w.abs().max() <= 0.05


@pytest.mark.parametrize(
    ("proj_size", "match"),
    [
        (-1, r"proj_size must be a non-negative integer \(0: no projection\), got -1"),
        (2.0, r"proj_size must be a non-negative integer .* got 2.0"),
        (True, r"proj_size must be a non-negative integer .* got True"),
        (H, r"proj_size must be smaller than hidden_size \(5\), got 5"),
        (9, r"proj_size must be smaller than hidden_size \(5\), got 9"),
    ],
)
def test_bad_proj_size(proj_size: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LSTMCell(D, H, proj_size=proj_size)
    with pytest.raises(ValueError):  # the drop-in may word it as torch does
        rnnlab.nn.LSTM(D, H, proj_size=proj_size)


@pytest.mark.parametrize(("ln", "bias"), OPTIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cell_step_is_the_equations(variant: str, ln: bool, bias: bool) -> None:
    """One step against the equations written out: m = o tanh(LN(c)) (the unprojected cell's
    output, oracle.naive_step), h = W_hr m; c is not projected."""
    cell = randomize(_cell(variant, ln, bias)(D, H, dtype=F64))
    x = torch.randn(N, D, dtype=F64)
    state = (torch.randn(N, P, dtype=F64), torch.randn(N, H, dtype=F64))
    m, (_, c_want) = naive_step(cell, x, state)
    h, (h2, c) = cell(x, state)
    assert h is h2 and h.shape == (N, P)
    _assert_all_close([h, c], [m @ cell.weight_hr.t(), c_want], 1e-12)


# -- torch.nn parity ------------------------------------------------------------------------


def _torch_pair(**kw: object) -> tuple[torch.nn.LSTM, rnnlab.nn.LSTM]:
    theirs = torch.nn.LSTM(D, H, proj_size=P, dtype=F64, **kw)
    ours = rnnlab.nn.LSTM(D, H, proj_size=P, dtype=F64, **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [v.shape for v in ours.state_dict().values()] == [
        v.shape for v in theirs.state_dict().values()
    ]
    randomize(theirs, 0.6)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _run(module: torch.nn.Module, x: Tensor | PackedSequence, hx: tuple | None) -> list[Tensor]:
    """Outputs, final states, and the gradients w.r.t. the input, hx and every parameter (by
    torch's names, in torch's order)."""
    packed = isinstance(x, PackedSequence)
    data = (x.data if packed else x).detach().requires_grad_()
    x = x._replace(data=data) if packed else data
    hx = None if hx is None else tuple(t.detach().requires_grad_() for t in hx)
    out, final = module(x, hx)
    out = out.data if packed else out
    params = list(module.state_dict(keep_vars=True).values())
    return [out, *final, *_grads(out, final, [data, *(hx or ()), *params])]


@pytest.mark.parametrize("backend", ["auto", "fast", "reference"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_parity_with_torch(num_layers, bidirectional, batch_first, bias, backend) -> None:
    if backend == "fast" and not HAVE_COMPILER:
        pytest.skip("no C++ compiler here")
    kw = {"num_layers": num_layers, "bidirectional": bidirectional, "batch_first": batch_first}
    theirs, ours = _torch_pair(bias=bias, **kw)
    x = torch.randn((N, T, D) if batch_first else (T, N, D), dtype=F64)
    LK = num_layers * (2 if bidirectional else 1)
    hx = _random_state(LK, N)
    with use_backend(backend):
        assert ours.backend_for(x) == ("torch" if backend == "auto" else backend)
        for state in (hx, None):
            want = _run(theirs, x, state)
            got = _run(ours, x, state)
            assert got[0].shape[-1] == P * (2 if bidirectional else 1)
            _assert_all_close(got, want, 1e-10)
        # unbatched input (T, D), state (L*K, P) and (L*K, H)
        x1, hx1 = x[0] if batch_first else x[:, 0], (hx[0][:, 0], hx[1][:, 0])
        _assert_all_close(_run(ours, x1, hx1), _run(theirs, x1, hx1), 1e-10)


@pytest.mark.parametrize("backend", ["auto", "fast", "reference"])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_parity_with_torch_packed(enforce_sorted: bool, backend: str) -> None:
    """Variable lengths as a PackedSequence: each sequence as if alone, as torch computes it."""
    if backend == "fast" and not HAVE_COMPILER:
        pytest.skip("no C++ compiler here")
    theirs, ours = _torch_pair(num_layers=2, bidirectional=True)
    lengths = torch.tensor([6, 5, 3, 1] if enforce_sorted else [3, 6, 1, 5])
    x = pack_padded_sequence(torch.randn(T, N, D, dtype=F64), lengths,
                             enforce_sorted=enforce_sorted)  # fmt: skip
    with use_backend(backend):
        for state in (_random_state(4, N), None):
            _assert_all_close(_run(ours, x, state), _run(theirs, x, state), 1e-10)


def test_torch_state_dict_round_trip() -> None:
    """rnnlab -> torch: the layout and the values are torch's."""
    ours = randomize(rnnlab.nn.LSTM(D, H, 2, bidirectional=True, proj_size=P, dtype=F64))
    theirs = torch.nn.LSTM(D, H, 2, bidirectional=True, proj_size=P, dtype=F64)
    theirs.load_state_dict(ours.state_dict())
    assert ours.weight_hr_l1_reverse is ours.cell_at(1, 1).weight_hr and ours.proj_size == P
    x = torch.randn(T, N, D, dtype=F64)
    _assert_all_close(_run(ours, x, None), _run(theirs, x, None), 1e-10)


# -- the fast path against the reference loop ------------------------------------------------


def _scan_results(cell: LSTMCell, x: Tensor, state: tuple, mask: Tensor | None, use_fast: bool):
    xp = cell.input_projection(x)
    out, final = fast.scan(cell, xp, state, mask) if use_fast else scan(cell, xp, state, mask)[:2]
    return [out, *final, *_grads(out, final, [x, *state, *cell.parameters()])]


@needs_kernels
@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize(("ln", "bias"), OPTIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fast_scan_equals_reference(variant: str, ln: bool, bias: bool, masked: bool) -> None:
    cell = randomize(_cell(variant, ln, bias)(D, H, dtype=F64))
    x = torch.randn(T, N, D, dtype=F64, requires_grad=True)
    h0, c0 = (s[0] for s in _random_state(1, N))
    state = (h0.detach().requires_grad_(), c0.detach().requires_grad_())
    lengths = torch.tensor([6, 2, 5, 1])
    mask = (torch.arange(T)[:, None] < lengths[None]).unsqueeze(-1) if masked else None
    assert fast.supports(cell, x)
    got = _scan_results(cell, x, state, mask, use_fast=True)
    want = _scan_results(cell, x, state, mask, use_fast=False)
    _assert_all_close(got, want, 1e-10)
    assert got[0].shape == (T, N, P) and got[1].shape == (N, P) and got[2].shape == (N, H)


@needs_kernels
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fast_layer_equals_reference(variant: str) -> None:
    """Stacked, bidirectional, lengths, with forget_bias and layer norm: Recurrent on the fast
    path (its default for these cells) against the reference loop."""
    forget = VARIANTS[variant].get("forget_gate", True)
    cell = partial(LSTMCell, proj_size=P, layer_norm=True, forget_bias=1.0 if forget else None,
                   **VARIANTS[variant])  # fmt: skip
    rnn = Recurrent(cell, D, H, num_layers=2, bidirectional=True, dtype=F64)
    randomize(rnn, 0.6)
    x = torch.randn(N, T, D, dtype=F64, requires_grad=True)
    state = _random_state(4, N)
    lengths = torch.tensor([6, 2, 5, 1])
    leaves = [x, *state, *rnn.parameters()]
    results = []
    for backend in ("auto", "reference"):
        with use_backend(backend):
            assert rnn.backend_for(x.transpose(0, 1)) == ("fast" if backend == "auto" else backend)
            out, final = rnn(x, state, lengths=lengths)
            results.append([out, *final, *_grads(out, final, leaves)])
    _assert_all_close(*results, 1e-10)
    assert results[0][0].shape == (N, T, 2 * P)
    assert not results[0][0][3, 1:].any()  # past a sequence's end the output is zero


@needs_kernels
def test_rows_over_threads_and_weight_gradients_in_chunks() -> None:
    """Many rows: steps split over threads, dW_hh and dW_hr accumulated over chunks of steps
    (kernels.h: kChunkRows), with and without layer norm."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for ln in (False, True):
            cell = randomize(_cell("peephole", ln)(8, 48, dtype=F64), 0.5)
            x = torch.randn(7, 160, 8, dtype=F64, requires_grad=True)
            state = (torch.randn(160, P, dtype=F64, requires_grad=True),
                     torch.randn(160, 48, dtype=F64, requires_grad=True))  # fmt: skip
            lengths = torch.tensor([7] * 60 + [3] * 50 + [1] * 50)
            mask = (torch.arange(7)[:, None] < lengths[None]).unsqueeze(-1)
            got = _scan_results(cell, x, state, mask, use_fast=True)
            want = _scan_results(cell, x, state, mask, use_fast=False)
            _assert_all_close(got, want, 1e-10)
    finally:
        torch.set_num_threads(before)


@needs_kernels
@pytest.mark.parametrize("variant", ["lstm", "peephole-nofg"])
def test_fast_gradcheck(variant: str) -> None:
    """Numeric gradients of the fast path (bidirectional, lengths, layer norm) w.r.t. the
    input, the initial state and every parameter."""
    rnn = Recurrent(_cell(variant, ln=variant != "lstm"), 2, 3, bidirectional=True, dtype=F64)
    randomize(rnn, 0.6)
    # P = 2 < H = 3
    names = [name for name, _ in rnn.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in rnn.parameters()]
    x = torch.randn(3, 3, 2, dtype=F64, requires_grad=True)
    h0 = (0.5 * torch.randn(2, 3, P, dtype=F64)).requires_grad_()
    c0 = (0.5 * torch.randn(2, 3, 3, dtype=F64)).requires_grad_()
    lengths = torch.tensor([3, 1, 2])

    def f(x: Tensor, h0: Tensor, c0: Tensor, *ps: Tensor) -> tuple[Tensor, ...]:
        kwargs = {"state": (h0, c0), "lengths": lengths}
        out, (h, c) = functional_call(rnn, dict(zip(names, ps)), (x,), kwargs)
        return out, h, c

    with use_backend("fast"):
        assert rnn.backend_for(x.transpose(0, 1)) == "fast"
        assert gradcheck(f, (x, h0, c0, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


@needs_kernels
def test_fast_path_without_grad_and_float32() -> None:
    """Inference (no saved buffers, ping-pong states, with and without lengths) and float32."""
    rnn = Recurrent(_cell("peephole", ln=True), D, 16, num_layers=2, dtype=torch.float32)
    x = torch.randn(N, 9, D)
    lengths = torch.tensor([9, 4, 7, 1])
    for lens in (None, lengths):
        with torch.no_grad():
            got = rnn(x, lengths=lens)
            with use_backend("reference"):
                want = rnn(x, lengths=lens)
        _assert_all_close([got[0], *got[1]], [want[0], *want[1]], 1e-5)


# -- the layer ------------------------------------------------------------------------------


def test_layer_state_shapes_and_errors() -> None:
    rnn = Recurrent(partial(LSTMCell, proj_size=P), D, H, num_layers=2, bidirectional=True,
                    return_states=True)  # fmt: skip
    assert rnn.output_size == P and rnn.cell_at(1).input_size == 2 * P
    out, (h, c), (hs, cs) = rnn(torch.randn(N, T, D))
    assert out.shape == (N, T, 2 * P) and h.shape == (4, N, P) and c.shape == (4, N, H)
    assert hs.shape == (4, N, T, P) and cs.shape == (4, N, T, H)
    with pytest.raises(ValueError, match=r"state shape mismatch: expected \(4, 4, 2\)"):
        rnn(torch.randn(N, T, D), (torch.zeros(4, N, H), torch.zeros(4, N, H)))
    with pytest.raises(ValueError, match=r"state shape mismatch: expected \(4, 4, 5\)"):
        rnn(torch.randn(N, T, D), (torch.zeros(4, N, P), torch.zeros(4, N, P)))
    step = Recurrent(partial(LSTMCell, proj_size=P), D, H, num_layers=2)
    out, (h, c) = step.step(torch.randn(N, D))
    assert out.shape == (N, P) and h.shape == (2, N, P) and c.shape == (2, N, H)


def test_torch_backend_needs_the_standard_cell() -> None:
    rnn = Recurrent(_cell("peephole"), D, H, backend="torch")
    with pytest.raises(RnnlabError, match="backend 'torch' cannot run this layer"):
        rnn(torch.randn(N, T, D))
