"""``rnnlab train seq2seq`` and ``rnnlab translate``: the encoder-decoder.

With no ``--data``: the bundled 5,000 English-French pairs (Tatoeba, CC-BY 2.0 France), a
held-out test split (no test source sentence is seen in training), test BLEU (sacrebleu) with
greedy decoding and beam search. ``--synthetic reverse|sort`` trains on digit sequences instead,
a check that the model and decoders work which takes seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rnnlab.cli.common import (
    add_model_options,
    add_trainer_options,
    nonneg_float,
    positive_int,
    resolve_device,
)
from rnnlab.cli.task_common import (
    add_split_options,
    chunks,
    collated,
    default_limits,
    describe_rnn,
    finish,
    load_task_model,
    mean_loss,
    run_training,
)
from rnnlab.errors import RnnlabError

MODEL_DEFAULTS = {"cell": "gru", "layers": 1, "hidden": 256, "dropout": 0.0}
TRAIN_DEFAULTS = {"batch": 32, "lr": 2e-3, "schedule": "cosine", "eval_every": 250}
EPOCHS, BUDGET = 30, 240.0
SYNTHETIC_STEPS = 600


def register(commands: argparse._SubParsersAction, train: argparse._SubParsersAction) -> None:
    from rnnlab.tasks.seq2seq.data import DIGIT_TASKS

    p = train.add_parser(
        "seq2seq",
        help="encoder-decoder on sentence pairs (default: English -> French)",
        description="Train an encoder-decoder (optionally with attention). With no arguments: "
        "the bundled 5,000 English-French pairs, a GRU, up to "
        f"{EPOCHS} epochs or {BUDGET:g}s; test BLEU with greedy and beam-search decoding.",
    )
    g = p.add_argument_group("data")
    src = g.add_mutually_exclusive_group()
    src.add_argument(
        "--data",
        metavar="PAIRS.tsv",
        help="source<TAB>target lines (default: the bundled eng-fra-5k.tsv)",
    )
    src.add_argument(
        "--synthetic",
        choices=DIGIT_TASKS,
        help=f"reverse or sort digit sequences instead ({SYNTHETIC_STEPS} steps by default)",
    )
    g.add_argument(
        "--digits", type=positive_int, default=5, help="--synthetic: sequence length (5)"
    )
    g.add_argument("--swap", action="store_true", help="translate the second column into the first")
    g.add_argument(
        "--min-freq",
        type=positive_int,
        default=1,
        help="tokens seen fewer times in training become <unk> (default 1)",
    )
    add_split_options(p)
    add_model_options(p, MODEL_DEFAULTS, bidirectional=True)
    m = p.add_argument_group("encoder-decoder")
    m.add_argument("--embedding", type=positive_int, default=128, help="embedding size (128)")
    m.add_argument(
        "--attention",
        nargs="?",
        const="bahdanau",
        choices=("bahdanau", "luong"),
        default=None,
        help="attention decoder: bahdanau (additive, the default of a bare --attention) or "
        "luong (multiplicative); none by default",
    )
    m.add_argument(
        "--teacher-forcing",
        type=nonneg_float,
        default=1.0,
        help="probability of feeding the gold previous token in training (default 1)",
    )
    m.add_argument(
        "--beam", type=positive_int, default=5, help="beam size of the final test decoding (5)"
    )
    m.add_argument("--max-len", type=positive_int, default=30, help="longest output (30)")
    add_trainer_options(p, TRAIN_DEFAULTS)
    p.set_defaults(func=train_seq2seq)

    t = commands.add_parser(
        "translate",
        help="translate sentences with an encoder-decoder checkpoint",
        description='e.g. `rnnlab translate runs/seq2seq "i am cold ."` (greedy) or with --beam 5.',
    )
    t.add_argument("checkpoint", metavar="CKPT", help="a checkpoint or run directory")
    t.add_argument("sentences", nargs="+", metavar="SENTENCE", help="sentences to translate")
    t.add_argument("--beam", type=positive_int, default=1, help="beam size; 1 = greedy (1)")
    t.add_argument(
        "--length-penalty",
        type=nonneg_float,
        default=1.0,
        help="beam score = log p / length^alpha; 0 = raw log-probability (1.0)",
    )
    t.add_argument("--max-len", type=positive_int, default=50, help="longest output (50)")
    t.add_argument("--nbest", type=positive_int, default=1, help="beam: show the N best (1)")
    t.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    t.set_defaults(func=translate_cmd)


def _tokenizer(kind: str):
    from rnnlab.tasks.seq2seq.data import tokenize

    return str.split if kind == "whitespace" else tokenize


def _load_pairs(args: argparse.Namespace):
    from rnnlab.data import bundled
    from rnnlab.tasks.seq2seq.data import Pair, digit_pairs, read_pairs, split_pairs

    if args.synthetic:
        n = 6000
        pairs = digit_pairs(args.synthetic, n, args.digits, args.digits, seed=args.split_seed)
        test = digit_pairs(args.synthetic, 500, args.digits, args.digits, seed=args.split_seed + 1)
        val = digit_pairs(args.synthetic, 300, args.digits, args.digits, seed=args.split_seed + 2)
        return pairs, val, test, f"synthetic:{args.synthetic}{args.digits}", "whitespace"
    path = Path(args.data) if args.data else bundled("eng-fra-5k.tsv")
    pairs = read_pairs(path)
    if args.swap:
        pairs = [Pair(p.target, p.source, p.extra) for p in pairs]
    train, val, test = split_pairs(pairs, (args.val_fraction, args.test_fraction), args.split_seed)
    if not val or not test:
        raise RnnlabError(f"{path}: too few pairs for a validation and a test split")
    source = str(path.resolve()) if args.data else "bundled:eng-fra-5k.tsv"
    return train, val, test, source + (" (swapped)" if args.swap else ""), "words"


def train_seq2seq(args: argparse.Namespace) -> int:
    from rnnlab.cli.common import recurrent_config_from_args
    from rnnlab.data.vocab import Vocab, pad_batch
    from rnnlab.tasks.metrics import bleu, exact_match
    from rnnlab.tasks.seq2seq.model import Seq2Seq, Seq2SeqConfig

    if args.teacher_forcing > 1:
        raise RnnlabError(f"--teacher-forcing must be in [0, 1], got {args.teacher_forcing}")
    train, val, test, source, tokenizer = _load_pairs(args)
    tok = _tokenizer(tokenizer)
    src_vocab = Vocab.build((tok(p.source) for p in train), min_freq=args.min_freq)
    tgt_vocab = Vocab.build((tok(p.target) for p in train), min_freq=args.min_freq)

    def collate(items: list) -> tuple:
        src = pad_batch([src_vocab.encode(tok(p.source)) or [src_vocab.unk_id] for p in items])
        tgt = pad_batch([tgt_vocab.encode(tok(p.target), sos=True, eos=True) for p in items])
        return (*src, *tgt)

    device = resolve_device(args)
    rnn = recurrent_config_from_args(args, input_size=args.embedding)
    config = Seq2SeqConfig(
        len(src_vocab),
        len(tgt_vocab),
        args.embedding,
        rnn,
        attention=args.attention,
        dropout=args.dropout,
        teacher_forcing=args.teacher_forcing,
        sos_id=tgt_vocab.sos_id,
        eos_id=tgt_vocab.eos_id,
    )
    torch.manual_seed(args.seed)
    model = Seq2Seq(config).to(device)
    meta = {
        **model.to_meta(),
        "src_vocab": src_vocab.to_meta(),
        "tgt_vocab": tgt_vocab.to_meta(),
        "tokenizer": tokenizer,
        "data": {"path": source},
    }
    val_batches = collated(val, collate, 128)

    def decode_all(model: Seq2Seq, pairs: list, max_len: int) -> list[list[str]]:
        hyps = []
        for chunk in chunks(pairs, 256):
            src, src_len, *_ = collate(chunk)
            ids = model.greedy(src.to(device), src_len, max_len)
            hyps += [tgt_vocab.decode(h) for h in ids]
        return hyps

    def evaluate(model: Seq2Seq) -> dict[str, float]:
        loss = mean_loss(model, val_batches, lambda b: int((b[3] - 1).sum()), device)
        hyps = decode_all(model, val, args.max_len)
        refs = [tok(p.target) for p in val]
        return {
            "val_loss": loss,
            "val_bleu": bleu(hyps, refs),
            "val_exact": exact_match(hyps, refs),
        }

    def tokens_loss(model: Seq2Seq, batch: tuple) -> tuple[torch.Tensor, int]:
        _, loss = model(*batch)
        return loss, int((batch[3] - 1).sum())

    limits = default_limits(args, EPOCHS, BUDGET)
    if args.synthetic and limits:
        limits = {"max_steps": SYNTHETIC_STEPS, "time_budget": 120.0}
    describe = (
        f"a {describe_rnn(rnn)} encoder-decoder, attention "
        f"{args.attention or 'none'}, on {source}: {len(train)} train / {len(val)} validation / "
        f"{len(test)} test pairs, vocabularies {len(src_vocab)} -> {len(tgt_vocab)}"
    )
    run = run_training(
        args, "seq2seq", model, meta, train, collate, evaluate, describe, limits, tokens_loss
    )
    if run is None:
        return 1
    result, out, best_by_loss = run
    # The validation loss (teacher-forced cross-entropy) bottoms out epochs before BLEU stops
    # improving on this small corpus: test whichever of best/ and last/ decodes the validation
    # split better (a choice made on validation data only).
    val_refs = [tok(p.target) for p in val]
    candidates = {"best": best_by_loss, "last": load_task_model(out, "seq2seq", device, "last")[0]}
    scores = {
        name: bleu(decode_all(m, val, args.max_len), val_refs) for name, m in candidates.items()
    }
    chosen = max(scores, key=lambda name: (scores[name], name == "best"))
    best = candidates[chosen]
    print(
        f"validation BLEU: best/ (lowest loss) {scores['best']:.2f}, last/ {scores['last']:.2f}; "
        f"testing {chosen}/",
        file=sys.stderr,
    )
    refs = [tok(p.target) for p in test]
    greedy = decode_all(best, test, args.max_len)
    beam = []
    for p in test:
        src = torch.tensor(src_vocab.encode(tok(p.source)) or [src_vocab.unk_id], device=device)
        hyp = best.beam_search(src, beam_size=args.beam, max_len=args.max_len)[0]
        beam.append(tgt_vocab.decode(hyp.tokens))
    with torch.no_grad():
        loss = mean_loss(
            best, collated(test, collate, 128), lambda b: int((b[3] - 1).sum()), device
        )
    metrics = {
        "test_bleu_greedy": bleu(greedy, refs),
        f"test_bleu_beam{args.beam}": bleu(beam, refs),
        "test_exact_greedy": exact_match(greedy, refs),
        f"test_exact_beam{args.beam}": exact_match(beam, refs),
        "test_loss": loss,
        "test_pairs": len(test),
        "tested_checkpoint": chosen,
    }
    examples = [
        f"  {p.source}  ->  {' '.join(b)}   (reference: {' '.join(r)})"
        for p, b, r in list(zip(test, beam, refs))[:8]
    ]
    finish(out, result, best, metrics, ["test examples (beam):", *examples])
    return 0


def translate_cmd(args: argparse.Namespace) -> int:
    from rnnlab.data.vocab import Vocab

    model, ckpt = load_task_model(args.checkpoint, "seq2seq", args.device)
    src_vocab = Vocab.from_meta(ckpt.meta["src_vocab"])
    tgt_vocab = Vocab.from_meta(ckpt.meta["tgt_vocab"])
    tok = _tokenizer(ckpt.meta.get("tokenizer", "words"))
    for sentence in args.sentences:
        tokens = tok(sentence)
        if not tokens:
            raise RnnlabError(f"nothing to translate in {sentence!r}")
        unknown = [t for t in tokens if t not in src_vocab]
        if unknown:
            print(
                f"note: unknown to the model (read as <unk>): {' '.join(unknown)}", file=sys.stderr
            )
        src = torch.tensor(src_vocab.encode(tokens), device=args.device)
        if args.beam == 1 and args.nbest == 1:
            out = model.greedy(src[None], None, args.max_len)[0]
            print(" ".join(tgt_vocab.decode(out)))
            continue
        hyps = model.beam_search(src, args.beam, args.max_len, args.length_penalty)
        for h in hyps[: args.nbest]:
            text = " ".join(tgt_vocab.decode(h.tokens))
            print(text if args.nbest == 1 else f"{h.score:8.3f}  {text}")
    return 0


__all__ = ["register"]
