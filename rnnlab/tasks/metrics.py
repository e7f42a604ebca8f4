"""Evaluation metrics of the task models: classification, tagging, generation.

Classification and tagging: :func:`accuracy`, :func:`confusion_matrix`, :func:`per_class`
(precision, recall, F1 and support per class), :func:`macro_f1`, :func:`format_per_class` (a text
table) and :func:`plot_confusion` (a PNG). Generation: :func:`exact_match` and :func:`bleu`
(corpus BLEU by sacrebleu, on space-separated tokens).

Labels are integer class ids in ``[0, C)``; C is given explicitly so that a class missing from a
small evaluation set still gets its row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnlab.errors import RnnlabError


def _check(pred: Sequence[int], gold: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    pred_a, gold_a = np.asarray(pred, dtype=np.int64), np.asarray(gold, dtype=np.int64)
    if pred_a.shape != gold_a.shape or pred_a.ndim != 1:
        raise ValueError(
            f"pred and gold must be 1-D and of equal length, got {pred_a.shape} and {gold_a.shape}"
        )
    if pred_a.size == 0:
        raise ValueError("no predictions to score")
    return pred_a, gold_a


def accuracy(pred: Sequence[int], gold: Sequence[int]) -> float:
    """Fraction of predictions equal to the gold label."""
    pred_a, gold_a = _check(pred, gold)
    return float((pred_a == gold_a).mean())


def confusion_matrix(pred: Sequence[int], gold: Sequence[int], num_classes: int) -> np.ndarray:
    """(C, C) counts: row = gold class, column = predicted class."""
    pred_a, gold_a = _check(pred, gold)
    for name, a in (("pred", pred_a), ("gold", gold_a)):
        if a.min() < 0 or a.max() >= num_classes:
            raise ValueError(
                f"{name} labels must be in [0, {num_classes}), got {a.min()}..{a.max()}"
            )
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (gold_a, pred_a), 1)
    return cm


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall, F1 and support (number of gold examples) of one class."""

    precision: float
    recall: float
    f1: float
    support: int


def per_class(cm: np.ndarray) -> list[ClassScores]:
    """Scores of every class from a confusion matrix (0 where undefined, as in scikit-learn)."""
    tp = np.diag(cm).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return [
        ClassScores(float(p), float(r), float(f), int(s))
        for p, r, f, s in zip(precision, recall, f1, support)
    ]


def macro_f1(cm: np.ndarray, ignore_absent: bool = True) -> float:
    """Unweighted mean of the per-class F1; classes with no gold and no predicted example
    are left out when ``ignore_absent``."""
    scores = per_class(cm)
    present = cm.sum(axis=0) + cm.sum(axis=1) > 0
    f1 = [s.f1 for s, p in zip(scores, present) if p or not ignore_absent]
    return float(np.mean(f1)) if f1 else 0.0


def format_per_class(cm: np.ndarray, labels: Sequence[str]) -> str:
    """A text table: one row per class (precision, recall, F1, support), then macro and accuracy."""
    scores = per_class(cm)
    width = max(12, *(len(label) for label in labels))
    lines = [f"{'class':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
    for label, s in zip(labels, scores):
        lines.append(
            f"{label:<{width}} {s.precision:9.3f} {s.recall:9.3f} {s.f1:9.3f} {s.support:8d}"
        )
    n = int(cm.sum())
    present = [s for s in scores if s.support > 0]
    mp = float(np.mean([s.precision for s in present])) if present else 0.0
    mr = float(np.mean([s.recall for s in present])) if present else 0.0
    lines.append(f"{'macro avg':<{width}} {mp:9.3f} {mr:9.3f} {macro_f1(cm):9.3f} {n:8d}")
    acc = float(np.trace(cm) / n) if n else 0.0
    lines.append(f"{'accuracy':<{width}} {'':9} {'':9} {acc:9.3f} {n:8d}")
    return "\n".join(lines)


def plot_confusion(
    cm: np.ndarray, labels: Sequence[str], path: Path | str, title: str = "", normalize: bool = True
) -> Path:
    """Save the confusion matrix as a PNG (rows normalised to recall when ``normalize``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = cm.astype(float)
    if normalize:
        rows = data.sum(axis=1, keepdims=True)
        data = np.divide(data, rows, out=np.zeros_like(data), where=rows > 0)
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix")
    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def exact_match(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> float:
    """Fraction of hypotheses (token lists) identical to their reference."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("no hypotheses to score")
    return sum(list(h) == list(r) for h, r in zip(hyps, refs)) / len(hyps)


def bleu(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (0-100, sacrebleu's defaults) of token lists joined by spaces.

    Both sides are already tokenised the same way, so sacrebleu's own tokeniser only splits
    what is left (it does not change space-separated tokens).
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("no hypotheses to score")
    try:
        import sacrebleu
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RnnlabError("BLEU needs sacrebleu: pip install sacrebleu") from exc
    result = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]])
    return float(result.score)


__all__ = [
    "ClassScores",
    "accuracy",
    "bleu",
    "confusion_matrix",
    "exact_match",
    "format_per_class",
    "macro_f1",
    "per_class",
    "plot_confusion",
]
