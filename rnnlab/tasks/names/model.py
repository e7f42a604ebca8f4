r"""One-to-many: conditional name generation, one character at a time, given a language.

.. math::

    x_0 = \langle sos \rangle, \quad
    h_t = \mathrm{RNN}([E[x_{t-1}]; G[\ell]], h_{t-1}), \quad
    p(x_t \mid x_{<t}, \ell) = \mathrm{softmax}(W h_t + b)

The language embedding :math:`G[\ell]` is concatenated to every input step (as in the PyTorch
tutorial's conditional generator), so the condition never fades. Generation samples (or, at
temperature 0, takes the most likely) character until ``<eos>``.

Shapes: N batch, T time, V characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rnnlab.core.registry import RecurrentConfig
from rnnlab.tasks.common import (
    check_rnn_input,
    config_from_dict,
    config_to_dict,
    forbid,
    lengths_or_full,
    masked_cross_entropy,
)
from rnnlab.tasks.decoding import sample_next

TASK = "names"


@dataclass(frozen=True)
class NameGeneratorConfig:
    """Args:
    vocab_size: characters plus the specials (``<pad>`` = 0, ``sos_id``, ``eos_id``).
    num_languages: number of conditions.
    embed_dim: character embedding size.
    lang_dim: language embedding size (``rnn.input_size = embed_dim + lang_dim``).
    rnn: the recurrent layer (unidirectional: it generates left to right).
    dropout: on the inputs and on the recurrent outputs.
    """

    vocab_size: int
    num_languages: int
    embed_dim: int = 32
    lang_dim: int = 16
    rnn: RecurrentConfig = field(default_factory=lambda: RecurrentConfig(input_size=48))
    dropout: float = 0.0
    sos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        check_rnn_input(self.rnn, self.embed_dim + self.lang_dim, "NameGeneratorConfig")
        if self.rnn.bidirectional:
            raise ValueError("a generator reads left to right: rnn.bidirectional must be False")


class NameGenerator(nn.Module):
    """A character-level language model conditioned on a language.

    Example::

        >>> model = NameGenerator(NameGeneratorConfig(vocab_size=40, num_languages=3))
        >>> names = model.generate(torch.tensor([0, 2]), max_len=8)
        >>> len(names)
        2
    """

    def __init__(self, config: NameGeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0)
        self.language = nn.Embedding(config.num_languages, config.lang_dim)
        self.rnn = config.rnn.build(batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.rnn.hidden_size, config.vocab_size)

    def _inputs(self, languages: Tensor, tokens: Tensor) -> Tensor:
        lang = self.language(languages).unsqueeze(1).expand(-1, tokens.shape[1], -1)
        return self.dropout(torch.cat([self.embedding(tokens), lang], dim=-1))

    def forward(
        self,
        languages: Tensor,
        tokens: Tensor,
        lengths: Tensor | None = None,
        targets: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Args: languages (N,); tokens (N, T) = ``<sos>`` + characters, right-padded;
        lengths (N,); targets (N, T) = characters + ``<eos>`` (the inputs shifted by one).

        Returns: ``(logits (N, T, V), loss or None)``, the mean over valid steps.
        """
        lengths = lengths_or_full(tokens, lengths)
        out, _ = self.rnn(self._inputs(languages, tokens), lengths=lengths)
        logits = self.head(self.dropout(out))
        loss = None if targets is None else masked_cross_entropy(logits, targets, lengths)
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        languages: Tensor,
        max_len: int = 20,
        temperature: float = 1.0,
        top_k: int | None = None,
        prefix: Sequence[int] = (),
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """One name per language in ``languages`` (N,): character ids without ``<eos>``.

        Args:
            max_len: at most this many characters (the prefix included).
            temperature: sampling temperature; 0 is greedy (the most likely character).
            top_k: sample among the k most likely characters only.
            prefix: character ids every name starts with.
            generator: random generator, for reproducible samples.
        """
        N = languages.shape[0]
        device = self.head.weight.device
        languages = languages.to(device)
        start = torch.tensor([self.config.sos_id, *prefix], device=device)
        names = [list(prefix) for _ in range(N)]
        done = torch.zeros(N, dtype=torch.bool, device=device)
        x = start.unsqueeze(0).expand(N, -1)  # feed <sos> and the prefix at once
        state = None
        for _ in range(max_len - len(prefix)):
            out, state = self.rnn(self._inputs(languages, x), state)
            nxt = sample_next(
                forbid(self.head(out[:, -1]), [0, self.config.sos_id]),
                temperature,
                top_k,
                generator,
            )  # (N,)
            for i in range(N):
                if not done[i] and int(nxt[i]) != self.config.eos_id:
                    names[i].append(int(nxt[i]))
            done |= nxt == self.config.eos_id
            if bool(done.all()):
                break
            x = nxt.unsqueeze(1)
        return names

    def to_meta(self) -> dict:
        return {"task": TASK, "model_config": config_to_dict(self.config)}


def from_meta(meta: dict) -> NameGenerator:
    return NameGenerator(config_from_dict(NameGeneratorConfig, meta["model_config"]))


__all__ = ["NameGenerator", "NameGeneratorConfig", "from_meta"]
