"""The task models: padded batches equal each sequence alone, tiny overfits, rebuild from meta."""

from __future__ import annotations

import pytest
import torch

from rnnlab.core.registry import RecurrentConfig
from rnnlab.tasks import build_model
from rnnlab.tasks.caption.model import Captioner, CaptionerConfig
from rnnlab.tasks.classify.model import Classifier, ClassifierConfig
from rnnlab.tasks.names.model import NameGenerator, NameGeneratorConfig
from rnnlab.tasks.seq2seq.model import Seq2Seq, Seq2SeqConfig
from rnnlab.tasks.tag.model import Tagger, TaggerConfig

# (cell, layers, bidirectional): torch's fused kernel, rnnlab's own loop, stacked, both ways
RNNS = [("lstm", 1, False), ("gru", 2, True), ("minimal-gru", 1, True), ("elman", 2, False)]


def rnn(cell: str, layers: int, bi: bool, input_size: int, hidden: int = 12) -> RecurrentConfig:
    return RecurrentConfig(cell, input_size, hidden, num_layers=layers, bidirectional=bi)


def ragged(lengths: list[int], vocab: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g) for n in lengths]


def pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


# -- padded batch == each sequence alone ----------------------------------------------------------
@pytest.mark.parametrize(("cell", "layers", "bi"), RNNS)
@torch.no_grad()
def test_classifier_padding(cell: str, layers: int, bi: bool) -> None:
    model = Classifier(ClassifierConfig(20, 3, embed_dim=8, rnn=rnn(cell, layers, bi, 8)))
    seqs = ragged([5, 2, 7], 20)
    targets = torch.tensor([0, 2, 1])
    logits, loss = model(*pad(seqs), targets)
    alone = [model(s[None], None, targets[i : i + 1]) for i, s in enumerate(seqs)]
    for i, (lg, _) in enumerate(alone):
        torch.testing.assert_close(logits[i], lg[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, torch.stack([a[1] for a in alone]).mean(), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("cell", "layers", "bi"), RNNS)
@torch.no_grad()
def test_tagger_padding(cell: str, layers: int, bi: bool) -> None:
    model = Tagger(TaggerConfig(20, 4, embed_dim=8, rnn=rnn(cell, layers, bi, 8)))
    seqs = ragged([5, 2, 7], 20)
    tags = [torch.randint(0, 4, (len(s),)) for s in seqs]
    tokens, lengths = pad(seqs)
    logits, loss = model(tokens, lengths, pad(tags)[0])
    total = 0.0
    for i, (s, t) in enumerate(zip(seqs, tags)):
        lg, loss_i = model(s[None], None, t[None])
        torch.testing.assert_close(logits[i, : len(s)], lg[0], atol=1e-5, rtol=1e-5)
        total += float(loss_i) * len(s)
    assert float(loss) == pytest.approx(total / sum(len(s) for s in seqs), abs=1e-5)


@pytest.mark.parametrize(("cell", "layers"), [("lstm", 1), ("gru", 2), ("minimal-gru", 1)])
@torch.no_grad()
def test_generators_padding(cell: str, layers: int) -> None:
    names = NameGenerator(NameGeneratorConfig(20, 3, 8, 4, rnn(cell, layers, False, 12)))
    captioner = Captioner(
        CaptionerConfig(
            20, image_size=8, channels=(4,), embed_dim=8, rnn=rnn(cell, layers, False, 8)
        )
    )
    seqs = ragged([5, 2, 7], 20)
    targets = ragged([5, 2, 7], 20, seed=1)
    conditions = [torch.tensor([0, 2, 1]), torch.rand(3, 3, 8, 8)]
    for model, cond in zip([names, captioner], conditions):
        tokens, lengths = pad(seqs)
        logits, loss = model(cond, tokens, lengths, pad(targets)[0])
        total = 0.0
        for i, (s, t) in enumerate(zip(seqs, targets)):
            lg, loss_i = model(cond[i : i + 1], s[None], None, t[None])
            torch.testing.assert_close(logits[i, : len(s)], lg[0], atol=1e-5, rtol=1e-5)
            total += float(loss_i) * len(s)
        assert float(loss) == pytest.approx(total / sum(len(s) for s in seqs), abs=1e-5)


@pytest.mark.parametrize("attention", [None, "luong", "bahdanau"])
@pytest.mark.parametrize(("cell", "layers", "bi"), [("lstm", 2, True), ("gru", 1, False)])
@torch.no_grad()
def test_seq2seq_padding(attention: str | None, cell: str, layers: int, bi: bool) -> None:
    config = Seq2SeqConfig(20, 15, 8, rnn(cell, layers, bi, 8), attention=attention)
    model = Seq2Seq(config)
    src = ragged([5, 2, 7], 20)
    tgt = [torch.cat([torch.tensor([1]), t, torch.tensor([2])]) for t in ragged([3, 6, 1], 15, 1)]
    logits, loss = model(*pad(src), *pad(tgt))
    total = 0.0
    for i, (s, t) in enumerate(zip(src, tgt)):
        lg, loss_i = model(s[None], None, t[None], None)
        torch.testing.assert_close(logits[i, : len(t) - 1], lg[0], atol=1e-5, rtol=1e-5)
        total += float(loss_i) * (len(t) - 1)
    assert float(loss) == pytest.approx(total / sum(len(t) - 1 for t in tgt), abs=1e-5)
    # batched greedy decoding == each alone
    batched = model.greedy(*pad(src), max_len=6)
    assert batched == [model.greedy(s[None], max_len=6)[0] for s in src]


# -- tiny overfits ------------------------------------------------------------------------------
def fit(model: torch.nn.Module, batch: tuple, steps: int, lr: float = 0.02) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        _, loss = model(*batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def test_classifier_overfits() -> None:
    model = Classifier(ClassifierConfig(20, 4, 8, rnn("gru", 1, True, 8, 16)))
    tokens, lengths = pad(ragged([4, 6, 3, 5, 7, 2, 6, 4], 20))
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    fit(model, (tokens, lengths, labels), 60)
    assert model.predict_proba(tokens, lengths).argmax(-1).tolist() == labels.tolist()


def test_tagger_overfits() -> None:
    model = Tagger(TaggerConfig(20, 3, 8, rnn("lstm", 1, True, 8, 16)))
    seqs = ragged([4, 6, 3, 5], 20)
    tags = [torch.randint(0, 3, (len(s),)) for s in seqs]
    tokens, lengths = pad(seqs)
    fit(model, (tokens, lengths, pad(tags)[0]), 80)
    assert model.tag(tokens, lengths) == [t.tolist() for t in tags]


def test_name_generator_overfits() -> None:
    # two "languages", one name each: greedy generation reproduces them
    model = NameGenerator(NameGeneratorConfig(12, 2, 8, 4, rnn("gru", 1, False, 12, 24)))
    names = [[5, 6, 7, 8], [9, 10, 4]]
    inputs = pad([torch.tensor([1, *n]) for n in names])
    targets = pad([torch.tensor([*n, 2]) for n in names])[0]
    fit(model, (torch.tensor([0, 1]), *inputs, targets), 80)
    assert model.generate(torch.tensor([0, 1]), temperature=0.0) == names


def test_captioner_overfits() -> None:
    config = CaptionerConfig(
        10, image_size=8, channels=(4,), embed_dim=8, rnn=rnn("lstm", 1, False, 8, 16)
    )
    model = Captioner(config)
    images = torch.rand(3, 3, 8, 8)
    captions = [[3, 4, 5], [6, 7], [8, 4, 9, 3]]
    inputs = pad([torch.tensor([1, *c]) for c in captions])
    targets = pad([torch.tensor([*c, 2]) for c in captions])[0]
    fit(model, (images, *inputs, targets), 100)
    assert model.generate(images) == captions


# -- configs and rebuilding -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "model",
    [
        Classifier(
            ClassifierConfig(10, 3, 8, rnn("peephole", 2, True, 8), class_weights=(1, 2, 3))
        ),
        Tagger(TaggerConfig(10, 3, 8, rnn("gru-before", 1, True, 8))),
        Seq2Seq(Seq2SeqConfig(10, 11, 8, rnn("lstm", 2, True, 8), attention="bahdanau")),
        NameGenerator(NameGeneratorConfig(10, 3, 8, 4, rnn("elman", 1, False, 12))),
        Captioner(CaptionerConfig(10, rnn=rnn("gru", 2, False, 32))),
    ],
    ids=lambda m: type(m).__name__,
)
def test_rebuild_from_meta(model: torch.nn.Module) -> None:
    import json

    meta = json.loads(json.dumps(model.to_meta()))  # what a checkpoint stores
    rebuilt = build_model(meta)
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="input_size must be 16"):
        ClassifierConfig(10, 3, embed_dim=16)
    with pytest.raises(ValueError, match="class_weights must have 3"):
        ClassifierConfig(10, 3, 8, rnn("lstm", 1, False, 8), class_weights=(1.0,))
    with pytest.raises(ValueError, match="attention must be None or one of"):
        Seq2SeqConfig(10, 10, 64, attention="dot")
    with pytest.raises(ValueError, match="bidirectional must be False"):
        NameGeneratorConfig(10, 2, rnn=RecurrentConfig("lstm", 48, bidirectional=True))
    model = Captioner(CaptionerConfig(10))
    with pytest.raises(ValueError, match=r"images must be \(N, 3, 36, 36\)"):
        model.generate(torch.rand(1, 3, 32, 32))
