"""The one table from cell names (as used by the CLI and stored in checkpoints) to cell classes.

The library composes cells as classes or factories; only the command line and saved configs
name them, and they resolve names here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

from rnnlab.core.cells import (
    AdditiveCell,
    CellFactory,
    ElmanCell,
    GRUCell,
    LSTMCell,
    MinimalGRUCell,
)
from rnnlab.core.layers import Recurrent
from rnnlab.core.mut import MUT1Cell, MUT2Cell, MUT3Cell
from rnnlab.errors import RnnlabError

CELLS: dict[str, CellFactory] = {
    "lstm": LSTMCell,
    "lstm-nofg": partial(LSTMCell, forget_gate=False, forget_bias=None),
    "peephole": partial(LSTMCell, peephole=True),
    "gru": GRUCell,
    "gru-before": partial(GRUCell, reset="before"),
    "minimal-gru": MinimalGRUCell,
    "elman": ElmanCell,
    "elman-relu": partial(ElmanCell, nonlinearity="relu"),
    "additive": AdditiveCell,
    "mut1": MUT1Cell,
    "mut2": MUT2Cell,
    "mut3": MUT3Cell,
}

#: One-line descriptions, for ``--help`` and docs.
CELL_HELP: dict[str, str] = {
    "lstm": "LSTM with forget gate (Gers 2000), forget bias 1",
    "lstm-nofg": "original LSTM without forget gate (Hochreiter & Schmidhuber 1997)",
    "peephole": "LSTM with peephole connections (Gers & Schmidhuber 2000)",
    "gru": "GRU, reset after the recurrent matmul (cuDNN / torch.nn form)",
    "gru-before": "GRU, reset before the recurrent matmul (Cho et al. 2014 as taught)",
    "minimal-gru": "the lectures' simple GRU: update gate only",
    "elman": "vanilla (Elman) RNN, tanh",
    "elman-relu": "vanilla (Elman) RNN, relu",
    "additive": "the lectures' naive additive update s_t = s_{t-1} + tanh(...)",
    "mut1": "MUT1 (Jozefowicz et al. 2015), input projected where the paper adds raw x",
    "mut2": "MUT2 (Jozefowicz et al. 2015), input projected where the paper adds raw x",
    "mut3": "MUT3 (Jozefowicz et al. 2015)",
}


def register_cell(name: str, factory: CellFactory, help: str) -> None:
    """Make a cell available by name (to the CLI, configs and experiments)."""
    CELLS[name] = factory
    CELL_HELP[name] = help


def cell_factory(
    name: str, layer_norm: bool = False, forget_bias: float | None = None
) -> CellFactory:
    """The factory for cell ``name``, with layer norm and (LSTM only) a forget-gate bias."""
    if name not in CELLS:
        raise RnnlabError(f"unknown cell {name!r}; choose one of: {', '.join(CELLS)}")
    options: dict[str, object] = {}
    if layer_norm:
        options["layer_norm"] = True
    if forget_bias is not None:
        base = CELLS[name]
        func, kw = (base.func, base.keywords) if isinstance(base, partial) else (base, {})
        if func is not LSTMCell or kw.get("forget_gate", True) is False:
            raise RnnlabError(f"forget_bias applies to LSTM cells with a forget gate, not {name!r}")
        options["forget_bias"] = forget_bias
    return partial(CELLS[name], **options) if options else CELLS[name]


@dataclass(frozen=True)
class RecurrentConfig:
    """Everything needed to rebuild a :class:`~rnnlab.core.layers.Recurrent` (stored in
    checkpoints)."""

    cell: str = "lstm"
    input_size: int = 1
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    layer_norm: bool = False
    forget_bias: float | None = None

    def build(self, batch_first: bool = True) -> Recurrent:
        factory = cell_factory(self.cell, self.layer_norm, self.forget_bias)
        return Recurrent(
            factory,
            self.input_size,
            self.hidden_size,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            dropout=self.dropout,
            batch_first=batch_first,
        )

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ["CELLS", "CELL_HELP", "RecurrentConfig", "cell_factory", "register_cell"]
