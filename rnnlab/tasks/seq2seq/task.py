"""The encoder-decoder: ``rnnlab train seq2seq`` and ``rnnlab translate``.

With no ``--data``: the bundled 5,000 English-French pairs (Tatoeba, CC-BY 2.0 France), a
held-out test split (no test source sentence is seen in training), test BLEU (sacrebleu) with
greedy decoding and beam search. ``--synthetic reverse|sort`` trains on digit sequences instead,
a check that the model and decoders work which takes seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rnnlab.config import Config, fraction, nested, non_negative, option, positive
from rnnlab.errors import RnnlabError
from rnnlab.tasks.base import Report, Task, TaskData
from rnnlab.tasks.seq2seq.config import Seq2SeqConfig
from rnnlab.tasks.seq2seq.data import DIGIT_TASKS, Pair
from rnnlab.train.config import TrainConfig

if TYPE_CHECKING:
    from torch import nn

    from rnnlab.data.vocab import Vocab
    from rnnlab.tasks.runner import Run
    from rnnlab.tasks.seq2seq.model import Seq2Seq

#: with ``--synthetic`` and no limit given: this many steps, at most this many seconds
SYNTHETIC_STEPS, SYNTHETIC_BUDGET = 600, 120.0
#: the synthetic sets' sizes: train, validation, test
SYNTHETIC_SIZES = (6000, 300, 500)
_LIMITS = ("train.max_steps", "train.max_epochs", "train.time_budget")


@dataclass(frozen=True)
class Seq2SeqTaskConfig(Config):
    """Train an encoder-decoder, optionally with attention (default: the bundled 5,000
    English-French pairs, a 1x256 GRU, up to 30 epochs or 240 s; test BLEU with greedy and
    beam-search decoding)."""

    title = "data"

    data: str | None = option(
        None, metavar="PAIRS.tsv",
        help="source<TAB>target lines (default: the bundled eng-fra-5k.tsv)",
    )  # fmt: skip
    synthetic: str | None = option(
        None, choices=DIGIT_TASKS,
        help=f"reverse or sort digit sequences instead ({SYNTHETIC_STEPS} steps by default)",
    )  # fmt: skip
    digits: int = option(5, check=positive, help="--synthetic: sequence length")
    swap: bool = option(False, help="translate the second column into the first")
    min_freq: int = option(
        1, check=positive, help="tokens seen fewer times in training become <unk>"
    )
    val_fraction: float = option(0.1, check=fraction, help="validation part")
    test_fraction: float = option(0.1, check=fraction, help="held-out test part")
    split_seed: int = option(
        0, check=non_negative,
        help="seed of the split, kept apart from --seed so that runs share a test set",
    )  # fmt: skip
    beam: int = option(5, check=positive, help="beam size of the final test decoding")
    max_len: int = option(30, check=positive, help="longest output of the decoders")
    model: Seq2SeqConfig = nested(Seq2SeqConfig())
    train: TrainConfig = nested(
        TrainConfig(
            batch_size=32, lr=2e-3, schedule="cosine", eval_every=250, max_epochs=30,
            time_budget=240.0,
        )
    )  # fmt: skip

    def check(self) -> None:
        if self.data is not None and self.synthetic is not None:
            raise RnnlabError("--data and --synthetic contradict each other: choose one")

    @property
    def tokenizer(self) -> str:
        return "whitespace" if self.synthetic else "sentence"


@dataclass(frozen=True)
class TranslateConfig(Config):
    """Translate sentences with an encoder-decoder checkpoint: greedy, or beam search with
    --beam (e.g. ``rnnlab translate runs/seq2seq "i am cold ."``)."""

    title = "translate"

    checkpoint: str = option(positional=True, metavar="CKPT", help="a checkpoint or run directory")
    sentences: tuple[str, ...] = option(
        positional=True, metavar="SENTENCE", help="sentences to translate"
    )
    beam: int = option(1, check=positive, help="beam size; 1 = greedy")
    length_penalty: float = option(
        1.0, check=non_negative, help="beam score = log p / length^alpha; 0 = raw log-probability"
    )
    max_len: int = option(50, check=positive, help="longest output")
    nbest: int = option(1, check=positive, help="beam: show the N best, with their scores")

    def check(self) -> None:
        if self.nbest > self.beam:
            raise RnnlabError(
                f"--nbest {self.nbest} is more than --beam {self.beam}: beam search keeps only "
                "--beam hypotheses"
            )


def _source(config: Seq2SeqTaskConfig) -> str:
    if config.synthetic:
        return f"synthetic:{config.synthetic}{config.digits}"
    from rnnlab.tasks.common import data_source

    source = data_source(config.data, "eng-fra-5k.tsv")
    return source + (" (swapped)" if config.swap else "")


def load_pairs(config: Seq2SeqTaskConfig) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """The train, validation and test pairs of ``config``'s data."""
    from rnnlab.data import bundled
    from rnnlab.tasks.seq2seq.data import digit_pairs, read_pairs, split_pairs

    if config.synthetic:
        n_train, n_val, n_test = SYNTHETIC_SIZES
        task, d, seed = config.synthetic, config.digits, config.split_seed
        train = digit_pairs(task, n_train, d, d, seed=seed)
        test = digit_pairs(task, n_test, d, d, seed=seed + 1)
        val = digit_pairs(task, n_val, d, d, seed=seed + 2)
        return train, val, test
    path = Path(config.data) if config.data else bundled("eng-fra-5k.tsv")
    pairs = read_pairs(path)
    if config.swap:
        pairs = [Pair(p.target, p.source, p.extra) for p in pairs]
    fractions = (config.val_fraction, config.test_fraction)
    train, val, test = split_pairs(pairs, fractions, config.split_seed)
    if not val or not test:
        raise RnnlabError(f"{path}: too few pairs for a validation and a test split")
    return train, val, test


