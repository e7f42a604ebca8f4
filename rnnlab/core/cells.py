"""Recurrent cells: the per-step math of every cell in the family, and nothing else.

Every cell follows one contract::

    h_t, state_t = cell(x_t, state_{t-1})
    state_0 = cell.initial_state(batch, device, dtype)

``state`` is a tensor ``(N, H)`` for every cell but the LSTM, whose state is the pair ``(h, c)``
(``h`` (N, P) with projections, ``proj_size`` P > 0, ``c`` (N, H)).
A step is split in two so that layers can hoist the input side out of the time loop:
``cell(x, s) == cell.step(cell.input_projection(x), s)``. ``input_projection`` is one fused
GEMM for all gates (plus its layer norm and bias) and works on any leading shape, so a layer
projects all T steps at once; ``step`` does the one fused recurrent GEMM and the gate math.

Parameter names and layouts follow ``torch.nn``: ``weight_ih`` ``(G*H, D)``, ``weight_hh``
``(G*H, H)`` (``(G*H, P)`` with projections), ``bias_ih`` and ``bias_hh`` ``(G*H,)``,
``weight_hr`` ``(P, H)``, gates stacked in the order given per cell.

Shapes: N batch, D input size, H hidden size, P projection size, G number of gates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnlab.core.kernels import Kernel
from rnnlab.core.state import State

CellFactory = Callable[..., "RecurrentCell"]

#: Methods that define a cell's math: a subclass overriding one of them without declaring its
#: own ``kernel``/``torch_kernel`` may compute something else, so it gets no fused kernel.
_MATH_METHODS = (
    "_gates",
    "step",
    "weights",
    "input_projection",
    "recurrent",
    "recurrent_projection",
)


@dataclass(frozen=True)
class Weights:
    """The parameters a cell needs, declared from its options; the base class creates them.

    Attributes:
        gates: names of the blocks of ``weight_ih`` (G*H, D) and ``bias_ih``, in order.
        recurrent: block counts of the recurrent groups, in order: ``weight_hh`` has
            ``sum(recurrent) * H`` rows (and ``bias_hh`` as many); each group is one GEMM on its
            own vector, with its own layer norm (``ln_hh``, or ``ln_hh[g]`` for several groups).
            ``()``: no recurrent weights at all (``weight_hh``, ``bias_hh`` and ``ln_hh`` are
            None), for cells whose gates read the input alone.
        peepholes: names of (H,) diagonal parameters (the LSTM's ``weight_ci`` ...).
        cell_norm: with ``layer_norm``, also ``ln_cell``, a LayerNorm(H) with bias (the LSTM's
            normalisation of ``c_t``).
        proj_size: P > 0: the output ``h_t`` is projected to P by ``weight_hr`` (P, H) (Sak et
            al., 2014), and the recurrent GEMM reads it: ``weight_hh`` is ``(rows, P)``.
    """

    gates: tuple[str, ...]
    recurrent: tuple[int, ...]
    peepholes: tuple[str, ...] = ()
    cell_norm: bool = False
    proj_size: int = 0


class RecurrentCell(nn.Module):
    """Base class: fused input/recurrent weights, optional bias and layer norm.

    Subclasses set their own options (plain attributes) before calling ``super().__init__``,
    implement :meth:`weights` (which parameters those options need) and
    ``_gates(xp, state) -> (h, new_state, gates)`` (the math of one step), and declare the
    fused kernels that compute them (:meth:`kernel`, :meth:`torch_kernel`). The base creates
    every parameter and calls :meth:`reset_parameters` once, at the end of its ``__init__``.

    Args:
        input_size: D.
        hidden_size: H.
        bias: learn ``bias_ih`` and ``bias_hh``.
        layer_norm: Ba, Kiros & Hinton (2016): normalise the input and recurrent pre-activations
            separately (``LN(W_ih x) + LN(W_hh h) + b``), each with its own learned gain.
    """

    #: Older subclasses may still name their gates here instead of implementing ``weights``.
    gate_names: tuple[str, ...] = ()
    state_is_tuple = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        overrides_math = any(name in cls.__dict__ for name in _MATH_METHODS)
        if overrides_math and "kernel" not in cls.__dict__:
            cls.kernel = RecurrentCell.kernel  # type: ignore[method-assign]
        if overrides_math and "torch_kernel" not in cls.__dict__:
            cls.torch_kernel = RecurrentCell.torch_kernel  # type: ignore[method-assign]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        layer_norm: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.layer_norm = layer_norm
        spec = self.weights()
        self.gate_names = spec.gates
        H = hidden_size
        #: the size of ``h_t``, the output and the recurrent GEMM's input: P or H
        self.output_size = spec.proj_size or H
        kw = {"device": device, "dtype": dtype}
        gh, rh = len(spec.gates) * H, sum(spec.recurrent) * H
        self._group_rows: list[tuple[int, int]] = []
        start = 0
        for n in spec.recurrent:
            self._group_rows.append((start, start + n * H))
            start += n * H
        # Creation order fixes named_parameters(), hence reset_parameters()'s draws: keep it.
        # A cell without recurrent groups (``recurrent=()``: the minimal RNNs, whose gates read
        # the input alone) has no ``weight_hh`` and no ``bias_hh`` (both None).
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size, **kw))
        if rh:
            self.weight_hh = nn.Parameter(torch.empty(rh, self.output_size, **kw))
        else:
            self.register_parameter("weight_hh", None)
        self.register_parameter("bias_ih", nn.Parameter(torch.empty(gh, **kw)) if bias else None)
        if bias and rh:
            self.bias_hh = nn.Parameter(torch.empty(rh, **kw))
        else:
            self.register_parameter("bias_hh", None)
        if spec.proj_size:  # after the biases: torch's order (w_ih, w_hh, b_ih, b_hh, w_hr)
            self.weight_hr = nn.Parameter(torch.empty(spec.proj_size, H, **kw))
        else:
            self.register_parameter("weight_hr", None)
        for name in spec.peepholes:
            setattr(self, name, nn.Parameter(torch.empty(H, **kw)))
        self.ln_ih = self.ln_hh = self.ln_cell = None
        if layer_norm:
            # Gains only: the cell's own biases play the role of LN's shift.
            self.ln_ih = nn.LayerNorm(gh, bias=False, **kw)
            norms = [nn.LayerNorm(n * H, bias=False, **kw) for n in spec.recurrent]
            if norms:
                self.ln_hh = norms[0] if len(norms) == 1 else nn.ModuleList(norms)
            if spec.cell_norm:
                self.ln_cell = nn.LayerNorm(H, bias=bias, **kw)
        self.reset_parameters()

    def weights(self) -> Weights:
        """The parameters this cell's options need (the default: one gate per name in
        ``gate_names``, all in one recurrent GEMM)."""
        return Weights(self.gate_names, (len(self.gate_names),))

    @property
    def num_gates(self) -> int:
        return len(self.gate_names)

    def kernel(self) -> Kernel | None:
        """The :mod:`rnnlab.core.fast` kernel computing exactly this cell, or None."""
        return None

    def torch_kernel(self) -> str | None:
        """The name of torch's fused kernel computing exactly this cell, or None."""
        return None

    def reset_parameters(self) -> None:
        """torch.nn's init: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)); LN gains 1."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if name.startswith("ln_"):
                nn.init.ones_(p) if name.endswith("weight") else nn.init.zeros_(p)
            else:
                nn.init.uniform_(p, -k, k)

    def initial_state(
        self,
        batch: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """Zeros of shape (N, H) (for the LSTM a pair, ``h`` (N, P) with projections)."""
        device = self.weight_ih.device if device is None else device
        dtype = self.weight_ih.dtype if dtype is None else dtype
        h = torch.zeros(batch, self.output_size, device=device, dtype=dtype)
        if not self.state_is_tuple:
            return h
        return h, torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)

    def input_projection(self, x: Tensor) -> Tensor:
        """``LN(W_ih x) + b_ih`` for all gates at once: (..., D) -> (..., G*H)."""
        xp = x.matmul(self.weight_ih.t())
        if self.ln_ih is not None:
            xp = self.ln_ih(xp)
        if self.bias_ih is not None:
            xp = xp + self.bias_ih
        return xp

    def recurrent(self, v: Tensor, group: int = 0) -> Tensor:
        """``LN_g(W_g v) + b_g`` with the rows of recurrent group ``g``: (N, H) -> (N, n_g*H)
        (``v`` (N, P) with projections)."""
        if not self._group_rows:
            raise RuntimeError(f"{type(self).__name__} has no recurrent weights (recurrent=())")
        if len(self._group_rows) == 1:
            weight, bias, norm = self.weight_hh, self.bias_hh, self.ln_hh
        else:
            lo, hi = self._group_rows[group]
            weight = self.weight_hh[lo:hi]
            bias = None if self.bias_hh is None else self.bias_hh[lo:hi]
            norm = None if self.ln_hh is None else self.ln_hh[group]
        out = v.matmul(weight.t())
        if norm is not None:
            out = norm(out)
        if bias is not None:
            out = out + bias
        return out

    def recurrent_projection(self, h: Tensor) -> Tensor:
        """``LN(W_hh h) + b_hh`` of a one-group cell: (N, H or P) -> (N, G*H)."""
        return self.recurrent(h, 0)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        """One step from a projected input ``xp`` (N, G*H): returns (h_t, new_state)."""
        h, new_state, _ = self._gates(xp, state)
        return h, new_state

    def gates(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """The gate activations of one step, by name, each (N, H) (for diagnostics)."""
        return self._gates(self.input_projection(x), state)[2]

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step: x (N, D), state (N, H) or (h, c) -> (h_t (N, H or P), new_state)."""
        if state is None:
            state = self.initial_state(x.shape[0], x.device, x.dtype)
        return self.step(self.input_projection(x), state)

    def _gates(self, xp: Tensor, state: State) -> tuple[Tensor, State, dict[str, Tensor]]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.layer_norm:
            s += ", layer_norm=True"
        return s


