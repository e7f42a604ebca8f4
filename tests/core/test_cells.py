"""Cells against independent gate-by-gate oracles, torch.nn's cells, and their own contract."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from rnnlab.core.cells import AdditiveCell, ElmanCell, GRUCell, LSTMCell, MinimalGRUCell
from tests.core.oracle import CELL_KINDS, OPTIONS, naive_step, option_id, randomize

N, D, H = 3, 4, 3
F64 = torch.float64


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-12) -> None:
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def _close_state(a, b, tol: float = 1e-12) -> None:
    assert isinstance(a, tuple) == isinstance(b, tuple)
    for x, y in zip(a, b) if isinstance(a, tuple) else [(a, b)]:
        _close(x, y, tol)


def _random_state(cell, n: int = N):
    if isinstance(cell, LSTMCell):
        return (torch.randn(n, H, dtype=F64), torch.randn(n, H, dtype=F64))
    return torch.randn(n, H, dtype=F64)


@pytest.mark.parametrize(("ln", "bias"), OPTIONS, ids=[option_id(*o) for o in OPTIONS])
@pytest.mark.parametrize("kind", list(CELL_KINDS))
def test_cell_matches_oracle(kind: str, ln: bool, bias: bool) -> None:
    cell = randomize(CELL_KINDS[kind](D, H, bias=bias, layer_norm=ln, dtype=F64))
    state = ref_state = _random_state(cell)
    for _ in range(3):  # several steps: each from its own previous state
        x = torch.randn(N, D, dtype=F64)
        h, state = cell(x, state)
        ref_h, ref_state = naive_step(cell, x, ref_state)
        _close(h, ref_h)
        _close_state(state, ref_state)
    assert h.shape == (N, H)


@pytest.mark.parametrize("kind", list(CELL_KINDS))
def test_parameter_layout_is_torch_like(kind: str) -> None:
    G = {"elman-tanh": 1, "elman-relu": 1, "additive": 1, "minimal-gru": 2, "gru-after": 3}.get(
        kind, 3 if kind in ("gru-before", "lstm-nofg", "peephole-nofg") else 4
    )
    cell = CELL_KINDS[kind](D, H, layer_norm=True)
    shapes = {name: tuple(p.shape) for name, p in cell.named_parameters()}
    assert shapes["weight_ih"] == (G * H, D)
    assert shapes["weight_hh"] == (G * H, H)
    assert shapes["bias_ih"] == shapes["bias_hh"] == (G * H,)
    assert cell.num_gates == G
    if kind.startswith("peephole"):
        assert shapes["weight_ci"] == shapes["weight_co"] == (H,)
        assert ("weight_cf" in shapes) == (kind == "peephole")
    no_bias = CELL_KINDS[kind](D, H, bias=False)
    assert not any("bias" in name for name, _ in no_bias.named_parameters())


@pytest.mark.parametrize("kind", list(CELL_KINDS))
def test_step_contract_and_initial_state(kind: str) -> None:
    cell = randomize(CELL_KINDS[kind](D, H, layer_norm=True, dtype=F64))
    x = torch.randn(N, D, dtype=F64)
    s0 = cell.initial_state(N)
    parts = s0 if isinstance(s0, tuple) else (s0,)
    assert len(parts) == (2 if isinstance(cell, LSTMCell) else 1)
    for p in parts:
        assert p.shape == (N, H) and p.dtype == F64 and not p.any()
    # state None means zeros; the step split lets a layer hoist the input projection
    h_none, s_none = cell(x)
    h, s = cell(x, s0)
    _close(h_none, h, 0.0)
    _close_state(s_none, s, 0.0)
    h2, s2 = cell.step(cell.input_projection(x), s0)
    _close(h2, h, 0.0)
    _close_state(s2, s, 0.0)
    # input_projection on any leading shape equals step by step
    seq = torch.randn(5, N, D, dtype=F64)
    _close(cell.input_projection(seq)[2], cell.input_projection(seq[2]))
    assert cell.initial_state(2, dtype=torch.float32)[0].dtype == torch.float32


def test_gate_diagnostics() -> None:
    x = torch.randn(N, D)
    lstm = LSTMCell(D, H)
    gates = lstm.gates(x, lstm.initial_state(N))
    assert set(gates) == {"i", "f", "g", "o"}
    nofg = LSTMCell(D, H, forget_gate=False, forget_bias=None)
    assert set(nofg.gates(x, nofg.initial_state(N))) == {"i", "g", "o"}
    gru = GRUCell(D, H)
    assert set(gru.gates(x, torch.zeros(N, H))) == {"r", "z"}
    assert set(MinimalGRUCell(D, H).gates(x, torch.zeros(N, H))) == {"u"}
    for name in ("i", "f", "o"):
        assert ((gates[name] > 0) & (gates[name] < 1)).all()


@pytest.mark.parametrize("forget_bias", [1.0, 0.0, -0.5, 3.0])
def test_forget_bias_init(forget_bias: float) -> None:
    cell = LSTMCell(D, H, forget_bias=forget_bias, peephole=True, dtype=F64)
    assert (cell.bias_ih[H : 2 * H] == forget_bias).all()
    assert (cell.bias_hh[H : 2 * H] == 0).all()
    # the other gates keep torch's uniform init
    k = 1 / math.sqrt(H)
    for b in (cell.bias_ih, cell.bias_hh):
        others = torch.cat([b[:H], b[2 * H :]])
        assert (others.abs() <= k).all() and others.unique().numel() == others.numel()
    # reset_parameters re-applies it
    with torch.no_grad():
        cell.bias_ih.zero_()
    cell.reset_parameters()
    assert (cell.bias_ih[H : 2 * H] == forget_bias).all()
    # and the initialised cell (not randomised) still equals the oracle
    x, state = torch.randn(N, D, dtype=F64), _random_state(cell)
    h, s = cell(x, state)
    ref_h, ref_s = naive_step(cell, x, state)
    _close(h, ref_h)
    _close_state(s, ref_s)


def test_forget_bias_none_keeps_uniform_init() -> None:
    cell = LSTMCell(D, H, forget_bias=None)
    f_slice = cell.bias_ih[H : 2 * H]
    assert f_slice.unique().numel() == H and (f_slice.abs() <= 1 / math.sqrt(H)).all()
    assert LSTMCell(D, H).forget_bias == 1.0  # the default (Jozefowicz et al. 2015)


def test_forget_bias_needs_bias_and_forget_gate() -> None:
    with pytest.raises(ValueError, match="forget_bias needs bias=True"):
        LSTMCell(D, H, bias=False)
    with pytest.raises(ValueError, match="forget_bias needs forget_gate=True"):
        LSTMCell(D, H, forget_gate=False)
    with pytest.raises(ValueError, match="forget_bias needs forget_gate=True"):
        LSTMCell(D, H, forget_gate=False, forget_bias=2.0)
    LSTMCell(D, H, bias=False, forget_bias=None)
    LSTMCell(D, H, forget_gate=False, forget_bias=None)


def test_gru_z_convention_equals_torch_grucell() -> None:
    ours = randomize(GRUCell(D, H, reset="after", dtype=F64))
    ref = torch.nn.GRUCell(D, H, dtype=F64)
    ref.load_state_dict(ours.state_dict())
    x, h = torch.randn(N, D, dtype=F64), torch.randn(N, H, dtype=F64)
    out, state = ours(x, h)
    _close(out, ref(x, h))
    _close(state, out, 0.0)
    # z is the fraction of the old state kept: z -> 1 keeps h
    with torch.no_grad():
        ours.bias_ih[H : 2 * H] = 50.0
    _close(ours(x, h)[0], h, 1e-15)


def test_lstm_and_elman_equal_torch_cells() -> None:
    x = torch.randn(N, D, dtype=F64)
    lstm = randomize(LSTMCell(D, H, dtype=F64))
    ref = torch.nn.LSTMCell(D, H, dtype=F64)
    ref.load_state_dict(lstm.state_dict())
    state = (torch.randn(N, H, dtype=F64), torch.randn(N, H, dtype=F64))
    h, (h2, c) = lstm(x, state)
    ref_h, ref_c = ref(x, state)
    _close(h, ref_h)
    _close(h2, ref_h)
    _close(c, ref_c)
    for nonlinearity in ("tanh", "relu"):
        elman = randomize(ElmanCell(D, H, nonlinearity=nonlinearity, dtype=F64))
        ref = torch.nn.RNNCell(D, H, nonlinearity=nonlinearity, dtype=F64)
        ref.load_state_dict(elman.state_dict())
        s = torch.randn(N, H, dtype=F64)
        _close(elman(x, s)[0], ref(x, s))


def test_additive_state_accumulates() -> None:
    cell = AdditiveCell(D, H, dtype=F64)
    s = torch.randn(N, H, dtype=F64)
    out, new = cell(torch.randn(N, D, dtype=F64), s)
    assert torch.equal(out, new)
    assert ((new - s).abs() < 1).all()  # s_t - s_{t-1} = tanh(...)


def test_reset_parameters_is_torch_init() -> None:
    cell = randomize(LSTMCell(D, H, layer_norm=True, peephole=True, forget_bias=None), 5.0)
    cell.reset_parameters()
    k = 1 / math.sqrt(H)
    for name, p in cell.named_parameters():
        if name.startswith("ln_"):
            expected = 1.0 if name.endswith("weight") else 0.0
            assert (p == expected).all(), name
        else:
            assert (p.abs() <= k).all(), name


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (partial(ElmanCell, D, H, nonlinearity="sigmoid"), "nonlinearity must be 'tanh' or 'relu'"),
        (partial(GRUCell, D, H, reset="middle"), "reset must be 'after' or 'before'"),
        (partial(LSTMCell, -1, H), "input_size must be a positive integer, got -1"),
        (partial(GRUCell, D, 0), "hidden_size must be a positive integer, got 0"),
        (partial(ElmanCell, D, 2.5), "hidden_size must be a positive integer, got 2.5"),
        (partial(AdditiveCell, True, H), "input_size must be a positive integer, got True"),
    ],
)
def test_bad_cell_options(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_extra_repr_names_options() -> None:
    text = repr(LSTMCell(D, H, peephole=True, layer_norm=True, bias=False, forget_bias=None))
    assert "peephole=True" in text and "layer_norm=True" in text and "bias=False" in text
    assert "reset='before'" in repr(GRUCell(D, H, reset="before"))
    assert "nonlinearity='relu'" in repr(ElmanCell(D, H, nonlinearity="relu"))
