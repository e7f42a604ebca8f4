"""``rnnlab train names`` and ``rnnlab generate-names``: one-to-many conditional generation.

A character-level generator conditioned on the language (the bundled names by default, or any
folder of ``LABEL.txt`` class files): given a language it writes a name one character at a
time until ``<eos>``, sampling with a temperature or taking the most likely character.
"""

from __future__ import annotations

import argparse
import math

import torch

from rnnlab.cli.common import (
    add_model_options,
    add_trainer_options,
    nonneg_float,
    nonneg_int,
    positive_int,
    resolve_device,
)
from rnnlab.cli.task_common import (
    add_split_options,
    collated,
    default_limits,
    describe_rnn,
    finish,
    load_task_model,
    mean_loss,
    run_training,
)
from rnnlab.errors import RnnlabError

MODEL_DEFAULTS = {"cell": "gru", "layers": 1, "hidden": 128, "dropout": 0.0}
TRAIN_DEFAULTS = {"batch": 64, "lr": 3e-3, "schedule": "cosine", "eval_every": 250}
EPOCHS, BUDGET = 10, 180.0


def register(commands: argparse._SubParsersAction, train: argparse._SubParsersAction) -> None:
    p = train.add_parser(
        "names",
        help="one-to-many: generate names given a language",
        description="Train a character-level name generator conditioned on the language. With "
        "no arguments: the bundled names (18 languages), a GRU, up to "
        f"{EPOCHS} epochs or {BUDGET:g}s; test loss in nats per character.",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data", metavar="DIR", help="folder of LABEL.txt class files (default: bundled names)"
    )
    add_split_options(p)
    add_model_options(p, MODEL_DEFAULTS)
    m = p.add_argument_group("generator")
    m.add_argument("--embedding", type=positive_int, default=32, help="character embedding (32)")
    m.add_argument(
        "--lang-embedding", type=positive_int, default=16, help="language embedding (16)"
    )
    add_trainer_options(p, TRAIN_DEFAULTS)
    p.set_defaults(func=train_names)

    q = commands.add_parser(
        "generate-names",
        help="generate names of a language with a name-generator checkpoint",
        description="e.g. `rnnlab generate-names runs/names --language Russian -n 10`",
    )
    q.add_argument("checkpoint", metavar="CKPT", help="a checkpoint or run directory")
    q.add_argument("--language", required=True, help="one of the languages it was trained on")
    q.add_argument("-n", type=positive_int, default=10, help="how many names (10)")
    q.add_argument(
        "--temperature",
        type=nonneg_float,
        default=0.8,
        help="sampling temperature; 0 = greedy, the most likely character (0.8)",
    )
    q.add_argument("--top-k", type=positive_int, default=None, help="sample among the K likeliest")
    q.add_argument("--start", default="", help="letters every name starts with")
    q.add_argument("--max-len", type=positive_int, default=20, help="longest name (20)")
    q.add_argument("--seed", type=nonneg_int, default=None, help="for reproducible names")
    q.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    q.set_defaults(func=generate_cmd)


