r"""A recurrent language model (char-RNN): predict the next token from all the previous ones.

.. math::
    x_t = E[w_t] \text{ (or one-hot)}, \quad h_t = \mathrm{RNN}(x_t, h_{t-1}), \quad
    p(w_{t+1} \mid w_{\le t}) = \mathrm{softmax}(W h_t + b)

Embedding -> dropout -> any rnnlab cell, stacked, dropout between layers -> dropout -> linear.
Dropout sits on the non-recurrent connections only (Zaremba et al., 2014). The decoder can share
the embedding's weights (Press & Wolf, 2017; Inan et al., 2017) when their sizes match.

Training is truncated backpropagation through time over B parallel streams
(:class:`~rnnlab.tasks.lm.data.StreamBatches`): :class:`TBPTTLoss` carries the state from one batch
to the next, detached, and resets it at each epoch's start. :func:`make_evaluator` scores a
validation text the same way, in nats per token.

Shapes: N batch, T time, V vocabulary, E embedding size, H hidden size, L layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from rnnlab.core.dropout import embedding_dropout
from rnnlab.core.state import State, detach_state, state_parts
from rnnlab.errors import RnnlabError
from rnnlab.tasks.decoding import evaluating, generate
from rnnlab.tasks.lm.config import LMConfig
from rnnlab.train import distributed


class RNNLM(nn.Module):
    """The recurrent language model described by an :class:`LMConfig`.

    ``forward(idx, targets=None, state=None)`` returns ``((logits, state), loss)``: the scores
    (N, T, V), the state after the last step (to carry into the next window), and the mean
    cross-entropy in nats per token (None without targets).

    Example::

        >>> from rnnlab.core.registry import RecurrentConfig
        >>> rnn = RecurrentConfig(hidden_size=64, num_layers=1)
        >>> model = RNNLM(LMConfig(vocab_size=65, rnn=rnn))
        >>> (logits, state), loss = model(torch.randint(65, (4, 20)), torch.randint(65, (4, 20)))
        >>> logits.shape, float(loss) > 0
        (torch.Size([4, 20, 65]), True)
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        V, E, H = config.vocab_size, config.embedding_size, config.rnn.hidden_size
        self.embedding = nn.Embedding(V, E) if E else None
        self.drop = nn.Dropout(config.io_dropout)
        self.rnn = config.rnn.build(input_size=E or V, batch_first=True)
        self.decoder = nn.Linear(H, V)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(
        self, idx: Tensor, targets: Tensor | None = None, state: State | None = None
    ) -> tuple[tuple[Tensor, State], Tensor | None]:
        if self.embedding is not None:
            x = self._embed(idx)  # (N, T, E)
        else:
            x = nn.functional.one_hot(idx, self.config.vocab_size).to(self.decoder.weight.dtype)
        out, state = self.rnn(self.drop(x), state)  # (N, T, H)
        logits = self.decoder(self.drop(out))  # (N, T, V)
        loss = None
        if targets is not None:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return (logits, state), loss

    def _embed(self, idx: Tensor) -> Tensor:
        """The embeddings of ``idx``, with embedding dropout in training."""
        weight, p = self.embedding.weight, self.config.embedding_dropout  # type: ignore[union-attr]
        return embedding_dropout(weight, idx, p, self.training)

    def step(self, tokens: Tensor, state: State | None) -> tuple[Tensor, State]:
        """One step: tokens (N,) -> next-token logits (N, V) and the new state (what
        :meth:`forward` gives for one token, through the layer's single-step path)."""
        tokens = tokens.view(-1)
        if self.embedding is not None:
            x = self._embed(tokens)  # (N, E)
        else:
            x = nn.functional.one_hot(tokens, self.config.vocab_size).to(self.decoder.weight.dtype)
        if self.training:
            x = self.drop(x)
        out, state = self.rnn.step(x, state)  # (N, H)
        if self.training:
            out = self.drop(out)
        return self.decoder(out), state

    @torch.no_grad()
    def generate(
        self,
        prime: Tensor,
        length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[int]:
        """Yield ``length`` token ids, one at a time, continuing the (P,) ids ``prime``.

        The model runs in eval mode (no dropout) while generating.
        """
        if prime.dim() != 1 or len(prime) < 1:
            raise RnnlabError("the prime must hold at least one token")
        with evaluating(self):
            (logits, state), _ = self(prime.to(self.decoder.weight.device).unsqueeze(0))
            steps = generate(self.step, logits[:, -1], state, length, temperature, top_k, generator)
            for token in steps:
                yield int(token)


class TBPTTLoss:
    """The trainer's ``loss_fn`` for truncated BPTT: carries the state across batches.

    Batches are ``(inputs, targets, first)`` (see :class:`~rnnlab.tasks.lm.data.StreamBatches`); the
    state is reset when ``first`` and detached after every batch, so gradients flow T steps back.
    Its state is saved with checkpoints (``state_dict``), so a resumed run continues exactly.
    """

    def __init__(self) -> None:
        self.state: State | None = None

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor, bool]) -> tuple[Tensor, int]:
        inputs, targets, first = batch
        if first:
            self.state = None
        (_, state), loss = model(inputs, targets, self.state)
        self.state = detach_state(state)
        return loss, inputs.numel()

    def state_dict(self) -> dict:
        if self.state is None:
            return {}
        return {"state": list(state_parts(self.state))}

    def load_state_dict(self, d: dict) -> None:
        parts = d.get("state")
        if not parts:
            self.state = None
        else:
            self.state = tuple(parts) if len(parts) == 2 else parts[0]


def evaluate_lm(model: RNNLM, ids: Tensor, batch_size: int = 32, seq_len: int = 256) -> float:
    """Mean cross-entropy (nats per token) of ``model`` on the token sequence ``ids``.

    The text is read as ``batch_size`` contiguous streams (fewer for a very short text) with the
    state carried across windows, so every token is scored with its full left context within
    its stream.
    """
    from rnnlab.tasks.lm.data import StreamBatches

    if len(ids) < 2:
        raise RnnlabError(f"nothing to evaluate: {len(ids)} tokens (need 2 or more)")
    batch_size = min(batch_size, len(ids) - 1)  # a short text: fewer streams
    device = model.decoder.weight.device
    total, count, state = 0.0, 0, None
    batches = StreamBatches(ids, batch_size, seq_len, keep_last=True)
    rank, world = distributed.sharding()  # in a distributed validation: this rank's streams
    if world > 1:
        batches = batches.shard(rank, world) if batch_size >= world else batches
        skip = batch_size < world and rank > 0  # too few streams to share: rank 0 scores all
    else:
        skip = False
    with evaluating(model), torch.no_grad():
        for x, y, _ in [] if skip else batches:
            (_, state), loss = model(x.to(device), y.to(device), state)
            total += float(loss) * y.numel()
            count += y.numel()
    total, count = distributed.reduce_sums([total, count])
    return total / count


def make_evaluator(
    val_ids: Tensor, batch_size: int = 32, seq_len: int = 256
) -> Callable[[nn.Module], dict[str, float]]:
    """The trainer's ``evaluate``: validation loss (nats/token), bits per token, perplexity."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        loss = evaluate_lm(model, val_ids, batch_size, seq_len)
        return {
            "val_loss": loss,
            "val_bpc": loss / math.log(2),
            "val_ppl": math.exp(min(loss, 50.0)),
        }

    return evaluate


__all__ = ["RNNLM", "LMConfig", "TBPTTLoss", "evaluate_lm", "make_evaluator"]
