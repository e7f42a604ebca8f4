"""``rnnlab.nn`` drop-ins against ``torch.nn`` with copied weights, and against the oracle."""

from __future__ import annotations

import copy
import gc
import io
import warnings
from collections.abc import Iterator
from functools import partial
from itertools import product

import pytest
import torch
import torch.nn.utils.prune
from torch.nn.utils import parametrizations
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnlab.nn
from rnnlab.errors import RnnlabError
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


def test_torch_api_surface() -> None:
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
    # the clone's cells compute with the clone's parameters, not the original's
    assert clone.cell_at(1).weight_hh is clone.weight_hh_l1
    assert clone.cell_at(0).ln_ih.weight is clone.ln_ih_weight_l0


# -- torch's parameters, attributes and utilities ---------------------------------------------

F64 = torch.float64


def _copied_pair(kind: str, dtype: torch.dtype = F64, **kw) -> tuple[torch.nn.Module, ...]:
    """(rnnlab's, torch's) with torch's weights, 2 layers, bidirectional unless ``kw`` says."""
    ours_cls, torch_cls = PAIRS[kind]
    kw = {"num_layers": 2, "bidirectional": True, **kw}
    theirs = torch_cls(D, H, dtype=dtype, **kw)
    ours = ours_cls(D, H, dtype=dtype, **kw)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _outputs_and_param_grads(m: torch.nn.Module, x: torch.Tensor, seed: int = 0):
    """Outputs, and the gradient of a random projection of them w.r.t. every parameter by
    name (weight_norm's ``_g``/``_v``, a parametrization's ``original``, ...)."""
    out, final = m(x)
    outputs = (out, *_parts(final))
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs)
    named = dict(m.named_parameters())
    return outputs, dict(zip(named, torch.autograd.grad(loss, list(named.values()))))


def _assert_same_results(ours: torch.nn.Module, theirs: torch.nn.Module, x, tol: float) -> None:
    ours_out, ours_grads = _outputs_and_param_grads(ours, x)
    ref_out, ref_grads = _outputs_and_param_grads(theirs, x)
    _close(ours_out, ref_out, tol)
    assert list(ours_grads) == list(ref_grads)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(ours_grads[name], grad, rtol=tol, atol=tol, msg=name)


def _suffixes(num_layers: int = 2) -> list[str]:
    return [f"_l{layer}{rev}" for layer in range(num_layers) for rev in ("", "_reverse")]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_parameters_are_registered_as_torch_s(kind: str, bias: bool) -> None:
    ours, theirs = _copied_pair(kind, bias=bias)
    names = [name for name, _ in theirs.named_parameters()]
    assert [name for name, _ in ours.named_parameters()] == names
    assert list(ours._parameters) == list(theirs._parameters) == names
    assert ours._flat_weights_names == theirs._flat_weights_names == names
    assert ours._all_weights == theirs._all_weights
    assert [id(w) for w in ours._flat_weights] == [id(p) for p in ours.parameters()]
    assert [[id(w) for w in ws] for ws in ours.all_weights] == [
        [id(getattr(ours, name)) for name in ws] for ws in theirs._all_weights
    ]
    assert (ours.mode, ours.proj_size) == (theirs.mode, theirs.proj_size)
    # the cells are out of the module tree, and compute with these very Parameter objects
    assert [name for name, _ in ours.named_modules()] == [""]
    for k, suffix in enumerate(_suffixes()):
        cell = ours.cell_at(*divmod(k, 2))
        for inner in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            assert getattr(cell, inner) is getattr(ours, inner + suffix, None)


def test_variant_parameters_come_after_torch_s_four() -> None:
    m = rnnlab.nn.LSTM(D, H, bidirectional=True, peephole=True, layer_norm=True)
    bases = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ci", "weight_cf"]
    bases += ["weight_co", "ln_ih_weight", "ln_hh_weight", "ln_cell_weight", "ln_cell_bias"]
    expected = [base + s for s in ("_l0", "_l0_reverse") for base in bases]
    assert [name for name, _ in m.named_parameters()] == expected == m._flat_weights_names
    assert m._all_weights == [expected[:11], expected[11:]]
    assert m.mode == "LSTM" and m.cell_at(0, 1).ln_cell.bias is m.ln_cell_bias_l0_reverse


