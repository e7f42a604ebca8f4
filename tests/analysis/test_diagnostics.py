"""Diagnostics against hand-written loops, analytic Jacobians and finite differences."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from rnnlab import CELLS, ElmanCell, GRUCell, LSTMCell, Recurrent
from rnnlab.analysis.diagnostics import (
    GradientFlow,
    gate_statistics,
    gate_traces,
    gradient_flow,
    jacobian_spectrum,
    plot_gate_heatmaps,
    plot_gradient_flow,
    plot_jacobian_spectrum,
    record,
    spectrum,
    step_jacobians,
)

F64 = torch.float64
N, T, D, H = 3, 12, 2, 5


def _manual_state_grads(cell, x, loss_of_last_h):
    """dL/ds_k by a cell-by-cell loop, the state after each step made a fresh leaf-like sum
    (s + 0) whose gradient is the partial derivative w.r.t. that state: the oracle."""
    state = cell.initial_state(x.shape[0])
    zeros = []
    for t in range(x.shape[1]):
        _, state = cell(x[:, t], state)
        parts = state if isinstance(state, tuple) else (state,)
        eps = [torch.zeros_like(p, requires_grad=True) for p in parts]
        zeros.append(eps)
        moved = tuple(p + e for p, e in zip(parts, eps))
        state = moved if isinstance(state, tuple) else moved[0]
    h_last = state[0] if isinstance(state, tuple) else state
    loss_of_last_h(h_last).backward()
    return np.array(
        [sum(float(e.grad.pow(2).sum()) for e in eps if e.grad is not None) ** 0.5 for eps in zeros]
    )


@pytest.mark.parametrize("name", ["elman", "gru", "lstm", "peephole", "mut2"])
def test_gradient_flow_matches_a_manual_loop(name):
    rnn = Recurrent(CELLS[name], D, H, dtype=F64)
    x = torch.randn(N, T, D, dtype=F64)
    w = torch.randn(H, dtype=F64)
    flows = gradient_flow(rnn, lambda: (rnn(x)[0][:, -1] @ w).pow(2).mean())
    assert list(flows) == ["layer0"]
    flow = flows["layer0"]
    expected = _manual_state_grads(rnn.cell_at(0), x, lambda h: (h @ w).pow(2).mean())
    np.testing.assert_allclose(flow.norms, expected, rtol=1e-10)
    assert flow.loss_step == T - 1
    np.testing.assert_array_equal(flow.by_lag, flow.norms[::-1])


def test_gradient_flow_at_a_chosen_step_and_for_stacked_layers():
    rnn = Recurrent(GRUCell, D, H, num_layers=2, bidirectional=True)
    x = torch.randn(N, T, D)
    flows = gradient_flow(rnn, lambda: rnn(x)[0][:, 4].pow(2).sum(), loss_step=4)
    assert set(flows) == {"layer0", "layer0.reverse", "layer1", "layer1.reverse"}
    forward = flows["layer1"]
    assert forward.loss_step == 4 and len(forward.by_lag) == 5
    assert np.all(forward.norms[5:] == 0)  # causal: later states do not affect step 4
    assert np.all(forward.norms[:5] > 0)
    with pytest.raises(ValueError, match="loss_step"):
        gradient_flow(rnn, lambda: rnn(x)[0].sum(), loss_step=T)


def test_recording_restores_the_model_and_changes_nothing():
    rnn = Recurrent(LSTMCell, D, H)  # a torch-kernel configuration
    x = torch.randn(N, T, D)
    before, _ = rnn(x)
    with record(rnn, gates=True, perturb=True) as traces:
        during, _ = rnn(x)
    torch.testing.assert_close(during, before, rtol=1e-5, atol=1e-6)
    assert len(traces[0].inputs) == T and len(traces[0].gates) == T
    assert not rnn._step_hooks  # the recording hooks are removed: nothing else was touched
    assert rnn.backend_for(x.transpose(0, 1)) == "torch"
    with (
        pytest.raises(ValueError, match=r"no rnnlab\.core\.layers\.Recurrent"),
        record(nn.Linear(2, 2)),
    ):
        pass


def test_decay_lag():
    flow = GradientFlow(norms=0.5 ** np.arange(30.0)[::-1], loss_step=29)  # halves per lag
    assert flow.decay_lag() == 10  # 2^-10 < 1e-3 <= 2^-9
    assert flow.decay_lag(factor=4) == 2
    growing = GradientFlow(norms=2.0 ** np.arange(30.0)[::-1], loss_step=29)
    assert growing.decay_lag() == 10
    assert GradientFlow(np.ones(5), 4).decay_lag() is None


def test_elman_step_jacobian_is_analytic():
    cell = ElmanCell(D, H, dtype=F64)
    x = torch.randn(T, 1, D, dtype=F64)
    h = torch.zeros(1, H, dtype=F64)
    inputs, states, expected = [], [], []
    for t in range(T):
        xp = cell.input_projection(x[t])
        inputs.append(xp)
        states.append(h)
        h = cell(x[t], h)[0].detach()
        expected.append(torch.diag(1 - h[0] ** 2) @ cell.weight_hh.detach())
    jac = step_jacobians(cell, inputs, states)
    torch.testing.assert_close(jac, torch.stack(expected))
    spec = spectrum(jac)
    prod = torch.eye(H, dtype=F64)
    for j in expected:
        prod = j @ prod
    np.testing.assert_allclose(spec.product[-1], torch.linalg.svdvals(prod).numpy(), rtol=1e-10)
    assert spec.step.shape == spec.product.shape == (T, H)


def test_lstm_step_jacobian_against_finite_differences():
    rnn = Recurrent(partial(LSTMCell, peephole=True), D, H, dtype=F64)
    x = torch.randn(2, 6, D, dtype=F64)
    with record(rnn) as traces, torch.no_grad():
        rnn(x)
    trace = traces[0]
    jac = step_jacobians(trace.cell, [trace.inputs[3][1:]], [tuple(s[1:] for s in trace.states[3])])
    s0 = torch.cat(trace.states[3], -1)[1:]
    eps = 1e-6
    fd = torch.zeros(2 * H, 2 * H, dtype=F64)
    with torch.no_grad():
        for j in range(2 * H):
            d = torch.zeros_like(s0)
            d[0, j] = eps
            plus = torch.cat(
                trace.cell.step(trace.inputs[3][1:], ((s0 + d)[:, :H], (s0 + d)[:, H:]))[1], -1
            )
            minus = torch.cat(
                trace.cell.step(trace.inputs[3][1:], ((s0 - d)[:, :H], (s0 - d)[:, H:]))[1], -1
            )
            fd[:, j] = ((plus - minus) / (2 * eps))[0]
    torch.testing.assert_close(jac[0], fd, rtol=1e-6, atol=1e-8)
    spectra = jacobian_spectrum(rnn, lambda: rnn(x), example=1)
    np.testing.assert_allclose(
        spectra["layer0"].step[3], torch.linalg.svdvals(fd).numpy(), rtol=1e-5, atol=1e-8
    )


def test_gate_statistics_match_cell_gates_along_the_trajectory():
    rnn = Recurrent(LSTMCell, D, H)
    x = torch.randn(N, T, D)
    lengths = torch.tensor([T, 4, 7])
    stats = gate_statistics(rnn, lambda: rnn(x, lengths=lengths), lengths=lengths)
    cell = rnn.cell_at(0)
    values = {g: [] for g in "ifgo"}
    with torch.no_grad():
        for n in range(N):
            state = cell.initial_state(1)
            for t in range(int(lengths[n])):
                for g, v in cell.gates(x[n : n + 1, t], state).items():
                    values[g].append(v)
                _, state = cell(x[n : n + 1, t], state)
    for g, vs in values.items():
        v = torch.cat(vs)
        assert stats["layer0"][g]["mean"] == pytest.approx(float(v.mean()), rel=1e-5)
        sat = ((v.abs() > 0.9) if g == "g" else ((v < 0.1) | (v > 0.9))).float().mean()
        assert stats["layer0"][g]["saturated"] == pytest.approx(float(sat), abs=1e-6)


def test_saturation_is_counted():
    rnn = Recurrent(partial(LSTMCell, forget_bias=8.0), D, H)
    x = torch.randn(N, T, D)
    stats = gate_statistics(rnn, lambda: rnn(x))["layer0"]
    assert stats["f"]["high"] == 1.0 and stats["f"]["saturated"] == 1.0
    assert 0.0 <= stats["i"]["saturated"] < 0.5
    assert gate_statistics(Recurrent(ElmanCell, D, H), lambda: None) == {}


def test_gate_traces_in_a_model_with_an_embedding_and_plots(tmp_path):
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(7, D)
            self.encoder = Recurrent(GRUCell, D, H)
            self.decoder = Recurrent(CELLS["mut1"], H, H)

        def forward(self, tokens):
            return self.decoder(self.encoder(self.embed(tokens))[0])[0]

    model = Tiny()
    tokens = torch.randint(7, (N, T))
    traces = gate_traces(model, lambda: model(tokens))
    assert set(traces) == {"encoder.layer0", "decoder.layer0"}
    assert traces["decoder.layer0"]["z"].shape == (N, T, H)
    flows = gradient_flow(model, lambda: model(tokens)[:, -1].sum())
    spectra = jacobian_spectrum(model, lambda: model(tokens))
    for path in (
        plot_gradient_flow(flows, tmp_path / "flow.png"),
        plot_jacobian_spectrum(spectra, tmp_path / "jac.png"),
        plot_gate_heatmaps(traces["encoder.layer0"], tmp_path / "gates.png"),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vanishing_at_initialisation_elman_vs_lstm():
    """The lectures' claim at torch's default init (U(+-1/sqrt(H))) and forget bias 1:
    at lag 50 Elman's gradient is many orders of magnitude below the LSTM's."""
    torch.manual_seed(0)
    x = torch.randn(32, 60, 1)
    norms = {}
    for name in ("elman", "lstm"):
        rnn = Recurrent(CELLS[name], 1, 32)
        norms[name] = gradient_flow(rnn, lambda rnn=rnn: rnn(x)[0][:, -1].pow(2).mean())["layer0"]
    ratio = norms["lstm"].at_lag(50) / norms["lstm"].at_lag(0)
    ratio_elman = norms["elman"].at_lag(50) / norms["elman"].at_lag(0)
    assert ratio > 1e4 * ratio_elman
    assert norms["elman"].decay_lag() < 25 < norms["lstm"].decay_lag()
