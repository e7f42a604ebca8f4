"""Layers: run any cell over a sequence, stacked and/or bidirectional, with variable lengths.

Three independent pieces: :func:`scan` (the loop over time, one direction), :func:`flip_valid`
(reverse the valid part of each padded sequence) and :class:`Recurrent` (stacking, directions,
dropout between layers, lengths, ``PackedSequence``). Which implementation runs a layer (torch's
fused kernel, rnnlab's C++ loop or the reference loop) is its ``backend``, decided in one place,
:meth:`Recurrent.backend_for` (see :mod:`rnnlab.core.backend`).

Shapes: N batch, T time, D input size, H hidden size, L layers, K directions (1 or 2); an LSTM
with projections (``LSTMCell(proj_size=P)``) outputs P where the others output H.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
from torch.utils.hooks import RemovableHandle

from rnnlab.core import fast, onednn
from rnnlab.core.backend import check_backend, forced_backend, run_torch_kernel
from rnnlab.core.cells import CellFactory, RecurrentCell
from rnnlab.core.dropout import dropped_recurrent_weights, locked_dropout
from rnnlab.core.layer_checks import LayerChecks
from rnnlab.core.state import (
    State,
    hidden_part,
    map_state,
    stack_states,
    unstack_state,
    where_state,
)
from rnnlab.core.zoneout import Zoneout, check_zoneout, zone_state, zoneout_weights
from rnnlab.errors import RnnlabError, ShapeError, WrongTypeError

#: ``observer(t, xp_t, state_in, h, new_state, gates)`` -> None or a replacement ``(h, new_state)``.
StepObserver = Callable[[int, Tensor, State, Tensor, State, dict], "tuple[Tensor, State] | None"]
#: ``hook(layer, direction, t, xp_t, state_in, h, new_state, gates)``, returning as an observer.
StepHook = Callable[
    [int, int, int, Tensor, State, Tensor, State, dict], "tuple[Tensor, State] | None"
]


def flip_valid(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of a time-major batch (T, N, ...) within its own length.

    Positions past a sequence's length stay where they are, so the reverse direction of a
    padded batch sees each sequence exactly as it would alone.
    """
    if lengths is None:
        return x.flip(0)
    T, N = x.shape[:2]
    t = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
    lens = lengths.to(x.device).unsqueeze(0)  # (1, N)
    idx = torch.where(t < lens, lens - 1 - t, t)  # (T, N)
    idx = idx.view(T, N, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, idx)


def scan(
    cell: RecurrentCell,
    xp: Tensor,
    state: State,
    mask: Tensor | None = None,
    keep_states: bool = False,
    observer: StepObserver | None = None,
    zoneout: Zoneout | None = None,
) -> tuple[Tensor, State, list[State] | None]:
    """The reference loop over time for one direction: the cells' readable per-step math.

    Args:
        cell: any :class:`~rnnlab.core.cells.RecurrentCell`.
        xp: the projected inputs ``cell.input_projection(x)``, time-major (T, N, G*H).
        state: the initial state, (N, H) or (h, c).
        mask: (T, N, 1) bool, True where a step is inside its sequence; past the end the state
            is frozen and the output is zero.
        keep_states: also return the state after every step.
        observer: called after every step as ``observer(t, xp_t, state_in, h, new_state,
            gates)`` (the step computed by ``cell._gates``, before the mask); it may return
            None or a replacement ``(h, new_state)``, e.g. with a zero perturbation added whose
            gradient is ``dL/ds_t``.
        zoneout: ``(zh, zc)``, the blend weights of Krueger et al.'s zoneout (see
            :mod:`rnnlab.core.zoneout`): ``h`` (T, N, P) and the LSTM's ``c`` (T, N, H), each
            in [0, 1] or None. After the step (and an observer's replacement), before the mask:
            ``s_t = z_t * s_{t-1} + (1 - z_t) * s~_t`` part by part, and the output is the
            zoned ``h_t``. None: no zoneout.

    Returns:
        ``(outputs (T, N, H) (P with projections), final_state, states or None)``.
    """
    outputs = []
    states = [] if keep_states else None
    zoneout = check_zoneout(zoneout, xp, state)
    for t in range(xp.shape[0]):
        if observer is None:
            h, new_state = cell.step(xp[t], state)
        else:
            h, new_state, gates = cell._gates(xp[t], state)
            replaced = observer(t, xp[t], state, h, new_state, gates)
            if replaced is not None:
                h, new_state = replaced
        if zoneout is not None:
            new_state = zone_state(zoneout, t, state, new_state)
            h = hidden_part(new_state)
        if mask is not None:
            new_state = where_state(mask[t], new_state, state)
            h = h * mask[t]
        state = new_state
        outputs.append(h)
        if states is not None:
            states.append(state)
    return torch.stack(outputs), state, states


