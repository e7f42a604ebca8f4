"""MUT1-3 (Jozefowicz et al. 2015) against the paper's equations written out gate by gate."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import layer_norm

from rnnlab import CELLS, MUT1Cell, MUT2Cell, MUT3Cell, Recurrent

D, H, N, T = 3, 5, 4, 6
CELL_CLASSES = [MUT1Cell, MUT2Cell, MUT3Cell]


def _blocks(cell):
    """The per-gate matrices by name, sliced out of the fused parameters."""
    w_ih = dict(zip("zrh", cell.weight_ih.split(H)))
    b_ih = dict(zip("zrh", cell.bias_ih.split(H))) if cell.bias else None
    names = {MUT1Cell: "rh", MUT2Cell: "zrh", MUT3Cell: "zrh"}[type(cell)]
    w_hh = dict(zip(names, cell.weight_hh.split(H)))
    b_hh = dict(zip(names, cell.bias_hh.split(H))) if cell.bias else None
    return w_ih, b_ih, w_hh, b_hh


def _oracle(cell, x, h):
    """One step, straight from the paper (Jozefowicz et al. 2015, section 3), x projected."""
    w_ih, b_ih, w_hh, b_hh = _blocks(cell)
    sig = torch.sigmoid

    def wx(g):  # W_xg x + b_xg
        return x @ w_ih[g].t() + (b_ih[g] if b_ih else 0)

    def wh(g, v):  # W_hg v + b_hg
        return v @ w_hh[g].t() + (b_hh[g] if b_hh else 0)

    if isinstance(cell, MUT1Cell):
        z = sig(wx("z"))
        r = sig(wx("r") + wh("r", h))
        cand = torch.tanh(wh("h", r * h) + torch.tanh(wx("h")))
    elif isinstance(cell, MUT2Cell):
        z = sig(wx("z") + wh("z", h))
        r = sig(wx("r") + wh("r", h))
        cand = torch.tanh(wh("h", r * h) + wx("h"))
    else:
        z = sig(wx("z") + wh("z", torch.tanh(h)))
        r = sig(wx("r") + wh("r", h))
        cand = torch.tanh(wh("h", r * h) + wx("h"))
    return cand * z + h * (1 - z), z, r


@pytest.mark.parametrize("cls", CELL_CLASSES)
@pytest.mark.parametrize("bias", [True, False])
def test_step_matches_paper_equations(cls, bias):
    cell = cls(D, H, bias=bias, dtype=torch.float64)
    x = torch.randn(N, D, dtype=torch.float64)
    h0 = torch.randn(N, H, dtype=torch.float64)
    h, state = cell(x, h0)
    expected, z, r = _oracle(cell, x, h0)
    torch.testing.assert_close(h, expected)
    assert state is h
    gates = cell.gates(x, h0)
    assert set(gates) == {"z", "r"}
    torch.testing.assert_close(gates["z"], z)
    torch.testing.assert_close(gates["r"], r)


@pytest.mark.parametrize("cls", CELL_CLASSES)
def test_parameter_shapes_store_only_the_recurrent_blocks_used(cls):
    cell = cls(D, H)
    blocks = {MUT1Cell: 2, MUT2Cell: 3, MUT3Cell: 3}[cls]
    assert cell.weight_ih.shape == (3 * H, D)
    assert cell.weight_hh.shape == (blocks * H, H)
    assert cell.bias_hh.shape == (blocks * H,)
    n_params = sum(p.numel() for p in cell.parameters())
    assert n_params == 3 * H * (D + 1) + blocks * H * (H + 1)
    # every parameter gets a gradient: no dead block
    h, _ = cell(torch.randn(N, D), torch.randn(N, H))
    h.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cell.parameters())


@pytest.mark.parametrize("cls", CELL_CLASSES)
def test_layer_norm_normalises_each_recurrent_gemm(cls):
    cell = cls(D, H, layer_norm=True, dtype=torch.float64)
    with torch.no_grad():  # gains away from 1, so that a missing or misplaced LN shows
        for ln in [cell.ln_ih, *cell.ln_hh]:
            ln.weight.uniform_(0.5, 1.5)
    x = torch.randn(N, D, dtype=torch.float64)
    h0 = torch.randn(N, H, dtype=torch.float64)
    _, _, w_hh, b_hh = _blocks(cell)
    groups = {MUT1Cell: ["r", "h"], MUT2Cell: ["zr", "h"], MUT3Cell: ["z", "r", "h"]}[cls]
    gains = dict(zip(groups, cell.ln_hh))
    xp = layer_norm(x @ cell.weight_ih.t(), (3 * H,), cell.ln_ih.weight) + cell.bias_ih
    xz, xr, xh = xp.split(H, dim=-1)

    def rec(names, v):
        w = torch.cat([w_hh[g] for g in names])
        b = torch.cat([b_hh[g] for g in names])
        return layer_norm(v @ w.t(), (len(names) * H,), gains[names].weight) + b

    if cls is MUT1Cell:
        z = torch.sigmoid(xz)
        r = torch.sigmoid(xr + rec("r", h0))
        cand = torch.tanh(rec("h", r * h0) + torch.tanh(xh))
    elif cls is MUT2Cell:
        z, r = torch.sigmoid(torch.cat([xz, xr], -1) + rec("zr", h0)).split(H, dim=-1)
        cand = torch.tanh(rec("h", r * h0) + xh)
    else:
        z = torch.sigmoid(xz + rec("z", torch.tanh(h0)))
        r = torch.sigmoid(xr + rec("r", h0))
        cand = torch.tanh(rec("h", r * h0) + xh)
    torch.testing.assert_close(cell(x, h0)[0], cand * z + h0 * (1 - z))


@pytest.mark.parametrize("cls", CELL_CLASSES)
@pytest.mark.parametrize("layer_norm", [False, True])
def test_gradcheck(cls, layer_norm):
    cell = cls(D, H, layer_norm=layer_norm, dtype=torch.float64)
    x = torch.randn(2, D, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, H, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h: cell(x, h)[0], (x, h0))
    params = list(cell.parameters())

    def f(*ps):
        out = torch.func.functional_call(
            cell, {n: p for (n, _), p in zip(cell.named_parameters(), ps)}, (x.detach(), h0)
        )
        return out[0]

    assert torch.autograd.gradcheck(f, tuple(p.detach().requires_grad_() for p in params))


@pytest.mark.parametrize("name", ["mut1", "mut2", "mut3"])
def test_registered_and_run_in_a_layer_like_a_manual_loop(name):
    rnn = Recurrent(CELLS[name], D, H, num_layers=2, bidirectional=True)
    x = torch.randn(N, T, D)
    lengths = torch.tensor([T, 2, 4, 1])
    out, h = rnn(x, lengths=lengths)
    assert out.shape == (N, T, 2 * H) and h.shape == (4, N, H)
    # a full-length example, both layers and directions by hand
    torch.testing.assert_close(out[:1, :, :H].detach(), _top_forward(rnn, x[:1]))


def _top_forward(rnn, x):
    """Both layers by hand; returns the forward direction of the top layer (N, T, H)."""
    seq = x
    for layer in range(rnn.num_layers):
        outs = []
        for d in range(2):
            cell = rnn.cell_at(layer, d)
            xs = seq if d == 0 else seq.flip(1)
            s = torch.zeros(x.shape[0], H)
            hs = []
            for t in range(x.shape[1]):
                h, s = cell(xs[:, t], s)
                hs.append(h)
            o = torch.stack(hs, 1)
            outs.append(o if d == 0 else o.flip(1))
        seq = torch.cat(outs, -1)
    return seq[..., :H].detach()


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="hidden_size"):
        MUT1Cell(3, 0)
