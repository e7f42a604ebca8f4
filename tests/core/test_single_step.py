"""One time step on the CPU (generation) takes ATen's kernel with oneDNN off: the same results
as the whole sequence at once, and as the reference loop, for every standard cell."""

from __future__ import annotations

import pytest
import torch

from rnnlab.core.backend import use_backend
from rnnlab.core.registry import RecurrentConfig
from rnnlab.tasks.lm.model import RNNLM, LMConfig


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stepping_equals_the_whole_sequence(cell: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    layer = RecurrentConfig(cell, 16, num_layers=2).build(5).to(dtype).eval()
    x = torch.randn(3, 9, 5, dtype=dtype)
    assert layer.backend_for(x[:, :1].transpose(0, 1)) == "torch"  # one step: ATen's kernel
    with torch.no_grad():
        whole, final = layer(x)
        state, outs = None, []
        for t in range(9):
            out, state = layer(x[:, t : t + 1], state)
            outs.append(out)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(torch.cat(outs, dim=1), whole, atol=tol, rtol=tol)
    for a, b in zip(
        state if isinstance(state, tuple) else [state],
        final if isinstance(final, tuple) else [final],
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    assert torch.backends.mkldnn.enabled  # switched off only inside the step


def test_a_sequence_keeps_its_backend() -> None:
    gru = RecurrentConfig("gru", 16).build(5)
    x = torch.randn(7, 2, 5)  # time-major, 7 steps
    assert gru.backend_for(x) == "fast"  # rnnlab's loop, measured faster over sequences
    assert gru.backend_for(x[:1]) == "torch"


def test_gradients_through_single_steps() -> None:
    torch.manual_seed(0)
    layer = RecurrentConfig("lstm", 8).build(3).double()
    x = torch.randn(2, 1, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: layer(inp)[0], (x,))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_greedy_generation_equals_the_reference_loop(cell: str) -> None:
    torch.manual_seed(1)
    model = RNNLM(
        LMConfig(vocab_size=20, embedding_size=8, rnn=RecurrentConfig(cell, 24, num_layers=2))
    )
    prime = torch.tensor([3, 4, 5])
    fast = list(model.generate(prime, 40, temperature=0.0))
    with use_backend("reference"):
        reference = list(model.generate(prime, 40, temperature=0.0))
    assert fast == reference