def decode_greedy(
    model: Seq2Seq, pairs: Sequence[Pair], collate: Callable, target: Vocab, max_len: int
) -> list[list[str]]:
    """The greedy translations of ``pairs``' sources, as target tokens."""
    from rnnlab.data.batching import chunks
    from rnnlab.train import distributed

    device = next(model.parameters()).device
    hyps = []
    for chunk in chunks(distributed.shard(pairs), 256):
        src, src_len, *_ = collate(chunk)
        hyps += [target.decode(h) for h in model.greedy(src.to(device), src_len, max_len)]
    return distributed.gather_list(hyps)


class Seq2SeqTask(Task):
    """many-to-many, different lengths: an encoder-decoder (default: English -> French)"""

    name = "seq2seq"
    help = "encoder-decoder on sentence pairs (default: English -> French)"
    config = Seq2SeqTaskConfig
    commands = {"translate": TranslateConfig}
    unit = "tokens"
    model_class = "rnnlab.tasks.seq2seq.model:Seq2Seq"
    model_config = Seq2SeqConfig

    # -- training ---------------------------------------------------------------------------
    def adjust(self, config: Seq2SeqTaskConfig, explicit: frozenset[str]) -> Seq2SeqTaskConfig:
        """``--synthetic`` with no limit given: ``SYNTHETIC_STEPS`` steps, at most
        ``SYNTHETIC_BUDGET`` seconds (the task takes seconds)."""
        if config.synthetic and not explicit & set(_LIMITS):
            limits = {"max_steps": SYNTHETIC_STEPS, "max_epochs": None}
            train = config.train.replace(**limits, time_budget=SYNTHETIC_BUDGET)
            return config.replace(train=train)
        return config

    def load(self, config: Seq2SeqTaskConfig) -> TaskData:
        from rnnlab.data.tokenize import tokenizer
        from rnnlab.data.vocab import Vocab

        train, val, test = load_pairs(config)
        split = tokenizer(config.tokenizer).split
        source = Vocab.build((split(p.source) for p in train), min_freq=config.min_freq)
        target = Vocab.build((split(p.target) for p in train), min_freq=config.min_freq)
        summary = (
            f"{_source(config)}: {len(train)} train / {len(val)} validation / {len(test)} test "
            f"pairs, vocabularies {len(source)} -> {len(target)}"
        )
        return TaskData(
            train, val, test, vocabs={"source": source, "target": target},
            source=_source(config), summary=summary,
            provenance={"tokenizer": config.tokenizer}, extra={"split": split},
        )  # fmt: skip

    def build_model(self, config: Seq2SeqTaskConfig, data: TaskData) -> nn.Module:
        source, target = data.vocabs["source"], data.vocabs["target"]
        return self.new_model(
            config.model.replace(
                src_vocab_size=len(source), tgt_vocab_size=len(target),
                sos_id=target.sos_id, eos_id=target.eos_id,
            )
        )  # fmt: skip

    def collate(self, data: TaskData) -> Callable[[list[Pair]], tuple]:
        """Pairs -> ``(src (N, S), src_lengths, tgt (N, T+1), tgt_lengths)``, right-padded."""
        from rnnlab.data.batching import pad_batch

        source, target, split = data.vocabs["source"], data.vocabs["target"], data.extra["split"]

        def collate(items: list[Pair]) -> tuple:
            src = pad_batch([source.encode(split(p.source)) or [source.unk_id] for p in items])
            tgt = pad_batch([target.encode(split(p.target), sos=True, eos=True) for p in items])
            return (*src, *tgt)

        return collate

    def tokens(self, batch: tuple) -> int:
        """The batch's target tokens (``<eos>`` included, ``<sos>`` not)."""
        return int((batch[3] - 1).sum())

    def evaluate(
        self, model: nn.Module, data: TaskData, config: Seq2SeqTaskConfig
    ) -> dict[str, float]:
        from rnnlab.tasks.common import mean_loss
        from rnnlab.tasks.metrics import bleu, exact_match

        collate, split = self.collate(data), data.extra["split"]
        loss = mean_loss(model, data.val, collate, self.tokens, size=128)
        hyps = decode_greedy(model, data.val, collate, data.vocabs["target"], config.max_len)
        refs = [split(p.target) for p in data.val]
        return {
            "val_loss": loss,
            "val_bleu": bleu(hyps, refs),
            "val_exact": exact_match(hyps, refs),
        }

    def describe(self, config: Seq2SeqTaskConfig, data: TaskData) -> str:
        return (
            f"a {config.model.encoder.describe()} encoder-decoder, attention "
            f"{config.model.attention or 'none'}, on {data.summary}"
        )

    def test(self, run: Run, data: TaskData, config: Seq2SeqTaskConfig) -> Report:
        """BLEU and exact match of greedy and beam-search decoding on the test split.

        The validation loss (teacher-forced cross-entropy) bottoms out epochs before BLEU stops
        improving on this small corpus: test whichever of best/ and last/ decodes the validation
        split better (a choice made on validation data only).
        """
        import torch

        from rnnlab.tasks.common import mean_loss
        from rnnlab.tasks.metrics import bleu, exact_match
        from rnnlab.tasks.runner import load_run

        collate, split = self.collate(data), data.extra["split"]
        source, target = data.vocabs["source"], data.vocabs["target"]
        last = load_run(self.out_dir(run), run.device, prefer="last", task=self.name)
        candidates = {"best": run.model, "last": last.model}
        val_refs = [split(p.target) for p in data.val]
        scores = {
            name: bleu(decode_greedy(m, data.val, collate, target, config.max_len), val_refs)
            for name, m in candidates.items()
        }
        chosen = max(scores, key=lambda name: (scores[name], name == "best"))
        model = candidates[chosen]
        print(
            f"validation BLEU: best/ (lowest loss) {scores['best']:.2f}, last/ "
            f"{scores['last']:.2f}; testing {chosen}/",
            file=sys.stderr,
        )
        test = list(data.test)
        refs = [split(p.target) for p in test]
        greedy = decode_greedy(model, test, collate, target, config.max_len)
        beam = []
        for p in test:
            src = torch.tensor(source.encode(split(p.source)) or [source.unk_id])
            hyp = model.beam_search(src, beam_size=config.beam, max_len=config.max_len)[0]
            beam.append(target.decode(hyp.tokens))
        loss = mean_loss(model, test, collate, self.tokens, size=128)
        metrics: dict[str, float | int | str] = {
            "test_bleu_greedy": bleu(greedy, refs),
            f"test_bleu_beam{config.beam}": bleu(beam, refs),
            "test_exact_greedy": exact_match(greedy, refs),
            f"test_exact_beam{config.beam}": exact_match(beam, refs),
            "test_loss": loss,
            "test_pairs": len(test),
            "tested_checkpoint": chosen,
        }
        examples = [
            f"  {p.source}  ->  {' '.join(b)}   (reference: {' '.join(r)})"
            for p, b, r in list(zip(test, beam, refs))[:8]
        ]
        return Report(metrics, ["test examples (beam):", *examples])

    # -- use --------------------------------------------------------------------------------
    def translate(self, run: Run, options: TranslateConfig) -> int:
        import torch

        from rnnlab.data.tokenize import tokenizer

        source, target = run.vocabs["source"], run.vocabs["target"]
        split = tokenizer(run.meta.get("data", {}).get("tokenizer", "sentence")).split
        model = run.model
        for sentence in options.sentences:
            tokens = split(sentence)
            if not tokens:
                raise RnnlabError(f"nothing to translate in {sentence!r}")
            unknown = source.unknown(tokens)
            if unknown:
                print(
                    f"note: unknown to the model (read as <unk>): {' '.join(unknown)}",
                    file=sys.stderr,
                )
            src = torch.tensor(source.encode(tokens), device=run.device)
            if options.beam == 1:
                out = model.greedy(src[None], None, options.max_len)[0]
                print(" ".join(target.decode(out)))
                continue
            hyps = model.beam_search(src, options.beam, options.max_len, options.length_penalty)
            for h in hyps[: options.nbest]:
                text = " ".join(target.decode(h.tokens))
                print(text if options.nbest == 1 else f"{h.score:8.3f}  {text}")
        return 0


TASK = Seq2SeqTask()

__all__ = ["TASK", "Seq2SeqTask", "Seq2SeqTaskConfig", "TranslateConfig"]
