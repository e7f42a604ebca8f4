"""The classification readers: class folders, labelled files, the stratified split, weights."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from rnnlab.data import bundled
from rnnlab.errors import RnnlabError
from rnnlab.tasks.classify.data import (
    class_weights,
    read_class_dir,
    read_examples,
    read_labelled,
    stratified_split,
)


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
    sqrt = class_weights(labels, ["a", "b"], "sqrt")
    assert sqrt[1] / sqrt[0] == pytest.approx(3.0)
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
