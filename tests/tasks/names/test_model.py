"""The name generator: padded batch == each name alone, a tiny overfit, generation (against a
step-by-step reference, in eval mode), rebuilt from its meta."""

from __future__ import annotations

import json

import pytest
import torch

from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError
from rnnlab.tasks.decoding import forbid, sample_next
from rnnlab.tasks.names.config import NameGeneratorConfig
from rnnlab.tasks.names.model import NameGenerator
from rnnlab.tasks.names.task import TASK
from tests.tasks.helpers import fit, pad, ragged, rnn


@pytest.mark.parametrize(("cell", "layers"), [("lstm", 1), ("gru", 2), ("minimal-gru", 1)])
@torch.no_grad()
def test_generator_padding(cell: str, layers: int) -> None:
    model = NameGenerator(NameGeneratorConfig(20, 3, 8, 4, rnn(cell, layers)))
    seqs = ragged([5, 2, 7], 20)
    targets = ragged([5, 2, 7], 20, seed=1)
    languages = torch.tensor([0, 2, 1])
    tokens, lengths = pad(seqs)
    logits, loss = model(languages, tokens, lengths, pad(targets)[0])
    total = 0.0
    for i, (s, t) in enumerate(zip(seqs, targets)):
        lg, loss_i = model(languages[i : i + 1], s[None], None, t[None])
        torch.testing.assert_close(logits[i, : len(s)], lg[0], atol=1e-5, rtol=1e-5)
        total += float(loss_i) * len(s)
    assert float(loss) == pytest.approx(total / sum(len(s) for s in seqs), abs=1e-5)


def test_name_generator_overfits() -> None:
    # two "languages", one name each: greedy generation reproduces them
    model = NameGenerator(NameGeneratorConfig(12, 2, 8, 4, rnn("gru", 1, hidden=24)))
    names = [[5, 6, 7, 8], [9, 10, 4]]
    inputs = pad([torch.tensor([1, *n]) for n in names])
    targets = pad([torch.tensor([*n, 2]) for n in names])[0]
    fit(model, (torch.tensor([0, 1]), *inputs, targets), 80)
    assert model.generate(torch.tensor([0, 1]), temperature=0.0) == names


@torch.no_grad()
def reference_generate(
    model: NameGenerator,
    languages: torch.Tensor,
    max_len: int,
    temperature: float,
    top_k: int | None,
    prefix: list[int],
    generator: torch.Generator,
) -> list[list[int]]:
    """rnnlab 0.1.0's loop: the whole forward pass at every step, one name at a time."""
    sos, eos = model.config.sos_id, model.config.eos_id
    names = [list(prefix) for _ in languages]
    done = [False] * len(languages)
    inputs = [[sos, *prefix] for _ in languages]
    for _ in range(max_len - len(prefix)):
        x = torch.tensor(inputs)
        logits, _ = model(languages, x)
        nxt = sample_next(forbid(logits[:, -1], [0, sos]), temperature, top_k, generator)
        for i, token in enumerate(nxt.tolist()):
            if not done[i] and token != eos:
                names[i].append(token)
            done[i] = done[i] or token == eos
            inputs[i].append(token)
        if all(done):
            break
    return names


@pytest.mark.parametrize(
    ("temperature", "top_k", "prefix"), [(0.0, None, []), (1.5, None, []), (0.8, 4, [5, 6])]
)
def test_generate_equals_the_reference_loop(
    temperature: float, top_k: int | None, prefix: list[int]
) -> None:
    model = NameGenerator(NameGeneratorConfig(10, 3, 8, 4, rnn("lstm", 2))).eval()
    languages = torch.tensor([0, 1, 2, 1, 0, 2])
    got = model.generate(
        languages, 9, temperature, top_k, prefix, generator=torch.Generator().manual_seed(3)
    )
    want = reference_generate(
        model, languages, 9, temperature, top_k, prefix, torch.Generator().manual_seed(3)
    )
    assert got == want
    assert all(name[: len(prefix)] == prefix and len(name) <= 9 for name in got)
    assert all(0 not in name and 1 not in name and 2 not in name for name in got)


def test_generate_runs_in_eval_mode() -> None:
    model = NameGenerator(NameGeneratorConfig(12, 2, 8, 4, rnn("gru", 1), dropout=0.9))
    languages = torch.tensor([0, 1, 0, 1])
    model.train()
    in_train_mode = model.generate(languages, temperature=0.0)
    assert model.training  # restored
    model.eval()
    assert model.generate(languages, temperature=0.0) == in_train_mode
    assert not model.training


def test_generate_a_full_prefix() -> None:
    model = NameGenerator(NameGeneratorConfig(12, 2, 8, 4, rnn("gru", 1)))
    assert model.generate(torch.tensor([0, 1]), max_len=2, prefix=[5, 6]) == [[5, 6], [5, 6]]


def test_rebuild_from_meta() -> None:
    model = NameGenerator(NameGeneratorConfig(10, 3, 8, 4, rnn("elman", 1)))
    meta = json.loads(json.dumps(model.config.to_meta()))  # what a checkpoint stores
    rebuilt = TASK.model_from_meta(meta)
    assert type(rebuilt) is NameGenerator and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())


def test_config_errors() -> None:
    with pytest.raises(RnnlabError, match="bidirectional must be False"):
        NameGeneratorConfig(10, 2, rnn=RecurrentConfig("lstm", 48, bidirectional=True))
    with pytest.raises(RnnlabError, match="eos_id must be below vocab_size 4"):
        NameGeneratorConfig(4, 2, eos_id=4)
    with pytest.raises(RnnlabError, match="model_config: unknown option 'input_size'"):
        NameGeneratorConfig.from_meta({"input_size": 8}, "model_config")
