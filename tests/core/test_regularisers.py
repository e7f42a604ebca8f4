"""The AWD-LSTM regularisers as layer options: weight drop, locked dropout, input/output dropout,
embedding dropout; and the state penalties AR/TAR (zoneout: tests/core/test_zoneout.py).

Each is checked against an independent reconstruction: the same random draws replayed by hand
(same seed, same order) on a plain layer, the statistics of the masks, and eval mode equal to
the plain layer on every backend.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from rnnlab.core import fast
from rnnlab.core.cells import ElmanCell, GRUCell, LSTMCell
from rnnlab.core.dropout import embedding_dropout, locked_dropout
from rnnlab.core.layers import Recurrent
from rnnlab.core.minimal import MinGRUCell
from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError
from rnnlab.train.regularizers import StatePenalties

BACKENDS = ("torch", "fast", "reference")
CELLS = {"lstm": LSTMCell, "gru": GRUCell, "elman": ElmanCell}


def _pair(cell, **options) -> tuple[Recurrent, Recurrent]:
    """A regularised layer and a plain one with the same weights (float64)."""
    kw = dict(num_layers=2, dtype=torch.float64)
    reg = Recurrent(cell, 3, 5, **kw, **options)
    plain = Recurrent(cell, 3, 5, **kw)
    plain.load_state_dict(reg.state_dict())
    return reg, plain


def _run(layer: Recurrent, backend: str, x, **kw):
    layer.backend = backend
    return layer(x, **kw)


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_mode_is_the_plain_layer(name: str, backend: str) -> None:
    reg, plain = _pair(
        CELLS[name], weight_drop=0.5, locked_dropout=True, input_dropout=0.3,
        output_dropout=0.4, dropout=0.2,
    )  # fmt: skip
    reg.eval(), plain.eval()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    out, state = _run(reg, backend, x, lengths=torch.tensor([7, 3, 5, 7]))
    ref, ref_state = _run(plain, backend, x, lengths=torch.tensor([7, 3, 5, 7]))
    assert torch.equal(out, ref)
    torch.testing.assert_close(state, ref_state, rtol=0, atol=0)
    # and it is deterministic
    assert torch.equal(_run(reg, backend, x)[0], _run(reg, backend, x)[0])


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_drop_is_one_dropconnect_mask_per_call(name: str, backend: str) -> None:
    p = 0.4
    reg, plain = _pair(CELLS[name], weight_drop=p)
    x = torch.randn(4, 6, 3, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(7)
    out, _ = _run(reg, backend, x)
    out.sum().backward()
    # replay the draws: one mask per cell, in order, for the whole batch and every step
    torch.manual_seed(7)
    masks = [F.dropout(torch.ones_like(c.weight_hh), p, True) for c in plain.cells]
    with torch.no_grad():
        for cell, mask in zip(plain.cells, masks):
            cell.weight_hh.mul_(mask)
    expected, _ = _run(plain, "reference", x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for cell, mask in zip(reg.cells, masks):
        assert isinstance(cell.weight_hh, torch.nn.Parameter)  # restored after the call
        dropped = mask == 0
        assert dropped.any() and (~dropped).any()
        assert torch.all(cell.weight_hh.grad[dropped] == 0)  # no gradient through a dropped weight
        assert cell.weight_hh.grad[~dropped].abs().sum() > 0


def test_weight_drop_mask_is_shared_by_the_batch_and_fresh_per_call() -> None:
    layer = Recurrent(GRUCell, 3, 16, weight_drop=0.5, dtype=torch.float64)
    seq = torch.randn(1, 8, 3, dtype=torch.float64)
    out, _ = layer(seq.expand(5, 8, 3).contiguous())
    # the same weights for every sequence (equal up to the GEMM's blocking)
    torch.testing.assert_close(out, out[:1].expand_as(out), rtol=1e-13, atol=1e-13)
    assert not torch.equal(layer(seq)[0], layer(seq)[0])  # a new mask each call


def test_weight_drop_mask_statistics() -> None:
    layer = Recurrent(ElmanCell, 2, 64, weight_drop=0.3, dtype=torch.float64)
    seen = []
    real = F.dropout

    def spy(w, p, training):
        y = real(w, p, training)
        seen.append((y == 0).double().mean().item())
        torch.testing.assert_close(y[y != 0], w[y != 0] / (1 - p))  # survivors scaled
        return y

    from rnnlab.core import dropout as module

    module.F.dropout, saved = spy, module.F.dropout
    try:
        for _ in range(20):
            layer(torch.randn(2, 4, 2, dtype=torch.float64))
    finally:
        module.F.dropout = saved
    # 20 * 4096 Bernoulli(0.3) draws: the mean within 4 standard errors
    assert abs(sum(seen) / len(seen) - 0.3) < 4 * (0.3 * 0.7 / (20 * 4096)) ** 0.5


def test_weight_drop_keeps_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = fast.scan
    monkeypatch.setattr(fast, "scan", lambda *a, **k: calls.append(1) or real(*a, **k))
    layer = Recurrent(GRUCell, 3, 8, weight_drop=0.5, locked_dropout=True, dropout=0.3,
                      num_layers=2)  # fmt: skip
    assert layer.backend_for(torch.randn(5, 2, 3)) == "fast"
    layer(torch.randn(2, 5, 3))
    assert len(calls) == 2  # both layers ran the C++ loop


def test_weight_drop_needs_recurrent_weights() -> None:
    with pytest.raises(RnnlabError, match="weight_drop needs recurrent weights"):
        Recurrent(MinGRUCell, 3, 4, weight_drop=0.2)
    with pytest.raises(RnnlabError, match="--weight-drop needs recurrent weights"):
        RecurrentConfig("mingru", weight_drop=0.2)
    with pytest.raises(RnnlabError, match="--zoneout-cell"):
        RecurrentConfig("gru", zoneout_cell=0.2)


@pytest.mark.parametrize("option", ["weight_drop", "input_dropout", "zoneout", "dropout"])
@pytest.mark.parametrize("value", [1.0, -0.1, "0.5", True])
def test_bad_rates_raise_one_line(option: str, value) -> None:
    with pytest.raises((RnnlabError, TypeError), match=option):
        Recurrent(LSTMCell, 3, 4, **{option: value})


def test_locked_dropout_function() -> None:
    x = torch.ones(50, 400, 8)
    y = locked_dropout(x, 0.25, training=True)
    assert torch.equal(y, y[:1].expand_as(y))  # one mask for every step
    kept = y[0] != 0
    torch.testing.assert_close(y[0][kept], torch.full_like(y[0][kept], 1 / 0.75))
    n = kept.numel()
    assert abs((~kept).double().mean().item() - 0.25) < 4 * (0.25 * 0.75 / n) ** 0.5
    assert locked_dropout(x, 0.25, training=False) is x
    assert locked_dropout(x, 0.0, training=True) is x
    z = locked_dropout(torch.ones(6, 3, 5), 0.5, training=True, time_dim=1)  # batch-first
    assert torch.equal(z, z[:, :1].expand_as(z))


@pytest.mark.parametrize("backend", BACKENDS)
def test_locked_input_and_output_dropout_replayed(backend: str) -> None:
    p_in, p_out = 0.3, 0.5
    reg, plain = _pair(LSTMCell, locked_dropout=True, input_dropout=p_in, output_dropout=p_out)
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    torch.manual_seed(3)
    out, (h, c) = _run(reg, backend, x)
    torch.manual_seed(3)
    m_in = torch.empty(1, 4, 3, dtype=torch.float64).bernoulli_(1 - p_in) / (1 - p_in)
    m_out = torch.empty(1, 4, 5, dtype=torch.float64).bernoulli_(1 - p_out) / (1 - p_out)
    ref, (rh, rc) = _run(plain, "reference", (x.transpose(0, 1) * m_in).transpose(0, 1))
    expected = (ref.transpose(0, 1) * m_out).transpose(0, 1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close((h, c), (rh, rc))  # the state is not dropped
    # the output mask is the same at every step: a dropped unit is zero all along
    zero = out == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_locked_dropout_between_layers_same_on_every_backend(name: str) -> None:
    """torch's kernel cannot lock its dropout: the layer runs it one layer at a time; the same
    draws (same seed) give the same result as the C++ loop and the reference loop."""
    layer = Recurrent(CELLS[name], 3, 6, num_layers=3, dropout=0.5, locked_dropout=True,
                      bidirectional=True, dtype=torch.float64)  # fmt: skip
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 4])
    results = []
    for backend in BACKENDS:
        torch.manual_seed(11)
        out, state = _run(layer, backend, x, lengths=lengths)
        results.append((out, state))
    for out, state in results[1:]:
        torch.testing.assert_close(out, results[0][0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(state, results[0][1], rtol=1e-10, atol=1e-10)


def test_locked_between_layer_mask_is_shared_over_time() -> None:
    # a second layer reading a constant input: its dropped features stay dropped at every step
    seen = []
    layer = Recurrent(ElmanCell, 3, 32, num_layers=2, dropout=0.5, locked_dropout=True)
    layer.cells[1].register_forward_hook(lambda *a: None)
    real = layer.cells[1].input_projection
    layer.cells[1].input_projection = lambda v: seen.append(v) or real(v)
    layer(torch.randn(2, 9, 3))
    zero = seen[0] == 0  # (T, N, H)
    assert zero.any() and torch.equal(zero, zero[:1].expand_as(zero))


def test_embedding_dropout_drops_whole_tokens() -> None:
    weight = torch.randn(10, 4, dtype=torch.float64)
    idx = torch.tensor([[1, 2, 1, 3, 1], [2, 2, 4, 1, 0]])
    torch.manual_seed(0)
    out = embedding_dropout(weight, idx, 0.5, training=True)
    for token in idx.unique():
        rows = out[idx == token]
        dropped = (rows == 0).all(-1)
        assert dropped.all() or not dropped.any()  # every occurrence alike
        if not dropped.any():
            torch.testing.assert_close(rows, weight[token].expand_as(rows) * 2)
    plain = F.embedding(idx, weight)
    assert torch.equal(embedding_dropout(weight, idx, 0.5, training=False), plain)
    # statistics: the fraction of dropped rows over many draws
    big = torch.ones(2000, 1)
    rate = (
        sum(
            (embedding_dropout(big, torch.arange(2000), 0.1, True) == 0).double().mean().item()
            for _ in range(10)
        )
        / 10
    )
    assert abs(rate - 0.1) < 4 * (0.1 * 0.9 / 20000) ** 0.5


def test_lm_embedding_dropout_eval_equals_plain() -> None:
    from rnnlab.tasks.lm.config import LMConfig
    from rnnlab.tasks.lm.model import RNNLM

    rnn = RecurrentConfig(hidden_size=8, weight_drop=0.3, locked_dropout=True, output_dropout=0.2)
    reg = RNNLM(LMConfig(vocab_size=11, embedding_size=6, embedding_dropout=0.4, rnn=rnn))
    plain = RNNLM(LMConfig(vocab_size=11, embedding_size=6, rnn=RecurrentConfig(hidden_size=8)))
    plain.load_state_dict(reg.state_dict())
    reg.eval(), plain.eval()
    idx = torch.randint(11, (3, 7))
    assert torch.equal(reg(idx)[0][0], plain(idx)[0][0])
    reg.train()
    assert not torch.equal(reg(idx)[0][0], plain(idx)[0][0])


def _regularised_model(output_dropout: float = 0.0):
    layer = Recurrent(GRUCell, 3, 6, dtype=torch.float64, output_dropout=output_dropout)
    return torch.nn.ModuleDict({"rnn": layer})


def test_ar_and_tar_match_their_formulas() -> None:
    model = _regularised_model(output_dropout=0.5)
    penalties = StatePenalties(model, ar=2.0, tar=3.0)
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    torch.manual_seed(5)
    out, _ = model["rnn"](x)
    torch.manual_seed(5)
    model["rnn"].output_dropout = 0.0
    before, _ = model["rnn"](x)  # the same layer without its output dropout
    penalties.outputs.pop()  # (recorded by the hook)
    model["rnn"].output_dropout = 0.5
    expected = 2.0 * out.pow(2).mean() + 3.0 * (before[:, 1:] - before[:, :-1]).pow(2).mean()
    torch.testing.assert_close(penalties.penalty(), expected)
    assert penalties.penalty() is None  # consumed
    penalties.remove()


def test_ar_tar_leave_padded_steps_out() -> None:
    model = _regularised_model()
    penalties = StatePenalties(model, ar=1.0, tar=1.0)
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    out, _ = model["rnn"](x, lengths=lengths)
    valid = torch.arange(6) < lengths[:, None]
    pairs = valid[:, 1:] & valid[:, :-1]
    ar = out.pow(2).mean(-1)[valid].mean()
    tar = (out[:, 1:] - out[:, :-1]).pow(2).mean(-1)[pairs].mean()
    torch.testing.assert_close(penalties.penalty(), ar + tar)
    model.eval()
    model["rnn"](x)
    assert penalties.penalty() is None  # not collected outside training


def test_trainer_runs_with_every_regulariser(tmp_path) -> None:
    from rnnlab.train.config import TrainConfig
    from rnnlab.train.trainer import Trainer

    torch.manual_seed(0)
    rnn = RecurrentConfig(
        "lstm", hidden_size=16, num_layers=2, dropout=0.2, weight_drop=0.3,
        locked_dropout=True, input_dropout=0.1, output_dropout=0.2,
    ).build(3)  # fmt: skip
    head = torch.nn.Linear(16, 2)
    model = torch.nn.ModuleDict({"rnn": rnn, "head": head})
    x = torch.randn(32, 8, 3)
    y = (x[:, :, 0].sum(1) > 0).long()

    def loss_fn(net, batch):
        xb, yb = batch
        out, _ = net["rnn"](xb)
        return F.cross_entropy(net["head"](out[:, -1]), yb), len(yb)

    config = TrainConfig(max_steps=40, ar=1.0, tar=1.0, lr=1e-2, progress=False)
    trainer = Trainer(model, config, tmp_path / "run", loss_fn=loss_fn)
    model.eval()
    with torch.no_grad():
        first = float(loss_fn(model, (x, y))[0])
    trainer.fit(lambda epoch: [(x, y)] * 10)
    model.eval()
    with torch.no_grad():
        assert float(loss_fn(model, (x, y))[0]) < first
    assert all(isinstance(c.weight_hh, torch.nn.Parameter) for c in rnn.cells)


def test_compiled_layer_with_weight_drop_and_locked_dropout() -> None:
    torch._dynamo.reset()
    layer = Recurrent(partial(LSTMCell, peephole=True), 3, 8, num_layers=2, dropout=0.3,
                      weight_drop=0.5, locked_dropout=True, output_dropout=0.2)  # fmt: skip
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 5, 3)
    torch.manual_seed(1)
    out, _ = compiled(x)
    torch.manual_seed(1)
    ref, _ = layer(x)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert all(c.weight_hh.grad is not None for c in layer.cells)
