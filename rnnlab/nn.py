"""Drop-in replacements for ``torch.nn.RNN``, ``torch.nn.GRU`` and ``torch.nn.LSTM``: the public
name of :mod:`rnnlab.core.dropin` (``rnnlab.nn`` mirrors ``torch.nn``)."""

from __future__ import annotations

from rnnlab.core.dropin import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "RNN"]