class ElmanCell(RecurrentCell):
    r"""The vanilla (Elman, 1990) recurrent cell.

    .. math::
        h_t = g(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}),\quad g \in \{\tanh, \mathrm{relu}\}

    Identical to one layer of ``torch.nn.RNN`` (same weights, same nonlinearity).

    Args:
        nonlinearity: ``"tanh"`` or ``"relu"``. Other args as :class:`RecurrentCell`.

    Example::

        >>> cell = ElmanCell(8, 16)
        >>> h, state = cell(torch.randn(4, 8), cell.initial_state(4))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        bias: bool = True,
        layer_norm: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, layer_norm, device, dtype)

    def weights(self) -> Weights:
        return Weights(gates=("h",), recurrent=(1,))

    def _gates(self, xp: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        pre = xp + self.recurrent_projection(state)
        h = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)
        return h, h, {}

    def kernel(self) -> Kernel | None:
        return Kernel.ELMAN_TANH if self.nonlinearity == "tanh" else Kernel.ELMAN_RELU

    def torch_kernel(self) -> str | None:
        if self.layer_norm:
            return None
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"


class AdditiveCell(RecurrentCell):
    r"""The lectures' "naive" additive update: the state accumulates every step.

    .. math::
        s_t = s_{t-1} + \tanh(W_{ih} x_t + b_{ih} + W_{hh} s_{t-1} + b_{hh})

    Nothing bounds ``s_t``: it can and does grow without limit. That is its lesson (a linear
    self-connection carries information, but needs gates to stay stable).
    """

    def weights(self) -> Weights:
        return Weights(gates=("s",), recurrent=(1,))

    def kernel(self) -> Kernel | None:
        return Kernel.ADDITIVE

    def _gates(self, xp: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        s = state + torch.tanh(xp + self.recurrent_projection(state))
        return s, s, {}


class MinimalGRUCell(RecurrentCell):
    r"""The lectures' "simple GRU": one update gate, no reset gate.

    .. math::
        u_t &= \sigma(W_u [h_{t-1}, x_t] + b_u) \\
        \tilde h_t &= \tanh(W_c [h_{t-1}, x_t] + b_c) \\
        h_t &= u_t \odot \tilde h_t + (1 - u_t) \odot h_{t-1}

    ``W_u [h, x]`` is stored split as the input and recurrent blocks of ``weight_ih`` and
    ``weight_hh``; gate order ``u, c``.
    """

    def weights(self) -> Weights:
        return Weights(gates=("u", "c"), recurrent=(2,))

    def kernel(self) -> Kernel | None:
        return Kernel.MINIMAL_GRU

    def _gates(self, xp: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        pre_u, pre_c = (xp + self.recurrent_projection(state)).chunk(2, dim=-1)
        u = torch.sigmoid(pre_u)
        cand = torch.tanh(pre_c)
        h = state + u * (cand - state)
        return h, h, {"u": u}


class GRUCell(RecurrentCell):
    r"""The gated recurrent unit (Cho et al., 2014), reset before or after the recurrent matmul.

    Gate order ``r, z, n`` and ``z`` convention as ``torch.nn.GRU``: ``z`` is the fraction of
    the old state kept, i.e. the lectures' update gate is ``u = 1 - z``.

    .. math::
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        \text{after: } n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        \text{before: } n_t &= \tanh(W_{in} x_t + b_{in} + W_{hn} (r_t \odot h_{t-1}) + b_{hn}) \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    ``reset="before"`` is Cho et al.'s equation as taught; ``reset="after"`` is the cuDNN /
    torch.nn / Keras (``reset_after=True``) form, which lets all three recurrent gates share one
    matmul; with it the cell equals one layer of ``torch.nn.GRU``. With ``reset="before"`` the
    recurrent side takes two matmuls per step (``r`` must be known before ``W_hn``), and with
    ``layer_norm`` each is normalised on its own (``ln_hh[0]`` over r, z; ``ln_hh[1]`` over n).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        reset: str = "after",
        bias: bool = True,
        layer_norm: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if reset not in ("after", "before"):
            raise ValueError(f"reset must be 'after' or 'before', got {reset!r}")
        self.reset = reset
        super().__init__(input_size, hidden_size, bias, layer_norm, device, dtype)

    def weights(self) -> Weights:
        # reset before: r must be known before W_hn, so r, z and n are two recurrent GEMMs.
        return Weights(gates=("r", "z", "n"), recurrent=(3,) if self.reset == "after" else (2, 1))

    def _gates(self, xp: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        H = self.hidden_size
        x_rz, x_n = xp[..., : 2 * H], xp[..., 2 * H :]
        if self.reset == "after":
            hp = self.recurrent_projection(state)
            r, z = torch.sigmoid(x_rz + hp[..., : 2 * H]).chunk(2, dim=-1)
            n = torch.tanh(x_n + r * hp[..., 2 * H :])
        else:
            r, z = torch.sigmoid(x_rz + self.recurrent(state, 0)).chunk(2, dim=-1)
            n = torch.tanh(x_n + self.recurrent(r * state, 1))
        h = n + z * (state - n)
        return h, h, {"r": r, "z": z}

    def kernel(self) -> Kernel | None:
        return Kernel.GRU_AFTER if self.reset == "after" else Kernel.GRU_BEFORE

    def torch_kernel(self) -> str | None:
        return "GRU" if self.reset == "after" and not self.layer_norm else None

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, *args: object, **kwargs: object
    ) -> None:
        # Checkpoints from before the recurrent groups were declared named reset="before"'s
        # layer norms ln_hh (r, z) and ln_hn (n); they are ln_hh.0 and ln_hh.1 now.
        for old, new in self.renamed_keys().items():
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def renamed_keys(self) -> dict[str, str]:
        """Old state_dict key -> current key, for checkpoints of earlier versions."""
        if self.reset == "before" and self.layer_norm:
            return {"ln_hh.weight": "ln_hh.0.weight", "ln_hn.weight": "ln_hh.1.weight"}
        return {}

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reset={self.reset!r}"


