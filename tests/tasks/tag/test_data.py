"""The tagging data: the punctuation-and-case task and CoNLL files."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnlab.data import bundled
from rnnlab.errors import RnnlabError
from rnnlab.tasks.tag.data import (
    PUNCT_TAGS,
    Tagged,
    punct_case_dataset,
    punct_case_tags,
    read_conll,
    read_punct_case,
    restore,
    strip_text,
    write_conll,
)


def test_punct_case_tags_and_restore() -> None:
    t = punct_case_tags("Before we proceed any further, hear me speak.")
    assert t.tokens == ("before", "we", "proceed", "any", "further", "hear", "me", "speak")
    assert t.tags == ("^O", "O", "O", "O", ",", "O", "O", ".")
    assert restore(t.tokens, t.tags) == "Before we proceed any further, hear me speak."
    t = punct_case_tags("'Tis I, know't -- e'en so!--")
    assert t.tokens == ("'tis", "i", "know't", "e'en", "so")
    assert restore(t.tokens, t.tags) == "'Tis I, know't e'en so!"
    assert punct_case_tags(" -- ") is None
    assert strip_text("Hello, World!") == ["hello", "world"]


def test_punct_case_dataset_on_shakespeare() -> None:
    data = punct_case_dataset(bundled("tinyshakespeare.txt").read_text(encoding="utf-8"))
    assert len(data) > 30000
    assert {tag for seq in data for tag in seq.tags} <= set(PUNCT_TAGS)
    assert data[0] == Tagged(("first", "citizen"), ("^O", "^:"))
    assert read_punct_case() == data  # the default of the converter and of training


def test_read_punct_case_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"caf\xe9\n")
    with pytest.raises(RnnlabError, match=r"t\.txt is not UTF-8 text"):
        read_punct_case(path)
    path.write_text(" -- !\n\n")
    with pytest.raises(RnnlabError, match=r"t\.txt has no words"):
        read_punct_case(path)
    with pytest.raises(FileNotFoundError):
        read_punct_case(tmp_path / "missing.txt")


def test_conll_roundtrip_and_errors(tmp_path: Path) -> None:
    seqs = [Tagged(("a", "b"), ("X", "Y")), Tagged(("c",), ("Z",))]
    path = tmp_path / "d.conll"
    assert write_conll(seqs, path) == 2
    assert read_conll(path) == seqs
    path.write_text("a\tX\nb\tY\n\nc Z\n")
    with pytest.raises(RnnlabError, match=r"d\.conll:4: expected token<TAB>tag"):
        read_conll(path)
    path.write_text("\n\n")
    with pytest.raises(RnnlabError, match="no sequences"):
        read_conll(path)
