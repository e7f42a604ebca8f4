"""The fast path against its oracle, the readable reference loop: outputs, final states and every
gradient (inputs, initial state, all parameters), for every cell and option, with lengths and
both directions; float64 within 1e-10, float32 within 1e-5. Plus its dispatch rules and its
fallback when the C++ kernels cannot be built."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from functools import partial

import pytest
import torch
from torch import Tensor

from rnnlab.core import fast
from rnnlab.core.backend import use_backend
from rnnlab.core.cells import AdditiveCell, ElmanCell, GRUCell, LSTMCell, MinimalGRUCell
from rnnlab.core.fast import _build
from rnnlab.core.layers import Recurrent, scan
from rnnlab.core.mut import MUT1Cell, MUT2Cell, MUT3Cell
from rnnlab.nn import GRU, LSTM, RNN

CELLS = {
    "elman-tanh": ElmanCell,
    "elman-relu": partial(ElmanCell, nonlinearity="relu"),
    "additive": AdditiveCell,
    "minimal-gru": MinimalGRUCell,
    "gru-after": GRUCell,
    "gru-before": partial(GRUCell, reset="before"),
    "lstm": partial(LSTMCell, forget_bias=None),
    "lstm-nofg": partial(LSTMCell, forget_gate=False, forget_bias=None),
    "peephole": partial(LSTMCell, peephole=True, forget_bias=None),
    "peephole-nofg": partial(LSTMCell, peephole=True, forget_gate=False, forget_bias=None),
    "mut1": MUT1Cell,
    "mut2": MUT2Cell,
    "mut3": MUT3Cell,
}
OPTIONS = [(ln, bias) for ln in (False, True) for bias in (True, False)]
F64 = torch.float64

# Skipped only where no C++ compiler exists: with one, a broken build must fail these tests, not
# skip them (test_kernels_build_where_a_compiler_is says so first).
HAVE_COMPILER = shutil.which(os.environ.get("CXX", "c++")) is not None
needs_kernels = pytest.mark.skipif(not HAVE_COMPILER, reason="no C++ compiler here")


@needs_kernels
def test_kernels_build_where_a_compiler_is() -> None:
    assert fast.is_available(), "rnnlab.core.fast's C++ kernels failed to build (see the warning)"


def _randomize(module: torch.nn.Module, scale: float = 0.5) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-scale, scale)


def _state(cell: torch.nn.Module, N: int, dtype: torch.dtype) -> Tensor | tuple[Tensor, Tensor]:
    H = cell.hidden_size
    if cell.state_is_tuple:
        return tuple((0.5 * torch.randn(N, H, dtype=dtype)).requires_grad_() for _ in range(2))
    return (0.5 * torch.randn(N, H, dtype=dtype)).requires_grad_()


def _mask(T: int, lengths: list[int] | None) -> Tensor | None:
    if lengths is None:
        return None
    return (torch.arange(T).unsqueeze(1) < torch.tensor(lengths).unsqueeze(0)).unsqueeze(-1)


def _scan_results(run, cell, x, state) -> list[Tensor]:
    """Outputs, final state and the gradients of a random loss w.r.t. x, state, parameters."""
    out, final = run()
    finals = list(final) if isinstance(final, tuple) else [final]
    g = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    loss = loss + sum((f * torch.randn(f.shape, generator=g, dtype=f.dtype)).sum() for f in finals)
    leaves = [x, *(state if isinstance(state, tuple) else (state,)), *cell.parameters()]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [out, *finals, *(torch.zeros_like(p) if d is None else d for d, p in zip(grads, leaves))]


def _compare_scan(cell, T: int, N: int, lengths, dtype, tol: float, rel: bool = False) -> None:
    _randomize(cell)
    x = torch.randn(T, N, cell.input_size, dtype=dtype, requires_grad=True)
    state = _state(cell, N, dtype)
    mask = _mask(T, lengths)
    assert fast.supports(cell, x)
    got = _scan_results(
        lambda: fast.scan(cell, cell.input_projection(x), state, mask), cell, x, state
    )
    want = _scan_results(
        lambda: scan(cell, cell.input_projection(x), state, mask)[:2], cell, x, state
    )
    for a, b in zip(got, want):
        err = (a - b).abs().max().item()
        scale = b.abs().max().item() if rel else 1.0
        assert err <= tol * max(scale, 1.0), f"max error {err:.3g} (scale {scale:.3g})"


@needs_kernels
@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize(("ln", "bias"), OPTIONS, ids=lambda v: str(v))
@pytest.mark.parametrize("kind", list(CELLS))
def test_scan_equals_reference_float64(kind: str, ln: bool, bias: bool, masked: bool) -> None:
    cell = CELLS[kind](3, 5, bias=bias, layer_norm=ln, dtype=F64)
    _compare_scan(cell, T=6, N=4, lengths=[6, 2, 5, 1] if masked else None, dtype=F64, tol=1e-10)


@needs_kernels
@pytest.mark.parametrize("kind", list(CELLS))
def test_scan_equals_reference_float32(kind: str) -> None:
    cell = CELLS[kind](6, 16, layer_norm=kind.startswith(("lstm", "gru-before", "additive", "mut")))
    lengths = [20, 3, 11, 20, 7]
    _compare_scan(cell, T=20, N=5, lengths=lengths, dtype=torch.float32, tol=1e-5, rel=True)


@needs_kernels
@pytest.mark.parametrize(
    "kind", ["gru-before", "gru-after", "peephole", "minimal-gru", "mut1", "mut3"]
)
def test_rows_split_over_threads_and_weight_gradient_in_chunks(kind: str) -> None:
    """Big steps are split over threads (per-thread gradient sums must add up); with many rows
    the weight gradient is accumulated over chunks of steps (kernels.h: kChunkRows)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cell = CELLS[kind](8, 64, layer_norm=True, dtype=F64)
        lengths = [7] * 60 + [3] * 50 + [1] * 50  # 160 rows: chunks of 4 steps
        _compare_scan(cell, T=7, N=160, lengths=lengths, dtype=F64, tol=1e-10, rel=True)
    finally:
        torch.set_num_threads(before)


