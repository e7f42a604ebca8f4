"""The character language model: data, model, sampling, training end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.tasks.decoding import sample_next
from rnnlab.tasks.lm.data import (
    UNK,
    CharVocab,
    StreamBatches,
    WordVocab,
    read_corpus,
    split_ids,
    vocab_from_meta,
)
from rnnlab.tasks.lm.model import RNNLM, LMConfig, TBPTTLoss, evaluate_lm, make_evaluator
from rnnlab.train.checkpoint import load_model
from rnnlab.train.trainer import TrainConfig, Trainer


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


# -- data ----------------------------------------------------------------------------------
def test_char_vocab_round_trip_and_unknown_characters() -> None:
    text = "To be, or not to be: that is the question.\n"
    v = CharVocab.from_text(text)
    assert v.decode(v.encode(text)) == text
    assert vocab_from_meta(v.to_meta()).tokens == v.tokens
    with pytest.raises(RnnlabError, match=r"'Z', 'q'|'Z'"):
        CharVocab.from_text("abc").encode("aZq")


def test_word_vocab_caps_and_unk() -> None:
    text = "the cat sat.\nthe cat ran, the dog sat!\n"
    v = WordVocab.from_text(text, max_size=4)
    assert v.tokens[0] == UNK and len(v) == 4 and v.tokens[1] == "the"
    ids = v.encode("the zebra sat")
    assert ids[1] == 0  # <unk>
    full = WordVocab.from_text(text, max_size=100)
    assert full.decode(full.encode(text)) == "the cat sat.\nthe cat ran, the dog sat!\n"


def test_split_is_contiguous() -> None:
    ids = torch.arange(100)
    train, val = split_ids(ids, 0.1)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))


def test_stream_batches_are_contiguous_per_stream() -> None:
    ids = torch.arange(1000)
    batches = StreamBatches(ids, batch_size=4, seq_len=10)
    assert len(batches) == 24  # 999 // 4 = 249 per stream -> 24 full windows
    seen = list(batches(0))
    assert [first for _, _, first in seen] == [True] + [False] * 23
    x = torch.cat([b[0] for b in seen], dim=1)
    y = torch.cat([b[1] for b in seen], dim=1)
    for s in range(4):  # each stream is one contiguous piece, targets one ahead
        assert torch.equal(x[s], torch.arange(s * 249, s * 249 + 240))
        assert torch.equal(y[s], x[s] + 1)
    last = list(StreamBatches(ids, 4, 10, keep_last=True))
    assert len(last) == 25 and last[-1][0].shape == (4, 9)


def test_shifted_epochs_move_the_windows_deterministically() -> None:
    ids = torch.arange(1000)
    plain = StreamBatches(ids, batch_size=4, seq_len=10)
    shifted = StreamBatches(ids, batch_size=4, seq_len=10, shift=True)
    first = [b[0] for b in shifted(0)]
    assert all(torch.equal(a, b[0]) for a, b in zip(first, plain(0)))  # epoch 0 is unshifted
    offsets = [shifted.offset_of(e) for e in range(1, 30)]
    assert all(0 <= o < 10 for o in offsets) and len(set(offsets)) > 3
    assert offsets == [StreamBatches(ids, 4, 10, shift=True).offset_of(e) for e in range(1, 30)]
    for epoch in range(1, 6):
        o = shifted.offset_of(epoch)
        seen = list(shifted(epoch))
        assert [first for _, _, first in seen] == [True] + [False] * (len(seen) - 1)
        assert len(seen) == (249 - o) // 10
        x = torch.cat([b[0] for b in seen], dim=1)
        y = torch.cat([b[1] for b in seen], dim=1)
        for s in range(4):  # still contiguous per stream, starting o tokens in
            start = s * 249 + o
            assert torch.equal(x[s], torch.arange(start, start + x.shape[1]))
            assert torch.equal(y[s], x[s] + 1)
    assert next(iter(plain(3)))[0][0, 0] == 0  # without shift every epoch is the same


def test_corpus_shorter_than_one_batch_is_a_clear_error() -> None:
    with pytest.raises(RnnlabError, match=r"corpus too short.*needs at least 41 tokens"):
        StreamBatches(torch.arange(40), batch_size=4, seq_len=10)


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such file"), (b"", "is empty"), (b"  \n", "is empty"), (b"caf\xe9", "not UTF-8")],
)
def test_read_corpus_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RnnlabError, match=message):
        read_corpus(path)


def test_bundled_corpus_is_tiny_shakespeare() -> None:
    text = read_corpus()
    assert len(text) == 1_115_394 and len(set(text)) == 65
    assert text.startswith("First Citizen:")


# -- model ---------------------------------------------------------------------------------
def test_chunked_forward_equals_whole_sequence() -> None:
    """Carrying the state across windows (TBPTT) computes exactly the whole-sequence logits."""
    for cell in ("lstm", "gru-before", "elman"):
        model = RNNLM(
            LMConfig(
                vocab_size=11,
                cell=cell,
                hidden_size=16,
                num_layers=2,
                embedding_size=8,
                dropout=0.0,
            )
        ).eval()
        idx = torch.randint(11, (3, 12))
        (whole, _), _ = model(idx)
        (a, state), _ = model(idx[:, :5])
        (b, _), _ = model(idx[:, 5:], state=state)
        torch.testing.assert_close(torch.cat([a, b], 1), whole, rtol=1e-5, atol=1e-6)


def test_one_hot_inputs_and_tied_weights() -> None:
    onehot = RNNLM(LMConfig(vocab_size=7, hidden_size=8, num_layers=1, embedding_size=0))
    assert onehot.embedding is None and onehot.rnn.input_size == 7
    (logits, _), loss = onehot(torch.randint(7, (2, 5)), torch.randint(7, (2, 5)))
    assert logits.shape == (2, 5, 7) and loss.item() > 0
    tied = RNNLM(LMConfig(vocab_size=7, hidden_size=8, embedding_size=8, tie_weights=True))
    assert tied.decoder.weight is tied.embedding.weight
    with pytest.raises(RnnlabError, match="tied weights need"):
        LMConfig(vocab_size=7, hidden_size=8, embedding_size=4, tie_weights=True)


def _tiny_run(tmp_path: Path, text: str, steps: int, **model: object) -> tuple[RNNLM, CharVocab]:
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    config = LMConfig(
        vocab_size=len(vocab),
        **{"hidden_size": 64, "num_layers": 1, "embedding_size": 16, "dropout": 0.0, **model},
    )
    torch.manual_seed(0)
    lm = RNNLM(config)
    train_config = TrainConfig(lr=1e-2, max_steps=steps, eval_every=steps, progress=False)
    meta = {**lm.to_meta(), "vocab": vocab.to_meta()}
    Trainer(
        lm,
        train_config,
        tmp_path,
        loss_fn=TBPTTLoss(),
        evaluate=make_evaluator(ids, batch_size=2, seq_len=32),
        meta=meta,
    ).fit(StreamBatches(ids, batch_size=2, seq_len=32))
    return lm, vocab


def test_overfits_a_tiny_corpus_to_near_zero_loss(tmp_path: Path) -> None:
    text = "the quick brown fox jumps over the lazy dog. " * 6
    lm, vocab = _tiny_run(tmp_path, text, steps=150)
    loss = evaluate_lm(lm, vocab.encode(text), batch_size=1, seq_len=64)
    assert loss < 0.1
    # greedy generation reproduces the memorised text
    out = vocab.decode(list(lm.generate(vocab.encode("the quick "), 30, temperature=0.0)))
    assert out == "brown fox jumps over the lazy "


def test_checkpoint_rebuilds_the_model_and_sampling_is_seeded(tmp_path: Path) -> None:
    text = "abcabcabd " * 40
    lm, vocab = _tiny_run(tmp_path, text, steps=10, cell="gru", num_layers=2, dropout=0.1)
    model, ckpt = load_model(tmp_path)
    assert isinstance(model, RNNLM) and not model.training
    assert vocab_from_meta(ckpt.meta["vocab"]).tokens == vocab.tokens
    for a, b in zip(lm.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    prime = vocab.encode("ab")

    def draw(seed: int) -> list[int]:
        return list(model.generate(prime, 40, 1.0, None, torch.Generator().manual_seed(seed)))

    assert draw(3) == draw(3) and draw(3) != draw(4)


def test_resume_continues_exactly_with_carried_state_and_dropout(tmp_path: Path) -> None:
    """N steps straight == N/2, stop, resume: same weights (dropout RNG, TBPTT state, data
    position mid-epoch and the cosine schedule included)."""
    text = read_corpus()[:6000]
    vocab = CharVocab.from_text(text)
    train_ids, val_ids = split_ids(vocab.encode(text))
    batches = StreamBatches(train_ids, batch_size=4, seq_len=25)  # 53 batches per epoch
    config = TrainConfig(
        lr=3e-3, max_steps=70, eval_every=35, schedule="cosine", min_lr=1e-4, progress=False
    )
    lm_config = LMConfig(
        vocab_size=len(vocab), hidden_size=32, num_layers=2, embedding_size=8, dropout=0.3
    )

    class Stop(Exception):
        pass

    def stopping(epoch: int):
        for i, b in enumerate(batches(epoch)):
            if epoch == 0 and i == 40:  # killed after the step-35 checkpoint
                raise Stop
            yield b

    def run(out: Path, source, resume: bool = False) -> RNNLM:
        torch.manual_seed(0)
        model = RNNLM(lm_config)
        Trainer(
            model,
            config,
            out,
            loss_fn=TBPTTLoss(),
            evaluate=make_evaluator(val_ids, 4, 50),
            resume=resume,
        ).fit(source)
        return model

    straight = run(tmp_path / "a", batches)
    with pytest.raises(Stop):
        run(tmp_path / "b", stopping)
    resumed = run(tmp_path / "b", batches, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_io_dropout_separates_the_embedding_and_decoder_dropout_from_between_layers() -> None:
    torch.manual_seed(0)
    idx = torch.randint(0, 20, (3, 12))
    one = RNNLM(LMConfig(20, hidden_size=16, num_layers=1, embedding_size=8, dropout=0.5,
                         io_dropout=0.0))  # fmt: skip
    one.train()
    (train_logits, _), _ = one(idx)
    one.eval()
    (eval_logits, _), _ = one(idx)
    assert torch.equal(train_logits, eval_logits)  # one layer, no io dropout: nothing dropped
    two = RNNLM(LMConfig(20, hidden_size=16, num_layers=2, embedding_size=8, dropout=0.5,
                         io_dropout=0.0))  # fmt: skip
    two.train()
    (a, _), _ = two(idx)
    (b, _), _ = two(idx)
    assert not torch.equal(a, b)  # between the layers it still drops
    default = RNNLM(LMConfig(20, hidden_size=16, num_layers=1, embedding_size=8, dropout=0.5))
    assert default.drop.p == 0.5 and one.drop.p == 0.0
