"""minGRU and minLSTM: the paper's equations, and the parallel scan against the step loop.

Oracles: the equations written out from the parameter tensors (the cell's step), and the
reference loop (``use_backend("reference")``, one ``cell.step`` per time step) for the parallel
scan: outputs, final states and every gradient in float64 to 1e-10. The layer tests run on both
of the parallel scan's CPU paths (the ``scan_path`` fixture): the C++ linear recurrence and the
log-space scan (the other devices' path).
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import Tensor

from rnnlab.core import fast, minimal
from rnnlab.core.backend import use_backend
from rnnlab.core.fast import linrec
from rnnlab.core.layers import Recurrent
from rnnlab.core.minimal import MinGRUCell, MinLSTMCell, g, linear_scan
from rnnlab.core.registry import CELL_HELP, CELLS, RecurrentConfig, cell_factory

F64 = torch.float64
CELLS_UNDER_TEST = {"mingru": MinGRUCell, "minlstm": MinLSTMCell}


@pytest.fixture(params=["kernel", "log-space"])
def scan_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test on one of :meth:`MinimalRNNCell.parallel_scan`'s paths: ``"kernel"``, the
    C++ linear recurrence (what runs on the CPU), or ``"log-space"``, the parallel scan (what
    runs on other devices), forced here; a call to the other path fails the test."""

    def other(*args: object, **kw: object) -> None:
        raise AssertionError(f"parallel_scan left the {request.param} path")

    if request.param == "kernel":
        if not fast.is_available():
            pytest.skip("the C++ kernels did not build")
        monkeypatch.setattr(minimal, "linear_scan", other)
    else:
        monkeypatch.setattr(linrec, "supported", lambda x: False)
        monkeypatch.setattr(minimal, "sequential_scan", other)
    return request.param


def _paper_step(cell: MinGRUCell | MinLSTMCell, x: Tensor, h: Tensor) -> Tensor:
    """One step of the paper's equations, from the cell's parameter tensors alone."""
    pre = x @ cell.weight_ih.t()
    if cell.bias_ih is not None:
        pre = pre + cell.bias_ih
    H = cell.hidden_size
    raw = pre[:, -H:]
    cand = torch.where(raw >= 0, raw + 0.5, torch.sigmoid(raw)) if cell.g else raw
    if isinstance(cell, MinGRUCell):
        z = torch.sigmoid(pre[:, :H])
        return (1 - z) * h + z * cand
    f, i = torch.sigmoid(pre[:, :H]), torch.sigmoid(pre[:, H : 2 * H])
    return f / (f + i) * h + i / (f + i) * cand


@pytest.mark.parametrize("name", CELLS_UNDER_TEST)
@pytest.mark.parametrize("use_g", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_step_is_the_papers_equations(name: str, use_g: bool, bias: bool) -> None:
    cell = CELLS_UNDER_TEST[name](5, 6, g=use_g, bias=bias, dtype=F64)
    assert cell.weight_hh is None and cell.bias_hh is None
    assert (cell.bias_ih is not None) == bias
    x, h = torch.randn(4, 5, dtype=F64), torch.randn(4, 6, dtype=F64)
    out, state = cell(x, h)
    torch.testing.assert_close(out, _paper_step(cell, x, h), rtol=0, atol=1e-12)
    assert state is out
    gates = cell.gates(x, h)
    assert set(gates) == ({"z"} if name == "mingru" else {"f", "i"})
    if name == "minlstm":  # the normalised gates sum to one
        torch.testing.assert_close(gates["f"] + gates["i"], torch.ones_like(h))


@pytest.mark.parametrize("name", CELLS_UNDER_TEST)
@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
def test_linear_coefficients_are_the_log_ones_exponentiated(name: str, dtype: torch.dtype) -> None:
    """The kernel's ``a``, ``b`` and gates (computed directly) against ``exp(log a)`` and the
    gates of the log-space coefficients in float64, over pre-activations up to +-100 (minLSTM:
    both gates tiny at once). float32 loses what its log-sigmoids of ~40 round away, ~4e-6."""
    cell = CELLS_UNDER_TEST[name](3, 4, g=True, dtype=dtype)
    xp = 40 * torch.randn(200, cell.weight_ih.shape[0], dtype=dtype)
    xp[:50] = -100.0
    log_a, b, gates = cell.to(F64).coefficients(xp.double())  # (no weights involved)
    a_lin, b_lin, gates_lin = cell.to(dtype).linear_coefficients(xp)
    assert torch.isfinite(a_lin).all() and (a_lin >= 0).all() and (a_lin <= 1).all()
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    pairs = [(a_lin, log_a.exp()), (b_lin, b)] + [(gates_lin[k], gates[k]) for k in gates]
    assert gates_lin.keys() == gates.keys()
    for got, want in pairs:
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=1e-30)


