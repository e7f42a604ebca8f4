"""Drop-in replacements for ``torch.nn.RNN``, ``torch.nn.GRU`` and ``torch.nn.LSTM``.

Same constructor arguments and defaults, forward signature, return shapes, state_dict keys and
layouts as torch.nn: a torch.nn state_dict loads into them and theirs into torch.nn. In the
standard configuration they run torch's fused kernel. They also take the rnnlab cell options as
keyword arguments (``LSTM(..., peephole=True, layer_norm=True)``); with any non-standard option
they run rnnlab's own implementation, and the extra parameters get torch-style names
(``weight_ci_l0``, ``ln_ih_weight_l0_reverse``, ...).

``backend`` (keyword-only) chooses the implementation as for
:class:`~rnnlab.core.layers.Recurrent`.

Example::

    >>> lstm = rnnlab.nn.LSTM(10, 20, num_layers=2)
    >>> lstm.load_state_dict(torch.nn.LSTM(10, 20, num_layers=2).state_dict())
    >>> out, (h, c) = lstm(torch.randn(5, 3, 10))   # (T, N, D): batch_first=False as in torch
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from functools import partial

import torch
from torch import Tensor
from torch.nn.modules.module import _IncompatibleKeys
from torch.nn.utils.rnn import PackedSequence

from rnnlab.core.cells import CellFactory, ElmanCell, GRUCell, LSTMCell, State
from rnnlab.core.layers import Recurrent


class _TorchCompatible(Recurrent):
    """Recurrent with torch.nn's argument order, defaults and parameter names."""

    recur_in_weight_dtype = False  # under autocast: the dtype torch's modules give

    def __init__(
        self,
        cell: CellFactory,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
        backend: str,
    ) -> None:
        if isinstance(dropout, (int, float)) and dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=3,
            )
        super().__init__(
            partial(cell, bias=bias),
            input_size,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            batch_first=batch_first,
            device=device,
            dtype=dtype,
            backend=backend,
        )
        self.bias = bias
        # torch name -> (cell index, name inside the cell)
        self._torch_names: dict[str, tuple[int, str]] = {}
        for k, cell_module in enumerate(self.cells):
            layer, direction = divmod(k, self.num_directions)
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            for name, _ in cell_module.named_parameters():
                self._torch_names[name.replace(".", "_") + suffix] = (k, name)
        # Module-level hooks (the pre-hook gets the module through torch's weak reference): a
        # bound method here would make every drop-in a reference cycle, freed only by the
        # cycle collector instead of on ``del`` as torch's own modules are.
        self._register_state_dict_hook(_to_torch_keys)
        self._register_load_state_dict_pre_hook(_from_torch_keys, with_module=True)
        self.register_load_state_dict_post_hook(_missing_as_torch_keys)

    def __getattr__(self, name: str) -> Tensor:
        try:
            return super().__getattr__(name)
        except AttributeError:
            names = self.__dict__.get("_torch_names", {})
            if name in names:
                k, inner = names[name]
                return self.cells[k].get_parameter(inner)
            raise

    def __setattr__(self, name: str, value: object) -> None:
        names = self.__dict__.get("_torch_names", {})
        if name not in names:
            super().__setattr__(name, value)
            return
        # ``lstm.weight_hh_l0 = Parameter(...)`` must reach the cell, not shadow it
        k, inner = names[name]
        owner, _, leaf = inner.rpartition(".")
        setattr(self.cells[k].get_submodule(owner), leaf, value)

    @property
    def all_weights(self) -> list[list[torch.nn.Parameter]]:
        """Parameters per layer and direction, in torch's order (as ``torch.nn.LSTM``)."""
        return [list(cell.parameters()) for cell in self.cells]

    def flatten_parameters(self) -> None:
        """No-op, for code written against torch.nn (weights are never flattened here)."""

    def forward(
        self, input: Tensor | PackedSequence, hx: State | None = None
    ) -> tuple[Tensor | PackedSequence, State]:
        return super().forward(input, hx)