def _prune_l1(m: torch.nn.Module) -> None:
    torch.nn.utils.prune.l1_unstructured(m, "weight_ih_l0", amount=0.5)


def _prune_random(m: torch.nn.Module) -> None:
    torch.nn.utils.prune.random_unstructured(m, "bias_hh_l1", amount=0.5)


UTILS = {
    "weight_norm": lambda m: torch.nn.utils.weight_norm(m, "weight_hh_l0"),
    "param-weight_norm": lambda m: parametrizations.weight_norm(m, "weight_ih_l1_reverse"),
    "param-orthogonal": lambda m: parametrizations.orthogonal(m, "weight_hh_l1"),
    "spectral_norm": lambda m: torch.nn.utils.spectral_norm(m, "weight_hh_l0_reverse"),
    "param-spectral_norm": lambda m: parametrizations.spectral_norm(m, "weight_ih_l0"),
    "prune-l1": _prune_l1,
    "prune-random": _prune_random,
}


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated")
@pytest.mark.parametrize("util", list(UTILS))
@pytest.mark.parametrize("kind", ["rnn-tanh", "gru", "lstm"])
def test_torch_utils_change_the_results_as_for_torch(kind: str, util: str) -> None:
    """weight_norm, spectral_norm, parametrizations and pruning act on a drop-in as on torch.nn:
    the same parameters and state_dict keys, outputs and gradients (the reparametrisation's
    own parameters included), also after two training steps."""
    ours, theirs = _copied_pair(kind)
    for m in (ours, theirs):
        torch.manual_seed(5)  # orthogonal completes, spectral_norm starts from random vectors
        UTILS[util](m)
        # parametrizations.spectral_norm steps its power iteration at every read of the weight
        # in training mode, and torch.nn reads it twice per forward (rnnlab once): eval mode
        m.train(util != "param-spectral_norm")
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(T, N, D, dtype=F64)
    _assert_same_results(ours, theirs, x, 1e-10)
    for m in (ours, theirs):
        optimizer = torch.optim.SGD(m.parameters(), lr=0.5)
        for _ in range(2):
            m(x)[0].pow(2).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    _assert_same_results(ours, theirs, x, 1e-10)
    assert not torch.allclose(ours(x)[0], _copied_pair(kind)[0](x)[0])  # it was trained


def test_pruning_changes_what_the_cells_compute() -> None:
    """The oracle read from the cells, after pruning, is the masked weight's."""
    m = randomize(rnnlab.nn.LSTM(D, H, peephole=True, dtype=F64))
    assert (m.cell_at(0).weight_ih == 0).sum() == 0
    _prune_l1(m)
    assert (m.cell_at(0).weight_ih == 0).sum() == 2 * H * D  # half of the 4H x D weight
    x = torch.randn(T, N, D, dtype=F64)
    out, _ = m(x)
    ref_out, _, _ = naive_recurrent(m, x, None)
    _close(out, ref_out, 1e-12)


@pytest.mark.parametrize("kind", ["rnn-tanh", "gru", "lstm"])
def test_functional_call_with_torch_names(kind: str) -> None:
    ours, theirs = _copied_pair(kind)
    x = torch.randn(T, N, D, dtype=F64)
    new = {
        name: (0.3 * torch.randn_like(p)).requires_grad_()
        for name, p in theirs.named_parameters()
        if name.startswith("weight_hh") or name == "bias_ih_l1"
    }
    results = []
    for m in (ours, theirs):
        out, _ = torch.func.functional_call(m, new, (x,))
        results.append((out, torch.autograd.grad(out.pow(2).sum(), list(new.values()))))
    (got, got_grads), (ref, ref_grads) = results
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_grads, ref_grads, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(got, theirs(x)[0])  # the substitutes did change the result
    _assert_same_results(ours, theirs, x, 1e-10)  # and the module's own are back


