"""Labelled sequences for classification: a folder of class files, or a ``text<TAB>label`` file.

The bundled set is the names data of the PyTorch tutorial (``bundled("names")``): 18 files,
one language each, one surname per line, 18,827 names. Both formats give a list of
:class:`Example`; :func:`stratified_split` splits it per class with a seed and
:func:`class_weights` gives the loss weights that counter class imbalance.
"""

from __future__ import annotations

import csv
import io
import math
import random
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rnnlab.data.tokenize import MissingFileError, read_text, shown, split_lines
from rnnlab.errors import RnnlabError


@dataclass(frozen=True)
class Example:
    """One labelled text; ``source`` says where it came from (``file:line``) for error messages."""

    text: str
    label: str
    source: str = ""


def _clean(line: str) -> str:
    # NFC so that an accented letter is one character however the file spelled it.
    return unicodedata.normalize("NFC", line.strip())


def read_class_dir(path: Path | str) -> list[Example]:
    """One example per non-empty line of every ``*.txt`` file; the label is the file's stem.

    Raises:
        RnnlabError: if the folder holds no ``.txt`` file, a class file has no example, is not
            UTF-8 text (naming the file, line and byte offset) or has a name that cannot be a
            label (control characters, bytes that are not UTF-8).
    """
    path = Path(path)
    if not path.is_dir():
        raise RnnlabError(f"{shown(path)} is not a folder of class files (one LABEL.txt per class)")
    try:
        files = sorted(path.glob("*.txt"))
    except OSError as exc:
        raise RnnlabError(f"cannot list {shown(path)}: {exc.strerror or exc}") from None
    if not files:
        raise RnnlabError(f"{shown(path)} has no class files (expected one LABEL.txt per class)")
    examples = []
    for file in files:
        label = file.stem
        if not _valid_label(label):
            raise RnnlabError(
                f"class file {shown(file)}: its name is not a usable label (control characters "
                "or bytes that are not UTF-8); rename it"
            )
        before = len(examples)
        for lineno, line in enumerate(split_lines(read_text(file, "class file")), 1):
            text = _clean(line)
            if text:
                examples.append(Example(text, label, f"{file}:{lineno}"))
        if len(examples) == before:
            raise RnnlabError(f"class file {shown(file)} is empty: every class needs examples")
    return examples


def _valid_label(label: str) -> bool:
    try:
        label.encode("utf-8")  # a file name of undecodable bytes holds lone surrogates
    except UnicodeEncodeError:
        return False
    return bool(label.strip()) and label.isprintable()


def read_labelled(path: Path | str) -> list[Example]:
    """A ``text<TAB>label`` file (``.tsv``/``.txt``) or ``text,label`` file (``.csv``).

    Raises:
        RnnlabError: on a malformed line (with its line number), an empty file or one that is
            not UTF-8 text.
    """
    path = Path(path)
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    sep = "<TAB>" if delimiter == "\t" else ","
    text = read_text(path, "labelled file")
    examples = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise RnnlabError(f"{shown(path)}:{reader.line_num}: {exc}") from None
        lineno = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise RnnlabError(
                f"{shown(path)}:{lineno}: expected text{sep}label (2 non-empty fields), "
                f"got {len(row)} field(s): {delimiter.join(row)[:60]!r}"
            )
        examples.append(Example(_clean(row[0]), row[1].strip(), f"{path}:{lineno}"))
    if not examples:
        raise RnnlabError(f"{shown(path)} has no examples")
    return examples


def read_examples(path: Path | str) -> list[Example]:
    """A folder of class files (:func:`read_class_dir`) or a labelled file
    (:func:`read_labelled`)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"no such file or folder: {shown(path)}")
    return read_class_dir(path) if path.is_dir() else read_labelled(path)


def stratified_split(
    labels: Sequence[str], fractions: tuple[float, float] = (0.1, 0.1), seed: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """Indices of a train / validation / test split made per class.

    Each class is shuffled with ``seed`` and cut so that about ``fractions[0]`` of it goes to
    validation and ``fractions[1]`` to test (at least one example each where the class has
    three or more), the rest to training.

    Returns:
        ``(train, validation, test)`` lists of indices into ``labels``, each sorted.
    """
    val_frac, test_frac = fractions
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise RnnlabError(f"split fractions must be in [0, 1) and sum below 1, got {fractions}")
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    rng = random.Random(seed)
    train, val, test = [], [], []
    for label in sorted(by_class):
        idx = by_class[label]
        rng.shuffle(idx)
        n = len(idx)
        n_val = round(n * val_frac)
        n_test = round(n * test_frac)
        if n >= 3:
            n_val = max(n_val, 1) if val_frac > 0 else 0
            n_test = max(n_test, 1) if test_frac > 0 else 0
        val += idx[:n_val]
        test += idx[n_val : n_val + n_test]
        train += idx[n_val + n_test :]
    return sorted(train), sorted(val), sorted(test)


#: Loss weighting schemes against class imbalance, by name (the CLI's ``--class-weights``).
WEIGHTINGS = ("none", "sqrt", "inverse")


def class_weights(labels: Sequence[str], classes: Sequence[str], scheme: str) -> list[float]:
    """Cross-entropy weights per class, normalised so that the mean weight over the examples is 1.

    ``inverse``: w_c proportional to 1 / n_c (every class counts the same in the loss);
    ``sqrt``: 1 / sqrt(n_c), a compromise that keeps most of the accuracy on the frequent
    classes (on the names, the best macro-F1); ``none``: all 1.
    """
    if scheme not in WEIGHTINGS:
        raise RnnlabError(f"unknown class weighting {scheme!r}; choose one of {WEIGHTINGS}")
    counts = Counter(labels)
    missing = [c for c in classes if counts[c] == 0]
    if missing:
        raise RnnlabError(f"no training example for class(es): {', '.join(missing)}")
    power = {"none": 0.0, "sqrt": 0.5, "inverse": 1.0}[scheme]
    raw = {c: counts[c] ** -power for c in classes}
    mean = sum(raw[label] for label in labels) / len(labels)
    return [raw[c] / mean for c in classes]


def characters(text: str) -> list[str]:
    """The character-level tokenisation used for names."""
    return list(text)


def summary(examples: Sequence[Example]) -> str:
    """A one-line description: examples, classes, the most and least frequent class."""
    counts = Counter(e.label for e in examples)
    (top, n_top), (low, n_low) = counts.most_common()[0], counts.most_common()[-1]
    imbalance = n_top / max(n_low, 1)
    return (
        f"{len(examples)} examples, {len(counts)} classes (largest {top} {n_top}, "
        f"smallest {low} {n_low}, ratio {imbalance:.0f}:1, entropy "
        f"{-sum(n / len(examples) * math.log2(n / len(examples)) for n in counts.values()):.2f}"
        " bits)"
    )


__all__ = [
    "WEIGHTINGS",
    "Example",
    "characters",
    "class_weights",
    "read_class_dir",
    "read_examples",
    "read_labelled",
    "stratified_split",
    "summary",
]
