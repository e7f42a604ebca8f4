"""The fused kernels of :mod:`rnnlab.core.fast`, by number: the one definition of the cell kinds.

Cells declare which kernel computes them (:meth:`rnnlab.core.cells.RecurrentCell.kernel`); the
C++ side reads the same numbers from ``kinds.h``, which :mod:`rnnlab.core.fast._build` generates
from :class:`Kernel` (so the two can never disagree). This module imports nothing but the
standard library.
"""

from __future__ import annotations

import enum

#: The implementations a recurrent layer can run on (see :mod:`rnnlab.core.backend`).
BACKENDS = ("auto", "torch", "fast", "reference")


class Kernel(enum.IntEnum):
    r"""One fused C++ loop (forward and backward) per cell kind.

    Notation: ``a = xp_t + R(h_{t-1})`` with ``R(v) = LN(W_hh v) + b_hh``.

    * ``ELMAN_TANH``: ``h_t = tanh(a)``.
    * ``ELMAN_RELU``: ``h_t = relu(a)``.
    * ``ADDITIVE``: ``s_t = s_{t-1} + tanh(a)``.
    * ``MINIMAL_GRU``: ``u = sigma(a_u)``, ``h_t = h_{t-1} + u (tanh(a_c) - h_{t-1})``.
    * ``GRU_AFTER``: torch.nn.GRU's cell, reset applied after the recurrent matmul.
    * ``GRU_BEFORE``: Cho et al.'s GRU, ``n = tanh(x_n + R_n(r * h_{t-1}))``.
    * ``LSTM``: gates ``i, f, g, o``, optional peepholes, layer norm on ``c_t`` and projection
      ``h_t = W_hr m_t`` (both LSTM kinds).
    * ``LSTM_NO_FORGET``: gates ``i, g, o``, ``c_t = c_{t-1} + i g`` (Hochreiter 1997).
    * ``MUT1``, ``MUT2``, ``MUT3``: Jozefowicz, Zaremba & Sutskever (2015)'s evolved cells.
    """

    ELMAN_TANH = 0
    ELMAN_RELU = 1
    ADDITIVE = 2
    MINIMAL_GRU = 3
    GRU_AFTER = 4
    GRU_BEFORE = 5
    LSTM = 6
    LSTM_NO_FORGET = 7
    MUT1 = 8
    MUT2 = 9
    MUT3 = 10

    @property
    def cpp_name(self) -> str:
        """The C++ enumerator: ``k`` + the CamelCased name (``MINIMAL_GRU`` -> ``kMinimalGru``)."""
        return "k" + "".join(part.capitalize() for part in self.name.split("_"))


__all__ = ["BACKENDS", "Kernel"]
