"""The fast path under torch.compile and torch.jit.trace (the rnnlab::scan custom operators),
and its higher-order gradients (double backward, batched gradients).

Every cell of the registry, with and without layer norm, with lengths: the custom operators
pass torch.library.opcheck (fake implementation = real shapes, autograd registration, schema);
a model compiled with ``fullgraph=True`` has no graph break and gives eager's outputs and
gradients; a second length does not recompile; higher-order gradients equal the reference
loop's.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from rnnlab.core import fast, onednn
from rnnlab.core.backend import use_backend
from rnnlab.core.cells import LSTMCell
from rnnlab.core.fast.function import cell_spec, scan_op
from rnnlab.core.layers import Recurrent
from rnnlab.core.registry import CELLS, cell_factory

pytestmark = pytest.mark.skipif(not fast.is_available(), reason="the C++ kernels did not build")


@pytest.fixture(autouse=True, scope="module")
def _forget_compiled() -> Iterator[None]:
    """Drop Dynamo's caches after this file: what it compiled would otherwise stay referenced
    (and collectable garbage) for later tests in the same worker."""
    yield
    torch._dynamo.reset()
    gc.collect()


CONFIGS = [(name, ln) for name in CELLS for ln in (False, True)]
#: the cells with a C++ kernel (the minimal RNNs run a parallel scan of plain torch operations)
KERNEL_CONFIGS = [(n, ln) for n, ln in CONFIGS if cell_factory(n)(2, 2).kernel() is not None]
IDS = [f"{name}{'+ln' if ln else ''}" for name, ln in CONFIGS]


def _op_args(cell: nn.Module, T: int, N: int, masked: bool, save: bool) -> tuple:
    spec = cell_spec(cell)
    H = cell.hidden_size
    xp = torch.randn(T, N, cell.weight_ih.shape[0], dtype=torch.float64, requires_grad=save)
    h0 = torch.randn(N, cell.output_size, dtype=torch.float64, requires_grad=save)
    c0 = torch.randn(N, H, dtype=torch.float64, requires_grad=save) if cell.state_is_tuple else None
    mask = None
    if masked:
        lengths = torch.randint(1, T + 1, (N,))
        mask = (torch.arange(T).unsqueeze(1) < lengths).to(torch.uint8)
    params = [spec.weight_hh, *spec.params]
    if not save:  # without the saved buffers there is no backward: nothing requires grad
        params = [None if p is None else p.detach() for p in params]
    zoneout = (None, None)  # (tests/core/test_zoneout_kernels.py passes weights)
    return (spec.kind, list(spec.eps), save, xp, h0, c0, params[0], mask, *params[1:], *zoneout)


@pytest.mark.parametrize(
    ("name", "ln"), KERNEL_CONFIGS, ids=[f"{n}{'+ln' if ln else ''}" for n, ln in KERNEL_CONFIGS]
)
def test_custom_op_passes_opcheck(name: str, ln: bool) -> None:
    """Schema, fake (meta) implementation against the kernel's real outputs, autograd
    registration, and dispatch under functionalisation."""
    torch.manual_seed(0)
    cell = cell_factory(name, layer_norm=ln)(3, 4).double()
    for masked in (False, True):
        for save in (False, True):
            torch.library.opcheck(scan_op, _op_args(cell, 5, 2, masked, save))


@pytest.mark.parametrize("options", [{}, {"peephole": True, "layer_norm": True},
                                     {"forget_gate": False, "forget_bias": None}])  # fmt: skip
def test_custom_op_with_projections_passes_opcheck(options: dict) -> None:
    torch.manual_seed(0)
    cell = LSTMCell(3, 5, proj_size=2, **options).double()
    for masked in (False, True):
        for save in (False, True):
            torch.library.opcheck(scan_op, _op_args(cell, 5, 2, masked, save))


class _Model(nn.Module):
    def __init__(self, cell: object, **kw: object) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.rnn = Recurrent(cell, 6, 8, **kw)
        self.head = nn.Linear(self.rnn.num_directions * 8, 11)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(idx))
        return self.head(out)


def _grads(model: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize(("name", "ln"), CONFIGS, ids=IDS)
def test_every_cell_compiles_fullgraph_and_matches_eager(name: str, ln: bool) -> None:
    """Dynamo + AOTAutograd (the aot_eager backend: the whole graph capture and the traced
    backward, without Inductor's code generation, which the next test covers)."""
    _check_compiled(name, ln, backend="aot_eager", bidirectional=name.startswith("gru"))


@pytest.mark.parametrize(("name", "ln"), [("lstm", False), ("gru", True)])
def test_inductor_compiles_and_matches_eager(name: str, ln: bool) -> None:
    _check_compiled(name, ln, backend="inductor", bidirectional=False)


def _check_compiled(name: str, ln: bool, backend: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    model = _Model(cell_factory(name, layer_norm=ln), num_layers=2, bidirectional=bidirectional)
    idx = torch.randint(11, (3, 7))
    torch._dynamo.reset()
    # fullgraph=True: any graph break is an error
    compiled = torch.compile(model, backend=backend, fullgraph=True, dynamic=True)
    out = compiled(idx)
    g_compiled = _grads(model, out.square().mean())
    eager = model(idx)
    g_eager = _grads(model, eager.square().mean())
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_compiled, g_eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_explain_finds_no_graph_break_with_lengths_and_state() -> None:
    torch.manual_seed(0)
    rnn = Recurrent(cell_factory("peephole", layer_norm=True), 6, 8, num_layers=2,
                    bidirectional=True)  # fmt: skip

    def run(x: torch.Tensor, lengths: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple:
        return rnn(x, (h, c), lengths=lengths)

    args = (torch.randn(3, 7, 6), torch.tensor([7, 2, 5]), torch.zeros(4, 3, 8),
            torch.zeros(4, 3, 8))  # fmt: skip
    torch._dynamo.reset()
    explained = torch._dynamo.explain(run)(*args)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


def _recorder(graphs: list[torch.fx.GraphModule]) -> Callable:
    """A torch.compile backend that keeps every graph Dynamo hands it and runs it as is."""

    def backend(gm: torch.fx.GraphModule, example: list) -> Callable:
        graphs.append(gm)
        return gm.forward

    return backend


def test_compiled_lengths_do_not_recompile() -> None:
    torch.manual_seed(0)
    model = _Model(cell_factory("gru"))
    torch._dynamo.reset()
    frames: list[torch.fx.GraphModule] = []
    compiled = torch.compile(model, backend=_recorder(frames), fullgraph=True, dynamic=True)
    with torch.no_grad():
        # (T = 1 would be one more graph: Dynamo specialises every size 0 or 1)
        for T in (4, 9, 2, 30):
            idx = torch.randint(11, (2, T))
            torch.testing.assert_close(compiled(idx), model(idx), rtol=1e-5, atol=1e-6)
    assert len(frames) == 1, f"{len(frames)} graphs for 4 lengths"


def test_compiled_standard_lstm_runs_onednn_not_unrolled() -> None:
    """torch.lstm would be decomposed into one block per step; compiled, the standard LSTM is
    one oneDNN node per layer and direction (rnnlab::onednn_lstm_layer), as eager runs it, with
    eager's outputs and gradients at every length."""
    torch.manual_seed(0)
    model = _Model(cell_factory("lstm"), num_layers=2, bidirectional=True)
    graphs: list[torch.fx.GraphModule] = []
    torch._dynamo.reset()
    torch.compile(model, backend=_recorder(graphs), fullgraph=True)(torch.randint(11, (2, 9)))
    targets = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    assert sum("rnnlab.onednn_lstm_layer" in t for t in targets) == 4, targets
    assert not any("aten.lstm" in t or "torch.lstm" in t for t in targets), targets
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    for T in (3, 12):
        idx = torch.randint(11, (2, T))
        out = compiled(idx)
        g_compiled = _grads(model, out.square().mean())
        eager = model(idx)
        g_eager = _grads(model, eager.square().mean())
        torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
        for a, b in zip(g_compiled, g_eager):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_onednn_lstm_layer_passes_opcheck() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 2, 3, requires_grad=True)
    w = [torch.randn(16, 3), torch.randn(16, 4), torch.randn(16), torch.randn(16)]
    w = [t.requires_grad_() for t in w]
    h0, c0 = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    for reverse in (False, True):
        torch.library.opcheck(onednn.lstm_layer, (x, *w, h0, c0, reverse, True),
                              test_utils=("test_schema", "test_faketensor",
                                          "test_autograd_registration"))  # fmt: skip


@pytest.mark.parametrize("name", ["gru", "lstm", "peephole"])
def test_trace_keeps_the_time_axis(name: str) -> None:
    """torch.jit.trace records one rnnlab::scan call per cell: other lengths run correctly."""
    torch.manual_seed(0)
    model = _Model(cell_factory(name), num_layers=2).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randint(11, (2, 5)), check_trace=False)
        for T in (1, 5, 13):
            idx = torch.randint(11, (3, T))
            torch.testing.assert_close(traced(idx), model(idx), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "ln"), [("gru", False), ("elman", False), ("lstm", False),
                                          ("gru-before", True), ("mut1", True)])  # fmt: skip