def _from_torch_keys(
    module: _TorchCompatible, state_dict: dict, prefix: str, *args: object, **kwargs: object
) -> None:
    # the post-hook is not given the prefix; it reads (and removes) it from here
    module.__dict__["_loading_prefix"] = prefix
    for torch_name, (k, inner) in module._torch_names.items():
        key = prefix + torch_name
        if key in state_dict:
            state_dict[f"{prefix}cells.{k}.{inner}"] = state_dict.pop(key)
    # Names of earlier versions (GRU reset="before"'s ln_hn): the cell maps them itself.
    for k, cell in enumerate(module.cells):
        layer, direction = divmod(k, module.num_directions)
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        for old in getattr(cell, "renamed_keys", dict)():
            key = prefix + old.replace(".", "_") + suffix
            if key in state_dict and key[len(prefix) :] not in module._torch_names:
                state_dict[f"{prefix}cells.{k}.{old}"] = state_dict.pop(key)


def _to_torch_keys(
    module: _TorchCompatible, state_dict: OrderedDict, prefix: str, local_metadata: dict
) -> OrderedDict:
    inverse = {
        f"{prefix}cells.{k}.{inner}": prefix + t for t, (k, inner) in module._torch_names.items()
    }
    # In place: a parent module's state_dict() ignores the dict a child's hook returns.
    items = list(state_dict.items())
    state_dict.clear()
    for key, value in items:
        state_dict[inverse.get(key, key)] = value
    return state_dict


def _missing_as_torch_keys(module: _TorchCompatible, incompatible: _IncompatibleKeys) -> None:
    """Report missing parameters by the torch-style names that ``state_dict()`` shows."""
    prefix = module.__dict__.pop("_loading_prefix", "")
    inverse = {
        f"{prefix}cells.{k}.{inner}": prefix + t for t, (k, inner) in module._torch_names.items()
    }
    missing = incompatible.missing_keys
    missing[:] = [inverse.get(key, key) for key in missing]


class RNN(_TorchCompatible):
    r"""Drop-in ``torch.nn.RNN`` (Elman cells), plus ``layer_norm``.

    .. math:: h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    Args as ``torch.nn.RNN``; ``layer_norm`` as :class:`rnnlab.ElmanCell`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        layer_norm: bool = False,
        backend: str = "auto",
    ) -> None:
        self.nonlinearity = nonlinearity
        cell = partial(ElmanCell, nonlinearity=nonlinearity, layer_norm=layer_norm)
        super().__init__(cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backend)  # fmt: skip


class GRU(_TorchCompatible):
    r"""Drop-in ``torch.nn.GRU``, plus ``reset="before"`` (Cho et al. 2014) and ``layer_norm``.

    Args as ``torch.nn.GRU``; ``reset`` and ``layer_norm`` as :class:`rnnlab.GRUCell`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        reset: str = "after",
        layer_norm: bool = False,
        backend: str = "auto",
    ) -> None:
        cell = partial(GRUCell, reset=reset, layer_norm=layer_norm)
        super().__init__(cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backend)  # fmt: skip


class LSTM(_TorchCompatible):
    r"""Drop-in ``torch.nn.LSTM``, plus forget_gate, peephole, layer_norm and forget_bias.

    Args as ``torch.nn.LSTM`` (``proj_size`` P > 0: projections, ``weight_hr_l0`` (P, H), with
    every variant); the extra options as :class:`rnnlab.LSTMCell`, except that ``forget_bias``
    defaults to ``None`` here so that the default initialisation is torch's.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        forget_gate: bool = True,
        peephole: bool = False,
        layer_norm: bool = False,
        forget_bias: float | None = None,
        backend: str = "auto",
    ) -> None:
        self.proj_size = proj_size
        cell = partial(
            LSTMCell,
            proj_size=proj_size,
            forget_gate=forget_gate,
            peephole=peephole,
            layer_norm=layer_norm,
            forget_bias=forget_bias,
        )
        super().__init__(cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backend)  # fmt: skip


__all__ = ["GRU", "LSTM", "RNN"]
