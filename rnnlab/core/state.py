"""Recurrent states as a tiny pytree: a tensor ``(N, H)``, or a tuple of them (the LSTM's
``(h, c)``).

Every function here works on both forms, so that code handling states never asks which one it
has; :func:`map_state` is the one place that does.

Example::

    >>> final = map_state(lambda s: s[-1], stacked)   # the last layer, for any cell
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

State = Tensor | tuple[Tensor, ...]


def state_parts(state: State) -> tuple[Tensor, ...]:
    """The tensors of a state, in order: ``(h, c)`` or ``(h,)``."""
    return state if isinstance(state, tuple) else (state,)


def map_state(fn: Callable[..., Tensor], *states: State) -> State:
    """Apply ``fn`` part by part: ``fn(a_i, b_i, ...)`` for the i-th tensors of each state.

    The result has the structure of ``states[0]`` (a tensor for tensors, a tuple for tuples).
    """
    if isinstance(states[0], tuple):
        return tuple(fn(*parts) for parts in zip(*states, strict=True))
    return fn(*states)


def where_state(mask: Tensor, new: State, old: State) -> State:
    """``new`` where ``mask`` is True, else ``old`` (the mask broadcast against every part)."""
    return map_state(lambda n, o: torch.where(mask, n, o), new, old)


def stack_states(states: Sequence[State], dim: int = 0) -> State:
    """Stack a sequence of states part by part along a new dimension ``dim``."""
    return map_state(lambda *parts: torch.stack(parts, dim=dim), *states)


def unstack_state(state: State, dim: int = 0) -> list[State]:
    """The inverse of :func:`stack_states`: the states along dimension ``dim``."""
    n = state_parts(state)[0].shape[dim]
    return [map_state(lambda s, i=i: s.select(dim, i), state) for i in range(n)]


def detach_state(state: State) -> State:
    """Every part detached from the graph."""
    return map_state(Tensor.detach, state)


def hidden_part(state: State) -> Tensor:
    """The hidden state: ``h`` of ``(h, c)``, or the tensor itself."""
    return state_parts(state)[0]


def flatten_state(state: State) -> Tensor:
    """The parts concatenated along the last dimension: (N, H) or (N, 2H) for ``(h, c)``."""
    return torch.cat(state_parts(state), dim=-1)


def unflatten_state(flat: Tensor, like: State) -> State:
    """The inverse of :func:`flatten_state`: split ``flat`` into parts shaped as ``like``'s."""
    sizes = [p.shape[-1] for p in state_parts(like)]
    parts = iter(flat.split(sizes, dim=-1))
    return map_state(lambda _: next(parts), like)


__all__ = [
    "State",
    "detach_state",
    "flatten_state",
    "hidden_part",
    "map_state",
    "stack_states",
    "state_parts",
    "unflatten_state",
    "unstack_state",
    "where_state",
]
