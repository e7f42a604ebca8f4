"""The encoder-decoder's data: the sentence tokenizer, pairs files, splits, digit tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnlab.data import bundled
from rnnlab.data.tokenize import TOKENIZERS
from rnnlab.errors import RnnlabError
from rnnlab.tasks.seq2seq.data import digit_pairs, read_pairs, split_pairs


def test_tokenize() -> None:
    tokenize = TOKENIZERS["sentence"].split
    assert tokenize("I'm cold, aren't you?") == ["i'm", "cold", ",", "aren't", "you", "?"]
    assert tokenize("Je suis si fatigué\u202f!") == ["je", "suis", "si", "fatigué", "!"]


def test_bundled_pairs_keep_attribution_and_split_by_source() -> None:
    pairs = read_pairs(bundled("eng-fra-5k.tsv"))
    assert len(pairs) == 5000
    assert all(p.extra and "tatoeba.org" in p.extra[0] for p in pairs)
    train, val, test = split_pairs(pairs, (0.1, 0.1), seed=0)
    assert len(train) + len(val) + len(test) == 5000
    assert not {p.source for p in train} & {p.source for p in test}


def test_read_pairs_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.tsv"
    path.write_text("go .\tva !\nhello\n")
    with pytest.raises(RnnlabError, match=r"p\.tsv:2: expected source<TAB>target"):
        read_pairs(path)
    path.write_text("go .\t \n")
    with pytest.raises(RnnlabError, match=r"p\.tsv:1:"):
        read_pairs(path)
    path.write_text("\n \n")
    with pytest.raises(RnnlabError, match="has no sentence pairs"):
        read_pairs(path)
    path.write_bytes("caf\u00e9\tcoffee\n".encode("latin-1"))
    with pytest.raises(RnnlabError, match="is not UTF-8 text"):
        read_pairs(path)


def test_digit_pairs() -> None:
    for p in digit_pairs("reverse", 20, 3, 6, seed=0):
        assert p.target.split() == p.source.split()[::-1] and 3 <= len(p.source.split()) <= 6
    for p in digit_pairs("sort", 20, seed=0):
        assert p.target.split() == sorted(p.source.split())
    with pytest.raises(RnnlabError, match="unknown synthetic task"):
        digit_pairs("rotate", 1)
