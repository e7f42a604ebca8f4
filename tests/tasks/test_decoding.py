"""Decoding: sampling the next token, and beam search on toy models whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from rnnlab.tasks.decoding import beam_search, sample_next

SOS, EOS = 1, 2


def test_sample_next_greedy_top_k_and_seeded() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9], [5.0, 0.0, 0.0, 0.0]])
    assert sample_next(logits, temperature=0.0).tolist() == [1, 0]
    draws = [
        sample_next(logits, 1.0, top_k=2, generator=torch.Generator().manual_seed(s))
        for s in range(50)
    ]
    assert {int(d[0]) for d in draws} == {1, 3}  # only the two most likely
    a = [sample_next(logits, 0.8, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(a[0], a[1])
    # a very low temperature is almost greedy
    assert sample_next(logits, 1e-3, generator=torch.Generator().manual_seed(0)).tolist() == [1, 0]
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, -1.0)
    with pytest.raises(ValueError, match="top_k"):
        sample_next(logits, 1.0, top_k=0)


class ToyRNN:
    """A random recurrent scorer: h' = tanh(E[token] + h R), log p = log_softmax(h' O)."""

    def __init__(self, seed: int, vocab: int = 7, hidden: int = 5) -> None:
        g = torch.Generator().manual_seed(seed)
        self.E = torch.randn(vocab, hidden, generator=g)
        self.R = torch.randn(hidden, hidden, generator=g)
        self.O = torch.randn(hidden, vocab, generator=g) * 2
        self.b = torch.zeros(vocab)
        self.b[0] = self.b[SOS] = -1e9  # never <pad> or <sos>

    def step(self, tokens: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.tanh(self.E[tokens] + h @ self.R)
        return (h @ self.O + self.b).log_softmax(-1), h

    def init(self) -> Tensor:
        return torch.zeros(1, self.E.shape[1])

    def greedy(self, max_len: int) -> tuple[list[int], float]:
        h, token, out, total = self.init(), torch.tensor([SOS]), [], 0.0
        for _ in range(max_len):
            logp, h = self.step(token, h)
            token = logp.argmax(-1)
            total += float(logp[0, token])
            if int(token) == EOS:
                break
            out.append(int(token))
        return out, total

    def log_prob(self, tokens: list[int], finished: bool) -> float:
        h, prev, total = self.init(), torch.tensor([SOS]), 0.0
        for t in [*tokens, EOS] if finished else tokens:
            logp, h = self.step(prev, h)
            total += float(logp[0, t])
            prev = torch.tensor([t])
        return total


@pytest.mark.parametrize("seed", range(12))
def test_beam_size_one_is_greedy(seed: int) -> None:
    model = ToyRNN(seed)
    hyps = beam_search(model.step, model.init(), SOS, EOS, beam_size=1, max_len=8)
    tokens, log_prob = model.greedy(8)
    assert hyps[0].tokens == tokens
    assert hyps[0].log_prob == pytest.approx(log_prob, abs=1e-5)


@pytest.mark.parametrize("seed", range(12))
def test_beam_scores_are_the_models_log_probabilities(seed: int) -> None:
    """The state is reordered with the beams: every score recomputes from scratch."""
    model = ToyRNN(seed)
    hyps = beam_search(model.step, model.init(), SOS, EOS, beam_size=4, max_len=6, length_penalty=0)
    for h in hyps:
        assert h.log_prob == pytest.approx(model.log_prob(h.tokens, h.finished), abs=1e-4)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    # with alpha = 0 the search is exact once it stops: no better finished sequence is missed
    assert hyps[0].log_prob >= model.greedy(6)[1] - 1e-6


def test_beam_finds_what_greedy_misses() -> None:
    # after <sos>: A 0.6, B 0.4; after A: A 0.36, B 0.34, <eos> 0.3; after B: <eos> 0.9
    A, B = 3, 4
    table = torch.full((5, 5), 1e-12)
    table[SOS, A], table[SOS, B] = 0.6, 0.4
    table[A, A], table[A, B], table[A, EOS] = 0.36, 0.34, 0.3
    table[B, EOS], table[B, A], table[B, B] = 0.9, 0.05, 0.05
    logp = (table / table.sum(-1, keepdim=True)).log()

    def step(tokens: Tensor, state: None) -> tuple[Tensor, None]:
        return logp[tokens], None

    greedy = beam_search(step, None, SOS, EOS, beam_size=1, max_len=5, length_penalty=0)[0]
    assert greedy.tokens == [A] * 5 and not greedy.finished
    best = beam_search(step, None, SOS, EOS, beam_size=2, max_len=5, length_penalty=0)[0]
    assert best.tokens == [B] and best.finished
    assert best.log_prob == pytest.approx(math.log(0.4 * 0.9), rel=1e-5)


def test_length_normalisation() -> None:
    # "<eos>" at once: p = 0.52; "3 <eos>": p = 0.48 * 0.95, less in total, more per token
    def step(tokens: Tensor, state: None) -> tuple[Tensor, None]:
        p = torch.full((len(tokens), 4), 1e-9)
        first = tokens == SOS
        p[first, EOS], p[first, 3] = 0.52, 0.48
        p[~first, 3], p[~first, EOS] = 0.05, 0.95
        return (p / p.sum(-1, keepdim=True)).log(), None

    raw = beam_search(step, None, SOS, EOS, beam_size=3, max_len=6, length_penalty=0)[0]
    assert raw.tokens == [] and raw.log_prob == pytest.approx(math.log(0.52), rel=1e-5)
    mean = beam_search(step, None, SOS, EOS, beam_size=3, max_len=6, length_penalty=1)[0]
    assert mean.tokens == [3]
    assert mean.score == pytest.approx(math.log(0.48 * 0.95) / 2, rel=1e-5)


def test_beam_search_rejects_bad_arguments() -> None:
    model = ToyRNN(0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model.step, model.init(), SOS, EOS, beam_size=0)
    with pytest.raises(ValueError, match="max_len"):
        beam_search(model.step, model.init(), SOS, EOS, max_len=0)