@pytest.mark.parametrize("kind", ["rnn-tanh", "gru", "lstm"])
def test_torch_func_grad_with_torch_names(kind: str) -> None:
    ours, theirs = _copied_pair(kind)
    x = torch.randn(T, N, D, dtype=F64)

    def loss(module: torch.nn.Module, params: dict) -> torch.Tensor:
        return torch.func.functional_call(module, params, (x,))[0].pow(2).sum()

    params = dict(theirs.named_parameters())
    got = torch.func.grad(partial(loss, ours))(params)
    ref = torch.func.grad(partial(loss, theirs))(params)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["rnn-tanh", "gru", "lstm"])
def test_assignment_and_name_based_init_as_for_torch(kind: str) -> None:
    ours, theirs = _copied_pair(kind)
    new = torch.randn_like(theirs.weight_hh_l1)
    ours.weight_hh_l1 = torch.nn.Parameter(new.clone())
    theirs.weight_hh_l1 = torch.nn.Parameter(new.clone())
    for m in (ours, theirs):
        torch.manual_seed(2)
        for name, p in m.named_parameters():
            if name.startswith("weight_hh"):
                torch.nn.init.orthogonal_(p)
            elif name.startswith("bias_ih"):
                torch.nn.init.zeros_(p)
    assert all((ours.cell_at(*divmod(k, 2)).bias_ih == 0).all() for k in range(4))
    x = torch.randn(T, N, D, dtype=F64)
    _assert_same_results(ours, theirs, x, 1e-10)


@pytest.mark.parametrize(
    "convert",
    ["float", "double", "half", "to", "overwrite", "assign"],
)
@pytest.mark.parametrize("kind", ["rnn-tanh", "gru", "lstm"])
def test_conversions_reach_the_cells(kind: str, convert: str) -> None:
    """``.float()``/``.double()``/``.half()``/``.to()`` (also with torch.__future__'s new
    Parameter objects) and ``load_state_dict(assign=True)``: the cells compute with the
    module's parameters after, with torch's results."""
    ours, theirs = _copied_pair(kind, dtype=torch.float32)
    dtype = {"float": torch.float32, "half": torch.float16}.get(convert, F64)
    before = ours.weight_hh_l0
    for m in (ours, theirs):
        if convert == "to":
            m.to(F64)
        elif convert == "overwrite":
            torch.__future__.set_overwrite_module_params_on_conversion(True)
            try:
                m.double()
            finally:
                torch.__future__.set_overwrite_module_params_on_conversion(False)
        elif convert == "assign":
            new = {k: v.double().clone() for k, v in theirs.state_dict().items()}
            m.load_state_dict(new, assign=True)
        else:
            getattr(m, convert)()
    assert all(p.dtype == dtype for p in ours.parameters())
    if convert in ("overwrite", "assign"):
        assert ours.weight_hh_l0 is not before
    for k, suffix in enumerate(_suffixes()):
        assert ours.cell_at(*divmod(k, 2)).weight_hh is getattr(ours, "weight_hh" + suffix)
    x = torch.randn(T, N, D, dtype=dtype)
    tol = {torch.float16: 1e-2, torch.float32: 1e-5, F64: 1e-10}[dtype]
    _assert_same_results(ours, theirs, x, tol)


@pytest.mark.parametrize("kind", ["rnn-tanh", "gru", "lstm"])
def test_pickled_module_keeps_cells_and_parameters_one(kind: str) -> None:
    ours, _ = _copied_pair(kind)
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded.cell_at(1, 1).weight_ih is loaded.weight_ih_l1_reverse
    x = torch.randn(T, N, D, dtype=F64)
    _close(loaded(x), ours(x), 0.0)


