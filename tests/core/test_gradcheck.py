"""Numeric gradient checks in float64 through ``Recurrent``: inputs, initial state and every
parameter, for every cell and option, with lengths and both directions for some."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

from rnnlab.core.layers import Recurrent
from tests.core.oracle import CELL_KINDS, OPTIONS, PATHS, on_path, option_id, randomize

F64 = torch.float64


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    with on_path(request.param):
        yield request.param


def _check(rnn: Recurrent, N: int, T: int, lengths: list[int] | None = None) -> None:
    """gradcheck of (outputs, final state) w.r.t. x, the initial state and all parameters."""
    randomize(rnn, 0.6)
    names = [name for name, _ in rnn.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in rnn.parameters()]
    LK = rnn.num_layers * rnn.num_directions
    n_state = 2 if rnn.state_is_tuple else 1
    x = torch.randn(N, T, rnn.input_size, dtype=F64, requires_grad=True)
    states = [0.5 * torch.randn(LK, N, rnn.hidden_size, dtype=F64) for _ in range(n_state)]
    states = [s.requires_grad_() for s in states]
    lens = None if lengths is None else torch.tensor(lengths)

    def f(x, *rest):
        state = tuple(rest[:n_state]) if rnn.state_is_tuple else rest[0]
        kwargs = {"state": state, "lengths": lens}
        out, final = functional_call(rnn, dict(zip(names, rest[n_state:])), (x,), kwargs)
        return (out, *(final if isinstance(final, tuple) else (final,)))

    assert gradcheck(f, (x, *states, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("ln", "bias"), OPTIONS, ids=[option_id(*o) for o in OPTIONS])
@pytest.mark.parametrize("kind", list(CELL_KINDS))
def test_gradcheck_every_cell_and_option(kind: str, ln: bool, bias: bool, path: str) -> None:
    cell = CELL_KINDS[kind]
    rnn = Recurrent(lambda d, h, **kw: cell(d, h, bias=bias, layer_norm=ln, **kw), 2, 2, dtype=F64)
    _check(rnn, N=2, T=3)


# Every cell on the default dispatch; on the reference path (rnnlab.core.fast off) only a few cells
# that run rnnlab's Python loop there, to keep the suite fast.
BIDIRECTIONAL_CASES = [("fast", kind) for kind in CELL_KINDS] + [
    ("reference", kind) for kind in ("gru-before", "peephole-nofg", "minimal-gru")
]


@pytest.mark.parametrize(("path", "kind"), BIDIRECTIONAL_CASES, indirect=["path"])
def test_gradcheck_bidirectional_stacked_with_lengths(kind: str, path: str) -> None:
    ln = kind in ("gru-before", "peephole", "additive")  # LN on some, both paths covered
    cell = CELL_KINDS[kind]
    rnn = Recurrent(
        lambda d, h, **kw: cell(d, h, layer_norm=ln, **kw),
        2,
        2,
        num_layers=2,
        bidirectional=True,
        dtype=F64,
    )
    _check(rnn, N=3, T=3, lengths=[3, 1, 2])
