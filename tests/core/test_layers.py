"""``Recurrent`` against step-by-step oracles: stacking, directions, lengths, packing, chunking."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.core.cells import ElmanCell, GRUCell, LSTMCell
from rnnlab.core.layers import Recurrent, flip_valid
from tests.core.oracle import CELL_KINDS, PATHS, naive_recurrent, on_path, randomize

F64 = torch.float64
D, H = 3, 4
TOL = {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    with on_path(request.param):
        yield request.param


def _rnn(kind: str, ln: bool = False, num_layers: int = 2, bidirectional: bool = True, **kw):
    cell = CELL_KINDS[kind]
    if ln:
        cell = partial(cell, layer_norm=True)
    rnn = Recurrent(cell, D, H, num_layers, bidirectional, dtype=F64, **kw)
    return randomize(rnn, 0.7).eval()


def _state(rnn: Recurrent, N: int):
    shape = (rnn.num_layers * rnn.num_directions, N, H)
    if rnn.state_is_tuple:
        return (torch.randn(shape, dtype=F64), torch.randn(shape, dtype=F64))
    return torch.randn(shape, dtype=F64)


def _parts(state) -> tuple:
    return state if isinstance(state, tuple) else (state,)


def _sel(state, n: slice | int, dim: int = 1):
    """Batch entries ``n`` of a state (or pair of states)."""
    parts = tuple(p.narrow(dim, n.start, n.stop - n.start) for p in _parts(state))
    return parts if isinstance(state, tuple) else parts[0]


def _close(a, b, **tol) -> None:
    for x, y in zip(_parts(a), _parts(b), strict=True):
        torch.testing.assert_close(x, y, **(tol or TOL))


# kinds x layer norm: every cell, the torch-kernel cells also with LN (so on rnnlab's own loop)
KINDS_LN = [(k, False) for k in CELL_KINDS] + [
    ("lstm", True),
    ("gru-after", True),
    ("elman-tanh", True),
    ("peephole", True),
    ("gru-before", True),
]
KINDS_LN_IDS = [k + ("-ln" if ln else "") for k, ln in KINDS_LN]


@pytest.mark.parametrize(("kind", "ln"), KINDS_LN, ids=KINDS_LN_IDS)
def test_stacked_bidirectional_matches_oracle(kind: str, ln: bool, path: str) -> None:
    rnn = _rnn(kind, ln, num_layers=2, bidirectional=True)
    x, s0 = torch.randn(2, 4, D, dtype=F64), _state(rnn, 2)
    out, final = rnn(x, s0)
    ref_out, ref_final, _ = naive_recurrent(rnn, x.transpose(0, 1), s0)
    assert out.shape == (2, 4, 2 * H)
    _close(out, ref_out.transpose(0, 1))
    _close(final, ref_final)


@pytest.mark.parametrize(("kind", "ln"), KINDS_LN, ids=KINDS_LN_IDS)
def test_lengths_match_each_sequence_alone(kind: str, ln: bool, path: str) -> None:
    """Padded batch with lengths == each sequence run alone, unpadded, by the oracle loop:
    the reverse direction reverses only the valid part, outputs past the length are exactly
    zero, the final state is the state at each sequence's own last step."""
    rnn = _rnn(kind, ln, num_layers=2, bidirectional=True)
    lengths = [5, 2, 4]
    x, s0 = torch.randn(3, 5, D, dtype=F64), _state(rnn, 3)
    x[1, 2:] = 1e3  # padding must not matter
    out, final = rnn(x, s0, lengths=torch.tensor(lengths))
    for n, length in enumerate(lengths):
        ref_out, ref_final, _ = naive_recurrent(
            rnn, x[n, :length].unsqueeze(1), _sel(s0, slice(n, n + 1))
        )
        _close(out[n, :length], ref_out[:, 0])
        assert (out[n, length:] == 0).all()
        _close(_sel(final, slice(n, n + 1)), ref_final)
        # and through Recurrent itself: the sequence alone, unpadded
        alone_out, alone_final = rnn(x[n : n + 1, :length], _sel(s0, slice(n, n + 1)))
        _close(out[n : n + 1, :length], alone_out)
        _close(_sel(final, slice(n, n + 1)), alone_final)


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(["lstm", "peephole", "gru-before", "elman-relu"]),
    lengths=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    bidirectional=st.booleans(),
)
def test_padded_batch_equals_each_alone(kind: str, lengths: list[int], bidirectional: bool):
    torch.manual_seed(len(lengths))
    rnn = _rnn(kind, num_layers=2, bidirectional=bidirectional)
    T = max(lengths)
    x = torch.randn(len(lengths), T, D, dtype=F64)
    out, final = rnn(x, lengths=lengths)
    for n, length in enumerate(lengths):
        alone_out, alone_final = rnn(x[n : n + 1, :length])
        _close(out[n : n + 1, :length], alone_out)
        assert (out[n, length:] == 0).all()
        _close(_sel(final, slice(n, n + 1)), alone_final)