def train_names(args: argparse.Namespace) -> int:
    from rnnlab.cli.common import recurrent_config_from_args
    from rnnlab.data import bundled
    from rnnlab.data.vocab import Vocab, pad_batch
    from rnnlab.tasks.classify.data import characters, read_class_dir, stratified_split
    from rnnlab.tasks.names.model import NameGenerator, NameGeneratorConfig

    examples = read_class_dir(args.data or bundled("names"))
    source = args.data or "bundled:names"
    languages = sorted({e.label for e in examples})
    tr, va, te = stratified_split(
        [e.label for e in examples], (args.val_fraction, args.test_fraction), args.split_seed
    )
    train, val, test = ([examples[i] for i in idx] for idx in (tr, va, te))
    if not val or not test:
        raise RnnlabError(f"{source}: too few names for a validation and a test split")
    vocab = Vocab.build(characters(e.text) for e in train)
    lang_id = {name: i for i, name in enumerate(languages)}

    def collate(items: list) -> tuple:
        inputs = pad_batch([vocab.encode(characters(e.text), sos=True) for e in items])
        targets, _ = pad_batch([vocab.encode(characters(e.text), eos=True) for e in items])
        return torch.tensor([lang_id[e.label] for e in items]), *inputs, targets

    device = resolve_device(args)
    rnn = recurrent_config_from_args(args, input_size=args.embedding + args.lang_embedding)
    config = NameGeneratorConfig(
        len(vocab),
        len(languages),
        args.embedding,
        args.lang_embedding,
        rnn,
        dropout=args.dropout,
        sos_id=vocab.sos_id,
        eos_id=vocab.eos_id,
    )
    torch.manual_seed(args.seed)
    model = NameGenerator(config).to(device)
    meta = {
        **model.to_meta(),
        "vocab": vocab.to_meta(),
        "languages": languages,
        "data": {"path": source},
    }
    val_batches = collated(val, collate)

    def n_chars(batch: tuple) -> int:
        return int(batch[2].sum())

    def evaluate(model: NameGenerator) -> dict[str, float]:
        return {"val_loss": mean_loss(model, val_batches, n_chars, device)}

    def tokens_loss(model: NameGenerator, batch: tuple) -> tuple[torch.Tensor, int]:
        _, loss = model(*batch)
        return loss, n_chars(batch)

    describe = (
        f"a {describe_rnn(rnn)} name generator on {len(train)} train / "
        f"{len(val)} validation / {len(test)} test names, {len(languages)} languages, "
        f"{len(vocab)} symbols"
    )
    run = run_training(
        args,
        "names",
        model,
        meta,
        train,
        collate,
        evaluate,
        describe,
        default_limits(args, EPOCHS, BUDGET),
        loss_fn=tokens_loss,
    )
    if run is None:
        return 1
    result, out, best = run
    with torch.no_grad():
        loss = mean_loss(best, collated(test, collate), n_chars, device)
    g = torch.Generator(device=device).manual_seed(0)
    known = {e.text for e in train}
    samples, lines = [], []
    for language in languages:
        ids = best.generate(torch.full((5,), lang_id[language]), temperature=0.8, generator=g)
        names = ["".join(vocab.decode(n)) for n in ids]
        samples += names
        lines.append(f"  {language:<11} {', '.join(names)}")
    metrics = {
        "test_loss_nats_per_char": loss,
        "test_bits_per_char": loss / math.log(2),
        "novel_fraction_of_samples": sum(s not in known for s in samples) / len(samples),
        "test_names": len(test),
    }
    finish(out, result, best, metrics, ["samples (temperature 0.8):", *lines])
    return 0


def generate_cmd(args: argparse.Namespace) -> int:
    from rnnlab.data.vocab import Vocab
    from rnnlab.tasks.classify.data import characters

    model, ckpt = load_task_model(args.checkpoint, "names", args.device)
    vocab = Vocab.from_meta(ckpt.meta["vocab"])
    languages = ckpt.meta["languages"]
    matches = [name for name in languages if name.lower() == args.language.lower()]
    if not matches:
        raise RnnlabError(
            f"unknown language {args.language!r}; choose one of: {', '.join(languages)}"
        )
    unknown = [c for c in args.start if c not in vocab]
    if unknown:
        raise RnnlabError(f"--start has characters the model never saw: {''.join(unknown)!r}")
    if len(args.start) >= args.max_len:
        raise RnnlabError(f"--start is longer than --max-len {args.max_len}")
    generator = torch.Generator(device=args.device)
    if args.seed is not None:
        generator.manual_seed(args.seed)
    else:
        generator.seed()
    language = torch.full((args.n,), languages.index(matches[0]), device=args.device)
    prefix = vocab.encode(characters(args.start))
    names = model.generate(
        language, args.max_len, args.temperature, args.top_k, prefix, generator=generator
    )
    for ids in names:
        print("".join(vocab.decode(ids)))
    return 0


__all__ = ["register"]
