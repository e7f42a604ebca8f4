"""What the page shows, computed from a loaded run: every activation of a passage (with the
finder's statistics of :mod:`rnnlab.viz.finder`), a sample with one unit's activation, an
encoder-decoder's attention and beam, a classifier's evolving prediction, training curves.

Shapes: T passage length (tokens), H hidden units.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnlab.errors import RnnlabError
from rnnlab.tasks.runner import Run
from rnnlab.viz.finder import annotations, block_range, rank_all, saturation

#: the longest passage or prime a request may send (characters)
MAX_TEXT = 10_000
#: the longest sample a request may ask for
MAX_SAMPLE = 2_000
#: the most beams a translation may ask for
MAX_BEAM = 10
#: the default passage: the first PASSAGE characters of the validation split
PASSAGE = 2_000

#: gates in the order the lectures write them (LSTM i f g o, GRU r z, ...); others after
GATE_ORDER = ("i", "f", "g", "o", "r", "z", "u", "n")


# -- the language model ------------------------------------------------------------------------
@dataclass
class Passage:
    """Every activation of a passage, and what the page shows of it."""

    id: str
    tokens: list[str]
    blocks: dict[tuple[int, str], np.ndarray]  # (layer, gate) -> (T, H)
    summary: dict[str, Any] = field(default_factory=dict)


def _tokenizer(run: Run) -> str:
    return str(run.meta.get("data", {}).get("tokenizer", "chars"))


def split(run: Run, text: str) -> list[str]:
    """The tokens of ``text`` as the run's language model reads it."""
    from rnnlab.data.tokenize import tokenizer

    return tokenizer(_tokenizer(run)).split(text)


def default_passage(run: Run, length: int = PASSAGE) -> str:
    """The first ``length`` characters of the run's validation split (its corpus's last 10%),
    or of the bundled text when the corpus is gone."""
    from rnnlab.tasks.lm.data import read_corpus

    source = str(run.meta.get("data", {}).get("source", ""))
    path = None if source.startswith("bundled:") or not source else source
    try:
        text = read_corpus(path)
    except RnnlabError:
        text = read_corpus(None)
    fraction = run.meta.get("data", {}).get("val_fraction", 0.1)
    fraction = fraction if isinstance(fraction, float) and 0 < fraction < 1 else 0.1
    start = int(len(text) * (1 - fraction))
    return text[start : start + length]


def _gate_order(gate: str) -> tuple[int, str]:
    """Sort key: the lectures' order (:data:`GATE_ORDER`), other gates after, by name."""
    return (GATE_ORDER.index(gate) if gate in GATE_ORDER else len(GATE_ORDER), gate)


def layer_gates(run: Run) -> list[dict[str, Any]]:
    """The recurrent layers of a language model: name, size and the gates the page can show
    (one recorded step tells which gates the cell reports)."""
    from rnnlab.analysis.diagnostics import record

    rnn = run.model.rnn
    with torch.no_grad(), record(run.model, gates=True) as traces:
        run.model(torch.zeros(1, 1, dtype=torch.long, device=run.device))
    found = list(traces[0].gates[0]) if traces and traces[0].gates else []
    gates = sorted(found, key=_gate_order) + (["c", "h"] if rnn.state_is_tuple else ["h"])
    return [
        {"name": f"layer{layer}", "size": rnn.hidden_size, "gates": gates}
        for layer in range(rnn.num_layers)
    ]


def analyse(run: Run, text: str, passage_id: str) -> Passage:
    """Run the language model over ``text`` once, recording every gate and state of every
    layer (forward direction), the loss of each token and the top 5 after each."""
    started = time.perf_counter()
    if not text:
        raise RnnlabError("the passage is empty")
    if len(text) > MAX_TEXT:
        raise RnnlabError(f"the passage has {len(text)} characters, more than {MAX_TEXT}")
    vocab = run.vocabs["tokens"]
    tokens = split(run, text)
    if not tokens:
        raise RnnlabError("the passage holds no tokens")
    ids = torch.tensor(vocab.encode(tokens), device=run.device).unsqueeze(0)  # (1, T)
    model = run.model
    replayed = _lstm_replay(model, ids)
    if replayed is not None:
        logits, blocks = replayed
    else:
        logits, blocks = _recorded(model, ids)
    logp = logits[0].float().log_softmax(-1)  # (T, V)
    loss = [None] + [float(-logp[t - 1, ids[0, t]]) for t in range(1, len(tokens))]
    p, top = logp.exp().topk(min(5, logp.shape[-1]), dim=-1)
    top5 = [
        [[vocab.itos[int(i)], round(float(q), 4)] for q, i in zip(pr, ix, strict=True)]
        for pr, ix in zip(p, top, strict=True)
    ]
    marks = annotations(tokens)
    finder = rank_all(blocks, marks)
    sigmoid = {
        key: values
        for key, values in blocks.items()
        if key[1] not in ("h", "c") and values.size and values.min() >= 0.0
    }
    sat: dict[str, dict[str, Any]] = {}
    for layer, gate in sorted(sigmoid, key=lambda key: (key[0], _gate_order(key[1]))):
        sat.setdefault(f"layer{layer}", {})[gate] = saturation(sigmoid[(layer, gate)])
    summary = {
        "id": passage_id,
        "chars": tokens,
        "loss": [None if v is None else round(v, 4) for v in loss],
        "top5": top5,
        "annotations": {k: v.tolist() for k, v in marks.items()},
        "finder": finder,
        "saturation": sat,
        "blocks": [
            {"layer": layer, "gate": gate, **dict(zip(("lo", "hi"), block_range(v), strict=True))}
            for (layer, gate), v in sorted(blocks.items())
        ],
        "mean_loss": round(float(np.mean([v for v in loss if v is not None] or [math.nan])), 4),
    }
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return Passage(passage_id, tokens, blocks, summary)