@pytest.mark.parametrize("kind", ["lstm", "gru-after", "elman-tanh", "peephole", "additive"])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packed_sequence_equals_lengths(kind: str, enforce_sorted: bool, path: str) -> None:
    rnn = _rnn(kind, num_layers=2, bidirectional=True)
    lengths = torch.tensor([5, 4, 2] if enforce_sorted else [2, 5, 4])
    x, s0 = torch.randn(3, 5, D, dtype=F64), _state(rnn, 3)
    out, final = rnn(x, s0, lengths=lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=enforce_sorted)
    p_out, p_final = rnn(packed, s0)
    assert isinstance(p_out, type(packed))
    assert torch.equal(p_out.batch_sizes, packed.batch_sizes)
    padded, p_lengths = pad_packed_sequence(p_out, batch_first=True)
    assert torch.equal(p_lengths, lengths)
    _close(padded, out)
    _close(p_final, final)


@pytest.mark.parametrize("kind", ["lstm", "gru-before", "elman-tanh", "minimal-gru"])
def test_return_states(kind: str) -> None:
    """Per-step states (L*K, N, T, H): the top layer's h equals the output, the last valid
    step equals the final state, and every valid step equals the oracle's."""
    lengths = [4, 1, 3]
    rnn = _rnn(kind, num_layers=2, bidirectional=True, return_states=True)
    x, s0 = torch.randn(3, 4, D, dtype=F64), _state(rnn, 3)
    out, final, states = rnn(x, s0, lengths=lengths)
    plain = _rnn(kind, num_layers=2, bidirectional=True)
    plain.load_state_dict(rnn.state_dict())
    plain_out, plain_final = plain(x, s0, lengths=lengths)
    _close(out, plain_out)
    _close(final, plain_final)
    assert isinstance(states, tuple) == isinstance(final, tuple)
    h_states = _parts(states)[0]
    for part in _parts(states):
        assert part.shape == (4, 3, 4, H)
    fwd, rev = 2, 3  # top layer's cells
    for n, length in enumerate(lengths):
        _close(h_states[fwd, n, :length], out[n, :length, :H])
        _close(h_states[rev, n, :length], out[n, :length, H:])
        for f_part, s_part in zip(_parts(final), _parts(states)):
            for idx in range(4):
                step = length - 1 if idx % 2 == 0 else 0  # reverse ends at the first step
                _close(f_part[idx, n], s_part[idx, n, step])
        _, _, ref_states = naive_recurrent(
            rnn, x[n, :length].unsqueeze(1), _sel(s0, slice(n, n + 1))
        )
        valid = tuple(p[:, n : n + 1, :length] for p in _parts(states))
        _close(valid, _parts(ref_states))


@pytest.mark.parametrize(("kind", "ln"), KINDS_LN, ids=KINDS_LN_IDS)
def test_chunked_equals_whole(kind: str, ln: bool, path: str) -> None:
    """Two chunks with the final state carried == the whole sequence (outputs, final state)."""
    rnn = _rnn(kind, ln, num_layers=2, bidirectional=False)
    x, s0 = torch.randn(2, 5, D, dtype=F64), _state(rnn, 2)
    out, final = rnn(x, s0)
    out1, mid = rnn(x[:, :2], s0)
    out2, end = rnn(x[:, 2:], mid)
    _close(torch.cat([out1, out2], dim=1), out)
    _close(end, final)
    # without an initial state the chunks start from zeros, as the whole does
    out, final = rnn(x)
    out1, mid = rnn(x[:, :3])
    out2, end = rnn(x[:, 3:], mid)
    _close(torch.cat([out1, out2], dim=1), out)
    _close(end, final)


def _manual_loop(rnn: Recurrent, x, state, lengths=None):
    """Time-major stack of unidirectional layers, as a plain loop over ``cell(x_t, state)``."""
    T, N, _ = x.shape
    lengths = torch.full((N,), T) if lengths is None else torch.as_tensor(lengths)
    finals, layer_input = [], x
    for layer, cell in enumerate(rnn.cells):
        s = tuple(p[layer] for p in state) if isinstance(state, tuple) else state[layer]
        outs = []
        for t in range(T):
            h, new = cell(layer_input[t], s)
            valid = (t < lengths).unsqueeze(1)
            s = (
                tuple(torch.where(valid, a, b) for a, b in zip(new, s))
                if isinstance(s, tuple)
                else torch.where(valid, new, s)
            )
            outs.append(torch.where(valid, h, torch.zeros_like(h)))
        finals.append(s)
        layer_input = torch.stack(outs)
    final = (
        tuple(torch.stack(p) for p in zip(*finals))
        if isinstance(state, tuple)
        else torch.stack(finals)
    )
    return layer_input, final


