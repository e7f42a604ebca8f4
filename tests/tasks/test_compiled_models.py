"""Every task model compiles with ``torch.compile(fullgraph=True)``: no graph break, in training
(loss and every gradient) and in inference, with eager's results.

Dynamo and AOTAutograd (the ``aot_eager`` backend) capture the whole forward and backward;
Inductor's code generation for the same graphs is covered by tests/core/test_compile.py.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor, nn

from rnnlab.core import fast
from rnnlab.core.registry import RecurrentConfig
from rnnlab.tasks.caption.model import Captioner, CaptionerConfig
from rnnlab.tasks.classify.model import Classifier, ClassifierConfig
from rnnlab.tasks.lm.model import RNNLM, LMConfig
from rnnlab.tasks.names.model import NameGenerator, NameGeneratorConfig
from rnnlab.tasks.seq2seq.model import Seq2Seq, Seq2SeqConfig
from rnnlab.tasks.tag.model import Tagger, TaggerConfig

pytestmark = pytest.mark.skipif(not fast.is_available(), reason="the C++ kernels did not build")

V, N, T = 11, 3, 7


@pytest.fixture(autouse=True, scope="module")
def _forget_compiled() -> Iterator[None]:
    yield
    torch._dynamo.reset()
    gc.collect()


def _ids(*shape: int) -> Tensor:
    return torch.randint(3, V, shape)


LENGTHS = torch.tensor([T, 4, 2])


def _lm() -> tuple[nn.Module, tuple]:
    rnn = RecurrentConfig("lstm", 8, num_layers=2)
    return RNNLM(LMConfig(vocab_size=V, embedding_size=6, rnn=rnn)), (_ids(N, T), _ids(N, T))


def _classifier() -> tuple[nn.Module, tuple]:
    rnn = RecurrentConfig("gru", 8, bidirectional=True, layer_norm=True)
    model = Classifier(ClassifierConfig(vocab_size=V, num_classes=3, embed_dim=5, rnn=rnn))
    return model, (_ids(N, T), LENGTHS, torch.tensor([0, 2, 1]))


def _tagger() -> tuple[nn.Module, tuple]:
    rnn = RecurrentConfig("peephole", 8, num_layers=2, bidirectional=True)
    model = Tagger(TaggerConfig(vocab_size=V, num_tags=4, embed_dim=5, rnn=rnn))
    return model, (_ids(N, T), LENGTHS, torch.randint(0, 4, (N, T)))


def _seq2seq() -> tuple[nn.Module, tuple]:
    rnn = RecurrentConfig("lstm", 8, bidirectional=True)
    model = Seq2Seq(Seq2SeqConfig(V, 13, 6, rnn, attention="bahdanau"))
    tgt = torch.randint(3, 13, (N, 6))
    return model, (_ids(N, T), LENGTHS, tgt, torch.tensor([6, 5, 3]))


def _names() -> tuple[nn.Module, tuple]:
    config = NameGeneratorConfig(vocab_size=V, num_languages=3, embed_dim=5, lang_dim=4)
    model = NameGenerator(config.replace(rnn=RecurrentConfig("elman", 8)))
    return model, (torch.tensor([0, 2, 1]), _ids(N, T), LENGTHS, _ids(N, T))


def _captioner() -> tuple[nn.Module, tuple]:
    config = CaptionerConfig(vocab_size=V, image_size=8, channels=(4,), feature_dim=6)
    model = Captioner(config.replace(embed_dim=5, rnn=RecurrentConfig("mut2", 8)))
    return model, (torch.randn(N, 3, 8, 8), _ids(N, T), LENGTHS, _ids(N, T))


MODELS: dict[str, Callable[[], tuple[nn.Module, tuple]]] = {
    "lm": _lm,
    "classify": _classifier,
    "tag": _tagger,
    "seq2seq": _seq2seq,
    "names": _names,
    "caption": _captioner,
}


@pytest.mark.parametrize("task", list(MODELS))
def test_task_model_compiles_fullgraph_with_eager_results(task: str) -> None:
    torch.manual_seed(0)
    model, args = MODELS[task]()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)

    def grads(loss: Tensor) -> list[Tensor]:
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    model.train()
    out_c = compiled(*args)
    out_e = model(*args)
    loss_c, loss_e = out_c[-1], out_e[-1]
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
    g_c, g_e = grads(loss_c), grads(loss_e)
    assert len(g_c) == len(g_e) > 0
    for a, b in zip(g_c, g_e):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    model.eval()
    with torch.no_grad():
        first = compiled(*args)[0]
        first = first[0] if isinstance(first, tuple) else first
        eager = model(*args)[0]
        eager = eager[0] if isinstance(eager, tuple) else eager
    torch.testing.assert_close(first, eager, rtol=1e-5, atol=1e-6)
