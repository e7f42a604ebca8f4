"""Metrics against hand-computed values (and sacrebleu's own BLEU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rnnlab.tasks.metrics import (
    accuracy,
    bleu,
    confusion_matrix,
    exact_match,
    format_per_class,
    macro_f1,
    per_class,
    plot_confusion,
)

GOLD = [0, 0, 0, 1, 1, 2]
PRED = [0, 0, 1, 1, 2, 2]


def test_accuracy_and_confusion() -> None:
    assert accuracy(PRED, GOLD) == pytest.approx(4 / 6)
    cm = confusion_matrix(PRED, GOLD, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match="in \\[0, 3\\)"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="equal length"):
        accuracy([0], [0, 1])


def test_per_class_and_macro_f1() -> None:
    cm = confusion_matrix(PRED, GOLD, 4)
    s = per_class(cm)
    # class 0: P = 2/2, R = 2/3; class 1: P = 1/2, R = 1/2; class 2: P = 1/2, R = 1
    assert (s[0].precision, s[0].recall, s[0].support) == (1.0, pytest.approx(2 / 3), 3)
    assert s[1].f1 == pytest.approx(0.5)
    assert s[2].f1 == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert s[3].f1 == 0.0 and s[3].support == 0
    expected = np.mean([0.8, 0.5, 2 / 3])  # class 3 never occurs: left out
    assert macro_f1(cm) == pytest.approx(expected)
    assert macro_f1(cm, ignore_absent=False) == pytest.approx(np.mean([0.8, 0.5, 2 / 3, 0]))
    table = format_per_class(cm, ["a", "b", "c", "d"])
    assert "macro avg" in table and "accuracy" in table and "0.667" in table


def test_confusion_png(tmp_path: Path) -> None:
    cm = confusion_matrix(PRED, GOLD, 3)
    path = plot_confusion(cm, ["a", "b", "c"], tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_exact_match_and_bleu() -> None:
    refs = [["the", "cat", "sat", "on", "the", "mat"], ["a", "b", "c", "d"]]
    assert exact_match(refs, refs) == 1.0
    assert exact_match([refs[0], ["x"]], refs) == 0.5
    assert bleu(refs, refs) == pytest.approx(100.0)
    import sacrebleu

    hyps = [["the", "cat", "sat", "on", "a", "mat"], ["a", "b", "c", "e"]]
    expected = sacrebleu.corpus_bleu(
        ["the cat sat on a mat", "a b c e"], [["the cat sat on the mat", "a b c d"]]
    ).score
    assert bleu(hyps, refs) == pytest.approx(expected)
    assert 0 < bleu(hyps, refs) < 100
