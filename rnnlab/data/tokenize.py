r"""Reading users' text files, and tokenizers: text to tokens and back, each named.

:func:`read_text` is the one way every reader of a user's text file (a corpus, class files,
TSV/CSV, CoNLL, captions.tsv) gets its text: a regular file, UTF-8 (a byte-order mark is
dropped), or a one-line :class:`~rnnlab.errors.RnnlabError` naming the file and, for bad bytes,
the line and byte offset. :func:`split_lines` cuts text at ``\n``, ``\r\n`` or ``\r`` (the line
numbers an editor shows).

Tokenizers (task configs store the name):

* ``chars``: every character is a token (the character language model, names);
* ``words``: words (with inner apostrophes), punctuation marks and line breaks (the word-level
  language model); joining puts spaces between words but not before punctuation;
* ``sentence``: lowercase words (with inner apostrophes and hyphens) and punctuation marks, NFC
  normalised (the encoder-decoder's sentences); joined by spaces, the form BLEU reads;
* ``whitespace``: split on whitespace (synthetic digit sequences).
"""

from __future__ import annotations

import re
import stat
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rnnlab.errors import RnnlabError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class MissingFileError(RnnlabError, FileNotFoundError):
    """A file a user named does not exist (both rnnlab's error and a ``FileNotFoundError``)."""


def shown(path: Path | str) -> str:
    """``path`` as an error message shows it: on one line, control characters escaped."""
    text = str(path)
    return text if text.isprintable() else repr(text)[1:-1]


def read_text(path: Path | str, what: str = "text file") -> str:
    """The text of a user's UTF-8 file (without a leading byte-order mark).

    Raises:
        RnnlabError: a missing file (:class:`MissingFileError`), a folder, something that is
            not a regular file (a device or pipe, which could block or never end), a file that
            cannot be read, or bytes that are not UTF-8 (naming the offset and line).
    """
    path = Path(path)
    name = shown(path)
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise RnnlabError(f"{name} is a directory, not a {what}")
        if not stat.S_ISREG(mode):
            raise RnnlabError(f"{name} is not a regular file (expected a {what})")
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"no such file: {name}") from None
    except PermissionError:
        raise RnnlabError(f"cannot read {name}: permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL character in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise RnnlabError(f"cannot read {name}: {reason}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RnnlabError(
            f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}, "
            f"line {line}); convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None


def split_lines(text: str) -> list[str]:
    r"""The lines of ``text``, cut at ``\n``, ``\r\n`` or ``\r`` (no empty last line after a
    final line break)."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


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


__all__ = [
    "TOKENIZERS",
    "MissingFileError",
    "Tokenizer",
    "read_text",
    "shown",
    "split_lines",
    "tokenizer",
]