@pytest.mark.parametrize("kind", ["rnn-tanh", "gru", "lstm"])
def test_torch_s_check_methods(kind: str) -> None:
    """check_input, get_expected_hidden_size, check_hidden_size, check_forward_args and
    permute_hidden return and raise as torch.nn's (same types, same messages)."""
    ours, theirs = _copied_pair(kind)
    lstm = kind == "lstm"
    x = torch.randn(T, N, D, dtype=F64)

    def hx(shape: tuple, dtype: torch.dtype = F64) -> object:
        h = torch.randn(shape, dtype=dtype)
        return (h, torch.randn(shape, dtype=dtype)) if lstm else h

    calls = [
        lambda m: m.check_input(x, None),
        lambda m: m.check_input(x.float(), None),
        lambda m: m.check_input(x[0], None),
        lambda m: m.check_input(x[0], torch.tensor([2, 1])),
        lambda m: m.check_input(torch.randn(T, N, D + 1, dtype=F64), None),
        lambda m: m.get_expected_hidden_size(x, None),
        lambda m: m.get_expected_hidden_size(x[0], torch.tensor([2, 2, 1])),
        lambda m: m.check_hidden_size(torch.zeros(4, N, H), (4, N, H)),
        lambda m: m.check_hidden_size(torch.zeros(4, 1, H), (4, N, H)),
        lambda m: m.check_forward_args(x, hx((4, N, H)), None),
        lambda m: m.check_forward_args(x, hx((2, N, H)), None),
        lambda m: m.check_forward_args(x, hx((4, N + 1, H)), None),
        lambda m: m.permute_hidden(hx((4, N, H)), None),
        lambda m: m.permute_hidden(hx((4, N, H)), torch.tensor([2, 0, 1])),
    ]
    for call in calls:
        torch.manual_seed(1)
        try:
            ref = call(theirs)
        except (ValueError, RuntimeError) as e:
            with pytest.raises(type(e)) as raised:
                torch.manual_seed(1)
                call(ours)
            assert str(raised.value) == str(e) and isinstance(raised.value, RnnlabError)
        else:
            torch.manual_seed(1)
            got = call(ours)
            if ref is None or (isinstance(ref, tuple) and isinstance(ref[0], int)):
                assert got == ref
            else:
                _close(got, ref, 0.0)
    ours.flatten_parameters()  # a no-op, as torch's off cuDNN


# -- errors as torch.nn raises them ------------------------------------------------------------
CONSTRUCTOR_ERRORS = {
    "dropout-above-1": {"dropout": 1.5, "num_layers": 2},
    "dropout-negative": {"dropout": -0.1},
    "dropout-str": {"dropout": "0.5"},
    "bias-int": {"bias": 1},
    "bias-str": {"bias": "True"},
    "batch_first-int": {"batch_first": 0},
    "batch_first-str": {"batch_first": "False"},
    "input_size-float": {"input_size": 3.0},
    "input_size-str": {"input_size": "10"},
    "input_size-zero": {"input_size": 0},
    "hidden_size-float": {"hidden_size": 5.0},
    "hidden_size-negative": {"hidden_size": -4},
    "num_layers-zero": {"num_layers": 0},
}


@pytest.mark.parametrize("kwargs", CONSTRUCTOR_ERRORS.values(), ids=CONSTRUCTOR_ERRORS.keys())
@pytest.mark.parametrize("kind", ["rnn-tanh", "gru", "lstm"])
def test_constructor_errors_as_torch(kind: str, kwargs: dict) -> None:
    """torch.nn's error type and words, then the value given; and rnnlab's own type."""
    ours_cls, torch_cls = PAIRS[kind]
    args = {"input_size": D, "hidden_size": H, **kwargs}
    with pytest.raises((TypeError, ValueError)) as theirs:
        torch_cls(**args)
    with pytest.raises(type(theirs.value)) as ours:
        ours_cls(**args)
    assert isinstance(ours.value, RnnlabError)
    assert str(ours.value).startswith(str(theirs.value)), (str(ours.value), str(theirs.value))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda nn: nn.RNN(D, H, nonlinearity="gelu"), ValueError),
        (lambda nn: nn.RNN(D, H, proj_size=0), ValueError),
        (lambda nn: nn.GRU(D, H, proj_size=2), ValueError),
        (lambda nn: nn.LSTM(D, H, proj_size=-1), ValueError),
        (lambda nn: nn.LSTM(D, H, proj_size=H), ValueError),
    ],
    ids=["nonlinearity", "rnn-proj_size", "gru-proj_size", "lstm-proj-negative", "lstm-proj-big"],
)
def test_module_specific_errors_as_torch(make, expected: type) -> None:
    with pytest.raises(expected) as theirs:
        make(torch.nn)
    with pytest.raises(expected) as ours:
        make(rnnlab.nn)
    assert isinstance(ours.value, RnnlabError)
    assert str(ours.value).startswith(str(theirs.value)), (str(ours.value), str(theirs.value))


