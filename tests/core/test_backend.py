"""The execution backends: every backend against the reference, the one switch, the kernel enum.

xlstm's anchor: each test runs a backend and the readable reference loop on the same layer and
compares outputs, final states and every gradient (float64, 1e-10).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import Tensor

import rnnlab.nn
from rnnlab.core import fast
from rnnlab.core.backend import BACKENDS, use_backend
from rnnlab.core.cells import AdditiveCell, ElmanCell, GRUCell, LSTMCell, MinimalGRUCell
from rnnlab.core.fast import _build
from rnnlab.core.kernels import Kernel
from rnnlab.core.layers import Recurrent
from rnnlab.core.mut import MUT1Cell, MUT2Cell, MUT3Cell
from rnnlab.errors import RnnlabError

F64 = torch.float64
HAVE_COMPILER = shutil.which(os.environ.get("CXX", "c++")) is not None
needs_kernels = pytest.mark.skipif(not HAVE_COMPILER, reason="no C++ compiler here")

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
    "mut1": MUT1Cell,
    "mut2": MUT2Cell,
    "mut3": MUT3Cell,
}


def _results(rnn: Recurrent, x: Tensor, state, lengths: Tensor) -> list[Tensor]:
    out, final = rnn(x, state, lengths=lengths)
    finals = list(final) if isinstance(final, tuple) else [final]
    g = torch.Generator().manual_seed(3)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    loss = loss + sum((f * torch.randn(f.shape, generator=g, dtype=f.dtype)).sum() for f in finals)
    leaves = [x, *(state if isinstance(state, tuple) else (state,)), *rnn.parameters()]
    return [out, *finals, *torch.autograd.grad(loss, leaves)]


@pytest.mark.parametrize("ln", [False, True], ids=["noln", "ln"])
@pytest.mark.parametrize("backend", ["torch", "fast"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_every_backend_equals_reference(kind: str, backend: str, ln: bool) -> None:
    rnn = Recurrent(partial(CELLS[kind], layer_norm=ln), 3, 5, num_layers=2,
                    bidirectional=True, dtype=F64, backend=backend)  # fmt: skip
    with torch.no_grad():
        for p in rnn.parameters():
            p.uniform_(-0.6, 0.6)
    x = torch.randn(4, 6, 3, dtype=F64, requires_grad=True)
    n = 2 if rnn.state_is_tuple else 1
    parts = tuple(torch.randn(4, 4, 5, dtype=F64, requires_grad=True) for _ in range(n))
    state = parts if rnn.state_is_tuple else parts[0]
    lengths = torch.tensor([6, 2, 5, 1])
    torch_cell = not ln and kind in ("elman-tanh", "elman-relu", "gru-after", "lstm")
    if backend == "torch" and not torch_cell:
        # only torch's own cells in their standard configuration run on torch: a clear error
        with pytest.raises(RnnlabError, match="backend 'torch' cannot run this layer"):
            rnn.backend_for(x.transpose(0, 1))
        return
    if backend == "fast" and not HAVE_COMPILER:
        with pytest.raises(RnnlabError, match="could not be built"):
            rnn.backend_for(x.transpose(0, 1))
        return
    assert rnn.backend_for(x.transpose(0, 1)) == backend
    got = _results(rnn, x, state, lengths)
    with use_backend("reference"):
        assert rnn.backend_for(x) == "reference"
        want = _results(rnn, x, state, lengths)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def _one_line_error(rnn: Recurrent, x: Tensor, match: str) -> None:
    with pytest.raises(RnnlabError, match=match) as info:
        rnn.backend_for(x)
    assert "\n" not in str(info.value)


@needs_kernels
def test_explicit_fast_raises_where_it_cannot_run() -> None:
    x = torch.randn(5, 2, 3)
    fast_lstm = partial(Recurrent, LSTMCell, 3, 4, backend="fast")
    assert fast_lstm().backend_for(x) == "fast"
    _one_line_error(fast_lstm(return_states=True), x, "return_states=True")
    with pytest.raises(RnnlabError, match="return_states"):
        fast_lstm(return_states=True)(x)  # forward raises too: never a silent fallback
    hooked = fast_lstm()
    hooked.register_step_hook(lambda *args: None)
    _one_line_error(hooked, x, "step hooks")
    _one_line_error(fast_lstm(), x.to("meta"), "CPU tensors only, got a meta tensor")
    _one_line_error(fast_lstm().to(torch.complex64), x.to(torch.complex64),
                    "float32, float64, bfloat16 and float16 only, got torch.complex64")  # fmt: skip

    class Custom(LSTMCell):
        def _gates(self, xp, state):
            return super()._gates(xp, state)

    _one_line_error(Recurrent(Custom, 3, 4, backend="fast"), x, "declares no fused kernel")


def test_explicit_torch_raises_where_it_cannot_run() -> None:
    x = torch.randn(5, 2, 3)
    peephole = Recurrent(partial(LSTMCell, peephole=True), 3, 4, backend="torch")
    _one_line_error(peephole, x, "LSTMCell in this configuration is not one of torch's")
    with pytest.raises(RnnlabError, match="backend 'torch' cannot run"):
        peephole(x)
    hooked = Recurrent(LSTMCell, 3, 4, backend="torch")
    handle = hooked.register_step_hook(lambda *args: None)
    _one_line_error(hooked, x, "step hooks")
    handle.remove()
    assert hooked.backend_for(x) == "torch"
    assert Recurrent(MUT1Cell, 3, 4, backend="reference").backend_for(x) == "reference"


def test_fast_without_kernels_says_they_could_not_be_built(monkeypatch) -> None:
    monkeypatch.setattr(fast, "is_available", lambda: False)
    rnn = Recurrent(MinimalGRUCell, 3, 4, backend="fast")
    _one_line_error(rnn, torch.randn(5, 2, 3), "C\\+\\+ kernels could not be built")
    assert Recurrent(MinimalGRUCell, 3, 4).backend_for(torch.randn(5, 2, 3)) == "reference"


@needs_kernels
def test_auto_picks_what_it_picked_before() -> None:
    x = torch.randn(5, 2, 3)
    assert rnnlab.nn.LSTM(3, 4).backend_for(x) == "torch"  # oneDNN: torch's is faster
    for standard in (
        rnnlab.nn.GRU(3, 4),
        rnnlab.nn.RNN(3, 4),
        rnnlab.nn.RNN(3, 4, nonlinearity="relu"),
    ):
        assert standard.backend_for(x) == "fast"  # rnnlab's loop measured faster
        assert standard.backend_for(x.double()) == "fast"
    for kind, factory in CELLS.items():
        for ln in (False, True):
            rnn = Recurrent(partial(factory, layer_norm=ln), 3, 4)
            want = "torch" if (kind == "lstm" and not ln) else "fast"
            assert rnn.backend_for(x) == want, kind
    assert Recurrent(LSTMCell, 3, 4, return_states=True).backend_for(x) == "reference"
    hooked = Recurrent(GRUCell, 3, 4)
    hooked.register_step_hook(lambda *args: None)
    assert hooked.backend_for(x) == "reference"
    # where the fast path cannot run, torch's kernel (GRU) or the reference loop (variants)
    assert rnnlab.nn.GRU(3, 4).backend_for(x.to("meta")) == "torch"
    assert Recurrent(MUT2Cell, 3, 4).backend_for(x.to("meta")) == "reference"


def test_use_backend_overrides_and_nests() -> None:
    x = torch.randn(5, 2, 3)
    rnn = Recurrent(LSTMCell, 3, 4, backend="torch")
    assert rnn.backend_for(x) == "torch"
    with use_backend("reference"):
        assert rnn.backend_for(x) == "reference"
        with use_backend("auto"):  # the automatic choice again, over the layer's own
            assert rnn.backend_for(x) == "torch"
            peephole = Recurrent(partial(LSTMCell, peephole=True), 3, 4, backend="torch")
            assert peephole.backend_for(x) in ("fast", "reference")
        assert rnn.backend_for(x) == "reference"
        seen = []
        thread = threading.Thread(target=lambda: seen.append(rnn.backend_for(x)))
        thread.start()
        thread.join()
        assert seen == ["torch"]  # per thread
    assert rnn.backend_for(x) == "torch"
    with pytest.raises(ValueError, match="'auto', 'torch', 'fast', 'reference'"), use_backend("x"):
        pass
    assert BACKENDS == ("auto", "torch", "fast", "reference")


def test_backend_is_validated_and_shown() -> None:
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'torch', 'fast'"):
        Recurrent(LSTMCell, 3, 4, backend="vanilla")
    with pytest.raises(ValueError, match="backend must be one of"):
        rnnlab.nn.GRU(3, 4, backend="cudnn")
    assert "backend" not in repr(Recurrent(LSTMCell, 3, 4))
    assert "backend='reference'" in repr(Recurrent(LSTMCell, 3, 4, backend="reference"))
    lstm = rnnlab.nn.LSTM(3, 4, backend="reference")
    assert lstm.backend == "reference" and lstm.backend_for(torch.randn(2, 1, 3)) == "reference"


def test_step_hooks_observe_and_replace_then_are_removed() -> None:
    rnn = Recurrent(GRUCell, 3, 4, bidirectional=True, dtype=F64)
    x = torch.randn(2, 5, 3, dtype=F64)
    lengths = torch.tensor([5, 3])
    want, _ = rnn(x, lengths=lengths)
    calls = []

    def watch(layer, direction, t, xp_t, state, h, new_state, gates):
        calls.append((layer, direction, t))
        assert xp_t.shape == (2, 12) and set(gates) == {"r", "z"}
        assert h is new_state

    handle = rnn.register_step_hook(watch)
    got, _ = rnn(x, lengths=lengths)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert sorted(calls) == [(0, d, t) for d in (0, 1) for t in range(5)]
    doubled = rnn.register_step_hook(lambda *a: (2 * a[5], 2 * a[6]))
    out, _ = rnn(x[:, :1])
    cell = rnn.cell_at(0)
    h1, _ = cell(x[:, 0], cell.initial_state(2, dtype=F64))
    torch.testing.assert_close(out[:, 0, :4], 2 * h1)
    handle.remove()
    doubled.remove()
    assert not rnn._step_hooks
    assert rnn.backend_for(x) == ("fast" if fast.is_available() else "torch")


# -- cells declare their kernels --------------------------------------------------------------
def test_cells_declare_their_kernels() -> None:
    assert ElmanCell(2, 3).kernel() is Kernel.ELMAN_TANH
    assert ElmanCell(2, 3, "relu").kernel() is Kernel.ELMAN_RELU
    assert AdditiveCell(2, 3).kernel() is Kernel.ADDITIVE
    assert MinimalGRUCell(2, 3).kernel() is Kernel.MINIMAL_GRU
    assert GRUCell(2, 3).kernel() is Kernel.GRU_AFTER
    assert GRUCell(2, 3, reset="before").kernel() is Kernel.GRU_BEFORE
    assert LSTMCell(2, 3, peephole=True).kernel() is Kernel.LSTM
    assert LSTMCell(2, 3, forget_gate=False, forget_bias=None).kernel() is Kernel.LSTM_NO_FORGET
    assert [c(2, 3).kernel() for c in (MUT1Cell, MUT2Cell, MUT3Cell)] == [
        Kernel.MUT1,
        Kernel.MUT2,
        Kernel.MUT3,
    ]
    assert LSTMCell(2, 3).torch_kernel() == "LSTM"
    assert LSTMCell(2, 3, layer_norm=True).torch_kernel() is None
    assert GRUCell(2, 3).torch_kernel() == "GRU"
    assert GRUCell(2, 3, reset="before").torch_kernel() is None
    assert ElmanCell(2, 3, "relu").torch_kernel() == "RNN_RELU"
    assert MUT1Cell(2, 3).torch_kernel() is None


def test_a_subclass_that_overrides_the_math_declares_no_kernel() -> None:
    class Same(GRUCell):  # inherits the math: keeps the kernels
        pass

    class NewGates(GRUCell):
        def _gates(self, xp, state):
            h, new_state, gates = super()._gates(xp, state)
            return 2 * h, 2 * new_state, gates

    class NewStep(ElmanCell):
        def step(self, xp, state):
            return super().step(xp, state)

    class Declared(NewGates):  # re-declares: its author vouches for the kernel
        def kernel(self):
            return Kernel.GRU_AFTER

    assert Same(2, 3).kernel() is Kernel.GRU_AFTER and Same(2, 3).torch_kernel() == "GRU"
    assert NewGates(2, 3).kernel() is None and NewGates(2, 3).torch_kernel() is None
    assert NewStep(2, 3).kernel() is None and NewStep(2, 3).torch_kernel() is None
    assert Declared(2, 3).kernel() is Kernel.GRU_AFTER and Declared(2, 3).torch_kernel() is None
    x = torch.randn(4, 2, 2)
    assert Recurrent(NewGates, 2, 3).backend_for(x) == "reference"


def test_kinds_header_is_generated_from_the_enum() -> None:
    text = _build.kinds_header()
    found = dict(re.findall(r"^\s+(k\w+) = (\d+),$", text, flags=re.M))
    assert {name: int(v) for name, v in found.items()} == {k.cpp_name: int(k) for k in Kernel}
    assert "enum Kind : int64_t {" in text
    assert Kernel.MINIMAL_GRU.cpp_name == "kMinimalGru"
    assert Kernel.GRU_AFTER.cpp_name == "kGruAfter"
    assert Kernel.LSTM_NO_FORGET.cpp_name == "kLstmNoForget"
    assert Kernel.MUT1.cpp_name == "kMut1"
    header = (Path(_build.__file__).parent / "kernels.h").read_text()
    assert '#include "kinds.h"' in header
    assert re.search(r"^\s*enum Kind", header, flags=re.M) is None  # defined once, generated
    sources = " ".join(p.read_text() for p in Path(_build.__file__).parent.glob("*.cpp"))
    kinds = r"\bk(?:Elman|Additive|Minimal|Gru|GRU|Lstm|LSTM|Mut|MUT)\w*"
    assert set(re.findall(kinds, sources)) <= {k.cpp_name for k in Kernel}


def test_no_other_module_decides_a_backend() -> None:
    root = Path(rnnlab.nn.__file__).parent
    allowed = {root / "core" / "layers.py", root / "core" / "backend.py"}
    deciders = re.compile(
        r"_kernel_mode|fast\.disabled|fast\.enabled|prefers_own_kernel|fast\.why_not|fast\.supports"
    )
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path not in allowed
        and path.parent != root / "core" / "fast"  # where the capability checks are defined
        and deciders.search(path.read_text())
    ]
    assert offenders == []


# -- parameters declared once, old checkpoints still load -------------------------------------
def test_gru_before_loads_checkpoints_with_the_old_layer_norm_names() -> None:
    cell = GRUCell(3, 4, reset="before", layer_norm=True)
    assert [n for n, _ in cell.named_parameters() if n.startswith("ln_hh")] == [
        "ln_hh.0.weight",
        "ln_hh.1.weight",
    ]
    old = dict(cell.state_dict())
    old["ln_hh.weight"] = torch.full((8,), 0.5)
    old["ln_hn.weight"] = torch.full((4,), 2.0)
    del old["ln_hh.0.weight"], old["ln_hh.1.weight"]
    fresh = GRUCell(3, 4, reset="before", layer_norm=True)
    fresh.load_state_dict(old)  # strict
    assert torch.equal(fresh.ln_hh[0].weight, torch.full((8,), 0.5))
    assert torch.equal(fresh.ln_hh[1].weight, torch.full((4,), 2.0))

    drop_in = rnnlab.nn.GRU(3, 4, reset="before", layer_norm=True, bidirectional=True)
    sd = dict(drop_in.state_dict())
    assert "ln_hh_1_weight_l0_reverse" in sd
    sd["ln_hn_weight_l0_reverse"] = torch.full((4,), 3.0)
    del sd["ln_hh_1_weight_l0_reverse"]
    loaded = rnnlab.nn.GRU(3, 4, reset="before", layer_norm=True, bidirectional=True)
    loaded.load_state_dict(sd)
    assert torch.equal(loaded.cell_at(0, 1).ln_hh[1].weight, torch.full((4,), 3.0))


def test_import_and_run_without_fcntl() -> None:
    """Windows has no fcntl: importing rnnlab and building/loading the kernels must not need it."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import torch, rnnlab\n"
        "from rnnlab.core import fast\n"
        "from rnnlab.core.layers import Recurrent\n"
        "from rnnlab.core.cells import GRUCell\n"
        "rnn = Recurrent(GRUCell, 3, 4)\n"
        "out, _ = rnn(torch.randn(2, 5, 3))\n"
        "print(fast.is_available(), rnn.backend_for(torch.randn(5, 2, 3)), tuple(out.shape))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    available, backend, shape = done.stdout.split(maxsplit=2)
    assert shape.strip() == "(2, 5, 4)"
    if HAVE_COMPILER:
        assert available == "True" and backend == "fast"
