"""The C++ linear recurrence ``h_t = a_t * h_{t-1} + b_t`` (rnnlab/core/fast/linrec.cpp) and
its custom op ``rnnlab::linear_recurrence``.

Oracle: the recurrence as a Python loop, differentiated by autograd: outputs and the gradients of
``a``, ``b`` and ``h0`` in float64 to 1e-12, over shapes whose N*H is no multiple of the kernel's
tiles and large enough to be split over threads. Then gradcheck and gradgradcheck, the C++
backward's optional arguments, T = 10,000, opcheck, and torch.compile. The layers' use of it
(lengths, zoneout, both directions) is tested against the reference loop in test_minimal.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from rnnlab.core import fast, minimal
from rnnlab.core.fast.linrec import linear_recurrence, linear_recurrence_backward, supported
from rnnlab.core.layers import Recurrent
from rnnlab.core.minimal import MinGRUCell, MinLSTMCell
from rnnlab.errors import RnnlabError

pytestmark = pytest.mark.skipif(not fast.is_available(), reason="the C++ kernels did not build")

F64 = torch.float64

# (T, N, H): one step; one lane; N*H = 111 (below one tile of 16); N*H = 1505 over several 512-
# lane tiles with a ragged last one, and T*N*H = 60,200 elements (split over threads)
SHAPES = [(1, 1, 1), (1, 3, 5), (9, 3, 37), (40, 5, 301), (3, 2, 1024)]


def _loop(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """The recurrence written out: the oracle."""
    h, out = h0, []
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out)


def _inputs(T: int, N: int, H: int, dtype: torch.dtype = F64, seed: int = 0) -> list[Tensor]:
    """``a`` in [0, 1] with exact 0s and 1s among them (a reset, a frozen lane), ``b``, ``h0``;
    all requiring gradients."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(T, N, H, generator=g, dtype=dtype)
    a.view(-1)[::7] = 1.0
    a.view(-1)[3::11] = 0.0
    b = torch.randn(T, N, H, generator=g, dtype=dtype)
    h0 = torch.randn(N, H, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (a, b, h0)]