def test_options_torch_does_not_check_are_type_errors() -> None:
    with pytest.raises(TypeError, match="bidirectional should be of type bool, got: str"):
        rnnlab.nn.GRU(D, H, bidirectional="False")
    with pytest.raises(TypeError, match="num_layers should be of type int, got: float"):
        rnnlab.nn.LSTM(D, H, num_layers=1.5)


@pytest.mark.parametrize("kind", ["rnn-tanh", "gru", "lstm"])
def test_dropout_one_is_accepted_as_by_torch(kind: str) -> None:
    """p = 1 zeros every layer's input but the first's, in training: the same outputs as
    torch.nn's (deterministic), and no warning for dropout 0 on one layer."""
    ours, theirs = _copied_pair(kind, dropout=1.0, num_layers=3)
    assert ours.dropout == theirs.dropout == 1.0
    x = torch.randn(T, N, D, dtype=F64)
    _assert_same_results(ours.train(), theirs.train(), x, 1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PAIRS[kind][0](D, H, dropout=0)


def _hx(kind: str, shape: tuple, dtype: torch.dtype = torch.float32) -> object:
    h = torch.zeros(shape, dtype=dtype)
    return (h, h.clone()) if kind == "lstm" else h


FORWARD_ERRORS = {
    "no-time-steps": lambda k, m: m(torch.randn(0, N, D)),
    "no-time-steps-batch-first": lambda k, m: m(torch.randn(N, 0, D)),
    "feature-size": lambda k, m: m(torch.randn(T, N, D + 1)),
    "input-4d": lambda k, m: m(torch.randn(T, N, D, 1)),
    "input-1d": lambda k, m: m(torch.randn(D)),
    "input-dtype": lambda k, m: m(torch.randn(T, N, D, dtype=F64)),
    "input-int": lambda k, m: m(torch.ones(T, N, D, dtype=torch.long)),
    "state-batch": lambda k, m: m(torch.randn(T, N, D), _hx(k, (1, N + 1, H))),
    "state-layers": lambda k, m: m(torch.randn(T, N, D), _hx(k, (2, N, H))),
    "state-2d": lambda k, m: m(torch.randn(T, N, D), _hx(k, (1, H))),
    "state-3d-unbatched": lambda k, m: m(torch.randn(T, D), _hx(k, (1, 1, H))),
}


@pytest.mark.parametrize("error", list(FORWARD_ERRORS))
@pytest.mark.parametrize("kind", ["rnn-tanh", "gru", "lstm"])
def test_forward_errors_of_torch_s_type(kind: str, error: str) -> None:
    """RuntimeError for shapes (zero-length sequences included), ValueError for dtypes and
    dimension counts, as torch.nn; rnnlab's own message and type besides."""
    ours_cls, torch_cls = PAIRS[kind]
    batch_first = error.endswith("batch-first")
    call = FORWARD_ERRORS[error]
    with pytest.raises((RuntimeError, ValueError)) as theirs:
        call(kind, torch_cls(D, H, batch_first=batch_first))
    with pytest.raises(type(theirs.value)) as ours:
        call(kind, ours_cls(D, H, batch_first=batch_first))
    assert isinstance(ours.value, RnnlabError)


# -- autocast ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rnn-tanh", "rnn-relu", "gru", "lstm"])
def test_cpu_autocast_returns_torch_s_dtype(kind: str) -> None:
    """Under CPU bfloat16 autocast: torch.nn's output and state dtypes (which depend on the
    module, the input's and state's dtypes, packing and whether oneDNN runs the LSTM), and its
    values to bfloat16's precision."""
    ours, theirs = _copied_pair(kind, dtype=torch.float32)
    onednn = torch._C._get_mkldnn_enabled()
    grid = product([1, T], [torch.float32, torch.bfloat16], [None, torch.float32, torch.bfloat16])
    try:
        for (steps, x_dtype, h_dtype), packed, use_onednn in product(grid, [0, 1], [1, 0]):
            torch._C._set_mkldnn_enabled(bool(use_onednn))
            x = torch.randn(steps, N, D, dtype=x_dtype)
            if packed:
                lengths = [steps, max(steps - 1, 1), steps]
                x = pack_padded_sequence(x, lengths, enforce_sorted=False)
            hx = None if h_dtype is None else _hx(kind, (4, N, H), h_dtype)
            results = []
            for m in (ours, theirs):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out, final = m(x, hx)
                results.append((out.data if packed else out, *_parts(final)))
            case = (steps, x_dtype, h_dtype, packed, use_onednn)
            assert [t.dtype for t in results[0]] == [t.dtype for t in results[1]], case
            for a, b in zip(*results, strict=True):
                torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=5e-2, msg=str(case))
    finally:
        torch._C._set_mkldnn_enabled(onednn)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a variant: its family's dtype
        out, _ = rnnlab.nn.LSTM(D, H, peephole=True)(torch.randn(T, N, D))
        # one step (rnnlab's, for decoding loops): in the weights' dtype, as every rnnlab layer
        step_out, step_state = ours.step(torch.randn(N, D, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert step_out.dtype == _parts(step_state)[0].dtype == torch.float32
    ref, ref_state = ours.step(torch.randn(N, D))
    assert step_out.shape == ref.shape and _parts(step_state)[0].shape == _parts(ref_state)[0].shape


# -- torch.compile ------------------------------------------------------------------------------
COMPILED = {
    "lstm": lambda: rnnlab.nn.LSTM(D, H, num_layers=2, bidirectional=True),
    "gru": lambda: rnnlab.nn.GRU(D, H),
    "rnn-relu": lambda: rnnlab.nn.RNN(D, H, nonlinearity="relu"),
    "peephole": lambda: rnnlab.nn.LSTM(D, H, peephole=True),
    "gru-weight_norm": lambda: torch.nn.utils.weight_norm(rnnlab.nn.GRU(D, H), "weight_hh_l0"),
    "rnn-parametrized": lambda: parametrizations.weight_norm(rnnlab.nn.RNN(D, H), "weight_ih_l0"),
}


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated")
@pytest.mark.parametrize("name", list(COMPILED))
def test_drop_ins_compile_without_graph_breaks(name: str) -> None:
    """Not torch.nn.LSTM subclasses, which Dynamo refuses: one graph, eager's results."""
    m = COMPILED[name]()
    x = torch.randn(T, N, D)
    graphs: list[torch.fx.GraphModule] = []

    def count(gm: torch.fx.GraphModule, example: list) -> object:
        graphs.append(gm)
        return gm.forward

    # (counted by a backend, not torch._dynamo.explain: explain counts no graph at all for the
    # standard LSTM, whose oneDNN operator has a workspace of data-dependent size)
    torch._dynamo.reset()
    compiled = torch.compile(m, backend=count, fullgraph=True)  # any graph break: an error
    _close(compiled(x), m(x), 1e-5)
    assert len(graphs) == 1
    del compiled
    torch._dynamo.reset()
    # Dynamo's cyclic garbage, collected now rather than inside a later test
    # (test_dropin_memory counts what the collector finds)
    m(x)
    gc.collect()
