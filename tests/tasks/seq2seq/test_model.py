"""The encoder-decoder: the synthetic task solved, padded batches equal each pair alone,
decoders consistent, beam search no worse and on the model's device, rebuilt from its config."""

from __future__ import annotations

import json

import pytest
import torch

from rnnlab.core.registry import RecurrentConfig
from rnnlab.data.batching import pad_batch
from rnnlab.data.vocab import Vocab
from rnnlab.errors import RnnlabError
from rnnlab.tasks import get_task
from rnnlab.tasks.decoding import beam_search
from rnnlab.tasks.seq2seq.data import digit_pairs
from rnnlab.tasks.seq2seq.model import Seq2Seq, Seq2SeqConfig
from tests.tasks.helpers import pad, ragged


def batches(pairs, vocab: Vocab) -> tuple[torch.Tensor, ...]:
    src = pad_batch([vocab.encode(p.source.split()) for p in pairs])
    tgt = pad_batch([vocab.encode(p.target.split(), sos=True, eos=True) for p in pairs])
    return (*src, *tgt)


def train_reverse(attention: str | None, steps: int, seed: int = 0) -> tuple[Seq2Seq, Vocab]:
    torch.manual_seed(seed)
    train = digit_pairs("reverse", 4000, 5, 5, seed=seed)
    vocab = Vocab.build(p.source.split() for p in train)
    enc = RecurrentConfig("gru", 64)
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
        model = Seq2Seq(Seq2SeqConfig(12, 12, 8, RecurrentConfig("lstm", 16, 2), attention))
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
    config = Seq2SeqConfig(12, 12, 8, RecurrentConfig("gru", 16), teacher_forcing=0.0)
    model = Seq2Seq(config).train()
    src, src_len = pad_batch([[4, 5, 6]])
    tgt, tgt_len = pad_batch([[1, 4, 5, 6, 2]])
    logits, _ = model(src, src_len, tgt, tgt_len)
    # with ratio 0 the logits are those of greedy decoding, whatever the gold tokens are
    _, greedy_logits = model._greedy(*model.encode(src, src_len), max_len=4)
    torch.testing.assert_close(logits, greedy_logits[:, :4])
    # forward without a target returns the same greedy logits (up to 50 steps)
    torch.testing.assert_close(model(src, src_len)[0][:, :4], greedy_logits[:, :4])
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


# -- decoding: eval mode, devices ---------------------------------------------------------------
def test_decoders_run_in_eval_mode_and_restore_the_mode() -> None:
    config = Seq2SeqConfig(12, 12, 8, RecurrentConfig("gru", 16), dropout=0.9)
    model = Seq2Seq(config)
    src, src_len = pad_batch([[4, 5, 6], [7, 8]])
    eval_greedy = model.eval().greedy(src, src_len, max_len=6)
    eval_beam = model.beam_search(src[0], beam_size=3, max_len=6)
    model.train()
    for _ in range(3):  # dropout 0.9 in training mode would change the outputs
        assert model.greedy(src, src_len, max_len=6) == eval_greedy
        assert model.beam_search(src[0], beam_size=3, max_len=6) == eval_beam
    assert model.training


def test_beam_search_starts_on_the_state_device() -> None:
    """Without ``device``, the first tokens are made where the state lives; with it, there."""
    seen: list[torch.device] = []

    def step(tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(tokens.device)
        assert tokens.device == state.device
        return torch.tensor([[0.0, -1.0, -2.0, -0.5]]).log_softmax(-1), state

    beam_search(step, torch.zeros(1, 1, 4, device="meta"), sos=1, eos=2, max_len=1)
    assert seen == [torch.device("meta")]

    def explicit(tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(tokens.device)
        return torch.tensor([[0.0, -1.0, -2.0, -0.5]]).log_softmax(-1), state

    beam_search(explicit, torch.zeros(1, 1, 4), sos=1, eos=2, max_len=1, device="meta")
    assert seen[-1] == torch.device("meta")


def test_model_beam_search_passes_its_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import rnnlab.tasks.seq2seq.model as module

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("device"))
        return beam_search(*args, **kwargs)

    monkeypatch.setattr(module, "beam_search", spy)
    model = Seq2Seq(Seq2SeqConfig(12, 12, 8, RecurrentConfig("gru", 16)))
    model.beam_search(torch.tensor([4, 5]), beam_size=2, max_len=3)
    assert calls == [model.head.weight.device]


# -- padded batch == each pair alone --------------------------------------------------------------
@pytest.mark.parametrize("attention", [None, "luong", "bahdanau"])
@pytest.mark.parametrize(("cell", "layers", "bi"), [("lstm", 2, True), ("gru", 1, False)])
@torch.no_grad()
def test_seq2seq_padding(attention: str | None, cell: str, layers: int, bi: bool) -> None:
    rnn = RecurrentConfig(cell, 12, num_layers=layers, bidirectional=bi)
    model = Seq2Seq(Seq2SeqConfig(20, 15, 8, rnn, attention=attention))
    src = ragged([5, 2, 7], 20)
    tgt = [torch.cat([torch.tensor([1]), t, torch.tensor([2])]) for t in ragged([3, 6, 1], 15, 1)]
    logits, loss = model(*pad(src), *pad(tgt))
    total = 0.0
    for i, (s, t) in enumerate(zip(src, tgt)):
        lg, loss_i = model(s[None], None, t[None], None)
        torch.testing.assert_close(logits[i, : len(t) - 1], lg[0], atol=1e-5, rtol=1e-5)
        total += float(loss_i) * (len(t) - 1)
    assert float(loss) == pytest.approx(total / sum(len(t) - 1 for t in tgt), abs=1e-5)
    # batched greedy decoding == each alone
    batched = model.greedy(*pad(src), max_len=6)
    assert batched == [model.greedy(s[None], max_len=6)[0] for s in src]


# -- configs and rebuilding -----------------------------------------------------------------------
def test_rebuild_from_meta() -> None:
    rnn = RecurrentConfig("lstm", 12, num_layers=2, bidirectional=True)
    model = Seq2Seq(Seq2SeqConfig(10, 11, 8, rnn, attention="bahdanau"))
    meta = json.loads(json.dumps(model.config.to_meta()))  # what a checkpoint stores
    rebuilt = get_task("seq2seq").model_from_meta(meta)
    assert type(rebuilt) is Seq2Seq and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())


def test_config_errors() -> None:
    with pytest.raises(RnnlabError, match="attention must be None or one of"):
        Seq2SeqConfig(10, 10, 64, attention="dot")
    with pytest.raises(RnnlabError, match=r"teacher_forcing must be in \[0, 1\]"):
        Seq2SeqConfig(10, 10, 64, teacher_forcing=1.5)