def _one_cpu_step(x: Tensor) -> bool:
    """Whether time-major ``x`` is a single time step on the CPU."""
    return x.device.type == "cpu" and x.dim() >= 2 and x.shape[0] == 1


class Recurrent(LayerChecks, nn.Module):
    r"""Runs a cell over sequences: ``num_layers`` stacked, optionally bidirectional.

    Layer ``l > 0`` reads the outputs of layer ``l - 1`` (both directions concatenated), through
    dropout in training mode (Zaremba et al., 2014: non-recurrent connections only). With
    ``lengths`` (or a ``PackedSequence``) each sequence is run as if alone: the reverse
    direction reverses only its valid part, outputs past its length are zero, and the final
    state is the state at its own last step.

    Args:
        cell: a cell class or factory ``cell(input_size, hidden_size, device=, dtype=)``, e.g.
            ``LSTMCell`` or ``functools.partial(LSTMCell, peephole=True, layer_norm=True)``.
        input_size: D.
        hidden_size: H.
        num_layers: L.
        bidirectional: run a second stack of cells over the reversed sequences (K = 2).
        dropout: dropout probability on the outputs of every layer but the last.
        batch_first: inputs and outputs are (N, T, ·) if True, else (T, N, ·).
        return_states: ``forward`` also returns the state after every step, of every layer
            and direction: a tensor (L*K, N, T, H) ((L*K, T, H) for unbatched input), or a
            pair of them for the LSTM.
        backend: which implementation runs the layer: ``"auto"`` (the fastest that can),
            ``"torch"`` (torch's fused kernel), ``"fast"`` (rnnlab's C++ loop) or
            ``"reference"`` (the readable Python loop); see :meth:`backend_for` and
            :mod:`rnnlab.core.backend`. An explicit choice that cannot run raises.
        weight_drop: DropConnect on every cell's recurrent matrix ``weight_hh`` (one mask per
            forward call; Merity et al. 2018); cells without one (minGRU, minLSTM) refuse it.
        locked_dropout: every dropout of the layer (``dropout``, ``input_dropout``,
            ``output_dropout``) draws one mask per sequence, the same at every step (Gal &
            Ghahramani 2016), instead of one per step.
        input_dropout: dropout on the layer's input.
        output_dropout: dropout on the layer's output (the top layer's).
        zoneout: each unit of ``h`` keeps its previous value with this probability at every
            step (Krueger et al. 2017); in evaluation the expectation (see
            :mod:`rnnlab.core.dropout`).
        zoneout_cell: the same for the LSTM's cell state ``c``; None: ``zoneout``.

    Shape:
        - input: (N, T, D) (batch_first) or (T, N, D), or (T, D) unbatched, or a PackedSequence.
        - state: (L*K, N, H), or a pair ``(h, c)`` of them for the LSTM; zeros if omitted. With
          projections (``LSTMCell(proj_size=P)``) ``h`` is (L*K, N, P).
        - lengths: (N,) integers in [1, T].
        - output: (N, T, K*H) (K*P with projections; or the input's layout); final state as
          ``state``.

    Example::

        >>> rnn = Recurrent(partial(LSTMCell, peephole=True), 8, 16, num_layers=2,
        ...                 bidirectional=True)
        >>> out, (h, c) = rnn(torch.randn(3, 5, 8), lengths=torch.tensor([5, 2, 4]))
        >>> out.shape, h.shape
        (torch.Size([3, 5, 32]), torch.Size([4, 3, 16]))
    """

    #: Under :func:`torch.autocast` (``--precision bf16``) the layer runs in its weights' dtype
    #: (the input and state cast to it, autocast off inside): a recurrence accumulates rounding
    #: over its time steps, and the C++ kernels compute in float32/float64. The torch.nn
    #: drop-ins set this to False and leave their dtype to autocast, as torch's modules do.
    recur_in_weight_dtype: bool = True

    def __init__(
        self,
        cell: CellFactory,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        batch_first: bool = True,
        return_states: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        weight_drop: float = 0.0,
        locked_dropout: bool = False,
        input_dropout: float = 0.0,
        output_dropout: float = 0.0,
        zoneout: float = 0.0,
        zoneout_cell: float | None = None,
    ) -> None:
        super().__init__()
        self.backend = check_backend(backend)
        zoneout_cell = zoneout if zoneout_cell is None else zoneout_cell
        rates = {
            "dropout": dropout,
            "weight_drop": weight_drop,
            "input_dropout": input_dropout,
            "output_dropout": output_dropout,
            "zoneout": zoneout,
            "zoneout_cell": zoneout_cell,
        }
        for name, rate in rates.items():
            if not isinstance(rate, (int, float)) or isinstance(rate, bool):
                raise WrongTypeError(f"{name} must be a number in [0, 1), got {rate!r}")
            if not 0.0 <= rate < 1.0:
                raise RnnlabError(f"{name} must be a number in [0, 1), got {rate!r}")
        self._step_hooks: OrderedDict[int, StepHook] = OrderedDict()
        sizes = {"input_size": input_size, "hidden_size": hidden_size, "num_layers": num_layers}
        for name, size in sizes.items():
            if not isinstance(size, int) or isinstance(size, bool):
                raise WrongTypeError(f"{name} must be a positive integer, got {size!r}")
            if size < 1:
                raise RnnlabError(f"{name} must be a positive integer, got {size!r}")
        flags = {"bidirectional": bidirectional, "batch_first": batch_first}
        flags.update(return_states=return_states, locked_dropout=locked_dropout)
        for name, flag in flags.items():
            if not isinstance(flag, bool):  # "False" would silently act as True
                raise WrongTypeError(f"{name} must be True or False, got {flag!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = float(dropout)
        self.batch_first = batch_first
        self.return_states = return_states
        self.weight_drop = float(weight_drop)
        self.locked_dropout = locked_dropout
        self.input_dropout = float(input_dropout)
        self.output_dropout = float(output_dropout)
        self.zoneout = float(zoneout)
        self.zoneout_cell = float(zoneout_cell)
        cells: list[RecurrentCell] = []
        for layer in range(num_layers):
            # each layer reads the outputs of the one below: H each, or P with projections
            layer_input = input_size if layer == 0 else cells[0].output_size * self.num_directions
            for _ in range(self.num_directions):
                cells.append(cell(layer_input, hidden_size, device=device, dtype=dtype))
        self.cells = nn.ModuleList(cells)
        self.state_is_tuple = self.cells[0].state_is_tuple
        if weight_drop and self.cells[0].weight_hh is None:
            raise RnnlabError(
                f"weight_drop needs recurrent weights; {type(self.cells[0]).__name__} has none"
            )
        #: the size of each direction's output and of ``h``: H, or P with projections
        self.output_size: int = self.cells[0].output_size

    def cell_at(self, layer: int, direction: int = 0) -> RecurrentCell:
        """The cell of layer ``layer`` and direction ``direction`` (0 forward, 1 reverse)."""
        return self.cells[layer * self.num_directions + direction]

    def reset_parameters(self) -> None:
        for cell in self.cells:
            cell.reset_parameters()

    def extra_repr(self) -> str:
        s = f"num_layers={self.num_layers}, bidirectional={self.bidirectional}"
        s += f", dropout={self.dropout}, batch_first={self.batch_first}"
        s += ", return_states=True" if self.return_states else ""
        for name in ("weight_drop", "input_dropout", "output_dropout", "zoneout"):
            s += f", {name}={getattr(self, name)}" if getattr(self, name) else ""
        if self.zoneout_cell != self.zoneout:
            s += f", zoneout_cell={self.zoneout_cell}"
        s += ", locked_dropout=True" if self.locked_dropout else ""
        return s + (f", backend={self.backend!r}" if self.backend != "auto" else "")

    def register_step_hook(self, hook: StepHook) -> RemovableHandle:
        """Call ``hook(layer, direction, t, xp_t, state_in, h, new_state, gates)`` after every
        step of every cell (see :func:`scan`'s ``observer``; ``t`` counts the cell's own steps,
        from the end of the sequence for the reverse direction).

        While any hook is registered the layer runs the reference loop (``"auto"``); an explicit
        ``"torch"`` or ``"fast"`` backend raises. Returns a handle whose ``remove()`` unhooks.
        """
        handle = RemovableHandle(self._step_hooks)
        self._step_hooks[handle.id] = hook
        return handle

    # -- which implementation runs --------------------------------------------------------
    def backend_for(self, x: Tensor, backend: str | None = None) -> str:
        """The implementation that runs this layer on input ``x``: "torch", "fast" or "reference".

        The one place that decides. The request is the innermost
        :func:`~rnnlab.core.backend.use_backend` block's, else the layer's ``backend``.
        ``"auto"`` takes torch's kernel where every cell is one of torch's (unless rnnlab's loop
        was measured faster for it, :func:`rnnlab.core.fast.prefers_own_kernel`, and can run),
        else rnnlab's C++ loop where it can run, else the reference loop. For cells with a
        parallel scan (:class:`~rnnlab.core.minimal.MinimalRNNCell`: ``cell.parallel``),
        ``"fast"`` is :meth:`~rnnlab.core.minimal.MinimalRNNCell.parallel_scan`, on any device
        and dtype: on CPU float32 and float64 tensors the linear recurrence as a C++ loop over
        time (one multiply-add per element; the recurrence alone ~90x faster there than the
        log-space scan at T = 1,000, the layer 5-11x), elsewhere (GPUs, float16, bfloat16) the
        log-space parallel scan (:mod:`rnnlab.core.minimal` says why); ``"auto"`` takes it for
        sequences and the step (the reference) for a single time step (generation).

        Args:
            x: the input, time-major (T, N, D): its device, dtype and size (T = 1: a single
                step) matter.
            backend: ask about this request instead of the current one.

        Raises:
            RnnlabError: an explicitly requested backend cannot run this layer on ``x``.
        """
        requested = check_backend(backend or forced_backend() or self.backend)
        if requested == "reference":
            return "reference"
        mode, torch_reason = self._torch_kernel()
        if requested == "torch":
            if torch_reason is not None:
                raise RnnlabError(f"backend 'torch' cannot run this layer: {torch_reason}")
            return "torch"
        if requested == "fast":
            fast_reason = self._fast_blocker(x)
            if fast_reason is not None:
                raise RnnlabError(f"backend 'fast' cannot run this layer: {fast_reason}")
            return "fast"
        if self._parallel() and not torch.compiler.is_compiling():
            # one step (generation): the cell's step; a sequence: the parallel scan
            if x.shape[0] == 1 or self._layer_blocker() is not None:
                return "reference"
            return "fast"
        if torch.compiler.is_compiling():
            # compiled: the standard LSTM on oneDNN through rnnlab::onednn_lstm_layer (Inductor
            # would decompose torch.lstm into one block per step: slower than eager, and
            # minutes to compile), every other cell on rnnlab's C++ loop as rnnlab::scan
            proj = self.output_size != self.hidden_size
            if (
                mode == "LSTM"
                and torch_reason is None
                and onednn.usable(x, self.cells[0].bias, proj)
            ):
                return "torch"
            if self._fast_blocker(x) is None:
                return "fast"
            return "torch" if torch_reason is None else "reference"
        if torch_reason is None and (not fast.prefers_own_kernel(mode) or _one_cpu_step(x)):
            # the standard LSTM: torch's (oneDNN) kernel is the faster one; and one time step
            # of any standard cell on the CPU (generation): ATen's kernel, oneDNN off, is the
            # fastest path for a single step (run_torch_kernel; docs/PERFORMANCE.md)
            return "torch"
        fast_reason = self._fast_blocker(x)
        if fast_reason is None:
            return "fast"
        return "torch" if torch_reason is None else "reference"

    def _layer_blocker(self) -> str | None:
        """What keeps every fused implementation from running this layer, whatever the input."""
        if self.return_states:
            return "return_states=True needs the per-step states of the reference loop"
        if self._step_hooks:
            return "step hooks are registered (they need the reference loop)"
        return None

    def _torch_kernel(self) -> tuple[str | None, str | None]:
        """(torch's kernel name for every cell, None) or (None, why torch cannot run them)."""
        reason = self._layer_blocker()
        if reason is not None:
            return None, reason
        if self.zoneout or self.zoneout_cell:
            return None, "zoneout blends each step's state with the previous one"
        # the cells' answer, asked once per set of cells (a single generation step is ~0.3 ms
        # of which this took 5%)
        cells = tuple(map(id, self.cells._modules.values()))
        cached = self.__dict__.get("_kernel_cache")
        if cached is None or cached[0] != cells:
            cached = (cells, self._cells_kernel())
            self.__dict__["_kernel_cache"] = cached
        return cached[1]

    def _run_torch(
        self, x: Tensor, state: State | None, lengths: Tensor | None
    ) -> tuple[Tensor, State]:
        """The whole stack on torch's fused kernel (time-major ``x``); with locked dropout
        between the layers (which torch's kernel does not do), one layer at a time."""
        mode, _ = self._torch_kernel()
        weights, L = self._kernel_weights(), self.num_layers
        by_layer = self.locked_dropout and self.dropout and self.training and L > 1
        if not by_layer:
            args = (self.cells[0].bias, L, self.dropout, self.training, self.bidirectional)
            return run_torch_kernel(
                mode, x, state, lengths, weights, *args, self.hidden_size, self.output_size
            )
        K = self.num_directions
        per = len(weights) // L  # one layer's weights, both directions
        args = (self.cells[0].bias, 1, 0.0, self.training, self.bidirectional)
        finals = []
        for layer in range(L):
            if layer > 0:
                x = locked_dropout(x, self.dropout, True)
            rows = slice(layer * K, (layer + 1) * K)
            s = None if state is None else map_state(lambda t, rows=rows: t[rows], state)
            w = weights[layer * per : (layer + 1) * per]
            x, final = run_torch_kernel(
                mode, x, s, lengths, w, *args, self.hidden_size, self.output_size
            )
            finals.append(final)
        return x, map_state(lambda *parts: torch.cat(parts), *finals)

    def _kernel_weights(self) -> list[Tensor]:
        """torch's flat weight list, per layer and direction ``w_ih, w_hh[, b_ih, b_hh][, w_hr]``
        (read from the cells' parameter dicts: this runs once per generated token)."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        weights = []
        for cell in self.cells._modules.values():
            params = cell._parameters  # type: ignore[union-attr]
            weights += [params[n] for n in (names if cell.bias else names[:2])]  # type: ignore[union-attr]
            if params.get("weight_hr") is not None:  # type: ignore[union-attr]
                weights.append(params["weight_hr"])  # type: ignore[index]
        return weights

    def _cells_kernel(self) -> tuple[str | None, str | None]:
        modes = {cell.torch_kernel() for cell in self.cells}
        if None in modes or len(modes) != 1:
            names = sorted({type(c).__name__ for c in self.cells})
            return None, (
                f"{', '.join(names)} in this configuration is not one of torch's fused cells "
                "(torch.lstm/gru/rnn_tanh/rnn_relu)"
            )
        if len({cell.bias for cell in self.cells}) != 1:
            return None, "its cells differ in bias"
        if len({cell.output_size for cell in self.cells}) != 1:
            return None, "its cells differ in proj_size"
        return modes.pop(), None

    def _parallel(self) -> bool:
        """Whether every cell runs over time as a parallel scan (``cell.parallel_scan``)."""
        return all(getattr(cell, "parallel", False) for cell in self.cells)

    def _fast_blocker(self, x: Tensor) -> str | None:
        reason = self._layer_blocker()
        if reason is not None:
            return reason
        if self._parallel():
            return None  # the parallel scan: torch ops, any device and dtype
        for cell in self.cells:
            reason = fast.why_not(cell, x)
            if reason is not None:
                return reason
        return None

    # -- forward ------------------------------------------------------------------------
    def forward(
        self,
        input: Tensor | PackedSequence,
        state: State | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, State] | tuple[Tensor | PackedSequence, State, State]:
        packed = isinstance(input, PackedSequence)
        data = input.data if packed else input
        if (
            self.recur_in_weight_dtype
            and isinstance(data, Tensor)
            and torch.is_autocast_enabled(data.device.type)
        ):
            return self._forward_without_autocast(input, state, lengths, data.device.type)
        if packed:
            if lengths is not None:
                raise ValueError("give lengths or a PackedSequence, not both")
            x, lengths = pad_packed_sequence(input, batch_first=False)  # (T, N, D)
            self._check_input(x)
            unbatched = False
        else:
            if not isinstance(input, Tensor):
                raise ValueError(f"input must be a Tensor or PackedSequence, got {type(input)}")
            self._check_input(input)
            unbatched = input.dim() == 2
            if unbatched:
                x = input.unsqueeze(1)
            else:
                x = input.transpose(0, 1) if self.batch_first else input
        T, N = x.shape[:2]
        if T == 0:
            raise ShapeError("input has no time steps (T = 0)")
        run_lengths = None
        if lengths is not None:
            lengths = self._check_lengths(lengths, N, T)
            # (compiled or exported: no branch on the lengths' values; the masked path is exact)
            if torch.compiler.is_compiling() or not bool((lengths == T).all()):
                run_lengths = lengths  # when nothing is padded the plain path is exact and faster
                # Padding never reaches a cell, so that even NaN padding changes nothing (as
                # with torch's packed kernels): masked outputs alone would still let it into
                # the gradients.
                steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
                x = x.masked_fill((steps >= lengths.to(x.device)).unsqueeze(-1), 0.0)
        if state is not None:
            self._check_state(state, None if unbatched else N, x)
            if unbatched:
                state = map_state(lambda s: s.unsqueeze(1), state)

        out, final, states = self._forward_time_major(x, state, run_lengths)

        if packed:
            out = _repack(out, lengths, input)
        elif unbatched:
            out = out.squeeze(1)
            final = map_state(lambda s: s.squeeze(1), final)
            if states is not None:  # (L*K, 1, T, H) -> (L*K, T, H)
                states = map_state(lambda s: s.squeeze(1), states)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if self.return_states:
            return out, final, states
        return out, final

    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One time step: ``x`` (N, D) -> (output (N, K*H), new state) (K*P with projections),
        what :meth:`forward` gives for a sequence of length one, without its argument checks
        and layout handling (for decoding loops, which call it once per generated token with
        inputs they made).

        Example::

            >>> rnn = Recurrent(LSTMCell, 8, 16, num_layers=2)
            >>> out, (h, c) = rnn.step(torch.randn(3, 8))
            >>> out.shape, h.shape
            (torch.Size([3, 16]), torch.Size([2, 3, 16]))
        """
        if self.recur_in_weight_dtype and torch.is_autocast_enabled(x.device.type):
            out, state = self._forward_without_autocast(x.unsqueeze(1), state, None, x.device.type)
            return out[:, 0], state
        xt = x.unsqueeze(0)
        # the usual case: straight to the kernel (never under export: rnnlab.core.export; nor
        # with a regulariser active, which _forward_time_major applies)
        if (
            not torch.compiler.is_exporting()
            and not (self.training and self._regularised())
            and self.backend_for(xt) == "torch"
        ):
            out, final = self._run_torch(xt, state, None)
        else:
            out, final, _ = self._forward_time_major(xt, state, None)
        return out[0], final

    def _forward_without_autocast(
        self,
        input: Tensor | PackedSequence,
        state: State | None,
        lengths: Tensor | Sequence[int] | None,
        device_type: str,
    ) -> tuple[Tensor | PackedSequence, State] | tuple[Tensor | PackedSequence, State, State]:
        """Under autocast (``--precision bf16``): the recurrence in the weights' dtype, with
        the input and state cast to it (see :attr:`recur_in_weight_dtype`)."""
        dtype = next(self.parameters()).dtype
        if isinstance(input, Tensor) and input.is_floating_point():
            input = input.to(dtype)
        elif isinstance(input, PackedSequence) and input.data.is_floating_point():
            input = input.to(dtype=dtype)
        if state is not None:
            state = map_state(
                lambda s: s.to(dtype) if isinstance(s, Tensor) and s.is_floating_point() else s,
                state,
            )
        with torch.autocast(device_type, enabled=False):
            return self.forward(input, state, lengths)

    def _forward_time_major(
        self, x: Tensor, state: State | None, lengths: Tensor | None
    ) -> tuple[Tensor, State, State | None]:
        if torch.compiler.is_exporting():  # torch.export / ONNX: a loop over a dynamic T
            from rnnlab.core.export import forward_time_major

            return forward_time_major(self, x, state, lengths)
        train = self.training
        x = self._dropout(x, self.input_dropout)
        with dropped_recurrent_weights(self.cells, self.weight_drop, train):
            out, final, states = self._run_stack(x, state, lengths)
        if self.output_dropout and train:
            self.__dict__["undropped_output"] = out  # for TAR (StatePenalties)
        return self._dropout(out, self.output_dropout), final, states

    def _dropout(self, x: Tensor, p: float) -> Tensor:
        """Dropout on time-major ``x`` in training: one mask per sequence if ``locked_dropout``."""
        if self.locked_dropout:
            return locked_dropout(x, p, self.training)
        return nn.functional.dropout(x, p, self.training) if p else x

    def _zoneout(self, cell: RecurrentCell, T: int, N: int, like: Tensor) -> Zoneout | None:
        """The zoneout blend weights ``(z_h, z_c)`` of one cell's run, or None."""
        if not (self.zoneout or self.zoneout_cell):
            return None
        train = self.training
        zh = zoneout_weights(self.zoneout, T, N, cell.output_size, like, train)
        zc = None
        if self.state_is_tuple:
            zc = zoneout_weights(self.zoneout_cell, T, N, self.hidden_size, like, train)
        return zh, zc

    def _run_stack(
        self, x: Tensor, state: State | None, lengths: Tensor | None
    ) -> tuple[Tensor, State, State | None]:
        backend = self.backend_for(x)
        if backend == "torch" and lengths is not None and torch.compiler.is_compiling():
            # compiled: packing branches on the lengths' values; the masked C++ loop does not
            backend = "fast" if self._fast_blocker(x) is None else "reference"
        if backend == "torch":
            return (*self._run_torch(x, state, lengths), None)
        T, N = x.shape[:2]
        K = self.num_directions
        mask = None
        if lengths is not None:
            steps = torch.arange(T, device=x.device).unsqueeze(1)
            mask = (steps < lengths.to(x.device).unsqueeze(0)).unsqueeze(-1)  # (T, N, 1)
        finals: list[State] = []
        all_states: list[list[State]] = []
        layer_input = x
        for layer in range(self.num_layers):
            if layer > 0:
                layer_input = self._dropout(layer_input, self.dropout)
            outs = []
            for d in range(K):
                cell = self.cell_at(layer, d)
                idx = layer * K + d
                if state is None:
                    s0 = cell.initial_state(N, x.device, x.dtype)
                else:
                    s0 = map_state(lambda s, idx=idx: s[idx], state)
                seq = layer_input if d == 0 else flip_valid(layer_input, lengths)
                xp = cell.input_projection(seq)
                zo = self._zoneout(cell, T, N, x)
                kw = {} if zo is None else {"zoneout": zo}  # (zoneout=None: the plain loops)
                if backend == "fast" and getattr(cell, "parallel", False):
                    (o, fin), sts = cell.parallel_scan(xp, s0, mask, **kw), None
                elif backend == "fast":
                    (o, fin), sts = fast.scan(cell, xp, s0, mask, source=seq, **kw), None
                else:
                    observer = self._observer(layer, d) if self._step_hooks else None
                    o, fin, sts = scan(cell, xp, s0, mask, self.return_states, observer, **kw)
                if d == 1:
                    o = flip_valid(o, lengths)
                    if sts is not None:
                        sts = _flip_state_list(sts, lengths)
                outs.append(o)
                finals.append(fin)
                if sts is not None:
                    all_states.append(sts)
            layer_input = outs[0] if K == 1 else torch.cat(outs, dim=-1)
        final = stack_states(finals)
        states = None
        if self.return_states:
            # each entry: list over T of states (N, H) -> (L*K, N, T, H)
            per_cell = [stack_states(s, dim=1) for s in all_states]
            states = stack_states(per_cell)
        return layer_input, final, states

    def _regularised(self) -> bool:
        """Whether a regulariser other than the between-layer dropout is on."""
        return bool(self.weight_drop or self.input_dropout or self.output_dropout)

    def _observer(self, layer: int, direction: int) -> StepObserver:
        """The step hooks of this cell as one :func:`scan` observer (hooks run in order, each
        seeing the previous one's replacement)."""
        hooks = list(self._step_hooks.values())

        def observer(
            t: int, xp_t: Tensor, state: State, h: Tensor, new_state: State, gates: dict
        ) -> tuple[Tensor, State]:
            for hook in hooks:
                replaced = hook(layer, direction, t, xp_t, state, h, new_state, gates)
                if replaced is not None:
                    h, new_state = replaced
            return h, new_state

        return observer


def _flip_state_list(states: list[State], lengths: Tensor | None) -> list[State]:
    stacked = stack_states(states)  # (T, N, H) or pair
    return unstack_state(map_state(lambda s: flip_valid(s, lengths), stacked))


def _repack(out: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack time-major ``out`` with exactly the batch layout of ``like``."""
    if like.sorted_indices is not None:
        order = like.sorted_indices
        out = out.index_select(1, order.to(out.device))
        lengths = lengths.index_select(0, order.cpu())
    data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


__all__ = ["Recurrent", "StepHook", "StepObserver", "flip_valid", "scan"]
