"""torch's oneDNN LSTM layer as custom operators, for :func:`torch.compile`.

Eagerly, the standard LSTM runs ``torch.lstm``, which on the CPU reaches oneDNN's fused LSTM
(``aten::mkldnn_rnn_layer`` and its backward). Compiled, Inductor decomposes ``torch.lstm``
into one block of operations per time step when gradients are needed: slower than eager, and
minutes to compile. Calling ``aten::mkldnn_rnn_layer`` directly keeps oneDNN, but its oneDNN
workspace has a size only the library knows at run time, which Inductor's fake shape contradicts.
These two operators wrap the forward and the backward with a workspace of data-dependent size, so
a compiled model runs the same oneDNN kernels as eager (tests/core/test_compile.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

_LSTM = 2  # oneDNN's rnn kind for the LSTM (ideep::rnn_kind::LSTM)


@torch.library.custom_op("rnnlab::onednn_lstm_layer", mutates_args=())
def lstm_layer(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    h0: Tensor,
    c0: Tensor,
    reverse: bool,
    train: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One direction of one LSTM layer on oneDNN: ``(y (T, N, H), h_T, c_T (1, N, H),
    workspace)``; ``x`` (T, N, D), ``h0`` and ``c0`` (1, N, H)."""
    # oneDNN keeps its workspace only with grad mode on (the operator runs below autograd here,
    # so no graph is recorded either way)
    with torch.set_grad_enabled(train):
        y, hy, cy, workspace = torch.ops.aten.mkldnn_rnn_layer(
            x.contiguous(), w_ih, w_hh, b_ih, b_hh, h0.contiguous(), c0.contiguous(), reverse,
            [], _LSTM, h0.shape[-1], 1, True, False, False, train,
        )  # fmt: skip
    if workspace is None:
        workspace = x.new_empty(0, dtype=torch.uint8)
    return y, hy, cy, workspace


@lstm_layer.register_fake
def _lstm_layer_fake(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    h0: Tensor,
    c0: Tensor,
    reverse: bool,
    train: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    T, N, H = x.shape[0], x.shape[1], h0.shape[-1]
    size = torch.library.get_ctx().new_dynamic_size()  # known to oneDNN alone
    workspace = x.new_empty(size, dtype=torch.uint8)
    return x.new_empty(T, N, H), h0.new_empty(h0.shape), c0.new_empty(c0.shape), workspace


@torch.library.custom_op("rnnlab::onednn_lstm_layer_backward", mutates_args=())
def lstm_layer_backward(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    h0: Tensor,
    c0: Tensor,
    y: Tensor,
    hy: Tensor,
    cy: Tensor,
    grad_y: Tensor | None,
    grad_hy: Tensor | None,
    grad_cy: Tensor | None,
    reverse: bool,
    workspace: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dx, dW_ih, dW_hh, db_ih, db_hh, dh0, dc0)`` of :func:`lstm_layer`."""
    grads = torch.ops.aten.mkldnn_rnn_layer_backward(
        x.contiguous(), w_ih, w_hh, b_ih, b_hh, h0.contiguous(), c0.contiguous(), y, hy, cy,
        grad_y, grad_hy, grad_cy, reverse, _LSTM, h0.shape[-1], 1, True, True, False, [], False,
        workspace,
    )  # fmt: skip
    return tuple(g.contiguous() for g in grads)  # (contiguous, as the fake says)


@lstm_layer_backward.register_fake
def _lstm_layer_backward_fake(
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    h0: Tensor,
    c0: Tensor,
    y: Tensor,
    hy: Tensor,
    cy: Tensor,
    grad_y: Tensor | None,
    grad_hy: Tensor | None,
    grad_cy: Tensor | None,
    reverse: bool,
    workspace: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return tuple(t.new_empty(t.shape) for t in (x, w_ih, w_hh, b_ih, b_hh, h0, c0))


def _setup(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:
    x, w_ih, w_hh, b_ih, b_hh, h0, c0, reverse, _train = inputs
    y, hy, cy, workspace = output
    # no zero gradient for the workspace (megabytes per layer and step) or an unused state:
    # the backward fills in only the small ones oneDNN reads
    ctx.set_materialize_grads(False)
    ctx.reverse = reverse
    ctx.save_for_backward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, y, hy, cy, workspace)


def _backward(
    ctx: torch.autograd.function.FunctionCtx,
    grad_y: Tensor | None,
    grad_hy: Tensor | None,
    grad_cy: Tensor | None,
    _grad_workspace: Tensor | None,
) -> tuple[Tensor | None, ...]:
    x, w_ih, w_hh, b_ih, b_hh, h0, c0, y, hy, cy, workspace = ctx.saved_tensors
    # oneDNN's backward reads all three incoming gradients
    grad_y = grad_y if grad_y is not None else torch.zeros_like(y)
    grad_hy = grad_hy if grad_hy is not None else torch.zeros_like(hy)
    grad_cy = grad_cy if grad_cy is not None else torch.zeros_like(cy)
    grads = lstm_layer_backward(
        x, w_ih, w_hh, b_ih, b_hh, h0, c0, y, hy, cy, grad_y, grad_hy, grad_cy, ctx.reverse,
        workspace,
    )  # fmt: skip
    return (*grads, None, None)


lstm_layer.register_autograd(_backward, setup_context=_setup)


def usable(x: Tensor, bias: bool, proj: bool) -> bool:
    """Whether oneDNN runs this standard LSTM on input ``x`` (CPU float32 or bfloat16, with
    biases, without projections, oneDNN enabled)."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and bias
        and not proj
        and _enabled()
    )


@torch.compiler.assume_constant_result  # read while tracing (torch.backends is not traced)
def _enabled() -> bool:
    return torch.backends.mkldnn.is_available() and torch._C._get_mkldnn_enabled()


def run_stack(
    x: Tensor,
    state: tuple[Tensor, Tensor] | None,
    weights: list[Tensor],
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    hidden_size: int,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """A stack of standard LSTM layers over time-major ``x`` (T, N, D) on :func:`lstm_layer`,
    as ``torch.lstm`` computes it (weights: torch's flat list, four per layer and direction)."""
    K = 2 if bidirectional else 1
    N = x.shape[1]
    if state is None:
        zeros = x.new_zeros(num_layers * K, N, hidden_size)
        state = (zeros, zeros)
    hs, cs = [], []
    layer_input = x
    train = training and torch.is_grad_enabled()
    for layer in range(num_layers):
        if layer > 0 and dropout > 0 and training:
            layer_input = torch.nn.functional.dropout(layer_input, dropout, True)
        outs = []
        for d in range(K):
            k = layer * K + d
            w = weights[4 * k : 4 * k + 4]
            y, hy, cy, _ = lstm_layer(layer_input, *w, state[0][k : k + 1], state[1][k : k + 1],
                                      d == 1, train)  # fmt: skip
            outs.append(y)
            hs.append(hy)
            cs.append(cy)
        layer_input = outs[0] if K == 1 else torch.cat(outs, dim=-1)
    return layer_input, (torch.cat(hs), torch.cat(cs))
