"""The encoder-decoder: the synthetic task solved, decoders consistent, beam search no worse."""

from __future__ import annotations

import pytest
import torch

from rnnlab.core.registry import RecurrentConfig
from rnnlab.data.vocab import Vocab, pad_batch
from rnnlab.tasks.seq2seq.data import digit_pairs
from rnnlab.tasks.seq2seq.model import Seq2Seq, Seq2SeqConfig


def batches(pairs, vocab: Vocab) -> tuple[torch.Tensor, ...]:
    src = pad_batch([vocab.encode(p.source.split()) for p in pairs])
    tgt = pad_batch([vocab.encode(p.target.split(), sos=True, eos=True) for p in pairs])
    return (*src, *tgt)


def train_reverse(attention: str | None, steps: int, seed: int = 0) -> tuple[Seq2Seq, Vocab]:
    torch.manual_seed(seed)
    train = digit_pairs("reverse", 4000, 5, 5, seed=seed)
    vocab = Vocab.build(p.source.split() for p in train)
    enc = RecurrentConfig("gru", 32, 64)
    model = Seq2Seq(Seq2SeqConfig(len(vocab), len(vocab), 32, enc, attention=attention))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        chunk = [train[(step * 64 + i) % len(train)] for i in range(64)]
        _, loss = model(*batches(chunk, vocab))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), vocab


@pytest.fixture(scope="module")
def half_trained() -> tuple[Seq2Seq, Vocab]:
    """A fixed model that has learned something but not everything: decoders differ on it."""
    return train_reverse(None, 40)


def test_synthetic_reverse_is_solved() -> None:
    model, vocab = train_reverse("luong", 250)
    test = digit_pairs("reverse", 500, 5, 5, seed=123)
    src, src_len, *_ = batches(test, vocab)
    hyps = model.greedy(src, src_len, max_len=8)
    exact = sum(vocab.decode(h) == p.target.split() for h, p in zip(hyps, test)) / len(test)
    assert exact > 0.99


def test_teacher_forced_fast_path_equals_steps() -> None:
    for attention in (None, "luong"):
        model = Seq2Seq(Seq2SeqConfig(12, 12, 8, RecurrentConfig("lstm", 8, 16, 2), attention))
        src, src_len = pad_batch([[4, 5, 6], [7, 8]])
        tgt, tgt_len = pad_batch([[1, 4, 5, 2], [1, 9, 10, 11, 2]])
        fast, _ = model(src, src_len, tgt, tgt_len)  # the whole target in one decoder call
        memory, state = model.encode(src, src_len)
        steps = []
        for t in range(tgt.shape[1] - 1):
            logits, state = model.step(tgt[:, t], state, memory)
            steps.append(logits)
        mask = torch.arange(tgt.shape[1] - 1) < (tgt_len - 1)[:, None]
        torch.testing.assert_close(fast[mask], torch.stack(steps, 1)[mask], atol=1e-5, rtol=1e-5)


def test_teacher_forcing_ratio_zero_feeds_own_predictions() -> None:
    config = Seq2SeqConfig(12, 12, 8, RecurrentConfig("gru", 8, 16), teacher_forcing=0.0)
    model = Seq2Seq(config).train()
    src, src_len = pad_batch([[4, 5, 6]])
    tgt, tgt_len = pad_batch([[1, 4, 5, 6, 2]])
    logits, _ = model(src, src_len, tgt, tgt_len)
    # with ratio 0 the logits are those of greedy decoding, whatever the gold tokens are
    _, greedy_logits = model._greedy(*model.encode(src, src_len), max_len=4)
    torch.testing.assert_close(logits, greedy_logits[:, :4])
    model.eval()  # evaluation always teacher-forces
    eval_logits, _ = model(src, src_len, tgt, tgt_len)
    assert not torch.allclose(eval_logits, logits)


def test_beam_size_one_equals_greedy(half_trained: tuple[Seq2Seq, Vocab]) -> None:
    model, vocab = half_trained
    test = digit_pairs("reverse", 40, 5, 5, seed=7)
    src, src_len, *_ = batches(test, vocab)
    greedy = model.greedy(src, src_len, max_len=8)
    beam = [model.beam_search(src[i], beam_size=1, max_len=8)[0].tokens for i in range(len(test))]
    assert beam == greedy


def test_beam_five_is_at_least_as_likely_as_greedy(half_trained: tuple[Seq2Seq, Vocab]) -> None:
    model, vocab = half_trained
    test = digit_pairs("reverse", 60, 5, 5, seed=11)
    src, src_len, *_ = batches(test, vocab)
    greedy, beam = [], []
    for i in range(len(test)):
        g = model.beam_search(src[i], beam_size=1, max_len=8, length_penalty=0)[0]
        b = model.beam_search(src[i], beam_size=5, max_len=8, length_penalty=0)[0]
        greedy.append(g.log_prob)
        beam.append(b.log_prob)
        if b.finished:  # the beam's score is the model's own log-likelihood of its output
            tgt = torch.tensor([[1, *b.tokens, 2]])
            scored = model.sequence_log_prob(src[i : i + 1], src_len[i : i + 1], tgt, None)
            assert float(scored) == pytest.approx(b.log_prob, abs=1e-4)
    mean_greedy, mean_beam = sum(greedy) / len(greedy), sum(beam) / len(beam)
    assert mean_beam >= mean_greedy
    assert mean_beam > mean_greedy + 1e-3  # and it finds better outputs on this model