def test_g_is_positive_and_continuous() -> None:
    x = torch.linspace(-30, 30, 6001, dtype=F64)
    y = g(x)
    assert (y > 0).all()
    torch.testing.assert_close(g(torch.tensor([0.0, 2.0, -2.0])), torch.tensor([0.5, 2.5, 0.1192]),
                               atol=1e-4, rtol=0)  # fmt: skip
    assert (y.diff() >= 0).all() and y.diff().abs().max() < 0.011  # increasing, no jump at 0


def _layer(name: str, use_g: bool, bias: bool, layers: int, bidirectional: bool, ln: bool = False):
    cls = CELLS_UNDER_TEST[name]
    factory = partial(cls, g=use_g, bias=bias, layer_norm=ln)
    return Recurrent(factory, 3, 5, layers, bidirectional, dtype=F64)


def _run_with_grads(rnn: Recurrent, x: Tensor, state: Tensor | None, lengths) -> list[Tensor]:
    """Outputs, final state, and the gradients of a loss touching both w.r.t. everything."""
    leaves = [x, *rnn.parameters()] + ([state] if state is not None else [])
    out, final = rnn(x, state, lengths)
    w_out = torch.linspace(-1, 1, out.numel(), dtype=F64).view_as(out)
    loss = (out * w_out).sum() + (final.sin()).sum()
    grads = torch.autograd.grad(loss, leaves)
    return [out, final, *grads]


