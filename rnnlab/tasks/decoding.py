"""Decoding: the one loop that generates from any model's ``step``, and beam search.

A model generates through a step function ``step(tokens (N,), state) -> (logits (N, V), state)``
(the next-token scores after feeding ``tokens``). :func:`generate` samples one token per row
from the current scores (temperature and top-k; temperature 0 takes the most likely, greedy
decoding), yields it, and feeds it back, until ``max_len`` tokens or every row has produced
``<eos>``; :func:`collect` turns its output into id lists. :func:`beam_search` keeps the best
prefixes instead (length-normalised), for models that score whole sequences. Every task model
(the language model, the name generator, the captioner, the encoder-decoder) decodes with these.

Shapes: N batch, V vocabulary size, B beams.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn

S = TypeVar("S")


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Draw one token per row from ``softmax(logits / temperature)``, optionally among the top k.

    .. math:: p(v) \propto \exp(z_v / \tau) \quad \text{for } v \text{ among the k largest } z

    Args:
        logits: (N, V) unnormalised scores.
        temperature: :math:`\tau \ge 0`; below 1 sharper, above 1 flatter; 0 takes the argmax
            (greedy decoding).
        top_k: keep only the ``top_k`` most likely tokens (None: all).
        generator: the random generator to draw from (for reproducible samples).

    Returns:
        (N,) LongTensor of token ids.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> sample_next(torch.tensor([[0.0, 5.0, 1.0]]), temperature=0.0)
        tensor([1])
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D (N, V), got shape {tuple(logits.shape)}")
    _check_sampling(temperature, top_k)
    return _draw(logits, temperature, top_k, generator)


def _check_sampling(temperature: float, top_k: int | None) -> None:
    if not temperature >= 0:  # also rejects NaN
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")


def _draw(
    logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> Tensor:
    """:func:`sample_next` without its checks (the generation loop checks once)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def forbid(logits: Tensor, ids: Sequence[int]) -> Tensor:
    """``logits`` with -inf at ``ids``: tokens a decoder must never emit (``<pad>``, ``<sos>``)."""
    out = logits.clone()
    out[..., list(ids)] = float("-inf")
    return out


def generate(
    step: Callable[[Tensor, S], tuple[Tensor, S]],
    logits: Tensor,
    state: S,
    max_len: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    eos: int | None = None,
    never: Sequence[int] = (),
) -> Iterator[Tensor]:
    """Generate up to ``max_len`` tokens per row, yielding each step's tokens (N,) as drawn.

    Args:
        step: the model's step function (see the module docstring).
        logits: (N, V) the scores of the first token (after the prompt).
        state: the state those scores came from, for ``step``.
        max_len: the most tokens generated.
        temperature, top_k, generator: as :func:`sample_next` (temperature 0: greedy).
        eos: the end token: stop once every row has produced it (rows that ended keep being
            sampled, so a seeded generator draws the same numbers whatever ends first).
        never: ids never emitted (their scores set to -inf).

    Example::

        >>> step = lambda tokens, state: (torch.tensor([[0.0, 1.0, 3.0]]), state)
        >>> [int(t) for t in generate(step, torch.tensor([[0.0, 5.0, 1.0]]), None, 3, 0.0)]
        [1, 2, 2]
    """
    done: Tensor | None = None
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D (N, V), got shape {tuple(logits.shape)}")
    _check_sampling(temperature, top_k)
    for i in range(max_len):
        scores = forbid(logits, never) if never else logits
        token = _draw(scores, temperature, top_k, generator)  # (N,)
        yield token
        if eos is not None:
            ended = token == eos
            done = ended if done is None else done | ended
            if bool(done.all()):
                return
        if i + 1 < max_len:
            logits, state = step(token, state)


def collect(tokens: Iterable[Tensor], eos: int | None = None) -> list[list[int]]:
    """The sequences :func:`generate` yields, as id lists per row, each cut before its ``eos``."""
    steps = [t.tolist() for t in tokens]
    if not steps:
        return []
    rows = [list(row) for row in zip(*steps)]
    if eos is None:
        return rows
    return [row[: row.index(eos)] if eos in row else row for row in rows]


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode (no dropout) inside the block, its own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# -- beam search ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hypothesis:
    """One decoded sequence.

    Attributes:
        tokens: the ids generated, without ``<sos>`` and ``<eos>``.
        log_prob: the model's total log-probability of ``tokens`` (and of ``<eos>`` if finished).
        score: ``log_prob`` normalised for length, what the beam ranks by.
        finished: whether the sequence ended with ``<eos>`` (else it reached ``max_len``).
    """

    tokens: list[int]
    log_prob: float
    score: float
    finished: bool


def _reorder_dim0(state: object, index: Tensor) -> object:
    if isinstance(state, Tensor):
        return state.index_select(0, index)
    if isinstance(state, tuple):
        return tuple(_reorder_dim0(s, index) for s in state)
    if state is None:
        return None
    raise TypeError(f"cannot reorder a state of type {type(state).__name__}; pass reorder_state")


def _device_of(state: object) -> torch.device:
    if isinstance(state, Tensor):
        return state.device
    if isinstance(state, (tuple, list)):
        for s in state:
            if isinstance(s, Tensor):
                return s.device
    return torch.device("cpu")


