"""The captioner: a padded batch equals each caption alone, a tiny overfit, generation in eval
mode, rebuilt from its config."""

from __future__ import annotations

import json

import pytest
import torch

from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError
from rnnlab.tasks import get_task
from rnnlab.tasks.caption.model import Captioner, CaptionerConfig
from tests.tasks.helpers import fit, pad, ragged, rnn


@pytest.mark.parametrize(("cell", "layers"), [("lstm", 1), ("gru", 2), ("minimal-gru", 1)])
@torch.no_grad()
def test_captioner_padding(cell: str, layers: int) -> None:
    config = CaptionerConfig(20, image_size=8, channels=(4,), embed_dim=8, rnn=rnn(cell, layers))
    model = Captioner(config)
    seqs = ragged([5, 2, 7], 20)
    targets = ragged([5, 2, 7], 20, seed=1)
    images = torch.rand(3, 3, 8, 8)
    tokens, lengths = pad(seqs)
    logits, loss = model(images, tokens, lengths, pad(targets)[0])
    total = 0.0
    for i, (s, t) in enumerate(zip(seqs, targets)):
        lg, loss_i = model(images[i : i + 1], s[None], None, t[None])
        torch.testing.assert_close(logits[i, : len(s)], lg[0], atol=1e-5, rtol=1e-5)
        total += float(loss_i) * len(s)
    assert float(loss) == pytest.approx(total / sum(len(s) for s in seqs), abs=1e-5)


def test_captioner_overfits() -> None:
    config = CaptionerConfig(
        10, image_size=8, channels=(4,), embed_dim=8, rnn=rnn("lstm", 1, hidden=16)
    )
    model = Captioner(config)
    images = torch.rand(3, 3, 8, 8)
    captions = [[3, 4, 5], [6, 7], [8, 4, 9, 3]]
    inputs = pad([torch.tensor([1, *c]) for c in captions])
    targets = pad([torch.tensor([*c, 2]) for c in captions])[0]
    fit(model, (images, *inputs, targets), 100)
    assert model.generate(images) == captions


def test_generate_runs_in_eval_mode_and_restores_the_mode() -> None:
    torch.manual_seed(0)
    decoder = RecurrentConfig("lstm", 12, num_layers=2, dropout=0.9)
    config = CaptionerConfig(20, image_size=8, channels=(4,), embed_dim=8, rnn=decoder, dropout=0.9)
    model = Captioner(config)
    images = torch.rand(4, 3, 8, 8)
    expected = model.eval().generate(images, max_len=10)
    model.train()
    for _ in range(3):  # dropout 0.9 in training mode would change the captions
        assert model.generate(images, max_len=10) == expected
    assert model.training
    # the model is not trivially insensitive to dropout: training-mode logits do change
    tokens = torch.ones(4, 3, dtype=torch.long)
    with torch.no_grad():
        assert not torch.equal(model(images, tokens)[0], model.eval()(images, tokens)[0])


def test_sampling_is_seeded() -> None:
    model = Captioner(CaptionerConfig(20, image_size=8, channels=(4,), embed_dim=8))
    images = torch.rand(3, 3, 8, 8)

    def sample(seed: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(seed)
        return model.generate(images, max_len=8, temperature=1.0, generator=g)

    assert sample(1) == sample(1)
    assert all(0 not in c and 1 not in c and 2 not in c for c in sample(1))  # <pad>, <start>, <end>


def test_rebuild_from_meta() -> None:
    model = Captioner(CaptionerConfig(10, rnn=rnn("gru", 2, hidden=32)))
    meta = json.loads(json.dumps(model.config.to_meta()))  # what a checkpoint stores
    rebuilt = get_task("caption").model_from_meta(meta)
    assert type(rebuilt) is Captioner and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())


def test_config_errors() -> None:
    model = Captioner(CaptionerConfig(10))
    with pytest.raises(ValueError, match=r"images must be \(N, 3, 36, 36\)"):
        model.generate(torch.rand(1, 3, 32, 32))
    with pytest.raises(RnnlabError, match="reads left to right"):
        CaptionerConfig(10, rnn=RecurrentConfig("lstm", 8, bidirectional=True))
    with pytest.raises(RnnlabError, match="too small for 3 pools"):
        CaptionerConfig(10, image_size=4)