@pytest.mark.parametrize("name", CELLS_UNDER_TEST)
@pytest.mark.parametrize("use_g", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(
    "shape",
    ["plain", "lengths", "bidirectional", "2-layers-bidirectional-lengths-state", "layer-norm"],
)
def test_parallel_scan_equals_the_step_loop(
    name: str, use_g: bool, bias: bool, shape: str, scan_path: str
) -> None:
    layers = 2 if shape.startswith("2-layers") else 1
    bidirectional = "bidirectional" in shape
    rnn = _layer(name, use_g, bias, layers, bidirectional, ln=shape == "layer-norm")
    N, T = 4, 150  # over two chunks of the log-space scan (64 steps), the last one partial
    x = torch.randn(N, T, 3, dtype=F64, requires_grad=True)
    lengths = torch.tensor([150, 64, 1, 97]) if "lengths" in shape else None
    state = None
    if "state" in shape:
        state = torch.randn(layers * (1 + bidirectional), N, 5, dtype=F64, requires_grad=True)
    assert rnn.backend_for(x.transpose(0, 1)) == "fast"
    got = _run_with_grads(rnn, x, state, lengths)
    with use_backend("reference"):
        want = _run_with_grads(rnn, x, state, lengths)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    if lengths is not None:  # zero past each end, as the step loop
        assert (got[0][1, 64:] == 0).all() and (got[0][2, 1:] == 0).all()


@pytest.mark.parametrize("name", CELLS_UNDER_TEST)
@pytest.mark.parametrize("use_g", [False, True])
def test_long_sequences_stay_finite_and_exact(name: str, use_g: bool, scan_path: str) -> None:
    rnn = _layer(name, use_g, True, 1, False)
    with torch.no_grad():  # strong gates: decays near 0 and near 1 both occur
        rnn.cells[0].weight_ih.mul_(8)
    x = torch.randn(2, 2000, 3, dtype=F64, requires_grad=True)
    got = _run_with_grads(rnn, x, None, None)
    with use_backend("reference"):
        want = _run_with_grads(rnn, x, None, None)
    for a, b in zip(got, want, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # float32: the kernel's linear-space loop is stable, and the chunked scan keeps its error
    # from growing with T
    rnn32 = rnn.float()
    out32, _ = rnn32(x.detach().float())
    torch.testing.assert_close(out32.double(), got[0], rtol=0, atol=2e-4)


@pytest.mark.parametrize("name", CELLS_UNDER_TEST)
def test_generation_step_by_step_equals_the_parallel_forward(name: str) -> None:
    rnn = _layer(name, True, True, 2, False)
    x = torch.randn(3, 40, 3, dtype=F64)
    out, final = rnn(x)
    state, steps = None, []
    for t in range(40):
        assert rnn.backend_for(x[:, t : t + 1].transpose(0, 1)) == "reference"
        o, state = rnn.step(x[:, t], state)
        steps.append(o)
    torch.testing.assert_close(torch.stack(steps, 1), out, rtol=0, atol=1e-12)
    torch.testing.assert_close(state, final, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", CELLS_UNDER_TEST)
def test_chunks_carried_by_the_final_state_equal_the_whole(name: str) -> None:
    rnn = _layer(name, False, True, 2, False)
    x = torch.randn(2, 90, 3, dtype=F64)
    whole, final = rnn(x)
    first, state = rnn(x[:, :37])
    second, state = rnn(x[:, 37:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(state, final, rtol=0, atol=1e-12)


@pytest.mark.parametrize("positive", [False, True])
def test_linear_scan_gradcheck(positive: bool) -> None:
    T, N, H = 9, 2, 3
    log_a = (-torch.rand(T, N, H, dtype=F64) * 3).requires_grad_()
    b = torch.randn(T, N, H, dtype=F64)
    b = (b.abs() + 0.1 if positive else b).requires_grad_()
    h0 = torch.randn(N, H, dtype=F64, requires_grad=True)
    mask = torch.arange(T).view(T, 1, 1) < torch.tensor([9, 4]).view(1, N, 1)

    def run(log_a: Tensor, b: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        return linear_scan(log_a, b, h0, mask, positive=positive)

    assert torch.autograd.gradcheck(run, (log_a, b, h0))
    # and the recurrence itself, written as a loop
    out, final = run(log_a, b, h0)
    h, want = h0, []
    for t in range(T):
        h = torch.where(mask[t], log_a[t].exp() * h + b[t], h)
        want.append(h * mask[t])
    torch.testing.assert_close(out, torch.stack(want), rtol=0, atol=1e-12)
    torch.testing.assert_close(final, h, rtol=0, atol=1e-12)


def test_layer_gradcheck_on_the_parallel_path(scan_path: str) -> None:
    rnn = _layer("minlstm", False, True, 1, True)
    x = torch.randn(2, 5, 3, dtype=F64, requires_grad=True)
    lengths = torch.tensor([5, 3])
    assert rnn.backend_for(x.transpose(0, 1)) == "fast"
    assert torch.autograd.gradcheck(lambda x: rnn(x, lengths=lengths)[0], (x,))


@pytest.mark.parametrize("name", CELLS_UNDER_TEST)
def test_lengths_zoneout_and_both_directions_equal_the_step_loop(name: str, scan_path: str) -> None:
    """Zoneout folded into the coefficients (a' = z + (1 - z) a, b' = (1 - z) b), frozen states
    past each sequence's end, the reverse direction on the valid steps: the same draws (one
    seed) on the parallel scan and the reference loop give the same numbers, in training (0/1
    weights) and in evaluation (weights p)."""
    options = dict(num_layers=2, bidirectional=True, zoneout=0.3, dtype=F64)
    rnn = Recurrent(partial(CELLS_UNDER_TEST[name], g=True), 3, 5, **options)
    x = torch.randn(4, 70, 3, dtype=F64, requires_grad=True)
    lengths = torch.tensor([70, 9, 64, 1])
    state = torch.randn(4, 4, 5, dtype=F64, requires_grad=True)
    for training in (True, False):
        rnn.train(training)
        results = []
        for backend in ("fast", "reference"):
            torch.manual_seed(5)
            with use_backend(backend):
                results.append(_run_with_grads(rnn, x, state, lengths))
        for a, b in zip(*results, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
        assert (results[0][0][3, 1:] == 0).all()


@pytest.mark.parametrize("name", CELLS_UNDER_TEST)
def test_one_step_on_the_parallel_path(name: str, scan_path: str) -> None:
    rnn = Recurrent(CELLS_UNDER_TEST[name], 3, 5, backend="fast", dtype=F64)
    x = torch.randn(2, 1, 3, dtype=F64, requires_grad=True)
    state = torch.randn(1, 2, 5, dtype=F64, requires_grad=True)
    got = _run_with_grads(rnn, x, state, None)
    with use_backend("reference"):
        want = _run_with_grads(rnn, x, state, None)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_hooks_and_per_step_states_run_the_step_loop() -> None:
    rnn = Recurrent(MinGRUCell, 3, 4, return_states=True, dtype=F64)
    x = torch.randn(2, 6, 3, dtype=F64)
    assert rnn.backend_for(x.transpose(0, 1)) == "reference"
    out, final, states = rnn(x)
    torch.testing.assert_close(states[0], out, rtol=0, atol=0)  # the state is the output
    torch.testing.assert_close(states[0, :, -1], final[0], rtol=0, atol=0)
    rnn.return_states = False
    assert rnn.backend_for(x.transpose(0, 1)) == "fast"
    torch.testing.assert_close(rnn(x)[0], out, rtol=0, atol=1e-12)


def test_registry_and_config_know_the_names() -> None:
    for name, cls in CELLS_UNDER_TEST.items():
        assert name in CELLS and CELL_HELP[name]
        assert type(cell_factory(name)(3, 4)) is cls
        config = RecurrentConfig(cell=name, hidden_size=8, num_layers=2)
        rnn = config.build(5)
        count = sum(p.numel() for p in rnn.parameters())
        assert config.min_parameters(5) <= count
        out, _ = rnn(torch.randn(2, 7, 5))
        assert out.shape == (2, 7, 8)


@pytest.mark.parametrize("name", CELLS_UNDER_TEST)
def test_tiny_overfit(name: str) -> None:
    """A 2-layer model learns to predict a repeated random sequence of 8 symbols."""
    V, H = 8, 32
    seq = torch.randint(0, V, (1, 64))
    embed = torch.nn.Embedding(V, H)
    rnn = Recurrent(CELLS_UNDER_TEST[name], H, H, num_layers=2)
    head = torch.nn.Linear(H, V)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(150):
        out, _ = rnn(embed(seq[:, :-1]))
        loss = torch.nn.functional.cross_entropy(head(out).flatten(0, 1), seq[0, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 1.8 and losses[-1] < 0.2 * losses[0]
