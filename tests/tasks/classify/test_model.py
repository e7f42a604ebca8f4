"""The classifier: padded batch == each sequence alone, a tiny overfit, rebuilt from its meta."""

from __future__ import annotations

import json

import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.tasks.classify.config import ClassifierConfig, SplitConfig
from rnnlab.tasks.classify.model import Classifier
from rnnlab.tasks.classify.task import TASK
from tests.tasks.helpers import RNNS, fit, pad, ragged, rnn


@pytest.mark.parametrize(("cell", "layers", "bi"), RNNS)
@torch.no_grad()
def test_classifier_padding(cell: str, layers: int, bi: bool) -> None:
    model = Classifier(ClassifierConfig(20, 3, embed_dim=8, rnn=rnn(cell, layers, bi)))
    seqs = ragged([5, 2, 7], 20)
    targets = torch.tensor([0, 2, 1])
    logits, loss = model(*pad(seqs), targets)
    alone = [model(s[None], None, targets[i : i + 1]) for i, s in enumerate(seqs)]
    for i, (lg, _) in enumerate(alone):
        torch.testing.assert_close(logits[i], lg[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, torch.stack([a[1] for a in alone]).mean(), atol=1e-5, rtol=0)


def test_classifier_overfits() -> None:
    model = Classifier(ClassifierConfig(20, 4, 8, rnn("gru", 1, True, 16)))
    tokens, lengths = pad(ragged([4, 6, 3, 5, 7, 2, 6, 4], 20))
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    fit(model, (tokens, lengths, labels), 60)
    assert model.predict_proba(tokens, lengths).argmax(-1).tolist() == labels.tolist()


def test_class_weights_weigh_the_loss() -> None:
    config = ClassifierConfig(20, 2, 8, rnn("gru", 1, False), class_weights=(1.0, 3.0))
    model = Classifier(config)
    tokens, lengths = pad(ragged([4, 6], 20))
    targets = torch.tensor([0, 1])
    logits, loss = model(tokens, lengths, targets)
    each = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    torch.testing.assert_close(loss, (each[0] + 3 * each[1]) / 4)


def test_rebuild_from_meta() -> None:
    config = ClassifierConfig(10, 3, 8, rnn("peephole", 2, True), class_weights=(1, 2, 3))
    model = Classifier(config)
    meta = json.loads(json.dumps(model.config.to_meta()))  # what a checkpoint stores
    rebuilt = TASK.model_from_meta(meta)
    assert type(rebuilt) is Classifier and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())


def test_config_errors() -> None:
    with pytest.raises(RnnlabError, match="class_weights must have 3"):
        ClassifierConfig(10, 3, 8, rnn("lstm", 1, False), class_weights=(1.0,))
    with pytest.raises(RnnlabError, match="embed_dim must be > 0"):
        ClassifierConfig(10, 3, embed_dim=0)
    with pytest.raises(RnnlabError, match="model_config: unknown option 'input_size'"):
        ClassifierConfig.from_meta({"input_size": 8}, "model_config")
    with pytest.raises(RnnlabError, match="must sum below 1"):
        SplitConfig(val_fraction=0.5, test_fraction=0.5)