def _recorded(model: Any, ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Logits (1, T, V) and every gate and state of every layer (forward direction), recorded
    step by step (the reference loop: any cell)."""
    from rnnlab.analysis.diagnostics import record
    from rnnlab.core.state import state_parts

    with torch.no_grad(), record(model, gates=True) as traces:
        (logits, final), _ = model(ids)
    blocks: dict[tuple[int, str], np.ndarray] = {}
    finals = state_parts(final)  # (h,) or (h, c), each (L, 1, H)
    for layer, trace in enumerate(t for t in traces if not t.name.endswith(".reverse")):
        for gate in trace.gates[0] if trace.gates else {}:
            blocks[(layer, gate)] = (
                torch.stack([g[gate][0] for g in trace.gates]).float().cpu().numpy()
            )
        # the state after step t is the one entering step t + 1; the last is the final state
        entering = [state_parts(s) for s in trace.states[1:]]
        names = ["h", "c"] if len(finals) == 2 else ["h"]
        for k, name in enumerate(names):
            after = [parts[k][0] for parts in entering] + [finals[k][layer, 0]]
            blocks[(layer, name)] = torch.stack(after).float().cpu().numpy()
    return logits, blocks


def _lstm_replay(model: Any, ids: torch.Tensor) -> tuple[torch.Tensor, dict] | None:
    """For the standard LSTM (torch's cell, one direction): each layer's outputs from its
    fused kernel, then every gate of every step at once from them (h_{t-1} known: two matrix
    products) and c by its elementwise recurrence; ~5x faster than recording each step. None
    for any other model (use :func:`_recorded`)."""
    from rnnlab.core.backend import run_torch_kernel

    rnn = getattr(model, "rnn", None)
    if (
        getattr(model, "embedding", None) is None
        or rnn is None
        or rnn.bidirectional
        or rnn._torch_kernel()[0] != "LSTM"
        or not rnn.cells[0].bias
    ):
        return None
    blocks: dict[tuple[int, str], np.ndarray] = {}
    with torch.no_grad():
        x = model.embedding(ids[0])  # (T, D)
        H = rnn.hidden_size
        for layer, cell in enumerate(rnn.cells):
            weights = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
            out, _ = run_torch_kernel(
                "LSTM", x.unsqueeze(1), None, None, weights, True, 1, 0.0, False, False, H
            )
            h = out[:, 0]  # (T, H)
            h_prev = torch.cat([h.new_zeros(1, H), h[:-1]])
            a = cell.input_projection(x) + cell.recurrent_projection(h_prev)  # (T, 4H)
            a_i, a_f, a_g, a_o = a.chunk(4, dim=-1)
            i, f, g, o = a_i.sigmoid(), a_f.sigmoid(), a_g.tanh(), a_o.sigmoid()
            ig = i * g
            c = torch.empty_like(ig)
            c_t = ig.new_zeros(H)
            for t in range(len(ig)):  # T elementwise steps, no matrix product
                c_t = torch.addcmul(ig[t], f[t], c_t)
                c[t] = c_t
            for name, values in (("i", i), ("f", f), ("g", g), ("o", o), ("c", c), ("h", h)):
                blocks[(layer, name)] = values.float().cpu().numpy()
            x = h
        logits = model.decoder(x).unsqueeze(0)  # (1, T, V)
    return logits, blocks


def sample(
    run: Run,
    prime: str,
    length: int,
    temperature: float,
    top_k: int | None,
    layer: int,
    gate: str,
    unit: int,
    seed: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The prime's tokens, then ``length`` sampled ones, each with the chosen unit's activation
    after reading it: ``{"char", "value", "prime"}``. States (h, c) come from the fast path;
    gates are recorded step by step."""
    from rnnlab.analysis.diagnostics import record
    from rnnlab.core.state import state_parts
    from rnnlab.tasks.common import seeded_generator
    from rnnlab.tasks.decoding import evaluating, sample_next

    vocab = run.vocabs["tokens"]
    tokens = split(run, prime)
    if not tokens:
        raise RnnlabError("the prime holds no tokens")
    ids = torch.tensor(vocab.encode(tokens), device=run.device)
    model = run.model
    state_gate = gate in ("h", "c")
    index = 1 if gate == "c" else 0

    def run_model(x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any, list[float]]:
        if state_gate:  # states after each step: run one token at a time (the fast single step)
            values = []
            logits = None
            for t in range(x.shape[1]):
                logits, state = model.step(x[:, t], state)
                values.append(float(state_parts(state)[index][layer, 0, unit]))
            return logits, state, values
        with record(model, gates=True) as traces:
            (logits, state), _ = model(x, state=state)
        trace = [t for t in traces if not t.name.endswith(".reverse")][layer]
        return logits[:, -1], state, [float(g[gate][0, unit]) for g in trace.gates]

    generator = seeded_generator(run.device, seed)
    with torch.no_grad(), evaluating(model):
        logits, state, values = run_model(ids.unsqueeze(0), None)
        for tok, value in zip(tokens, values, strict=True):
            yield {"char": tok, "value": round(value, 4), "prime": True}
        for _ in range(length):
            token = sample_next(logits, temperature, top_k, generator)
            logits, state, values = run_model(token.view(1, 1), state)
            yield {"char": vocab.itos[int(token)], "value": round(values[-1], 4), "prime": False}


# -- the other tasks -------------------------------------------------------------------------------
def translate(run: Run, text: str, beam: int) -> dict[str, Any]:
    """Greedy translation with its attention matrix, and the beam's hypotheses with scores."""
    from rnnlab.data.tokenize import tokenizer

    name = run.meta.get("data", {}).get("tokenizer", "sentence")
    tokens = tokenizer(name).split(text)
    if not tokens:
        raise RnnlabError("the sentence holds no tokens")
    source, target = run.vocabs["source"], run.vocabs["target"]
    src = torch.tensor(source.encode(tokens), device=run.device)
    model = run.model
    greedy = model.greedy(src.unsqueeze(0), max_len=50)[0]
    shown = [*greedy, target.eos_id]
    attention = model.attention_map(src, shown)
    hyps = model.beam_search(src, beam, 50)
    return {
        "source": tokens,
        "target": [target.itos[i] for i in shown],
        "attention": None if attention is None else np.round(attention.cpu().numpy(), 4).tolist(),
        "hypotheses": [
            {"tokens": target.decode(h.tokens), "score": round(float(h.score), 4)} for h in hyps
        ],
    }


def classify(run: Run, text: str) -> dict[str, Any]:
    """The class probabilities after each prefix of ``text`` (every character read so far)."""
    from rnnlab.data.batching import pad_batch
    from rnnlab.tasks.classify.data import characters

    chars = characters(text)
    if not chars:
        raise RnnlabError("the text is empty")
    vocab, labels = run.vocabs["tokens"], run.vocabs["labels"]
    ids = vocab.encode(chars)
    tokens, lengths = pad_batch([ids[: t + 1] for t in range(len(ids))])
    probs = run.model.predict_proba(tokens.to(run.device), lengths).float().cpu().numpy()
    return {
        "labels": list(labels.itos),
        "chars": chars,
        "probs": np.round(probs, 4).tolist(),
        "prediction": labels.itos[int(probs[-1].argmax())],
    }


def curves(out_dir: Path) -> dict[str, dict[str, list[float]]]:
    """Training and validation loss against step and time, from the run's CSV files (their
    valid rows, as a resumed run reads them: :func:`rnnlab.train.runlog.read_rows`)."""
    from rnnlab.train.runlog import read_rows

    result = {}
    for key, name, column in (
        ("train", "metrics.csv", "train_loss"),
        ("eval", "eval.csv", "val_loss"),
    ):
        series: dict[str, list[float]] = {"step": [], "elapsed_s": [], "loss": []}
        path = out_dir / name
        rows = read_rows(path, column, sys.maxsize) if path.is_file() else []
        for row in rows:
            try:
                elapsed = float(row.get("elapsed_s") or "")
            except ValueError:
                continue
            if math.isfinite(elapsed):
                series["step"].append(int(row["step"]))
                series["elapsed_s"].append(elapsed)
                series["loss"].append(float(row[column]))
        result[key] = series
    return result