class LSTMCell(RecurrentCell):
    r"""Long short-term memory, with or without forget gate, with optional peepholes and
    projections.

    Gate order ``i, f, g, o`` (as torch.nn); without a forget gate ``i, g, o``.

    .. math::
        i_t &= \sigma(a^i_t + p_i \odot c_{t-1}) \qquad f_t = \sigma(a^f_t + p_f \odot c_{t-1}) \\
        g_t &= \tanh(a^g_t) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        c_t &= c_{t-1} + i_t \odot g_t \quad \text{(no forget gate)} \\
        o_t &= \sigma(a^o_t + p_o \odot c_t) \\
        h_t &= o_t \odot \tanh(\mathrm{LN}(c_t)) \\
        h_t &= W_{hr} (o_t \odot \tanh(\mathrm{LN}(c_t))) \quad \text{(with projections)}

    where ``a_t = LN(W_ih x_t) + LN(W_hh h_{t-1}) + b_ih + b_hh`` (LN only with ``layer_norm``).

    * ``forget_gate=True``: Gers, Schmidhuber & Cummins (2000), the cell used everywhere; in its
      standard configuration identical to ``torch.nn.LSTMCell``.
    * ``forget_gate=False``: Hochreiter & Schmidhuber (1997), the original constant error carousel.
    * ``peephole=True``: Gers & Schmidhuber (2000): diagonal weights ``weight_ci``, ``weight_cf``
      let i and f see ``c_{t-1}``; ``weight_co`` lets o see ``c_t``.
    * ``layer_norm=True``: Ba et al. (2016), plus ``ln_cell`` on ``c_t`` before the output tanh;
      the carried ``c_t`` is the un-normalised one.
    * ``forget_bias``: the initial forget-gate bias (put in ``bias_ih``, ``bias_hh``'s slice
      zeroed). The default 1.0 follows Jozefowicz, Zaremba & Sutskever (2015), who found it
      closes most of the gap between the LSTM and the GRU; ``None`` keeps torch's uniform init.
    * ``proj_size=P`` (0 < P < H): Sak, Senior & Beaufays (2014): the output and recurrent state
      ``h_t`` (N, P) is ``weight_hr`` (P, H) times the cell's output, so ``weight_hh`` is
      ``(G*H, P)``; ``c_t`` stays (N, H). In the standard configuration identical to one layer of
      ``torch.nn.LSTM(proj_size=P)``. 0: no projection.

    Example::

        >>> cell = LSTMCell(8, 16, peephole=True, layer_norm=True)
        >>> h, (h, c) = cell(torch.randn(4, 8))
        >>> h, (h, c) = LSTMCell(8, 16, proj_size=4)(torch.randn(3, 8))   # h (3, 4), c (3, 16)
    """

    state_is_tuple = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        forget_gate: bool = True,
        peephole: bool = False,
        forget_bias: float | None = 1.0,
        bias: bool = True,
        layer_norm: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        proj_size: int = 0,
    ) -> None:
        if not isinstance(proj_size, int) or isinstance(proj_size, bool) or proj_size < 0:
            raise ValueError(
                f"proj_size must be a non-negative integer (0: no projection), got {proj_size!r}"
            )
        if proj_size and isinstance(hidden_size, int) and proj_size >= hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size ({hidden_size}), got {proj_size}"
            )
        if forget_bias is not None and forget_bias != 0.0:
            if not forget_gate:
                raise ValueError("forget_bias needs forget_gate=True; pass forget_bias=None")
            if not bias:
                raise ValueError("forget_bias needs bias=True; pass forget_bias=None")
        self.forget_gate = forget_gate
        self.peephole = peephole
        self.forget_bias = forget_bias
        self.proj_size = proj_size
        super().__init__(input_size, hidden_size, bias, layer_norm, device, dtype)
        for name in ("weight_ci", "weight_cf", "weight_co"):
            if not hasattr(self, name):  # the peepholes this configuration has none of
                setattr(self, name, None)

    def weights(self) -> Weights:
        gates = ("i", "f", "g", "o") if self.forget_gate else ("i", "g", "o")
        names = (
            ("weight_ci", "weight_cf", "weight_co")
            if self.forget_gate
            else ("weight_ci", "weight_co")
        )
        peepholes = names if self.peephole else ()
        return Weights(gates, (len(gates),), peepholes, cell_norm=True, proj_size=self.proj_size)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is not None and self.bias_ih is not None and self.forget_gate:
            H = self.hidden_size
            with torch.no_grad():
                self.bias_ih[H : 2 * H].fill_(self.forget_bias)
                self.bias_hh[H : 2 * H].zero_()

    def _gates(
        self, xp: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor], dict[str, Tensor]]:
        h_prev, c_prev = state
        a = xp + self.recurrent_projection(h_prev)
        if self.forget_gate:
            a_i, a_f, a_g, a_o = a.chunk(4, dim=-1)
        else:
            a_i, a_g, a_o = a.chunk(3, dim=-1)
        if self.peephole:
            a_i = a_i + self.weight_ci * c_prev
        i = torch.sigmoid(a_i)
        g = torch.tanh(a_g)
        if self.forget_gate:
            if self.peephole:
                a_f = a_f + self.weight_cf * c_prev
            f = torch.sigmoid(a_f)
            c = f * c_prev + i * g
        else:
            f = None
            c = c_prev + i * g
        if self.peephole:
            a_o = a_o + self.weight_co * c
        o = torch.sigmoid(a_o)
        c_out = self.ln_cell(c) if self.ln_cell is not None else c
        h = o * torch.tanh(c_out)
        if self.weight_hr is not None:
            h = h.matmul(self.weight_hr.t())
        gates = {"i": i, "g": g, "o": o}
        if f is not None:
            gates["f"] = f
        return h, (h, c), gates

    def kernel(self) -> Kernel | None:
        return Kernel.LSTM if self.forget_gate else Kernel.LSTM_NO_FORGET

    def torch_kernel(self) -> str | None:
        standard = self.forget_gate and not self.peephole and not self.layer_norm
        return "LSTM" if standard else None

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if not self.forget_gate:
            s += ", forget_gate=False"
        if self.peephole:
            s += ", peephole=True"
        if self.forget_bias is not None:
            s += f", forget_bias={self.forget_bias}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s


__all__ = [
    "AdditiveCell",
    "CellFactory",
    "ElmanCell",
    "GRUCell",
    "LSTMCell",
    "MinimalGRUCell",
    "RecurrentCell",
    "State",
    "Weights",
]