@needs_kernels
@pytest.mark.parametrize("kind", ["lstm", "peephole", "gru-before", "mut3", "minimal-gru"])
def test_cached_buffers_are_reused_and_stay_correct(kind: str) -> None:
    """Freed internal buffers go to the cache and the next call of the same shape gets them back,
    holding the previous call's data: the results must still equal the reference's (with lengths,
    so that frozen rows are covered). Outputs never come from the cache (they stay resizable),
    and a limit of 0 empties it."""
    before = fast.set_cache_limit(64)
    try:
        cell = CELLS[kind](8, 48, layer_norm=True, dtype=F64)
        lengths = [30, 4, 17, 30, 1, 22] * 4  # 24 rows x 30 steps: buffers of 0.3-2.2 MB
        _compare_scan(cell, T=30, N=24, lengths=None, dtype=F64, tol=1e-10, rel=True)
        assert fast.cached_bytes() > 0
        _compare_scan(cell, T=30, N=24, lengths=lengths, dtype=F64, tol=1e-10, rel=True)
        kept = fast.cached_bytes()  # with lengths the states need a buffer of their own
        _compare_scan(cell, T=30, N=24, lengths=lengths, dtype=F64, tol=1e-10, rel=True)
        assert fast.cached_bytes() == kept  # the same buffers went out and came back
        x = torch.randn(30, 24, 8, dtype=F64)
        out, _ = fast.scan(cell, cell.input_projection(x), _state(cell, 24, F64))
        out.detach().resize_(2, 2)  # a from_blob (cached) tensor could not be resized
        assert fast.set_cache_limit(0) == 64
        assert fast.cached_bytes() == 0
        _compare_scan(cell, T=30, N=24, lengths=lengths, dtype=F64, tol=1e-10, rel=True)
        assert fast.cached_bytes() == 0
    finally:
        fast.set_cache_limit(before)
    with pytest.raises(ValueError, match=">= 0"):
        fast.set_cache_limit(-1)


@needs_kernels
@pytest.mark.parametrize(("value", "mib"), [("0", 0.0), ("64", 64.0), ("-5", 256.0), ("x", 256.0)])
def test_cache_limit_from_the_environment(value: str, mib: float) -> None:
    """RNNLAB_FAST_CACHE_MB sets the limit at load (0: off); a bad value keeps the default."""
    code = (
        "from rnnlab.core import fast; assert fast.is_available(); print(fast.set_cache_limit(1))"
    )
    env = {**os.environ, "RNNLAB_FAST_CACHE_MB": value}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) == mib


def _layer_results(rnn: Recurrent, x: Tensor, state, lengths) -> list[Tensor]:
    out, final = rnn(x, state, lengths=lengths)
    finals = list(final) if isinstance(final, tuple) else [final]
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum()
    loss = loss + sum((f * f).sum() for f in finals)
    leaves = [x, *(state if isinstance(state, tuple) else (state,)), *rnn.parameters()]
    return [out, *finals, *torch.autograd.grad(loss, leaves)]


@needs_kernels
@pytest.mark.parametrize("kind", ["peephole", "gru-before", "minimal-gru", "additive", "mut2"])
def test_recurrent_stacked_bidirectional_lengths(kind: str) -> None:
    """Recurrent runs the fast path by default and gives what the reference gives."""
    rnn = Recurrent(partial(CELLS[kind], layer_norm=True), 3, 6, num_layers=2,
                    bidirectional=True, dtype=F64)  # fmt: skip
    _randomize(rnn)
    x = torch.randn(4, 7, 3, dtype=F64, requires_grad=True)
    n_state = 2 if rnn.state_is_tuple else 1
    state = tuple(torch.randn(4, 4, 6, dtype=F64, requires_grad=True) for _ in range(n_state))
    state = state if rnn.state_is_tuple else state[0]
    lengths = torch.tensor([7, 3, 1, 5])
    calls = []
    original = fast.scan

    def counting_scan(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    fast.scan = counting_scan
    try:
        got = _layer_results(rnn, x, state, lengths)
    finally:
        fast.scan = original
    assert len(calls) == 4  # 2 layers x 2 directions
    with use_backend("reference"):
        assert rnn.backend_for(x) == "reference"
        want = _layer_results(rnn, x, state, lengths)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@needs_kernels
def test_no_grad_forward_equals_training_forward() -> None:
    rnn = Recurrent(partial(LSTMCell, peephole=True, layer_norm=True), 4, 8, dtype=F64)
    x = torch.randn(3, 9, 4, dtype=F64)
    lengths = torch.tensor([9, 4, 6])
    with torch.no_grad():
        out, (h, c) = rnn(x, lengths=lengths)
    out2, (h2, c2) = rnn(x, lengths=lengths)
    assert out2.requires_grad and not out.requires_grad
    for a, b in ((out, out2), (h, h2), (c, c2)):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-12)