def _grads(h: Tensor, inputs: list[Tensor], seed: int = 1, **kw: bool) -> tuple[Tensor, ...]:
    """Gradients of a random linear loss of ``h`` and of its last step (the final state)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(h.shape, generator=g, dtype=h.dtype)
    w_final = torch.randn(h.shape[1:], generator=g, dtype=h.dtype)
    loss = (h * w).sum() + (h[-1].sin() * w_final).sum()
    return torch.autograd.grad(loss, inputs, **kw)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_kernel_equals_the_loop(shape: tuple[int, int, int]) -> None:
    inputs = _inputs(*shape)
    h, want = linear_recurrence(*inputs), _loop(*inputs)
    assert h.shape == shape and h.is_contiguous()
    torch.testing.assert_close(h, want, rtol=0, atol=1e-12)
    for got, ref in zip(_grads(h, inputs), _grads(want, inputs), strict=True):
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_float32_and_threads(threads: int) -> None:
    """float32 against the float64 loop; one thread and two give the same bits (the lanes are
    independent: threading only splits them)."""
    inputs = _inputs(40, 5, 301)
    f32 = [t.detach().float() for t in inputs]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        h = linear_recurrence(*f32)
        torch.set_num_threads(1)
        assert torch.equal(h, linear_recurrence(*f32))
    finally:
        torch.set_num_threads(previous)
    assert h.dtype == torch.float32
    torch.testing.assert_close(h.double(), _loop(*inputs).detach(), rtol=0, atol=1e-5)


def test_backward_kernel_arguments() -> None:
    """The C++ backward's contract: ``g`` starts at ``grad_final`` (or 0), ``grad_h`` may be
    absent, and with neither every gradient is zero."""
    a, b, h0 = _inputs(6, 2, 19)
    h = _loop(a, b, h0)
    g = torch.Generator().manual_seed(2)
    grad_h = torch.randn(h.shape, generator=g, dtype=F64)
    grad_final = torch.randn(h0.shape, generator=g, dtype=F64)
    backward = torch.ops.rnnlab_fast.linrec_backward
    args = (a.detach(), h.detach(), h0.detach())
    cases = [(grad_h, grad_final), (None, grad_final), (grad_h, None)]
    for gh, gf in cases:
        got = backward(*args, gh, gf)
        outputs = [o for o, d in ((h, gh), (h[-1], gf)) if d is not None]
        want = torch.autograd.grad(outputs, (a, b, h0), [d for d in (gh, gf) if d is not None],
                                   retain_graph=True)  # fmt: skip
        for x, y in zip(got, want, strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-12)
    for grad in backward(*args, None, None):
        assert not grad.any()


def test_gradcheck_and_gradgradcheck() -> None:
    inputs = _inputs(5, 2, 3)
    assert torch.autograd.gradcheck(linear_recurrence, inputs)
    assert torch.autograd.gradgradcheck(linear_recurrence, inputs)


def test_create_graph_backward_equals_the_kernel_backward() -> None:
    """Under create_graph the backward runs through the forward op (differentiable); it gives
    the C++ backward's numbers, and its own gradients are the loop's second derivatives."""
    inputs = _inputs(12, 3, 7)
    h = linear_recurrence(*inputs)
    first = _grads(h, inputs, retain_graph=True)
    twice = _grads(h, inputs, create_graph=True)
    for x, y in zip(twice, first, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)
    want = _grads(_loop(*inputs), inputs, create_graph=True)
    v = [torch.randn_like(t) for t in inputs]
    second = torch.autograd.grad(sum((x * w).sum() for x, w in zip(twice, v)), inputs)
    second_want = torch.autograd.grad(sum((x * w).sum() for x, w in zip(want, v)), inputs)
    for x, y in zip(second, second_want, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)


def test_ten_thousand_steps_stay_finite_and_exact() -> None:
    """Decays near 1 (a state summing thousands of terms) and near 0 both occur."""
    T, N, H = 10_000, 2, 3
    inputs = _inputs(T, N, H, seed=3)
    with torch.no_grad():
        inputs[0].copy_(torch.where(inputs[0] > 0.5, 1 - 1e-3 * inputs[0], 0.3 * inputs[0]))
    h, want = linear_recurrence(*inputs), _loop(*inputs)
    assert torch.isfinite(h).all()
    torch.testing.assert_close(h, want, rtol=1e-12, atol=1e-12)
    for got, ref in zip(_grads(h, inputs), _grads(want, inputs), strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    h32 = linear_recurrence(*(t.detach().float() for t in inputs))
    torch.testing.assert_close(h32.double(), want.detach(), rtol=1e-4, atol=1e-4)


def test_opcheck() -> None:
    for requires_grad in (True, False):
        inputs = [t.detach().requires_grad_(requires_grad) for t in _inputs(4, 2, 19)]
        torch.library.opcheck(linear_recurrence, inputs)
    a, b, h0 = (t.detach() for t in _inputs(4, 2, 19))
    h = linear_recurrence(a, b, h0)
    torch.library.opcheck(linear_recurrence_backward, (a, h, h0, torch.randn_like(h)))


@pytest.mark.parametrize("cell", [MinGRUCell, MinLSTMCell], ids=["mingru", "minlstm"])
def test_compiled_fullgraph_equals_eager(cell: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bidirectional layer with lengths, compiled whole (Dynamo and AOTAutograd trace the op
    and its backward), equals eager; the log-space scan is never reached."""

    def log_space(*args: object, **kw: object) -> None:
        raise AssertionError("the log-space scan ran on the CPU")

    monkeypatch.setattr(minimal, "linear_scan", log_space)
    layer = Recurrent(cell, 3, 5, bidirectional=True, dtype=F64)
    x = torch.randn(3, 6, 3, dtype=F64, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])

    def step(x: Tensor) -> tuple[Tensor, Tensor]:
        return layer(x, lengths=lengths)

    def results(run: object) -> list[Tensor]:
        out, final = run(x)  # type: ignore[operator]
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=F64).view_as(out)).sum()
        loss = loss + final.square().sum()
        return [out, final, *torch.autograd.grad(loss, [x, *layer.parameters()])]

    torch._dynamo.reset()
    try:
        got = results(torch.compile(step, fullgraph=True, backend="aot_eager"))
    finally:
        torch._dynamo.reset()
    for a, b in zip(got, results(step), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_supported_and_bad_inputs() -> None:
    assert supported(torch.zeros(1)) and supported(torch.zeros(1, dtype=F64))
    assert not supported(torch.zeros(1, dtype=torch.bfloat16))
    assert not supported(torch.zeros(1, dtype=torch.float16))
    a, b, h0 = torch.rand(4, 2, 3), torch.randn(4, 2, 3), torch.zeros(2, 3)
    cases = [
        ((a, b[:, :1], h0), "alike"),
        ((a[:0], b[:0], h0), "T >= 1"),
        ((a, b, h0[:1]), r"h0 \(N, H\) = \(2, 3\)"),
        ((a, b.double(), h0), "all float32 or all float64"),
        ((a.half(), b.half(), h0.half()), "all float32 or all float64"),
    ]
    for args, message in cases:
        with pytest.raises(RnnlabError, match=message):
            linear_recurrence(*args)


def test_batched_gradients_equal_one_at_a_time() -> None:
    """``is_grads_batched`` (vmap over the backward; torch's per-sample fallback for the op)."""
    layer = Recurrent(MinGRUCell, 3, 4, dtype=F64)
    x = torch.randn(2, 5, 3, dtype=F64, requires_grad=True)
    out, _ = layer(x)
    vs = torch.randn(3, *out.shape, dtype=F64)
    (batched,) = torch.autograd.grad(out, x, vs, is_grads_batched=True, retain_graph=True)
    for k in range(3):
        (one,) = torch.autograd.grad(out, x, vs[k], retain_graph=True)
        torch.testing.assert_close(batched[k], one, rtol=0, atol=1e-12)
