"""Readers, vocabularies, splits and converters of the task data (rnnlab.data.*)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rnnlab.data import bundled
from rnnlab.data.vocab import Vocab, pad_batch
from rnnlab.errors import RnnlabError
from rnnlab.tasks.caption.data import (
    HELD_OUT,
    IMAGE_SIZE,
    generate,
    load_dataset,
    load_image,
    save_dataset,
    save_image,
)
from rnnlab.tasks.classify.data import (
    class_weights,
    read_class_dir,
    read_examples,
    read_labelled,
    stratified_split,
)
from rnnlab.tasks.seq2seq.data import digit_pairs, read_pairs, split_pairs, tokenize
from rnnlab.tasks.tag.data import (
    PUNCT_TAGS,
    Tagged,
    punct_case_dataset,
    punct_case_tags,
    read_conll,
    restore,
    strip_text,
    write_conll,
)


# -- vocabularies and batches -------------------------------------------------------------------
def test_vocab_roundtrip_and_specials() -> None:
    v = Vocab.build([list("abca"), list("bd")])
    assert v.itos[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"]
    assert (v.pad_id, v.sos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    ids = v.encode("abz", sos=True, eos=True)
    assert ids[0] == v.sos_id and ids[-1] == v.eos_id and ids[3] == v.unk_id
    assert v.decode(ids) == ["a", "b", "<unk>"]
    assert v.decode([v.index("a"), v.eos_id, v.index("b")]) == ["a"]  # stops at <eos>
    assert Vocab.from_meta(v.to_meta()) == v


def test_vocab_without_unk_rejects_unknown_tokens() -> None:
    tags = Vocab.build([["X", "Y"]], pad=None, sos=None, eos=None, unk=None)
    assert tags.itos == ["X", "Y"]
    with pytest.raises(RnnlabError, match="unknown token 'Z'"):
        tags.encode(["Z"])
    with pytest.raises(RnnlabError, match="no sos token"):
        tags.encode(["X"], sos=True)


def test_vocab_min_freq_and_renamed_specials() -> None:
    v = Vocab.build([["a", "a", "b"]], min_freq=2, sos="<start>", eos="<end>")
    assert v.itos == ["<pad>", "<start>", "<end>", "<unk>", "a"]
    assert v.encode(["b"]) == [v.unk_id]


def test_pad_batch() -> None:
    ids, lengths = pad_batch([[5, 6, 7], [8]])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]
    with pytest.raises(RnnlabError):
        pad_batch([[1], []])


# -- classification data ----------------------------------------------------------------------
def test_bundled_names() -> None:
    examples = read_class_dir(bundled("names"))
    counts = Counter(e.label for e in examples)
    assert len(examples) == 18827 and len(counts) == 18
    assert counts["Russian"] == 9408 and counts["Vietnamese"] == 72


def test_stratified_split_is_per_class_disjoint_and_seeded() -> None:
    labels = ["a"] * 100 + ["b"] * 10 + ["c"] * 3
    tr, va, te = stratified_split(labels, (0.1, 0.2), seed=1)
    assert sorted(tr + va + te) == list(range(len(labels)))
    assert Counter(labels[i] for i in va) == {"a": 10, "b": 1, "c": 1}
    assert Counter(labels[i] for i in te) == {"a": 20, "b": 2, "c": 1}
    assert stratified_split(labels, (0.1, 0.2), seed=1) == (tr, va, te)
    assert stratified_split(labels, (0.1, 0.2), seed=2) != (tr, va, te)


def test_class_weights() -> None:
    labels = ["a"] * 90 + ["b"] * 10
    inv = class_weights(labels, ["a", "b"], "inverse")
    assert inv[1] / inv[0] == pytest.approx(9.0)
    # normalised: the mean weight over the examples is 1
    assert (90 * inv[0] + 10 * inv[1]) / 100 == pytest.approx(1.0)
    assert class_weights(labels, ["a", "b"], "none") == [1.0, 1.0]
    assert class_weights(labels, ["a", "b"], "sqrt")[1] / class_weights(labels, ["a", "b"], "sqrt")[
        0
    ] == pytest.approx(3.0)
    with pytest.raises(RnnlabError, match="no training example for class"):
        class_weights(labels, ["a", "b", "c"], "sqrt")


def test_class_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(RnnlabError, match="no class files"):
        read_class_dir(tmp_path)
    (tmp_path / "A.txt").write_text("x\ny\n")
    (tmp_path / "B.txt").write_text("\n  \n")
    with pytest.raises(RnnlabError, match=r"B\.txt is empty"):
        read_class_dir(tmp_path)


def test_labelled_tsv_and_csv(tmp_path: Path) -> None:
    tsv = tmp_path / "d.tsv"
    tsv.write_text("Smith\tEnglish\nIvanov\tRussian\n\n")
    assert [(e.text, e.label) for e in read_examples(tsv)] == [
        ("Smith", "English"),
        ("Ivanov", "Russian"),
    ]
    csv_file = tmp_path / "d.csv"
    csv_file.write_text('"Smith, John",English\n')
    assert read_labelled(csv_file)[0].text == "Smith, John"
    tsv.write_text("Smith\tEnglish\nIvanov\n")
    with pytest.raises(RnnlabError, match=r"d\.tsv:2: expected text<TAB>label"):
        read_labelled(tsv)
    with pytest.raises(FileNotFoundError):
        read_examples(tmp_path / "missing.tsv")


# -- tagging data -----------------------------------------------------------------------------
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


# -- sentence pairs ---------------------------------------------------------------------------
def test_tokenize() -> None:
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


def test_digit_pairs() -> None:
    for p in digit_pairs("reverse", 20, 3, 6, seed=0):
        assert p.target.split() == p.source.split()[::-1] and 3 <= len(p.source.split()) <= 6
    for p in digit_pairs("sort", 20, seed=0):
        assert p.target.split() == sorted(p.source.split())
    with pytest.raises(RnnlabError, match="unknown synthetic task"):
        digit_pairs("rotate", 1)


# -- synthetic captioning ---------------------------------------------------------------------
def test_captions_are_consistent_and_splits_hold_out_combinations() -> None:
    images, captions = generate(300, "train", seed=0)
    assert images.shape == (300, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8
    held = {f"{c} {k}" for c, k in HELD_OUT}
    for cap in captions:
        text = " ".join(cap)
        assert text.startswith("a ") and not any(h in text for h in held)
        assert len(cap) in (3, 7, 10, 11, 17)
    _, held_captions = generate(100, "heldout", seed=0)
    assert all(any(h in " ".join(c) for h in held) for c in held_captions)
    again, _ = generate(300, "train", seed=0)
    assert np.array_equal(images, again)


def test_image_files_roundtrip_and_errors(tmp_path: Path) -> None:
    images, captions = generate(3, "test", seed=0)
    save_dataset(images, captions, tmp_path / "set")
    loaded, loaded_captions = load_dataset(tmp_path / "set")
    assert np.array_equal(loaded, images) and loaded_captions == captions
    save_image(np.zeros((20, 30, 3), np.uint8), tmp_path / "small.png")
    with pytest.raises(RnnlabError, match="expected a 36x36 image, got 30x20"):
        load_image(tmp_path / "small.png")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(RnnlabError, match="not a readable image"):
        load_image(tmp_path / "bad.png")
