"""Pieces the task models share: masks, masked losses, final states, config (de)serialisation.

Shapes: N batch, T time, V vocabulary (or classes), H hidden size, L layers, K directions.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TypeVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnlab.core.cells import State
from rnnlab.core.layers import Recurrent
from rnnlab.core.registry import RecurrentConfig

C = TypeVar("C")


def lengths_or_full(tokens: Tensor, lengths: Tensor | None) -> Tensor:
    """``lengths`` as a (N,) long tensor on ``tokens``' device; every row's full T if None."""
    if lengths is None:
        return torch.full(
            (tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=tokens.device
        )
    return torch.as_tensor(lengths, dtype=torch.long, device=tokens.device)


def sequence_mask(lengths: Tensor, T: int) -> Tensor:
    """(N, T) bool, True at steps inside each sequence."""
    return torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def masked_cross_entropy(
    logits: Tensor, targets: Tensor, lengths: Tensor, weight: Tensor | None = None
) -> Tensor:
    """Mean cross-entropy over the valid steps only: logits (N, T, V), targets (N, T)."""
    mask = sequence_mask(lengths.to(logits.device), logits.shape[1])
    return F.cross_entropy(logits[mask], targets[mask], weight=weight)


def top_hidden(state: State, rnn: Recurrent) -> Tensor:
    """The last layer's final hidden state, directions concatenated: (N, K*H).

    For a bidirectional layer the reverse direction's "final" state is the one after reading the
    whole sequence backwards, so both halves summarise the whole sequence.
    """
    h = state[0] if isinstance(state, tuple) else state  # (L*K, N, H)
    K = rnn.num_directions
    return torch.cat(list(h[-K:]), dim=-1)


def check_rnn_input(config_rnn: RecurrentConfig, input_size: int, owner: str) -> None:
    if config_rnn.input_size != input_size:
        raise ValueError(
            f"{owner}: the recurrent layer's input_size must be {input_size} (what feeds it), "
            f"got {config_rnn.input_size}"
        )


def config_to_dict(config: object) -> dict:
    """A (nested) config dataclass as a JSON-serialisable dict, exactly as a checkpoint's JSON
    reads back (tuples as lists), so that saved and current metas compare equal."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type[C], data: dict) -> C:
    """Rebuild a config dataclass from :func:`config_to_dict`, nested RecurrentConfigs and
    tuples included; unknown or missing keys raise ``TypeError``."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if isinstance(value, dict):
            value = RecurrentConfig(**value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"unknown {cls.__name__} field(s): {sorted(unknown)}")
    return cls(**kwargs)


def forbid(logits: Tensor, ids: list[int]) -> Tensor:
    """``logits`` with -inf at ``ids``: tokens a decoder must never emit (``<pad>``, ``<sos>``)."""
    out = logits.clone()
    out[..., ids] = float("-inf")
    return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "check_rnn_input",
    "config_from_dict",
    "config_to_dict",
    "count_parameters",
    "forbid",
    "lengths_or_full",
    "masked_cross_entropy",
    "sequence_mask",
    "top_hidden",
]
