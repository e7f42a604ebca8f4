"""Sequence tagging data: CoNLL-style files, and the punctuation-and-case restoration task.

CoNLL-style: one ``token<TAB>tag`` per line, a blank line between sequences.

Punctuation and case restoration (built from the bundled Shakespeare by
``rnnlab data punct-tags``): the input is the words of a line, lowercased, punctuation removed;
each word's tag says whether it was capitalised and which mark followed it::

    tag = ("^" if capitalised else "") + ("O" if no mark else the mark)   # mark in , . ? ! : ;

so ``"First Citizen:"`` becomes ``first/^O citizen/^:``. :func:`restore` applies tags to words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rnnlab.data.tokenize import read_text, shown, split_lines
from rnnlab.errors import RnnlabError

#: The marks the task restores; anything else (dashes, quotes, '&') is dropped.
MARKS = ",.?!:;"
#: Every tag of the punctuation task: no mark or one mark, lower or capitalised.
PUNCT_TAGS = tuple(case + mark for case in ("", "^") for mark in ("O", *MARKS))

# a word: letters/digits, with apostrophes or hyphens inside ("know't", "to-morrow", "'tis")
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*'?|'[^\W_]+(?:['-][^\W_]+)*")


@dataclass(frozen=True)
class Tagged:
    """One sequence: tokens and their tags, of equal length."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.tags):
            raise RnnlabError(f"{len(self.tokens)} tokens but {len(self.tags)} tags")


def read_conll(path: Path | str) -> list[Tagged]:
    """Sequences of a CoNLL-style file (``token<TAB>tag`` lines, blank lines between sequences).

    Raises:
        RnnlabError: on a line without exactly two tab-separated fields (with its line number),
            a file with no sequence, or one that is not UTF-8 text (with the line and offset).
    """
    path = Path(path)
    sequences: list[Tagged] = []
    tokens: list[str] = []
    tags: list[str] = []
    for lineno, line in enumerate(split_lines(read_text(path, "CoNLL file")), 1):
        if not line.strip():
            if tokens:
                sequences.append(Tagged(tuple(tokens), tuple(tags)))
                tokens, tags = [], []
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0] or not fields[1].strip():
            raise RnnlabError(
                f"{shown(path)}:{lineno}: expected token<TAB>tag, got {len(fields)} field(s): "
                f"{line[:60]!r}"
            )
        tokens.append(fields[0])
        tags.append(fields[1].strip())
    if tokens:
        sequences.append(Tagged(tuple(tokens), tuple(tags)))
    if not sequences:
        raise RnnlabError(f"{shown(path)} has no sequences")
    return sequences


def write_conll(sequences: Iterable[Tagged], path: Path | str) -> int:
    """Write sequences in CoNLL style; returns how many were written."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for seq in sequences:
            for token, tag in zip(seq.tokens, seq.tags):
                if "\t" in token or "\n" in token:
                    raise RnnlabError(f"token {token!r} contains a tab or newline")
                f.write(f"{token}\t{tag}\n")
            f.write("\n")
            n += 1
    return n


# -- punctuation and case restoration -----------------------------------------------------------
def punct_case_tags(line: str) -> Tagged | None:
    """The task's input words and tags for one line of text (None if it has no word).

    >>> punct_case_tags("Speak, speak.")
    Tagged(tokens=('speak', 'speak'), tags=('^,', '.'))
    """
    words: list[str] = []
    tags: list[str] = []
    matches = list(_WORD.finditer(line))
    for k, m in enumerate(matches):
        word = m.group()
        end = matches[k + 1].start() if k + 1 < len(matches) else len(line)
        following = line[m.end() : end]
        mark = next((c for c in following if c in MARKS), "O")
        letters = word.lstrip("'")
        cap = "^" if letters[:1].isupper() else ""
        words.append(word.lower())
        tags.append(cap + mark)
    if not words:
        return None
    return Tagged(tuple(words), tuple(tags))


def punct_case_dataset(text: str) -> list[Tagged]:
    """One sequence per non-empty line of ``text`` (e.g. the bundled Shakespeare)."""
    out = []
    for line in text.splitlines():
        tagged = punct_case_tags(line)
        if tagged is not None:
            out.append(tagged)
    return out


def read_punct_case(path: Path | str | None = None) -> list[Tagged]:
    """The punctuation-and-case task of a UTF-8 text file (default: the bundled Shakespeare).

    Raises:
        RnnlabError: a file that is not UTF-8 text, or has no word.
    """
    if path is None:
        from rnnlab.data import bundled

        path = bundled("tinyshakespeare.txt")
    data = punct_case_dataset(read_text(path))
    if not data:
        raise RnnlabError(f"{shown(path)} has no words")
    return data


def strip_text(text: str) -> list[str]:
    """The task's input for any text: its words, lowercased, without punctuation."""
    return [m.group().lower() for m in _WORD.finditer(text)]


def restore(words: Sequence[str], tags: Sequence[str]) -> str:
    """Apply punctuation-and-case tags to words.

    >>> restore(["first", "citizen"], ["^O", "^:"])
    'First Citizen:'
    """
    if len(words) != len(tags):
        raise RnnlabError(f"{len(words)} words but {len(tags)} tags")
    out = []
    for word, tag in zip(words, tags):
        cap, mark = tag.startswith("^"), tag.lstrip("^")
        if cap:
            i = len(word) - len(word.lstrip("'"))
            word = word[:i] + word[i : i + 1].upper() + word[i + 1 :]
        out.append(word + ("" if mark == "O" else mark))
    return " ".join(out)


__all__ = [
    "MARKS",
    "PUNCT_TAGS",
    "Tagged",
    "punct_case_dataset",
    "punct_case_tags",
    "read_conll",
    "read_punct_case",
    "restore",
    "strip_text",
    "write_conll",
]
