"""The vocabulary of every task: tokens (characters, words, tags, class labels) to ids and back.

Models see only integer ids; a :class:`Vocab` maps tokens to ids and back and is stored in
checkpoints as its list of tokens (:meth:`Vocab.to_meta`). A character language model's
vocabulary is the sorted characters of its text with no special token; a word model's has
``<unk>``; a tag set or a list of class labels has none. The special tokens are ``<pad>`` (id 0,
never predicted, masked out of every loss), ``<sos>`` and ``<eos>`` (start and end of a generated
sequence; captioning names them ``<start>`` and ``<end>``) and ``<unk>`` (any unknown token).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from rnnlab.errors import RnnlabError

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"


class Vocab:
    """A bijection between tokens and ids, with named special tokens.

    Args:
        tokens: every token, specials included, in id order (as :attr:`itos` holds them).
        pad, sos, eos, unk: the special tokens' names, each one in ``tokens``, or None where
            the vocabulary has no such token (a tag set has no ``<sos>``; without ``unk`` an
            unknown token is an error).

    Example::

        >>> v = Vocab.build([["a", "b"], ["b", "c"]])
        >>> v.encode(["b", "z"], eos=True)
        [4, 3, 2]
        >>> v.decode([1, 4, 5, 2, 6])
        ['b', 'a']
    """

    def __init__(
        self,
        tokens: Sequence[str],
        pad: str | None = PAD,
        sos: str | None = SOS,
        eos: str | None = EOS,
        unk: str | None = UNK,
    ) -> None:
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dupes = sorted(t for t, n in Counter(self.itos).items() if n > 1)
            shown = ", ".join(repr(t[:20]) for t in dupes[:5])
            raise RnnlabError(f"vocabulary has duplicate tokens: {shown}")
        self.specials = {"pad": pad, "sos": sos, "eos": eos, "unk": unk}
        for role, token in self.specials.items():
            if token is not None and token not in self.stoi:
                raise RnnlabError(f"vocabulary has no {role} token {token[:40]!r}")

    @classmethod
    def build(
        cls,
        sequences: Iterable[Iterable[str]],
        min_freq: int = 1,
        max_size: int | None = None,
        pad: str | None = PAD,
        sos: str | None = SOS,
        eos: str | None = EOS,
        unk: str | None = UNK,
    ) -> Vocab:
        """The specials (in the order pad, sos, eos, unk), then every token seen at least
        ``min_freq`` times, most frequent first (ties in first-seen order), at most
        ``max_size`` tokens besides the specials."""
        specials = [t for t in (pad, sos, eos, unk) if t is not None]
        counts: Counter[str] = Counter()
        for seq in sequences:
            counts.update(seq)
        kept = [t for t, n in counts.most_common() if n >= min_freq and t not in specials]
        if max_size is not None:
            kept = kept[:max_size]
        return cls([*specials, *kept], pad=pad, sos=sos, eos=eos, unk=unk)

    # -- ids of the specials (None where absent) ----------------------------------------------
    def _id(self, role: str) -> int | None:
        token = self.specials[role]
        return None if token is None else self.stoi[token]

    @property
    def pad_id(self) -> int | None:
        return self._id("pad")

    @property
    def sos_id(self) -> int | None:
        return self._id("sos")

    @property
    def eos_id(self) -> int | None:
        return self._id("eos")

    @property
    def unk_id(self) -> int | None:
        return self._id("unk")

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.to_meta() == other.to_meta()

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {self.itos[:8]}{'...' if len(self) > 8 else ''})"

    # -- conversion ---------------------------------------------------------------------------
    def index(self, token: str) -> int:
        """The id of ``token``; the unknown token's id if it is not in the vocabulary."""
        i = self.stoi.get(token)
        if i is None:
            unk = self.unk_id
            if unk is None:
                known = ", ".join(self.itos[:20]) + (", ..." if len(self) > 20 else "")
                raise RnnlabError(f"unknown token {token!r} (known: {known})")
            return unk
        return i

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        """The distinct tokens of ``tokens`` that are not in the vocabulary, in order of first
        appearance (``<unk>`` stands for them, if the vocabulary has it)."""
        return [t for t in dict.fromkeys(tokens) if t not in self.stoi]

    def encode(self, tokens: Iterable[str], sos: bool = False, eos: bool = False) -> list[int]:
        """Ids of ``tokens``, optionally after ``<sos>`` and/or before ``<eos>``.

        Raises:
            RnnlabError: naming the unknown tokens, for a vocabulary without ``<unk>``.
        """
        tokens = list(tokens)
        if self.unk_id is None:
            missing = self.unknown(tokens)
            if missing:
                shown = ", ".join(repr(t) for t in missing[:10])
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                raise RnnlabError(f"not in the model's vocabulary: {shown}{more}")
        ids = [self.index(t) for t in tokens]
        if sos:
            ids.insert(0, self._required("sos"))
        if eos:
            ids.append(self._required("eos"))
        return ids

    def decode(self, ids: Iterable[int], stop_at_eos: bool = True) -> list[str]:
        """Tokens of ``ids`` without ``<pad>``/``<sos>``, up to (excluding) the first ``<eos>``."""
        skip = {self.pad_id, self.sos_id, self.eos_id} - {None}
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id and stop_at_eos:
                break
            if i not in skip:
                out.append(self.itos[i])
        return out

    def _required(self, role: str) -> int:
        i = self._id(role)
        if i is None:
            raise RnnlabError(f"this vocabulary has no {role} token")
        return i

    # -- checkpoints ----------------------------------------------------------------------------
    def to_meta(self) -> dict:
        """A JSON-serialisable description (stored in checkpoints)."""
        return {"tokens": list(self.itos), **self.specials}

    @classmethod
    def from_meta(cls, meta: object) -> Vocab:
        """The vocabulary :meth:`to_meta` described (also rnnlab 0.1.0's language-model
        vocabularies, ``{"kind": "char" | "word", "tokens": [...]}``).

        Raises:
            RnnlabError: anything else (one line, whatever ``meta`` holds).
        """
        if not isinstance(meta, dict) or not isinstance(meta.get("tokens"), list):
            got = type(meta).__name__ if not isinstance(meta, dict) else "no list of tokens"
            raise RnnlabError(f"not a vocabulary: expected {{'tokens': [...], ...}}, got {got}")
        tokens = meta["tokens"]
        if not all(isinstance(t, str) for t in tokens):
            raise RnnlabError("a vocabulary's tokens must be strings")
        if "kind" in meta:  # rnnlab 0.1.0: characters without specials, or words with <unk>
            if meta["kind"] not in ("char", "word"):
                raise RnnlabError(
                    f"unknown vocabulary kind {str(meta['kind'])[:20]!r} (expected char or word)"
                )
            unk = UNK if meta["kind"] == "word" else None
            return cls(tokens, pad=None, sos=None, eos=None, unk=unk)
        roles = [meta.get(k) for k in ("pad", "sos", "eos", "unk")]
        if not all(r is None or isinstance(r, str) for r in roles):
            raise RnnlabError("a vocabulary's special tokens must be strings or null")
        return cls(tokens, *roles)

    @classmethod
    def of_labels(cls, labels: Iterable[str]) -> Vocab:
        """A vocabulary of labels (classes, tags, languages): no special token, given order."""
        return cls(list(labels), pad=None, sos=None, eos=None, unk=None)


__all__ = ["EOS", "PAD", "SOS", "UNK", "Vocab"]
