"""Text corpora for language models: reading, vocabularies, contiguous splits, TBPTT batches.

* :func:`read_corpus` reads a UTF-8 file with one-line errors for every way it can be wrong.
* :func:`build_vocab` makes the :class:`~rnnlab.data.vocab.Vocab` of a text: its characters, or
  its most frequent words and punctuation with ``<unk>`` (tokenizers ``chars`` and ``words`` of
  :mod:`rnnlab.data.tokenize`); :func:`encode_text` maps a text to ids.
* :func:`split_ids` cuts a corpus contiguously: the first 90% train, the rest validation.
* :class:`StreamBatches` lays a corpus out as B parallel contiguous streams and walks them T
  steps at a time, for truncated backpropagation through time: batch ``i`` of stream ``b``
  continues exactly where batch ``i - 1`` of the same stream stopped.

Shapes: B streams (batch), T steps per batch.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from rnnlab.data.tokenize import read_text, shown
from rnnlab.data.tokenize import tokenizer as get_tokenizer
from rnnlab.data.vocab import UNK, Vocab
from rnnlab.errors import RnnlabError

DEFAULT_CORPUS = "tinyshakespeare.txt"


def read_corpus(path: Path | str | None = None) -> str:
    """The text of a UTF-8 file; the bundled tiny-shakespeare when ``path`` is None.

    Raises:
        RnnlabError: missing file, a directory, empty, or not UTF-8 (see
            :func:`~rnnlab.data.tokenize.read_text`).
    """
    if path is None:
        from rnnlab.data import bundled

        path = bundled(DEFAULT_CORPUS)
    text = read_text(path)
    if not text.strip():
        raise RnnlabError(f"{shown(path)} is empty")
    return text


def build_vocab(text: str, tokenizer: str = "chars", max_size: int = 10000) -> Vocab:
    """The vocabulary of a language model of ``text``.

    ``chars``: every distinct character, sorted, no special token (an unknown character is an
    error, naming it). ``words``: words, punctuation and line breaks, the ``max_size - 1`` most
    frequent (ties alphabetical) after ``<unk>``, which stands for every other token.

    Example::

        >>> build_vocab("hello").itos
        ['e', 'h', 'l', 'o']
    """
    if tokenizer == "chars":
        return Vocab(sorted(set(text)), pad=None, sos=None, eos=None, unk=None)
    if max_size < 2:
        raise RnnlabError(f"word vocabulary size must be >= 2, got {max_size}")
    counts = Counter(get_tokenizer(tokenizer).split(text))
    common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max_size - 1]
    return Vocab([UNK] + [t for t, _ in common if t != UNK], pad=None, sos=None, eos=None, unk=UNK)


def encode_text(vocab: Vocab, text: str, tokenizer: str = "chars") -> Tensor:
    """(L,) LongTensor of the ids of ``text``'s tokens; an error naming unknown characters."""
    return torch.tensor(vocab.encode(get_tokenizer(tokenizer).split(text)), dtype=torch.long)


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

    def shard(self, rank: int, world: int) -> StreamBatches:
        """Rank ``rank``'s streams (a contiguous part of the B, as even as possible), for
        ``world`` processes training together: the same windows, fewer rows."""
        B = self.inputs.shape[0]
        if not 0 <= rank < world:
            raise RnnlabError(f"rank {rank} is not in [0, {world})")
        if world > B:
            raise RnnlabError(
                f"--batch {B} is smaller than the {world} processes: each needs at least one "
                "of the parallel streams"
            )
        rows = slice(rank * B // world, (rank + 1) * B // world)
        mine = copy.copy(self)
        mine.inputs, mine.targets = self.inputs[rows], self.targets[rows]
        return mine

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, bool]]:
        T, start = self.seq_len, self.offset
        for i in range(self.n_batches):
            window = slice(start + i * T, start + (i + 1) * T)
            yield self.inputs[:, window], self.targets[:, window], i == 0


__all__ = [
    "DEFAULT_CORPUS",
    "StreamBatches",
    "build_vocab",
    "encode_text",
    "read_corpus",
    "split_ids",
]
