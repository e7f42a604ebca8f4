"""The language model's data: vocabularies, contiguous splits, stream batches, corpus reading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnnlab.data.tokenize import TOKENIZERS
from rnnlab.data.vocab import UNK, Vocab
from rnnlab.errors import RnnlabError
from rnnlab.tasks.lm.data import (
    StreamBatches,
    build_vocab,
    encode_text,
    read_corpus,
    split_ids,
)


def test_char_vocab_round_trip_and_unknown_characters() -> None:
    text = "To be, or not to be: that is the question.\n"
    v = build_vocab(text, "chars")
    assert "".join(v.decode(encode_text(v, text).tolist())) == text
    assert Vocab.from_meta(v.to_meta()).itos == v.itos
    with pytest.raises(RnnlabError, match=r"'Z', 'q'|'Z'"):
        encode_text(build_vocab("abc", "chars"), "aZq")


def test_word_vocab_caps_and_unk() -> None:
    text = "the cat sat.\nthe cat ran, the dog sat!\n"
    v = build_vocab(text, "words", max_size=4)
    assert v.itos[0] == UNK and len(v) == 4 and v.itos[1] == "the"
    ids = encode_text(v, "the zebra sat", "words")
    assert ids[1] == 0  # <unk>
    full = build_vocab(text, "words", max_size=100)
    words = full.decode(encode_text(full, text, "words").tolist())
    assert TOKENIZERS["words"].join(words) == "the cat sat.\nthe cat ran, the dog sat!\n"


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
