"""The tagger: padded batch == each sequence alone, a tiny overfit, rebuilt from its meta."""

from __future__ import annotations

import json

import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.tasks.tag.config import TaggerConfig
from rnnlab.tasks.tag.model import Tagger
from rnnlab.tasks.tag.task import TASK
from tests.tasks.helpers import RNNS, fit, pad, ragged, rnn


@pytest.mark.parametrize(("cell", "layers", "bi"), RNNS)
@torch.no_grad()
def test_tagger_padding(cell: str, layers: int, bi: bool) -> None:
    model = Tagger(TaggerConfig(20, 4, embed_dim=8, rnn=rnn(cell, layers, bi)))
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


def test_tagger_overfits() -> None:
    model = Tagger(TaggerConfig(20, 3, 8, rnn("lstm", 1, True, 16)))
    seqs = ragged([4, 6, 3, 5], 20)
    tags = [torch.randint(0, 3, (len(s),)) for s in seqs]
    tokens, lengths = pad(seqs)
    fit(model, (tokens, lengths, pad(tags)[0]), 80)
    assert model.tag(tokens, lengths) == [t.tolist() for t in tags]


def test_rebuild_from_meta() -> None:
    model = Tagger(TaggerConfig(10, 3, 8, rnn("gru-before", 1, True)))
    meta = json.loads(json.dumps(model.config.to_meta()))  # what a checkpoint stores
    rebuilt = TASK.model_from_meta(meta)
    assert type(rebuilt) is Tagger and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())


def test_config_defaults_and_errors() -> None:
    assert TaggerConfig().rnn.bidirectional  # a tagger reads both ways by default
    with pytest.raises(RnnlabError, match="dropout must be in \\[0, 1\\)"):
        TaggerConfig(dropout=1.0)
    with pytest.raises(RnnlabError, match="model_config: unknown option 'input_size'"):
        TaggerConfig.from_meta({"input_size": 8}, "model_config")
