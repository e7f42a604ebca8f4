"""Tokenizers: text to tokens and tokens back to text, each named (task configs store the name).

* ``chars``: every character is a token (the character language model, names);
* ``words``: words (with inner apostrophes), punctuation marks and line breaks (the word-level
  language model); joining puts spaces between words but not before punctuation;
* ``sentence``: lowercase words (with inner apostrophes and hyphens) and punctuation marks, NFC
  normalised (the encoder-decoder's sentences); joined by spaces, the form BLEU reads;
* ``whitespace``: split on whitespace (synthetic digit sequences).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rnnlab.errors import RnnlabError

_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]|\n")
_NO_SPACE_BEFORE = set(".,;:!?)]}'\"")
_SENTENCE = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*|[^\w\s]|_")


def _join_words(tokens: Sequence[str]) -> str:
    out: list[str] = []
    for tok in tokens:
        if out and tok not in _NO_SPACE_BEFORE and tok != "\n" and out[-1] != "\n":
            out.append(" ")
        out.append(tok)
    return "".join(out)


def _sentence(text: str) -> list[str]:
    return _SENTENCE.findall(unicodedata.normalize("NFC", text).lower())


@dataclass(frozen=True)
class Tokenizer:
    """``split(text) -> tokens`` and ``join(tokens) -> text``.

    Example::

        >>> TOKENIZERS["sentence"].split("I'm cold, aren't you?")
        ["i'm", 'cold', ',', "aren't", 'you', '?']
        >>> TOKENIZERS["words"].join(["to", "be", ",", "or"])
        'to be, or'
    """

    name: str
    split: Callable[[str], list[str]]
    join: Callable[[Sequence[str]], str]


TOKENIZERS: dict[str, Tokenizer] = {
    "chars": Tokenizer("chars", list, "".join),
    "words": Tokenizer("words", _WORD.findall, _join_words),
    "sentence": Tokenizer("sentence", _sentence, " ".join),
    "whitespace": Tokenizer("whitespace", str.split, " ".join),
}


def tokenizer(name: str) -> Tokenizer:
    """The tokenizer called ``name``."""
    if name not in TOKENIZERS:
        raise RnnlabError(f"unknown tokenizer {name!r}; choose one of: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[name]


__all__ = ["TOKENIZERS", "Tokenizer", "tokenizer"]