def length_normalized(log_prob: float, length: int, length_penalty: float) -> float:
    """``log_prob / length ** length_penalty`` (0: the raw log-probability; 1: per token)."""
    return log_prob / max(length, 1) ** length_penalty


@torch.no_grad()
def beam_search(
    step_fn: Callable[[Tensor, S], tuple[Tensor, S]],
    init_state: S,
    sos: int,
    eos: int,
    beam_size: int = 5,
    max_len: int = 50,
    length_penalty: float = 1.0,
    reorder_state: Callable[[S, Tensor], S] | None = None,
    device: torch.device | str | None = None,
) -> list[Hypothesis]:
    r"""Beam search for the most likely sequence of one input.

    Keeps the ``beam_size`` best unfinished prefixes; at each step extends each by every token
    and keeps the best ``beam_size`` extensions. An extension by ``<eos>`` ranked among the best
    ``beam_size`` is a finished hypothesis. Finished hypotheses are ranked by

    .. math:: \mathrm{score}(y) = \frac{\log p(y \mid x)}{|y|^{\alpha}}

    with :math:`|y|` counting ``<eos>`` and :math:`\alpha` = ``length_penalty`` (0: raw
    log-probability, which favours short outputs; 1: mean per token). With :math:`\alpha = 0`
    the search stops when no unfinished prefix can beat the best finished one (log-probabilities
    only decrease), otherwise when ``beam_size`` hypotheses have finished; at ``max_len`` the
    unfinished prefixes are returned too. With ``beam_size = 1`` this is greedy decoding.

    Args:
        step_fn: ``step_fn(tokens (B,), state) -> (log_probs (B, V), new_state)``: the model's
            next-token log-probabilities for B prefixes whose last tokens are ``tokens``.
        init_state: the state before ``<sos>`` for a batch of one (B = 1).
        sos, eos: ids of the start and end tokens.
        beam_size: number of prefixes kept.
        max_len: most decoding steps (tokens generated, ``<eos>`` included).
        length_penalty: :math:`\alpha` above.
        reorder_state: ``reorder_state(state, index (B',)) -> state`` selecting the states of the
            kept prefixes; default: ``index_select(0, index)`` on every tensor of the state.
        device: where the model runs (the first token is made there); default: the device of
            the state's first tensor, else the CPU.

    Returns:
        The finished hypotheses (and, if ``max_len`` was reached, the unfinished ones), best
        first.

    Example::

        >>> def step(tokens, state):  # a toy model: always prefers token 3, then <eos> = 2
        ...     logits = torch.tensor([[0.0, 0.0, 1.0, 2.0]]).expand(len(tokens), -1)
        ...     return logits.log_softmax(-1), state
        >>> beam_search(step, None, sos=1, eos=2, beam_size=2, max_len=3)[0].tokens
        [3, 3, 3]
    """
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive integer, got {beam_size!r}")
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive integer, got {max_len!r}")
    if device is None:
        device = _device_of(init_state)
    reorder = reorder_state or _reorder_dim0
    prefixes: list[list[int]] = [[]]
    scores = torch.zeros(1)
    last = torch.tensor([sos], device=device)
    state = init_state
    finished: list[Hypothesis] = []
    for _ in range(max_len):
        log_probs, state = step_fn(last, state)  # (B, V)
        V = log_probs.shape[-1]
        device = log_probs.device
        total = scores.to(device).unsqueeze(1) + log_probs.float()  # (B, V)
        k = min(2 * beam_size, total.numel())
        top, flat = total.view(-1).topk(k)
        keep_prefix, keep_token, keep_score = [], [], []
        for rank, (s, i) in enumerate(zip(top.tolist(), flat.tolist())):
            b, token = divmod(i, V)
            if token == eos:
                if rank < beam_size:  # only an <eos> among the best counts (beam 1 == greedy)
                    n = len(prefixes[b]) + 1
                    finished.append(
                        Hypothesis(prefixes[b], s, length_normalized(s, n, length_penalty), True)
                    )
                continue
            keep_prefix.append(b)
            keep_token.append(token)
            keep_score.append(s)
            if len(keep_prefix) == beam_size:
                break
        if not keep_prefix:
            break
        if finished:
            if length_penalty == 0:
                if max(h.log_prob for h in finished) >= keep_score[0]:
                    break
            elif len(finished) >= beam_size:
                break
        index = torch.tensor(keep_prefix, device=device)
        state = reorder(state, index)
        prefixes = [[*prefixes[b], t] for b, t in zip(keep_prefix, keep_token)]
        scores = torch.tensor(keep_score)
        last = torch.tensor(keep_token, device=device)
    else:
        for p, s in zip(prefixes, scores.tolist()):
            finished.append(Hypothesis(p, s, length_normalized(s, len(p), length_penalty), False))
    return sorted(finished, key=lambda h: h.score, reverse=True)


__all__ = [
    "Hypothesis",
    "beam_search",
    "collect",
    "evaluating",
    "forbid",
    "generate",
    "length_normalized",
    "sample_next",
]