@pytest.mark.parametrize(
    "cell",
    [
        LSTMCell,
        partial(LSTMCell, bias=False, forget_bias=None),
        GRUCell,
        ElmanCell,
        partial(ElmanCell, nonlinearity="relu"),
    ],
    ids=["lstm", "lstm-nobias", "gru", "elman-tanh", "elman-relu"],
)
@pytest.mark.parametrize("lengths", [None, [4, 2, 3]], ids=["full", "lengths"])
def test_standard_cells_layer_equals_cell_loop(cell, lengths, path: str) -> None:
    """The layer (torch's fused kernel for these cells) == a loop over the cell's own step."""
    rnn = randomize(Recurrent(cell, D, H, num_layers=3, batch_first=False, dtype=F64))
    x = torch.randn(4, 3, D, dtype=F64)
    s0 = _state(rnn, 3)
    out, final = rnn(x, s0, lengths=lengths)
    ref_out, ref_final = _manual_loop(rnn, x, s0, lengths)
    _close(out, ref_out)
    _close(final, ref_final)


def test_layouts_and_unbatched_input() -> None:
    rnn = _rnn("peephole", num_layers=2, bidirectional=True)
    tm = _rnn("peephole", num_layers=2, bidirectional=True, batch_first=False)
    tm.load_state_dict(rnn.state_dict())
    x, s0 = torch.randn(2, 3, D, dtype=F64), _state(rnn, 2)
    out, final = rnn(x, s0)
    tm_out, tm_final = tm(x.transpose(0, 1).contiguous(), s0)
    _close(tm_out.transpose(0, 1), out)
    _close(tm_final, final)
    # unbatched (T, D), state (L*K, H): as a batch of one, squeezed
    u_out, u_final = rnn(x[0], tuple(p[:, 0] for p in s0))
    assert u_out.shape == (3, 2 * H) and u_final[0].shape == (4, H)
    _close(u_out, out[0])
    _close(u_final, tuple(p[:, 0] for p in final))
    # and so are the per-step states: (L*K, T, H)
    rnn.return_states = True
    _, _, states = rnn(x, s0)
    _, _, u_states = rnn(x[0], tuple(p[:, 0] for p in s0))
    assert u_states[0].shape == (4, 3, H)
    _close(u_states, tuple(p[:, 0] for p in states))


def test_flip_valid_reverses_only_the_valid_part() -> None:
    x = torch.arange(12.0).view(4, 3)  # (T, N)
    flipped = flip_valid(x, torch.tensor([4, 1, 3]))
    assert flipped[:, 0].tolist() == [9.0, 6.0, 3.0, 0.0]
    assert flipped[:, 1].tolist() == [1.0, 4.0, 7.0, 10.0]
    assert flipped[:, 2].tolist() == [8.0, 5.0, 2.0, 11.0]
    assert torch.equal(flip_valid(x, None), x.flip(0))
    assert torch.equal(flip_valid(flipped, torch.tensor([4, 1, 3])), x)


@pytest.mark.parametrize("kind", ["lstm", "peephole", "additive", "gru-before"])
def test_non_finite_padding_changes_nothing(kind: str, path: str) -> None:
    """As with torch's packed kernels, padding (even NaN or inf) never reaches a cell: not the
    outputs, not the final state, not the gradients."""
    rnn = _rnn(kind, ln=kind == "additive", num_layers=2, bidirectional=True)
    x = torch.randn(3, 4, D, dtype=F64)
    grads = []
    for pad in (0.0, float("nan"), float("inf")):
        padded = x.clone()
        padded[1, 2:], padded[2, 3:] = pad, -pad
        padded.requires_grad_()
        rnn.zero_grad()
        out, final = rnn(padded, lengths=[4, 2, 3])
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=F64).view_as(out)).sum()
        (loss + sum(p.sum() for p in _parts(final))).backward()
        grads.append([out, *_parts(final), padded.grad, *(p.grad for p in rnn.parameters())])
    for other in grads[1:]:
        for a, b in zip(grads[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_gradients_do_not_leak_from_padding(path: str) -> None:
    rnn = _rnn("peephole", num_layers=2, bidirectional=True)
    x = torch.randn(2, 4, D, dtype=F64, requires_grad=True)
    out, (h, c) = rnn(x, lengths=[4, 2])
    (out.sum() + h.sum() + c.sum()).backward()
    assert (x.grad[1, 2:] == 0).all() and (x.grad[1, :2] != 0).any()
