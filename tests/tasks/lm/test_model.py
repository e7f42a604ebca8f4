"""The language model: chunked == whole, one-hot and tied weights, overfitting, checkpoints,
seeded sampling, exact resume, and where its dropout sits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnnlab.core.registry import RecurrentConfig
from rnnlab.data.vocab import Vocab
from rnnlab.errors import RnnlabError
from rnnlab.tasks.lm.config import LMConfig
from rnnlab.tasks.lm.data import StreamBatches, build_vocab, encode_text, read_corpus, split_ids
from rnnlab.tasks.lm.model import RNNLM, TBPTTLoss, evaluate_lm, make_evaluator
from rnnlab.tasks.runner import load_run
from rnnlab.train.config import TrainConfig
from rnnlab.train.trainer import Trainer


def lm_config(
    vocab_size: int,
    cell: str = "lstm",
    hidden_size: int = 64,
    num_layers: int = 1,
    embedding_size: int = 16,
    dropout: float = 0.0,
    io_dropout: float = 0.0,
    tie_weights: bool = False,
) -> LMConfig:
    rnn = RecurrentConfig(cell, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout)
    return LMConfig(
        vocab_size=vocab_size,
        embedding_size=embedding_size,
        rnn=rnn,
        tie_weights=tie_weights,
        io_dropout=io_dropout,
    )


def test_chunked_forward_equals_whole_sequence() -> None:
    """Carrying the state across windows (TBPTT) computes exactly the whole-sequence logits."""
    for cell in ("lstm", "gru-before", "elman"):
        config = lm_config(11, cell, hidden_size=16, num_layers=2, embedding_size=8)
        model = RNNLM(config).eval()
        idx = torch.randint(11, (3, 12))
        (whole, _), _ = model(idx)
        (a, state), _ = model(idx[:, :5])
        (b, _), _ = model(idx[:, 5:], state=state)
        torch.testing.assert_close(torch.cat([a, b], 1), whole, rtol=1e-5, atol=1e-6)


def test_one_hot_inputs_and_tied_weights() -> None:
    onehot = RNNLM(lm_config(7, hidden_size=8, num_layers=1, embedding_size=0))
    assert onehot.embedding is None and onehot.rnn.input_size == 7
    (logits, _), loss = onehot(torch.randint(7, (2, 5)), torch.randint(7, (2, 5)))
    assert logits.shape == (2, 5, 7) and loss.item() > 0
    tied = RNNLM(lm_config(7, hidden_size=8, num_layers=2, embedding_size=8, tie_weights=True))
    assert tied.decoder.weight is tied.embedding.weight
    with pytest.raises(RnnlabError, match="tied weights need"):
        lm_config(7, hidden_size=8, embedding_size=4, tie_weights=True)


def _tiny_run(tmp_path: Path, text: str, steps: int, **model: object) -> tuple[RNNLM, Vocab]:
    vocab = build_vocab(text)
    ids = encode_text(vocab, text)
    config = lm_config(len(vocab), **model)  # type: ignore[arg-type]
    torch.manual_seed(0)
    lm = RNNLM(config)
    train_config = TrainConfig(lr=1e-2, max_steps=steps, eval_every=steps, progress=False)
    meta = {
        "task": "lm",
        "model_config": lm.config.to_meta(),
        "vocabs": {"tokens": vocab.to_meta()},
        "data": {"source": "test", "tokenizer": "chars"},
        "config": None,
    }
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
    loss = evaluate_lm(lm, encode_text(vocab, text), batch_size=1, seq_len=64)
    assert loss < 0.1
    # greedy generation reproduces the memorised text
    out = vocab.decode(list(lm.generate(encode_text(vocab, "the quick "), 30, temperature=0.0)))
    assert "".join(out) == "brown fox jumps over the lazy "


def test_checkpoint_rebuilds_the_model_and_sampling_is_seeded(tmp_path: Path) -> None:
    text = "abcabcabd " * 40
    lm, vocab = _tiny_run(
        tmp_path, text, steps=10, cell="gru", num_layers=2, dropout=0.1, io_dropout=0.1
    )
    run = load_run(tmp_path)
    model = run.model
    assert isinstance(model, RNNLM) and not model.training
    assert model.config == lm.config
    assert run.vocabs["tokens"].itos == vocab.itos
    for a, b in zip(lm.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    prime = encode_text(vocab, "ab")

    def draw(seed: int) -> list[int]:
        return list(model.generate(prime, 40, 1.0, None, torch.Generator().manual_seed(seed)))

    assert draw(3) == draw(3) and draw(3) != draw(4)


def test_resume_continues_exactly_with_carried_state_and_dropout(tmp_path: Path) -> None:
    """N steps straight == N/2, stop, resume: same weights (dropout RNG, TBPTT state, data
    position mid-epoch and the cosine schedule included)."""
    text = read_corpus()[:6000]
    vocab = build_vocab(text)
    train_ids, val_ids = split_ids(encode_text(vocab, text))
    batches = StreamBatches(train_ids, batch_size=4, seq_len=25)  # 53 batches per epoch
    config = TrainConfig(
        lr=3e-3, max_steps=70, eval_every=35, schedule="cosine", min_lr=1e-4, progress=False
    )
    config_lm = lm_config(
        len(vocab), hidden_size=32, num_layers=2, embedding_size=8, dropout=0.3, io_dropout=0.3
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
        model = RNNLM(config_lm)
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
    one = RNNLM(lm_config(20, hidden_size=16, num_layers=1, embedding_size=8, dropout=0.5))
    one.train()
    (train_logits, _), _ = one(idx)
    one.eval()
    (eval_logits, _), _ = one(idx)
    assert torch.equal(train_logits, eval_logits)  # one layer, no io dropout: nothing dropped
    two = RNNLM(lm_config(20, hidden_size=16, num_layers=2, embedding_size=8, dropout=0.5))
    two.train()
    (a, _), _ = two(idx)
    (b, _), _ = two(idx)
    assert not torch.equal(a, b)  # between the layers it still drops
    # io dropout is its own option now (default 0), no longer following the layers' dropout
    assert LMConfig().io_dropout == 0.0 and one.drop.p == 0.0
    io = RNNLM(lm_config(20, hidden_size=16, num_layers=1, embedding_size=8, io_dropout=0.5))
    assert io.drop.p == 0.5
    io.train()
    (a, _), _ = io(idx)
    (b, _), _ = io(idx)
    assert not torch.equal(a, b)  # on the embedding and before the decoder it drops
