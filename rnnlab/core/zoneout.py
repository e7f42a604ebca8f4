"""Zoneout (Krueger et al., 2017) inside the loops over time: the blend and its weights.

At every step each unit of the state keeps its previous value instead of updating, with
probability p::

    s_t = z_t * s_{t-1} + (1 - z_t) * s~_t          (elementwise)

where ``s~_t`` is the cell's ordinary step from ``(x_t, s_{t-1})`` and ``z_t`` a Bernoulli(p)
mask in training, its expectation p in evaluation. The LSTM zones both parts of its state with
their own weights, ``h`` with ``zh`` and ``c`` with ``zc`` (``h~_t`` is computed from the
un-zoned ``c~_t``, as in the paper). The layer's output at step t is the zoned ``h_t``; past a
sequence's end the length mask wins (the state stays frozen, the output is zero).

The layer samples the weights; the three loops take them as one argument ``zoneout = (zh, zc)``
(:func:`rnnlab.core.layers.scan`, the reference; :func:`rnnlab.core.fast.scan`, the C++ loop;
:meth:`rnnlab.core.minimal.MinimalRNNCell.parallel_scan`). The weights are constants: no
gradient flows to them.

Shapes: T time, N batch, H hidden size, P the size of ``h`` (H, or the LSTM's projection).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.core.state import State, map_state, state_parts
from rnnlab.errors import RnnlabError

#: ``(zh, zc)``: the blend weights of ``h`` (T, N, P) and of the LSTM's ``c`` (T, N, H), each
#: in [0, 1], or None for no zoneout on that part.
Zoneout = tuple[Tensor | None, Tensor | None]


def check_zoneout(zoneout: Zoneout | None, xp: Tensor, state: State) -> Zoneout | None:
    """``zoneout`` checked against a loop's inputs (detached), or None where it zones nothing.

    Args:
        zoneout: ``(zh, zc)`` or None.
        xp: the projected inputs (T, N, G*H): T, N, dtype and device to match.
        state: the initial state, (N, P) or ``(h, c)``: the parts' sizes to match.

    Raises:
        RnnlabError: not a pair, a weight of the wrong shape, dtype or device, or ``zc`` for a
            cell without a cell state.

    The values (in [0, 1]) are not checked: that would read every weight at every call.
    """
    if zoneout is None:
        return None
    if not isinstance(zoneout, tuple) or len(zoneout) != 2:
        raise RnnlabError(f"zoneout must be a pair (zh, zc) of tensors or None, got {zoneout!r}")
    parts = state_parts(state)
    if zoneout[1] is not None and len(parts) < 2:
        raise RnnlabError("zoneout's zc applies to a cell state (the LSTM's c); this cell has none")
    checked: list[Tensor | None] = []
    for name, z, part in zip(("zh", "zc"), zoneout, parts):
        if z is not None:
            if not isinstance(z, Tensor):
                raise RnnlabError(f"zoneout's {name} must be a tensor or None, got {z!r}")
            want = (xp.shape[0], xp.shape[1], part.shape[-1])
            if tuple(z.shape) != tuple(want):
                raise RnnlabError(
                    f"zoneout's {name} must be (T, N, size) = {tuple(want)}, got {tuple(z.shape)}"
                )
            if z.dtype != xp.dtype or z.device != xp.device:
                raise RnnlabError(
                    f"zoneout's {name} must be {xp.dtype} on {xp.device} like the input, "
                    f"got {z.dtype} on {z.device}"
                )
            z = z.detach()
        checked.append(z)
    checked += [None] * (2 - len(checked))
    if checked[0] is None and checked[1] is None:
        return None
    return checked[0], checked[1]


def blend(z: Tensor | None, prev: Tensor, new: Tensor) -> Tensor:
    """``z * prev + (1 - z) * new`` (``new`` itself where ``z`` is None): in this form a
    weight of exactly 0 gives ``new`` and exactly 1 gives ``prev``, bit for bit."""
    return new if z is None else z * prev + (1 - z) * new


def zone_state(zoneout: Zoneout, t: int, prev: State, new: State) -> State:
    """The zoned state of step ``t``: each part of ``new`` blended with ``prev``'s by its
    weights at ``t`` (``zh`` for ``h``, ``zc`` for ``c``)."""
    weights = iter(zoneout)
    return map_state(lambda p, n: blend(_at(next(weights), t), p, n), prev, new)


def _at(z: Tensor | None, t: int) -> Tensor | None:
    return None if z is None else z[t]


def zoneout_weights(
    p: float, T: int, N: int, size: int, like: Tensor, training: bool
) -> Tensor | None:
    """The blend weights :math:`z_t` (T, N, size) of zoneout with rate ``p``: 0/1 draws with
    mean ``p`` in training, ``p`` itself in evaluation; None when ``p == 0``."""
    if p == 0.0:
        return None
    if training:
        return torch.empty(T, N, size, dtype=like.dtype, device=like.device).bernoulli_(p)
    return torch.full((T, N, size), p, dtype=like.dtype, device=like.device)


__all__ = ["Zoneout", "blend", "check_zoneout", "zone_state", "zoneout_weights"]
