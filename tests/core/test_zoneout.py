"""Zoneout as a layer option (Krueger et al. 2017): the layer's draws, its evaluation mode, and
the same numbers on every backend that can run it (the loops' own zoneout is tested against
independent loops in tests/core/test_zoneout_kernels.py)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from rnnlab.core.cells import ElmanCell, GRUCell, LSTMCell
from rnnlab.core.layers import Recurrent
from rnnlab.core.minimal import MinGRUCell, MinLSTMCell
from rnnlab.core.registry import RecurrentConfig
from rnnlab.core.state import state_parts

CELLS = {
    "lstm": LSTMCell,
    "peephole+ln": partial(LSTMCell, peephole=True, layer_norm=True),
    "gru": GRUCell,
    "elman": ElmanCell,
    "mingru": MinGRUCell,
    "minlstm": MinLSTMCell,
}


def _layers(cell, **options) -> tuple[Recurrent, Recurrent]:
    kw = dict(num_layers=2, bidirectional=True, dtype=torch.float64)
    zoned = Recurrent(cell, 3, 6, **kw, **options)
    plain = Recurrent(cell, 3, 6, **kw)
    plain.load_state_dict(zoned.state_dict())
    return zoned, plain


@pytest.mark.parametrize("name", sorted(CELLS))
def test_rate_zero_is_the_plain_layer(name: str) -> None:
    zoned, plain = _layers(CELLS[name], zoneout=0.0)
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    assert torch.equal(zoned(x)[0], plain(x)[0])


@pytest.mark.parametrize("name", sorted(CELLS))
def test_every_backend_gives_the_same_numbers(name: str) -> None:
    """The draws are made once, before the backend runs: the same seed gives the same draws,
    and the C++ loop (or the parallel scan) must then equal the reference loop."""
    zoned, _ = _layers(CELLS[name], zoneout=0.3, zoneout_cell=0.2)
    x = torch.randn(3, 7, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([7, 4, 2])
    results = []
    for mode in ("train", "eval"):
        zoned.train(mode == "train")
        for backend in ("fast", "reference"):
            zoned.backend = backend
            zoned.zero_grad()
            x.grad = None
            torch.manual_seed(4)
            out, state = zoned(x, lengths=lengths)
            (out.square().sum() + sum(s.sum() for s in state_parts(state))).backward()
            grads = [p.grad.clone() for p in zoned.parameters()] + [x.grad.clone()]
            results.append((mode, out.detach(), state, grads))
    for i in (0, 2):  # fast against reference, in training and in evaluation
        _, out_f, state_f, grads_f = results[i]
        _, out_r, state_r, grads_r = results[i + 1]
        torch.testing.assert_close(out_f, out_r, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(state_f, state_r, rtol=1e-10, atol=1e-10)
        for gf, gr in zip(grads_f, grads_r):
            torch.testing.assert_close(gf, gr, rtol=1e-9, atol=1e-10)


def test_auto_runs_a_fused_loop_not_the_reference() -> None:
    x = torch.randn(5, 2, 3)
    for cell in (LSTMCell, GRUCell, MinGRUCell):
        layer = Recurrent(cell, 3, 4, zoneout=0.1)
        assert layer.backend_for(x) == "fast"  # torch's kernel cannot blend; never the loop


def test_training_draws_keep_a_unit_with_probability_p() -> None:
    torch.manual_seed(0)
    p = 0.3
    layer = Recurrent(ElmanCell, 4, 64, zoneout=p)
    out, _ = layer(torch.randn(16, 40, 4))
    kept = out[:, 1:] == out[:, :-1]  # a zoned unit repeats its value exactly
    n = kept.numel()
    assert abs(kept.double().mean().item() - p) < 4 * (p * (1 - p) / n) ** 0.5


def test_lstm_cell_state_has_its_own_rate() -> None:
    torch.manual_seed(0)
    layer = Recurrent(LSTMCell, 4, 64, zoneout=0.1, zoneout_cell=0.5, return_states=True)
    _, _, (hs, cs) = layer(torch.randn(16, 40, 4))
    for states, p in ((hs[0], 0.1), (cs[0], 0.5)):  # (N, T, H)
        kept = (states[:, 1:] == states[:, :-1]).double().mean().item()
        n = states[:, 1:].numel()
        assert abs(kept - p) < 4 * (p * (1 - p) / n) ** 0.5


def test_evaluation_is_the_expectation_and_deterministic() -> None:
    p = 0.25
    layer = Recurrent(GRUCell, 3, 5, zoneout=p, dtype=torch.float64).eval()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    out, final = layer(x)
    assert torch.equal(out, layer(x)[0])
    cell = layer.cells[0]  # by hand: h_t = p h_{t-1} + (1 - p) cell(x_t, h_{t-1})
    h = torch.zeros(2, 5, dtype=torch.float64)
    xp = cell.input_projection(x.transpose(0, 1))
    for t in range(6):
        h = p * h + (1 - p) * cell.step(xp[t], h)[1]
        torch.testing.assert_close(out[:, t], h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(final[0], h)


def test_generation_step_by_step_equals_the_sequence() -> None:
    layer = Recurrent(LSTMCell, 3, 5, num_layers=2, zoneout=0.2, dtype=torch.float64).eval()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    out, _ = layer(x)
    state = None
    for t in range(6):
        step, state = layer.step(x[:, t], state)
        torch.testing.assert_close(step, out[:, t], rtol=1e-12, atol=1e-12)


def test_config_and_cli_names() -> None:
    layer = RecurrentConfig("lstm", hidden_size=4, zoneout=0.1, zoneout_cell=0.3).build(2)
    assert (layer.zoneout, layer.zoneout_cell) == (0.1, 0.3)
    assert "zoneout=0.1" in repr(layer) and "zoneout_cell=0.3" in repr(layer)
    assert RecurrentConfig("gru", hidden_size=4, zoneout=0.2).build(2).zoneout_cell == 0.2


def test_export_needs_evaluation_mode() -> None:
    from rnnlab.errors import RnnlabError

    layer = Recurrent(GRUCell, 3, 4, zoneout=0.2)
    with pytest.raises(RnnlabError, match="evaluation mode only"):
        torch.export.export(layer.train(), (torch.randn(2, 5, 3),))
    exported = torch.export.export(layer.eval(), (torch.randn(2, 5, 3),))
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(exported.module()(x)[0], layer(x)[0])


@pytest.mark.parametrize("cell", [LSTMCell, MinGRUCell])
def test_compiles_fullgraph(cell) -> None:
    torch._dynamo.reset()
    layer = Recurrent(cell, 3, 4, num_layers=2, zoneout=0.2)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 5, 3)
    torch.manual_seed(2)
    out, _ = compiled(x)
    torch.manual_seed(2)
    torch.testing.assert_close(out, layer(x)[0])  # the same draws
    out.sum().backward()
    layer.eval()
    torch.testing.assert_close(compiled(x)[0], layer(x)[0])
