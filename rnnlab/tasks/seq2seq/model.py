r"""Many-to-many, different lengths: the encoder-decoder (Sutskever et al. 2014; Cho et al. 2014).

.. math::

    (h_1 \dots h_S), s_0 = \mathrm{Encoder}(x_1 \dots x_S), \quad
    s_t = \mathrm{Decoder}(E[y_{t-1}], s_{t-1}), \quad
    p(y_t \mid y_{<t}, x) = \mathrm{softmax}(W s_t + b)

The encoder's final state starts the decoder (a bidirectional encoder's two directions are
merged per layer by ``tanh(W [h_fwd; h_bwd])``). Training feeds the decoder the previous *gold*
token with probability ``teacher_forcing`` (else its own most likely one; in eval mode always
the gold one). Decoding, in eval mode: :meth:`Seq2Seq.greedy` (batched, on the one decode loop
:func:`rnnlab.tasks.decoding.generate`) and :meth:`Seq2Seq.beam_search`.

Optional attention (beyond the lectures): at every step a context vector
:math:`c_t = \sum_j \alpha_{tj} h_j` over the encoder outputs, with

- ``"bahdanau"`` (Bahdanau et al. 2015, additive): :math:`\alpha_{tj} \propto
  \exp v^\top \tanh(W s_{t-1} + U h_j)`; :math:`c_t` is fed into the step,
  :math:`s_t = \mathrm{Dec}([E[y_{t-1}]; c_t], s_{t-1})`, and :math:`p \propto \exp W[s_t; c_t]`.
- ``"luong"`` (Luong et al. 2015, "general"): :math:`\alpha_{tj} \propto \exp s_t^\top W_a h_j`
  after the step, :math:`\tilde s_t = \tanh(W_c [c_t; s_t])`, :math:`p \propto \exp W \tilde s_t`.
  Without input feeding the decoder runs over a whole teacher-forced target at once.

Shapes: N batch, S source time, T target time, V target vocabulary, H hidden size,
K encoder directions, E embedding size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnlab.core.state import State, hidden_part, map_state
from rnnlab.tasks.common import lengths_or_full, masked_cross_entropy, sequence_mask
from rnnlab.tasks.decoding import (
    Hypothesis,
    beam_search,
    collect,
    evaluating,
    forbid,
    generate,
)
from rnnlab.tasks.seq2seq.config import Seq2SeqConfig


class Memory(NamedTuple):
    """What the decoder attends to: encoder outputs (N, S, K*H), their projection for the
    attention's scores, and the source mask (N, S)."""

    keys: Tensor
    projected: Tensor | None
    mask: Tensor

    def expand(self, n: int) -> Memory:
        """The memory of a batch of one, repeated for n beams."""
        return Memory(*(None if t is None else t.expand(n, *t.shape[1:]) for t in self))


