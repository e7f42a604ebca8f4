"""``rnnlab.nn`` drop-ins against ``torch.nn`` with copied weights, and against the oracle."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import partial

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnlab.nn
from tests.core.oracle import PATHS, naive_recurrent, on_path, randomize

D, H, N, T = 3, 4, 3, 5
PAIRS = {
    "rnn-tanh": (rnnlab.nn.RNN, torch.nn.RNN),
    "rnn-relu": (
        partial(rnnlab.nn.RNN, nonlinearity="relu"),
        partial(torch.nn.RNN, nonlinearity="relu"),
    ),
    "gru": (rnnlab.nn.GRU, torch.nn.GRU),
    "lstm": (rnnlab.nn.LSTM, torch.nn.LSTM),
}
TOLS = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    with on_path(request.param):
        yield request.param


def _parts(state) -> tuple:
    return state if isinstance(state, tuple) else (state,)


def _close(a, b, tol: float) -> None:
    for x, y in zip(_parts(a), _parts(b), strict=True):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol)


def _state(m: torch.nn.Module, N: int | None, dtype: torch.dtype):
    shape = (m.num_layers * (2 if m.bidirectional else 1), *(() if N is None else (N,)), H)
    parts = tuple(torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(2))
    return parts if _is_lstm(m) else parts[0]


def _is_lstm(m: torch.nn.Module) -> bool:
    return isinstance(m, (torch.nn.LSTM, rnnlab.nn.LSTM))


def _run_with_grads(m: torch.nn.Module, x, hx, seed: int = 0):
    """Forward, then backward of a random projection of every output: (outputs, grads)."""
    packed = isinstance(x, PackedSequence)
    data = (x.data if packed else x).detach().requires_grad_()
    x = x._replace(data=data) if packed else data
    hx = None if hx is None else tuple(p.detach().requires_grad_() for p in _parts(hx))
    out, final = m(x, hx if hx is None or _is_lstm(m) else hx[0])
    outputs = (out.data if packed else out, *_parts(final))
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs)
    inputs = [data, *(hx or ())]
    params = dict(m.state_dict(keep_vars=True))
    grads = torch.autograd.grad(loss, [*inputs, *params.values()])
    return outputs, dict(zip(["x", "h0", "c0"][: len(inputs)] + list(params), grads))


def _assert_same(ours, theirs, x, hx, tol: float) -> None:
    ours_out, ours_grads = _run_with_grads(ours, x, hx)
    ref_out, ref_grads = _run_with_grads(theirs, x, hx)
    _close(ours_out, ref_out, tol)
    assert list(ours_grads) == list(ref_grads)
    for name in ref_grads:
        torch.testing.assert_close(ours_grads[name], ref_grads[name], rtol=tol, atol=tol, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_parity_with_torch(kind, num_layers, bidirectional, batch_first, dtype) -> None:
    ours_cls, torch_cls = PAIRS[kind]
    kw = {"num_layers": num_layers, "bidirectional": bidirectional, "batch_first": batch_first}
    theirs = torch_cls(D, H, dtype=dtype, **kw)
    ours = ours_cls(D, H, dtype=dtype, **kw)
    tol = TOLS[dtype]
    x = torch.randn((N, T, D) if batch_first else (T, N, D), dtype=dtype)
    # torch -> rnnlab, identical keys
    assert ours.load_state_dict(theirs.state_dict()) is not None
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _assert_same(ours, theirs, x, _state(theirs, N, dtype), tol)
    _assert_same(ours, theirs, x, None, tol)
    # rnnlab -> torch
    randomize(ours)
    theirs.load_state_dict(ours.state_dict())
    _assert_same(ours, theirs, x, _state(theirs, N, dtype), tol)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_parity_without_bias(kind: str) -> None:
    ours_cls, torch_cls = PAIRS[kind]
    theirs = torch_cls(D, H, num_layers=2, bias=False, bidirectional=True, dtype=torch.float64)
    ours = ours_cls(D, H, num_layers=2, bias=False, bidirectional=True, dtype=torch.float64)
    ours.load_state_dict(theirs.state_dict())
    assert not any("bias" in key for key in ours.state_dict())
    x = torch.randn(T, N, D, dtype=torch.float64)
    _assert_same(ours, theirs, x, _state(theirs, N, torch.float64), 1e-10)


@pytest.mark.parametrize("enforce_sorted", [False, True])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_parity_packed_sequence(kind: str, enforce_sorted: bool) -> None:
    ours_cls, torch_cls = PAIRS[kind]
    theirs = torch_cls(D, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    ours = ours_cls(D, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    ours.load_state_dict(theirs.state_dict())
    lengths = [5, 3, 2] if enforce_sorted else [3, 5, 2]
    packed = pack_padded_sequence(
        torch.randn(T, N, D, dtype=torch.float64), lengths, False, enforce_sorted
    )
    _assert_same(ours, theirs, packed, _state(theirs, N, torch.float64), 1e-10)
    out, _ = ours(packed)
    ref, _ = theirs(packed)
    assert torch.equal(out.batch_sizes, ref.batch_sizes)
    for a, b in (
        (out.sorted_indices, ref.sorted_indices),
        (out.unsorted_indices, ref.unsorted_indices),
    ):
        assert (a is None and b is None) or torch.equal(a, b)
    padded, out_lengths = pad_packed_sequence(out)
    assert out_lengths.tolist() == lengths
    assert (padded[3:, 2] == 0).all()


@pytest.mark.parametrize("kind", list(PAIRS))
def test_parity_unbatched(kind: str) -> None:
    ours_cls, torch_cls = PAIRS[kind]
    theirs = torch_cls(D, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    ours = ours_cls(D, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, D, dtype=torch.float64)
    _assert_same(ours, theirs, x, _state(theirs, None, torch.float64), 1e-10)
    _assert_same(ours, theirs, x, None, 1e-10)
    out, final = ours(x)
    assert out.shape == (T, 2 * H) and _parts(final)[0].shape == (4, H)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_dropout_training_parity_with_torch(kind: str) -> None:
    """With rnnlab.core.fast off, standard drop-ins run torch's kernel: the same dropout masks."""
    ours_cls, torch_cls = PAIRS[kind]
    theirs = torch_cls(D, H, num_layers=3, dropout=0.4)
    ours = ours_cls(D, H, num_layers=3, dropout=0.4)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, N, D)
    with on_path("reference"):
        torch.manual_seed(3)
        out, _ = ours(x)
    torch.manual_seed(3)
    ref, _ = theirs(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.manual_seed(4)
    assert not torch.allclose(theirs(x)[0], ref)


def test_dropout_warning_for_one_layer() -> None:
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        rnnlab.nn.GRU(D, H, dropout=0.5)


# -- non-standard options: rnnlab's own implementation -----------------------------------------

EXTRAS = {
    "lstm-peephole": (
        partial(rnnlab.nn.LSTM, peephole=True),
        ["weight_ci", "weight_cf", "weight_co"],
    ),
    "lstm-ln": (
        partial(rnnlab.nn.LSTM, layer_norm=True),
        ["ln_ih_weight", "ln_hh_weight", "ln_cell_weight", "ln_cell_bias"],
    ),
    "lstm-nofg": (partial(rnnlab.nn.LSTM, forget_gate=False), []),
    "lstm-all": (
        partial(rnnlab.nn.LSTM, forget_gate=False, peephole=True, layer_norm=True, bias=False),
        ["weight_ci", "weight_co", "ln_ih_weight", "ln_cell_weight"],
    ),
    "gru-before": (partial(rnnlab.nn.GRU, reset="before"), []),
    "gru-before-ln": (
        partial(rnnlab.nn.GRU, reset="before", layer_norm=True),
        ["ln_hh_0_weight", "ln_hh_1_weight"],
    ),
    "gru-ln": (partial(rnnlab.nn.GRU, layer_norm=True), ["ln_ih_weight", "ln_hh_weight"]),
    "rnn-ln": (partial(rnnlab.nn.RNN, layer_norm=True), ["ln_ih_weight", "ln_hh_weight"]),
    "rnn-relu-ln": (partial(rnnlab.nn.RNN, nonlinearity="relu", layer_norm=True), ["ln_ih_weight"]),
}


@pytest.mark.parametrize("name", list(EXTRAS))
def test_non_standard_options_equal_oracle(name: str, path: str) -> None:
    factory, extra = EXTRAS[name]
    m = randomize(factory(D, H, num_layers=2, bidirectional=True, dtype=torch.float64))
    keys = list(m.state_dict())
    for base in extra:
        for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
            assert base + suffix in keys, (base + suffix, keys)
    assert not any(k.startswith("cells.") for k in keys)
    x = torch.randn(T, N, D, dtype=torch.float64)
    hx = _state(m, N, torch.float64)
    hx = tuple(p.detach() for p in hx) if isinstance(hx, tuple) else hx.detach()
    out, final = m(x, hx)
    ref_out, ref_final, _ = naive_recurrent(m, x, hx)
    _close(out, ref_out, 1e-12)
    _close(final, ref_final, 1e-12)
    # the state_dict round-trips into a fresh module, strictly
    fresh = factory(D, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    fresh.load_state_dict(m.state_dict())
    _close(fresh(x, hx)[0], out, 0.0)
    # and each torch-style name is an attribute, as in torch.nn
    for key, value in m.state_dict(keep_vars=True).items():
        assert getattr(m, key) is value


def test_options_change_the_computation() -> None:
    """With peepholes (or LN) the drop-in is not torch's LSTM any more: torch's weights alone
    do not load, and the same shared weights give different outputs."""
    theirs = torch.nn.LSTM(D, H, dtype=torch.float64)
    peephole = rnnlab.nn.LSTM(D, H, peephole=True, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="weight_ci_l0"):
        peephole.load_state_dict(theirs.state_dict())
    peephole.load_state_dict(
        {
            **theirs.state_dict(),
            **{k: torch.full((H,), 0.5) for k in ("weight_ci_l0", "weight_cf_l0", "weight_co_l0")},
        }
    )
    x = torch.randn(T, N, D, dtype=torch.float64)
    assert not torch.allclose(peephole(x)[0], theirs(x)[0])
    nested = torch.nn.Sequential(torch.nn.Linear(1, 1), rnnlab.nn.LSTM(D, H, peephole=True))
    torch_nested = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.LSTM(D, H))
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "1.weight_ci_l0"'):
        nested.load_state_dict(torch_nested.state_dict())
    ln = rnnlab.nn.GRU(D, H, layer_norm=True, dtype=torch.float64)
    ln.load_state_dict(torch.nn.GRU(D, H, dtype=torch.float64).state_dict(), strict=False)
    assert not torch.allclose(ln(x)[0], torch.nn.GRU(D, H, dtype=torch.float64)(x)[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dropout": "0.5"}, r"dropout must be a number in \[0, 1\), got '0.5'"),
        ({"dropout": 1.5, "num_layers": 2}, r"dropout must be a number in \[0, 1\), got 1.5"),
        ({"num_layers": 0}, r"num_layers must be a positive integer, got 0"),
        ({"hidden_size": -4}, r"hidden_size must be a positive integer, got -4"),
    ],
)
@pytest.mark.parametrize(
    "cls", [rnnlab.nn.RNN, rnnlab.nn.GRU, rnnlab.nn.LSTM], ids=["RNN", "GRU", "LSTM"]
)
def test_bad_drop_in_options(cls, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**{"input_size": D, "hidden_size": H, **kwargs})


def test_torch_api_surface() -> None:
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'gelu'"):
        rnnlab.nn.RNN(D, H, nonlinearity="gelu")
    with pytest.raises(ValueError, match="reset must be 'after' or 'before'"):
        rnnlab.nn.GRU(D, H, reset="sometimes")
    # torch.nn's positional order: input, hidden, layers, bias, batch_first, dropout, bidirectional
    ours = rnnlab.nn.LSTM(D, H, 2, False, True, 0.0, True)
    theirs = torch.nn.LSTM(D, H, 2, False, True, 0.0, True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert (ours.num_layers, ours.bias, ours.batch_first, ours.bidirectional) == (
        2,
        False,
        True,
        True,
    )
    assert ours.proj_size == 0 and ours.weight_hh_l1_reverse is ours.cell_at(1, 1).weight_hh
    assert [[p.shape for p in w] for w in ours.all_weights] == [
        [p.shape for p in w] for w in theirs.all_weights
    ]
    ours.flatten_parameters()
    assert rnnlab.nn.RNN(D, H).nonlinearity == "tanh" and not rnnlab.nn.GRU(D, H).batch_first
    with pytest.raises(AttributeError):
        _ = ours.weight_ih_l2
    # a drop-in nested in a model keeps torch's keys under the model's prefix
    model = torch.nn.Sequential(rnnlab.nn.GRU(D, H))
    assert list(model.state_dict()) == list(torch.nn.Sequential(torch.nn.GRU(D, H)).state_dict())
    model.load_state_dict(torch.nn.Sequential(torch.nn.GRU(D, H)).state_dict())


def test_torch_names_can_be_assigned_and_copied() -> None:
    m = rnnlab.nn.LSTM(D, H, num_layers=2, layer_norm=True)
    new = torch.nn.Parameter(torch.zeros(4 * H, H))
    m.weight_hh_l1 = new
    assert m.cell_at(1).weight_hh is new and m.weight_hh_l1 is new
    m.ln_ih_weight_l0 = torch.nn.Parameter(torch.full((4 * H,), 2.0))
    assert (m.cell_at(0).ln_ih.weight == 2.0).all()
    assert list(m.state_dict()) == list(rnnlab.nn.LSTM(D, H, 2, layer_norm=True).state_dict())
    with pytest.raises(TypeError, match=r"torch\.nn\.Parameter or None expected"):
        m.weight_ih_l0 = torch.zeros(4 * H, D)
    clone = copy.deepcopy(m)
    clone.load_state_dict({k: torch.zeros_like(v) for k, v in m.state_dict().items()})
    assert (clone.weight_ih_l0 == 0).all() and (m.weight_ih_l0 != 0).any()
