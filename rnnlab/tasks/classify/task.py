"""``rnnlab train classify`` and ``rnnlab predict``: many-to-one sequence classification.

With no ``--data``: the bundled names data (surname -> one of 18 languages), character level.
``--data`` takes a folder of class files (``LABEL.txt``, one example per line) or a
``text<TAB>label`` file (``.tsv``; ``.csv`` for ``text,label``).
"""

from __future__ import annotations

import argparse
import sys

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

MODEL_DEFAULTS = {"cell": "lstm", "layers": 1, "hidden": 128}
TRAIN_DEFAULTS = {"batch": 64, "lr": 3e-3, "schedule": "cosine", "eval_every": 250}
EPOCHS, BUDGET = 12, 180.0


def register(commands: argparse._SubParsersAction, train: argparse._SubParsersAction) -> None:
    from rnnlab.tasks.classify.data import WEIGHTINGS

    p = train.add_parser(
        "classify",
        help="many-to-one: classify sequences (default: names -> language)",
        description="Train a character-level sequence classifier. With no arguments: the "
        "bundled names (18 languages, 18,827 surnames), a stratified 80/10/10 split, an LSTM, "
        f"{EPOCHS} epochs or {BUDGET:g}s; test accuracy, macro-F1, per-class table and "
        "confusion matrix written to the run directory.",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        metavar="PATH",
        help="folder of LABEL.txt class files, or a text<TAB>label .tsv / text,label .csv "
        "(default: the bundled names)",
    )
    g.add_argument(
        "--class-weights",
        choices=WEIGHTINGS,
        default="sqrt",
        help="loss weights against class imbalance: 1/sqrt(n_c) (default), 1/n_c, or none",
    )
    add_split_options(p)
    add_model_options(p, MODEL_DEFAULTS, bidirectional=True)
    p.add_argument_group("classifier").add_argument(
        "--embedding", type=positive_int, default=32, help="character embedding size (32)"
    )
    add_trainer_options(p, TRAIN_DEFAULTS)
    p.set_defaults(func=train_classify)

    q = commands.add_parser(
        "predict",
        help="classify texts with a classifier checkpoint (top classes with probabilities)",
        description="Print the most likely classes of each text, e.g. "
        '`rnnlab predict runs/classify "Dostoevsky"`.',
    )
    q.add_argument("checkpoint", metavar="CKPT", help="a checkpoint or run directory")
    q.add_argument("texts", nargs="+", metavar="TEXT", help="texts to classify")
    q.add_argument("--top", type=positive_int, default=3, help="classes to show (3)")
    q.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    q.set_defaults(func=predict_cmd)


def _load_data(path: str | None):
    from rnnlab.data import bundled
    from rnnlab.tasks.classify.data import read_examples

    return read_examples(path if path else bundled("names")), (path or "bundled:names")


