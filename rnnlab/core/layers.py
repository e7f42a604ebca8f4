"""Layers: run any cell over a sequence, stacked and/or bidirectional, with variable lengths.

Three independent pieces: :func:`scan` (the loop over time, one direction), :func:`flip_valid`
(reverse the valid part of each padded sequence) and :class:`Recurrent` (stacking, directions,
dropout between layers, lengths, ``PackedSequence``). Where every cell is exactly one of torch's
fused cells, :class:`Recurrent` calls torch's kernel; otherwise it runs rnnlab's own loop.

Shapes: N batch, T time, D input size, H hidden size, L layers, K directions (1 or 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnlab.core import fast
from rnnlab.core.cells import CellFactory, RecurrentCell, State

_KERNELS = {
    "LSTM": torch.lstm,
    "GRU": torch.gru,
    "RNN_TANH": torch.rnn_tanh,
    "RNN_RELU": torch.rnn_relu,
}


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


def _where_state(mask: Tensor, new: State, old: State) -> State:
    if isinstance(new, tuple):
        return tuple(torch.where(mask, n, o) for n, o in zip(new, old))
    return torch.where(mask, new, old)


def scan(
    cell: RecurrentCell,
    xp: Tensor,
    state: State,
    mask: Tensor | None = None,
    keep_states: bool = False,
) -> tuple[Tensor, State, list[State] | None]:
    """The reference loop over time for one direction: the cells' readable per-step math.

    Args:
        cell: any :class:`~rnnlab.core.cells.RecurrentCell`.
        xp: the projected inputs ``cell.input_projection(x)``, time-major (T, N, G*H).
        state: the initial state, (N, H) or (h, c).
        mask: (T, N, 1) bool, True where a step is inside its sequence; past the end the state
            is frozen and the output is zero.
        keep_states: also return the state after every step.

    Returns:
        ``(outputs (T, N, H), final_state, states or None)``.
    """
    outputs = []
    states = [] if keep_states else None
    for t in range(xp.shape[0]):
        h, new_state = cell.step(xp[t], state)
        if mask is not None:
            new_state = _where_state(mask[t], new_state, state)
            h = h * mask[t]
        state = new_state
        outputs.append(h)
        if states is not None:
            states.append(state)
    return torch.stack(outputs), state, states


class Recurrent(nn.Module):
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

    Shape:
        - input: (N, T, D) (batch_first) or (T, N, D), or (T, D) unbatched, or a PackedSequence.
        - state: (L*K, N, H), or a pair ``(h, c)`` of them for the LSTM; zeros if omitted.
        - lengths: (N,) integers in [1, T].
        - output: (N, T, K*H) (or the input's layout); final state as ``state``.

    Example::

        >>> rnn = Recurrent(partial(LSTMCell, peephole=True), 8, 16, num_layers=2,
        ...                 bidirectional=True)
        >>> out, (h, c) = rnn(torch.randn(3, 5, 8), lengths=torch.tensor([5, 2, 4]))
        >>> out.shape, h.shape
        (torch.Size([3, 5, 32]), torch.Size([4, 3, 16]))
    """

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
    ) -> None:
        super().__init__()
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = float(dropout)
        self.batch_first = batch_first
        self.return_states = return_states
        cells = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for _ in range(self.num_directions):
                cells.append(cell(layer_input, hidden_size, device=device, dtype=dtype))
        self.cells = nn.ModuleList(cells)
        self.state_is_tuple = self.cells[0].state_is_tuple

    def cell_at(self, layer: int, direction: int = 0) -> RecurrentCell:
        """The cell of layer ``layer`` and direction ``direction`` (0 forward, 1 reverse)."""
        return self.cells[layer * self.num_directions + direction]

    def reset_parameters(self) -> None:
        for cell in self.cells:
            cell.reset_parameters()

    def extra_repr(self) -> str:
        s = f"num_layers={self.num_layers}, bidirectional={self.bidirectional}"
        s += f", dropout={self.dropout}, batch_first={self.batch_first}"
        return s + (", return_states=True" if self.return_states else "")

    # -- validation ---------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if not torch.is_floating_point(x):
            raise ValueError(f"input must be a floating-point tensor, got dtype {x.dtype}")
        weight_dtype = self.cells[0].weight_ih.dtype
        if x.dtype != weight_dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(
                f"input dtype {x.dtype} does not match weight dtype {weight_dtype}: convert "
                f"the input with input.to({weight_dtype}) or the model with model.to({x.dtype})"
            )
        if x.dim() not in (2, 3):
            raise ValueError(
                f"input must be 3-D ({'N, T, D' if self.batch_first else 'T, N, D'}) or 2-D "
                f"(T, D), got {x.dim()}-D with shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"input size mismatch: expected last dimension {self.input_size}, "
                f"got {x.shape[-1]} (input shape {tuple(x.shape)})"
            )

    def _check_lengths(self, lengths: Tensor | Sequence[int], N: int, T: int) -> Tensor:
        lengths = torch.as_tensor(lengths).cpu()
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
        if lengths.shape != (N,):
            raise ValueError(
                f"lengths must have shape ({N},) (one per sequence), got {tuple(lengths.shape)}"
            )
        if N and (lengths.min() < 1 or lengths.max() > T):
            raise ValueError(
                f"lengths must be in [1, {T}] (the time dimension), got min "
                f"{int(lengths.min())} and max {int(lengths.max())}"
            )
        return lengths.long()

    def _check_state(self, state: State, N: int | None, x: Tensor) -> None:
        """``N`` None: unbatched input, whose state is (L*K, H)."""
        LK = self.num_layers * self.num_directions
        expected = (LK, self.hidden_size) if N is None else (LK, N, self.hidden_size)
        dims = "layers*directions, hidden" if N is None else "layers*directions, batch, hidden"
        parts = state if isinstance(state, tuple) else (state,)
        if self.state_is_tuple != isinstance(state, tuple) or (
            self.state_is_tuple and len(state) != 2
        ):
            kind = "a pair (h, c)" if self.state_is_tuple else "a single tensor"
            raise ValueError(f"state must be {kind} for this cell, got {type(state).__name__}")
        for p in parts:
            if not isinstance(p, Tensor):
                raise ValueError(f"state must hold tensors, got {type(p).__name__}")
            if tuple(p.shape) != expected:
                raise ValueError(
                    f"state shape mismatch: expected {expected} ({dims}), got {tuple(p.shape)}"
                )
            if p.dtype != x.dtype:
                raise ValueError(f"state dtype {p.dtype} does not match input dtype {x.dtype}")

    # -- forward ------------------------------------------------------------------------
    def forward(
        self,
        input: Tensor | PackedSequence,
        state: State | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, State] | tuple[Tensor | PackedSequence, State, State]:
        packed = isinstance(input, PackedSequence)
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
            raise ValueError("input has no time steps (T = 0)")
        run_lengths = None
        if lengths is not None:
            lengths = self._check_lengths(lengths, N, T)
            if not bool((lengths == T).all()):
                run_lengths = lengths  # when nothing is padded the plain path is exact and faster
                # Padding never reaches a cell, so that even NaN padding changes nothing (as
                # with torch's packed kernels): masked outputs alone would still let it into
                # the gradients.
                steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
                x = x.masked_fill((steps >= lengths.to(x.device)).unsqueeze(-1), 0.0)
        if state is not None:
            self._check_state(state, None if unbatched else N, x)
            if unbatched:
                state = (
                    tuple(s.unsqueeze(1) for s in state)
                    if isinstance(state, tuple)
                    else (state.unsqueeze(1))
                )

        out, final, states = self._forward_time_major(x, state, run_lengths)

        if packed:
            out = _repack(out, lengths, input)
        elif unbatched:
            out = out.squeeze(1)
            final = (
                tuple(s.squeeze(1) for s in final)
                if isinstance(final, tuple)
                else (final.squeeze(1))
            )
            if states is not None:  # (L*K, 1, T, H) -> (L*K, T, H)
                states = (
                    tuple(s.squeeze(1) for s in states)
                    if isinstance(states, tuple)
                    else states.squeeze(1)
                )
        elif self.batch_first:
            out = out.transpose(0, 1)
        if self.return_states:
            return out, final, states
        return out, final

    def _forward_time_major(
        self, x: Tensor, state: State | None, lengths: Tensor | None
    ) -> tuple[Tensor, State, State | None]:
        mode = self._kernel_mode(x)
        if mode is not None:
            out, final = self._run_kernel(mode, x, state, lengths)
            return out, final, None
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
            if layer > 0 and self.dropout > 0 and self.training:
                layer_input = nn.functional.dropout(layer_input, self.dropout, True)
            outs = []
            for d in range(K):
                cell = self.cell_at(layer, d)
                idx = layer * K + d
                if state is None:
                    s0 = cell.initial_state(N, x.device, x.dtype)
                elif isinstance(state, tuple):
                    s0 = tuple(s[idx] for s in state)
                else:
                    s0 = state[idx]
                seq = layer_input if d == 0 else flip_valid(layer_input, lengths)
                xp = cell.input_projection(seq)
                if not self.return_states and fast.supports(cell, xp):
                    (o, fin), sts = fast.scan(cell, xp, s0, mask), None
                else:
                    o, fin, sts = scan(cell, xp, s0, mask, self.return_states)
                if d == 1:
                    o = flip_valid(o, lengths)
                    if sts is not None:
                        sts = _flip_state_list(sts, lengths)
                outs.append(o)
                finals.append(fin)
                if sts is not None:
                    all_states.append(sts)
            layer_input = outs[0] if K == 1 else torch.cat(outs, dim=-1)
        final = _stack_states(finals)
        states = None
        if self.return_states:
            # each entry: list over T of states (N, H) -> (L*K, N, T, H)
            per_cell = [_stack_states(s, dim=1) for s in all_states]
            states = _stack_states(per_cell)
        return layer_input, final, states

    # -- torch's fused kernels ----------------------------------------------------------
    def _kernel_mode(self, x: Tensor) -> str | None:
        """torch's kernel name if every cell is exactly a torch.nn cell and torch's kernel is the
        faster one here (see :func:`rnnlab.core.fast.prefers_own_kernel`), else None."""
        if self.return_states:
            return None
        modes = {cell.torch_kernel_mode() for cell in self.cells}
        if len(modes) != 1:
            return None
        mode = modes.pop()
        if mode is None or any(cell.bias != self.cells[0].bias for cell in self.cells):
            return None
        return None if fast.prefers_own_kernel(mode, x) else mode

    def _flat_weights(self) -> list[Tensor]:
        weights = []
        for cell in self.cells:
            weights += [cell.weight_ih, cell.weight_hh]
            if cell.bias:
                weights += [cell.bias_ih, cell.bias_hh]
        return weights

    def _run_kernel(
        self, mode: str, x: Tensor, state: State | None, lengths: Tensor | None
    ) -> tuple[Tensor, State]:
        T, N = x.shape[:2]
        shape = (self.num_layers * self.num_directions, N, self.hidden_size)
        if state is None:
            zeros = x.new_zeros(shape)
            state = (zeros, zeros.clone()) if mode == "LSTM" else zeros
        hx = list(state) if mode == "LSTM" else state
        args = (
            self._flat_weights(),
            self.cells[0].bias,
            self.num_layers,
            self.dropout,
            self.training,
            self.bidirectional,
        )
        kernel = _KERNELS[mode]
        if lengths is None:
            result = kernel(x, hx, *args, False)
            out = result[0]
        else:
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            order = packed.sorted_indices.to(x.device)
            hx = (
                [h.index_select(1, order) for h in hx]
                if mode == "LSTM"
                else (hx.index_select(1, order))
            )
            result = kernel(packed.data, packed.batch_sizes, hx, *args)
            out, _ = pad_packed_sequence(
                PackedSequence(
                    result[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
                ),
                total_length=T,
            )
            unsort = packed.unsorted_indices.to(x.device)
            result = (result[0], *[h.index_select(1, unsort) for h in result[1:]])
        final = (result[1], result[2]) if mode == "LSTM" else result[1]
        return out, final


def _stack_states(states: Sequence[State], dim: int = 0) -> State:
    if isinstance(states[0], tuple):
        return tuple(torch.stack(parts, dim=dim) for parts in zip(*states))
    return torch.stack(list(states), dim=dim)


def _flip_state_list(states: list[State], lengths: Tensor | None) -> list[State]:
    stacked = _stack_states(states)  # (T, N, H) or pair
    if isinstance(stacked, tuple):
        flipped = tuple(flip_valid(s, lengths) for s in stacked)
        return list(zip(*(f.unbind(0) for f in flipped)))
    return list(flip_valid(stacked, lengths).unbind(0))


def _repack(out: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack time-major ``out`` with exactly the batch layout of ``like``."""
    if like.sorted_indices is not None:
        order = like.sorted_indices
        out = out.index_select(1, order.to(out.device))
        lengths = lengths.index_select(0, order.cpu())
    data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


__all__ = ["Recurrent", "flip_valid", "scan"]