@needs_kernels
def test_double_backward_runs_the_cells_math() -> None:
    """create_graph=True recomputes through the reference math (tests/core/test_compile.py
    checks every order against the reference loop)."""
    rnn = Recurrent(partial(GRUCell, reset="before"), 2, 3, dtype=F64)
    x = torch.randn(2, 4, 2, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(rnn(x)[0].square().sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), x)
    with use_backend("reference"):
        (g_ref,) = torch.autograd.grad(rnn(x)[0].square().sum(), x, create_graph=True)
        (gg_ref,) = torch.autograd.grad(g_ref.square().sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gg, gg_ref, rtol=1e-10, atol=1e-12)
    fast_only = fast.scan  # without the layer's input there is nothing to recompute from
    cell = rnn.cells[0]
    xp = cell.input_projection(x.transpose(0, 1))
    out, _ = fast_only(cell, xp, torch.zeros(2, 3, dtype=F64))
    with pytest.raises(RuntimeError, match="higher-order gradients need the layer's input"):
        torch.autograd.grad(out.sum(), xp, create_graph=True)
    (g,) = torch.autograd.grad(out.sum(), xp)  # first order: the kernel's backward
    assert g.shape == xp.shape


@needs_kernels
def test_what_the_fast_path_does_not_cover_runs_the_reference() -> None:
    class Custom(LSTMCell):  # a subclass that overrides the math may change it
        def _gates(self, xp, state):
            return super()._gates(xp, state)

    x = torch.randn(5, 2, 3)
    assert not fast.supports(Custom(3, 4), x)
    assert not fast.supports(
        LSTMCell(3, 4, peephole=True).to(torch.complex64), x.to(torch.complex64)
    )
    assert fast.supports(LSTMCell(3, 4, peephole=True).half(), x.half())  # in float32
    assert fast.supports(LSTMCell(3, 4, peephole=True), x)
    rnn = Recurrent(partial(LSTMCell, peephole=True), 3, 4, return_states=True)
    out, _, states = rnn(torch.randn(2, 5, 3))  # per-step states: the reference loop
    assert states[0].shape == (1, 2, 5, 4)
    torch.testing.assert_close(out[:, -1], states[0][0, :, -1])


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_gru_and_rnn_use_rnnlab_kernel_with_torch_results(dtype: torch.dtype) -> None:
    """Standard GRU/RNN run rnnlab's loop on CPU (faster than torch's there), same results."""
    tol = 1e-10 if dtype == F64 else 1e-5
    for ours_cls, theirs_cls in ((GRU, torch.nn.GRU), (RNN, torch.nn.RNN)):
        theirs = theirs_cls(5, 7, num_layers=2, bidirectional=True, dtype=dtype)
        ours = ours_cls(5, 7, num_layers=2, bidirectional=True, dtype=dtype)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(6, 3, 5, dtype=dtype)
        assert ours.backend_for(x) == "fast"
        with use_backend("torch"):
            assert ours.backend_for(x) == "torch"
        results = []
        for model in (ours, theirs):
            xx = x.clone().requires_grad_()
            out, h = model(xx)
            (out.sum() + (h * h).sum()).backward()
            grads = [p.grad for p in model.parameters()]
            results.append([out, h, xx.grad, *grads])
            model.zero_grad()
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=0, atol=tol)


@needs_kernels
def test_lstm_keeps_torch_kernel() -> None:
    """torch.nn.LSTM goes through oneDNN on CPU: the standard LSTM stays with torch."""
    x = torch.randn(4, 2, 3)
    assert LSTM(3, 5).backend_for(x) == "torch"
    assert LSTM(3, 5, peephole=True).backend_for(x) == "fast"


def test_without_compiler_warns_once_and_uses_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler() -> None:
        raise RuntimeError("Error building extension: c++: command not found")

    monkeypatch.setattr(_build, "_state", {})
    monkeypatch.setattr(_build, "_load", no_compiler)
    rnn = Recurrent(MinimalGRUCell, 3, 4)
    x = torch.randn(2, 5, 3)
    with pytest.warns(RuntimeWarning, match="C\\+\\+ kernels unavailable.*reference loop"):
        out, _ = rnn(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning only
        out2, _ = rnn(x)
    assert not fast.is_available()
    torch.testing.assert_close(out, out2)


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "c"))
    assert _build.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("RNNLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _build.cache_dir() == tmp_path / "rnnlab"