class BahdanauAttention(nn.Module):
    """Additive attention: ``score(q, k) = v^T tanh(W q + U k)``; queries the previous state."""

    feeds_input = True

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.key = nn.Linear(key_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def project(self, keys: Tensor) -> Tensor:
        return self.key(keys)

    def scores(self, query: Tensor, memory: Memory) -> Tensor:  # (N, Tq, S)
        q = self.query(query).unsqueeze(2)  # (N, Tq, 1, A)
        return self.v(torch.tanh(q + memory.projected.unsqueeze(1))).squeeze(-1)


class LuongAttention(nn.Module):
    """Multiplicative ("general") attention: ``score(q, k) = q^T W_a k``; queries the new state."""

    feeds_input = False

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.key = nn.Linear(key_size, query_size, bias=False)

    def project(self, keys: Tensor) -> Tensor:
        return self.key(keys)

    def scores(self, query: Tensor, memory: Memory) -> Tensor:  # (N, Tq, S)
        return query @ memory.projected.transpose(1, 2)


#: The attention mechanisms, by the name the config stores (see ``ATTENTION_NAMES``).
ATTENTIONS: dict[str, type[nn.Module]] = {"bahdanau": BahdanauAttention, "luong": LuongAttention}


def attend(attention: nn.Module, query: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
    """Context (N, Tq, K*H) and weights (N, Tq, S) for queries (N, Tq, H); padding excluded."""
    scores = attention.scores(query, memory)
    scores = scores.masked_fill(~memory.mask.unsqueeze(1), float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ memory.keys, weights


class Seq2Seq(nn.Module):
    """Encoder-decoder with optional attention, described by a :class:`Seq2SeqConfig`.

    Example::

        >>> from rnnlab.core.registry import RecurrentConfig
        >>> config = Seq2SeqConfig(20, 20, 16, RecurrentConfig("gru", 32), attention="luong")
        >>> model = Seq2Seq(config)
        >>> src, lengths = torch.randint(4, 20, (2, 5)), torch.tensor([5, 3])
        >>> tgt = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])  # <sos> ... <eos>, padded
        >>> logits, loss = model(src, lengths, tgt, torch.tensor([4, 3]))
        >>> logits.shape  # one step per target token after <sos>
        torch.Size([2, 3, 20])
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        enc = config.encoder
        H, K = enc.hidden_size, (2 if enc.bidirectional else 1)
        self.src_embedding = nn.Embedding(config.src_vocab_size, config.embed_dim, padding_idx=0)
        self.tgt_embedding = nn.Embedding(config.tgt_vocab_size, config.embed_dim, padding_idx=0)
        self.encoder = enc.build(config.embed_dim, batch_first=True)
        self.attention = (
            ATTENTIONS[config.attention](H, K * H, H) if config.attention is not None else None
        )
        feeds = self.attention is not None and self.attention.feeds_input
        dec_input = config.embed_dim + (K * H if feeds else 0)
        self.decoder = enc.replace(bidirectional=False).build(dec_input, batch_first=True)
        # merges the two directions of a bidirectional encoder's final state, per layer
        self.bridge_h = nn.Linear(2 * H, H) if K == 2 else None
        self.bridge_c = nn.Linear(2 * H, H) if K == 2 and self.decoder.state_is_tuple else None
        self.combine = nn.Linear(K * H + H, H) if config.attention == "luong" else None
        features = H + (K * H if config.attention == "bahdanau" else 0)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(features, config.tgt_vocab_size)

    # -- encoder ----------------------------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Tensor | None = None) -> tuple[Memory, State]:
        """Encoder outputs as a :class:`Memory`, and the decoder's initial state."""
        src_lengths = lengths_or_full(src, src_lengths)
        out, state = self.encoder(self.dropout(self.src_embedding(src)), lengths=src_lengths)
        projected = self.attention.project(out) if self.attention is not None else None
        memory = Memory(out, projected, sequence_mask(src_lengths, src.shape[1]))
        if self.bridge_h is not None:
            state = self._bridge(state)
        return memory, state

    def _bridge(self, state: State) -> State:
        """(L*2, N, H) per part -> (L, N, H): ``tanh(W_h [fwd; bwd])`` for h, ``W_c [fwd; bwd]``
        for the LSTM's c."""
        L, H = self.config.encoder.num_layers, self.config.encoder.hidden_size
        merges = iter([(self.bridge_h, True), (self.bridge_c, False)])

        def merge(x: Tensor) -> Tensor:
            linear, squash = next(merges)
            both = x.reshape(L, 2, -1, H).permute(0, 2, 1, 3).reshape(L, -1, 2 * H)  # (L, N, 2H)
            y = linear(both)
            return torch.tanh(y) if squash else y

        return map_state(merge, state)

    # -- decoder ----------------------------------------------------------------------------
    def _features(self, out: Tensor, context: Tensor | None) -> Tensor:
        if self.config.attention == "bahdanau":
            return torch.cat([out, context], dim=-1)
        if self.config.attention == "luong":
            return torch.tanh(self.combine(torch.cat([context, out], dim=-1)))
        return out

    def step(self, prev: Tensor, state: State, memory: Memory) -> tuple[Tensor, State]:
        """One decoder step: previous tokens (N,) -> next-token logits (N, V) and new state."""
        logits, state, _ = self.attending_step(prev, state, memory)
        return logits, state

    def attending_step(
        self, prev: Tensor, state: State, memory: Memory
    ) -> tuple[Tensor, State, Tensor | None]:
        """:meth:`step`, also returning the attention weights over the source (N, S) (None
        without attention)."""
        x = self.dropout(self.tgt_embedding(prev)).unsqueeze(1)  # (N, 1, E)
        context = weights = None
        if self.attention is not None and self.attention.feeds_input:
            top = hidden_part(state)[-1]  # (N, H)
            context, weights = attend(self.attention, top.unsqueeze(1), memory)
            x = torch.cat([x, context], dim=-1)
        out, state = self.decoder(x, state)
        if self.attention is not None and not self.attention.feeds_input:
            context, weights = attend(self.attention, out, memory)
        logits = self.head(self.dropout(self._features(out, context)))
        return logits.squeeze(1), state, None if weights is None else weights.squeeze(1)

    @torch.no_grad()
    def attention_map(self, src: Tensor, target: Sequence[int]) -> Tensor | None:
        """The attention weights (T, S) of each step of decoding ``target`` (ids, ``<eos>``
        included if wanted) from the source ``src`` (S,), teacher-forced; None without
        attention. Eval mode, on the model's device."""
        if self.attention is None:
            return None
        device = self.head.weight.device
        with evaluating(self):
            memory, state = self.encode(src.to(device).unsqueeze(0))
            prev = torch.tensor([self.config.sos_id], device=device)
            rows = []
            for token in target:
                _, state, weights = self.attending_step(prev, state, memory)
                rows.append(weights[0])
                prev = torch.tensor([token], device=device)
            return torch.stack(rows) if rows else torch.zeros(0, src.shape[0], device=device)

    def _teacher_forced(
        self, inputs: Tensor, lengths: Tensor, state: State, memory: Memory
    ) -> Tensor:
        """Logits (N, T, V) given the gold previous tokens ``inputs`` (N, T)."""
        ratio = self.config.teacher_forcing if self.training else 1.0
        if ratio == 1.0 and (self.attention is None or not self.attention.feeds_input):
            out, _ = self.decoder(self.dropout(self.tgt_embedding(inputs)), state, lengths=lengths)
            context = attend(self.attention, out, memory)[0] if self.attention else None
            return self.head(self.dropout(self._features(out, context)))
        logits = []
        prev = inputs[:, 0]
        for t in range(inputs.shape[1]):
            step_logits, state = self.step(prev, state, memory)
            logits.append(step_logits)
            if t + 1 < inputs.shape[1]:
                prev = inputs[:, t + 1]
                if ratio < 1.0:
                    own = step_logits.detach().argmax(dim=-1)
                    gold = torch.rand(prev.shape, device=prev.device) < ratio
                    prev = torch.where(gold, prev, own)
        return torch.stack(logits, dim=1)

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor | None = None,
        tgt: Tensor | None = None,
        tgt_lengths: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Args: src (N, S) ids, right-padded; src_lengths (N,); tgt (N, T+1) =
        ``<sos>`` + target + ``<eos>``, right-padded; tgt_lengths (N,) counting both.

        Returns: ``(logits (N, T, V), loss)``: the predictions of ``tgt[:, 1:]`` and their mean
        cross-entropy over the valid steps. Without ``tgt``: the logits of greedy decoding
        (up to 50 steps) and None.
        """
        memory, state = self.encode(src, src_lengths)
        if tgt is None:
            return self._greedy(memory, state, 50)[1], None
        tgt_lengths = lengths_or_full(tgt, tgt_lengths)
        too_short = "each target needs at least <sos> and <eos> (length >= 2)"
        if torch.compiler.is_compiling():  # checked by the compiled graph, when it runs
            torch._assert_async((tgt_lengths >= 2).all(), too_short)
        elif int(tgt_lengths.min()) < 2:
            raise ValueError(too_short)
        logits = self._teacher_forced(tgt[:, :-1], tgt_lengths - 1, state, memory)
        return logits, masked_cross_entropy(logits, tgt[:, 1:], tgt_lengths - 1)

    # -- decoding ---------------------------------------------------------------------------
    @property
    def _never(self) -> list[int]:
        return [0, self.config.sos_id]  # <pad>, <sos>

    def _greedy(self, memory: Memory, state: State, max_len: int) -> tuple[list[list[int]], Tensor]:
        """Greedy decoding on :func:`~rnnlab.tasks.decoding.generate`: the ids of each row
        (without ``<eos>``) and the logits of every step (N, T', V), T' <= ``max_len``."""
        seen: list[Tensor] = []

        def step(prev: Tensor, state: State) -> tuple[Tensor, State]:
            logits, state = self.step(prev, state, memory)
            seen.append(logits)
            return logits, state

        N = memory.keys.shape[0]
        sos = torch.full((N,), self.config.sos_id, dtype=torch.long, device=memory.keys.device)
        first, state = step(sos, state)
        eos = self.config.eos_id
        tokens = generate(step, first, state, max_len, 0.0, eos=eos, never=self._never)
        ids = collect(tokens, eos)  # runs the loop: every step's logits are in ``seen`` after
        return ids, torch.stack(seen, dim=1)

    @torch.no_grad()
    def greedy(
        self, src: Tensor, src_lengths: Tensor | None = None, max_len: int = 50
    ) -> list[list[int]]:
        """The most likely token at every step, for a batch: ids without ``<eos>``.

        Runs in eval mode (no dropout)."""
        with evaluating(self):
            memory, state = self.encode(src, src_lengths)
            return self._greedy(memory, state, max_len)[0]

    @torch.no_grad()
    def beam_search(
        self,
        src: Tensor,
        beam_size: int = 5,
        max_len: int = 50,
        length_penalty: float = 1.0,
    ) -> list[Hypothesis]:
        """Beam search for one source sequence ``src`` (S,): hypotheses, best first.

        Runs in eval mode, on the model's device."""
        device = self.head.weight.device
        with evaluating(self):
            memory, state = self.encode(src.to(device).unsqueeze(0))

            def step(prev: Tensor, state: State) -> tuple[Tensor, State]:
                logits, state = self.step(prev, state, memory.expand(prev.shape[0]))
                return forbid(logits.log_softmax(dim=-1), self._never), state

            def reorder(state: State, index: Tensor) -> State:  # the state's batch is dim 1
                return map_state(lambda s: s.index_select(1, index), state)

            c = self.config
            return beam_search(
                step, state, c.sos_id, c.eos_id, beam_size, max_len, length_penalty, reorder,
                device=device,
            )  # fmt: skip

    @torch.no_grad()
    def sequence_log_prob(
        self,
        src: Tensor,
        src_lengths: Tensor | None,
        tgt: Tensor,
        tgt_lengths: Tensor | None,
    ) -> Tensor:
        """log p(target, ``<eos>`` | source) per pair (N,); ``tgt`` as in :meth:`forward`.
        Call it in eval mode (training mode may feed the model its own predictions)."""
        tgt_lengths = lengths_or_full(tgt, tgt_lengths)
        logits, _ = self(src, src_lengths, tgt, tgt_lengths)
        logp = logits.log_softmax(dim=-1).gather(-1, tgt[:, 1:].unsqueeze(-1)).squeeze(-1)
        return (logp * sequence_mask(tgt_lengths - 1, logp.shape[1])).sum(dim=1)


__all__ = [
    "ATTENTIONS",
    "BahdanauAttention",
    "LuongAttention",
    "Memory",
    "Seq2Seq",
    "Seq2SeqConfig",
    "attend",
]
