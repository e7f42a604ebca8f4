"""The cell registry: every name builds a working cell and layer; bad names fail in one line."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from rnnlab.core.cells import ElmanCell, GRUCell, LSTMCell, RecurrentCell
from rnnlab.core.layers import Recurrent
from rnnlab.core.registry import CELL_HELP, CELLS, RecurrentConfig, cell_factory, register_cell
from rnnlab.errors import RnnlabError


def test_every_name_has_help_and_builds_a_cell_that_runs() -> None:
    assert set(CELLS) == set(CELL_HELP)
    for name in CELLS:
        assert CELL_HELP[name].strip(), name
        for layer_norm in (False, True):
            cell = cell_factory(name, layer_norm=layer_norm)(3, 4)
            assert isinstance(cell, RecurrentCell) and cell.layer_norm == layer_norm
            h, _ = cell(torch.randn(2, 3))
            assert h.shape == (2, 4) and torch.isfinite(h).all()


@pytest.mark.parametrize(
    ("name", "cls", "attrs"),
    [
        ("lstm", LSTMCell, {"forget_gate": True, "peephole": False, "forget_bias": 1.0}),
        ("lstm-nofg", LSTMCell, {"forget_gate": False, "forget_bias": None}),
        ("peephole", LSTMCell, {"forget_gate": True, "peephole": True}),
        ("gru", GRUCell, {"reset": "after"}),
        ("gru-before", GRUCell, {"reset": "before"}),
        ("elman", ElmanCell, {"nonlinearity": "tanh"}),
        ("elman-relu", ElmanCell, {"nonlinearity": "relu"}),
    ],
)
def test_names_map_to_the_documented_cells(name: str, cls: type, attrs: dict) -> None:
    cell = cell_factory(name)(3, 4)
    assert type(cell) is cls
    for key, value in attrs.items():
        assert getattr(cell, key) == value, key


def test_forget_bias_option() -> None:
    for name in ("lstm", "peephole"):
        cell = cell_factory(name, forget_bias=2.0)(3, 4)
        assert (cell.bias_ih[4:8] == 2.0).all() and (cell.bias_hh[4:8] == 0).all()
    for name in ("gru", "elman", "lstm-nofg", "additive", "minimal-gru"):
        with pytest.raises(
            RnnlabError, match=f"forget_bias applies to LSTM cells with a forget gate, not '{name}'"
        ):
            cell_factory(name, forget_bias=1.0)


def test_unknown_cell_name() -> None:
    with pytest.raises(RnnlabError, match=r"unknown cell 'lstn'; choose one of: lstm, lstm-nofg"):
        cell_factory("lstn")
    assert issubclass(RnnlabError, ValueError)


def test_register_cell() -> None:
    try:
        register_cell("elman-wide", partial(ElmanCell, nonlinearity="relu"), "a test entry")
        assert CELL_HELP["elman-wide"] == "a test entry"
        assert cell_factory("elman-wide", layer_norm=True)(2, 3).nonlinearity == "relu"
    finally:
        CELLS.pop("elman-wide", None)
        CELL_HELP.pop("elman-wide", None)


def test_recurrent_config_builds_the_layer_and_round_trips() -> None:
    config = RecurrentConfig(
        cell="peephole",
        hidden_size=4,
        num_layers=2,
        bidirectional=True,
        dropout=0.25,
        layer_norm=True,
        forget_bias=0.5,
    )
    rnn = config.build(input_size=3)
    assert isinstance(rnn, Recurrent) and rnn.batch_first
    assert (rnn.num_layers, rnn.bidirectional, rnn.dropout) == (2, True, 0.25)
    cell = rnn.cell_at(1, 1)
    assert cell.peephole and cell.layer_norm and cell.input_size == 8
    assert (cell.bias_ih[4:8] == 0.5).all()
    assert not config.build(3, batch_first=False).batch_first
    data = json.loads(json.dumps(config.to_meta()))  # what a checkpoint stores
    assert RecurrentConfig.from_meta(data) == config
    out, (h, _) = rnn(torch.randn(2, 5, 3))
    assert out.shape == (2, 5, 8) and h.shape == (4, 2, 4)
    with pytest.raises(AttributeError):
        config.hidden_size = 8  # frozen
    with pytest.raises(RnnlabError, match="unknown cell 'nope'"):
        RecurrentConfig(cell="nope")
