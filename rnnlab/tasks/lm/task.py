"""``rnnlab train lm``, ``rnnlab sample`` and ``rnnlab eval``: the character language model.

The main job: train a char-RNN on tiny-shakespeare (or any UTF-8 text), watch the validation
loss in nats per character, and sample new text from a checkpoint as it is generated.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rnnlab.cli.common import (
    add_model_options,
    add_trainer_options,
    fraction,
    nonneg_float,
    nonneg_int,
    one_line_errors,
    positive_int,
    prepare_out_dir,
    probability,
    resolve_device,
    trainer_config_from_args,
)
from rnnlab.errors import RnnlabError

if TYPE_CHECKING:
    from rnnlab.tasks.lm.data import Vocabulary
    from rnnlab.tasks.lm.model import RNNLM
    from rnnlab.train.checkpoint import Checkpoint

#: The default model: a 2x512 LSTM on a 128-dim embedding, dropout 0.2 between the layers;
#: AdamW (weight decay 0.1) at 3e-3 after 100 warm-up steps, decayed by a cosine over the run,
#: windows of 50 characters, batches of 32. Windows of 50 give twice the updates of 100 for the
#: same tokens, which won the 30-minute trials in docs/BENCHMARKS.md.
MODEL_DEFAULTS = {"cell": "lstm", "layers": 2, "hidden": 512, "dropout": 0.2}
TRAIN_DEFAULTS = {
    "batch": 32,
    "optimizer": "adamw",
    "weight_decay": 0.1,
    "lr": 3e-3,
    "schedule": "cosine",
    "min_lr": 1e-4,
    "warmup": 100,
    "clip": 5.0,
    "eval_every": 400,
}
SEQ_LEN = 50
DEFAULT_EPOCHS = 10


def register(commands: argparse._SubParsersAction, train: argparse._SubParsersAction) -> None:
    """Add ``train lm``, ``sample`` and ``eval``."""
    p = train.add_parser(
        "lm",
        help="train a character (or word) language model (default: tiny-shakespeare)",
        description="Train a recurrent language model with truncated BPTT. With no arguments: "
        "a 2x512 LSTM on the bundled tiny-shakespeare for 10 epochs, into runs/lm.",
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="FILE", help="UTF-8 text file (default: tiny-shakespeare)")
    g.add_argument("--word", action="store_true", help="word-level tokens instead of characters")
    g.add_argument(
        "--vocab-size",
        type=positive_int,
        default=10000,
        help="word level: keep the N most frequent tokens, the rest <unk>",
    )
    g.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.1,
        help="the last part of the text kept for validation (default 0.1)",
    )
    g.add_argument(
        "--seq-len",
        type=positive_int,
        default=SEQ_LEN,
        help=f"truncated-BPTT window, in tokens (default {SEQ_LEN})",
    )
    g.add_argument(
        "--no-shift",
        action="store_true",
        help="cut the text at the same places every epoch (default: each epoch after the first "
        "starts its windows at a random offset below --seq-len)",
    )
    add_model_options(p, MODEL_DEFAULTS)
    m = p.add_argument_group("language model")
    m.add_argument(
        "--embedding",
        type=nonneg_int,
        default=128,
        help="embedding size; 0 = one-hot inputs (default 128)",
    )
    m.add_argument(
        "--io-dropout",
        type=probability,
        default=0.0,
        help="dropout on the embedding and before the decoder (default 0: --dropout acts only "
        "between the recurrent layers, which learnt fastest in 30-minute runs)",
    )
    m.add_argument(
        "--tie-weights",
        action="store_true",
        help="decoder shares the embedding matrix (needs --embedding = --hidden)",
    )
    m.add_argument(
        "--sample",
        type=nonneg_int,
        default=200,
        metavar="N",
        help="print an N-token sample after training (default 200; 0 = none)",
    )
    add_trainer_options(p, TRAIN_DEFAULTS)
    p.set_defaults(func=train_lm)
    one_line_errors(p)

    s = commands.add_parser(
        "sample",
        help="generate text from a language-model checkpoint",
        description="Stream text from a trained language model.",
    )
    s.add_argument("checkpoint", metavar="CKPT", help="a checkpoint or run directory")
    s.add_argument("--prime", default=None, help="text to start from (default: a newline)")
    s.add_argument("--length", type=nonneg_int, default=500, help="tokens to generate (500)")
    s.add_argument(
        "--temperature",
        type=nonneg_float,
        default=0.8,
        help="below 1 more conservative, above 1 more random; 0 = greedy (0.8)",
    )
    s.add_argument("--top-k", type=positive_int, default=None, help="sample among the K likeliest")
    s.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    s.add_argument("--seed", type=nonneg_int, default=None, help="for a reproducible sample")
    s.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    s.set_defaults(func=sample_cmd)
    one_line_errors(s)

    e = commands.add_parser(
        "eval",
        help="validation loss of a language-model checkpoint",
        description="Loss (nats/token), bits per token and perplexity on the validation split "
        "(the last --val-fraction) of the training text or of --data.",
    )
    e.add_argument("checkpoint", metavar="CKPT", help="a checkpoint or run directory")
    e.add_argument("--data", metavar="FILE", help="text file (default: the one it was trained on)")
    e.add_argument(
        "--val-fraction",
        type=fraction,
        default=None,
        help="validation fraction (default: the training run's)",
    )
    e.add_argument("--all", action="store_true", help="score the whole file, not its last part")
    e.add_argument("--batch", type=positive_int, default=32, help="parallel streams (32)")
    e.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    e.set_defaults(func=eval_cmd)
    one_line_errors(e)


# -- train ---------------------------------------------------------------------------------
def _corpus_name(path: str | None) -> str:
    return str(Path(path).resolve()) if path else "bundled:tinyshakespeare.txt"


def train_lm(args: argparse.Namespace) -> int:
    from rnnlab.tasks.lm.data import CharVocab, StreamBatches, WordVocab, read_corpus, split_ids
    from rnnlab.tasks.lm.model import RNNLM, LMConfig, TBPTTLoss, make_evaluator
    from rnnlab.train.trainer import Trainer

    text = read_corpus(args.data)
    vocab = WordVocab.from_text(text, args.vocab_size) if args.word else CharVocab.from_text(text)
    ids = vocab.encode(text)
    train_ids, val_ids = split_ids(ids, args.val_fraction)
    batches = StreamBatches(train_ids, args.batch, args.seq_len, shift=not args.no_shift)
    if len(val_ids) < 2:
        raise RnnlabError(
            f"the validation part of the text has {len(val_ids)} tokens (need 2 or more): "
            "use a longer text or a larger --val-fraction"
        )
    config = LMConfig(
        vocab_size=len(vocab),
        cell=args.cell,
        hidden_size=args.hidden,
        num_layers=args.layers,
        embedding_size=args.embedding,
        dropout=args.dropout,
        layer_norm=args.layer_norm,
        forget_bias=args.forget_bias,
        tie_weights=args.tie_weights,
        io_dropout=args.io_dropout,
    )
    limits = (args.time_budget, args.max_steps, args.epochs)
    epochs = DEFAULT_EPOCHS if all(v is None for v in limits) else args.epochs
    train_config = trainer_config_from_args(args, max_epochs=epochs)
    out = prepare_out_dir(args, "lm")
    device = resolve_device(args)
    torch.manual_seed(args.seed)
    model = RNNLM(config).to(device)
    meta = {
        **model.to_meta(),
        "vocab": vocab.to_meta(),
        "data": {"path": _corpus_name(args.data), "val_fraction": args.val_fraction},
        "seq_len": args.seq_len,
    }
    n_params = sum(p.numel() for p in model.parameters())
    unit = "words" if args.word else "chars"
    limit = ", ".join(
        f"{name} {value}"
        for name, value in (
            ("time budget", f"{args.time_budget:g}s" if args.time_budget else None),
            ("max steps", args.max_steps),
            ("epochs", epochs),
        )
        if value
    )
    print(
        f"{'resuming' if args.resume else 'training'} a {config.num_layers}x{config.hidden_size} "
        f"{config.cell} ({n_params / 1e6:.2f}M parameters) on {Path(meta['data']['path']).name}: "
        f"{len(train_ids):,} train / {len(val_ids):,} validation {unit}, vocabulary "
        f"{len(vocab)}; {len(batches)} batches per epoch; {limit}; -> {out}",
        file=sys.stderr,
    )
    trainer = Trainer(
        model,
        train_config,
        out,
        loss_fn=TBPTTLoss(),
        evaluate=make_evaluator(val_ids, batch_size=32, seq_len=256),
        meta=meta,
        resume=args.resume,
    )
    result = trainer.fit(batches)
    if result.stopped == "nan":
        print(f"rnnlab: error: {result.message}", file=sys.stderr)
        return 1
    val = result.best_val_loss
    summary = f"done ({result.stopped}) after {result.steps} steps, {result.elapsed:.0f}s"
    if result.tokens_per_s:
        summary += f", {result.tokens_per_s:,.0f} {unit}/s"
    if val is not None:
        summary += (
            f"; best validation loss {val:.4f} nats/{unit[:-1]} ({val / math.log(2):.3f} bits) "
            f"at step {result.best_step}"
        )
    print(summary, file=sys.stderr)
    print(f"checkpoints in {out}/best and {out}/last; curves in {out}/loss.png", file=sys.stderr)
    if args.sample:
        from rnnlab.train.checkpoint import load_model

        best, _ = load_model(out, device=device)
        prime = _default_prime(vocab)
        print(f"--- sample ({args.sample} {unit}, temperature 0.8) ---", file=sys.stderr)
        generator = torch.Generator(device=device).manual_seed(0)
        _stream(best, vocab, prime, args.sample, 0.8, None, generator)
    return 0


# -- sample --------------------------------------------------------------------------------
def _default_prime(vocab: Vocabulary) -> str:
    return "\n" if "\n" in vocab.index else vocab.tokens[-1]


def _stream(
    model: RNNLM,
    vocab: Vocabulary,
    prime: str,
    length: int,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator,
) -> None:
    """Write ``prime`` and then each generated token to stdout as soon as it is drawn."""
    from rnnlab.tasks.lm.data import WordVocab

    ids = vocab.encode(prime)
    if len(ids) == 0:
        raise RnnlabError(f"the prime {prime!r} holds no tokens")
    sys.stdout.write(prime)
    sys.stdout.flush()
    sep = isinstance(vocab, WordVocab)
    previous = vocab.tokens[int(ids[-1])]
    for token in model.generate(ids, length, temperature, top_k, generator):
        piece = vocab.decode([token])
        if sep:  # the word decoder's spacing, one token at a time
            piece = vocab.decode([vocab.index[previous], token])[len(previous) :]
            previous = vocab.tokens[token]
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


def _load_lm(path: str, device: torch.device) -> tuple[RNNLM, Vocabulary, Checkpoint]:
    from rnnlab.tasks.lm.data import vocab_from_meta
    from rnnlab.train.checkpoint import load_model

    model, ckpt = load_model(path, device=device)
    if ckpt.meta.get("task") != "lm":
        raise RnnlabError(
            f"{ckpt.path} is a {ckpt.meta.get('task')!r} checkpoint, not a language model"
        )
    return model, vocab_from_meta(ckpt.meta.get("vocab")), ckpt


def sample_cmd(args: argparse.Namespace) -> int:
    model, vocab, _ = _load_lm(args.checkpoint, resolve_device(args))
    prime = args.prime if args.prime is not None else _default_prime(vocab)
    missing = vocab.unknown(prime)
    if missing:
        raise RnnlabError(
            "the prime has characters outside the model's vocabulary: "
            + ", ".join(repr(c) for c in missing[:10])
        )
    temperature = 0.0 if args.greedy else args.temperature
    generator = torch.Generator(device=model.decoder.weight.device)
    if args.seed is not None:
        generator.manual_seed(args.seed)
    else:
        generator.seed()
    _stream(model, vocab, prime, args.length, temperature, args.top_k, generator)
    return 0


# -- eval ----------------------------------------------------------------------------------
def eval_cmd(args: argparse.Namespace) -> int:
    from rnnlab.tasks.lm.data import read_corpus, split_ids
    from rnnlab.tasks.lm.model import evaluate_lm

    model, vocab, ckpt = _load_lm(args.checkpoint, resolve_device(args))
    data = ckpt.meta.get("data", {})
    path = args.data
    if path is None and not str(data.get("path", "")).startswith("bundled:"):
        path = data.get("path")
    text = read_corpus(path)
    missing = vocab.unknown(text)
    if missing:
        raise RnnlabError(
            f"{path} has characters outside the model's vocabulary: "
            + ", ".join(repr(c) for c in missing[:10])
        )
    ids = vocab.encode(text)
    if not args.all:
        ids = split_ids(ids, args.val_fraction or data.get("val_fraction", 0.1))[1]
    loss = evaluate_lm(model, ids, batch_size=args.batch)
    unit = "word" if vocab.kind == "word" else "char"
    print(
        f"{ckpt.path}: loss {loss:.4f} nats/{unit}, {loss / math.log(2):.4f} bits/{unit}, "
        f"perplexity {math.exp(min(loss, 50)):.3f} on {len(ids):,} {unit}s"
    )
    return 0
