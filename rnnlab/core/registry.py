"""The one table from cell names (as the command line and saved configs use them) to cells, and
:class:`RecurrentConfig`, everything needed to rebuild a :class:`~rnnlab.core.layers.Recurrent`.

The library composes cells as classes or factories; only the command line and saved configs
name them, and they resolve names here. Torch-free: the classes are imported when a cell is
first built, so that ``--help`` lists the cells without importing torch.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rnnlab.config import Check, Config, option, positive, probability
from rnnlab.core.kernels import BACKENDS
from rnnlab.errors import RnnlabError

if TYPE_CHECKING:
    from rnnlab.core.cells import CellFactory, RecurrentCell
    from rnnlab.core.layers import Recurrent


class CellRef:
    """A cell factory named by its class's import path and fixed options: ``CellRef(
    "rnnlab.core.cells:LSTMCell", peephole=True)(input_size, hidden_size)`` builds the cell.

    Args:
        target: ``"module:Class"``, or the class itself.
        options: keyword arguments passed to the class (its cell options).
    """

    def __init__(self, target: str | type, **options: Any) -> None:
        self.target = target
        self.options = options

    @property
    def cls(self) -> type[RecurrentCell]:
        if isinstance(self.target, str):
            module, _, name = self.target.partition(":")
            return getattr(importlib.import_module(module), name)
        return self.target

    def with_options(self, **options: Any) -> CellRef:
        return CellRef(self.target, **{**self.options, **options})

    def __call__(self, input_size: int, hidden_size: int, **kwargs: Any) -> RecurrentCell:
        return self.cls(input_size, hidden_size, **{**self.options, **kwargs})

    def __repr__(self) -> str:
        target = self.target if isinstance(self.target, str) else self.target.__qualname__
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"CellRef({target!r}{', ' if options else ''}{options})"


_CELLS = "rnnlab.core.cells"
_MUT = "rnnlab.core.mut"
_MIN = "rnnlab.core.minimal"

#: Cell name -> factory ``factory(input_size, hidden_size, **options)``.
CELLS: dict[str, CellRef] = {
    "lstm": CellRef(f"{_CELLS}:LSTMCell"),
    "lstm-nofg": CellRef(f"{_CELLS}:LSTMCell", forget_gate=False, forget_bias=None),
    "peephole": CellRef(f"{_CELLS}:LSTMCell", peephole=True),
    "gru": CellRef(f"{_CELLS}:GRUCell"),
    "gru-before": CellRef(f"{_CELLS}:GRUCell", reset="before"),
    "minimal-gru": CellRef(f"{_CELLS}:MinimalGRUCell"),
    "elman": CellRef(f"{_CELLS}:ElmanCell"),
    "elman-relu": CellRef(f"{_CELLS}:ElmanCell", nonlinearity="relu"),
    "additive": CellRef(f"{_CELLS}:AdditiveCell"),
    "mut1": CellRef(f"{_MUT}:MUT1Cell"),
    "mut2": CellRef(f"{_MUT}:MUT2Cell"),
    "mut3": CellRef(f"{_MUT}:MUT3Cell"),
    "mingru": CellRef(f"{_MIN}:MinGRUCell"),
    "minlstm": CellRef(f"{_MIN}:MinLSTMCell"),
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
    "mingru": "minGRU (Feng et al. 2024): input-only gates, trained as a parallel scan",
    "minlstm": "minLSTM (Feng et al. 2024): input-only normalised gates, a parallel scan",
}

#: Cells without recurrent weights (every weight reads the input), for the size bound of
#: :meth:`RecurrentConfig.min_parameters`.
INPUT_ONLY: frozenset[str] = frozenset({"mingru", "minlstm"})


def register_cell(name: str, factory: type | CellRef, help: str) -> None:
    """Make a cell available by name (to the command line, configs and experiments)."""
    CELLS[name] = factory if isinstance(factory, CellRef) else CellRef(factory)
    CELL_HELP[name] = help


def cell_factory(
    name: str, layer_norm: bool = False, forget_bias: float | None = None
) -> CellFactory:
    """The factory for cell ``name``, with layer norm and (LSTM only) a forget-gate bias."""
    if name not in CELLS:
        raise RnnlabError(f"unknown cell {name!r}; choose one of: {', '.join(CELLS)}")
    ref = CELLS[name]
    options: dict[str, object] = {}
    if layer_norm:
        options["layer_norm"] = True
    if forget_bias is not None:
        is_lstm = ref.target == f"{_CELLS}:LSTMCell" or getattr(ref.target, "__name__", "") == (
            "LSTMCell"
        )
        if not is_lstm or ref.options.get("forget_gate", True) is False:
            raise RnnlabError(f"forget_bias applies to LSTM cells with a forget gate, not {name!r}")
        options["forget_bias"] = forget_bias
    return ref.with_options(**options) if options else ref


#: The largest model rnnlab builds, in parameters (2**31: 8 GiB of float32 weights, about 32 GiB
#: with their gradients and AdamW's two moments), checked before anything is allocated, so that
#: a mistyped ``--hidden 1000000`` (16 TB) or a hostile checkpoint config is a one-line error,
#: not an allocation failure or a machine swapping to a halt. ``RNNLAB_MAX_PARAMETERS`` raises
#: (or lowers) it.
MAX_PARAMETERS = 2**31
#: The deepest stack of recurrent layers (each layer is a Python module: 10^5 of them take
#: minutes to build before the first step).
MAX_LAYERS = 64


def max_parameters() -> int:
    """The parameter limit: ``RNNLAB_MAX_PARAMETERS`` if set, else :data:`MAX_PARAMETERS`."""
    text = os.environ.get("RNNLAB_MAX_PARAMETERS", "").strip()
    if not text:
        return MAX_PARAMETERS
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        raise RnnlabError(
            f"RNNLAB_MAX_PARAMETERS must be a number of parameters, got {text!r}"
        ) from None
    if value < 1:
        raise RnnlabError(f"RNNLAB_MAX_PARAMETERS must be positive, got {text!r}")
    return value


def check_parameter_count(count: int, what: str, exact: bool = True) -> None:
    """Refuse a model of ``count`` parameters (a lower bound unless ``exact``) above
    :func:`max_parameters`, naming ``what``."""
    limit = max_parameters()
    if count > limit:
        bound = "" if exact else "at least "
        raise RnnlabError(
            f"{what} has {bound}{count:,} parameters ({_bytes(4 * count)} in float32), more "
            f"than the limit of {limit:,} (set RNNLAB_MAX_PARAMETERS to raise it)"
        )


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit in ("B", "TB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} TB"  # pragma: no cover


def _cell_help() -> str:
    return "the recurrent cell: " + "; ".join(f"{n} ({h})" for n, h in CELL_HELP.items())


@dataclass(frozen=True)
class RecurrentConfig(Config):
    """Recurrent layer: the cell and the shape of the recurrent layer (stored in checkpoints).

    The input size is not part of it: the model that owns the layer knows what feeds it and
    passes it to :meth:`build`.
    """

    title = "recurrent layer"

    cell: str = option("lstm", metavar="CELL", help=_cell_help())
    hidden_size: int = option(
        128, check=positive, aliases=("--hidden",), help="hidden units per layer"
    )
    num_layers: int = option(
        1,
        check=Check(lambda v: 1 <= v <= MAX_LAYERS, f"in [1, {MAX_LAYERS}]"),
        aliases=("--layers",),
        help="stacked layers",
    )
    bidirectional: bool = option(
        False,
        off_aliases=("--unidirectional",),
        help="also run right to left (--unidirectional: not)",
    )
    dropout: float = option(0.0, check=probability, help="dropout between the stacked layers")
    layer_norm: bool = option(False, help="layer-normalised cells (Ba et al. 2016)")
    forget_bias: float | None = option(
        None, help="initial LSTM forget-gate bias (default: the cell's, 1.0)"
    )
    backend: str = option(
        "auto", choices=BACKENDS, help="which implementation runs the recurrence (auto: fastest)"
    )
    weight_drop: float = option(
        0.0,
        check=probability,
        help="DropConnect on the recurrent weights, one mask per batch (Merity et al. 2018)",
    )
    locked_dropout: bool = option(
        False,
        help="the layer's dropouts use one mask per sequence for all its steps (Gal & "
        "Ghahramani 2016)",
    )
    input_dropout: float = option(
        0.0, check=probability, help="dropout on the recurrent layer's input"
    )
    output_dropout: float = option(
        0.0, check=probability, help="dropout on the recurrent layer's output"
    )
    zoneout: float = option(
        0.0,
        check=probability,
        help="each state unit keeps its previous value with this probability at every step "
        "(Krueger et al. 2017)",
    )
    zoneout_cell: float | None = option(
        None, check=probability, help="zoneout of the LSTM's cell state (default: --zoneout)"
    )

    def check(self) -> None:
        if self.cell not in CELLS:
            raise RnnlabError(f"unknown cell {self.cell!r}; choose one of: {', '.join(CELLS)}")
        cell_factory(self.cell, self.layer_norm, self.forget_bias)  # checks forget_bias
        if self.weight_drop and self.cell in INPUT_ONLY:
            raise RnnlabError(f"--weight-drop needs recurrent weights; {self.cell} has none")
        if self.zoneout_cell is not None and not self.factory()(1, 1).state_is_tuple:
            raise RnnlabError(f"--zoneout-cell is for the LSTM's cell state; {self.cell} has none")
        what = f"a {self.describe()} recurrent layer"
        check_parameter_count(self.min_parameters(), what, exact=False)

    def min_parameters(self, input_size: int = 0) -> int:
        """A lower bound on the layer's parameter count, for size checks before allocating:
        every cell has at least one H x H recurrent matrix and one H x D input matrix per layer
        and direction (D: ``input_size`` for the first layer, K*H above it); the cells of
        :data:`INPUT_ONLY` have no recurrent matrix but at least two input ones."""
        H, K = self.hidden_size, 2 if self.bidirectional else 1
        if self.cell in INPUT_ONLY:
            return K * 2 * H * (input_size + (self.num_layers - 1) * K * H)
        first = H * (H + input_size)
        above = H * (H + K * H)
        return K * (first + (self.num_layers - 1) * above)

    def factory(self) -> CellFactory:
        """The cell factory this config names."""
        return cell_factory(self.cell, self.layer_norm, self.forget_bias)

    def build(self, input_size: int, batch_first: bool = True) -> Recurrent:
        """The layer, reading ``input_size`` features per step."""
        from rnnlab.core.layers import Recurrent

        kwargs = {} if self.backend == "auto" else {"backend": self.backend}
        return Recurrent(
            self.factory(),
            input_size,
            self.hidden_size,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            dropout=self.dropout,
            batch_first=batch_first,
            weight_drop=self.weight_drop,
            locked_dropout=self.locked_dropout,
            input_dropout=self.input_dropout,
            output_dropout=self.output_dropout,
            zoneout=self.zoneout,
            zoneout_cell=self.zoneout_cell,
            **kwargs,
        )

    def describe(self) -> str:
        """``"2x128 bidirectional gru"``, for a run's first line."""
        both = "bidirectional " if self.bidirectional else ""
        norm = "+ln" if self.layer_norm else ""
        return f"{self.num_layers}x{self.hidden_size} {both}{self.cell}{norm}"


__all__ = [
    "BACKENDS",
    "CELLS",
    "CELL_HELP",
    "INPUT_ONLY",
    "MAX_LAYERS",
    "MAX_PARAMETERS",
    "CellRef",
    "RecurrentConfig",
    "cell_factory",
    "check_parameter_count",
    "max_parameters",
    "register_cell",
]
