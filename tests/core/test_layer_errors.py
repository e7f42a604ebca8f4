"""``Recurrent`` at its boundary (bad input, each with its message) and dropout between layers."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from rnnlab.core.cells import AdditiveCell, GRUCell, LSTMCell
from rnnlab.core.layers import Recurrent
from tests.core.oracle import PATHS, on_path, randomize

D, H = 3, 4


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    with on_path(request.param):
        yield request.param


def _lstm(**kw) -> Recurrent:
    return Recurrent(LSTMCell, D, H, num_layers=2, bidirectional=True, **kw)


def _pair(N: int = 2, LK: int = 4):
    return (torch.zeros(LK, N, H), torch.zeros(LK, N, H))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda m: m(torch.randn(2, 5, D + 1)),
            r"input size mismatch: expected last dimension 3, got 4 \(input shape \(2, 5, 4\)\)",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), (torch.zeros(2, 2, H), torch.zeros(2, 2, H))),
            r"state shape mismatch: expected \(4, 2, 4\) .* got \(2, 2, 4\)",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), (torch.zeros(4, 3, H), torch.zeros(4, 3, H))),
            r"state shape mismatch: expected \(4, 2, 4\) .* got \(4, 3, 4\)",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), torch.zeros(4, 2, H)),
            r"state must be a pair \(h, c\) for this cell, got Tensor",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), (*_pair(), torch.zeros(4, 2, H))),
            r"state must be a pair \(h, c\) for this cell, got tuple",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), (torch.zeros(4, 2, H), "c")),
            r"state must hold tensors, got str",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), _pair(), [5, 6]),
            r"lengths must be in \[1, 5\] \(the time dimension\), got min 5 and max 6",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), lengths=torch.tensor([0, 3])),
            r"lengths must be in \[1, 5\] \(the time dimension\), got min 0 and max 3",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), lengths=torch.tensor([-1, 3])),
            r"lengths must be in \[1, 5\]",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), lengths=torch.tensor([5, 3, 2])),
            r"lengths must have shape \(2,\) \(one per sequence\), got \(3,\)",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), lengths=torch.tensor([[5, 3]])),
            r"lengths must have shape \(2,\) \(one per sequence\), got \(1, 2\)",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), lengths=torch.tensor([5.0, 3.0])),
            r"lengths must be integers, got dtype torch.float32",
        ),
        (
            lambda m: m(torch.randint(0, 3, (2, 5, D))),
            r"input must be a floating-point tensor, got dtype torch.int64",
        ),
        (lambda m: m(torch.randn(2, 0, D)), r"input has no time steps \(T = 0\)"),
        (
            lambda m: m(torch.randn(2, 5, 1, D)),
            r"input must be 3-D \(N, T, D\) or 2-D \(T, D\), got 4-D with shape \(2, 5, 1, 3\)",
        ),
        (
            lambda m: m(torch.randn(D)),
            r"input must be 3-D \(N, T, D\) or 2-D \(T, D\), got 1-D",
        ),
        (
            lambda m: m(torch.randn(2, 5, D), (torch.zeros(4, 2, H, dtype=torch.float64),) * 2),
            r"state dtype torch.float64 does not match input dtype torch.float32",
        ),
        (
            lambda m: m([[0.0] * D] * 5),
            r"input must be a Tensor or PackedSequence",
        ),
        (
            lambda m: m(pack_padded_sequence(torch.randn(2, 5, D), [5, 3], True), lengths=[5, 3]),
            r"give lengths or a PackedSequence, not both",
        ),
    ],
    ids=[
        "input-size",
        "state-shape-layers",
        "state-shape-batch",
        "state-tensor-for-pair",
        "state-triple",
        "state-non-tensor",
        "lengths-above-T",
        "lengths-zero",
        "lengths-negative",
        "lengths-count",
        "lengths-2d",
        "lengths-float",
        "input-int",
        "T-zero",
        "input-4d",
        "input-1d",
        "state-dtype",
        "input-list",
        "packed-and-lengths",
    ],
)
def test_bad_input(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(_lstm())


@pytest.mark.parametrize(
    "cell", [LSTMCell, partial(LSTMCell, peephole=True)], ids=["kernel-cell", "rnnlab-loop"]
)
def test_input_dtype_must_match_weights(cell) -> None:
    rnn = Recurrent(cell, D, H, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"input dtype torch.float32 does not match weight dtype torch.float64"
    ):
        rnn(torch.randn(2, 5, D))


def test_bad_state_for_single_tensor_cells() -> None:
    gru = Recurrent(GRUCell, D, H)
    with pytest.raises(ValueError, match=r"state must be a single tensor for this cell, got tuple"):
        gru(torch.randn(2, 5, D), (torch.zeros(1, 2, H), torch.zeros(1, 2, H)))
    with pytest.raises(ValueError, match=r"state shape mismatch: expected \(1, 2, 4\)"):
        gru(torch.randn(2, 5, D), torch.zeros(2, H))
    # unbatched: the state is (L*K, H)
    with pytest.raises(
        ValueError,
        match=r"state shape mismatch: expected \(1, 4\) \(layers\*directions, hidden\), got "
        r"\(1, 5\)",
    ):
        gru(torch.randn(5, D), torch.zeros(1, H + 1))
    with pytest.raises(ValueError, match=r"expected \(1, 4\) .*, got \(1, 1, 4\)"):
        gru(torch.randn(5, D), torch.zeros(1, 1, H))
    lstm = Recurrent(LSTMCell, D, H)
    with pytest.raises(ValueError, match=r"state must hold tensors, got NoneType"):
        lstm(torch.randn(5, D), (torch.zeros(1, H), None))
    with pytest.raises(ValueError, match=r"input size mismatch: expected last dimension 3"):
        gru(torch.randn(5, D + 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_layers": 0}, r"num_layers must be a positive integer, got 0"),
        ({"num_layers": 1.5}, r"num_layers must be a positive integer, got 1.5"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, r"dropout must be a number in \[0, 1\), got -0.1"),
        ({"dropout": "0.5"}, r"dropout must be a number in \[0, 1\), got '0.5'"),
        ({"input_size": -3}, r"input_size must be a positive integer, got -3"),
        ({"hidden_size": 0}, r"hidden_size must be a positive integer, got 0"),
    ],
)
def test_bad_layer_options(kwargs: dict, match: str) -> None:
    args = {"input_size": D, "hidden_size": H, **kwargs}
    with pytest.raises(ValueError, match=match):
        Recurrent(LSTMCell, **args)


# -- dropout between layers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell", [LSTMCell, partial(LSTMCell, peephole=True)], ids=["kernel-cell", "rnnlab-loop"]
)
def test_dropout_only_in_training(cell, path: str) -> None:
    rnn = Recurrent(cell, D, H, num_layers=3, dropout=0.5, bidirectional=True)
    plain = Recurrent(cell, D, H, num_layers=3, bidirectional=True)
    plain.load_state_dict(rnn.state_dict())
    x = torch.randn(2, 5, D)
    rnn.eval()
    out, (h, c) = rnn(x)
    out2, (h2, c2) = rnn(x)
    ref_out, (ref_h, ref_c) = plain(x)
    torch.testing.assert_close(h, ref_h, rtol=0, atol=1e-6)
    assert torch.equal(out, out2) and torch.equal(h, h2) and torch.equal(c, c2)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-6)
    torch.testing.assert_close(c, ref_c, rtol=0, atol=1e-6)
    rnn.train()
    train_out, (train_h, _) = rnn(x)
    train_out2, _ = rnn(x)
    assert not torch.allclose(train_out, out)
    assert not torch.allclose(train_out, train_out2)
    # the first layer reads the input itself, never dropped out
    torch.testing.assert_close(train_h[:2], h[:2], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "cell", [LSTMCell, partial(LSTMCell, layer_norm=True), GRUCell], ids=["lstm", "lstm-ln", "gru"]
)
def test_single_layer_dropout_changes_nothing(cell, path: str) -> None:
    """Dropout sits between layers only: not on the input, the recurrence or the output."""
    rnn = Recurrent(cell, D, H, dropout=0.7)
    x = torch.randn(2, 5, D)
    out, final = rnn.train()(x)
    ref_out, ref_final = rnn.eval()(x)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    for a, b in zip(
        final if isinstance(final, tuple) else (final,),
        ref_final if isinstance(ref_final, tuple) else (ref_final,),
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_dropout_is_on_the_outputs_of_lower_layers(path: str) -> None:
    """rnnlab's own loop: exactly ``layer1(dropout(layer0(x)))``, with the same random mask."""
    cell = partial(AdditiveCell, layer_norm=True)
    rnn = randomize(Recurrent(cell, D, H, num_layers=2, dropout=0.5), 0.5).train()
    lower = Recurrent(cell, D, H).eval()
    upper = Recurrent(cell, H, H).eval()
    lower.cells[0].load_state_dict(rnn.cells[0].state_dict())
    upper.cells[0].load_state_dict(rnn.cells[1].state_dict())
    x = torch.randn(2, 5, D)
    torch.manual_seed(1)
    out, final = rnn(x)
    torch.manual_seed(1)
    mid, mid_final = lower(x)
    ref_out, top_final = upper(torch.nn.functional.dropout(mid, 0.5, training=True))
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-6)
    torch.testing.assert_close(final, torch.cat([mid_final, top_final]), rtol=0, atol=1e-6)
