"""The character language model, the main job: ``rnnlab train lm``, ``rnnlab sample``, ``rnnlab
eval``.

Train a char-RNN on tiny-shakespeare (or any UTF-8 text, characters or words), watch the
validation loss in nats per character, and sample new text from a checkpoint as it is
generated. The defaults (a 2x512 LSTM on a 128-dim embedding, dropout 0.2 between the layers;
AdamW with weight decay 0.1 at 3e-3 after 100 warm-up steps, decayed by a cosine over the run;
windows of 50 characters, batches of 32) won the 30-minute trials in docs/BENCHMARKS.md:
windows of 50 give twice the updates of 100 for the same tokens.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnlab.config import Config, at_least, fraction, nested, non_negative, option, positive
from rnnlab.errors import RnnlabError
from rnnlab.tasks.base import Task, TaskData
from rnnlab.tasks.lm.config import LMConfig
from rnnlab.train.config import SEED, TrainConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from rnnlab.data.vocab import Vocab
    from rnnlab.tasks.runner import Run


@dataclass(frozen=True)
class LMTaskConfig(Config):
    """Train a recurrent language model with truncated BPTT (default: a 2x512 LSTM on the bundled
    tiny-shakespeare for 10 epochs)."""

    title = "data"

    data: str | None = option(
        None, metavar="FILE", help="UTF-8 text file (default: tiny-shakespeare)"
    )
    word: bool = option(False, help="word-level tokens (words, punctuation) instead of characters")
    vocab_size: int = option(
        10000, check=at_least(2), help="word level: keep the N most frequent tokens, the rest <unk>"
    )
    val_fraction: float = option(
        0.1, check=fraction, help="the last part of the text, kept for validation"
    )
    seq_len: int = option(50, check=positive, help="truncated-BPTT window, in tokens")
    shift: bool = option(
        True, help="each epoch after the first starts its windows at a random offset below "
        "--seq-len (--no-shift: cut the text at the same places every epoch)"
    )  # fmt: skip
    sample: int = option(
        200,
        check=non_negative,
        metavar="N",
        help="print an N-token sample after training (0: none)",
    )
    model: LMConfig = nested(LMConfig())
    train: TrainConfig = nested(
        TrainConfig(
            batch_size=32, optimizer="adamw", weight_decay=0.1, lr=3e-3, schedule="cosine",
            min_lr=1e-4, warmup_steps=100, clip_norm=5.0, eval_every=400, max_epochs=10,
        )
    )  # fmt: skip

    @property
    def tokenizer(self) -> str:
        return "words" if self.word else "chars"


@dataclass(frozen=True)
class SampleConfig(Config):
    """Stream text from a trained language model, as it is generated."""

    title = "sample"

    checkpoint: str = option(positional=True, metavar="CKPT", help="a checkpoint or run directory")
    prime: str | None = option(None, help="text to start from (default: a newline)")
    length: int = option(500, check=non_negative, help="tokens to generate")
    temperature: float = option(
        0.8, check=non_negative, help="below 1 more conservative, above 1 more random; 0 = greedy"
    )
    top_k: int | None = option(None, check=positive, help="sample among the K likeliest")
    greedy: bool = option(False, help="always take the likeliest token (temperature 0)")
    seed: int | None = option(None, check=SEED, help="for a reproducible sample")


@dataclass(frozen=True)
class EvalConfig(Config):
    """Loss (nats/token), bits per token and perplexity of a language model on the validation
    split (the last --val-fraction) of the text it was trained on, or of --data."""

    title = "eval"

    checkpoint: str = option(positional=True, metavar="CKPT", help="a checkpoint or run directory")
    data: str | None = option(None, metavar="FILE", help="text file (default: its training text)")
    val_fraction: float | None = option(
        None, check=fraction, help="validation fraction (default: the training run's)"
    )
    all: bool = option(False, help="score the whole file, not its last part")
    batch: int = option(32, check=positive, help="parallel streams")


class LMTask(Task):
    """many-to-many on a stream: a character (or word) language model (default: Shakespeare)"""

    name = "lm"
    help = "train a character (or word) language model (default: tiny-shakespeare)"
    config = LMTaskConfig
    commands = {"sample": SampleConfig, "eval": EvalConfig}
    unit = "chars"
    model_class = "rnnlab.tasks.lm.model:RNNLM"
    model_config = LMConfig

    # -- training ---------------------------------------------------------------------------
    def load(self, config: LMTaskConfig) -> TaskData:
        from rnnlab.tasks.common import data_source
        from rnnlab.tasks.lm.data import build_vocab, encode_text, read_corpus, split_ids

        text = read_corpus(config.data)
        vocab = build_vocab(text, config.tokenizer, config.vocab_size)
        train, val = split_ids(encode_text(vocab, text, config.tokenizer), config.val_fraction)
        name = Path(config.data).name if config.data else "tinyshakespeare.txt"
        if len(val) < 2:
            raise RnnlabError(
                f"{name}: the validation part of the text has {len(val)} tokens (need 2 or "
                "more): use a longer text or a larger --val-fraction"
            )
        unit = "words" if config.word else "chars"
        summary = (
            f"{name}: {len(train):,} train / {len(val):,} validation {unit}, "
            f"vocabulary {len(vocab)}"
        )
        provenance = {
            "tokenizer": config.tokenizer,
            "val_fraction": config.val_fraction,
            "seq_len": config.seq_len,
        }
        return TaskData(
            train, val, vocabs={"tokens": vocab},
            source=data_source(config.data, "tinyshakespeare.txt"), summary=summary,
            provenance=provenance, unit=unit,
        )  # fmt: skip

    def build_model(self, config: LMTaskConfig, data: TaskData) -> nn.Module:
        return self.new_model(config.model.replace(vocab_size=len(data.vocabs["tokens"])))

    def batches(self, config: LMTaskConfig, data: TaskData) -> Any:
        from rnnlab.tasks.lm.data import StreamBatches

        return StreamBatches(
            data.train, config.train.batch_size, config.seq_len, shift=config.shift
        )

    def loss_fn(self, config: LMTaskConfig, data: TaskData) -> Any:
        from rnnlab.tasks.lm.model import TBPTTLoss

        return TBPTTLoss()

    def evaluate(self, model: nn.Module, data: TaskData, config: LMTaskConfig) -> dict[str, float]:
        from rnnlab.tasks.lm.model import evaluate_lm

        loss = evaluate_lm(model, data.val, batch_size=32, seq_len=256)
        return {"val_loss": loss, "val_bpc": loss / math.log(2), "val_ppl": math.exp(min(loss, 50))}

    def describe(self, config: LMTaskConfig, data: TaskData) -> str:
        return f"a {config.model.rnn.describe()} language model on {data.summary}"

    def test(self, run: Run, data: TaskData, config: LMTaskConfig) -> None:
        """No test split: the validation loss is the figure; print a sample of the best model."""
        if config.sample:
            import torch

            vocab = data.vocabs["tokens"]
            unit = "words" if config.word else "chars"
            print(f"--- sample ({config.sample} {unit}, temperature 0.8) ---", file=sys.stderr)
            generator = torch.Generator(device=run.device).manual_seed(0)
            _stream(run, vocab, _default_prime(vocab), config.sample, 0.8, None, generator)

    # -- use --------------------------------------------------------------------------------
    def sample(self, run: Run, options: SampleConfig) -> int:
        from rnnlab.tasks.common import seeded_generator

        vocab = run.vocabs["tokens"]
        prime = options.prime if options.prime is not None else _default_prime(vocab)
        if not prime:
            raise RnnlabError("--prime is empty: give at least one character, or leave it out")
        temperature = 0.0 if options.greedy else options.temperature
        generator = seeded_generator(run.device, options.seed)
        _stream(run, vocab, prime, options.length, temperature, options.top_k, generator)
        return 0

    def eval(self, run: Run, options: EvalConfig) -> int:
        from rnnlab.tasks.lm.data import encode_text, read_corpus, split_ids
        from rnnlab.tasks.lm.model import evaluate_lm

        stored = run.meta.get("data", {})
        path = options.data
        source = str(stored.get("source") or "")
        if path is None and not source.startswith("bundled:"):
            path = source or None
        tokenizer = stored.get("tokenizer", "chars")
        text = read_corpus(path)
        ids = encode_text(run.vocabs["tokens"], text, tokenizer)
        if not options.all:
            ids = split_ids(ids, options.val_fraction or stored.get("val_fraction", 0.1))[1]
        loss = evaluate_lm(run.model, ids, batch_size=options.batch)
        unit = "word" if tokenizer == "words" else "char"
        print(
            f"{run.checkpoint.path}: loss {loss:.4f} nats/{unit}, {loss / math.log(2):.4f} "
            f"bits/{unit}, perplexity {math.exp(min(loss, 50)):.3f} on {len(ids):,} {unit}s"
        )
        return 0

    # -- analysis ---------------------------------------------------------------------------
    def diagnostic_batch(self, run: Run, data: str | None, length: int, batch: int) -> Any:
        import torch
        from torch.nn import functional as F

        from rnnlab.tasks.lm.data import encode_text, read_corpus, split_ids

        tokenizer = run.meta.get("data", {}).get("tokenizer", "chars")
        ids = split_ids(encode_text(run.vocabs["tokens"], read_corpus(data), tokenizer), 0.1)[1]
        if len(ids) < 4:
            raise RnnlabError(
                f"{data or 'the bundled text'}: its validation part (the last 10%) has "
                f"{len(ids)} tokens, too few to diagnose (need 4 or more)"
            )
        if length < 2 or len(ids) < length + 2:
            raise RnnlabError(
                f"--length must be in [2, {len(ids) - 2}] for this text, got {length}"
            )
        g = torch.Generator().manual_seed(0)
        starts = torch.randint(0, len(ids) - length - 1, (batch,), generator=g)
        x = torch.stack([ids[s : s + length] for s in starts]).to(run.device)
        y = torch.stack([ids[s + 1 : s + length + 1] for s in starts]).to(run.device)
        model = run.model

        def loss_fn() -> torch.Tensor:
            (logits, _), _ = model(x)
            return F.cross_entropy(logits[:, -1], y[:, -1])

        return (lambda: model(x)), loss_fn, f"the next character after {length} characters"


def _default_prime(vocab: Vocab) -> str:
    return "\n" if "\n" in vocab else vocab.itos[-1]


def _stream(
    run: Run,
    vocab: Vocab,
    prime: str,
    length: int,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator,
) -> None:
    """Write ``prime`` and then each generated token to stdout as soon as it is drawn."""
    from rnnlab.data.tokenize import tokenizer
    from rnnlab.tasks.lm.data import encode_text

    name = run.meta.get("data", {}).get("tokenizer", "chars")
    if top_k is not None and top_k > len(vocab):
        raise RnnlabError(f"--top-k {top_k} is more than the vocabulary's {len(vocab)} tokens")
    ids = encode_text(vocab, prime, name)
    if len(ids) == 0:
        raise RnnlabError(f"the prime {prime!r} holds no tokens")
    join = tokenizer(name).join
    sys.stdout.write(prime)
    sys.stdout.flush()
    previous = vocab.itos[int(ids[-1])]
    for token in run.model.generate(ids, length, temperature, top_k, generator):
        word = vocab.itos[token]
        piece = join([previous, word])[len(previous) :]  # the tokenizer's spacing, one at a time
        previous = word
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


TASK = LMTask()

__all__ = ["TASK", "EvalConfig", "LMTask", "LMTaskConfig", "SampleConfig"]
