"""``rnnlab train tag``, ``rnnlab tag`` and ``rnnlab data punct-tags``: sequence tagging.

With no ``--data``: punctuation and case restoration on the bundled Shakespeare (one sequence per
line; see :mod:`rnnlab.tasks.tag.data`). ``--data`` takes any CoNLL-style file (``token<TAB>tag``
lines, a blank line between sequences); ``rnnlab data punct-tags`` writes the default task as one.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch

from rnnlab.cli.common import add_model_options, add_trainer_options, positive_int, resolve_device
from rnnlab.cli.task_common import (
    add_split_options,
    collated,
    default_limits,
    describe_rnn,
    finish,
    load_task_model,
    run_training,
    to_device,
)
from rnnlab.errors import RnnlabError

MODEL_DEFAULTS = {"cell": "lstm", "layers": 1, "hidden": 128, "dropout": 0.0}
TRAIN_DEFAULTS = {"batch": 64, "lr": 3e-3, "schedule": "cosine", "eval_every": 250}
EPOCHS, BUDGET = 8, 240.0
PUNCT = "punct-case"


def register(commands: argparse._SubParsersAction, train: argparse._SubParsersAction) -> None:
    p = train.add_parser(
        "tag",
        help="many-to-many: tag every token (default: punctuation and case restoration)",
        description="Train a (bidirectional by default) sequence tagger. With no arguments: "
        "restore punctuation and case in the bundled Shakespeare, line by line; test token "
        "accuracy and per-tag precision/recall/F1 written to the run directory.",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        metavar="FILE",
        help="CoNLL-style token<TAB>tag file (default: the punctuation task on Shakespeare)",
    )
    g.add_argument(
        "--min-freq",
        type=positive_int,
        default=2,
        help="tokens seen fewer times in training become <unk> (default 2)",
    )
    add_split_options(p)
    add_model_options(p, MODEL_DEFAULTS, bidirectional=True)
    p.set_defaults(bidirectional=True)
    p.add_argument_group("tagger").add_argument(
        "--unidirectional",
        dest="bidirectional",
        action="store_false",
        help="left to right only (the default is bidirectional)",
    )
    p.add_argument_group("tagger").add_argument(
        "--embedding", type=positive_int, default=64, help="token embedding size (64)"
    )
    add_trainer_options(p, TRAIN_DEFAULTS)
    p.set_defaults(func=train_tag)

    q = commands.add_parser(
        "tag",
        help="tag a text with a tagger checkpoint (restores punctuation and case)",
        description='e.g. `rnnlab tag runs/tag "what say you my lord i am glad to see you"`',
    )
    q.add_argument("checkpoint", metavar="CKPT", help="a checkpoint or run directory")
    q.add_argument("texts", nargs="+", metavar="TEXT", help="texts to tag (one sequence each)")
    q.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    q.set_defaults(func=tag_cmd)


def register_data(converters: argparse._SubParsersAction) -> None:
    d = converters.add_parser(
        "punct-tags",
        help="text -> CoNLL file of the punctuation-and-case restoration task",
        description="One sequence per non-empty line: the words lowercased without punctuation, "
        "tagged with the mark that followed each word (O , . ? ! : ;), prefixed by ^ if "
        "the word was capitalised.",
    )
    d.add_argument("--data", metavar="FILE", help="UTF-8 text (default: the bundled Shakespeare)")
    d.add_argument("--out", required=True, metavar="FILE", help="the CoNLL file to write")
    d.set_defaults(func=punct_tags_cmd)


def _punct_data(path: str | None):
    from rnnlab.data import bundled
    from rnnlab.tasks.tag.data import punct_case_dataset

    source = Path(path) if path else bundled("tinyshakespeare.txt")
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RnnlabError(f"{source} is not UTF-8 text: {exc}") from None
    data = punct_case_dataset(text)
    if not data:
        raise RnnlabError(f"{source} has no words")
    return data


def punct_tags_cmd(args: argparse.Namespace) -> int:
    from rnnlab.tasks.tag.data import write_conll

    data = _punct_data(args.data)
    n = write_conll(data, args.out)
    tags = Counter(t for s in data for t in s.tags)
    print(
        f"wrote {n} sequences, {sum(tags.values())} tokens to {args.out}; tags: "
        + ", ".join(f"{t} {c}" for t, c in tags.most_common())
    )
    return 0


def train_tag(args: argparse.Namespace) -> int:
    from rnnlab.cli.common import recurrent_config_from_args
    from rnnlab.data.vocab import Vocab, pad_batch
    from rnnlab.tasks.metrics import accuracy, confusion_matrix, format_per_class, macro_f1
    from rnnlab.tasks.tag.data import PUNCT_TAGS, read_conll
    from rnnlab.tasks.tag.model import Tagger, TaggerConfig

    if args.data:
        data, scheme, source = read_conll(args.data), "conll", str(Path(args.data).resolve())
    else:
        data, scheme, source = _punct_data(None), PUNCT, "bundled:tinyshakespeare.txt"
    g = torch.Generator().manual_seed(args.split_seed)
    order = torch.randperm(len(data), generator=g).tolist()
    n_val = max(1, round(len(data) * args.val_fraction))
    n_test = max(1, round(len(data) * args.test_fraction))
    if len(data) < n_val + n_test + 1:
        raise RnnlabError(f"{source}: {len(data)} sequences are too few to split")
    val = [data[i] for i in order[:n_val]]
    test = [data[i] for i in order[n_val : n_val + n_test]]
    train = [data[i] for i in order[n_val + n_test :]]
    vocab = Vocab.build((s.tokens for s in train), min_freq=args.min_freq, sos=None, eos=None)
    tag_list = list(PUNCT_TAGS) if scheme == PUNCT else sorted({t for s in data for t in s.tags})
    tags = Vocab(tag_list, pad=None, sos=None, eos=None, unk=None)

    def collate(items: list) -> tuple:
        tokens, lengths = pad_batch([vocab.encode(s.tokens) for s in items])
        targets, _ = pad_batch([tags.encode(s.tags) for s in items])
        return tokens, lengths, targets

    device = resolve_device(args)
    rnn = recurrent_config_from_args(args, input_size=args.embedding)
    config = TaggerConfig(len(vocab), len(tags), args.embedding, rnn, dropout=args.dropout)
    torch.manual_seed(args.seed)
    model = Tagger(config).to(device)
    meta = {
        **model.to_meta(),
        "vocab": vocab.to_meta(),
        "tags": tags.to_meta(),
        "scheme": scheme,
        "data": {"path": source},
    }
    val_batches = collated(val, collate)

    def predictions(model: Tagger, batches: list[tuple]) -> tuple[list[int], list[int], float]:
        pred, gold, total = [], [], 0.0
        for batch in batches:
            tokens, lengths, y = to_device(batch, device)
            logits, loss = model(tokens, lengths, y)
            mask = torch.arange(tokens.shape[1], device=device)[None] < lengths[:, None]
            pred += logits.argmax(-1)[mask].tolist()
            gold += y[mask].tolist()
            total += float(loss) * int(lengths.sum())
        return pred, gold, total / len(gold)

    def evaluate(model: Tagger) -> dict[str, float]:
        pred, gold, loss = predictions(model, val_batches)
        cm = confusion_matrix(pred, gold, len(tags))
        return {"val_loss": loss, "val_acc": accuracy(pred, gold), "val_macro_f1": macro_f1(cm)}

    def tokens_loss(model: Tagger, batch: tuple) -> tuple[torch.Tensor, int]:
        _, loss = model(*batch)
        return loss, int(batch[1].sum())

    n_tokens = sum(len(s.tokens) for s in train)
    describe = (
        f"a {describe_rnn(rnn)} tagger on {len(train)} train ({n_tokens} tokens) / "
        f"{len(val)} validation / {len(test)} test sequences, {len(vocab)} token types, "
        f"{len(tags)} tags"
    )
    run = run_training(
        args,
        "tag",
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
        pred, gold, loss = predictions(best, collated(test, collate))
    cm = confusion_matrix(pred, gold, len(tags))
    table = format_per_class(cm, tags.itos)
    (out / "test_report.txt").write_text(table + "\n", encoding="utf-8")
    majority = Counter(gold).most_common(1)[0][1] / len(gold)
    metrics = {
        "test_token_accuracy": accuracy(pred, gold),
        "test_macro_f1": macro_f1(cm),
        "test_loss": loss,
        "majority_tag_accuracy": majority,
        "test_tokens": len(gold),
    }
    if scheme == PUNCT:
        mark = [tags.itos[i].lstrip("^") for i in pred], [tags.itos[i].lstrip("^") for i in gold]
        case = [tags.itos[i][0] == "^" for i in pred], [tags.itos[i][0] == "^" for i in gold]
        metrics["test_mark_accuracy"] = sum(a == b for a, b in zip(*mark)) / len(gold)
        metrics["test_case_accuracy"] = sum(a == b for a, b in zip(*case)) / len(gold)
    finish(out, result, best, metrics, [table])
    return 0


def tag_cmd(args: argparse.Namespace) -> int:
    from rnnlab.data.vocab import Vocab, pad_batch
    from rnnlab.tasks.tag.data import restore, strip_text

    model, ckpt = load_task_model(args.checkpoint, "tag", args.device)
    vocab = Vocab.from_meta(ckpt.meta["vocab"])
    tags = Vocab.from_meta(ckpt.meta["tags"])
    punct = ckpt.meta.get("scheme") == PUNCT
    for text in args.texts:
        tokens = strip_text(text) if punct else text.split()
        if not tokens:
            raise RnnlabError(f"no words to tag in {text!r}")
        ids, lengths = pad_batch([vocab.encode(tokens)])
        predicted = [tags.itos[i] for i in model.tag(ids.to(args.device), lengths)[0]]
        if punct:
            print(restore(tokens, predicted))
        else:
            print(" ".join(f"{tok}/{tag}" for tok, tag in zip(tokens, predicted)))
    return 0


__all__ = ["register", "register_data"]
