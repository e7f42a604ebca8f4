"""Minimal RNNs: cells whose gates read the input alone, trained without the step loop.

Feng, Tung, Ahmed, Bengio & Hajimirsadeghi (2024), "Were RNNs All We Needed?", drop the
recurrent weights from the GRU's and LSTM's gates. What is left is a recurrence linear in the
state, with coefficients known from the input alone::

    h_t = a_t * h_{t-1} + b_t          (a_t in (0, 1], elementwise)

so a layer computes all its gates with one GEMM over the whole sequence and then runs the
recurrence on the coefficients alone, while generation still runs one step at a time
(:meth:`~rnnlab.core.cells.RecurrentCell.step`). The same family as QRNN (Bradbury et al.,
2017) and SRU (Lei et al., 2018).

A cell of this family declares :meth:`MinimalRNNCell.coefficients` (``log a_t`` and ``b_t`` from
the projected input) and :meth:`MinimalRNNCell.linear_coefficients` (``a_t`` itself);
:class:`~rnnlab.core.layers.Recurrent` runs :meth:`MinimalRNNCell.parallel_scan` on them as its
``"fast"`` backend (:meth:`~rnnlab.core.layers.Recurrent.backend_for`), and the readable step
loop stays its oracle (``"reference"``). What runs where:

* **CPU, float32 or float64** (with the C++ kernels built): :func:`sequential_scan`, a loop over
  t in C++ (:mod:`rnnlab.core.fast.linrec`), vectorised and threaded over the N*H independent
  lanes: one multiply-add per element, in linear space (``|a| <= 1``: as stable as the step,
  and exact), forward and backward.
* **elsewhere** (GPUs, float16 and bfloat16, no compiler): :func:`linear_scan`, the log-space
  parallel scan (Heinsen 2023), torch ops only, O(T/64) sequential steps instead of T: there
  the few lanes of a step cannot fill the device, and the chain over t is what costs.

Why two: on a CPU the N*H lanes alone fill the cores and vector units, so the parallel scan
only buys a shorter chain nobody waits on, at the price of an exp and a log per element forward
and backward. Measured on 2 cores (benchmarks/minimal.py, D = 128, N = 4, equal parameters):
with the log-space scan minGRU ran at 0.05-0.10x and minLSTM at 0.07-0.16x the LSTM's
forward+backward tokens/s for T = 100 to 10,000 (torch's single-threaded logcumsumexp was 59%
of the time at T = 1,000). At T = 1,000, N = 4, H = 512 the recurrence alone (forward+backward,
one thread) took 540 ms as the log-space scan and 6 ms on the C++ loop, and the layers'
tokens/s rose 7-11x (minGRU) and 5-6x (minLSTM), measured on a loaded machine; what is left is
the GEMM and the gates' elementwise ops.

Shapes: N batch, T time, D input size, H hidden size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.core.cells import RecurrentCell, Weights
from rnnlab.core.fast import linrec
from rnnlab.core.zoneout import Zoneout, check_zoneout

#: Steps per chunk of :func:`linear_scan`: the cumulative log-decay restarts at every chunk, so
#: the log-space sums stay within ``CHUNK * |log a|`` (float32 keeps ~7 digits of them).
CHUNK = 64


def g(x: Tensor) -> Tensor:
    r"""The paper's positive activation: :math:`g(x) = x + 1/2` for :math:`x \ge 0`, else
    :math:`\sigma(x)` (continuous, with slope 1/4 and 1 either side of 0, always > 0)."""
    return torch.where(x >= 0, x.clamp_min(0) + 0.5, torch.sigmoid(x.clamp_max(0)))


def linear_scan(
    log_a: Tensor, b: Tensor, h0: Tensor, mask: Tensor | None = None, positive: bool = False
) -> tuple[Tensor, Tensor]:
    r"""``h_t = a_t * h_{t-1} + b_t`` for all t at once: a chunked log-space parallel scan.

    Heinsen (2023): with :math:`a^*_t = \sum_{s \le t} \log a_s`,

    .. math::
        h_t = e^{a^*_t} h_0 + e^{a^*_t} \sum_{s \le t} e^{\log b_s - a^*_s}
            = e^{a^*_t} h_0 + \exp\big(a^*_t + \mathrm{LCSE}_{s \le t}(\log b_s - a^*_s)\big)

    for :math:`b > 0` (LCSE: logcumsumexp), with torch's ``cumsum`` and ``logcumsumexp``
    (forward and backward by autograd; logcumsumexp's own backward is again a log-space scan).
    The numerics:

    * **signs**: ``b`` of any sign is split as ``b = p - q`` with ``p = (|b| + b)/2 + e`` and
      ``q = (|b| - b)/2 + e``, two scans whose difference is ``h``. ``e`` (the square root of the
      dtype's smallest normal, ~1e-19 in float32) keeps every log finite (logcumsumexp's
      backward turns ``-inf`` into NaN) and cancels exactly in ``p - q``; the difference loses
      only what the step loop loses when positive and negative terms cancel (an absolute error
      of a few ulps of ``sum |b_s| a_{s+1..t}``). With ``positive=True`` (the cells' ``g``
      option: every ``b > 0``) the ``q`` scan is skipped.
    * **range**: the scan restarts every :data:`CHUNK` steps, so that the log-space terms
      (which grow like ``t * |log a|``) stay small and their rounding does not grow with T; the
      chunks are chained by the same recurrence on their last steps (a short loop over
      ``T / CHUNK`` chunks). ``h_0`` enters linearly (any sign, zero included).
    * ``log a`` comes straight from the gates' log-sigmoids (never ``log`` of a rounded
      ``1 - z``), and ``e^{a^*_t - a^*_s} \le 1``: nothing overflows.

    Args:
        log_a: (T, N, H) log decays, ``<= 0``.
        b: (T, N, H) increments.
        h0: (N, H) the state before the first step.
        mask: (T, N, 1) bool, True where a step is inside its sequence; past the end the state
            is frozen (``a = 1, b = 0``) and the output is zero, as in
            :func:`rnnlab.core.layers.scan`.
        positive: every ``b`` is > 0 (skip the negative part's scan).

    Returns:
        ``(outputs (T, N, H), final state (N, H))``.
    """
    if mask is not None:
        log_a = log_a.masked_fill(~mask, 0.0)
        b = b.masked_fill(~mask, 0.0)
    T = b.shape[0]
    C = min(CHUNK, T)
    pad = -T % C
    if pad:  # a = 1, b = 0 past the end: the state is carried unchanged
        log_a = F.pad(log_a, (0, 0, 0, 0, 0, pad))
        b = F.pad(b, (0, 0, 0, 0, 0, pad))
    shape = (-1, C, *b.shape[1:])  # (T/C, C, N, H): the chunks side by side
    log_a, b = log_a.reshape(shape), b.reshape(shape)
    a_star = log_a.cumsum(1)  # log of the decay from each chunk's start
    e = torch.finfo(b.dtype).tiny ** 0.5
    if positive:
        local = _decayed_sum(a_star, b + e)
    else:
        magnitude = b.abs()
        local = _decayed_sum(a_star, (magnitude + b) / 2 + e)
        local = local - _decayed_sum(a_star, (magnitude - b) / 2 + e)
    decay = a_star.exp()  # (T/C, C, N, H): h within a chunk = local + decay * h(chunk start)
    starts = [h0]
    # chain the chunks: T/C short steps, on the chunks' last steps sliced once (a slice per
    # step would cost a full-size zero gradient per step in the backward)
    ends = zip(local[:-1, -1].unbind(0), decay[:-1, -1].unbind(0), strict=True)
    for end, end_decay in ends:
        starts.append(end + end_decay * starts[-1])
    h = local + decay * torch.stack(starts).unsqueeze(1)
    h = h.reshape(-1, *b.shape[2:])
    final = h[T - 1]  # frozen past each sequence's end, so its own last state
    out = h[:T]
    if mask is not None:
        out = out * mask
    return out, final


def zoned_coefficients(log_a: Tensor, b: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(log a', b')`` of the recurrence with zoneout (Krueger et al., 2017) folded in.

    .. math::
        h_t = z_t h_{t-1} + (1 - z_t)(a_t h_{t-1} + b_t) = a'_t h_{t-1} + b'_t, \quad
        a'_t = z_t + (1 - z_t) a_t, \quad b'_t = (1 - z_t) b_t

    still linear in ``h``. ``log a' = logaddexp(log z, log(1 - z) + log a)``, never ``log`` of
    a rounded sum: with ``z = 0`` it is ``log a`` exactly, with ``z = 1`` exactly 0. The
    infinite logs of ``z`` in {0, 1} stay out of the gradients (``z`` is a constant, and
    logaddexp's gradient to a ``-inf`` argument is 0, not NaN). ``b' >= 0`` where ``b > 0``,
    so :func:`linear_scan`'s ``positive`` still holds.

    Args:
        log_a: (T, N, H) log decays; b: (T, N, H) increments; z: (T, N, H) weights in [0, 1].
    """
    z = z.detach()
    return torch.logaddexp(z.log(), torch.log1p(-z) + log_a), (1 - z) * b


def sequential_scan(
    a: Tensor, b: Tensor, h0: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``h_t = a_t * h_{t-1} + b_t`` as a loop over t in C++, in linear space.

    :func:`rnnlab.core.fast.linrec.linear_recurrence`: one multiply-add per element, threaded
    and vectorised over the N*H lanes, exact and stable for ``|a| <= 1`` (the cells' decays are
    in (0, 1]). The same results as :func:`linear_scan` on ``log a``, and its arguments; CPU
    tensors in float32 or float64 only (:func:`rnnlab.core.fast.linrec.supported`).

    Args:
        a: (T, N, H) decays; b: (T, N, H) increments; h0: (N, H) the state before step 0.
        mask: (T, N, 1) bool, True inside each sequence: past the end the state is frozen
            (``a = 1, b = 0``) and the output is zero, as in :func:`rnnlab.core.layers.scan`.

    Returns:
        ``(outputs (T, N, H), final state (N, H))``.
    """
    if mask is not None:
        a = a.masked_fill(~mask, 1.0)
        b = b.masked_fill(~mask, 0.0)
    h = linrec.linear_recurrence(a, b, h0)
    final = h[-1]  # frozen past each sequence's end, so its own last state
    return (h if mask is None else h.masked_fill(~mask, 0.0)), final


def _decayed_sum(a_star: Tensor, v: Tensor) -> Tensor:
    """``sum_{s <= t} exp(a*_t - a*_s) v_s`` along dim 1, for ``v > 0``, in log space."""
    return (a_star + torch.logcumsumexp(v.log() - a_star, dim=1)).exp()


class MinimalRNNCell(RecurrentCell):
    """Base of the minimal RNNs: no recurrent weights, and a linear recurrence in ``h``.

    Subclasses implement :meth:`coefficients`; the step and the parallel scan both follow from
    it, so they compute the same function. ``g=True``: the candidate ``h~`` goes through the
    positive activation :func:`g`, so every ``h_t > 0`` (for ``h_0 >= 0``).

    ``g`` is the paper's positive activation on the candidate (its "log-space version"). The
    other arguments are :class:`~rnnlab.core.cells.RecurrentCell`'s: ``bias`` learns
    ``bias_ih`` (there is no ``bias_hh``); ``layer_norm`` normalises the input projection,
    ``ln_ih``.
    """

    #: the layer may run :meth:`parallel_scan` instead of the step loop
    parallel = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        g: bool = False,
        bias: bool = True,
        layer_norm: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not isinstance(g, bool):
            raise TypeError(f"g must be True or False, got {g!r}")
        self.g = g
        super().__init__(input_size, hidden_size, bias, layer_norm, device, dtype)

    def coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """``(log a, b, gates)`` of ``h_t = a_t * h_{t-1} + b_t`` from the projected input
        ``xp`` (..., G*H): each (..., H)."""
        raise NotImplementedError

    def linear_coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """``(a, b, gates)`` as :meth:`coefficients`, with the decay itself instead of its
        log (for :func:`sequential_scan`); subclasses compute ``a`` directly where that is
        cheaper, from the same pre-activations."""
        log_a, b, gates = self.coefficients(xp)
        return log_a.exp(), b, gates

    def candidate(self, pre: Tensor) -> Tensor:
        """``h~``: the candidate's pre-activation itself, or through :func:`g`."""
        return g(pre) if self.g else pre

    def _gates(self, xp: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        log_a, b, gates = self.coefficients(xp)
        h = log_a.exp() * state + b
        return h, h, gates

    def parallel_scan(
        self,
        xp: Tensor,
        state: Tensor,
        mask: Tensor | None = None,
        zoneout: Zoneout | None = None,
    ) -> tuple[Tensor, Tensor]:
        """:func:`rnnlab.core.layers.scan` (without ``keep_states``) without the step loop.

        On CPU tensors in float32 or float64 (with the C++ kernels built) the recurrence runs
        in linear space on the sequential C++ loop (:func:`sequential_scan`), elsewhere (other
        devices, float16, bfloat16, no compiler) as the log-space parallel scan
        (:func:`linear_scan`); see the module docstring for why.

        Args:
            xp: ``input_projection(x)``, time-major (T, N, G*H).
            state: the initial state (N, H).
            mask: (T, N, 1) bool, True inside each sequence, or None.
            zoneout: ``(zh, None)``, zoneout's blend weights of ``h`` (T, N, H) in [0, 1]
                (folded into the coefficients: :func:`zoned_coefficients`), or None.

        Returns:
            ``(outputs (T, N, H), final state (N, H))``, those of the step loop.
        """
        zoneout = check_zoneout(zoneout, xp, state)  # (zh, None) or None: h is the state
        if linrec.supported(xp):
            a, b, _ = self.linear_coefficients(xp)
            if zoneout is not None:
                keep = 1 - zoneout[0]  # a' = z + (1 - z) a, b' = (1 - z) b
                a, b = zoneout[0] + keep * a, keep * b
            return sequential_scan(a, b, state, mask)
        log_a, b, _ = self.coefficients(xp)
        if zoneout is not None:
            log_a, b = zoned_coefficients(log_a, b, zoneout[0])
        return linear_scan(log_a, b, state, mask, positive=self.g)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", g=True" if self.g else "")


class MinGRUCell(MinimalRNNCell):
    r"""minGRU (Feng et al., 2024): the GRU with gates that read the input alone.

    .. math::
        z_t &= \sigma(W_z x_t + b_z) \\
        \tilde h_t &= W_h x_t + b_h \quad (\text{or } g(W_h x_t + b_h) \text{ with } g) \\
        h_t &= (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    ``weight_ih`` (2H, D) stacks ``z, h``; no ``weight_hh``. ``z`` is the lectures' update gate
    (the fraction of the new candidate taken), the opposite of ``torch.nn.GRU``'s ``z``. With
    ``g=True`` (the paper's log-space version) :math:`g(x) = x + 1/2` for :math:`x \ge 0`, else
    :math:`\sigma(x)`, keeps the candidate, hence the state, positive. The state starts at zero
    (the paper starts its log-space scan at :math:`g(h_0)`, which a scan needing :math:`\log h`
    needs; ours does not, and a state passed in is taken as is, so that a sequence run in chunks
    equals the whole).

    Example::

        >>> cell = MinGRUCell(8, 16, g=True)
        >>> h, state = cell(torch.randn(4, 8))
    """

    def weights(self) -> Weights:
        return Weights(gates=("z", "h"), recurrent=())

    def coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        pre_z, pre_h = xp.chunk(2, dim=-1)
        z = torch.sigmoid(pre_z)
        return F.logsigmoid(-pre_z), z * self.candidate(pre_h), {"z": z}

    def linear_coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        pre_z, pre_h = xp.chunk(2, dim=-1)
        z = torch.sigmoid(pre_z)  # 1 - z as sigmoid(-pre_z): exact where z rounds to 1
        return torch.sigmoid(-pre_z), z * self.candidate(pre_h), {"z": z}


class MinLSTMCell(MinimalRNNCell):
    r"""minLSTM (Feng et al., 2024): the LSTM with input-only gates, normalised, and no output
    gate or cell state.

    .. math::
        f_t &= \sigma(W_f x_t + b_f) \qquad i_t = \sigma(W_i x_t + b_i) \\
        f'_t &= \frac{f_t}{f_t + i_t} \qquad i'_t = \frac{i_t}{f_t + i_t} \\
        \tilde h_t &= W_h x_t + b_h \quad (\text{or } g(W_h x_t + b_h) \text{ with } g) \\
        h_t &= f'_t \odot h_{t-1} + i'_t \odot \tilde h_t

    ``weight_ih`` (3H, D) stacks ``f, i, h``; no ``weight_hh``. The normalised gates are
    computed from log-sigmoids (``log f' = log f - logaddexp(log f, log i)``), so they stay
    exact when both gates are tiny. The state is ``h`` alone (not ``(h, c)``); ``g`` and the
    initial state as :class:`MinGRUCell`'s.

    Example::

        >>> cell = MinLSTMCell(8, 16)
        >>> h, state = cell(torch.randn(4, 8))
    """

    def weights(self) -> Weights:
        return Weights(gates=("f", "i", "h"), recurrent=())

    def coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        pre_f, pre_i, pre_h = xp.chunk(3, dim=-1)
        log_f, log_i = F.logsigmoid(pre_f), F.logsigmoid(pre_i)
        log_sum = torch.logaddexp(log_f, log_i)
        f, i = (log_f - log_sum).exp(), (log_i - log_sum).exp()
        return log_f - log_sum, i * self.candidate(pre_h), {"f": f, "i": i}

    def linear_coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        # f' = f / (f + i) = sigmoid(log f - log i), and i' = sigmoid(log i - log f): exact
        # when both gates are tiny, with no log-sum-exp
        pre_f, pre_i, pre_h = xp.chunk(3, dim=-1)
        d = F.logsigmoid(pre_f) - F.logsigmoid(pre_i)
        f, i = torch.sigmoid(d), torch.sigmoid(-d)
        return f, i * self.candidate(pre_h), {"f": f, "i": i}


__all__ = [
    "CHUNK",
    "MinGRUCell",
    "MinLSTMCell",
    "MinimalRNNCell",
    "g",
    "linear_scan",
    "sequential_scan",
    "zoned_coefficients",
]
