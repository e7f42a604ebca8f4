"""Recurrent layers under ``torch.export`` and ``torch.onnx.export``: loops kept as loops.

A graph tool tracing :func:`rnnlab.core.layers.scan` would see one Python iteration per time
step and unroll it to the example's length: the exported graph would then be wrong at every
other length. While ``torch.compiler.is_exporting()``,
:meth:`Recurrent._forward_time_major <rnnlab.core.layers.Recurrent._forward_time_major>` calls
:func:`forward_time_major` instead, which keeps batch and time dynamic:

* in ``torch.onnx.export(..., dynamo=True)``, a layer whose cells compute exactly one of ONNX's
  own recurrent operators becomes one such node per layer (both directions in one node):
  ``LSTM`` (with the peephole input ``P``) for the LSTM with a forget gate, ``GRU`` with
  ``linear_before_reset=1`` for ``reset="after"`` (torch's form) and ``0`` for Cho et al.'s
  ``reset="before"``, ``RNN`` for the Elman cells; ``sequence_lens``, ``initial_h`` and
  ``initial_c`` carry ``lengths`` and the initial state (:func:`onnx_operator` decides);
* everything else (layer norm, the LSTM without forget gate, the additive, minimal GRU and MUT
  cells, any other dtype than float32, ``return_states``, and every layer under plain
  ``torch.export``) runs the cell's own :meth:`~rnnlab.core.cells.RecurrentCell.step` inside
  torch's ``scan`` higher-order op, which torch.export keeps as one loop over a dynamic T and
  torch's ONNX exporter writes as an ONNX ``Scan``.

Both compute what the eager layer computes, masks of ``lengths`` included: outputs past a
sequence's length are zero, its final state is the state at its own last step, and the reverse
direction reverses only its valid part.

Shapes: N batch, T time, D input size, H hidden size, K directions, G gates.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch._higher_order_ops.scan import scan as scan_op

from rnnlab.core.cells import GRUCell, LSTMCell, RecurrentCell
from rnnlab.core.kernels import Kernel
from rnnlab.core.layers import Recurrent, flip_valid
from rnnlab.core.state import State, map_state, stack_states, state_parts, where_state
from rnnlab.errors import RnnlabError


@dataclass(frozen=True)
class OnnxOperator:
    """One of ONNX's recurrent operators computing exactly a cell's math.

    Attributes:
        op_type: ``"LSTM"``, ``"GRU"`` or ``"RNN"``.
        order: the cell's gate blocks (of ``weight_ih``, ``weight_hh`` and the biases) in the
            operator's order: ONNX's LSTM takes ``i, o, f, c`` (rnnlab and torch ``i, f, g, o``),
            its GRU ``z, r, h`` (rnnlab ``r, z, n``).
        attributes: the node's attributes other than ``hidden_size`` and ``direction`` (the RNN's
            activation is given once, repeated per direction).
        peephole: the LSTM's input ``P``: ``weight_ci, weight_co, weight_cf`` (ONNX's ``i, o, f``).
    """

    op_type: str
    order: tuple[int, ...]
    attributes: dict[str, int | str] = field(default_factory=dict)
    peephole: bool = False


def onnx_operator(cell: RecurrentCell) -> OnnxOperator | None:
    """The ONNX operator computing exactly ``cell`` on float32, or None (it then runs in a Scan).

    The cell's declared kernel (:meth:`~rnnlab.core.cells.RecurrentCell.kernel`, which a
    subclass changing the math loses) names its math; layer norm has no ONNX counterpart.
    ONNX's LSTM is Gers' peephole LSTM as rnnlab's (``p_i, p_f`` on ``c_{t-1}``, ``p_o`` on the
    new ``c_t``), and its GRU with ``linear_before_reset=0`` applies ``r`` to ``h_{t-1}`` before
    the recurrent matmul with ``R_bh`` outside it, as :class:`~rnnlab.core.cells.GRUCell`'s
    ``reset="before"``. onnxruntime runs these operators in float (not double), hence float32.
    """
    if cell.layer_norm or cell.weight_ih.dtype != torch.float32:
        return None
    kind = cell.kernel()
    if kind in (Kernel.ELMAN_TANH, Kernel.ELMAN_RELU):
        activation = "Tanh" if kind == Kernel.ELMAN_TANH else "Relu"
        return OnnxOperator("RNN", (0,), {"activations": activation})
    if kind in (Kernel.GRU_AFTER, Kernel.GRU_BEFORE) and isinstance(cell, GRUCell):
        after = int(kind == Kernel.GRU_AFTER)
        return OnnxOperator("GRU", (1, 0, 2), {"linear_before_reset": after})
    if kind == Kernel.LSTM and isinstance(cell, LSTMCell):
        return OnnxOperator("LSTM", (0, 3, 1, 2), peephole=cell.peephole)
    return None


def forward_time_major(
    layer: Recurrent, x: Tensor, state: State | None, lengths: Tensor | None
) -> tuple[Tensor, State, State | None]:
    """The whole stack of ``layer`` on time-major ``x``, as graph tools can keep it dynamic.

    What :meth:`Recurrent._forward_time_major` returns (same arguments, same results): ONNX
    recurrent nodes where :func:`onnx_operator` maps every cell of a layer during
    ``torch.onnx.export``, else the cells' steps in a scan loop.

    Args:
        x: (T, N, D), padding already zeroed where ``lengths`` is given.
        state: (L*K, N, H) or a pair of them, or None for zeros.
        lengths: (N,) valid lengths, or None.

    Returns:
        ``(outputs (T, N, K*H), final state, per-step states (L*K, N, T, H) or None)``.

    Raises:
        RnnlabError: step hooks are registered (Python callbacks per step cannot be exported),
            or a layer in training mode has a regulariser that draws random masks (weight drop,
            input/output dropout, zoneout).
    """
    if layer._step_hooks:
        raise RnnlabError(
            "a layer with step hooks cannot be exported: remove them (handle.remove()) first"
        )
    zoneout = (layer.zoneout, layer.zoneout_cell) if layer.zoneout or layer.zoneout_cell else None
    if layer.training and (zoneout or layer._regularised()):
        raise RnnlabError(
            "a layer with weight drop, input/output dropout or zoneout exports in evaluation "
            "mode only: call model.eval() first"
        )
    K = layer.num_directions
    mask = None
    if lengths is not None:
        lengths = lengths.to(x.device)
        steps = torch.arange(x.shape[0], device=x.device).unsqueeze(1)  # (T, 1)
        mask = (steps < lengths).unsqueeze(-1)  # (T, N, 1)
    onnx = torch.onnx.is_in_onnx_export()
    finals: list[State] = []
    all_states: list[State] = []
    layer_input = x
    for index in range(layer.num_layers):
        if index > 0 and layer.dropout > 0 and layer.training:
            layer_input = torch.nn.functional.dropout(layer_input, layer.dropout, True)
        cells = [layer.cell_at(index, d) for d in range(K)]
        s0 = None if state is None else map_state(lambda s, i=index: s[i * K : (i + 1) * K], state)
        ops = [onnx_operator(cell) for cell in cells]
        fused = onnx and not layer.return_states and zoneout is None  # (no blend in ONNX's)
        if fused and ops[0] is not None and ops.count(ops[0]) == K:
            layer_input, final = _onnx_layer(ops[0], cells, layer_input, s0, lengths)
        else:
            keep = layer.return_states
            layer_input, final, states = _scan_layer(
                cells, layer_input, s0, lengths, mask, keep, zoneout
            )
            all_states += states or []
        finals.append(final)
    final_state = map_state(lambda *parts: torch.cat(parts), *finals)
    per_step = stack_states(all_states) if layer.return_states else None
    return layer_input, final_state, per_step


def _scan_layer(
    cells: list[RecurrentCell],
    x: Tensor,
    state: State | None,
    lengths: Tensor | None,
    mask: Tensor | None,
    keep_states: bool,
    zoneout: tuple[float, float] | None = None,
) -> tuple[Tensor, State, list[State] | None]:
    """One layer (both directions) in one scan loop: (T, N, D) -> ((T, N, K*H), final state
    (K, N, H) or pair, and with ``keep_states`` each cell's states (N, T, H) or pair);
    ``zoneout``: the rates of ``h`` and ``c``, blended in at their expectation."""
    K = len(cells)
    if state is None:
        inits = [cell.initial_state(x.shape[1], x.device, x.dtype) for cell in cells]
    else:
        # copies: the scan's inputs may not alias each other (views of one state would)
        inits = [map_state(lambda s, d=d: s[d].clone(), state) for d in range(K)]
    seqs = [x, flip_valid(x, lengths)][:K]
    xps = [cell.input_projection(seq) for cell, seq in zip(cells, seqs)]
    onnx = torch.onnx.is_in_onnx_export()
    if onnx:
        # ONNX graphs carry no gradients. Detached, the loop's backward is not traced by the
        # exporter's decompositions (torch 2.13 saves a SymInt there, and fails, as soon as a
        # cell slices its projected input, as the GRU and MUT2 do); without grad, the capture
        # does not trace it either (half the export time).
        xps = [xp.detach() for xp in xps]
        inits = [map_state(Tensor.detach, s) for s in inits]
    with torch.no_grad() if onnx else contextlib.nullcontext():
        outs, ends, states = scan_cells(cells, xps, inits, mask, keep_states, zoneout)
    if K == 2:  # the reverse direction's outputs (and states) back in time order
        outs[1] = flip_valid(outs[1], lengths)
        if states is not None:
            states[1] = map_state(lambda s: flip_valid(s, lengths), states[1])
    if states is not None:
        states = [map_state(lambda s: s.transpose(0, 1), st) for st in states]  # (N, T, H)
    out = outs[0] if K == 1 else torch.cat(outs, dim=-1)
    return out, stack_states(ends), states


def scan_cells(
    cells: list[RecurrentCell],
    xps: list[Tensor],
    states: list[State],
    mask: Tensor | None = None,
    keep_states: bool = False,
    zoneout: tuple[float, float] | None = None,
) -> tuple[list[Tensor], list[State], list[State] | None]:
    """:func:`rnnlab.core.layers.scan` of each cell as one torch scan higher-order op.

    The cells of one layer (its two directions, the reverse one on inputs reversed by
    :func:`~rnnlab.core.layers.flip_valid`, which keeps the valid steps first, so that one mask
    serves both) step side by side in one loop.

    Args:
        cells: any cells; each one's :meth:`~rnnlab.core.cells.RecurrentCell.step` runs in
            the loop's body.
        xps: each cell's projected inputs (T, N, G*H).
        states: each cell's initial state, (N, H) or (h, c).
        mask: (T, N, 1) bool, True inside a sequence: past its end the state is frozen and
            the output is zero.
        keep_states: also return the state after every step.
        zoneout: ``(p_h, p_c)``: zoneout's rates, blended in at their expectation (evaluation:
            ``s_t = p s_{t-1} + (1 - p) s~_t``, :mod:`rnnlab.core.zoneout`), or None.

    Returns:
        Per cell: ``outputs (T, N, H)``, ``final state``, and with ``keep_states`` the states
        after every step, (T, N, H) or a pair (else None).
    """

    def body(
        carry: tuple[State, ...], inputs: tuple[Tensor, ...]
    ) -> tuple[tuple[State, ...], tuple[Tensor, ...]]:
        new_carry, ys = [], []
        for cell, xp_t, state in zip(cells, inputs, carry):
            h, new = cell.step(xp_t, state)
            if zoneout is not None:
                rates = zoneout if isinstance(new, tuple) else zoneout[:1]
                parts = [
                    p * old + (1 - p) * part
                    for p, old, part in zip(rates, state_parts(state), state_parts(new))
                ]
                new = tuple(parts) if isinstance(new, tuple) else parts[0]
                h = parts[0]
            if mask is not None:
                new = where_state(inputs[-1], new, state)
                h = h * inputs[-1]
            new_carry.append(new)
            # scan's outputs may not alias its carry (a cell's h is often its state)
            ys += [h.clone(), *map(torch.clone, state_parts(new))] if keep_states else [h.clone()]
        return tuple(new_carry), tuple(ys)

    xs = (*xps,) if mask is None else (*xps, mask)
    finals, ys = scan_op(body, tuple(states), xs)
    if not keep_states:
        return list(ys), list(finals), None
    outputs, kept, at = [], [], 0
    for state in states:  # ys: per cell h, then its state's parts
        n = len(state_parts(state))
        outputs.append(ys[at])
        kept.append(tuple(ys[at + 1 : at + 1 + n]) if isinstance(state, tuple) else ys[at + 1])
        at += 1 + n
    return outputs, list(finals), kept


def _onnx_layer(
    op: OnnxOperator,
    cells: list[RecurrentCell],
    x: Tensor,
    state: State | None,
    lengths: Tensor | None,
) -> tuple[Tensor, State]:
    """One layer (both directions) as ONNX node ``op``: (T, N, D) -> ((T, N, K*H), final state
    (K, N, H) or pair)."""
    T, N = x.shape[:2]
    K, H = len(cells), cells[0].hidden_size

    def stacked(*names: str, order: tuple[int, ...] = op.order) -> Tensor:
        """(K, ...): per direction, the named tensors' gate blocks in ``order``, concatenated."""
        parts = [[_blocks(getattr(c, name), order) for name in names] for c in cells]
        return torch.stack([torch.cat(p) for p in parts])

    bias = stacked("bias_ih", "bias_hh") if cells[0].bias_ih is not None else None
    h0 = c0 = None
    if state is not None:
        h0, c0 = state if isinstance(state, tuple) else (state, None)
    seq_lens = None if lengths is None else lengths.to(torch.int32)
    weights = [stacked("weight_ih"), stacked("weight_hh")]
    # X, W, R, B, sequence_lens, initial_h (then the LSTM's initial_c, P)
    inputs: list[Tensor | None] = [x, *weights, bias, seq_lens, h0]
    lstm = op.op_type == "LSTM"
    if lstm:
        inputs.append(c0)
        if op.peephole:
            inputs.append(stacked("weight_ci", "weight_co", "weight_cf", order=(0,)))  # i, o, f
    attributes: dict[str, int | str | list[str]] = {
        "hidden_size": H,
        "direction": "bidirectional" if K == 2 else "forward",
    }
    for name, value in op.attributes.items():
        attributes[name] = [value] * K if name == "activations" else value
    shapes = [(T, K, N, H), (K, N, H)] + ([(K, N, H)] if lstm else [])
    outputs = torch.onnx.ops.symbolic_multi_out(
        op.op_type, inputs, attributes, dtypes=[x.dtype] * len(shapes), shapes=shapes
    )
    y = outputs[0].permute(0, 2, 1, 3).flatten(2)  # (T, K, N, H) -> (T, N, K*H)
    final = (outputs[1], outputs[2]) if lstm else outputs[1]
    return y, final


def _blocks(w: Tensor, order: tuple[int, ...]) -> Tensor:
    """The gate blocks of ``w`` (G*H, ...) in ``order`` (slices and a concatenation: the
    exporter folds them into the weights it stores)."""
    if len(order) == 1:
        return w
    n = w.shape[0] // len(order)
    return torch.cat([w[i * n : (i + 1) * n] for i in order])


__all__ = ["OnnxOperator", "forward_time_major", "onnx_operator", "scan_cells"]
