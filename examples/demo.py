"""A short runnable example: a bidirectional 2-layer layer-norm peephole LSTM on a padded batch."""

from __future__ import annotations

from functools import partial

import torch

from rnnlab import LSTMCell, Recurrent

torch.manual_seed(0)
rnn = Recurrent(
    partial(LSTMCell, peephole=True, layer_norm=True), 8, 32, num_layers=2, bidirectional=True
)
x = torch.randn(3, 6, 8)  # (N, T, D), padded to T = 6
lengths = torch.tensor([6, 2, 4])
out, (h, c) = rnn(x, lengths=lengths)
print("output", tuple(out.shape), "final h", tuple(h.shape))
print("outputs past each length are zero:", bool((out[1, 2:] == 0).all()))