def test_higher_order_gradients_match_the_reference(name: str, ln: bool) -> None:
    torch.manual_seed(0)
    rnn = Recurrent(cell_factory(name, layer_norm=ln), 3, 4, num_layers=2, bidirectional=True,
                    backend="fast").double()  # fmt: skip
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 3])
    torch.autograd.gradgradcheck(lambda x: rnn(x, lengths=lengths)[0], (x,),
                                 check_batched_grad=True)  # fmt: skip
    torch.autograd.gradcheck(lambda x: rnn(x, lengths=lengths)[0], (x,), check_batched_grad=True)

    def second_order() -> list[torch.Tensor]:
        out = rnn(x, lengths=lengths)[0]
        wrt = [x, *rnn.parameters()]
        first = torch.autograd.grad(out.square().sum(), wrt, create_graph=True)
        return list(torch.autograd.grad(sum(g.square().sum() for g in first), wrt))

    fast_result = second_order()
    with use_backend("reference"):
        reference = second_order()
    for a, b in zip(fast_result, reference):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_batched_grads_match_a_loop() -> None:
    torch.manual_seed(0)
    rnn = Recurrent(cell_factory("gru"), 3, 4, backend="fast").double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    out, _ = rnn(x)
    vs = torch.randn(3, *out.shape, dtype=torch.float64)
    (batched,) = torch.autograd.grad(out, x, vs, is_grads_batched=True, retain_graph=True)
    for k in range(3):
        (one,) = torch.autograd.grad(out, x, vs[k], retain_graph=True)
        torch.testing.assert_close(batched[k], one, rtol=1e-10, atol=1e-12)