def train_classify(args: argparse.Namespace) -> int:
    from rnnlab.cli.common import recurrent_config_from_args
    from rnnlab.data.vocab import Vocab, pad_batch
    from rnnlab.tasks.classify.data import characters, class_weights, stratified_split, summary
    from rnnlab.tasks.classify.model import Classifier, ClassifierConfig
    from rnnlab.tasks.metrics import (
        accuracy,
        confusion_matrix,
        format_per_class,
        macro_f1,
        plot_confusion,
    )

    examples, source = _load_data(args.data)
    labels = sorted({e.label for e in examples})
    if len(labels) < 2:
        raise RnnlabError(f"{source}: need at least 2 classes, found {len(labels)}")
    tr, va, te = stratified_split(
        [e.label for e in examples], (args.val_fraction, args.test_fraction), args.split_seed
    )
    train, val, test = ([examples[i] for i in idx] for idx in (tr, va, te))
    if not val or not test:
        raise RnnlabError(f"{source}: too few examples for a validation and a test split")
    vocab = Vocab.build((characters(e.text) for e in train), sos=None, eos=None)
    label_id = {label: i for i, label in enumerate(labels)}
    weights = class_weights([e.label for e in train], labels, args.class_weights)

    def collate(items: list) -> tuple:
        tokens, lengths = pad_batch([vocab.encode(characters(e.text)) for e in items])
        return tokens, lengths, torch.tensor([label_id[e.label] for e in items])

    device = resolve_device(args)
    rnn = recurrent_config_from_args(args, input_size=args.embedding)
    config = ClassifierConfig(
        len(vocab),
        len(labels),
        args.embedding,
        rnn,
        dropout=args.dropout,
        class_weights=None if args.class_weights == "none" else tuple(weights),
    )
    torch.manual_seed(args.seed)
    model = Classifier(config).to(device)
    meta = {
        **model.to_meta(),
        "vocab": vocab.to_meta(),
        "labels": labels,
        "data": {"path": source, "class_weights": args.class_weights},
    }
    val_batches = collated(val, collate)

    def predictions(model: Classifier, batches: list[tuple]) -> tuple[list[int], list[int], float]:
        pred, gold, total = [], [], 0.0
        for batch in batches:
            tokens, lengths, y = to_device(batch, device)
            logits, loss = model(tokens, lengths, y)
            pred += logits.argmax(-1).tolist()
            gold += y.tolist()
            total += float(loss) * len(y)
        return pred, gold, total / len(gold)

    def evaluate(model: Classifier) -> dict[str, float]:
        pred, gold, loss = predictions(model, val_batches)
        cm = confusion_matrix(pred, gold, len(labels))
        return {"val_loss": loss, "val_acc": accuracy(pred, gold), "val_macro_f1": macro_f1(cm)}

    print(f"data: {source}: {summary(examples)}", file=sys.stderr)
    describe = (
        f"a {describe_rnn(rnn)} classifier on {len(train)} train / {len(val)} validation / "
        f"{len(test)} test examples, {len(labels)} classes, {len(vocab)} symbols, class weights "
        f"{args.class_weights}"
    )
    run = run_training(
        args,
        "classify",
        model,
        meta,
        train,
        collate,
        evaluate,
        describe,
        default_limits(args, EPOCHS, BUDGET),
    )
    if run is None:
        return 1
    result, out, best = run
    with torch.no_grad():
        pred, gold, loss = predictions(best, collated(test, collate))
    cm = confusion_matrix(pred, gold, len(labels))
    table = format_per_class(cm, labels)
    (out / "test_report.txt").write_text(table + "\n", encoding="utf-8")
    plot_confusion(
        cm, labels, out / "confusion.png", title=f"test confusion ({len(test)} examples)"
    )
    metrics = {
        "test_accuracy": accuracy(pred, gold),
        "test_macro_f1": macro_f1(cm),
        "test_loss": loss,
        "test_examples": len(test),
    }
    finish(out, result, best, metrics, [table, f"confusion matrix: {out}/confusion.png"])
    return 0


def predict_cmd(args: argparse.Namespace) -> int:
    from rnnlab.data.vocab import Vocab, pad_batch
    from rnnlab.tasks.classify.data import characters

    model, ckpt = load_task_model(args.checkpoint, "classify", args.device)
    vocab = Vocab.from_meta(ckpt.meta["vocab"])
    labels = ckpt.meta["labels"]
    texts = [t.strip() for t in args.texts]
    if not all(texts):
        raise RnnlabError("cannot classify an empty text")
    tokens, lengths = pad_batch([vocab.encode(characters(t)) for t in texts])
    probs = model.predict_proba(tokens.to(args.device), lengths)
    k = min(args.top, len(labels))
    for text, row in zip(texts, probs):
        top = row.topk(k)
        shown = "  ".join(
            f"{labels[i]} {p:.3f}" for p, i in zip(top.values.tolist(), top.indices.tolist())
        )
        print(f"{text}: {shown}")
    return 0
