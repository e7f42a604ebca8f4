"""The one vocabulary type, the one batcher, padding and the tokenizers (rnnlab.data)."""

from __future__ import annotations

import pytest
import torch

from rnnlab.data.batching import Batches, chunks, pad_batch
from rnnlab.data.tokenize import TOKENIZERS, tokenizer
from rnnlab.data.vocab import UNK, Vocab
from rnnlab.errors import RnnlabError


def test_vocab_roundtrip_and_specials() -> None:
    v = Vocab.build([list("abca"), list("bd")])
    assert v.itos[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"]
    assert (v.pad_id, v.sos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    ids = v.encode("abz", sos=True, eos=True)
    assert ids[0] == v.sos_id and ids[-1] == v.eos_id and ids[3] == v.unk_id
    assert v.decode(ids) == ["a", "b", "<unk>"]
    assert v.decode([v.index("a"), v.eos_id, v.index("b")]) == ["a"]  # stops at <eos>
    assert Vocab.from_meta(v.to_meta()) == v


def test_vocab_without_unk_rejects_unknown_tokens_naming_them_all() -> None:
    tags = Vocab.build([["X", "Y"]], pad=None, sos=None, eos=None, unk=None)
    assert tags.itos == ["X", "Y"]
    # (0.1.0 named only the first unknown token; every one is named now)
    with pytest.raises(RnnlabError, match="not in the model's vocabulary: 'Z', 'W'"):
        tags.encode(["Z", "X", "W", "Z"])
    assert tags.unknown(["Z", "X", "W", "Z"]) == ["Z", "W"]
    with pytest.raises(RnnlabError, match="no sos token"):
        tags.encode(["X"], sos=True)


def test_vocab_min_freq_and_renamed_specials() -> None:
    v = Vocab.build([["a", "a", "b"]], min_freq=2, sos="<start>", eos="<end>")
    assert v.itos == ["<pad>", "<start>", "<end>", "<unk>", "a"]
    assert v.encode(["b"]) == [v.unk_id]


def test_labels_are_a_vocab_and_old_lm_vocabularies_load() -> None:
    labels = Vocab.of_labels(["Dutch", "Arabic"])
    assert labels.itos == ["Dutch", "Arabic"] and labels.index("Arabic") == 1
    assert Vocab.from_meta(labels.to_meta()) == labels
    # rnnlab 0.1.0 stored its language models' vocabularies as {"kind", "tokens"}
    chars = Vocab.from_meta({"kind": "char", "tokens": ["a", "b"]})
    assert chars.unk_id is None and chars.encode(["b", "a"]) == [1, 0]
    words = Vocab.from_meta({"kind": "word", "tokens": [UNK, "the"]})
    assert words.encode(["the", "zebra"]) == [1, 0]
    for bad in (None, [], {"tokens": "abc"}, {"tokens": [1, 2]}, {"tokens": ["a"], "pad": 3}):
        with pytest.raises(RnnlabError):
            Vocab.from_meta(bad)


def test_pad_batch() -> None:
    ids, lengths = pad_batch([[5, 6, 7], [8]])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]
    with pytest.raises(RnnlabError):
        pad_batch([[1], []])
    with pytest.raises(RnnlabError):
        pad_batch([])


def test_batches_shuffle_per_epoch_and_count_without_collating() -> None:
    calls = []

    def collate(items: list[int]) -> tuple:
        calls.append(len(items))
        return (torch.tensor(items),)

    batches = Batches(list(range(10)), 4, collate, seed=3)
    assert len(batches) == 3 and calls == []  # counting collates nothing
    epoch0 = [b[0].tolist() for b in batches(0)]
    assert [len(b) for b in epoch0] == [4, 4, 2] and calls == [4, 4, 2]
    assert sorted(x for b in epoch0 for x in b) == list(range(10))
    assert [b[0].tolist() for b in batches(0)] == epoch0  # the same epoch, the same batches
    assert [b[0].tolist() for b in batches(1)] != epoch0
    ordered = Batches(list(range(5)), 2, collate, seed=None)
    assert [b[0].tolist() for b in ordered(7)] == [[0, 1], [2, 3], [4]]
    assert list(chunks([1, 2, 3], 2)) == [[1, 2], [3]]
    with pytest.raises(RnnlabError):
        Batches([1], 0, collate)


def test_tokenizers() -> None:
    sentence = TOKENIZERS["sentence"]
    assert sentence.split("I'm cold, aren't you?") == ["i'm", "cold", ",", "aren't", "you", "?"]
    assert sentence.split("Qu’est-ce que c'est ?") == ["qu’est-ce", "que", "c'est", "?"]
    words = TOKENIZERS["words"]
    assert words.split("To be, or\nnot") == ["To", "be", ",", "or", "\n", "not"]
    assert words.join(["To", "be", ",", "or", "\n", "not"]) == "To be, or\nnot"
    assert TOKENIZERS["chars"].join(TOKENIZERS["chars"].split("ab c")) == "ab c"
    assert tokenizer("whitespace").split(" 1  2 ") == ["1", "2"]
    with pytest.raises(RnnlabError, match="unknown tokenizer 'x'"):
        tokenizer("x")
