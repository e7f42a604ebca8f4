"""Text corpora for language models: reading, vocabularies, contiguous splits, TBPTT batches.

* :func:`read_corpus` reads a UTF-8 file with one-line errors for every way it can be wrong.
* :class:`CharVocab` (every distinct character) and :class:`WordVocab` (words and punctuation,
  capped, with ``<unk>``) map text to ids and back; both are stored in checkpoints as
  :meth:`to_meta`.
* :func:`split_ids` cuts a corpus contiguously: the first 90% train, the rest validation.
* :class:`StreamBatches` lays a corpus out as B parallel contiguous streams and walks them T
  steps at a time, for truncated backpropagation through time: batch ``i`` of stream ``b``
  continues exactly where batch ``i - 1`` of the same stream stopped.

Shapes: B streams (batch), T steps per batch.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

from rnnlab.errors import RnnlabError

DEFAULT_CORPUS = "tinyshakespeare.txt"
UNK = "<unk>"


def read_corpus(path: Path | str | None = None) -> str:
    """The text of a UTF-8 file; the bundled tiny-shakespeare when ``path`` is None.

    Raises:
        RnnlabError: missing file, a directory, empty, or not UTF-8.
    """
    if path is None:
        from rnnlab.data import bundled

        path = bundled(DEFAULT_CORPUS)
    path = Path(path)
    if not path.exists():
        raise RnnlabError(f"no such file: {path}")
    if path.is_dir():
        raise RnnlabError(f"{path} is a directory, not a text file")
    data = path.read_bytes()
    if not data.strip():
        raise RnnlabError(f"{path} is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RnnlabError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}, "
            f"line {line}); convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None


class CharVocab:
    """Every distinct character of a text, sorted; ids are positions.

    Example::

        >>> v = CharVocab.from_text("hello")
        >>> v.tokens, v.encode("hole").tolist(), v.decode([3, 0])
        (['e', 'h', 'l', 'o'], [1, 3, 2, 0], 'oe')
    """

    kind = "char"

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = list(tokens)
        if any(len(t) != 1 for t in self.tokens) or len(set(self.tokens)) != len(self.tokens):
            raise RnnlabError("a character vocabulary holds distinct single characters")
        self.index = {c: i for i, c in enumerate(self.tokens)}

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.tokens)

    def unknown(self, text: str) -> list[str]:
        """The characters of ``text`` that are not in the vocabulary, in order of appearance."""
        return [c for c in dict.fromkeys(text) if c not in self.index]

    def encode(self, text: str) -> Tensor:
        """(len(text),) LongTensor of ids; an error naming any unknown characters."""
        missing = self.unknown(text)
        if missing:
            shown = ", ".join(repr(c) for c in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise RnnlabError(f"characters not in the model's vocabulary: {shown}{more}")
        # via a lookup table over code points: ~50x faster than a Python loop on 1M chars
        codes = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
        table = torch.full((max(map(ord, self.tokens)) + 1,), -1, dtype=torch.long)
        table[torch.tensor([ord(c) for c in self.tokens])] = torch.arange(len(self.tokens))
        return table[codes]

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        return "".join(self.tokens[int(i)] for i in ids)

    def to_meta(self) -> dict:
        return {"kind": self.kind, "tokens": self.tokens}


_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]|\n")
_NO_SPACE_BEFORE = set(".,;:!?)]}'\"")


class WordVocab:
    """Words and punctuation (and line breaks) as tokens, the ``max_size`` most frequent,
    everything else ``<unk>`` (id 0). Decoding joins words with spaces.

    Example::

        >>> v = WordVocab.from_text("to be, or not to be", max_size=4)
        >>> v.decode(v.encode("to be, or not"))
        'to be, <unk> <unk>'
    """

    kind = "word"

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = list(tokens)
        if not self.tokens or self.tokens[0] != UNK:
            raise RnnlabError(f"a word vocabulary starts with {UNK}")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return _WORD.findall(text)

    @classmethod
    def from_text(cls, text: str, max_size: int = 10000) -> WordVocab:
        if max_size < 2:
            raise RnnlabError(f"word vocabulary size must be >= 2, got {max_size}")
        counts = Counter(cls.tokenize(text))
        common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max_size - 1]
        return cls([UNK] + [t for t, _ in common])

    def __len__(self) -> int:
        return len(self.tokens)

    def unknown(self, text: str) -> list[str]:
        return []  # every word has an id: <unk>

    def encode(self, text: str) -> Tensor:
        return torch.tensor([self.index.get(t, 0) for t in self.tokenize(text)], dtype=torch.long)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        out: list[str] = []
        for i in ids:
            tok = self.tokens[int(i)]
            if out and tok not in _NO_SPACE_BEFORE and tok != "\n" and out[-1] != "\n":
                out.append(" ")
            out.append(tok)
        return "".join(out)

    def to_meta(self) -> dict:
        return {"kind": self.kind, "tokens": self.tokens}


Vocabulary = CharVocab | WordVocab


def vocab_from_meta(meta: dict) -> Vocabulary:
    """The vocabulary stored by ``to_meta()``."""
    kinds = {"char": CharVocab, "word": WordVocab}
    if not isinstance(meta, dict) or meta.get("kind") not in kinds:
        raise RnnlabError(f"unknown vocabulary in checkpoint: {str(meta)[:60]}")
    return kinds[meta["kind"]](meta["tokens"])


def split_ids(ids: Tensor, val_fraction: float = 0.1) -> tuple[Tensor, Tensor]:
    """Contiguous split: the first ``1 - val_fraction`` for training, the rest for validation."""
    if not 0.0 < val_fraction < 1.0:
        raise RnnlabError(f"validation fraction must be in (0, 1), got {val_fraction}")
    n_train = int(len(ids) * (1.0 - val_fraction))
    return ids[:n_train], ids[n_train:]


class StreamBatches:
    """B parallel contiguous streams of a token sequence, read T steps at a time.

    The sequence ``ids`` is cut into B equal consecutive pieces (the remainder dropped); batch
    ``i`` holds, for every stream, inputs ``[i*T, (i+1)*T)`` of that piece and the targets one
    token later. The third element of a batch says whether it starts an epoch (the carried
    state must then be reset). A trailing partial window is kept when ``keep_last`` (for
    evaluation, so that every token is scored once) and dropped otherwise.

    With ``shift``, every epoch after the first starts its windows ``offset(epoch)`` tokens into
    each stream, a number in ``[0, T)`` drawn from a generator seeded by the epoch (so a resumed
    run sees the same batches): the truncation points move from epoch to epoch instead of
    cutting the text at the same places every time.

    Args:
        ids: (L,) token ids.
        batch_size: B.
        seq_len: T.
        keep_last: also yield the last, shorter window.
        shift: move the windows by a per-epoch offset (training).

    Yields:
        ``(inputs (B, T), targets (B, T), first: bool)``.

    Example::

        >>> batches = StreamBatches(torch.arange(21), batch_size=2, seq_len=3)
        >>> x, y, first = next(iter(batches(0)))
        >>> x.tolist(), y.tolist(), first
        ([[0, 1, 2], [10, 11, 12]], [[1, 2, 3], [11, 12, 13]], True)
    """

    def __init__(
        self,
        ids: Tensor,
        batch_size: int,
        seq_len: int,
        keep_last: bool = False,
        shift: bool = False,
    ) -> None:
        if batch_size < 1 or seq_len < 1:
            raise RnnlabError(
                f"batch size and sequence length must be >= 1, got {batch_size} and {seq_len}"
            )
        per_stream = (len(ids) - 1) // batch_size
        steps = per_stream if keep_last else per_stream // seq_len * seq_len
        if steps < 1 or (not keep_last and steps < seq_len):
            raise RnnlabError(
                f"corpus too short: {len(ids)} tokens cannot fill one batch of {batch_size} "
                f"streams x {seq_len} steps (needs at least {batch_size * seq_len + 1} tokens); "
                "use a longer text or a smaller --batch / --seq-len"
            )
        n = per_stream * batch_size
        self.inputs = ids[:n].view(batch_size, per_stream)
        self.targets = ids[1 : n + 1].view(batch_size, per_stream)
        self.seq_len = seq_len
        self.n_batches = -(-steps // seq_len)
        self.shift = shift
        self.offset = 0

    def __len__(self) -> int:
        return self.n_batches

    def offset_of(self, epoch: int) -> int:
        """Where epoch ``epoch``'s windows start in each stream (0 without ``shift``)."""
        if not self.shift or epoch == 0:
            return 0
        g = torch.Generator().manual_seed(1_000_003 + epoch)
        return int(torch.randint(0, self.seq_len, (1,), generator=g))

    def __call__(self, epoch: int = 0) -> StreamBatches:
        """The batches of ``epoch``: this layout, its windows moved by :meth:`offset_of`."""
        offset = self.offset_of(epoch)
        if offset == self.offset:
            return self
        usable = self.inputs.shape[1] - offset
        if usable < self.seq_len:
            return self  # too short to shift and still fill a window
        shifted = copy.copy(self)
        shifted.offset = offset
        shifted.n_batches = usable // self.seq_len  # the partial window at the end is dropped
        return shifted

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, bool]]:
        T, start = self.seq_len, self.offset
        for i in range(self.n_batches):
            window = slice(start + i * T, start + (i + 1) * T)
            yield self.inputs[:, window], self.targets[:, window], i == 0


__all__ = [
    "DEFAULT_CORPUS",
    "UNK",
    "CharVocab",
    "StreamBatches",
    "Vocabulary",
    "WordVocab",
    "read_corpus",
    "split_ids",
    "vocab_from_meta",
]
