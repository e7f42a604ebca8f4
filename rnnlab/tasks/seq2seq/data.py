"""Sentence pairs for encoder-decoder models: TSV files, tokenisation, synthetic digit tasks.

A pairs file has one ``source<TAB>target`` per line; further columns are kept but unused (the
bundled ``eng-fra-5k.tsv``, 5,000 English-French pairs from Tatoeba, CC-BY 2.0 France, has an
attribution column). Sentences are tokenised by the ``sentence`` tokenizer of
:mod:`rnnlab.data.tokenize` (lowercase; words, with inner apostrophes and hyphens, and
punctuation marks as tokens; the synthetic digit tasks use ``whitespace``) and mapped to ids by
a :class:`~rnnlab.data.vocab.Vocab` with ``<sos>``, ``<eos>``, ``<pad>`` and ``<unk>``.

The synthetic tasks (:func:`digit_pairs`): reverse or sort a sequence of digits; a correct
encoder-decoder solves them, which makes them the quick check of the model and its decoders.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from rnnlab.data.tokenize import read_text, shown, split_lines
from rnnlab.errors import RnnlabError


@dataclass(frozen=True)
class Pair:
    """One source/target pair; ``extra`` holds any further columns (e.g. the attribution)."""

    source: str
    target: str
    extra: tuple[str, ...] = ()


def _pair(path: Path, lineno: int, line: str) -> Pair | None:
    """The pair on line ``lineno`` of ``path``; None for a blank line."""
    if not line.strip():
        return None
    fields = line.split("\t")
    if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
        raise RnnlabError(
            f"{shown(path)}:{lineno}: expected source<TAB>target (two non-empty fields), "
            f"got {line[:60]!r}"
        )
    return Pair(fields[0].strip(), fields[1].strip(), tuple(fields[2:]))


def read_pairs(path: Path | str) -> list[Pair]:
    """Pairs of a ``source<TAB>target[<TAB>...]`` file.

    Raises:
        RnnlabError: on a line with fewer than two fields or an empty side (with its line
            number), a file with no pair, or one that is not UTF-8.
    """
    path = Path(path)
    lines = split_lines(read_text(path, "sentence-pair file"))
    pairs = [pair for lineno, line in enumerate(lines, 1) if (pair := _pair(path, lineno, line))]
    if not pairs:
        raise RnnlabError(f"{shown(path)} has no sentence pairs")
    return pairs


#: The synthetic tasks, by name.
DIGIT_TASKS = ("reverse", "sort")


def digit_pairs(task: str, n: int, min_len: int = 5, max_len: int = 5, seed: int = 0) -> list[Pair]:
    """``n`` random digit sequences (space separated) and their reverse or sorted version.

    >>> digit_pairs("reverse", 1, 3, 3, seed=1)[0]
    Pair(source='9 1 4', target='4 1 9', extra=())
    """
    if task not in DIGIT_TASKS:
        raise RnnlabError(f"unknown synthetic task {task!r}; choose one of {DIGIT_TASKS}")
    if not 1 <= min_len <= max_len:
        raise RnnlabError(f"need 1 <= min_len <= max_len, got {min_len} and {max_len}")
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        digits = [str(rng.randrange(10)) for _ in range(rng.randint(min_len, max_len))]
        out = digits[::-1] if task == "reverse" else sorted(digits)
        pairs.append(Pair(" ".join(digits), " ".join(out)))
    return pairs


def split_pairs(
    pairs: list[Pair], fractions: tuple[float, float] = (0.1, 0.1), seed: int = 0
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """A seeded train / validation / test split (``fractions`` of validation and test).

    Pairs with the same source stay on one side, so that the test set holds no sentence seen
    in training (Tatoeba lists several translations of one sentence).
    """
    val_frac, test_frac = fractions
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise RnnlabError(f"split fractions must be in [0, 1) and sum below 1, got {fractions}")
    sources = sorted({p.source for p in pairs})
    random.Random(seed).shuffle(sources)
    n_val = round(len(sources) * val_frac)
    n_test = round(len(sources) * test_frac)
    side = {s: 1 for s in sources[:n_val]}
    side.update({s: 2 for s in sources[n_val : n_val + n_test]})
    parts: tuple[list[Pair], list[Pair], list[Pair]] = ([], [], [])
    for p in pairs:
        parts[side.get(p.source, 0)].append(p)
    return parts


__all__ = [
    "DIGIT_TASKS",
    "Pair",
    "digit_pairs",
    "read_pairs",
    "split_pairs",
]
