r"""One-to-many: conditional name generation, one character at a time, given a language.

.. math::

    x_0 = \langle sos \rangle, \quad
    h_t = \mathrm{RNN}([E[x_{t-1}]; G[\ell]], h_{t-1}), \quad
    p(x_t \mid x_{<t}, \ell) = \mathrm{softmax}(W h_t + b)

The language embedding :math:`G[\ell]` is concatenated to every input step (as in the PyTorch
tutorial's conditional generator), so the condition never fades. Generation samples (or, at
temperature 0, takes the most likely) character until ``<eos>``, through the shared decode loop
(:func:`rnnlab.tasks.decoding.generate`) and the model's :meth:`NameGenerator.step`.

Shapes: N batch, T time, V characters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rnnlab.core.state import State
from rnnlab.tasks.common import lengths_or_full, masked_cross_entropy
from rnnlab.tasks.decoding import collect, evaluating, generate
from rnnlab.tasks.names.config import NameGeneratorConfig

#: the generator's decoding state: the languages (N,) and the recurrent state
GenState = tuple[Tensor, State | None]


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
        self.rnn = config.rnn.build(config.embed_dim + config.lang_dim, batch_first=True)
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

    def _advance(
        self, languages: Tensor, tokens: Tensor, state: State | None
    ) -> tuple[Tensor, GenState]:
        """Feed tokens (N, T) from ``state``: the next-character logits (N, V) after the last."""
        out, state = self.rnn(self._inputs(languages, tokens), state)
        return self.head(out[:, -1]), (languages, state)

    def step(self, tokens: Tensor, state: GenState) -> tuple[Tensor, GenState]:
        """One step: characters (N,) -> next-character logits (N, V) and the new state.

        The state is ``(languages (N,), recurrent state)``: the condition travels with it.
        """
        languages, rnn_state = state
        return self._advance(languages, tokens.view(-1, 1), rnn_state)

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

        The model runs in eval mode (no dropout) while generating; ``<pad>`` and ``<sos>`` are
        never generated.

        Args:
            max_len: at most this many characters (the prefix included).
            temperature: sampling temperature; 0 is greedy (the most likely character).
            top_k: sample among the k most likely characters only.
            prefix: character ids every name starts with.
            generator: random generator, for reproducible samples.
        """
        N = languages.shape[0]
        steps = max_len - len(prefix)
        if steps <= 0:
            return [list(prefix) for _ in range(N)]
        device = self.head.weight.device
        languages = languages.to(device)
        start = torch.tensor([self.config.sos_id, *prefix], device=device)
        eos = self.config.eos_id
        with evaluating(self):
            # feed <sos> and the prefix at once
            logits, state = self._advance(languages, start.unsqueeze(0).expand(N, -1), None)
            tokens = generate(
                self.step, logits, state, steps, temperature, top_k, generator,
                eos=eos, never=(0, self.config.sos_id),
            )  # fmt: skip
            names = collect(tokens, eos)
        return [[*prefix, *name] for name in names]


__all__ = ["GenState", "NameGenerator", "NameGeneratorConfig"]
